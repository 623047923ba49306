//! Store errors. Each names what the device (or the officer) can act on; none carries key
//! material or decrypted content.

use std::path::PathBuf;

/// A failed store operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The directory or file could not be created or read.
    #[error("{path}: {reason}")]
    Io {
        /// Path.
        path: PathBuf,
        /// OS error.
        reason: String,
    },
    /// Not a SQLite database, or a damaged one. The file is left untouched.
    #[error("{path} is not a readable Baomi store ({reason}); it was left untouched")]
    Corrupt {
        /// Path.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// Written by a newer agent; downgrading would lose data, so it is not opened.
    #[error(
        "store schema version {found} is newer than this agent's {supported}: update the agent"
    )]
    NewerSchema {
        /// Version in the file.
        found: i64,
        /// Newest this agent knows.
        supported: i64,
    },
    /// Written by an earlier agent whose format this one does not migrate (see
    /// `store::schema`): the file is left untouched for the earlier agent to drain.
    #[error(
        "store schema version {found} is from an earlier agent and is not migrated to {supported}: sync it empty with that agent (or export it with `baomi log show`), then remove it"
    )]
    UnsupportedSchema {
        /// Version in the file.
        found: i64,
        /// Version this agent writes.
        supported: i64,
    },
    /// The key provider returned a key that does not open this store.
    #[error("the data key does not match this store (wrong key provider or key)")]
    WrongKey,
    /// The key provider failed (keystore unavailable, key deleted, user not unlocked).
    #[error("key provider: {0}")]
    KeyProvider(String),
    /// The disk (or the database's page limit) is full; nothing was written.
    #[error("storage full: the record was not written and nothing was deleted")]
    Full,
    /// The write failed at the file system (a file-size limit, a failing flash page): nothing
    /// was written, nothing was deleted; handled like [`StoreError::Full`].
    #[error("storage write failed ({0}): nothing was written and nothing was deleted")]
    WriteFailed(String),
    /// The hash chain is broken: evidence was edited, deleted, reordered or truncated.
    #[error("integrity: {0}")]
    Integrity(#[from] ChainError),
    /// The server acknowledged records the device never had (a lying or confused server).
    #[error("acknowledgement for seq {ack} is beyond the newest record {head}")]
    AckBeyondHead {
        /// Acknowledged seq.
        ack: u64,
        /// Newest seq.
        head: u64,
    },
    /// A decrypted record that does not parse (a bug, never an attacker: it authenticated).
    #[error("record {seq} does not parse: {reason}")]
    BadRecord {
        /// Seq.
        seq: u64,
        /// Parser message.
        reason: String,
    },
    /// The system's random source failed (nothing was written).
    #[error("the system random source failed; nothing was written")]
    Random,
    /// A cryptographic operation failed (nothing was written).
    #[error("{0} failed; nothing was written")]
    Crypto(&'static str),
    /// A record or state value could not be encoded (a bug, never input).
    #[error("encoding: {0}")]
    Encode(String),
    /// Any other SQLite failure.
    #[error("sqlite: {0}")]
    Sqlite(String),
    /// Another agent (another process, or another handle in this one) has the store open:
    /// two writers would interleave records and break the chain.
    #[error("{path} is open in another agent: close it first (one agent per store)")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

/// The first broken link found by [`super::Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A record does not authenticate under its position: its bytes were edited, or it was
    /// moved from another position or another device.
    #[error("record {seq} does not authenticate (edited, swapped or replayed)")]
    Unauthentic {
        /// Seq of the record.
        seq: u64,
    },
    /// Records are missing between two that remain.
    #[error("records {from}..={to} are missing (deleted)")]
    Missing {
        /// First missing seq.
        from: u64,
        /// Last missing seq.
        to: u64,
    },
    /// Records at the end are missing.
    #[error("records after {last_present} up to {head} are missing (tail truncated)")]
    Truncated {
        /// Newest record present.
        last_present: u64,
        /// Newest record the store had committed.
        head: u64,
    },
    /// The stored head or anchor is missing, does not authenticate, or does not match the
    /// last record.
    #[error("the chain {which} was altered or removed")]
    Bookkeeping {
        /// `head` or `anchor`.
        which: &'static str,
    },
    /// A record lies where the committed chain has none (beyond the head, or at or below the
    /// acknowledged anchor): inserted or copied back.
    #[error("record {seq} lies outside the committed chain (inserted or copied back)")]
    Inserted {
        /// Seq of the row.
        seq: u64,
    },
    /// Sealed agent state does not match the head's state root: rows were copied back from
    /// an older copy of the store, deleted, or moved.
    #[error("sealed agent state does not match the chain head (rolled back, deleted or moved)")]
    StateRolledBack,
}

impl StoreError {
    pub(crate) fn sqlite(path: &std::path::Path, e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => Self::Corrupt {
                    path: path.to_owned(),
                    reason: e.to_string(),
                },
                ErrorCode::DiskFull => Self::Full,
                // SQLITE_IOERR_WRITE: e.g. EFBIG past a file-size limit.
                ErrorCode::SystemIoFailure if f.extended_code == 778 => {
                    Self::WriteFailed(e.to_string())
                }
                ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly => {
                    Self::Io {
                        path: path.to_owned(),
                        reason: e.to_string(),
                    }
                }
                _ => Self::Sqlite(e.to_string()),
            },
            _ => Self::Sqlite(e.to_string()),
        }
    }
}
