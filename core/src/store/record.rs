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
