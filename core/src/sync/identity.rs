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

use super::ledger::{ChainEnd, DeviceCheckpoint};
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
/// Header of a request whose signature is also the device checkpoint of the batch it
/// carries (`SEQ:LINK:AT`, see [`DeviceIdentity::sign_with_checkpoint`]).
pub const HEADER_CHECKPOINT: &str = "baomi-checkpoint";

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
    /// The device checkpoint the signature also is (`SEQ:LINK:AT`), for a request carrying a
    /// batch; `None` for a plain signature.
    pub checkpoint: Option<String>,
}

impl RequestAuth {
    /// As HTTP headers (name, value), ready for an [`super::HttpRequest`].
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            (HEADER_DEVICE.into(), self.device_id.clone()),
            (HEADER_TIMESTAMP.into(), self.timestamp.0.to_string()),
            (HEADER_NONCE.into(), self.nonce.clone()),
            (HEADER_SIGNATURE.into(), self.signature.clone()),
        ];
        if let Some(c) = &self.checkpoint {
            h.push((HEADER_CHECKPOINT.into(), c.clone()));
        }
        h
    }
}

/// The binding of a checkpoint signed with a request: the hex suite hash of the request's
/// signed message ([`signed_message`]); the one definition the signer and the verifier share.
fn request_binding(suite: crate::suite::Suite, msg: &[u8]) -> String {
    hex(&suite.digest(msg))
}

/// The checkpoint header's text for `cp` (`SEQ:LINK:AT`; read back by
/// [`parse_checkpoint_header`]).
fn checkpoint_header(cp: &DeviceCheckpoint) -> String {
    format!("{}:{}:{}", cp.seq, cp.link, cp.at)
}

