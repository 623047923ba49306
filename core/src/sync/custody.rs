//! The document registry's custody feed: signed sign-out and return records.
//!
//! The registry (the office that signs classified documents out and back in) signs each record
//! with a registry key listed in the trust root. The device applies a record only if it
//! verifies under the trust root's registry keys and threshold and names the device's holder;
//! a sign-out starts custody even if the document was never scanned, and only a signed return
//! ends it.

use serde::{Deserialize, Serialize};

use crate::bundle::envelope::{CUSTODY_RECORD_TYPE, Envelope};
use crate::bundle::keys::SigningKey;
use crate::bundle::{BundleError, TrustRoot};
use crate::level::Classification;
use crate::time::Timestamp;

/// Largest custody record read.
pub const MAX_CUSTODY_RECORD_BYTES: usize = 16 * 1024;

const WHAT: &str = "custody record";

/// Sign-out or return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustodyAction {
    /// The holder signed the document out.
    SignOut,
    /// The document came back.
    Return,
}

/// The signed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyRecordDoc {
    /// Registry's id of this record (unique).
    pub record_id: String,
    /// Personnel id of the holder (as in the policy's `holders`).
    pub holder: String,
    /// Document id.
    pub document: String,
    /// Its level.
    pub classification: Classification,
    /// Sign-out or return.
    pub action: CustodyAction,
    /// When it happened.
    pub at: Timestamp,
}

/// Signs a record with registry keys.
pub fn sign_custody_record(
    doc: &CustodyRecordDoc,
    keys: &[&SigningKey],
) -> Result<Envelope, BundleError> {
    let payload = serde_json::to_vec(doc).map_err(|e| BundleError::Malformed {
        what: WHAT,
        reason: e.to_string(),
    })?;
    Ok(Envelope::sign(CUSTODY_RECORD_TYPE, &payload, keys))
}

/// Verifies a record against the trust root's registry role.
pub fn verify_custody_record(
    bytes: &[u8],
    trust: &TrustRoot,
) -> Result<CustodyRecordDoc, BundleError> {
    let (env, payload) =
        Envelope::open(bytes, WHAT, CUSTODY_RECORD_TYPE, MAX_CUSTODY_RECORD_BYTES)?;
    let (keys, threshold) = trust.registry_keys();
    if threshold == 0 {
        return Err(BundleError::InvalidTrustRoot(
            "the trust root lists no registry keys: custody records cannot be trusted".into(),
        ));
    }
    env.check_threshold(WHAT, &payload, keys, threshold, "registry")?;
    serde_json::from_slice(&payload).map_err(|e| BundleError::Malformed {
        what: WHAT,
        reason: e.to_string(),
    })
}

/// Reads a record's payload without checking its signatures: only for a record verified by
/// [`verify_custody_record`] when it was stored (the office indexing what it accepted).
pub fn read_verified_custody_record(bytes: &[u8]) -> Result<CustodyRecordDoc, BundleError> {
    let (_, payload) = Envelope::open(bytes, WHAT, CUSTODY_RECORD_TYPE, MAX_CUSTODY_RECORD_BYTES)?;
    serde_json::from_slice(&payload).map_err(|e| BundleError::Malformed {
        what: WHAT,
        reason: e.to_string(),
    })
}
