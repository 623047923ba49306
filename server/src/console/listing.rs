//! The console's and the office API's lists at a province's scale: filtered, sorted and paged
//! in SQL (keyset pagination over an index; never a whole table in memory), counted by SQL
//! aggregates, and one definition of a phone's state used by every page, the API and the
//! exports.
//!
//! Bounds: a page holds at most [`MAX_PAGE`] rows; a filtered count stops at [`COUNT_CAP`]
//! (shown as "more than"); a search term is at most [`MAX_TERM`] characters.

use serde::Serialize;

use crate::admin::{self, DeviceRow};
use crate::api::{ApiError, Server};
use crate::db::{Conn, Sql, Value};
use crate::fleet::PhoneState;

/// Most rows in one page.
pub const MAX_PAGE: i64 = 500;
/// Rows in a page when the request does not say.
pub const DEFAULT_PAGE: i64 = 100;
/// A filtered count stops here: counting ten million rows to print a number is not worth a
/// slow page; the page says "more than 10,000".
pub const COUNT_CAP: i64 = 10_000;
/// Longest search term (characters).
pub const MAX_TERM: usize = 200;
/// A phone is stale when it has not checked in for this long.
pub const STALE_MS: i64 = 2 * 3600 * 1000;
/// A search that matches more phones (or holders) than this filters with LIKE over the
/// violations instead of an IN list of their ids.
const MAX_IN_LIST: usize = 500;

