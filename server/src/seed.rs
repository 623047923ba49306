//! A generator of a province-sized office for the console's tests and benchmarks
//! (`baomi-server seed`): phones with holders and states of every kind, and violations spread
//! over the last days, written through the server's own SQL (the columns and rollups
//! [`crate::schema::Indexed`] writes for a received batch, and [`crate::alerts::raise`]).
//! Deterministic for a given plan: the same plan gives the same office.
//!
//! Not for a production database: it refuses one that already holds devices unless told.

use baomi_core::decision::Verdict;
use baomi_core::event::{Event, EventKind};
use baomi_core::policy::model::Severity;
use baomi_core::posture::Posture;
use baomi_core::store::ViolationRecord;
use baomi_core::time::Timestamp;

use crate::api::{ApiError, Server};
use crate::db::{Value, values_list};
use crate::schema::Indexed;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Phones (two per holder).
    pub devices: u64,
    /// Violations, spread over the phones and the last `days` days.
    pub violations: u64,
    /// Days of history.
    pub days: i64,
    /// "Now" (ms).
    pub now: i64,
    /// Continue a seed that stopped: the phones are there, and violations `0..from` too.
    pub violations_from: u64,
}

/// Rows per INSERT statement, and statements per transaction.
const ROWS: u64 = 500;
const STATEMENTS_PER_TX: u64 = 20;

/// A small deterministic generator (SplitMix64): the same plan, the same office.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The phone `i`'s id.
pub fn device_id(i: u64) -> String {
    format!("seed-{i:07}")
}

/// The holder of phone `i`.
pub fn holder_of(i: u64) -> String {
    format!("holder-{:06}", i / 2)
}

/// The apps the generated violations launch (the baseline's messengers).
const APPS: [&str; 5] = [
    "com.tencent.mm",
    "com.tencent.wework",
    "com.tencent.mobileqq",
    "com.alibaba.android.rimet",
    "com.sina.weibo",
];

