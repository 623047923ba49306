//! What the console and the officer API show, computed once for both: the fleet's rows, a
//! device's page, the impact of a bundle before it is published, and the evidence ledger's
//! verdict. The paged lists themselves are `listing`'s.

use std::collections::BTreeMap;

use baomi_core::bundle::verify_signed;
use baomi_core::policy::{Policy, ValidPolicy};
use baomi_core::posture::Posture;
use serde::Serialize;

use super::listing::{self, Page, ViolationFilter, ViolationRow};
use crate::admin::{self, DeviceRow};
use crate::alerts::{self, Alert};
use crate::api::{ApiError, Server};
use crate::db::Value;
use crate::fleet::{PhoneState, platform_of, signed_out};

/// One fleet row: the device as reported and its state, with what the office published.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRow {
    /// The device.
    #[serde(flatten)]
    pub device: DeviceRow,
    /// Clearance of its holder in the published assignment.
    pub clearance: Option<String>,
    /// Newest published version.
    pub published_version: Option<i64>,
    /// `device_owner`, `mdm`, ... or `degraded` when the mode cannot enforce, `unknown` before
    /// the first report.
    pub enforcement_path: String,
}

impl FleetRow {
    /// No check-in for [`listing::STALE_MS`] (or never): its state says so.
    pub fn stale(&self) -> bool {
        self.device.state == PhoneState::Stale
    }
}

fn newest_policy(server: &Server) -> Result<Option<(i64, std::sync::Arc<ValidPolicy>)>, ApiError> {
    server.db().tx(|c| server.newest_policy(c))
}

/// The fleet's rows for `devices` (a page of them).
pub fn fleet_rows(server: &Server, devices: Vec<DeviceRow>) -> Result<Vec<FleetRow>, ApiError> {
    let newest = newest_policy(server)?;
    Ok(devices
        .into_iter()
        .map(|d| {
            let clearance = newest
                .as_ref()
                .and_then(|(_, p)| p.holder_for_device(&d.device_id))
                .map(|h| h.clearance.as_str().to_owned());
            let enforcement_path = match &d.enforcement {
                None => "unknown".to_owned(),
                Some(e) if !e.can_enforce() => "degraded".to_owned(),
                Some(e) => serde_json::to_value(e)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            };
            FleetRow {
                clearance,
                published_version: newest.as_ref().map(|(v, _)| *v),
                enforcement_path,
                device: d,
            }
        })
        .collect())
}

/// One page of the fleet, decorated.
pub fn fleet_page(server: &Server, f: &listing::FleetFilter) -> Result<Page<FleetRow>, ApiError> {
    let page = listing::fleet_page(server, f)?;
    Ok(Page {
        items: fleet_rows(server, page.items)?,
        total: page.total,
        total_exact: page.total_exact,
        next: page.next,
    })
}

/// A device's history for its page.
#[derive(Debug, Clone, Serialize)]
pub struct DevicePage {
    /// The fleet row.
    pub row: FleetRow,
    /// Its alerts, every state, newest first.
    pub alerts: Vec<Alert>,
    /// Check-ins, newest first: (ms, posture JSON, fail-closed reason).
    pub check_ins: Vec<(i64, String, Option<String>)>,
    /// Where the posture changed between check-ins, newest first: (ms, from, to).
    pub posture_changes: Vec<(i64, String, String)>,
    /// Its violations, newest first (the first page).
    pub violations: Page<ViolationRow>,
    /// Its MDM commands, newest first.
    pub mdm_commands: Vec<crate::mdm::CommandRow>,
    /// The largest log checkpoint the phone reported carrying: (tree size, when received).
    pub log_carried: Option<(i64, i64)>,
}

/// See [`DevicePage`].
pub fn device_page(server: &Server, device_id: &str) -> Result<Option<DevicePage>, ApiError> {
    let Some(device) = admin::devices_matching(server, Some(device_id))?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let row = fleet_rows(server, vec![device])?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("a device row vanished"))?;
    let (rows, alerts, carried) = server.db().tx(|c| {
        let rows = c.query("SELECT at, posture, fail_closed FROM checkins WHERE device_id = $1 ORDER BY at DESC LIMIT 200", &[device_id.into()])?;
        let carried = c.query(
            "SELECT log_seen_size, log_seen_at FROM devices WHERE device_id = $1",
            &[device_id.into()],
        )?;
        let alerts = alerts::list(
            c,
            &alerts::Filter {
                all: true,
                device: Some(device_id.to_owned()),
                limit: 50,
                ..Default::default()
            },
        )?;
        Ok((rows, alerts, carried))
    })?;
    let log_carried = carried.first().and_then(|r| {
        Some((
            r.first().and_then(Value::int)?,
            r.get(1).and_then(Value::int)?,
        ))
    });
    let check_ins: Vec<(i64, String, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r.first().and_then(Value::int).unwrap_or(0),
                r.get(1)
                    .and_then(Value::text)
                    .unwrap_or_default()
                    .to_owned(),
                r.get(2).and_then(Value::text).map(str::to_owned),
            )
        })
        .collect();
    let posture_changes = check_ins
        .windows(2)
        .filter(|w| w[0].1 != w[1].1)
        .map(|w| (w[0].0, w[1].1.clone(), w[0].1.clone()))
        .collect();
    Ok(Some(DevicePage {
        violations: listing::violations(
            server,
            &ViolationFilter {
                device_exact: Some(device_id.to_owned()),
                limit: Some(50),
                ..Default::default()
            },
        )?,
        mdm_commands: server.mdm_commands(Some(device_id))?,
        alerts,
        row,
        check_ins,
        posture_changes,
        log_carried,
    }))
}

