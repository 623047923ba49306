//! Policy bundle verification, one function per step (numbered as in the module docs of
//! [`super`]). The payload is `{policy_id, version, issued_at, expires_at, policy}`.

use serde::{Deserialize, Serialize};

use super::envelope::{Envelope, POLICY_BUNDLE_TYPE, payload_digest};
use super::err::BundleError;
use super::keys::{SigningKey, hex};
use super::trust::TrustRoot;
use crate::policy::{Policy, ValidPolicy};
use crate::time::Timestamp;

/// Largest bundle the agent reads (a 1,000-rule policy is about 200 KB).
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;

/// Longest validity (`expires_at - issued_at`) a bundle may claim: a bundle signed with stolen
/// keys cannot outlive this, and a device offline that long freezes.
pub const MAX_BUNDLE_VALIDITY_DAYS: i64 = 90;

/// How far ahead of the device's time a bundle's `issued_at` may be (clocks differ; more than
/// this is a bundle dated to move the device's high-water time, refused).
pub const MAX_ISSUED_AHEAD_MS: i64 = 86_400_000;

const WHAT: &str = "policy bundle";

/// The bundle's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleHeader {
    /// Policy identity.
    pub policy_id: String,
    /// Monotonic version.
    pub version: u64,
    /// Signing time.
    pub issued_at: Timestamp,
    /// After this the policy is frozen and the device falls back to fail-closed.
    pub expires_at: Timestamp,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Payload<P> {
    policy_id: String,
    version: u64,
    issued_at: Timestamp,
    expires_at: Timestamp,
    policy: P,
}

/// What is installed, for the rollback and identity checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// Policy id in force, if any (a fresh device accepts any id).
    pub policy_id: Option<String>,
    /// Version in force (0 when none).
    pub version: u64,
}

/// A bundle that passed every step.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedBundle {
    /// Metadata.
    pub header: BundleHeader,
    /// The validated policy.
    pub policy: ValidPolicy,
    /// Hex SHA-256 of the signed payload: the identity the server compares for drift.
    pub digest: String,
}

/// Verifies a policy bundle against the trust root, what is installed, and the time.
pub fn verify_bundle(
    bytes: &[u8],
    trust: &TrustRoot,
    installed: &Installed,
    now: Timestamp,
) -> Result<VerifiedBundle, BundleError> {
    let v = verify_signed(bytes, trust)?;
    // Step 7b: identity against what runs (wrong-target attack).
    check_installed_id(&v.header, installed)?;
    // Step 8: rollback.
    check_rollback(&v.header, installed)?;
    // Step 9: freeze.
    check_expiry(&v.header, now)?;
    Ok(v)
}

/// Re-verifies an installed bundle's signatures under `trust` (at every start, and after a
/// trust-root rotation): steps 1-7 and 10, without the rollback and freeze checks, which
/// concern installing, not running (an expired policy still runs, fail-closed).
pub fn verify_signed(bytes: &[u8], trust: &TrustRoot) -> Result<VerifiedBundle, BundleError> {
    // Steps 1-4: size cap, envelope, payload type, payload bytes.
    let (env, payload) = Envelope::open(bytes, WHAT, POLICY_BUNDLE_TYPE, MAX_BUNDLE_BYTES)?;
    let digest = payload_digest(&payload);
    // Step 5: signatures by a threshold of the policy role's keys, before reading the
    // payload.
    let (keys, threshold) = trust.policy_keys();
    env.check_threshold(WHAT, &payload, keys, threshold, "policy keys")?;
    read_payload(&payload, &digest)
}

/// The bundle the agent itself stored, read without its signatures: only for running an
/// installed policy fail-closed after a rotation made its signers untrusted.
pub fn read_unverified(bytes: &[u8]) -> Result<VerifiedBundle, BundleError> {
    let (_, payload) = Envelope::open(bytes, WHAT, POLICY_BUNDLE_TYPE, MAX_BUNDLE_BYTES)?;
    read_payload(&payload, &payload_digest(&payload))
}

