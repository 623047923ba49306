//! What the console and the officer API show, computed once for both: the fleet, the
//! violations timeline, rule hit counts, custody, a device's page, and the impact of a bundle
//! before it is published.

use std::collections::{BTreeMap, BTreeSet};

use baomi_core::bundle::verify_signed;
use baomi_core::policy::{Policy, ValidPolicy};
use baomi_core::posture::Posture;
use serde::Serialize;

use crate::admin::{self, DeviceRow};
use crate::api::{ApiError, Server};
use crate::db::Value;
use crate::fleet::{platform_of, signed_out};

/// A device is stale when it has not checked in for this long.
pub const STALE_MS: i64 = 2 * 3600 * 1000;

/// One fleet row: the device as reported, with what the office published.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRow {
    /// The device.
    #[serde(flatten)]
    pub device: DeviceRow,
    /// Clearance of its holder in the published assignment.
    pub clearance: Option<String>,
    /// Newest published version.
    pub published_version: Option<i64>,
    /// No check-in for [`STALE_MS`] (or never).
    pub stale: bool,
    /// `device_owner`, `mdm`, ... or `degraded` when the mode cannot enforce, `unknown` before
    /// the first report.
    pub enforcement_path: String,
    /// Tamper violations received from it (enforcement failures, refused configuration).
    pub tamper: i64,
    /// Clock violations received from it (set back, far off).
    pub clock: i64,
}

fn counts(
    server: &Server,
    rule: &str,
    only: Option<&str>,
) -> Result<BTreeMap<String, i64>, ApiError> {
    let pattern = format!("%\"{rule}\"%");
    let rows = server.db().tx(|c| {
        Ok(match only {
            Some(id) => c.query(
                "SELECT device_id, COUNT(*) FROM violations WHERE device_id = $2 AND record LIKE $1 GROUP BY device_id",
                &[pattern.clone().into(), id.into()],
            )?,
            None => c.query(
                "SELECT device_id, COUNT(*) FROM violations WHERE record LIKE $1 GROUP BY device_id",
                &[pattern.clone().into()],
            )?,
        })
    })?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r.first()?.text()?.to_owned(), r.get(1)?.int()?)))
        .collect())
}

fn newest_policy(server: &Server) -> Result<Option<(i64, std::sync::Arc<ValidPolicy>)>, ApiError> {
    server.db().tx(|c| server.newest_policy(c))
}

/// The fleet.
pub fn fleet(server: &Server) -> Result<Vec<FleetRow>, ApiError> {
    fleet_rows(server, None)
}

/// The fleet, or only the device named.
fn fleet_rows(server: &Server, only: Option<&str>) -> Result<Vec<FleetRow>, ApiError> {
    let now = server.now().0;
    let newest = newest_policy(server)?;
    let tamper = counts(server, "baomi.tamper", only)?;
    let clock = counts(server, "baomi.clock", only)?;
    Ok(admin::devices_matching(server, only)?
        .into_iter()
        .map(|d| {
            let clearance = newest
                .as_ref()
                .and_then(|(_, p)| p.holder_for_device(&d.device_id))
                .map(|h| {
                    serde_json::to_value(h.clearance)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                });
            let stale = d.last_check_in.is_none_or(|t| now - t > STALE_MS);
            let enforcement_path = match (&d.enforcement, d.compliant) {
                (None, _) => "unknown".to_owned(),
                (Some(e), _) if !e.can_enforce() => "degraded".to_owned(),
                (Some(e), _) => serde_json::to_value(e)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            };
            FleetRow {
                clearance,
                published_version: newest.as_ref().map(|(v, _)| *v),
                stale,
                enforcement_path,
                tamper: tamper.get(&d.device_id).copied().unwrap_or(0),
                clock: clock.get(&d.device_id).copied().unwrap_or(0),
                device: d,
            }
        })
        .collect())
}

/// Which violations to show.
#[derive(Debug, Clone, Default)]
pub struct ViolationFilter {
    /// Device id.
    pub device: Option<String>,
    /// Holder (per the published assignment).
    pub holder: Option<String>,
    /// Rule id.
    pub rule: Option<String>,
    /// Severity name.
    pub severity: Option<String>,
    /// From (ms, received).
    pub from: Option<i64>,
    /// To (ms, received).
    pub to: Option<i64>,
}

