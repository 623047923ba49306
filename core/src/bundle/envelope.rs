//! The signed envelope shared by policy bundles, trust roots and custody records.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::err::BundleError;
use super::keys::{KeyId, PublicKey, SigningKey};

/// Payload type of a policy bundle.
pub const POLICY_BUNDLE_TYPE: &str = "application/vnd.baomi.policy-bundle+json";
/// Payload type of a trust root.
pub const TRUST_ROOT_TYPE: &str = "application/vnd.baomi.trust-root+json";
/// Payload type of a registry custody record (sign-out or return).
pub const CUSTODY_RECORD_TYPE: &str = "application/vnd.baomi.custody-record+json";
/// Payload type of a personnel assignment record (this phone to that holder).
pub const ASSIGNMENT_RECORD_TYPE: &str = "application/vnd.baomi.assignment-record+json";

/// A DSSE envelope (<https://github.com/secure-systems-lab/dsse>, `envelope.md`):
/// `{payloadType, payload, signatures: [{keyid, sig}]}`, readable by any DSSE implementation.
/// Envelopes written before the field had DSSE's name (`payload_type`) still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// What the payload is.
    #[serde(rename = "payloadType", alias = "payload_type")]
    pub payload_type: String,
    /// Base64 of the exact payload bytes that were signed.
    pub payload: String,
    /// Signatures over DSSE's `PAE(payloadType, payload bytes)`.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// Signer's key id (a hint; the key is looked up in the trust root).
    pub keyid: String,
    /// Base64 Ed25519 signature.
    pub sig: String,
}

/// SHA-256 of the exact payload bytes: a bundle's digest, as reported in check-ins.
pub fn payload_digest(payload: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, payload).as_ref());
    out
}

/// The message each signature covers: DSSE's pre-authentication encoding of the payload type
/// and the payload bytes, as the DSSE protocol defines it, so a standard DSSE verifier checks
/// Baomi's envelopes (`core/tests/dsse_interop.rs` runs one). (An earlier format signed the
/// payload's SHA-256 instead, ~1 ms faster at 1,000 rules; no standard verifier accepted it.)
pub fn signed_message(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    pae(payload_type, payload)
}

/// DSSE pre-authentication encoding: binds the type to the bytes, unambiguously.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Trusted keys of one role, by id, and the SM2 distinguishing ID their signatures use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: BTreeMap<KeyId, PublicKey>,
    sm2_id: Option<String>,
}

impl KeySet {
    /// From keys (duplicates collapse: a key counts once toward a threshold).
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|k| (k.keyid().clone(), k)).collect(),
            sm2_id: None,
        }
    }

    /// SM2 signatures are checked under `id` (the trust root's `sm2_id`) instead of the
    /// default `1234567812345678`.
    pub fn with_sm2_id(mut self, id: Option<String>) -> Self {
        self.sm2_id = id;
        self
    }

    /// The SM2 distinguishing ID signatures are checked under.
    pub fn sm2_id(&self) -> &str {
        self.sm2_id
            .as_deref()
            .unwrap_or(crate::suite::sm::DEFAULT_ID)
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys in id order.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }
}

impl Envelope {
    /// Signs `payload` as `payload_type` with every key given (SM2 keys under the default
    /// distinguishing ID).
    pub fn sign(payload_type: &str, payload: &[u8], keys: &[&SigningKey]) -> Envelope {
        Self::sign_with_id(crate::suite::sm::DEFAULT_ID, payload_type, payload, keys)
    }

    /// [`Envelope::sign`], SM2 keys under distinguishing ID `sm2_id`.
    pub fn sign_with_id(
        sm2_id: &str,
        payload_type: &str,
        payload: &[u8],
        keys: &[&SigningKey],
    ) -> Envelope {
        let msg = signed_message(payload_type, payload);
        Envelope {
            payload_type: payload_type.to_owned(),
            payload: B64.encode(payload),
            signatures: keys
                .iter()
                .map(|k| EnvelopeSignature {
                    keyid: k.public().keyid().0.clone(),
                    sig: B64.encode(k.sign_with_id(sm2_id, &msg)),
                })
                .collect(),
        }
    }

