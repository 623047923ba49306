//! The two ordered ladders the policy speaks in: who the holder is cleared for, and how secret
//! a document is. Order matters ("at least X"), so both derive `Ord` in ladder order.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Clearance of the phone's holder (涉密人员 category). Comes only from a signed source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clearance {
    /// Not classified personnel.
    None,
    /// 一般涉密人员.
    General,
    /// 重要涉密人员.
    Important,
    /// 核心涉密人员.
    Core,
}

/// Classification of a document (secrecy level), lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// 工作秘密: work secret, not a state secret.
    WorkSecret,
    /// 秘密.
    Secret,
    /// 机密.
    HighlySecret,
    /// 绝密.
    TopSecret,
}

/// A level name that is not on its ladder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {ladder} `{value}`, expected one of: {expected}")]
pub struct UnknownLevel {
    ladder: &'static str,
    value: String,
    expected: &'static str,
}

impl Clearance {
    /// All levels, lowest first.
    pub const ALL: [Clearance; 4] = [Self::None, Self::General, Self::Important, Self::Core];

    /// The name used in policies, events and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::General => "general",
            Self::Important => "important",
            Self::Core => "core",
        }
    }
}

impl Classification {
    /// All levels, lowest first.
    pub const ALL: [Classification; 4] = [
        Self::WorkSecret,
        Self::Secret,
        Self::HighlySecret,
        Self::TopSecret,
    ];

    /// The name used in policies, events and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WorkSecret => "work_secret",
            Self::Secret => "secret",
            Self::HighlySecret => "highly_secret",
            Self::TopSecret => "top_secret",
        }
    }

    /// True for 秘密 and above: the levels the State Secrets Law covers.
    pub fn is_state_secret(self) -> bool {
        self >= Self::Secret
    }
}

impl FromStr for Clearance {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownLevel {
                ladder: "clearance",
                value: s.to_owned(),
                expected: "none, general, important, core",
            })
    }
}

impl FromStr for Classification {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownLevel {
                ladder: "classification",
                value: s.to_owned(),
                expected: "work_secret, secret, highly_secret, top_secret",
            })
    }
}

impl fmt::Display for Clearance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladders_are_ordered_lowest_first() {
        assert!(Clearance::None < Clearance::General);
        assert!(Clearance::Important < Clearance::Core);
        assert!(Classification::WorkSecret < Classification::Secret);
        assert!(Classification::HighlySecret < Classification::TopSecret);
        assert!(!Classification::WorkSecret.is_state_secret());
        assert!(Classification::Secret.is_state_secret());
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for c in Clearance::ALL {
            assert_eq!(c.as_str().parse::<Clearance>(), Ok(c));
        }
        for c in Classification::ALL {
            assert_eq!(c.as_str().parse::<Classification>(), Ok(c));
        }
        let err = "secret".parse::<Clearance>().unwrap_err();
        assert!(err.to_string().contains("unknown clearance `secret`"));
    }
}
