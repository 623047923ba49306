//! The trust root: who may sign what, as TUF separates its roles.
//!
//! - **Root keys** (`keys`, `threshold`): kept offline, sign trust roots only.
//! - **Policy keys** (`policy`): sign policy bundles. A thief of a policy key can sign a
//!   bundle until the office rotates the root, but cannot rotate the root itself, so the
//!   office keeps control of the fleet.
//! - **Registry keys** (`registry`): sign custody records.
//! - **Personnel keys** (`personnel`): sign assignment records (this phone is issued to that
//!   holder, at that clearance, from then until then), so a new phone is assigned without
//!   re-signing the policy.
//!
//! A key holds one role: a root that lists a key under two roles is refused. A root without
//! `policy` (written before the roles were separated) lets its root keys sign bundles too:
//! such a root cannot stop a bundle-key thief from rotating it (`baomi trust new` warns when
//! no `--policy-key` is given).
//!
//! The first root reaches the phone out of band (MDM managed configuration at enrolment) and
//! must be signed by its own threshold. A new root is accepted only if its version is exactly
//! one more and it is signed by a threshold of the current keys *and* of its own keys (TUF
//! 5.3.4), so neither a stolen old key set nor a fabricated new one can rotate alone.

use serde::{Deserialize, Serialize};

use super::envelope::{Envelope, KeySet, TRUST_ROOT_TYPE};
use super::err::BundleError;
use super::keys::{KeyId, PublicKey};
use crate::suite::Suite;
use crate::time::Timestamp;

/// How long a root without `expires_at` vouches for anything (from its `issued_at`): no root
/// is valid forever.
pub const DEFAULT_ROOT_VALIDITY_DAYS: i64 = 365;
/// The longest validity a root may claim (`expires_at - issued_at`).
pub const MAX_ROOT_VALIDITY_DAYS: i64 = 3 * 366;

/// Largest trust root the agent reads.
pub const MAX_TRUST_ROOT_BYTES: usize = 64 * 1024;

/// The signed document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRootDoc {
    /// Starts at 1, grows by exactly 1 per rotation.
    pub version: u64,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Root keys: they sign trust roots (and bundles too when `policy` is absent).
    pub keys: Vec<KeyEntry>,
    /// How many of `keys` must sign.
    pub threshold: u32,
    /// Document registry keys that sign custody records.
    #[serde(default)]
    pub registry: Option<RoleKeys>,
    /// Policy keys that sign bundles (and nothing else); when absent, the root keys do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RoleKeys>,
    /// Personnel keys that sign assignment records; when absent, only the bundle's `holders`
    /// assign phones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personnel: Option<RoleKeys>,
    /// Base64 X25519 public key the office opens upload batches with (sync seals each batch
    /// to it). Signed here so no relay can substitute its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_key: Option<String>,
    /// After this the root no longer vouches for anything new: the device refuses to provision
    /// or rotate to it and freezes (fail-closed) until a rotation arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The cryptographic suite every key it lists, and everything they sign, follows (`intl`,
    /// the default, or `sm`): a key of the other suite is refused.
    #[serde(default, skip_serializing_if = "Suite::is_default")]
    pub suite: Suite,
    /// The SM2 distinguishing ID signatures are made under (`sm` roots; default
    /// `1234567812345678`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm2_id: Option<String>,
}

/// A key listed in a root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Must equal the hex SHA-256 of the key.
    pub keyid: KeyId,
    /// Base64 raw Ed25519 key.
    pub public_key: String,
}

/// Keys and threshold of a role other than the office.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleKeys {
    /// Keys.
    pub keys: Vec<KeyEntry>,
    /// How many must sign.
    pub threshold: u32,
}

impl TrustRootDoc {
    /// A first root (version 1, issued at `issued_at`) of one office key, threshold 1, under
    /// the key's suite, naming the office's upload key and no other role, no expiry: the
    /// smallest office (tests, benchmarks; `baomi trust new` builds the real ones).
    pub fn one_key(key: &PublicKey, upload_key: Option<String>, issued_at: Timestamp) -> Self {
        Self {
            version: 1,
            issued_at,
            keys: vec![KeyEntry::of(key)],
            threshold: 1,
            registry: None,
            policy: None,
            personnel: None,
            upload_key,
            expires_at: None,
            suite: key.suite(),
            sm2_id: None,
        }
    }
}

