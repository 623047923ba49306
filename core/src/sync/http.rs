//! The host's HTTP transport (feature `host-http`, for the CLI and tests; the phone library is
//! built without it) for the sync (phones bring their own: OkHttp, URLSession).
//! Blocking `ureq` with rustls; every status comes back to the core, which decides.

use std::time::Duration;

use super::protocol::MAX_REQUEST_BYTES;
use super::{HttpRequest, HttpResponse, Transport, TransportError};

/// `ureq` bound to one server's base URL.
#[derive(Debug)]
pub struct HttpTransport {
    base: String,
    agent: ureq::Agent,
}

// Plain http:// off loopback is refused when sending (see `super::check_server_url`).

impl HttpTransport {
    /// For `base` (`https://host:port`, or `http://127.0.0.1:port` for loopback tests),
    /// trusting the Mozilla root set.
    pub fn new(base: &str) -> Self {
        Self::build(base, None)
    }

    /// Trusting only the CA certificate(s) in `ca_pem` (an office's private CA).
    pub fn with_ca_pem(base: &str, ca_pem: &[u8]) -> Result<Self, TransportError> {
        let certs = ureq::tls::parse_pem(ca_pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TransportError(format!("CA certificate: {e}")))?;
        if certs.is_empty() {
            return Err(TransportError("CA file holds no certificate".into()));
        }
        Ok(Self::build(base, Some(certs)))
    }

    /// Like [`HttpTransport::new`], with every exchange bounded by `timeout` (default 30 s,
    /// above the server's 25 s long-poll).
    pub fn with_timeout(base: &str, timeout: Duration) -> Self {
        Self::build_with(base, None, timeout)
    }

    fn build(base: &str, roots: Option<Vec<ureq::tls::Certificate<'static>>>) -> Self {
        Self::build_with(base, roots, Duration::from_secs(30))
    }

    fn build_with(
        base: &str,
        roots: Option<Vec<ureq::tls::Certificate<'static>>>,
        timeout: Duration,
    ) -> Self {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout));
        if let Some(roots) = roots {
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
                    .build(),
            );
        }
        Self {
            base: base.trim_end_matches('/').to_owned(),
            agent: config.build().into(),
        }
    }
}

impl Transport for HttpTransport {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        super::check_server_url(&self.base)?;
        let url = format!("{}{}", self.base, req.path);
        let mut builder = self.agent.post(&url);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let mut resp = builder
            .send(&req.body[..])
            .map_err(|e| TransportError(super::explain(&url, &e.to_string())))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_REQUEST_BYTES as u64)
            .read_to_vec()
            .map_err(|e| TransportError(format!("{url}: reading the answer: {e}")))?;
        Ok(HttpResponse { status, body })
    }
}
