//! Server tables (same text for both engines but the auto-increment column).

use baomi_core::sync::custody::{CustodyAction, CustodyRecordDoc, read_verified_custody_record};

use crate::db::{Conn, DbError, Kind, Value, values_list};

/// Rows each daily count is spread over (by device).
pub const COUNT_SHARDS: u64 = 32;

/// The count shard of `device` (FNV-1a of its id: stable across processes and versions).
pub fn count_shard(device: &str) -> i64 {
    let h = device.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    i64::try_from(h % COUNT_SHARDS).unwrap_or(0)
}

/// The stored names of a custody record's level and action (as they serialise).
pub fn custody_names(doc: &CustodyRecordDoc) -> (String, String) {
    let action = match doc.action {
        CustodyAction::SignOut => "sign_out",
        CustodyAction::Return => "return",
    };
    (doc.classification.as_str().to_owned(), action.to_owned())
}

/// Schema version written into `server_meta`. Version 2 (protocol 2): chain tags of received
/// records, the acknowledged record's tag, the device's store generation, the sync's session
/// key, holder-bound enrolment tokens, the device's replay counter (`last_request_ms`; the
/// `nonces` table of version 1 is no longer written). Version 3: the platform's report of
/// what it applied, setting by setting (`devices.applied`). Version 4: MDM links, state and the
/// command ledger (new tables only). Version 5: officers, their sessions, failed logins, the
/// append-only audit log, and each device's check-in history (new tables only). Version 6:
/// each device's received records and bytes today (`quota_day`, `quota_records`,
/// `quota_bytes`), officers that can be disabled (`officers.disabled_at`); new tables for
/// login attempts and MDM events seen. Version 7 (issue 21): each record's public link
/// (`violations.link`) and the acknowledged record's (`devices.acked_link`); new tables for
/// device checkpoints and the evidence ledger (its queue, leaves, stored hashes, signed
/// checkpoints and witnesses' cosignatures); enrolment tokens that can be revoked
/// (`tokens.revoked_at`) and devices that can be retired (`devices.retired_at`). Version 8 (issue 22): the columns the console filters on, copied out
/// of each violation's record when it is received (`holder` as assigned then, `severity`,
/// `verdict`, `event_type`), a row per rule matched (`violation_rules`), daily counts per rule and
/// severity (`violation_counts`), whether the phone's last report applied its posture
/// (`devices.applied_ok`), alerts as records with a state (`alerts`; a phone's unresolved
/// ones counted on its row, `devices.open_alerts`), and the indexes the
/// console's queries use; earlier rows are filled in once by [`backfill_v8`].
/// Version 9 (issue 23): personnel assignment records share the custody feed (`custody.device_id`
/// set, `action = 'assign'`). Version 10 (issue 21): a device checkpoint signed with the request
/// that carried it keeps that binding (`device_checkpoints.binding`, empty for others).
/// Version 11 (issue 21): a device checkpoint is kept on the row of the record it ends at
/// (`violations.checkpoint_at`, the phone's time in it; every checkpoint ends at its batch's
/// last record) and its leaf is named after that record (`record/DEVICE/SEQ/checkpoint`), so a
/// sync writes no page of its own for it: `device_checkpoints` (its own table and key, a
/// random page a sync on SQLite) is copied onto those rows and dropped, and the leaves' names
/// `checkpoint/DEVICE/SEQ` renamed. The checkpoint itself (link, signature, binding) is its leaf.
/// Version 12 (issue 21): the largest log checkpoint each phone reports carrying
/// (`devices.log_seen`, its size and when it came), for the auditor.
pub const VERSION: i64 = 12;