impl KeyEntry {
    /// The entry for `key`.
    pub fn of(key: &PublicKey) -> Self {
        Self {
            keyid: key.keyid().clone(),
            public_key: key.to_base64(),
        }
    }
}

/// A verified trust root.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustRoot {
    doc: TrustRootDoc,
    office: KeySet,
    registry: KeySet,
    policy: Option<KeySet>,
    personnel: Option<KeySet>,
    envelope_bytes: Vec<u8>,
    digest: String,
}

const WHAT: &str = "trust root";

fn key_set(
    entries: &[KeyEntry],
    threshold: u32,
    role: &str,
    suite: Suite,
    sm2_id: Option<&String>,
) -> Result<KeySet, BundleError> {
    let mut keys = Vec::with_capacity(entries.len());
    for e in entries {
        let k = PublicKey::from_base64(&e.public_key).map_err(|err| {
            BundleError::InvalidTrustRoot(format!("{role} key `{}`: {err}", e.keyid))
        })?;
        if k.suite() != suite {
            return Err(BundleError::InvalidTrustRoot(format!(
                "{role} key `{}` is a key of the {} suite in a trust root of the {suite} suite: every key follows the root's suite",
                e.keyid,
                k.suite()
            )));
        }
        if k.keyid() != &e.keyid {
            return Err(BundleError::InvalidTrustRoot(format!(
                "{role} key id `{}` does not match its key",
                e.keyid
            )));
        }
        keys.push(k);
    }
    let set = KeySet::new(keys).with_sm2_id(sm2_id.cloned());
    if set.len() != entries.len() {
        return Err(BundleError::InvalidTrustRoot(format!(
            "{role} keys are listed twice"
        )));
    }
    if threshold == 0 || threshold as usize > set.len() {
        return Err(BundleError::InvalidTrustRoot(format!(
            "{role} threshold {threshold} must be between 1 and the number of keys ({})",
            set.len()
        )));
    }
    Ok(set)
}

impl TrustRoot {
    fn parse(bytes: &[u8]) -> Result<(Envelope, Vec<u8>, TrustRoot), BundleError> {
        let (env, payload) = Envelope::open(bytes, WHAT, TRUST_ROOT_TYPE, MAX_TRUST_ROOT_BYTES)?;
        let doc: TrustRootDoc =
            serde_json::from_slice(&payload).map_err(|e| BundleError::Malformed {
                what: WHAT,
                reason: e.to_string(),
            })?;
        if doc.version == 0 {
            return Err(BundleError::InvalidTrustRoot("version starts at 1".into()));
        }
        if let Some(e) = doc.expires_at
            && e.0.saturating_sub(doc.issued_at.0) > MAX_ROOT_VALIDITY_DAYS * 86_400_000
        {
            return Err(BundleError::InvalidTrustRoot(format!(
                "expires_at {e} is more than {MAX_ROOT_VALIDITY_DAYS} days after issued_at {}",
                doc.issued_at
            )));
        }
        if doc.sm2_id.is_some() && doc.suite != Suite::Sm {
            return Err(BundleError::InvalidTrustRoot(
                "sm2_id is for a trust root of the sm suite".into(),
            ));
        }
        if doc
            .sm2_id
            .as_ref()
            .is_some_and(|id| id.is_empty() || id.len() > 1024)
        {
            return Err(BundleError::InvalidTrustRoot(
                "sm2_id must be 1 to 1,024 bytes".into(),
            ));
        }
        let (suite, id) = (doc.suite, doc.sm2_id.as_ref());
        let office = key_set(&doc.keys, doc.threshold, "office", suite, id)?;
        match (&doc.upload_key, suite) {
            (Some(k), Suite::Intl) if decode_upload_key(k).is_none() => {
                return Err(BundleError::InvalidTrustRoot(
                    "upload_key must be 32 bytes of base64 (an X25519 public key)".into(),
                ));
            }
            (Some(k), Suite::Sm) if decode_sm2_upload_key(k).is_none() => {
                return Err(BundleError::InvalidTrustRoot(
                    "an sm trust root's upload_key must be an SM2 public key (65 bytes of base64, 04 || x || y), not an international one".into(),
                ));
            }
            _ => {}
        }
        let registry = match &doc.registry {
            Some(r) => key_set(&r.keys, r.threshold, "registry", suite, id)?,
            None => KeySet::default(),
        };
        let policy = match &doc.policy {
            Some(r) => Some(key_set(&r.keys, r.threshold, "policy", suite, id)?),
            None => None,
        };
        let personnel = match &doc.personnel {
            Some(r) => Some(key_set(&r.keys, r.threshold, "personnel", suite, id)?),
            None => None,
        };
        // One role per key: a policy, registry or personnel key that could also sign roots
        // would let its thief rotate the root; a personnel key that could also sign bundles or
        // custody would let one office's key do another's work. (A registry key that also signs
        // bundles stays allowed, as roots written before the personnel role had it.)
        let pairs = [
            ("root", Some(&office), "policy", policy.as_ref()),
            ("root", Some(&office), "registry", Some(&registry)),
            ("root", Some(&office), "personnel", personnel.as_ref()),
            ("policy", policy.as_ref(), "personnel", personnel.as_ref()),
            ("registry", Some(&registry), "personnel", personnel.as_ref()),
        ];
        for (role_a, a, role_b, b) in pairs {
            let (Some(a), Some(b)) = (a, b) else { continue };
            if let Some(k) = b.iter().find(|k| a.iter().any(|o| o == *k)) {
                return Err(BundleError::InvalidTrustRoot(format!(
                    "key `{}` is both a {role_a} key and a {role_b} key: a key holds one role",
                    k.keyid()
                )));
            }
        }
        let root = TrustRoot {
            doc,
            office,
            registry,
            policy,
            personnel,
            envelope_bytes: bytes.to_vec(),
            digest: super::keys::hex(&super::envelope::payload_digest(&payload)),
        };
        Ok((env, payload, root))
    }

