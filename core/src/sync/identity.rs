//! Device identity and request signatures.
//!
//! Enrolment gives the device an Ed25519 key (generated on the device, kept sealed in its
//! store). Every later request carries four headers and a signature over
//! `baomi-request-v1 \n METHOD \n PATH \n hex(SHA-256(body)) \n timestamp \n nonce \n device`,
//! so the server can reject unsigned, altered, replayed, stale and foreign-device requests.
//! Under the `sm` suite (issue 24) the key is SM2 (SM3 over `Z_A || M`, default
//! distinguishing ID) and the body digest SM3: the key's suite picks both.
//! Request times strictly increase per device, so the server uses them as a replay counter.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::{SecureRandom, SystemRandom};

use crate::bundle::keys::{PublicKey, SigningKey, hex};
use crate::time::Timestamp;

/// Header with the device id.
pub const HEADER_DEVICE: &str = "baomi-device";
/// Header with the request time (milliseconds since the epoch).
pub const HEADER_TIMESTAMP: &str = "baomi-timestamp";
/// Header with a random nonce (32 hex digits).
pub const HEADER_NONCE: &str = "baomi-nonce";
/// Header with the base64 signature.
pub const HEADER_SIGNATURE: &str = "baomi-signature";

/// How far a request's timestamp may be from the server's clock. Inside the window the server
/// refuses a request time at or before the last one it accepted from the device (request times
/// strictly increase, see [`DeviceIdentity::sign`]); outside it the time alone refuses it.
pub const REQUEST_WINDOW_MS: i64 = 5 * 60 * 1000;

/// Per device, the last request time signed in this process: the next one is later by at
/// least a millisecond, so the server can take request times as a replay counter.
fn next_request_time(device_id: &str, now: Timestamp) -> Timestamp {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static LAST: OnceLock<Mutex<HashMap<String, i64>>> = OnceLock::new();
    let Ok(mut last) = LAST.get_or_init(|| Mutex::new(HashMap::new())).lock() else {
        return now;
    };
    let prev = last.get(device_id).copied().unwrap_or(i64::MIN);
    let next = now.0.max(prev.saturating_add(1));
    last.insert(device_id.to_owned(), next);
    Timestamp(next)
}

/// What a signed request carries besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuth {
    /// Device id.
    pub device_id: String,
    /// Request time.
    pub timestamp: Timestamp,
    /// Random, never reused.
    pub nonce: String,
    /// Base64 signature.
    pub signature: String,
}

impl RequestAuth {
    /// As HTTP headers (name, value), ready for an [`super::HttpRequest`].
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            (HEADER_DEVICE.into(), self.device_id.clone()),
            (HEADER_TIMESTAMP.into(), self.timestamp.0.to_string()),
            (HEADER_NONCE.into(), self.nonce.clone()),
            (HEADER_SIGNATURE.into(), self.signature.clone()),
        ]
    }
}

/// The bytes a request signature covers.
pub fn signed_message(
    suite: crate::suite::Suite,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: Timestamp,
    nonce: &str,
    device_id: &str,
) -> Vec<u8> {
    let body_digest = suite.digest(body);
    format!(
        "baomi-request-v1\n{method}\n{path}\n{}\n{}\n{nonce}\n{device_id}",
        hex(&body_digest),
        timestamp.0
    )
    .into_bytes()
}

/// What enrolment's proof of possession signs.
pub fn enroll_message(token: &str, device_id: &str) -> Vec<u8> {
    format!("enroll-v1\n{token}\n{device_id}").into_bytes()
}

/// The device's key pair.
pub struct DeviceIdentity {
    device_id: String,
    key: SigningKey,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceIdentity({})", self.device_id)
    }
}

impl DeviceIdentity {
    /// Wraps a key for `device_id`.
    pub fn new(device_id: String, key: SigningKey) -> Self {
        Self { device_id, key }
    }

    /// Device id.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Public key.
    pub fn public(&self) -> &PublicKey {
        self.key.public()
    }

    /// The key (to persist it sealed).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs a request.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Option<RequestAuth> {
        let now = next_request_time(&self.device_id, now);
        let mut raw = [0u8; 16];
        SystemRandom::new().fill(&mut raw).ok()?;
        let nonce = hex(&raw);
        let msg = signed_message(
            self.key.suite(),
            method,
            path,
            body,
            now,
            &nonce,
            &self.device_id,
        );
        Some(RequestAuth {
            device_id: self.device_id.clone(),
            timestamp: now,
            nonce,
            signature: B64.encode(self.key.sign(&msg)),
        })
    }

    /// Enrolment proof.
    pub fn enroll_proof(&self, token: &str) -> String {
        B64.encode(self.key.sign(&enroll_message(token, &self.device_id)))
    }
}