/// `LIKE` pattern matching `term` anywhere, with `%`, `_` and `\` taken literally
/// (`ESCAPE '\'`), lower-cased (compared with `LOWER(column)`).
pub fn contains_pattern(term: &str) -> String {
    let mut p = String::from("%");
    for ch in term.chars().take(MAX_TERM).flat_map(char::to_lowercase) {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

/// The ids in column 0 of `sql`'s rows.
fn texts(c: &mut dyn Conn, sql: &Sql) -> Result<Vec<String>, ApiError> {
    Ok(c.query(&sql.text, &sql.params)?
        .iter()
        .filter_map(|r| r.first().and_then(Value::text).map(str::to_owned))
        .collect())
}

/// One page of a list and where the next one starts.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// How many match the filters (capped at [`COUNT_CAP`] unless `total_exact`).
    pub total: i64,
    /// `false`: at least `total` match (the count stopped at the cap).
    pub total_exact: bool,
    /// This page, in order.
    pub items: Vec<T>,
    /// Pass as `after` for the next page; `None`: this is the last one.
    pub next: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Violations

/// Which time a violations list filters and orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeField {
    /// When the office received it (the office's clock).
    #[default]
    Received,
    /// When it happened (the phone's clock).
    Event,
}

/// Which violations to list.
#[derive(Debug, Clone, Default)]
pub struct ViolationFilter {
    /// Device id contains (case-insensitive).
    pub device: Option<String>,
    /// Exactly this device (its page).
    pub device_exact: Option<String>,
    /// Holder (at receipt) contains (case-insensitive).
    pub holder: Option<String>,
    /// Matched this rule.
    pub rule: Option<String>,
    /// This severity (`low`, `medium`, `high`, `critical`; `none`: without one).
    pub severity: Option<String>,
    /// This verdict (`allow`, `deny`, ...).
    pub verdict: Option<String>,
    /// Whether `from`/`to` and the order are by receipt or by event time.
    pub time: TimeField,
    /// From (ms, inclusive).
    pub from: Option<i64>,
    /// To (ms, inclusive).
    pub to: Option<i64>,
    /// Keyset: the page after this cursor (from a previous page's `next`).
    pub after: Option<String>,
    /// Rows per page (bounded by [`MAX_PAGE`]).
    pub limit: Option<i64>,
}

impl ViolationFilter {
    /// No filter at all (every violation).
    fn is_unfiltered(&self) -> bool {
        self.device.is_none()
            && self.device_exact.is_none()
            && self.holder.is_none()
            && self.verdict.is_none()
            && self.from.is_none()
            && self.to.is_none()
    }
}

/// One violation as the officer reads it.
#[derive(Debug, Clone, Serialize)]
pub struct ViolationRow {
    /// Device.
    pub device_id: String,
    /// Who held it when the office received the record.
    pub holder: Option<String>,
    /// Position in the device's log.
    pub seq: i64,
    /// Received (ms).
    pub received_at: i64,
    /// When it happened (device clock, ms).
    pub at_ms: i64,
    /// When it happened (device clock, RFC 3339).
    pub at: String,
    /// Event type.
    pub event_type: String,
    /// The event, as recorded (may hold any string a holder typed: shown as text only).
    pub event: String,
    /// Rules matched.
    pub rules: Vec<String>,
    /// Severity (`""`: none).
    pub severity: String,
    /// The decision's reason.
    pub reason: String,
    /// Verdict.
    pub verdict: String,
}

fn cursor(time: i64, seq: i64, device: &str) -> String {
    format!("{time}.{seq}.{device}")
}

fn parse_cursor(s: &str) -> Result<(i64, i64, String), ApiError> {
    let bad = || ApiError::bad_request("after: not a cursor this server gave (TIME.SEQ.DEVICE)");
    let mut it = s.splitn(3, '.');
    let t = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let q = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let d = it.next().ok_or_else(bad)?;
    Ok((t, q, d.to_owned()))
}

/// The ids of devices whose id contains `term`, when few; `None`: too many for a list.
fn devices_like(c: &mut dyn Conn, term: &str) -> Result<Option<Vec<String>>, ApiError> {
    let mut q = Sql::default();
    q.push(
        "SELECT device_id FROM devices WHERE LOWER(device_id) LIKE ? ESCAPE '\\' LIMIT ?",
        [
            contains_pattern(term).into(),
            (MAX_IN_LIST as i64 + 1).into(),
        ],
    );
    let ids = texts(c, &q)?;
    Ok((ids.len() <= MAX_IN_LIST).then_some(ids))
}

/// The holder names (assigned or enrolled for) that contain `term`, when few.
fn holders_like(c: &mut dyn Conn, term: &str) -> Result<Option<Vec<String>>, ApiError> {
    let pattern = contains_pattern(term);
    let mut q = Sql::default();
    q.push(
        "SELECT holder FROM device_holders WHERE LOWER(holder) LIKE ? ESCAPE '\\' UNION SELECT enrolled_for FROM devices WHERE enrolled_for IS NOT NULL AND LOWER(enrolled_for) LIKE ? ESCAPE '\\' LIMIT ?",
        [
            pattern.clone().into(),
            pattern.into(),
            (MAX_IN_LIST as i64 + 1).into(),
        ],
    );
    let names = texts(c, &q)?;
    Ok((names.len() <= MAX_IN_LIST && !names.is_empty()).then_some(names))
}

/// The WHERE conditions (after `WHERE 1 = 1`) of `f`, over `violations v` and, when a rule is
/// asked for, `violation_rules r`. `None`: nothing can match.
fn violation_conditions(
    c: &mut dyn Conn,
    f: &ViolationFilter,
    q: &mut Sql,
) -> Result<Option<()>, ApiError> {
    let time = match f.time {
        TimeField::Received => "v.received_at",
        TimeField::Event => "v.at",
    };
    if let Some(d) = &f.device_exact {
        q.push(" AND v.device_id = ?", [d.clone().into()]);
    }
    if let Some(term) = &f.device {
        match devices_like(c, term)? {
            Some(ids) if ids.is_empty() => return Ok(None),
            Some(ids) => {
                q.push(" AND ", []).push_in("v.device_id", &ids);
            }
            None => {
                q.push(
                    " AND LOWER(v.device_id) LIKE ? ESCAPE '\\'",
                    [contains_pattern(term).into()],
                );
            }
        }
    }
    if let Some(term) = &f.holder {
        match holders_like(c, term)? {
            Some(names) => {
                q.push(" AND ", []).push_in("v.holder", &names);
            }
            // No current holder matches (or very many): the holder at receipt, by LIKE.
            None => {
                q.push(
                    " AND LOWER(v.holder) LIKE ? ESCAPE '\\'",
                    [contains_pattern(term).into()],
                );
            }
        }
    }
    if let Some(s) = &f.severity {
        let s = if s == "none" { "" } else { s.as_str() };
        q.push(" AND v.severity = ?", [s.into()]);
    }
    if let Some(v) = &f.verdict {
        q.push(" AND v.verdict = ?", [v.clone().into()]);
    }
    if let Some(t) = f.from {
        q.push(&format!(" AND {time} >= ?"), [t.into()]);
    }
    if let Some(t) = f.to {
        q.push(&format!(" AND {time} <= ?"), [t.into()]);
    }
    Ok(Some(()))
}

fn from_clause(f: &ViolationFilter, q: &mut Sql) {
    q.push(" FROM violations v", []);
    if let Some(rule) = &f.rule {
        q.push(
            " JOIN violation_rules r ON r.device_id = v.device_id AND r.seq = v.seq AND r.rule = ?",
            [rule.clone().into()],
        );
    }
    q.push(" WHERE 1 = 1", []);
}

/// How many violations match `f`: exact from the daily counts when only the rule or the
/// severity is asked, otherwise counted up to [`COUNT_CAP`].
fn count_violations(c: &mut dyn Conn, f: &ViolationFilter) -> Result<(i64, bool), ApiError> {
    if f.is_unfiltered() {
        let mut q = Sql::default();
        q.push(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM violation_counts WHERE rule = ?",
            [f.rule.clone().unwrap_or_default().into()],
        );
        if let Some(s) = &f.severity {
            let s = if s == "none" { "" } else { s.as_str() };
            q.push(" AND severity = ?", [s.into()]);
        }
        let n = c
            .query(&q.text, &q.params)?
            .first()
            .and_then(|r| r.first().and_then(Value::int))
            .unwrap_or(0);
        return Ok((n, true));
    }
    let mut q = Sql::default();
    q.push("SELECT COUNT(*) FROM (SELECT 1", []);
    from_clause(f, &mut q);
    if violation_conditions(c, f, &mut q)?.is_none() {
        return Ok((0, true));
    }
    // The cap as a LIMIT inside: counting stops there.
    q.push(&format!(" LIMIT {}) t", COUNT_CAP + 1), []);
    let n = c
        .query(&q.text, &q.params)?
        .first()
        .and_then(|r| r.first().and_then(Value::int))
        .unwrap_or(0);
    Ok((n.min(COUNT_CAP), n <= COUNT_CAP))
}

/// One page of violations, newest first.
pub fn violations(server: &Server, f: &ViolationFilter) -> Result<Page<ViolationRow>, ApiError> {
    let limit = f.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let after = f.after.as_deref().map(parse_cursor).transpose()?;
    server.db().tx(|c| {
        let (total, total_exact) = count_violations(c, f)?;
        let mut q = Sql::default();
        q.push(
            "SELECT v.device_id, v.seq, v.received_at, v.at, v.record, v.holder, v.severity, v.verdict, v.event_type",
            [],
        );
        from_clause(f, &mut q);
        if violation_conditions(c, f, &mut q)?.is_none() {
            return Ok(Page {
                total: 0,
                total_exact: true,
                items: Vec::new(),
                next: None,
            });
        }
        // The rule's own index orders a rule's list (its received_at is the violation's).
        let (t, d, s) = match (f.time, f.rule.is_some()) {
            (TimeField::Received, true) => ("r.received_at", "r.device_id", "r.seq"),
            (TimeField::Received, false) => ("v.received_at", "v.device_id", "v.seq"),
            (TimeField::Event, _) => ("v.at", "v.device_id", "v.seq"),
        };
        if let Some((time, seq, device)) = after {
            q.push(
                &format!(" AND ({t}, {d}, {s}) < (?, ?, ?)"),
                [time.into(), device.into(), seq.into()],
            );
        }
        q.push(
            &format!(" ORDER BY {t} DESC, {d} DESC, {s} DESC LIMIT ?"),
            [(limit + 1).into()],
        );
        let rows = c.query(&q.text, &q.params)?;
        let mut items: Vec<ViolationRow> = rows.iter().map(|r| violation_row(r)).collect();
        let next = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|v| {
                let time = match f.time {
                    TimeField::Received => v.received_at,
                    TimeField::Event => v.at_ms,
                };
                cursor(time, v.seq, &v.device_id)
            })
        } else {
            None
        };
        Ok(Page {
            total,
            total_exact,
            items,
            next,
        })
    })
}