/// One violation as the officer reads it.
#[derive(Debug, Clone, Serialize)]
pub struct ViolationRow {
    /// Device.
    pub device_id: String,
    /// Holder.
    pub holder: Option<String>,
    /// Position in the device's log.
    pub seq: i64,
    /// Received (ms).
    pub received_at: i64,
    /// When it happened (device clock).
    pub at: String,
    /// Event type.
    pub event_type: String,
    /// The event, as recorded (may hold any string a holder typed: shown as text only).
    pub event: String,
    /// Rules matched.
    pub rules: Vec<String>,
    /// Severity.
    pub severity: String,
    /// The decision's reason.
    pub reason: String,
    /// Verdict.
    pub verdict: String,
}

fn holders(server: &Server) -> Result<BTreeMap<String, String>, ApiError> {
    let rows = server
        .db()
        .tx(|c| Ok(c.query("SELECT device_id, holder FROM device_holders", &[])?))?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r.first()?.text()?.to_owned(), r.get(1)?.text()?.to_owned())))
        .collect())
}

/// The violations timeline, newest first (at most 2,000).
pub fn violations(server: &Server, f: &ViolationFilter) -> Result<Vec<ViolationRow>, ApiError> {
    let holders = holders(server)?;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let mut out: Vec<ViolationRow> = admin::violations(server, f.device.as_deref())?
        .into_iter()
        .map(|v| {
            let r = &v["record"];
            let device_id = s(&v["device_id"]);
            ViolationRow {
                holder: holders.get(&device_id).cloned(),
                seq: v["seq"].as_i64().unwrap_or(0),
                received_at: v["received_at"].as_i64().unwrap_or(0),
                at: s(&r["event"]["at"]),
                event_type: s(&r["event"]["type"]),
                event: r["event"].to_string(),
                rules: r["rules"]
                    .as_array()
                    .map(|a| a.iter().map(s).collect())
                    .unwrap_or_default(),
                severity: s(&r["severity"]),
                reason: s(&r["reason"]),
                verdict: s(&r["verdict"]),
                device_id,
            }
        })
        .filter(|v| {
            f.holder
                .as_ref()
                .is_none_or(|h| v.holder.as_ref() == Some(h))
        })
        .filter(|v| f.rule.as_ref().is_none_or(|r| v.rules.contains(r)))
        .filter(|v| f.severity.as_ref().is_none_or(|x| &v.severity == x))
        .filter(|v| f.from.is_none_or(|t| v.received_at >= t))
        .filter(|v| f.to.is_none_or(|t| v.received_at <= t))
        .collect();
    out.sort_by(|a, b| b.received_at.cmp(&a.received_at).then(b.seq.cmp(&a.seq)));
    out.truncate(2000);
    Ok(out)
}

/// Hits per rule per day over the last `days` days, with every rule of the published policy
/// (so the rules that never fire show as zeros).
#[derive(Debug, Clone, Serialize)]
pub struct RuleHits {
    /// Day starts (ms), oldest first.
    pub days: Vec<i64>,
    /// Rule id -> count per day.
    pub rules: BTreeMap<String, Vec<u32>>,
}

/// See [`RuleHits`].
pub fn rule_hits(
    server: &Server,
    rows: &[ViolationRow],
    days: usize,
) -> Result<RuleHits, ApiError> {
    let day = 86_400_000i64;
    let today = server.now().0.div_euclid(day) * day;
    let starts: Vec<i64> = (0..days as i64).rev().map(|i| today - i * day).collect();
    let mut rules: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    if let Some((_, p)) = newest_policy(server)? {
        for r in &p.rules {
            rules.insert(r.id.clone(), vec![0; days]);
        }
    }
    for v in rows {
        let Some(i) = starts.iter().rposition(|s| v.received_at >= *s) else {
            continue;
        };
        for r in &v.rules {
            if let Some(c) = rules
                .entry(r.clone())
                .or_insert_with(|| vec![0; days])
                .get_mut(i)
            {
                *c += 1;
            }
        }
    }
    Ok(RuleHits {
        days: starts,
        rules,
    })
}

/// A document signed out now, and whether the holder's phones confirmed the camera off.
#[derive(Debug, Clone, Serialize)]
pub struct CustodyRow {
    /// Holder.
    pub holder: String,
    /// Document.
    pub document: String,
    /// Level.
    pub classification: String,
    /// Signed out (registry time, RFC 3339).
    pub signed_out_at: String,
    /// Received by the server (ms).
    pub received_at: i64,
    /// The holder's devices.
    pub devices: Vec<CustodyDevice>,
}

/// One of the holder's phones during a custody.
#[derive(Debug, Clone, Serialize)]
pub struct CustodyDevice {
    /// Device.
    pub device_id: String,
    /// When it first reported camera off after the sign-out (check-in, or the MDM's
    /// acknowledgement of the restriction), ms; `None`: not yet confirmed.
    pub confirmed_at: Option<i64>,
}