/// Why the server refuses a signed request (mapped to 401/403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A header is missing or malformed.
    #[error("request is not signed: {0}")]
    Unsigned(&'static str),
    /// The signature does not verify under the device's key.
    #[error("bad request signature")]
    BadSignature,
    /// Outside the server's time window.
    #[error("request time is {skew_ms} ms from the server's clock (window {window_ms} ms)")]
    Stale {
        /// Device minus server.
        skew_ms: i64,
        /// Allowed.
        window_ms: i64,
    },
    /// The nonce was seen before.
    #[error("request replayed")]
    Replayed,
    /// The device is not enrolled (or was revoked).
    #[error("device `{0}` is not enrolled")]
    UnknownDevice(String),
    /// The body names another device than the signature.
    #[error("request signed by `{signer}` acts for `{claimed}`")]
    ForeignDevice {
        /// Who signed.
        signer: String,
        /// Who the body names.
        claimed: String,
    },
}

/// Server side: checks the signature and the time window. The caller checks the nonce against
/// what it has seen (it owns that state).
pub fn verify_request(
    key: &PublicKey,
    method: &str,
    path: &str,
    body: &[u8],
    auth: &RequestAuth,
    server_now: Timestamp,
) -> Result<(), AuthError> {
    let skew_ms = auth.timestamp.0.saturating_sub(server_now.0);
    if skew_ms.abs() > REQUEST_WINDOW_MS {
        return Err(AuthError::Stale {
            skew_ms,
            window_ms: REQUEST_WINDOW_MS,
        });
    }
    if auth.nonce.len() != 32 || !auth.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthError::Unsigned("nonce must be 32 hex digits"));
    }
    let sig = B64
        .decode(auth.signature.as_bytes())
        .map_err(|_| AuthError::Unsigned("signature is not base64"))?;
    let msg = signed_message(
        key.suite(),
        method,
        path,
        body,
        auth.timestamp,
        &auth.nonce,
        &auth.device_id,
    );
    if key.verify(&msg, &sig) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> DeviceIdentity {
        id_for(crate::suite::Suite::Intl)
    }

    fn id_for(suite: crate::suite::Suite) -> DeviceIdentity {
        DeviceIdentity::new("dev-1".into(), SigningKey::generate_for(suite).unwrap())
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        for suite in [crate::suite::Suite::Intl, crate::suite::Suite::Sm] {
            signed_request_verifies_and_any_change_breaks_it(suite);
        }
    }

    fn signed_request_verifies_and_any_change_breaks_it(suite: crate::suite::Suite) {
        let d = id_for(suite);
        let now = Timestamp(1_800_000_000_000);
        let auth = d.sign("POST", "/v1/check-in", b"{}", now).unwrap();
        assert_eq!(
            verify_request(d.public(), "POST", "/v1/check-in", b"{}", &auth, now),
            Ok(())
        );
        for (m, p, b) in [
            ("GET", "/v1/check-in", &b"{}"[..]),
            ("POST", "/v1/upload", b"{}"),
            ("POST", "/v1/check-in", b"{ }"),
        ] {
            assert_eq!(
                verify_request(d.public(), m, p, b, &auth, now),
                Err(AuthError::BadSignature)
            );
        }
        let mut other = auth.clone();
        other.device_id = "dev-2".into();
        assert_eq!(
            verify_request(d.public(), "POST", "/v1/check-in", b"{}", &other, now),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(
            verify_request(
                d.public(),
                "POST",
                "/v1/check-in",
                b"{}",
                &auth,
                now.plus_seconds(301)
            ),
            Err(AuthError::Stale { .. })
        ));
    }

    #[test]
    fn another_devices_key_does_not_verify() {
        let (a, b) = (id(), id());
        let now = Timestamp(1_800_000_000_000);
        let auth = a.sign("POST", "/v1/upload", b"x", now).unwrap();
        assert_eq!(
            verify_request(b.public(), "POST", "/v1/upload", b"x", &auth, now),
            Err(AuthError::BadSignature)
        );
    }
}
