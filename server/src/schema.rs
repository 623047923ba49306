//! Server tables (same text for both engines but the auto-increment column).

use crate::db::{Conn, DbError, Kind};

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
/// (`tokens.revoked_at`) and devices that can be retired (`devices.retired_at`).
pub const VERSION: i64 = 7;

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
];

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
CREATE TABLE IF NOT EXISTS device_checkpoints (
    device_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    link TEXT NOT NULL,
    at BIGINT NOT NULL,
    signature TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE TABLE IF NOT EXISTS ledger_leaves (n BIGINT PRIMARY KEY, ref TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ledger_leaves_ref ON ledger_leaves (ref);
CREATE TABLE IF NOT EXISTS ledger_hashes (idx BIGINT PRIMARY KEY, hash TEXT NOT NULL);
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
    let serial = match kind {
        Kind::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
        Kind::Postgres => "BIGSERIAL PRIMARY KEY",
    };
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
            id {serial},
            ref TEXT NOT NULL,
            data TEXT NOT NULL
        );
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
    c.execute(
        "UPDATE server_meta SET value = $1 WHERE name = 'schema_version'",
        &[VERSION.to_string().into()],
    )?;
    Ok(())
}