    /// Provisions the first root: it must be signed by a threshold of its own keys.
    pub fn from_self_signed(bytes: &[u8]) -> Result<TrustRoot, BundleError> {
        let (env, payload, root) = Self::parse(bytes)?;
        env.check_threshold(
            WHAT,
            &payload,
            &root.office,
            root.threshold(),
            "trust root's own keys",
        )?;
        Ok(root)
    }

    /// The version an envelope claims, read without checking any signature: only to tell an
    /// older or equal copy (skipped) from one worth verifying. Never install on it.
    pub fn claimed_version(bytes: &[u8]) -> Result<u64, BundleError> {
        Self::parse(bytes).map(|(_, _, root)| root.doc.version)
    }

    /// Refuses a root past its `expires_at` (at provisioning and rotation).
    pub fn check_current(&self, now: Timestamp) -> Result<(), BundleError> {
        let expires_at = self.expires_at_or_default();
        if now >= expires_at {
            return Err(BundleError::Expired { expires_at, now });
        }
        Ok(())
    }

    /// When the root expires: its `expires_at`, or [`DEFAULT_ROOT_VALIDITY_DAYS`] after its
    /// `issued_at` when it names none.
    pub fn expires_at(&self) -> Option<Timestamp> {
        Some(self.expires_at_or_default())
    }

    fn expires_at_or_default(&self) -> Timestamp {
        self.doc.expires_at.unwrap_or_else(|| {
            self.doc
                .issued_at
                .plus_seconds(DEFAULT_ROOT_VALIDITY_DAYS * 86_400)
        })
    }

    /// Reloads a root the agent verified and stored itself.
    pub fn from_stored(bytes: &[u8]) -> Result<TrustRoot, BundleError> {
        Self::from_self_signed(bytes)
    }

    /// Verifies a rotation to `bytes` (see the module docs) and returns the new root.
    pub fn rotate(&self, bytes: &[u8]) -> Result<TrustRoot, BundleError> {
        let (env, payload, next) = Self::parse(bytes)?;
        if next.doc.version != self.doc.version.saturating_add(1) {
            return Err(BundleError::TrustRootVersion {
                installed: self.doc.version,
                offered: next.doc.version,
            });
        }
        env.check_threshold(
            WHAT,
            &payload,
            &self.office,
            self.threshold(),
            "current trust root",
        )?;
        env.check_threshold(
            WHAT,
            &payload,
            &next.office,
            next.threshold(),
            "new trust root",
        )?;
        Ok(next)
    }