fn violation_row(r: &[Value]) -> ViolationRow {
    let t = |i: usize| {
        r.get(i)
            .and_then(Value::text)
            .unwrap_or_default()
            .to_owned()
    };
    let n = |i: usize| r.get(i).and_then(Value::int).unwrap_or(0);
    let record: serde_json::Value = serde_json::from_str(&t(4)).unwrap_or_default();
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    ViolationRow {
        device_id: t(0),
        seq: n(1),
        received_at: n(2),
        at_ms: n(3),
        at: s(&record["event"]["at"]),
        holder: r.get(5).and_then(Value::text).map(str::to_owned),
        severity: t(6),
        verdict: t(7),
        event_type: t(8),
        event: record["event"].to_string(),
        rules: record["rules"]
            .as_array()
            .map(|a| a.iter().map(s).collect())
            .unwrap_or_default(),
        reason: s(&record["reason"]),
    }
}

/// Hits per rule per day over the last `days` days, from the daily counts, with every rule of
/// the published policy (the rules that never fire show as zeros).
#[derive(Debug, Clone, Serialize)]
pub struct RuleHits {
    /// Day starts (ms, UTC days), oldest first.
    pub days: Vec<i64>,
    /// Rule id -> count per day.
    pub rules: std::collections::BTreeMap<String, Vec<i64>>,
}