/// How one device's posture would change under a candidate bundle.
#[derive(Debug, Clone, Serialize)]
pub struct ImpactRow {
    /// Device.
    pub device_id: String,
    /// Holder in the candidate's assignment.
    pub holder: Option<String>,
    /// Posture now (published policy), from what the server knows.
    pub before: Posture,
    /// Posture under the candidate.
    pub after: Posture,
    /// Camera: `None` unchanged, `Some(true)` turned off, `Some(false)` turned on.
    pub camera_disabled: Option<bool>,
    /// Screen capture, likewise.
    pub screen_capture_disabled: Option<bool>,
    /// Apps newly blocked.
    pub newly_blocked: Vec<String>,
    /// Apps newly unblocked.
    pub newly_unblocked: Vec<String>,
}

/// What the candidate is.
#[derive(Debug, Clone, Serialize)]
pub struct Impact {
    /// `signed bundle vN` (verifies under the trust root, can be published) or `unsigned draft`.
    pub candidate: String,
    /// Whether it can be published as is.
    pub publishable: bool,
    /// Devices whose posture changes (the others are unchanged).
    pub changes: Vec<ImpactRow>,
    /// Devices compared.
    pub devices: usize,
}

/// How long one impact preview may evaluate.
pub const IMPACT_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

/// The impact of `bytes` (a signed bundle, or a draft policy document) on every device,
/// computed by the core engine from what the server knows of each: assignment (from the
/// candidate), registry custody, platform. Zones are the phone's and are not part of it.
/// Custody is read in short read-only transactions, each policy compiled once per platform,
/// and evaluation runs outside any transaction within [`IMPACT_BUDGET`].
pub fn impact(server: &Server, bytes: &[u8]) -> Result<Impact, ApiError> {
    let trust = server.trust_root()?;
    let (candidate, publishable, policy) = match trust.as_ref().map(|t| verify_signed(bytes, t)) {
        Some(Ok(v)) => (
            format!("signed bundle {}@{}", v.header.policy_id, v.header.version),
            true,
            v.policy,
        ),
        Some(Err(signed_err)) => {
            // Not a bundle the root vouches for: maybe a draft policy document.
            let draft = Policy::from_json(bytes).map_err(|e| {
                ApiError::bad_request(format!("neither a bundle the trust root verifies ({signed_err}) nor a valid policy draft ({e})"))
            })?;
            let valid = draft
                .into_valid()
                .map_err(|e| ApiError::bad_request(format!("draft policy: {e}")))?;
            ("unsigned draft (preview only)".to_owned(), false, valid)
        }
        None => return Err(ApiError::conflict("publish a trust root first")),
    };
    let now = server.now();
    let current = newest_policy(server)?;
    let devices = admin::devices(server)?;
    // Each holder's custody, read and verified once, in short read-only transactions: the
    // preview never holds the database while it compiles and evaluates (it held SQLite's only
    // connection, and every phone's sync with it, for the whole preview).
    let mut holders: BTreeMap<String, Vec<crate::fleet::SignedOut>> = BTreeMap::new();
    if let Some(t) = trust.as_ref() {
        for d in &devices {
            let names = [
                current
                    .as_ref()
                    .and_then(|(_, p)| p.holder_for_device(&d.device_id)),
                policy.holder_for_device(&d.device_id),
            ];
            for h in names.into_iter().flatten() {
                if !holders.contains_key(&h.holder) {
                    let v = server.db().tx(|c| signed_out(c, &h.holder, t))?;
                    holders.insert(h.holder.clone(), v);
                }
            }
        }
    }
    let custody = |p: &ValidPolicy, device: &str| -> &[crate::fleet::SignedOut] {
        p.holder_for_device(device)
            .and_then(|h| holders.get(&h.holder))
            .map_or(&[], Vec::as_slice)
    };
    // Each policy compiled once per platform (it was compiled once per device).
    let mut compiled: BTreeMap<(bool, bool), std::sync::Arc<baomi_core::compile::CompiledPolicy>> =
        BTreeMap::new();
    let mut compile = |candidate: bool, p: &ValidPolicy, platform| {
        let ios = platform == baomi_core::compile::Platform::Ios;
        compiled
            .entry((candidate, ios))
            .or_insert_with(|| {
                std::sync::Arc::new(baomi_core::compile::CompiledPolicy::from_valid(
                    p.clone(),
                    platform,
                ))
            })
            .clone()
    };
    let mut changes = Vec::new();
    // A time budget: a preview that would run longer answers 503 instead of holding a worker.
    let deadline = std::time::Instant::now() + IMPACT_BUDGET;
    for d in &devices {
        if std::time::Instant::now() > deadline {
            return Err(ApiError::new_pub(
                503,
                "busy",
                format!(
                    "the preview ran over its {} s budget for {} devices: try a smaller draft",
                    IMPACT_BUDGET.as_secs(),
                    devices.len()
                ),
            ));
        }
        let platform = platform_of(&d.platform);
        let before = match &current {
            Some((_, p)) => crate::fleet::posture_compiled(
                &compile(false, p, platform),
                p,
                &d.device_id,
                custody(p, &d.device_id),
                now,
            ),
            None => Posture::open(),
        };
        let after = crate::fleet::posture_compiled(
            &compile(true, &policy, platform),
            &policy,
            &d.device_id,
            custody(&policy, &d.device_id),
            now,
        );
        if before == after {
            continue;
        }
        let diff = before.diff_to(&after);
        changes.push(ImpactRow {
            device_id: d.device_id.clone(),
            holder: policy
                .holder_for_device(&d.device_id)
                .map(|h| h.holder.clone()),
            camera_disabled: diff.camera_disabled,
            screen_capture_disabled: diff.screen_capture_disabled,
            newly_blocked: diff.block,
            newly_unblocked: diff.unblock,
            before,
            after,
        });
    }
    Ok(Impact {
        candidate,
        publishable,
        changes,
        devices: devices.len(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;
    use crate::db::Db;

    /// A device page reads its own device: its row and its own alerts, not the fleet's.
    #[test]
    fn a_device_page_shows_only_its_own_device() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}", dir.path().join("v.db").display()), 1).unwrap();
        let server = Server::new(db, None, baomi_core::time::Timestamp::now).unwrap();
        server
            .db()
            .tx(|c| {
                for (d, tampers) in [("a", 2), ("b", 5)] {
                    c.execute(
                        "INSERT INTO devices (device_id, public_key, platform, agent_version, enrolled_at) VALUES ($1, 'k', 'android', 't', 0)",
                        &[d.into()],
                    )?;
                    for _ in 0..tampers {
                        crate::alerts::raise(c, d, crate::alerts::Kind::Tamper, "x", 1)?;
                    }
                }
                Ok(())
            })
            .unwrap();
        let page = device_page(&server, "a").unwrap().unwrap();
        assert_eq!(page.row.device.device_id, "a");
        assert_eq!(page.alerts.len(), 1);
        assert_eq!(page.alerts[0].occurrences, 2);
        let b = device_page(&server, "b").unwrap().unwrap();
        assert_eq!(b.alerts[0].occurrences, 5);
        assert_eq!(b.row.device.state, PhoneState::Alert);
        assert!(device_page(&server, "c").unwrap().is_none());
    }
}

/// What the console says of the evidence ledger: the newest witness's verdict.
#[derive(Debug, Clone, Default)]
pub struct LedgerStatus {
    /// Who verified, the checkpoint's size, and when the report arrived (ms).
    pub witness: Option<(String, u64, i64)>,
    /// Their report.
    pub report: Option<crate::ledger::audit::AuditReport>,
}

impl LedgerStatus {
    /// The findings that name `device`.
    pub fn findings_for(&self, device: &str) -> Vec<String> {
        let needle = format!("device {device}");
        self.report
            .iter()
            .flat_map(|r| &r.findings)
            .map(ToString::to_string)
            .filter(|f| f.starts_with(&needle))
            .collect()
    }
}

/// The newest witness report (`baomi audit --witness`).
pub fn ledger_status(s: &Server) -> Result<LedgerStatus, ApiError> {
    let newest = s.ledger_witnesses()?.into_iter().next();
    Ok(match newest {
        None => LedgerStatus::default(),
        Some((w, size, report, at)) => LedgerStatus {
            witness: Some((w, size, at)),
            report: serde_json::from_str(&report).ok(),
        },
    })
}
