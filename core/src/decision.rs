//! What the core answers for each event.

use std::borrow::Cow;
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::policy::model::Severity;
use crate::posture::Posture;
use crate::time::Timestamp;

/// The verdict on the event's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing forbids it.
    Allow,
    /// An enforcing rule forbids it: the platform blocks it where it can.
    Deny,
    /// Only monitoring rules object: allowed, but recorded.
    Warn,
}

impl Verdict {
    /// Name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Warn => "warn",
        }
    }
}

/// The answer to one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The event's time.
    pub at: Timestamp,
    /// The event's `type`.
    pub event_type: &'static str,
    /// Allow, deny or warn.
    pub verdict: Verdict,
    /// Whether this is a breach to record and report.
    pub violation: bool,
    /// Ids of the rules that matched (policy order; agent rules start with `baomi.`).
    pub rules: Vec<Arc<str>>,
    /// Highest severity among the matched rules.
    pub severity: Option<Severity>,
    /// One sentence for the holder and the officer.
    pub reason: Cow<'static, str>,
    /// Full desired device state after the event.
    pub posture: Arc<Posture>,
    /// Whether `posture` differs from the one before the event.
    pub posture_changed: bool,
}

impl Serialize for Decision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Decision", 8)?;
        st.serialize_field("at", &self.at)?;
        st.serialize_field("event", self.event_type)?;
        st.serialize_field("verdict", &self.verdict)?;
        st.serialize_field("violation", &self.violation)?;
        st.serialize_field("rules", &self.rules)?;
        st.serialize_field("severity", &self.severity)?;
        st.serialize_field("reason", &self.reason)?;
        st.serialize_field("posture", &*self.posture)?;
        st.serialize_field("posture_changed", &self.posture_changed)?;
        st.end()
    }
}