    /// Builds and signs a root document (the admin side).
    pub fn sign(doc: &TrustRootDoc, keys: &[&super::keys::SigningKey]) -> Envelope {
        let payload = serde_json::to_vec_pretty(doc).unwrap_or_default();
        let id = doc
            .sm2_id
            .as_deref()
            .unwrap_or(crate::suite::sm::DEFAULT_ID);
        Envelope::sign_with_id(id, TRUST_ROOT_TYPE, &payload, keys)
    }

    /// Version.
    pub fn version(&self) -> u64 {
        self.doc.version
    }

    /// Office threshold.
    pub fn threshold(&self) -> usize {
        self.doc.threshold as usize
    }

    /// Root keys (they sign trust roots).
    pub fn office_keys(&self) -> &KeySet {
        &self.office
    }

    /// The keys and threshold that sign policy bundles: the policy role, or the root keys on
    /// a root written before the roles were separated.
    pub fn policy_keys(&self) -> (&KeySet, usize) {
        match (&self.policy, &self.doc.policy) {
            (Some(set), Some(r)) => (set, r.threshold as usize),
            _ => (&self.office, self.threshold()),
        }
    }

    /// Whether bundles are signed by keys of their own (not the root keys).
    pub fn roles_separated(&self) -> bool {
        self.policy.is_some()
    }

    /// Registry keys and threshold (threshold 0 when no registry is configured).
    pub fn registry_keys(&self) -> (&KeySet, usize) {
        (
            &self.registry,
            self.doc
                .registry
                .as_ref()
                .map_or(0, |r| r.threshold as usize),
        )
    }

    /// Personnel keys and threshold, if the root names any.
    pub fn personnel_keys(&self) -> Option<(&KeySet, usize)> {
        let threshold = self.doc.personnel.as_ref()?.threshold as usize;
        self.personnel.as_ref().map(|k| (k, threshold))
    }

    /// The suite the root, its keys and everything they sign follow.
    pub fn suite(&self) -> Suite {
        self.doc.suite
    }

    /// The SM2 distinguishing ID signatures under this root are made with.
    pub fn sm2_id(&self) -> &str {
        self.doc
            .sm2_id
            .as_deref()
            .unwrap_or(crate::suite::sm::DEFAULT_ID)
    }

    /// The office's X25519 upload key, if the root names one (`intl` roots).
    pub fn upload_key(&self) -> Option<[u8; 32]> {
        match self.doc.suite {
            Suite::Intl => self.doc.upload_key.as_deref().and_then(decode_upload_key),
            Suite::Sm => None,
        }
    }

    /// The office's SM2 upload key, if the root names one (`sm` roots).
    pub fn sm2_upload_key(&self) -> Option<crate::suite::sm::Sm2PublicKey> {
        match self.doc.suite {
            Suite::Sm => self
                .doc
                .upload_key
                .as_deref()
                .and_then(decode_sm2_upload_key),
            Suite::Intl => None,
        }
    }

    /// The office's upload key in the root's suite, if the root names one: what sync seals
    /// batches and session keys to.
    pub fn upload_recipient(&self) -> Option<crate::sync::seal::Recipient> {
        match self.doc.suite {
            Suite::Intl => self.upload_key().map(crate::sync::seal::Recipient::X25519),
            Suite::Sm => self.sm2_upload_key().map(crate::sync::seal::Recipient::Sm2),
        }
    }

    /// The document.
    pub fn doc(&self) -> &TrustRootDoc {
        &self.doc
    }

    /// Hex SHA-256 of the signed payload: the root's identity whatever the envelope's
    /// formatting (check-in reports it; the office compares it with what it published).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The payload digest of a root envelope, read without checking any signature (the
    /// office, for roots it published itself).
    pub fn claimed_digest(bytes: &[u8]) -> Result<String, BundleError> {
        Self::parse(bytes).map(|(_, _, root)| root.digest)
    }

    /// The exact envelope bytes, for storing.
    pub fn envelope_bytes(&self) -> &[u8] {
        &self.envelope_bytes
    }
}

fn decode_sm2_upload_key(b64: &str) -> Option<crate::suite::sm::Sm2PublicKey> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .ok()?;
    (raw.len() == crate::suite::sm::PUBLIC_KEY_LEN)
        .then(|| crate::suite::sm::Sm2PublicKey::from_bytes(&raw).ok())
        .flatten()
}

fn decode_upload_key(b64: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .ok()?
        .try_into()
        .ok()
}
