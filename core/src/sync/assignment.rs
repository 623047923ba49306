//! Personnel assignment records: "this phone is issued to that holder, at that clearance,
//! from then until then", signed by the personnel office's keys that the trust root names.
//!
//! They travel in the custody feed (one cursor, one proof over each download), so a new
//! phone is assigned in seconds without re-signing the policy. On the device the newest
//! record for it (by `issued_at`, then `record_id`) is kept; while it is in force it decides
//! the holder and the clearance, ahead of the bundle's `holders`; outside its validity the
//! bundle's `holders` decide again (and with neither the phone runs closed, as before).

use serde::{Deserialize, Serialize};

use crate::bundle::envelope::{ASSIGNMENT_RECORD_TYPE, Envelope};
use crate::bundle::keys::SigningKey;
use crate::bundle::{BundleError, TrustRoot};
use crate::level::Clearance;
use crate::time::Timestamp;

/// Largest assignment record read.
pub const MAX_ASSIGNMENT_RECORD_BYTES: usize = 16 * 1024;
/// Longest field (record id, holder, device) an assignment may carry.
pub const MAX_ASSIGNMENT_FIELD_BYTES: usize = 256;

const WHAT: &str = "assignment record";

/// The signed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentRecordDoc {
    /// The personnel office's id of this record (unique).
    pub record_id: String,
    /// The device id (as enrolled) assigned.
    pub device: String,
    /// Personnel id of the holder it is issued to.
    pub holder: String,
    /// The holder's clearance.
    pub clearance: Clearance,
    /// From when the assignment holds.
    pub valid_from: Timestamp,
    /// Until when (exclusive); open-ended when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
    /// When the personnel office signed it: a newer record for the device replaces an older.
    pub issued_at: Timestamp,
}

impl AssignmentRecordDoc {
    /// Whether it is in force at `now`.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.valid_from <= now && self.valid_until.is_none_or(|u| now < u)
    }

    /// The next instant its being in force changes after `now`, if any.
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        [Some(self.valid_from), self.valid_until]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .min()
    }

    /// Whether `self` replaces `other` (issued later; the record id breaks a tie so every
    /// device settles on the same record whatever order they arrived in).
    pub fn supersedes(&self, other: &AssignmentRecordDoc) -> bool {
        (self.issued_at, &self.record_id) > (other.issued_at, &other.record_id)
    }

    fn check(&self) -> Result<(), BundleError> {
        let bad = |reason: String| BundleError::Malformed { what: WHAT, reason };
        for (name, v) in [
            ("record_id", &self.record_id),
            ("device", &self.device),
            ("holder", &self.holder),
        ] {
            if v.trim().is_empty() || v.len() > MAX_ASSIGNMENT_FIELD_BYTES {
                return Err(bad(format!(
                    "{name} must be 1 to {MAX_ASSIGNMENT_FIELD_BYTES} bytes"
                )));
            }
        }
        if self.valid_until.is_some_and(|u| u <= self.valid_from) {
            return Err(bad("valid_until must be after valid_from".into()));
        }
        Ok(())
    }
}

/// Signs a record with personnel keys.
pub fn sign_assignment_record(
    doc: &AssignmentRecordDoc,
    keys: &[&SigningKey],
) -> Result<Envelope, BundleError> {
    doc.check()?;
    let payload = serde_json::to_vec(doc).map_err(|e| BundleError::Malformed {
        what: WHAT,
        reason: e.to_string(),
    })?;
    Ok(Envelope::sign(ASSIGNMENT_RECORD_TYPE, &payload, keys))
}

/// Verifies a record against the trust root's personnel role.
pub fn verify_assignment_record(
    bytes: &[u8],
    trust: &TrustRoot,
) -> Result<AssignmentRecordDoc, BundleError> {
    let (env, payload) = Envelope::open(
        bytes,
        WHAT,
        ASSIGNMENT_RECORD_TYPE,
        MAX_ASSIGNMENT_RECORD_BYTES,
    )?;
    let (keys, threshold) = trust.personnel_keys().ok_or_else(|| {
        BundleError::InvalidTrustRoot(
            "the trust root lists no personnel keys: assignment records cannot be trusted".into(),
        )
    })?;
    env.check_threshold(WHAT, &payload, keys, threshold, "personnel")?;
    read_payload(&payload)
}

/// Reads a record's payload without checking its signatures: only for a record verified by
/// [`verify_assignment_record`] when it was stored.
pub fn read_verified_assignment_record(bytes: &[u8]) -> Result<AssignmentRecordDoc, BundleError> {
    let (_, payload) = Envelope::open(
        bytes,
        WHAT,
        ASSIGNMENT_RECORD_TYPE,
        MAX_ASSIGNMENT_RECORD_BYTES,
    )?;
    read_payload(&payload)
}

fn read_payload(payload: &[u8]) -> Result<AssignmentRecordDoc, BundleError> {
    let doc: AssignmentRecordDoc =
        serde_json::from_slice(payload).map_err(|e| BundleError::Malformed {
            what: WHAT,
            reason: e.to_string(),
        })?;
    doc.check()?;
    Ok(doc)
}
