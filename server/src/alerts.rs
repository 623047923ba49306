//! Alerts as records: something about one phone an officer must look at, with a state
//! (open, acknowledged with an officer's note, resolved) instead of an all-time count. The
//! console, the office API and the fleet's compliance read the same rows; every change of
//! state is written to the audit log by the caller (the officer's action).
//!
//! One unresolved alert per phone and kind: a repeat while it is open or acknowledged counts
//! on it (`occurrences`, `last_at`); after it is resolved, the next one opens a new alert.

use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::db::{Conn, Sql, Value};

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The phone's chain went back or forked, or it holds a bundle the office never published.
    Chain,
    /// The phone found its store damaged or restored.
    StoreDamaged,
    /// Enforcement failed or configuration was refused (`baomi.tamper`).
    Tamper,
    /// The phone's clock was set back or is far off (`baomi.clock`).
    Clock,
    /// A delivery the phone was owed was withheld (`baomi.withheld_delivery`).
    Withheld,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [
        Kind::Chain,
        Kind::StoreDamaged,
        Kind::Tamper,
        Kind::Clock,
        Kind::Withheld,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Chain => "chain",
            Kind::StoreDamaged => "store_damaged",
            Kind::Tamper => "tamper",
            Kind::Clock => "clock",
            Kind::Withheld => "withheld",
        }
    }
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Nobody has looked at it.
    Open,
    /// An officer looked and said what is being done (the note).
    Acknowledged,
    /// Dealt with; it no longer counts against the phone.
    Resolved,
}

impl State {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Acknowledged => "acknowledged",
            State::Resolved => "resolved",
        }
    }

    /// From a query parameter or a stored value.
    pub fn parse(s: &str) -> Option<Self> {
        [State::Open, State::Acknowledged, State::Resolved]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One alert.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// Its number.
    pub id: i64,
    /// The phone.
    pub device_id: String,
    /// What it is about (a [`Kind`] name).
    pub kind: String,
    /// What was seen first.
    pub detail: String,
    /// When it opened (ms).
    pub opened_at: i64,
    /// When it was last seen again (ms).
    pub last_at: i64,
    /// How often it was seen while unresolved.
    pub occurrences: i64,
    /// A [`State`] name.
    pub state: String,
    /// When its state last changed (ms).
    pub updated_at: i64,
    /// The officer who last changed it.
    pub updated_by: Option<String>,
    /// The officer's note.
    pub note: Option<String>,
}

/// Longest detail or note kept (characters): the phone's words and an officer's are bounded.
pub const MAX_TEXT: usize = 1000;

