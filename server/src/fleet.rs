//! What the server knows of a device's posture, computed by the core engine: the policy, the
//! holder's clearance from its signed assignment, and the documents the registry says are
//! signed out to the holder now. Zones and inventory are the phone's and are not known here.
//! Used by the MDM connector (custody acted on at once) and the console's impact preview.

use std::collections::BTreeMap;
use std::sync::Arc;

use baomi_core::bundle::TrustRoot;
use baomi_core::compile::{CompiledPolicy, Platform};
use baomi_core::engine::Engine;
use baomi_core::level::{Classification, Clearance};
use baomi_core::policy::ValidPolicy;
use baomi_core::posture::Posture;
use baomi_core::sync::custody::{CustodyAction, verify_custody_record};
use baomi_core::time::Timestamp;

use crate::api::ApiError;
use crate::db::{Conn, Value};

/// A document signed out to a holder now, per the registry's feed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignedOut {
    /// Document id.
    pub document: String,
    /// Its level.
    pub classification: Classification,
    /// When the registry says it was signed out.
    pub at: Timestamp,
    /// When the server received the record (ms).
    pub received_at: i64,
}

/// The documents signed out to `holder` now: per document, the latest record decides (a
/// return after a sign-out ends it). Records that do not verify are skipped.
pub fn signed_out(
    c: &mut dyn Conn,
    holder: &str,
    trust: &TrustRoot,
) -> Result<Vec<SignedOut>, ApiError> {
    let mut latest: BTreeMap<String, (Timestamp, CustodyAction, Classification, i64)> =
        BTreeMap::new();
    for r in c.query(
        "SELECT envelope, received_at FROM custody WHERE holder = $1 AND device_id IS NULL ORDER BY cursor",
        &[holder.into()],
    )? {
        let Some(doc) = r
            .first()
            .and_then(Value::text)
            .and_then(|e| verify_custody_record(e.as_bytes(), trust).ok())
        else {
            continue;
        };
        let received = r.get(1).and_then(Value::int).unwrap_or(0);
        if latest
            .get(&doc.document)
            .is_none_or(|(at, ..)| doc.at >= *at)
        {
            latest.insert(
                doc.document.clone(),
                (doc.at, doc.action, doc.classification, received),
            );
        }
    }
    Ok(latest
        .into_iter()
        .filter(|(_, (_, action, ..))| *action == CustodyAction::SignOut)
        .map(
            |(document, (at, _, classification, received_at))| SignedOut {
                document,
                classification,
                at,
                received_at,
            },
        )
        .collect())
}

/// The posture the core derives for `device_id` under `policy` from what the server knows.
pub fn posture_under(
    policy: &ValidPolicy,
    device_id: &str,
    platform: Platform,
    custody: &[SignedOut],
    now: Timestamp,
) -> Posture {
    let compiled = Arc::new(CompiledPolicy::from_valid(policy.clone(), platform));
    posture_compiled(&compiled, policy, device_id, custody, now)
}

/// [`posture_under`] with the policy compiled already (once per platform for a whole fleet).
pub fn posture_compiled(
    compiled: &Arc<CompiledPolicy>,
    policy: &ValidPolicy,
    device_id: &str,
    custody: &[SignedOut],
    now: Timestamp,
) -> Posture {
    let clearance = policy
        .holder_for_device(device_id)
        .map_or(Clearance::None, |h| h.clearance);
    let mut engine = Engine::new(compiled.clone(), clearance, now);
    for s in custody {
        engine
            .context_mut()
            .registry_custody_started(&s.document, s.classification, s.at);
    }
    engine.refresh(now);
    (**engine.posture()).clone()
}

/// The platform a device enrolled as.
pub fn platform_of(name: &str) -> Platform {
    if name == "ios" {
        Platform::Ios
    } else {
        Platform::Android
    }
}

/// Where a phone stands, defined once: the fleet, the device page, the summary, the office
/// API and the exports all read [`state_sql`]. The first that applies, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneState {
    /// Retired by the office: it syncs no more.
    Retired,
    /// An alert about it is open or acknowledged (not resolved).
    Alert,
    /// It reports running closed (no valid policy, damaged store, ...).
    FailClosed,
    /// No check-in for [`crate::console::listing::STALE_MS`] (or never).
    Stale,
    /// It has not installed the newest published policy.
    Outdated,
    /// It reports a setting of its posture not applied.
    NotApplied,
    /// It has not reported what it applied yet.
    NoReport,
    /// The current policy installed, its posture applied, no alert: compliant.
    Compliant,
}

impl PhoneState {
    /// Every state, in the order they are decided.
    pub const ALL: [PhoneState; 8] = [
        PhoneState::Retired,
        PhoneState::Alert,
        PhoneState::FailClosed,
        PhoneState::Stale,
        PhoneState::Outdated,
        PhoneState::NotApplied,
        PhoneState::NoReport,
        PhoneState::Compliant,
    ];

    /// The stored and query-parameter name.
    pub fn as_str(self) -> &'static str {
        match self {
            PhoneState::Retired => "retired",
            PhoneState::Alert => "alert",
            PhoneState::FailClosed => "fail_closed",
            PhoneState::Stale => "stale",
            PhoneState::Outdated => "outdated",
            PhoneState::NotApplied => "not_applied",
            PhoneState::NoReport => "no_report",
            PhoneState::Compliant => "compliant",
        }
    }

    /// From its name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// [`PhoneState`] as a SQL expression over `devices d` at `now` (ms).
pub fn state_sql(now: i64) -> String {
    let stale_before = now.saturating_sub(crate::console::listing::STALE_MS);
    format!(
        "CASE \
         WHEN d.retired_at IS NOT NULL THEN 'retired' \
         WHEN d.open_alerts > 0 THEN 'alert' \
         WHEN d.fail_closed IS NOT NULL THEN 'fail_closed' \
         WHEN d.last_check_in IS NULL OR d.last_check_in < {stale_before} THEN 'stale' \
         WHEN d.policy_version IS NULL OR d.policy_version < (SELECT COALESCE(MAX(version), 0) FROM bundles) THEN 'outdated' \
         WHEN d.applied_ok IS NULL THEN 'no_report' \
         WHEN d.applied_ok = 0 THEN 'not_applied' \
         ELSE 'compliant' END"
    )
}
