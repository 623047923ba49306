//! Signed policy bundles and the trust root that vouches for them.
//!
//! Envelope: DSSE-style `{payload_type, payload (base64), signatures[{keyid, sig}]}`. Each
//! Ed25519 signature covers `PAE(payload_type, SHA-256(payload bytes))`, i.e. the exact bytes
//! shipped, bound to their type: nothing is re-serialised before verifying, and a trust root
//! can never be replayed as a policy (or a custody record as either).
//!
//! Verification follows TUF's client workflow, one function per step (`verify`), and nothing
//! is installed before every step has passed.

pub mod envelope;
pub mod err;
pub mod keys;
pub mod trust;
pub mod verify;

pub use envelope::{Envelope, POLICY_BUNDLE_TYPE, TRUST_ROOT_TYPE};
pub use err::BundleError;
pub use keys::{KeyId, PublicKey, SigningKey};
pub use trust::TrustRoot;
pub use verify::{
    BundleHeader, Installed, MAX_BUNDLE_BYTES, MAX_BUNDLE_VALIDITY_DAYS, MAX_ISSUED_AHEAD_MS,
    VerifiedBundle, read_unverified, sign_bundle, sign_bundle_with_id, verify_bundle,
    verify_signed,
};