/// See [`RuleHits`].
pub fn rule_hits(server: &Server, days: usize) -> Result<RuleHits, ApiError> {
    const DAY: i64 = 86_400_000;
    let today = server.now().0.div_euclid(DAY);
    let first = today - days as i64 + 1;
    let mut rules = std::collections::BTreeMap::new();
    if let Some((_, p)) = server.db().tx(|c| server.newest_policy(c))? {
        for r in &p.rules {
            rules.insert(r.id.clone(), vec![0; days]);
        }
    }
    let rows = server.db().tx(|c| {
        Ok(c.query(
            "SELECT rule, day, CAST(SUM(n) AS BIGINT) FROM violation_counts WHERE day >= $1 AND rule <> '' GROUP BY rule, day",
            &[first.into()],
        )?)
    })?;
    for r in rows {
        let (Some(rule), Some(day), Some(n)) = (
            r.first().and_then(Value::text),
            r.get(1).and_then(Value::int),
            r.get(2).and_then(Value::int),
        ) else {
            continue;
        };
        let i = usize::try_from(day - first).unwrap_or(usize::MAX);
        if let Some(c) = rules
            .entry(rule.to_owned())
            .or_insert_with(|| vec![0; days])
            .get_mut(i)
        {
            *c += n;
        }
    }
    Ok(RuleHits {
        days: (first..=today).map(|d| d * DAY).collect(),
        rules,
    })
}

// ---------------------------------------------------------------------------------------
// The fleet

/// How the fleet is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FleetSort {
    /// By device id.
    #[default]
    Device,
    /// By holder, then device id.
    Holder,
    /// Most recent check-in first.
    CheckIn,
}

