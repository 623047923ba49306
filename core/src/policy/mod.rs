//! The policy document: what the security office writes and signs.
//!
//! Parsing and validation are separate phases with their own errors (`err`): parsing turns
//! JSON into the typed [`model`], validation checks what types cannot say (references resolve,
//! ids are unique, coordinates are on Earth). Both point at the offending field's path and, when
//! the field sits inside a rule, at the rule's id.

pub mod err;
pub mod model;
mod validate;

pub use err::{PolicyError, PolicyErrorKind, PolicyErrors};
pub use model::*;
pub use validate::RESERVED_RULE_PREFIX;
pub(crate) use validate::{mime_matches, parse_bssid, parse_hhmm, parse_uuid};

/// Only this document format is understood; a newer one is refused, not half-read.
pub const FORMAT: u32 = 1;

/// Upper bound on condition nesting, so a hostile policy cannot exhaust the stack of the
/// evaluator (serde already bounds JSON nesting at 128).
pub const MAX_CONDITION_DEPTH: usize = 16;
/// Largest policy document read (the same as a bundle's limit): refused before parsing.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;
/// Most rules in one policy (a province's policy has tens; the benchmarks run 1,000).
pub const MAX_RULES: usize = 2_000;
/// Most app ids across all app sets and both platforms.
pub const MAX_APP_IDS: usize = 10_000;
/// Most zones.
pub const MAX_ZONES: usize = 1_000;
/// Longest display name of an app (characters).
pub const MAX_APP_NAME_CHARS: usize = 64;

impl Policy {
    /// Parses and validates a policy document.
    ///
    /// The typed parse runs straight off the bytes (the fast path used for every bundle);
    /// only on failure is the document re-read to locate the error precisely.
    pub fn from_json(bytes: &[u8]) -> Result<Policy, PolicyErrors> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyErrors::one(err::PolicyError::invalid(
                "",
                None,
                format!(
                    "the policy is {} bytes, over the {MAX_POLICY_BYTES}-byte limit",
                    bytes.len()
                ),
            )));
        }
        let policy: Policy = match serde_json::from_slice(bytes) {
            Ok(p) => p,
            Err(_) => return Err(PolicyErrors::one(err::locate_parse_error(bytes))),
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Checks everything the types cannot: see the module docs.
    pub fn validate(&self) -> Result<(), PolicyErrors> {
        let errors = validate::validate(self);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PolicyErrors(errors))
        }
    }
}

/// A policy that passed [`Policy::validate`]. Only [`Policy::into_valid`] makes one, so the
/// compiler can trust it without validating again (a bundle is validated once, in
/// verification, not a second time when compiled).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidPolicy(Policy);

impl Policy {
    /// Validates and marks the policy as valid.
    pub fn into_valid(self) -> Result<ValidPolicy, PolicyErrors> {
        self.validate()?;
        Ok(ValidPolicy(self))
    }
}

impl ValidPolicy {
    /// The policy.
    pub fn into_inner(self) -> Policy {
        self.0
    }
}

impl std::ops::Deref for ValidPolicy {
    type Target = Policy;
    fn deref(&self) -> &Policy {
        &self.0
    }
}
