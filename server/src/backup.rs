//! Backup and restore of the office's database with the engines' own tools: SQLite's online
//! backup API (a consistent copy while the server runs), PostgreSQL's `pg_dump` and
//! `pg_restore` (custom format). A restore goes through the schema migrations like a start.
//!
//! What a restore to an older point means for the evidence: the ledger's auditor, holding a
//! later checkpoint, reports a rollback (docs/SECURITY.md); phones send again what the restored
//! server lost (each keeps its last `DELIVERED_KEPT` acknowledged records and reinstates those
//! after the office's proven acknowledgement: `baomi_core::store::Store::reinstate`).

use std::path::Path;
use std::process::Command;

fn sqlite_path(url: &str) -> Option<&str> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    Some(url.strip_prefix("sqlite:").unwrap_or(url))
}

fn owner_only(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn pg_tool(tool: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(tool).args(args).output().map_err(|e| {
        format!("{tool}: {e} (install the PostgreSQL client tools, e.g. apt-get install postgresql-client)")
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Copies the database at `url` to `out` (a new file, mode 0600): SQLite through the online
/// backup API, PostgreSQL with `pg_dump --format=custom`.
pub fn backup(url: &str, out: &Path) -> Result<(), String> {
    if out.exists() {
        return Err(format!(
            "{} exists; not overwriting a backup",
            out.display()
        ));
    }
    match sqlite_path(url) {
        Some(path) => {
            let src = rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .map_err(|e| format!("{path}: {e}"))?;
            src.backup(
                rusqlite::MAIN_DB,
                out,
                None::<fn(rusqlite::backup::Progress)>,
            )
            .map_err(|e| format!("backup to {}: {e}", out.display()))?;
        }
        None => {
            let file = out.to_string_lossy();
            pg_tool(
                "pg_dump",
                &["--format=custom", "--no-owner", "--file", &file, url],
            )?;
        }
    }
    owner_only(out)
}

/// Replaces the database at `url` with the backup `from` (stop the server first): SQLite
/// through the backup API into the database file, PostgreSQL with `pg_restore --clean`.
pub fn restore(from: &Path, url: &str) -> Result<(), String> {
    if !from.exists() {
        return Err(format!("{}: no such backup", from.display()));
    }
    match sqlite_path(url) {
        Some(path) => {
            let mut dst = rusqlite::Connection::open(path).map_err(|e| format!("{path}: {e}"))?;
            dst.restore(
                rusqlite::MAIN_DB,
                from,
                None::<fn(rusqlite::backup::Progress)>,
            )
            .map_err(|e| format!("restore from {}: {e}", from.display()))?;
            owner_only(Path::new(path))
        }
        None => {
            let file = from.to_string_lossy();
            pg_tool(
                "pg_restore",
                &[
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    "--single-transaction",
                    "--dbname",
                    url,
                    &file,
                ],
            )
        }
    }
}