impl FleetSort {
    /// From a query parameter.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "device" => Some(Self::Device),
            "holder" => Some(Self::Holder),
            "check_in" => Some(Self::CheckIn),
            _ => None,
        }
    }

    /// Its query-parameter name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Holder => "holder",
            Self::CheckIn => "check_in",
        }
    }

    /// Its key expression, ascending or not.
    fn key(self) -> (&'static str, bool) {
        match self {
            Self::Device => ("d.device_id", true),
            Self::Holder => ("COALESCE(h.holder, d.enrolled_for, '')", true),
            Self::CheckIn => ("COALESCE(d.last_check_in, 0)", false),
        }
    }
}

/// Which phones to list.
#[derive(Debug, Clone, Default)]
pub struct FleetFilter {
    /// Device id or holder contains (case-insensitive).
    pub q: Option<String>,
    /// Only phones in this state.
    pub state: Option<PhoneState>,
    /// Order.
    pub sort: FleetSort,
    /// Keyset: the page after this cursor.
    pub after: Option<String>,
    /// Rows per page (bounded by [`MAX_PAGE`]).
    pub limit: Option<i64>,
}

fn fleet_conditions(f: &FleetFilter, now: i64, q: &mut Sql) {
    if let Some(term) = &f.q {
        let p = contains_pattern(term);
        q.push(
            " AND (LOWER(d.device_id) LIKE ? ESCAPE '\\' OR LOWER(COALESCE(h.holder, d.enrolled_for, '')) LIKE ? ESCAPE '\\')",
            [p.clone().into(), p.into()],
        );
    }
    if let Some(s) = f.state {
        q.push(
            &format!(" AND ({}) = ?", crate::fleet::state_sql(now)),
            [s.as_str().into()],
        );
    }
}

/// One page of the fleet.
pub fn fleet_page(server: &Server, f: &FleetFilter) -> Result<Page<DeviceRow>, ApiError> {
    let now = server.now().0;
    let limit = f.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let (key, ascending) = f.sort.key();
    server.db().tx(|c| {
        let mut count = Sql::default();
        count.push(
            "SELECT COUNT(*) FROM devices d LEFT JOIN device_holders h ON h.device_id = d.device_id WHERE 1 = 1",
            [],
        );
        fleet_conditions(f, now, &mut count);
        let total = c
            .query(&count.text, &count.params)?
            .first()
            .and_then(|r| r.first().and_then(Value::int))
            .unwrap_or(0);
        let mut q = Sql::default();
        q.push(&format!("{} WHERE 1 = 1", admin::device_select(now)), []);
        fleet_conditions(f, now, &mut q);
        let op = if ascending { ">" } else { "<" };
        if let Some(after) = &f.after {
            let (value, device) = after
                .split_once('\u{1f}')
                .ok_or_else(|| ApiError::bad_request("after: not a cursor this server gave"))?;
            let value: Value = match f.sort {
                FleetSort::CheckIn => value
                    .parse::<i64>()
                    .map_err(|_| ApiError::bad_request("after: not a cursor this server gave"))?
                    .into(),
                _ => value.to_owned().into(),
            };
            q.push(
                &format!(" AND ({key}, d.device_id) {op} (?, ?)"),
                [value, device.to_owned().into()],
            );
        }
        let dir = if ascending { "ASC" } else { "DESC" };
        q.push(
            &format!(" ORDER BY {key} {dir}, d.device_id {dir} LIMIT ?"),
            [(limit + 1).into()],
        );
        let mut items: Vec<DeviceRow> = c
            .query(&q.text, &q.params)?
            .iter()
            .map(|r| admin::device_row(r))
            .collect();
        let next = if items.len() as i64 > limit {
            items.truncate(limit as usize);
            items.last().map(|d| {
                let value = match f.sort {
                    FleetSort::Device => d.device_id.clone(),
                    FleetSort::Holder => d.holder_name().unwrap_or_default().to_owned(),
                    FleetSort::CheckIn => d.last_check_in.unwrap_or(0).to_string(),
                };
                format!("{value}\u{1f}{}", d.device_id)
            })
        } else {
            None
        };
        Ok(Page {
            total,
            total_exact: true,
            items,
            next,
        })
    })
}