/// Columns added by each version, applied in order to a database at an older version (and to
/// a fresh one, which starts at version 1's tables).
const LADDER: &[(i64, &str)] = &[
    (
        2,
        "ALTER TABLE devices ADD COLUMN acked_tag TEXT NOT NULL DEFAULT '';
     ALTER TABLE devices ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN session_key TEXT;
     ALTER TABLE devices ADD COLUMN enrolled_for TEXT;
     ALTER TABLE devices ADD COLUMN last_request_ms BIGINT NOT NULL DEFAULT 0;
     ALTER TABLE violations ADD COLUMN tag TEXT NOT NULL DEFAULT '';
     ALTER TABLE tokens ADD COLUMN holder TEXT;",
    ),
    (3, "ALTER TABLE devices ADD COLUMN applied TEXT;"),
    (
        6,
        "ALTER TABLE devices ADD COLUMN quota_day BIGINT NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN quota_records BIGINT NOT NULL DEFAULT 0;
     ALTER TABLE devices ADD COLUMN quota_bytes BIGINT NOT NULL DEFAULT 0;
     ALTER TABLE officers ADD COLUMN disabled_at BIGINT;",
    ),
    (
        7,
        "ALTER TABLE violations ADD COLUMN link TEXT NOT NULL DEFAULT '';
     ALTER TABLE devices ADD COLUMN acked_link TEXT NOT NULL DEFAULT '';
     ALTER TABLE tokens ADD COLUMN revoked_at BIGINT;
     ALTER TABLE devices ADD COLUMN retired_at BIGINT;",
    ),
    (
        8,
        "ALTER TABLE violations ADD COLUMN holder TEXT;
     ALTER TABLE violations ADD COLUMN severity TEXT NOT NULL DEFAULT '';
     ALTER TABLE violations ADD COLUMN verdict TEXT NOT NULL DEFAULT '';
     ALTER TABLE violations ADD COLUMN event_type TEXT NOT NULL DEFAULT '';
     ALTER TABLE devices ADD COLUMN applied_ok BIGINT;
     ALTER TABLE devices ADD COLUMN open_alerts BIGINT NOT NULL DEFAULT 0;
     ALTER TABLE custody ADD COLUMN document TEXT NOT NULL DEFAULT '';
     ALTER TABLE custody ADD COLUMN classification TEXT NOT NULL DEFAULT '';
     ALTER TABLE custody ADD COLUMN action TEXT NOT NULL DEFAULT '';
     ALTER TABLE custody ADD COLUMN at BIGINT NOT NULL DEFAULT 0;",
    ),
    (9, "ALTER TABLE custody ADD COLUMN device_id TEXT;"),
    (
        10,
        "CREATE TABLE IF NOT EXISTS device_checkpoints (
        device_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        link TEXT NOT NULL,
        at BIGINT NOT NULL,
        signature TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        PRIMARY KEY (device_id, seq)
     );
     ALTER TABLE device_checkpoints ADD COLUMN binding TEXT NOT NULL DEFAULT '';",
    ),
    (
        11,
        // The names: by their first characters, not a range over the index (PostgreSQL may
        // order text by a locale that ignores the `/`); a scan of the leaves, once.
        "ALTER TABLE violations ADD COLUMN checkpoint_at BIGINT;
     UPDATE violations SET checkpoint_at = (SELECT d.at FROM device_checkpoints d WHERE d.device_id = violations.device_id AND d.seq = violations.seq)
        WHERE EXISTS (SELECT 1 FROM device_checkpoints d WHERE d.device_id = violations.device_id AND d.seq = violations.seq);
     UPDATE ledger_leaves SET ref = 'record/' || substr(ref, 12) || '/checkpoint' WHERE substr(ref, 1, 11) = 'checkpoint/';
     UPDATE ledger_queue SET ref = 'record/' || substr(ref, 12) || '/checkpoint' WHERE substr(ref, 1, 11) = 'checkpoint/';
     DROP TABLE device_checkpoints;",
    ),
    (
        12,
        "ALTER TABLE devices ADD COLUMN log_seen TEXT;
     ALTER TABLE devices ADD COLUMN log_seen_size BIGINT;
     ALTER TABLE devices ADD COLUMN log_seen_at BIGINT;",
    ),
];

