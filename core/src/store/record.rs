//! What a violation record holds once decrypted.

use serde::{Deserialize, Serialize};

use crate::decision::{Decision, Verdict};
use crate::event::Event;
use crate::policy::model::Severity;
use crate::posture::Posture;

/// One recorded violation: the event, the decision, and the policy that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViolationRecord {
    /// The event as reported by the platform.
    pub event: Event,
    /// Deny or warn.
    pub verdict: Verdict,
    /// Matched rule ids.
    pub rules: Vec<String>,
    /// Highest severity.
    pub severity: Option<Severity>,
    /// Why.
    pub reason: String,
    /// Posture in force after the event.
    pub posture: Posture,
    /// Policy id and version that decided.
    pub policy: Option<PolicyRef>,
}

/// Which policy decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// Policy id.
    pub id: String,
    /// Bundle version (0 for an unsigned authoring policy).
    pub version: u64,
}

impl ViolationRecord {
    /// From an event and its decision.
    pub fn new(event: &Event, d: &Decision, policy: Option<PolicyRef>) -> Self {
        Self {
            event: event.clone(),
            verdict: d.verdict,
            rules: d.rules.iter().map(|r| r.to_string()).collect(),
            severity: d.severity,
            reason: d.reason.to_string(),
            posture: (*d.posture).clone(),
            policy,
        }
    }
}

/// A record with its position in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredViolation {
    /// Sequence number (1-based, contiguous, never reused).
    pub seq: u64,
    /// The record's chain tag (its link; uploaded so the server's acknowledgement names it).
    #[serde(skip)]
    pub tag: [u8; 16],
    /// The record.
    #[serde(flatten)]
    pub record: ViolationRecord,
}

/// Largest record, as uploaded JSON, that goes to the office whole; a larger one (an
/// inventory of 200,000 packages) goes compacted ([`ViolationRecord::compacted`]).
pub const MAX_UPLOAD_RECORD_BYTES: usize = 256 * 1024;

/// Longest list and longest text a compacted record keeps.
const COMPACT_LIST: usize = 200;
const COMPACT_TEXT: usize = 1024;

impl ViolationRecord {
    /// The record as uploaded JSON, and its size.
    pub fn upload_size(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |v| v.len())
    }

    /// A copy that fits [`MAX_UPLOAD_RECORD_BYTES`]: every list cut to its first 200 items and
    /// every text to 1,024 characters, with the reason naming the SHA-256 and size of the full
    /// record (which stays on the device until acknowledged, and in exports). `None` if it
    /// fits as it is.
    pub fn compacted(&self) -> Option<ViolationRecord> {
        let full = serde_json::to_vec(self).ok()?;
        if full.len() <= MAX_UPLOAD_RECORD_BYTES {
            return None;
        }
        let mut v: serde_json::Value = serde_json::from_slice(&full).ok()?;
        fn shrink(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Array(a) => {
                    a.truncate(COMPACT_LIST);
                    a.iter_mut().for_each(shrink);
                }
                serde_json::Value::Object(o) => o.values_mut().for_each(shrink),
                serde_json::Value::String(s) if s.chars().count() > COMPACT_TEXT => {
                    *s = s.chars().take(COMPACT_TEXT).collect();
                }
                _ => {}
            }
        }
        shrink(&mut v);
        let mut out: ViolationRecord = serde_json::from_value(v).ok()?;
        out.reason = format!(
            "{} [compacted for upload: the full record is {} bytes, SHA-256 {}]",
            out.reason,
            full.len(),
            crate::bundle::keys::hex_digest(&full)
        );
        Some(out)
    }
}