// ---------------------------------------------------------------------------------------
// The summary

/// A reason with how many it concerns, and the list it links to.
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    /// What (an alert kind, a fail-closed reason, an installed version, a rule).
    pub what: String,
    /// How many phones (or violations, for rules).
    pub count: i64,
    /// The filtered list (a console path with its query).
    pub link: String,
}

/// The fleet at a glance: phones per state, with the top reasons of each.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Phones per state, every state listed (zeros too), in decision order.
    pub states: Vec<(PhoneState, i64)>,
    /// Phones.
    pub phones: i64,
    /// Unresolved alerts by kind (phones).
    pub alerts: Vec<Reason>,
    /// Fail-closed reasons (phones).
    pub fail_closed: Vec<Reason>,
    /// Installed policy versions of outdated phones.
    pub outdated: Vec<Reason>,
    /// Rules that fired most over the last seven days (violations).
    pub rules: Vec<Reason>,
    /// The newest published policy version.
    pub published: Option<i64>,
    /// The trust root in force: its version and cryptographic suite (`intl` or `sm`).
    pub trust_root_version: Option<u64>,
    /// See [`Summary::trust_root_version`].
    pub suite: Option<baomi_core::suite::Suite>,
}

/// Top entries shown per reason.
const TOP: i64 = 5;

fn reasons(
    c: &mut dyn Conn,
    sql: &str,
    params: &[Value],
    link: impl Fn(&str) -> String,
) -> Result<Vec<Reason>, ApiError> {
    Ok(c.query(sql, params)?
        .iter()
        .filter_map(|r| {
            let what = match r.first()? {
                Value::Text(t) => t.clone(),
                Value::Int(i) => i.to_string(),
                Value::Null | Value::Texts(_) | Value::Ints(_) => String::new(),
            };
            Some(Reason {
                link: link(&what),
                count: r.get(1)?.int()?,
                what,
            })
        })
        .collect())
}