/// Indexes of version 8: every console listing pages by keyset over one of them.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS violations_received ON violations (received_at, device_id, seq);
CREATE INDEX IF NOT EXISTS violations_event_time ON violations (at, device_id, seq);
CREATE INDEX IF NOT EXISTS violations_holder ON violations (holder, received_at, device_id, seq);
CREATE INDEX IF NOT EXISTS violations_severity ON violations (severity, received_at, device_id, seq);
CREATE TABLE IF NOT EXISTS violation_rules (
    device_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    rule TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq, rule)
);
CREATE INDEX IF NOT EXISTS violation_rules_rule ON violation_rules (rule, received_at, device_id, seq);
CREATE TABLE IF NOT EXISTS violation_counts (
    day BIGINT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    shard BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (day, rule, severity, shard)
);
CREATE INDEX IF NOT EXISTS devices_check_in ON devices (last_check_in, device_id);
CREATE INDEX IF NOT EXISTS device_holders_holder ON device_holders (holder, device_id);
CREATE INDEX IF NOT EXISTS alerts_device ON alerts (device_id, state);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, id);
CREATE INDEX IF NOT EXISTS custody_document ON custody (holder, document, cursor);
CREATE INDEX IF NOT EXISTS custody_action ON custody (action, cursor);
CREATE INDEX IF NOT EXISTS custody_device ON custody (device_id, cursor);
";

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS server_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_by TEXT
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    platform TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    last_check_in BIGINT,
    acked_through BIGINT NOT NULL DEFAULT 0,
    head_seq BIGINT NOT NULL DEFAULT 0,
    head_tag TEXT NOT NULL DEFAULT '',
    policy_id TEXT,
    policy_version BIGINT,
    policy_digest TEXT,
    posture TEXT,
    fail_closed TEXT,
    clock_skew_ms BIGINT,
    custody_cursor BIGINT NOT NULL DEFAULT 0,
    alert TEXT
);
CREATE TABLE IF NOT EXISTS nonces (
    device_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, nonce)
);
CREATE TABLE IF NOT EXISTS violations (
    device_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    at BIGINT NOT NULL,
    rules TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE TABLE IF NOT EXISTS trust_roots (
    version BIGINT PRIMARY KEY,
    envelope TEXT NOT NULL,
    published_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS bundles (
    version BIGINT PRIMARY KEY,
    policy_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    envelope TEXT NOT NULL,
    holders TEXT NOT NULL,
    published_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS mdm_links (
    device_id TEXT PRIMARY KEY,
    mdm_id TEXT NOT NULL UNIQUE,
    linked_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS mdm_state (
    device_id TEXT PRIMARY KEY,
    desired TEXT,
    device_posture TEXT,
    device_posture_at BIGINT NOT NULL DEFAULT 0,
    custody_changed_at BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS mdm_commands (
    command_uuid TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    mdm_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    body TEXT NOT NULL,
    digest TEXT NOT NULL,
    ord BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    queued_at BIGINT,
    answered_at BIGINT
);
CREATE INDEX IF NOT EXISTS mdm_commands_due ON mdm_commands (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS mdm_events_seen (
    event_id TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS officers (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS officer_sessions (
    token_hash TEXT PRIMARY KEY,
    officer TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    name TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_name ON login_failures (name, at);
CREATE TABLE IF NOT EXISTS login_attempts (
    name TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkins (
    device_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    posture TEXT NOT NULL,
    fail_closed TEXT
);
CREATE INDEX IF NOT EXISTS checkins_device ON checkins (device_id, at);
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    size BIGINT PRIMARY KEY,
    note TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_witnesses (
    witness TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    note TEXT NOT NULL,
    report TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS device_holders (
    device_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL
);
";

/// Creates the tables if missing.
pub fn init(c: &mut dyn Conn, kind: Kind) -> Result<(), DbError> {
    c.batch(TABLES)?;
    // `serial`: ids that never come back. The log's leaves and stored hashes are appended in
    // index order: on SQLite the index is the rowid itself (`log_key`: one B-tree a table, not
    // a table and its primary key's index), and the queue's ids (`queue_key`) need no
    // AUTOINCREMENT bookkeeping (a row's id only has to exceed those still queued). Databases
    // created before keep their layout; it reads and writes the same.
    let (serial, log_key, queue_key) = match kind {
        Kind::Sqlite => (
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "INTEGER PRIMARY KEY",
            "INTEGER PRIMARY KEY",
        ),
        Kind::Postgres => (
            "BIGSERIAL PRIMARY KEY",
            "BIGINT PRIMARY KEY",
            "BIGSERIAL PRIMARY KEY",
        ),
    };
    c.batch(&format!(
        "CREATE TABLE IF NOT EXISTS ledger_leaves (n {log_key}, ref TEXT NOT NULL, data TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS ledger_leaves_ref ON ledger_leaves (ref);
        CREATE TABLE IF NOT EXISTS ledger_hashes (idx {log_key}, hash TEXT NOT NULL);"
    ))?;
    c.batch(&format!(
        "CREATE TABLE IF NOT EXISTS custody (
            cursor {serial},
            record_id TEXT NOT NULL UNIQUE,
            holder TEXT NOT NULL,
            envelope TEXT NOT NULL,
            received_at BIGINT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS custody_holder ON custody (holder, cursor);
        CREATE TABLE IF NOT EXISTS ledger_queue (
            id {queue_key},
            ref TEXT NOT NULL,
            data TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS alerts (
            id {serial},
            device_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL,
            opened_at BIGINT NOT NULL,
            last_at BIGINT NOT NULL,
            occurrences BIGINT NOT NULL DEFAULT 1,
            state TEXT NOT NULL DEFAULT 'open',
            updated_at BIGINT NOT NULL,
            updated_by TEXT,
            note TEXT
        );
        CREATE TABLE IF NOT EXISTS alert_channels (channel TEXT PRIMARY KEY);
        CREATE TABLE IF NOT EXISTS deliveries (
            id {serial},
            channel TEXT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts BIGINT NOT NULL,
            next_attempt_at BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            delivered_at BIGINT,
            last_error TEXT
        );
        CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at);
        CREATE TABLE IF NOT EXISTS audit (
            seq {serial},
            at BIGINT NOT NULL,
            officer TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL
        );"
    ))?;
    c.execute(
        "INSERT INTO server_meta (name, value) VALUES ('schema_version', '1') ON CONFLICT (name) DO NOTHING",
        &[],
    )?;
    let found: i64 = c
        .query(
            "SELECT value FROM server_meta WHERE name = 'schema_version'",
            &[],
        )?
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.text())
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    if found > VERSION {
        return Err(DbError(format!(
            "database schema {found} is newer than this server's {VERSION}: update the server"
        )));
    }
    for (version, sql) in LADDER {
        if *version > found {
            c.batch(sql)?;
        }
    }
    c.batch(INDEXES)?;
    if found < 8 {
        backfill_v8(c)?;
    }
    c.execute(
        "UPDATE server_meta SET value = $1 WHERE name = 'schema_version'",
        &[VERSION.to_string().into()],
    )?;
    Ok(())
}

/// Fills version 8's columns and tables for violations received before it, a page at a time
/// (keyset over the primary key), from each stored record. Runs once, at the upgrade.
pub fn backfill_v8(c: &mut dyn Conn) -> Result<(), DbError> {
    // Custody records: their document, level, action and time out of the stored (verified
    // when received) envelope.
    for r in c.query(
        "SELECT cursor, envelope FROM custody WHERE action = ''",
        &[],
    )? {
        let (Some(cursor), Some(doc)) = (
            r.first().and_then(Value::int),
            r.get(1)
                .and_then(Value::text)
                .and_then(|e| read_verified_custody_record(e.as_bytes()).ok()),
        ) else {
            continue;
        };
        let (level, action) = custody_names(&doc);
        c.execute(
            "UPDATE custody SET document = $1, classification = $2, action = $3, at = $4 WHERE cursor = $5",
            &[doc.document.into(), level.into(), action.into(), doc.at.0.into(), cursor.into()],
        )?;
    }
    let (mut device, mut seq) = (String::new(), -1i64);
    loop {
        let rows = c.query(
            "SELECT device_id, seq, received_at, record FROM violations WHERE (device_id, seq) > ($1, $2) ORDER BY device_id, seq LIMIT 1000",
            &[device.clone().into(), seq.into()],
        )?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        device = last
            .first()
            .and_then(Value::text)
            .unwrap_or_default()
            .to_owned();
        seq = last.get(1).and_then(Value::int).unwrap_or(i64::MAX);
        let mut page = Vec::with_capacity(rows.len());
        for r in &rows {
            let dev = r.first().and_then(Value::text).unwrap_or_default();
            let s = r.get(1).and_then(Value::int).unwrap_or(0);
            let received = r.get(2).and_then(Value::int).unwrap_or(0);
            let Some(record) = r
                .get(3)
                .and_then(Value::text)
                .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            else {
                continue;
            };
            let columns = Indexed::of(&record);
            c.execute(
                "UPDATE violations SET holder = (SELECT holder FROM device_holders WHERE device_id = $1), severity = $3, verdict = $4, event_type = $5 WHERE device_id = $1 AND seq = $2",
                &[
                    dev.into(),
                    s.into(),
                    columns.severity.clone().into(),
                    columns.verdict.clone().into(),
                    columns.event_type.clone().into(),
                ],
            )?;
            page.push((dev, s, received, columns));
        }
        let refs: Vec<(&str, i64, i64, &Indexed)> =
            page.iter().map(|(d, s, r, x)| (*d, *s, *r, x)).collect();
        Indexed::count(c, &refs)?;
    }
}

/// What the console filters on, out of one violation record.
#[derive(Debug, Clone, Default)]
pub struct Indexed {
    /// Severity name (`""` when the record has none).
    pub severity: String,
    /// Verdict name.
    pub verdict: String,
    /// Event type.
    pub event_type: String,
    /// Rules matched.
    pub rules: Vec<String>,
}

impl Indexed {
    /// From a record as received (the names are the core types' own, as they serialise).
    pub fn from_record(r: &baomi_core::store::ViolationRecord) -> Self {
        Self {
            severity: r
                .severity
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            verdict: r.verdict.as_str().to_owned(),
            event_type: r.event.kind.type_name().to_owned(),
            rules: r.rules.clone(),
        }
    }

    /// From a record as stored (JSON): what [`Indexed::from_record`] gives for it.
    pub fn of(record: &serde_json::Value) -> Self {
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
        Self {
            severity: s(&record["severity"]),
            verdict: s(&record["verdict"]),
            event_type: s(&record["event"]["type"]),
            rules: record["rules"]
                .as_array()
                .map(|a| a.iter().map(s).filter(|r| !r.is_empty()).collect())
                .unwrap_or_default(),
        }
    }

    /// Writes the records' rows in `violation_rules` (one statement) and adds them to
    /// `violation_counts` (rule `""`: each record once; then once per rule matched; one
    /// statement per day, rule, severity and shard), for `(device, seq, received_at, columns)`.
    ///
    /// The counts are spread over [`COUNT_SHARDS`] rows by device: one row per day and rule
    /// would be updated by every upload in the office, and on PostgreSQL each upload's
    /// transaction would wait for the one before it to commit (the row's lock). Readers sum.
    pub fn count(c: &mut dyn Conn, records: &[(&str, i64, i64, &Indexed)]) -> Result<(), DbError> {
        c.execute_all(&Self::count_statements(records))?;
        Ok(())
    }

    /// The statements of [`Indexed::count`], for the caller to run with its own (at most two:
    /// the rule rows, and one upsert of every count the records touch).
    pub fn count_statements(records: &[(&str, i64, i64, &Indexed)]) -> Vec<(String, Vec<Value>)> {
        let mut statements = Vec::with_capacity(2);
        let mut params: Vec<Value> = Vec::new();
        let mut counts: std::collections::BTreeMap<(i64, &str, &str, i64), i64> =
            Default::default();
        for (device, seq, received_at, x) in records {
            let day = received_at.div_euclid(86_400_000);
            let shard = count_shard(device);
            *counts
                .entry((day, "", x.severity.as_str(), shard))
                .or_default() += 1;
            for rule in &x.rules {
                *counts
                    .entry((day, rule.as_str(), x.severity.as_str(), shard))
                    .or_default() += 1;
                params.extend([
                    (*device).into(),
                    (*seq).into(),
                    rule.clone().into(),
                    (*received_at).into(),
                ]);
            }
        }
        if !params.is_empty() {
            statements.push((
                format!(
                    "INSERT INTO violation_rules (device_id, seq, rule, received_at) VALUES {} ON CONFLICT DO NOTHING",
                    values_list(params.len() / 4, 4)
                ),
                params,
            ));
        }
        // One upsert for every count (the keys are distinct: one row cannot be hit twice).
        if !counts.is_empty() {
            let rows = counts.len();
            let mut params: Vec<Value> = Vec::with_capacity(rows * 5);
            for ((day, rule, severity, shard), n) in counts {
                params.extend([
                    day.into(),
                    rule.into(),
                    severity.into(),
                    shard.into(),
                    n.into(),
                ]);
            }
            statements.push((
                format!(
                    "INSERT INTO violation_counts (day, rule, severity, shard, n) VALUES {} ON CONFLICT (day, rule, severity, shard) DO UPDATE SET n = violation_counts.n + excluded.n",
                    values_list(rows, 5)
                ),
                params,
            ));
        }
        statements
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use baomi_core::event::{Event, EventKind};
    use baomi_core::store::ViolationRecord;

    /// The columns written at ingest and those the upgrade backfills from stored JSON agree.
    #[test]
    fn a_received_record_and_its_stored_json_index_alike() {
        let record = ViolationRecord {
            event: Event {
                at: baomi_core::time::Timestamp(1),
                kind: EventKind::AppLaunched {
                    package: "com.tencent.mm".into(),
                },
            },
            verdict: baomi_core::Verdict::Deny,
            rules: vec!["a".into(), "b".into()],
            severity: Some(baomi_core::policy::model::Severity::Critical),
            reason: "r".into(),
            posture: Default::default(),
            policy: None,
        };
        let received = Indexed::from_record(&record);
        let stored = Indexed::of(&serde_json::to_value(&record).unwrap());
        assert_eq!(
            (
                received.severity.as_str(),
                received.verdict.as_str(),
                received.event_type.as_str()
            ),
            ("critical", "deny", "app_launched")
        );
        assert_eq!(
            (
                received.severity,
                received.verdict,
                received.event_type,
                received.rules
            ),
            (
                stored.severity,
                stored.verdict,
                stored.event_type,
                stored.rules
            )
        );
    }
}