    /// Pretty JSON, as written to disk and sent over the wire.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The payload type an envelope claims, read without verifying anything (a feed that
    /// carries two kinds of record picks the verifier by it; the verifier checks it again).
    pub fn claimed_type(bytes: &[u8]) -> Option<String> {
        #[derive(Deserialize)]
        struct Claim {
            #[serde(rename = "payloadType", alias = "payload_type")]
            payload_type: String,
        }
        serde_json::from_slice::<Claim>(bytes)
            .ok()
            .map(|c| c.payload_type)
    }

    /// Steps 1-4 of every verification: size cap, parse, payload type, decode.
    pub fn open(
        bytes: &[u8],
        what: &'static str,
        expected_type: &'static str,
        limit: usize,
    ) -> Result<(Envelope, Vec<u8>), BundleError> {
        if bytes.len() > limit {
            return Err(BundleError::Oversized {
                what,
                size: bytes.len(),
                limit,
            });
        }
        let env: Envelope = serde_json::from_slice(bytes).map_err(|e| BundleError::Malformed {
            what,
            reason: format!("not a signed envelope: {e}"),
        })?;
        if env.payload_type != expected_type {
            return Err(BundleError::WrongPayloadType {
                expected: expected_type,
                found: env.payload_type,
            });
        }
        let payload = B64
            .decode(env.payload.as_bytes())
            .map_err(|_| BundleError::Malformed {
                what,
                reason: "payload is not base64".into(),
            })?;
        Ok((env, payload))
    }

    /// Counts distinct keys of `keys` with a valid signature and requires `threshold`.
    ///
    /// With the threshold met, stray signatures (unknown or bad) are ignored, as in TUF. Without
    /// it, the error names the most telling defect: a bad signature from a trusted key, then an
    /// unknown key, then the plain count.
    pub fn check_threshold(
        &self,
        what: &'static str,
        payload: &[u8],
        keys: &KeySet,
        threshold: usize,
        role: &'static str,
    ) -> Result<usize, BundleError> {
        if self.signatures.is_empty() {
            return Err(BundleError::Unsigned { what });
        }
        let msg = signed_message(&self.payload_type, payload);
        let mut valid: BTreeSet<&KeyId> = BTreeSet::new();
        let (mut bad, mut unknown) = (None, None);
        for s in &self.signatures {
            let Some(key) = keys.keys.get(&KeyId(s.keyid.clone())) else {
                unknown.get_or_insert_with(|| s.keyid.clone());
                continue;
            };
            let ok = B64
                .decode(s.sig.as_bytes())
                .is_ok_and(|sig| key.verify_with_id(keys.sm2_id(), &msg, &sig));
            if ok {
                valid.insert(key.keyid());
            } else {
                bad.get_or_insert_with(|| s.keyid.clone());
            }
        }
        if threshold > 0 && valid.len() >= threshold {
            return Ok(valid.len());
        }
        if let Some(keyid) = bad {
            return Err(BundleError::BadSignature { keyid });
        }
        if let (Some(keyid), true) = (unknown, valid.is_empty()) {
            return Err(BundleError::UnknownKey { keyid, role });
        }
        Err(BundleError::ThresholdNotMet {
            role,
            valid: valid.len(),
            threshold,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn a_signature_does_not_carry_over_to_another_type() {
        let k = SigningKey::generate().unwrap();
        let keys = KeySet::new([k.public().clone()]);
        let mut env = Envelope::sign(TRUST_ROOT_TYPE, b"{}", &[&k]);
        assert_eq!(env.check_threshold("x", b"{}", &keys, 1, "r"), Ok(1));
        env.payload_type = POLICY_BUNDLE_TYPE.into();
        assert!(matches!(
            env.check_threshold("x", b"{}", &keys, 1, "r"),
            Err(BundleError::BadSignature { .. })
        ));
    }

    #[test]
    fn duplicate_signatures_by_one_key_count_once() {
        let k = SigningKey::generate().unwrap();
        let k2 = SigningKey::generate().unwrap();
        let keys = KeySet::new([k.public().clone(), k2.public().clone()]);
        let env = Envelope::sign(POLICY_BUNDLE_TYPE, b"p", &[&k, &k]);
        assert_eq!(
            env.check_threshold("x", b"p", &keys, 2, "r"),
            Err(BundleError::ThresholdNotMet {
                role: "r",
                valid: 1,
                threshold: 2
            })
        );
    }
}