/// Documents signed out now.
pub fn custody(server: &Server) -> Result<Vec<CustodyRow>, ApiError> {
    let Some(trust) = server.trust_root()? else {
        return Ok(Vec::new());
    };
    let by_holder: BTreeMap<String, Vec<String>> =
        holders(server)?
            .into_iter()
            .fold(BTreeMap::new(), |mut m, (d, h)| {
                m.entry(h).or_insert_with(Vec::new).push(d);
                m
            });
    server.db().tx(|c| {
        let names: BTreeSet<String> = c
            .query("SELECT DISTINCT holder FROM custody", &[])?
            .iter()
            .filter_map(|r| r.first().and_then(Value::text).map(str::to_owned))
            .collect();
        let mut out = Vec::new();
        for h in names {
            for s in signed_out(c, &h, &trust)? {
                let mut devices = Vec::new();
                for d in by_holder.get(&h).into_iter().flatten() {
                    let check_in = c
                        .query(
                            "SELECT MIN(at) FROM checkins WHERE device_id = $1 AND at >= $2 AND posture LIKE '%\"camera_disabled\":true%'",
                            &[d.clone().into(), s.received_at.into()],
                        )?
                        .first()
                        .and_then(|r| r.first().and_then(Value::int));
                    let mdm = c
                        .query(
                            "SELECT MIN(answered_at) FROM mdm_commands WHERE device_id = $1 AND kind = 'install_profile' AND status = 'acknowledged' AND created_at >= $2",
                            &[d.clone().into(), s.received_at.into()],
                        )?
                        .first()
                        .and_then(|r| r.first().and_then(Value::int));
                    let confirmed_at = [check_in, mdm].into_iter().flatten().min();
                    devices.push(CustodyDevice { device_id: d.clone(), confirmed_at });
                }
                out.push(CustodyRow {
                    holder: h.clone(),
                    document: s.document,
                    classification: s.classification.to_string(),
                    signed_out_at: s.at.to_rfc3339(),
                    received_at: s.received_at,
                    devices,
                });
            }
        }
        Ok(out)
    })
}

/// A device's history for its page.
#[derive(Debug, Clone, Serialize)]
pub struct DevicePage {
    /// The fleet row.
    pub row: FleetRow,
    /// Check-ins, newest first: (ms, posture JSON, fail-closed reason).
    pub check_ins: Vec<(i64, String, Option<String>)>,
    /// Where the posture changed between check-ins, newest first: (ms, from, to).
    pub posture_changes: Vec<(i64, String, String)>,
    /// Its violations, newest first.
    pub violations: Vec<ViolationRow>,
    /// Its MDM commands, newest first.
    pub mdm_commands: Vec<crate::mdm::CommandRow>,
}

/// See [`DevicePage`].
pub fn device_page(server: &Server, device_id: &str) -> Result<Option<DevicePage>, ApiError> {
    let Some(row) = fleet_rows(server, Some(device_id))?.into_iter().next() else {
        return Ok(None);
    };
    let rows = server.db().tx(|c| {
        Ok(c.query("SELECT at, posture, fail_closed FROM checkins WHERE device_id = $1 ORDER BY at DESC LIMIT 200", &[device_id.into()])?)
    })?;
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
        violations: violations(
            server,
            &ViolationFilter {
                device: Some(device_id.to_owned()),
                ..Default::default()
            },
        )?,
        mdm_commands: server.mdm_commands(Some(device_id))?,
        row,
        check_ins,
        posture_changes,
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

    /// A device page reads its own device: its row and its own counts, not the fleet's.
    #[test]
    fn a_device_page_counts_only_its_own_device() {
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
                    for seq in 1..=tampers {
                        c.execute(
                            "INSERT INTO violations (device_id, seq, received_at, at, rules, record, tag) VALUES ($1, $2, 0, 0, 'baomi.tamper', $3, '')",
                            &[d.into(), seq.into(), r#"{"rules":["baomi.tamper"]}"#.into()],
                        )?;
                    }
                }
                Ok(())
            })
            .unwrap();
        let page = device_page(&server, "a").unwrap().unwrap();
        assert_eq!(
            (page.row.device.device_id.as_str(), page.row.tamper),
            ("a", 2)
        );
        assert_eq!(device_page(&server, "b").unwrap().unwrap().row.tamper, 5);
        assert!(device_page(&server, "c").unwrap().is_none());
        let fleet = fleet(&server).unwrap();
        assert_eq!(
            fleet.iter().map(|r| r.tamper).collect::<Vec<_>>(),
            vec![2, 5]
        );
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
