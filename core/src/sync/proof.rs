//! Proof that an answer came from the office's server, not from a relay.
//!
//! A relay between the phone and the office (an MDM proxy, a TLS-terminating gateway, a
//! user-installed CA) can answer anything. The device therefore deletes evidence, and counts a
//! sync as successful, only on answers that only the holder of the office's upload private key
//! (named in the signed trust root) can compute:
//!
//! - **Session key.** At check-in the device seals a fresh random 32-byte key to the upload key
//!   ([`super::seal`]). The server opens it and MACs its check-in, download and finish answers with it
//!   (HMAC-SHA256 over a label, the device id, the SHA-256 of the exact request body and of
//!   the answer's canonical JSON without its proof), so an answer is bound to one request.
//! - **Receipt.** Every upload batch carries its own random key inside the sealed batch; the
//!   server's receipt is HMAC-SHA256 under it over the device id, the seq range and the last
//!   record's chain tag. Only a server that opened the batch can compute it.
//!
//! Under the `sm` suite (issue 24) every MAC here is HMAC-SM3 and every digest SM3; the key is
//! sealed by SM2 ([`super::seal`]). The key carries its suite, so one side cannot check a
//! proof under the other's algorithm.
//!
//! Proofs are compared in constant time (ring's `hmac::verify`, `hmac`'s `verify_slice`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Length of session and receipt keys.
pub const KEY_LEN: usize = 32;

/// A one-sync (or one-batch) MAC key. Zeroized on drop; never logged.
pub struct ProofKey {
    suite: Suite,
    key: Zeroizing<[u8; KEY_LEN]>,
}

use crate::suite::Suite;

impl std::fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProofKey(..)")
    }
}

/// What a proof key is for: the label in every MAC'd message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The check-in answer (acknowledgements, server time, what is waiting).
    CheckIn,
    /// The finish answer: the sync completed at the office.
    Finish,
    /// The download answer: exactly what the office delivered (a relay that drops a custody
    /// record, a bundle or a rotation from it breaks the proof).
    Download,
}

impl Answer {
    fn label(self) -> &'static [u8] {
        match self {
            Self::CheckIn => b"check-in",
            Self::Finish => b"finish",
            Self::Download => b"download",
        }
    }
}

impl ProofKey {
    /// A fresh random key for `suite`; `None` if the system's random source fails.
    pub fn generate(suite: Suite) -> Option<Self> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        SystemRandom::new().fill(key.as_mut_slice()).ok()?;
        Some(Self { suite, key })
    }

    /// From raw bytes (the server, after opening the sealed key).
    pub fn from_bytes(suite: Suite, bytes: &[u8]) -> Option<Self> {
        let arr: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(Self {
            suite,
            key: Zeroizing::new(arr),
        })
    }

    /// From base64 (inside a sealed upload batch).
    pub fn from_base64(suite: Suite, s: &str) -> Option<Self> {
        let raw = Zeroizing::new(B64.decode(s.as_bytes()).ok()?);
        Self::from_bytes(suite, &raw)
    }

    /// The raw key, for sealing it to the office.
    pub fn as_bytes(&self) -> &[u8] {
        self.key.as_slice()
    }

    /// Base64 of the raw key, for the inside of a sealed batch only.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(self.key.as_slice()))
    }

    /// The form the office keeps a session key in between the stages of one sync: base64,
    /// prefixed `sm:` under the `sm` suite (rows written before issue 24 have no prefix and
    /// are `intl`). Holds the secret: zeroized on drop.
    pub fn to_stored(&self) -> Zeroizing<String> {
        match self.suite {
            Suite::Intl => self.to_base64(),
            Suite::Sm => Zeroizing::new(format!("sm:{}", self.to_base64().as_str())),
        }
    }

    /// Reads [`ProofKey::to_stored`]'s form.
    pub fn from_stored(s: &str) -> Option<Self> {
        match s.strip_prefix("sm:") {
            Some(b64) => Self::from_base64(Suite::Sm, b64),
            None => Self::from_base64(Suite::Intl, s),
        }
    }

    /// The suite whose MAC and hash the proofs use.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The proof for an answer to `request_body`, whose proof-less canonical form is `answer`.
    pub fn prove(
        &self,
        what: Answer,
        device_id: &str,
        request_body: &[u8],
        answer: &[u8],
    ) -> String {
        self.mac(&answer_message(
            self.suite,
            what,
            device_id,
            request_body,
            answer,
        ))
    }

    /// Constant-time check of [`ProofKey::prove`].
    pub fn verify(
        &self,
        what: Answer,
        device_id: &str,
        request_body: &[u8],
        answer: &[u8],
        proof: &str,
    ) -> bool {
        self.check(
            &answer_message(self.suite, what, device_id, request_body, answer),
            proof,
        )
    }

    /// The receipt for a stored batch.
    pub fn receipt(
        &self,
        device_id: &str,
        first_seq: u64,
        last_seq: u64,
        last_tag: &str,
    ) -> String {
        self.mac(&receipt_message(device_id, first_seq, last_seq, last_tag))
    }

    /// Constant-time check of [`ProofKey::receipt`].
    pub fn verify_receipt(
        &self,
        device_id: &str,
        first_seq: u64,
        last_seq: u64,
        last_tag: &str,
        receipt: &str,
    ) -> bool {
        self.check(
            &receipt_message(device_id, first_seq, last_seq, last_tag),
            receipt,
        )
    }

    /// Base64 HMAC (the suite's) of `msg`; empty, which verifies nowhere, if the MAC could
    /// not be keyed (unreachable).
    fn mac(&self, msg: &[u8]) -> String {
        self.suite
            .mac(self.key.as_slice(), msg)
            .map(|t| B64.encode(t))
            .unwrap_or_default()
    }

    /// Constant-time check of a base64 MAC over `msg` (anything that is not base64 fails).
    fn check(&self, msg: &[u8], b64: &str) -> bool {
        B64.decode(b64.as_bytes())
            .is_ok_and(|tag| self.suite.mac_verify(self.key.as_slice(), msg, &tag))
    }
}

