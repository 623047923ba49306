//! What more than one core test file builds: trust roots, signed as an office would.

#![allow(dead_code, reason = "each test file uses some of these")]

use baomi_core::bundle::SigningKey;
use baomi_core::bundle::TrustRoot;
use baomi_core::bundle::trust::{KeyEntry, TrustRootDoc};
use baomi_core::time::Timestamp;

/// A trust root naming `keys`, any `threshold` of which sign bundles, issued at `issued_at`;
/// no upload key, no registry, no expiry (set them on the result where a test needs them).
pub fn root_doc(
    version: u64,
    keys: &[&SigningKey],
    threshold: u32,
    issued_at: Timestamp,
) -> TrustRootDoc {
    TrustRootDoc {
        upload_key: None,
        expires_at: None,
        version,
        issued_at,
        keys: keys.iter().map(|k| KeyEntry::of(k.public())).collect(),
        threshold,
        registry: None,
    }
}

/// `doc` signed by `signers`: the envelope an agent is provisioned with.
pub fn signed_root(doc: &TrustRootDoc, signers: &[&SigningKey]) -> Vec<u8> {
    TrustRoot::sign(doc, signers).to_json().into_bytes()
}
