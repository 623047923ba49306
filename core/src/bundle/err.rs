//! Why a bundle or trust root was refused. One variant per attack or defect, so the officer's
//! console (and the tests) can tell a rollback from a forgery.

use crate::policy::PolicyErrors;
use crate::time::Timestamp;

/// A refused bundle or trust root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Larger than the agent will read (endless-data attack).
    #[error("{what} is {size} bytes, over the {limit}-byte limit")]
    Oversized {
        /// What was read.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not an envelope, bad base64, or a payload of the wrong shape.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was read.
        what: &'static str,
        /// Details.
        reason: String,
    },
    /// An envelope of another kind (e.g. a trust root offered as a policy bundle).
    #[error("payload type `{found}` where `{expected}` was expected")]
    WrongPayloadType {
        /// Wanted.
        expected: &'static str,
        /// Found.
        found: String,
    },
    /// No signatures at all.
    #[error("{what} carries no signatures")]
    Unsigned {
        /// What was read.
        what: &'static str,
    },
    /// A signature from a trusted key that does not verify (forgery or corruption).
    #[error("signature by key `{keyid}` does not verify")]
    BadSignature {
        /// The key.
        keyid: String,
    },
    /// Signed only by keys the trust root does not list.
    #[error("signed by unknown key `{keyid}` (not in the {role})")]
    UnknownKey {
        /// The key.
        keyid: String,
        /// Which key set was consulted.
        role: &'static str,
    },
    /// Too few distinct trusted keys signed.
    #[error("{valid} valid signature(s) from the {role}, {threshold} required")]
    ThresholdNotMet {
        /// Whose keys.
        role: &'static str,
        /// Distinct valid signatures.
        valid: usize,
        /// Required.
        threshold: usize,
    },
    /// Not newer than what is installed.
    #[error(
        "version {offered} is not newer than the installed version {installed} (rollback refused)"
    )]
    Rollback {
        /// Installed version.
        installed: u64,
        /// Offered version.
        offered: u64,
    },
    /// Issued more than a day after the device's time: dated to push the device's clock
    /// forward (so the office's next bundle would look expired).
    #[error("issued at {issued_at}, more than a day after now ({now}): refused")]
    IssuedInFuture {
        /// Claimed signing time.
        issued_at: Timestamp,
        /// The device's time.
        now: Timestamp,
    },
    /// Past its expiry (freeze attack, or a policy nobody renewed).
    #[error("expired at {expires_at} (now {now}): a frozen policy is refused")]
    Expired {
        /// Expiry.
        expires_at: Timestamp,
        /// Time of the check.
        now: Timestamp,
    },
    /// Claims a validity longer than the agent accepts (a stolen key must not sign for years).
    #[error("valid for {days} days, more than the {max_days} days a bundle may be")]
    ValidityTooLong {
        /// Claimed validity.
        days: i64,
        /// Most accepted.
        max_days: i64,
    },
    /// For a different policy than the one this device runs.
    #[error("bundle is for policy `{found}`, this device runs `{expected}`")]
    WrongPolicyId {
        /// Installed policy id.
        expected: String,
        /// Offered policy id.
        found: String,
    },
    /// Signed, but the policy inside does not validate.
    #[error("invalid policy: {0}")]
    InvalidPolicy(PolicyErrors),
    /// A trust root whose version does not follow the installed one.
    #[error(
        "trust root version {offered} does not follow the installed version {installed} (must be {installed} + 1)"
    )]
    TrustRootVersion {
        /// Installed version.
        installed: u64,
        /// Offered version.
        offered: u64,
    },
    /// A trust root whose content is inconsistent (threshold above key count, bad keys).
    #[error("invalid trust root: {0}")]
    InvalidTrustRoot(String),
}