fn bounded(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// Raises an alert on `device` (or counts a repeat on the unresolved one of its kind).
pub fn raise(
    c: &mut dyn Conn,
    device: &str,
    kind: Kind,
    detail: &str,
    now: i64,
) -> Result<(), ApiError> {
    let repeat = c.execute(
        "UPDATE alerts SET occurrences = occurrences + 1, last_at = $3 WHERE device_id = $1 AND kind = $2 AND state <> 'resolved'",
        &[device.into(), kind.as_str().into(), now.into()],
    )?;
    if repeat == 0 {
        c.execute(
            "INSERT INTO alerts (device_id, kind, detail, opened_at, last_at, state, updated_at) VALUES ($1, $2, $3, $4, $4, 'open', $4)",
            &[
                device.into(),
                kind.as_str().into(),
                bounded(detail).into(),
                now.into(),
            ],
        )?;
        // Counted on the phone's row: its state reads a column, not this table.
        c.execute(
            "UPDATE devices SET open_alerts = open_alerts + 1 WHERE device_id = $1",
            &[device.into()],
        )?;
        // Out to the officer's channels, in this transaction (the outbox).
        crate::notify::enqueue(
            c,
            &crate::notify::Notification {
                kind: "alert".into(),
                device_id: device.to_owned(),
                summary: format!("{device}: {} alert: {}", kind.as_str(), bounded(detail)),
                at: now,
                detail: serde_json::json!({ "kind": kind.as_str(), "detail": bounded(detail) }),
            },
        )?;
    }
    Ok(())
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this state; `None`: open and acknowledged (unresolved).
    pub state: Option<State>,
    /// Every state.
    pub all: bool,
    /// Only this phone.
    pub device: Option<String>,
    /// Only this kind (a [`Kind`] name).
    pub kind: Option<String>,
    /// Keyset: alerts numbered below this.
    pub before: Option<i64>,
    /// At most this many (bounded by [`MAX_PAGE`]).
    pub limit: i64,
}

/// Most alerts in one page.
pub const MAX_PAGE: i64 = 500;

/// Alerts, newest first.
pub fn list(c: &mut dyn Conn, f: &Filter) -> Result<Vec<Alert>, ApiError> {
    let mut q = Sql::default();
    q.push(&format!("{SELECT} WHERE 1 = 1"), []);
    match (f.state, f.all) {
        (Some(s), _) => {
            q.push(" AND state = ?", [s.as_str().into()]);
        }
        (None, false) => {
            q.push(" AND state <> 'resolved'", []);
        }
        (None, true) => {}
    }
    if let Some(d) = &f.device {
        q.push(" AND device_id = ?", [d.clone().into()]);
    }
    if let Some(k) = &f.kind {
        q.push(" AND kind = ?", [k.clone().into()]);
    }
    if let Some(b) = f.before {
        q.push(" AND id < ?", [b.into()]);
    }
    q.push(
        " ORDER BY id DESC LIMIT ?",
        [f.limit.clamp(1, MAX_PAGE).into()],
    );
    rows(c, &q)
}

/// Alert `id`, whatever its state.
pub fn get(c: &mut dyn Conn, id: i64) -> Result<Option<Alert>, ApiError> {
    let mut q = Sql::default();
    q.push(&format!("{SELECT} WHERE id = ?"), [id.into()]);
    Ok(rows(c, &q)?.into_iter().next())
}

const SELECT: &str = "SELECT id, device_id, kind, detail, opened_at, last_at, occurrences, state, updated_at, updated_by, note FROM alerts";

fn rows(c: &mut dyn Conn, q: &Sql) -> Result<Vec<Alert>, ApiError> {
    Ok(c.query(&q.text, &q.params)?
        .iter()
        .map(|r| {
            let t = |i: usize| r.get(i).and_then(Value::text).map(str::to_owned);
            let n = |i: usize| r.get(i).and_then(Value::int).unwrap_or(0);
            Alert {
                id: n(0),
                device_id: t(1).unwrap_or_default(),
                kind: t(2).unwrap_or_default(),
                detail: t(3).unwrap_or_default(),
                opened_at: n(4),
                last_at: n(5),
                occurrences: n(6),
                state: t(7).unwrap_or_default(),
                updated_at: n(8),
                updated_by: t(9),
                note: t(10),
            }
        })
        .collect())
}

/// Moves alert `id` to `to` (acknowledged or resolved) with the officer's note; the alert as
/// it is now. A resolved alert stays resolved (409); an unknown one is 404.
pub fn transition(
    c: &mut dyn Conn,
    id: i64,
    to: State,
    officer: &str,
    note: &str,
    now: i64,
) -> Result<Alert, ApiError> {
    if to == State::Open {
        return Err(ApiError::bad_request(
            "an alert is not reopened: a new one opens",
        ));
    }
    let note = bounded(note.trim());
    if note.is_empty() {
        return Err(ApiError::bad_request(
            "say what was done: a note is required",
        ));
    }
    let n = c.execute(
        "UPDATE alerts SET state = $1, updated_at = $2, updated_by = $3, note = $4 WHERE id = $5 AND state <> 'resolved'",
        &[
            to.as_str().into(),
            now.into(),
            officer.into(),
            note.into(),
            id.into(),
        ],
    )?;
    if n == 1 && to == State::Resolved {
        c.execute(
            "UPDATE devices SET open_alerts = open_alerts - 1 WHERE device_id = (SELECT device_id FROM alerts WHERE id = $1) AND open_alerts > 0",
            &[id.into()],
        )?;
    }
    match (n, get(c, id)?) {
        (_, None) => Err(ApiError::new_pub(
            404,
            "not_found",
            format!("no alert {id}"),
        )),
        (0, Some(_)) => Err(ApiError::conflict(format!(
            "alert {id} is resolved already"
        ))),
        (_, Some(a)) => Ok(a),
    }
}
