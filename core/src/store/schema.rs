//! The database schema and its version ladder (`PRAGMA user_version`).
//!
//! Tables:
//! - `meta(name, value)`: what must be readable before the key is: device id, wrapped data
//!   key, key check, chain head (with generation and state root) and anchor (both MAC'd).
//! - `violations(seq, nonce, sealed)`: one sealed record per violation. Only the sequence
//!   number is in clear: what the sync needs to page and acknowledge.
//! - `state(name, nonce, sealed)`: sealed agent state (installed bundle, trust root, context,
//!   sync cursors), so no package name, document id or zone is readable from the file.
//!
//! Versions:
//! - 1: the tables above; counter nonces (`nonce_epoch`), head of seq and tag only, created
//!   lazily. **Not migrated**: its nonces could repeat and its state could be rolled back
//!   without trace, so anything read from it would be blessed unchecked; no fleet ever ran it
//!   (no release shipped). A v1 file is refused untouched with `UnsupportedSchema`
//!   (`core/tests/fixtures/store-v1/` is a frozen v1 store the tests open).
//! - 2: same tables; random nonces; head carries generation and state root, written with
//!   every commit; head and anchor provisioned at creation.
//! - 3: `delivered(seq, nonce, prev_tag, prev_link, sealed)`: the last records the office
//!   acknowledged, kept sealed as they were, so a phone can send them again to an office
//!   restored from an older backup.
//!
//! To migrate: bump [`VERSION`], add an arm to `upgrade_from`, add the old schema as a frozen
//! fixture in the tests below.

use rusqlite::Connection;

/// Newest schema this agent writes.
pub const VERSION: i64 = 3;
/// Oldest schema upgraded in place (older ones are refused, see the module docs).
pub const MIN_UPGRADABLE: i64 = 2;

pub(crate) const SCHEMA_V2: &str = "
CREATE TABLE meta (name TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE violations (seq INTEGER PRIMARY KEY NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL);
CREATE TABLE state (name TEXT PRIMARY KEY NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL) WITHOUT ROWID;
";

pub(crate) const DELIVERED_V3: &str = "
CREATE TABLE delivered (seq INTEGER PRIMARY KEY NOT NULL, nonce BLOB NOT NULL, prev_tag BLOB NOT NULL, prev_link BLOB, sealed BLOB NOT NULL);
";

/// What `init` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Init {
    /// Created from scratch.
    Created,
    /// Already at [`VERSION`] (possibly after upgrades).
    Existing,
}

/// Errors of `init`, mapped by the caller.
#[derive(Debug)]
pub(crate) enum InitError {
    Newer(i64),
    Unsupported(i64),
    Foreign,
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for InitError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

pub(crate) fn init(conn: &mut Connection) -> Result<Init, InitError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Err(InitError::Newer(version));
    }
    if version == 0 {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables > 0 {
            // Some other application's database: never write into it.
            return Err(InitError::Foreign);
        }
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA_V2)?;
        tx.execute_batch(DELIVERED_V3)?;
        tx.pragma_update(None, "user_version", VERSION)?;
        tx.commit()?;
        return Ok(Init::Created);
    }
    if version == VERSION {
        return Ok(Init::Existing);
    }
    let tx = conn.transaction()?;
    let mut v = version;
    while v < VERSION {
        upgrade_from(&tx, v)?;
        v += 1;
    }
    tx.pragma_update(None, "user_version", VERSION)?;
    tx.commit()?;
    Ok(Init::Existing)
}

fn upgrade_from(tx: &rusqlite::Transaction<'_>, version: i64) -> Result<(), InitError> {
    // One arm per version. Version 1 is refused, not migrated (see the module docs).
    match version {
        2 => Ok(tx.execute_batch(DELIVERED_V3)?),
        _ => Err(InitError::Unsupported(version)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_database_is_refused_and_left_at_v1() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA_V2).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        assert!(matches!(init(&mut c), Err(InitError::Unsupported(1))));
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
    }

    #[test]
    fn a_v2_database_gains_the_delivered_table() {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch(SCHEMA_V2).unwrap();
        c.pragma_update(None, "user_version", 2).unwrap();
        assert_eq!(init(&mut c).unwrap(), Init::Existing);
        let n: i64 = c
            .query_row("SELECT count(*) FROM delivered", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_current_database_opens_as_existing() {
        let mut c = Connection::open_in_memory().unwrap();
        assert_eq!(init(&mut c).unwrap(), Init::Created);
        assert_eq!(init(&mut c).unwrap(), Init::Existing);
    }

    #[test]
    fn newer_and_foreign_databases_are_refused_untouched() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", VERSION + 1).unwrap();
        assert!(matches!(init(&mut c), Err(InitError::Newer(v)) if v == VERSION + 1));
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE contacts (name TEXT)")
            .unwrap();
        assert!(matches!(init(&mut c), Err(InitError::Foreign)));
        let n: i64 = c
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