/// The checkpoint header's fields: seq, hex link, signing time.
fn parse_checkpoint_header(h: &str) -> Option<(u64, String, i64)> {
    let mut parts = h.split(':');
    let (seq, link, at) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || !seq.bytes().all(|b| b.is_ascii_digit())
        || link.len() != 64
        || !link.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    Some((seq.parse().ok()?, link.to_owned(), at.parse().ok()?))
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
        let (mut auth, msg) = self.request_message(method, path, body, now)?;
        auth.signature = B64.encode(self.key.sign(&msg));
        Some(auth)
    }

    /// Signs a request that carries a batch whose chain ends at `end`, with one signature that
    /// is both the request's and the batch's device checkpoint, bound to the request
    /// ([`super::ledger::bound_checkpoint_message`]): returns the request's headers' values and
    /// that checkpoint (what the office logs).
    pub fn sign_with_checkpoint(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        now: Timestamp,
        end: ChainEnd,
    ) -> Option<(RequestAuth, DeviceCheckpoint)> {
        let (mut auth, msg) = self.request_message(method, path, body, now)?;
        let ChainEnd { seq, link, at } = end;
        let mut checkpoint = DeviceCheckpoint {
            seq,
            link: hex(&link),
            at: at.0,
            signature: String::new(),
            binding: request_binding(self.key.suite(), &msg),
        };
        checkpoint.signature = B64.encode(self.key.sign(&checkpoint.message(&self.device_id)));
        auth.signature = checkpoint.signature.clone();
        auth.checkpoint = Some(checkpoint_header(&checkpoint));
        Some((auth, checkpoint))
    }

    /// A request's headers but its signature, and the message a plain signature covers.
    fn request_message(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Option<(RequestAuth, Vec<u8>)> {
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
        Some((
            RequestAuth {
                device_id: self.device_id.clone(),
                timestamp: now,
                nonce,
                signature: String::new(),
                checkpoint: None,
            },
            msg,
        ))
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

/// Server side: checks the signature and the time window. The caller checks the request time
/// against the last it accepted (it owns that state). For a request whose signature is also
/// its batch's device checkpoint ([`HEADER_CHECKPOINT`]), returns that checkpoint, verified.
pub fn verify_request(
    key: &PublicKey,
    method: &str,
    path: &str,
    body: &[u8],
    auth: &RequestAuth,
    server_now: Timestamp,
) -> Result<Option<DeviceCheckpoint>, AuthError> {
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
    let Some(header) = &auth.checkpoint else {
        return if key.verify(&msg, &sig) {
            Ok(None)
        } else {
            Err(AuthError::BadSignature)
        };
    };
    // One signature for both: the device checkpoint bound to this request's message.
    let (seq, link, at) = parse_checkpoint_header(header).ok_or(AuthError::Unsigned(
        "checkpoint header must be SEQ:LINK:AT (decimal, 64 lowercase hex, decimal)",
    ))?;
    let checkpoint = DeviceCheckpoint {
        seq,
        link,
        at,
        signature: auth.signature.clone(),
        binding: request_binding(key.suite(), &msg),
    };
    if key.verify(&checkpoint.message(&auth.device_id), &sig) {
        Ok(Some(checkpoint))
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
            Ok(None)
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

    #[test]
    fn one_signature_is_both_the_requests_and_its_batchs_checkpoint() {
        for suite in [crate::suite::Suite::Intl, crate::suite::Suite::Sm] {
            one_signature_is_both_the_requests_and_its_batchs_checkpoint_under(suite);
        }
    }

    fn one_signature_is_both_the_requests_and_its_batchs_checkpoint_under(
        suite: crate::suite::Suite,
    ) {
        let d = id_for(suite);
        let now = Timestamp(1_800_000_000_000);
        let link = [0xab; 32];
        let (auth, cp) = d
            .sign_with_checkpoint(
                "POST",
                "/v1/sync",
                b"{}",
                now,
                ChainEnd {
                    seq: 5,
                    link,
                    at: Timestamp(42),
                },
            )
            .unwrap();
        // The office gets the checkpoint the device made, and it verifies on its own (what an
        // auditor checks, with the device's key alone).
        let verified = verify_request(d.public(), "POST", "/v1/sync", b"{}", &auth, now);
        assert_eq!(verified, Ok(Some(cp.clone())));
        assert!(cp.verify("dev-1", d.public()));
        assert_eq!(
            (cp.seq, cp.at, cp.link.as_str()),
            (5, 42, hex(&link).as_str())
        );
        // Anything else about the request breaks it.
        for (p, b) in [("/v1/upload", &b"{}"[..]), ("/v1/sync", b"{ }")] {
            assert_eq!(
                verify_request(d.public(), "POST", p, b, &auth, now),
                Err(AuthError::BadSignature)
            );
        }
        // Nor does another request time, nonce or device under the same signature (the binding
        // is the hash of the whole request message, not of the body alone).
        let mut later = auth.clone();
        later.timestamp = Timestamp(now.0 + 1);
        let mut renonced = auth.clone();
        renonced.nonce = "0".repeat(32);
        let mut other = auth.clone();
        other.device_id = "dev-2".into();
        for a in [&later, &renonced, &other] {
            assert_eq!(
                verify_request(d.public(), "POST", "/v1/sync", b"{}", a, now),
                Err(AuthError::BadSignature)
            );
        }
        // A relay cannot move the checkpoint, strip it (the signature is not a plain one), or
        // add one to a plain request.
        let mut moved = auth.clone();
        moved.checkpoint = Some(format!("6:{}:42", hex(&link)));
        let mut stripped = auth.clone();
        stripped.checkpoint = None;
        let mut added = d.sign("POST", "/v1/sync", b"{}", now).unwrap();
        added.checkpoint = auth.checkpoint.clone();
        for a in [&moved, &stripped, &added] {
            assert_eq!(
                verify_request(d.public(), "POST", "/v1/sync", b"{}", a, now),
                Err(AuthError::BadSignature)
            );
        }
        // A checkpoint read from the log is no request signature: used as one (with the
        // request time and nonce of another request), it fails.
        let mut replayed = d.sign("POST", "/v1/sync", b"{}", now).unwrap();
        replayed.signature = cp.signature.clone();
        assert_eq!(
            verify_request(d.public(), "POST", "/v1/sync", b"{}", &replayed, now),
            Err(AuthError::BadSignature)
        );
        // A malformed header is refused as such, before any signature check.
        for bad in [
            "5",
            "5:zz:42",
            &format!("x:{}:42", hex(&link)),
            &format!("5:{}:42:1", hex(&link)),
            &format!("5:{}:42", hex(&link).to_uppercase()),
        ] {
            let mut a = auth.clone();
            a.checkpoint = Some(bad.to_owned());
            assert!(matches!(
                verify_request(d.public(), "POST", "/v1/sync", b"{}", &a, now),
                Err(AuthError::Unsigned(_))
            ));
        }
    }
}