/// Steps 6, 7a and 10: the payload's shape, its self-consistency, the policy itself.
fn read_payload(payload: &[u8], digest: &[u8; 32]) -> Result<VerifiedBundle, BundleError> {
    // Step 6: the payload's shape (the policy inside is validated in step 10).
    let p: Payload<Policy> =
        serde_json::from_slice(payload).map_err(|e| malformed_payload(payload, e))?;
    let header = BundleHeader {
        policy_id: p.policy_id,
        version: p.version,
        issued_at: p.issued_at,
        expires_at: p.expires_at,
    };
    // Step 7a: the header names the policy it carries.
    if header.policy_id != p.policy.policy_id {
        return Err(BundleError::Malformed {
            what: WHAT,
            reason: format!(
                "header policy_id `{}` differs from the policy's `{}`",
                header.policy_id, p.policy.policy_id
            ),
        });
    }
    // Step 10: the policy itself (validated once: the compiler trusts a `ValidPolicy`).
    let policy = p.policy.into_valid().map_err(BundleError::InvalidPolicy)?;
    Ok(VerifiedBundle {
        header,
        policy,
        digest: hex(digest),
    })
}

/// A payload that does not parse: report a policy shape error precisely.
fn malformed_payload(payload: &[u8], e: serde_json::Error) -> BundleError {
    let policy_err = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("policy").map(|p| p.to_string()))
        .and_then(|p| Policy::from_json(p.as_bytes()).err());
    match policy_err {
        Some(errs) => BundleError::InvalidPolicy(errs),
        None => BundleError::Malformed {
            what: WHAT,
            reason: e.to_string(),
        },
    }
}

fn check_installed_id(h: &BundleHeader, installed: &Installed) -> Result<(), BundleError> {
    match &installed.policy_id {
        Some(expected) if *expected != h.policy_id => Err(BundleError::WrongPolicyId {
            expected: expected.clone(),
            found: h.policy_id.clone(),
        }),
        _ => Ok(()),
    }
}

fn check_rollback(h: &BundleHeader, installed: &Installed) -> Result<(), BundleError> {
    if h.version <= installed.version {
        return Err(BundleError::Rollback {
            installed: installed.version,
            offered: h.version,
        });
    }
    Ok(())
}

fn check_expiry(h: &BundleHeader, now: Timestamp) -> Result<(), BundleError> {
    if h.issued_at.0 > now.0.saturating_add(MAX_ISSUED_AHEAD_MS) {
        return Err(BundleError::IssuedInFuture {
            issued_at: h.issued_at,
            now,
        });
    }
    if h.expires_at <= h.issued_at {
        return Err(BundleError::Malformed {
            what: WHAT,
            reason: "expires_at is not after issued_at".into(),
        });
    }
    let validity_ms = h.expires_at.0.saturating_sub(h.issued_at.0);
    if validity_ms > MAX_BUNDLE_VALIDITY_DAYS * 86_400_000 {
        return Err(BundleError::ValidityTooLong {
            days: validity_ms / 86_400_000,
            max_days: MAX_BUNDLE_VALIDITY_DAYS,
        });
    }
    if now >= h.expires_at {
        return Err(BundleError::Expired {
            expires_at: h.expires_at,
            now,
        });
    }
    Ok(())
}

/// Signs a policy into a bundle (the admin side). The policy is validated first: the office
/// never signs a policy the agent would refuse.
pub fn sign_bundle(
    policy: &Policy,
    version: u64,
    issued_at: Timestamp,
    expires_at: Timestamp,
    keys: &[&SigningKey],
) -> Result<Envelope, BundleError> {
    sign_bundle_with_id(
        crate::suite::sm::DEFAULT_ID,
        policy,
        version,
        issued_at,
        expires_at,
        keys,
    )
}

/// [`sign_bundle`] with SM2 keys signing under distinguishing ID `sm2_id` (the trust root's
/// `sm2_id`).
pub fn sign_bundle_with_id(
    sm2_id: &str,
    policy: &Policy,
    version: u64,
    issued_at: Timestamp,
    expires_at: Timestamp,
    keys: &[&SigningKey],
) -> Result<Envelope, BundleError> {
    policy.validate().map_err(BundleError::InvalidPolicy)?;
    let validity_ms = expires_at.0.saturating_sub(issued_at.0);
    if validity_ms > MAX_BUNDLE_VALIDITY_DAYS * 86_400_000 {
        return Err(BundleError::ValidityTooLong {
            days: validity_ms / 86_400_000,
            max_days: MAX_BUNDLE_VALIDITY_DAYS,
        });
    }
    let payload = Payload {
        policy_id: policy.policy_id.clone(),
        version,
        issued_at,
        expires_at,
        policy,
    };
    let bytes = serde_json::to_vec(&payload).map_err(|e| BundleError::Malformed {
        what: WHAT,
        reason: e.to_string(),
    })?;
    Ok(Envelope::sign_with_id(
        sm2_id,
        POLICY_BUNDLE_TYPE,
        &bytes,
        keys,
    ))
}