fn query_escape(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// See [`Summary`].
pub fn summary(server: &Server) -> Result<Summary, ApiError> {
    let now = server.now().0;
    let week = now.div_euclid(86_400_000) - 6;
    server.db().tx(|c| {
        let counts: std::collections::BTreeMap<String, i64> = c
            .query(
                &format!(
                    "SELECT state, COUNT(*) FROM (SELECT {} AS state FROM devices d) t GROUP BY state",
                    crate::fleet::state_sql(now)
                ),
                &[],
            )?
            .iter()
            .filter_map(|r| Some((r.first()?.text()?.to_owned(), r.get(1)?.int()?)))
            .collect();
        let states: Vec<(PhoneState, i64)> = PhoneState::ALL
            .iter()
            .map(|s| (*s, counts.get(s.as_str()).copied().unwrap_or(0)))
            .collect();
        let published = c
            .query("SELECT MAX(version) FROM bundles", &[])?
            .first()
            .and_then(|r| r.first().and_then(Value::int));
        Ok(Summary {
            phones: states.iter().map(|(_, n)| n).sum(),
            alerts: reasons(
                c,
                &format!("SELECT kind, COUNT(DISTINCT device_id) FROM alerts WHERE state <> 'resolved' GROUP BY kind ORDER BY 2 DESC, 1 LIMIT {TOP}"),
                &[],
                |k| format!("/console/alerts?kind={}", query_escape(k)),
            )?,
            fail_closed: reasons(
                c,
                &format!("SELECT fail_closed, COUNT(*) FROM devices WHERE fail_closed IS NOT NULL AND retired_at IS NULL GROUP BY fail_closed ORDER BY 2 DESC, 1 LIMIT {TOP}"),
                &[],
                |_| "/console/fleet?state=fail_closed".into(),
            )?,
            outdated: reasons(
                c,
                &format!("SELECT COALESCE(policy_version, 0), COUNT(*) FROM devices WHERE retired_at IS NULL AND (policy_version IS NULL OR policy_version < (SELECT COALESCE(MAX(version), 0) FROM bundles)) GROUP BY COALESCE(policy_version, 0) ORDER BY 2 DESC, 1 LIMIT {TOP}"),
                &[],
                |_| "/console/fleet?state=outdated".into(),
            )?,
            rules: reasons(
                c,
                &format!("SELECT rule, CAST(SUM(n) AS BIGINT) FROM violation_counts WHERE day >= $1 AND rule <> '' GROUP BY rule ORDER BY 2 DESC, 1 LIMIT {TOP}"),
                &[week.into()],
                |r| format!("/console/violations?rule={}", query_escape(r)),
            )?,
            states,
            published,
            trust_root_version: None,
            suite: None,
        })
    })
    .and_then(|mut sm: Summary| {
        let root = server.trust_root()?;
        sm.trust_root_version = root.as_ref().map(|r| r.version());
        sm.suite = root.as_ref().map(|r| r.suite());
        Ok(sm)
    })
}

// ---------------------------------------------------------------------------------------
// Custody history

/// One sign-out, its return, and what the holder's phones did meanwhile.
#[derive(Debug, Clone, Serialize)]
pub struct CustodySpan {
    /// Position of the sign-out in the registry feed.
    pub cursor: i64,
    /// Holder.
    pub holder: String,
    /// Document.
    pub document: String,
    /// Its level (a classification name).
    pub classification: String,
    /// Signed out (registry time, ms).
    pub signed_out_at: i64,
    /// The office received the sign-out (ms).
    pub received_at: i64,
    /// Returned (registry time, ms); `None`: still out.
    pub returned_at: Option<i64>,
    /// The office received the return (ms).
    pub return_received_at: Option<i64>,
    /// The holder's phones and when each confirmed the camera off.
    pub devices: Vec<CustodyDevice>,
    /// Violations received from the holder's phones while it was out.
    pub violations: i64,
    /// Those violations, as a filtered list.
    pub violations_link: String,
}

/// One of the holder's phones during a custody.
#[derive(Debug, Clone, Serialize)]
pub struct CustodyDevice {
    /// Device.
    pub device_id: String,
    /// When it first reported camera off after the sign-out (check-in, or the MDM's
    /// acknowledgement of the restriction), ms; `None`: not confirmed.
    pub confirmed_at: Option<i64>,
}

impl CustodyDevice {
    /// How long the camera took to go off after the office received the sign-out (ms).
    pub fn took_ms(&self, span: &CustodySpan) -> Option<i64> {
        self.confirmed_at.map(|t| (t - span.received_at).max(0))
    }
}

/// Which custody spans to list.
#[derive(Debug, Clone, Default)]
pub struct CustodyFilter {
    /// Holder contains.
    pub holder: Option<String>,
    /// Document contains.
    pub document: Option<String>,
    /// Only documents still out.
    pub open: bool,
    /// Keyset: spans before this feed position.
    pub after: Option<String>,
    /// Rows per page (bounded by [`MAX_PAGE`]).
    pub limit: Option<i64>,
}

const RETURN: &str = "(SELECT MIN(r.cursor) FROM custody r WHERE r.holder = s.holder AND r.document = s.document AND r.action = 'return' AND r.cursor > s.cursor)";

/// Custody spans, newest sign-out first: every sign-out is kept with its return.
pub fn custody_history(server: &Server, f: &CustodyFilter) -> Result<Page<CustodySpan>, ApiError> {
    let limit = f.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let now = server.now().0;
    server.db().tx(|c| {
        let mut cond = Sql::default();
        cond.push(" FROM custody s WHERE s.action = 'sign_out'", []);
        if let Some(h) = &f.holder {
            cond.push(
                " AND LOWER(s.holder) LIKE ? ESCAPE '\\'",
                [contains_pattern(h).into()],
            );
        }
        if let Some(d) = &f.document {
            cond.push(
                " AND LOWER(s.document) LIKE ? ESCAPE '\\'",
                [contains_pattern(d).into()],
            );
        }
        if f.open {
            cond.push(&format!(" AND {RETURN} IS NULL"), []);
        }
        let total = c
            .query(&format!("SELECT COUNT(*){}", cond.text), &cond.params)?
            .first()
            .and_then(|r| r.first().and_then(Value::int))
            .unwrap_or(0);
        let mut q = Sql {
            text: format!(
                "SELECT s.cursor, s.holder, s.document, s.classification, s.at, s.received_at, {RETURN}{}",
                cond.text
            ),
            params: cond.params,
        };
        if let Some(a) = &f.after {
            let a: i64 = a
                .parse()
                .map_err(|_| ApiError::bad_request("after: not a cursor this server gave"))?;
            q.push(" AND s.cursor < ?", [a.into()]);
        }
        q.push(" ORDER BY s.cursor DESC LIMIT ?", [(limit + 1).into()]);
        let rows = c.query(&q.text, &q.params)?;
        let mut items = Vec::with_capacity(rows.len());
        for r in rows.iter().take(limit as usize) {
            let t = |i: usize| r.get(i).and_then(Value::text).unwrap_or_default().to_owned();
            let n = |i: usize| r.get(i).and_then(Value::int);
            let holder = t(1);
            let received_at = n(5).unwrap_or(0);
            let ret = match n(6) {
                Some(cursor) => c
                    .query(
                        "SELECT at, received_at FROM custody WHERE cursor = $1",
                        &[cursor.into()],
                    )?
                    .first()
                    .map(|x| {
                        (
                            x.first().and_then(Value::int),
                            x.get(1).and_then(Value::int),
                        )
                    }),
                None => None,
            };
            let (returned_at, return_received_at) = ret.unwrap_or((None, None));
            let until = return_received_at.unwrap_or(now);
            let mut devices = Vec::new();
            for d in texts(
                c,
                Sql::default().push(
                    "SELECT device_id FROM device_holders WHERE holder = ? ORDER BY device_id LIMIT 20",
                    [holder.clone().into()],
                ),
            )? {
                let check_in = c
                    .query(
                        "SELECT MIN(at) FROM checkins WHERE device_id = $1 AND at >= $2 AND at <= $3 AND posture LIKE '%\"camera_disabled\":true%'",
                        &[d.clone().into(), received_at.into(), until.into()],
                    )?
                    .first()
                    .and_then(|r| r.first().and_then(Value::int));
                let mdm = c
                    .query(
                        "SELECT MIN(answered_at) FROM mdm_commands WHERE device_id = $1 AND kind = 'install_profile' AND status = 'acknowledged' AND created_at >= $2 AND created_at <= $3",
                        &[d.clone().into(), received_at.into(), until.into()],
                    )?
                    .first()
                    .and_then(|r| r.first().and_then(Value::int));
                devices.push(CustodyDevice {
                    device_id: d,
                    confirmed_at: [check_in, mdm].into_iter().flatten().min(),
                });
            }
            let violations = c
                .query(
                    &format!("SELECT COUNT(*) FROM (SELECT 1 FROM violations WHERE holder = $1 AND received_at >= $2 AND received_at <= $3 LIMIT {}) t", COUNT_CAP + 1),
                    &[holder.clone().into(), received_at.into(), until.into()],
                )?
                .first()
                .and_then(|r| r.first().and_then(Value::int))
                .unwrap_or(0);
            items.push(CustodySpan {
                cursor: n(0).unwrap_or(0),
                violations_link: format!(
                    "/console/violations?holder={}&from_ms={received_at}&to_ms={until}",
                    query_escape(&holder)
                ),
                holder,
                document: t(2),
                classification: t(3),
                signed_out_at: n(4).unwrap_or(0),
                received_at,
                returned_at,
                return_received_at,
                devices,
                violations,
            });
        }
        let next = (rows.len() as i64 > limit)
            .then(|| items.last().map(|s| s.cursor.to_string()))
            .flatten();
        Ok(Page {
            total,
            total_exact: true,
            items,
            next,
        })
    })
}