/// Associated data of the sealed session key.
pub fn session_aad(device_id: &str) -> Vec<u8> {
    format!("baomi-session-v2\n{device_id}").into_bytes()
}

fn answer_message(
    suite: Suite,
    what: Answer,
    device_id: &str,
    request_body: &[u8],
    answer: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(b"baomi-answer-v2\n");
    m.extend_from_slice(what.label());
    m.push(b'\n');
    m.extend_from_slice(&(device_id.len() as u64).to_be_bytes());
    m.extend_from_slice(device_id.as_bytes());
    m.extend_from_slice(&suite.digest(request_body));
    m.extend_from_slice(&suite.digest(answer));
    m
}

fn receipt_message(device_id: &str, first_seq: u64, last_seq: u64, last_tag: &str) -> Vec<u8> {
    format!("baomi-receipt-v2\n{device_id}\n{first_seq}\n{last_seq}\n{last_tag}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_binds_key_request_answer_and_kind() {
        for suite in [Suite::Intl, Suite::Sm] {
            binds_key_request_answer_and_kind(suite);
        }
    }

    #[test]
    fn a_stored_session_key_comes_back_in_its_suite() {
        for suite in [Suite::Intl, Suite::Sm] {
            let k = ProofKey::generate(suite).unwrap();
            let back = ProofKey::from_stored(&k.to_stored()).unwrap();
            assert_eq!(back.suite(), suite);
            assert_eq!(back.as_bytes(), k.as_bytes());
        }
        assert!(ProofKey::from_stored("sm:not base64").is_none());
    }

    #[test]
    fn a_proof_under_one_suite_does_not_verify_under_the_other() {
        let k = ProofKey::generate(Suite::Sm).unwrap();
        let same_bytes_intl = ProofKey::from_bytes(Suite::Intl, k.as_bytes()).unwrap();
        let p = k.prove(Answer::CheckIn, "dev-1", b"req", b"ans");
        assert!(!same_bytes_intl.verify(Answer::CheckIn, "dev-1", b"req", b"ans", &p));
        let r = same_bytes_intl.receipt("dev-1", 1, 2, "ab");
        assert!(!k.verify_receipt("dev-1", 1, 2, "ab", &r));
    }

    fn binds_key_request_answer_and_kind(suite: Suite) {
        let k = ProofKey::generate(suite).unwrap();
        let other = ProofKey::generate(suite).unwrap();
        let p = k.prove(Answer::CheckIn, "dev-1", b"req", b"ans");
        assert!(k.verify(Answer::CheckIn, "dev-1", b"req", b"ans", &p));
        assert!(!other.verify(Answer::CheckIn, "dev-1", b"req", b"ans", &p));
        assert!(!k.verify(Answer::Finish, "dev-1", b"req", b"ans", &p));
        assert!(!k.verify(Answer::CheckIn, "dev-2", b"req", b"ans", &p));
        assert!(!k.verify(Answer::CheckIn, "dev-1", b"req2", b"ans", &p));
        assert!(!k.verify(Answer::CheckIn, "dev-1", b"req", b"ans2", &p));
        assert!(!k.verify(Answer::CheckIn, "dev-1", b"req", b"ans", "not base64!"));
        let r = k.receipt("dev-1", 1, 100, "ab");
        assert!(k.verify_receipt("dev-1", 1, 100, "ab", &r));
        assert!(!k.verify_receipt("dev-1", 1, 101, "ab", &r));
        assert!(!k.verify_receipt("dev-1", 1, 100, "ac", &r));
        assert!(!other.verify_receipt("dev-1", 1, 100, "ab", &r));
    }
}
