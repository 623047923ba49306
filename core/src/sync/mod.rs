//! Compliance sync building blocks shared by the device and the reference server
//! (docs/sync-protocol.md): wire messages, request signatures, sealing, answer proofs, the
//! custody feed's records, the schedule and the transport the platform implements.
//!
//! The four stages themselves run in [`crate::agent::sync`] (the agent drives them; this
//! module never reaches back up into the agent). The platform only moves bytes through a
//! [`Transport`] (OkHttp on Android, URLSession on iOS, `ureq` in the host CLI) and calls
//! [`crate::agent::sync::sync_now`] when [`schedule::SyncState::next_due`] says so.

pub mod assignment;
pub mod custody;
#[cfg(feature = "host-http")]
pub mod http;
pub mod identity;
pub mod ledger;
pub mod proof;
pub mod protocol;
pub mod schedule;
pub mod seal;
pub mod transport;

pub use transport::{HttpRequest, HttpResponse, Transport, TransportError};

/// A transport error in words an administrator can act on: the two ways a URL's scheme and
/// the server's TLS setting disagree read as rustls' and ureq's internals otherwise
/// (`received corrupt message of type InvalidContentType`).
pub fn explain(url: &str, error: &str) -> String {
    let tls_to_plain = url.starts_with("https://")
        && (error.contains("InvalidContentType")
            || error.contains("corrupt message")
            || error.contains("InvalidMessage"));
    let plain_to_tls = url.starts_with("http://")
        && (error.contains("status line")
            || error.contains("BadStatus")
            || error.contains("HTTP version")
            || error.contains("response header"));
    if tls_to_plain {
        format!(
            "{url}: the server does not speak TLS there (it answered in plain HTTP): use http:// for a server started without --tls-cert/--tls-key (loopback only), or start it with them ({error})"
        )
    } else if plain_to_tls {
        format!("{url}: the server expects TLS there: use https:// ({error})")
    } else {
        format!("{url}: {error}")
    }
}

/// Whether `base` may carry the sync: `https://` anywhere, plain `http://` only to a loopback
/// address (tests, a server on the same machine). A relay on the network must never be able
/// to read or rewrite the exchange in clear.
pub fn check_server_url(base: &str) -> Result<(), TransportError> {
    if base.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = base.strip_prefix("http://") else {
        return Err(TransportError(format!(
            "`{base}`: the server URL must start with https://"
        )));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(TransportError(format!(
            "`{base}`: plain http:// is accepted only for loopback; use https://"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::check_server_url;

    #[test]
    fn plain_http_only_reaches_loopback() {
        for ok in [
            "https://compliance.example.gov.cn",
            "http://127.0.0.1:8443",
            "http://127.9.9.9",
            "http://localhost:80/x",
            "http://[::1]:8443",
        ] {
            assert!(check_server_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.5:8443",
            "http://compliance.example.gov.cn",
            "http://127.0.0.1.evil.example",
            "http://[::2]:80",
            "ftp://127.0.0.1",
            "127.0.0.1:8443",
        ] {
            assert!(check_server_url(bad).is_err(), "{bad}");
        }
    }
}