/// Generates the office of `plan` into `server`'s database; `progress` hears the rows done.
pub fn seed(
    server: &Server,
    plan: &Plan,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(), ApiError> {
    let mut mix = Mix(0x0BA0_0051);
    let day = 86_400_000i64;
    // Phones: every state represented (stale, fail-closed, outdated, not applied, ...).
    let mut i = if plan.violations_from > 0 {
        plan.devices
    } else {
        0
    };
    while i < plan.devices {
        let end = (i + ROWS * STATEMENTS_PER_TX).min(plan.devices);
        server.db().tx(|c| {
            let mut k = i;
            while k < end {
                let stop = (k + ROWS).min(end);
                let mut params: Vec<Value> = Vec::new();
                let mut hparams: Vec<Value> = Vec::new();
                for j in k..stop {
                    let r = mix.below(1000);
                    let last = if r < 30 {
                        plan.now - 3 * day
                    } else {
                        plan.now - i64::try_from(mix.below(3_600_000)).unwrap_or(0)
                    };
                    let version: i64 = if (60..80).contains(&r) { 1 } else { 2 };
                    let fail_closed: Value = if (30..40).contains(&r) {
                        "sync overdue".into()
                    } else {
                        Value::Null
                    };
                    let applied: i64 = i64::from(!(40..60).contains(&r));
                    params.extend([
                        device_id(j).into(),
                        "seeded".into(),
                        (if j % 5 == 0 { "ios" } else { "android" }).into(),
                        "seed".into(),
                        (plan.now - plan.days * day).into(),
                        last.into(),
                        "baseline".into(),
                        version.into(),
                        fail_closed,
                        applied.into(),
                    ]);
                    hparams.extend([device_id(j).into(), holder_of(j).into()]);
                }
                c.execute(
                    &format!(
                        "INSERT INTO devices (device_id, public_key, platform, agent_version, enrolled_at, last_check_in, policy_id, policy_version, fail_closed, applied_ok) VALUES {}",
                        values_list(params.len() / 10, 10)
                    ),
                    &params,
                )?;
                c.execute(
                    &format!(
                        "INSERT INTO device_holders (device_id, holder) VALUES {}",
                        values_list(hparams.len() / 2, 2)
                    ),
                    &hparams,
                )?;
                k = stop;
            }
            // A few alerts (one in 200 phones), through the server's own raise.
            for j in (i..end).filter(|j| j % 200 == 7) {
                crate::alerts::raise(
                    c,
                    &device_id(j),
                    crate::alerts::Kind::Tamper,
                    "seeded: enforcement failed",
                    plan.now - day,
                )?;
            }
            Ok(())
        })?;
        i = end;
        progress("devices", i);
    }
    // Violations: round-robin over the phones, times spread over the days.
    let mut v = plan.violations_from;
    // Another stream for a continued seed (the same plan still gives the same office).
    if v > 0 {
        mix = Mix(0x0BA0_0051 ^ v);
    }
    while v < plan.violations {
        let end = (v + ROWS * STATEMENTS_PER_TX).min(plan.violations);
        server.db().tx(|c| {
            let mut k = v;
            while k < end {
                let stop = (k + ROWS).min(end);
                let mut params: Vec<Value> = Vec::new();
                let mut indexed = Vec::new();
                for j in k..stop {
                    let dev = j % plan.devices.max(1);
                    let seq = i64::try_from(j / plan.devices.max(1) + 1).unwrap_or(i64::MAX);
                    let spread = i64::try_from(mix.below(u64::try_from(plan.days * day).unwrap_or(1))).unwrap_or(0);
                    let received = plan.now - spread;
                    let at = received - i64::try_from(mix.below(600_000)).unwrap_or(0);
                    let r = mix.below(100);
                    let (rule, severity, verdict) = match r {
                        0..=59 => ("no-messengers-for-classified-staff", Severity::High, Verdict::Deny),
                        60..=79 => ("no-capture-during-custody", Severity::Critical, Verdict::Deny),
                        80..=89 => ("watch-capture-with-work-secrets", Severity::Low, Verdict::Warn),
                        90..=96 => (baomi_core::rules::CLOCK, Severity::Medium, Verdict::Warn),
                        _ => (baomi_core::rules::TAMPER, Severity::Critical, Verdict::Deny),
                    };
                    let app = APPS[usize::try_from(mix.below(APPS.len() as u64)).unwrap_or(0)];
                    let record = ViolationRecord {
                        event: Event {
                            at: Timestamp(at),
                            kind: EventKind::AppLaunched {
                                package: app.into(),
                            },
                        },
                        verdict,
                        rules: vec![rule.into()],
                        severity: Some(severity),
                        reason: format!("seeded: {rule}"),
                        posture: Posture::default(),
                        policy: None,
                    };
                    let json = serde_json::to_string(&record)
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                    let x = Indexed::from_record(&record);
                    params.extend([
                        device_id(dev).into(),
                        seq.into(),
                        received.into(),
                        at.into(),
                        rule.into(),
                        json.into(),
                        "".into(),
                        "".into(),
                        holder_of(dev).into(),
                        x.severity.clone().into(),
                        x.verdict.clone().into(),
                        x.event_type.clone().into(),
                    ]);
                    indexed.push((device_id(dev), seq, received, x));
                }
                c.execute(
                    &format!(
                        "INSERT INTO violations (device_id, seq, received_at, at, rules, record, tag, link, holder, severity, verdict, event_type) VALUES {}",
                        values_list(params.len() / 12, 12)
                    ),
                    &params,
                )?;
                let refs: Vec<(&str, i64, i64, &Indexed)> = indexed
                    .iter()
                    .map(|(d, s, r, x)| (d.as_str(), *s, *r, x))
                    .collect();
                Indexed::count(c, &refs)?;
                k = stop;
            }
            Ok(())
        })?;
        v = end;
        progress("violations", v);
    }
    Ok(())
}
