//! Fixtures the fuzz targets share: a fixed office key (test-only; it protects nothing), the
//! trust root it signs, the baseline policy.

use baomi_core::bundle::trust::{KeyEntry, TrustRootDoc};
use baomi_core::bundle::{SigningKey, TrustRoot};
use baomi_core::time::Timestamp;

/// The office key every seed bundle and custody record is signed with (the policy and
/// registry roles).
pub const OFFICE_KEY: &str = include_str!("../office-key.json");
/// The root key the fixture root is signed with: a key holds one role, so roots are signed
/// by a key of their own (test-only; it protects nothing).
pub const ROOT_KEY: &str = include_str!("../root-key.json");
/// The baseline policy.
pub const BASELINE: &str = include_str!("../../policies/baseline.json");
/// A fixed "now" inside the seeds' validity.
pub const NOW_MS: i64 = 1_795_800_000_000;

/// The office signing key.
pub fn office() -> SigningKey {
    SigningKey::from_file_json(OFFICE_KEY).expect("the fixture key parses")
}

/// The trust root: the root key signs it, the office key holds the policy and registry
/// roles; verified.
pub fn trust_root() -> TrustRoot {
    let key = office();
    let root_key = SigningKey::from_file_json(ROOT_KEY).expect("the fixture root key parses");
    let doc = TrustRootDoc {
        version: 1,
        issued_at: Timestamp(NOW_MS - 86_400_000),
        keys: vec![KeyEntry::of(root_key.public())],
        threshold: 1,
        registry: Some(baomi_core::bundle::trust::RoleKeys {
            keys: vec![KeyEntry::of(key.public())],
            threshold: 1,
        }),
        // The X25519 base point: any valid key lets the device seal its session key and
        // batches, so the sync gets past `NoUploadKey` to the answers the fuzzer writes.
        suite: Default::default(),
        sm2_id: None,
        personnel: None,
        upload_key: Some("CQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
        expires_at: None,
        policy: Some(baomi_core::bundle::trust::RoleKeys {
            keys: vec![KeyEntry::of(key.public())],
            threshold: 1,
        }),
    };
    let env = TrustRoot::sign(&doc, &[&root_key]).to_json();
    TrustRoot::from_self_signed(env.as_bytes()).expect("the fixture root verifies")
}
