//! The log's storage: leaves written with what they describe, hashed into the tree in group
//! commits by a sequencer, and every stored hash of the tree (`tlog`'s layout: each leaf adds
//! its record hash and the hashes of the subtrees it completes, about two a leaf).
//!
//! On SQLite, whose transactions run one at a time on one writer, a leaf takes its index in
//! the transaction that stores what it describes, and the sequencer only hashes it. On
//! PostgreSQL, whose transactions run side by side and commit in any order, leaves wait in a
//! queue and the sequencer gives them their indexes. There each write is one statement
//! whatever the count (a sync's leaves go in the same round trip as its other writes; a
//! group's move from the queue and its hashes are one statement each): on PostgreSQL every
//! statement is a round trip and a backend's work, the ledger's main cost there.
//!
//! On both engines a transaction's leaves keep the order it wrote them in, and a batch writes
//! its records' leaves before its device checkpoint's: a log checkpoint, which may fall between
//! any two leaves, never holds a device's checkpoint without the records it signs for.

use std::cell::RefCell;
use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tlog_tiles::tlog::{self, Hash, HashReader};

use super::Leaf;
use crate::db::{Conn, DbError, Kind, Value, shaped_chunks, values_list};

/// Most leaves one group commit appends (the rest wait for the next).
pub const MAX_GROUP: usize = 512;
/// Most leaves one listing returns.
pub const MAX_LEAVES_PAGE: u64 = 1000;

/// Writes leaves in the caller's transaction: they enter the log with what they describe or
/// not at all. SQLite: at the log's next indexes (its one writer orders the transactions,
/// and a rolled-back one leaves no hole); PostgreSQL: into the queue, in commit order
/// unknown until the sequencer reads it.
pub fn enqueue(c: &mut dyn Conn, leaves: &[Leaf]) -> Result<(), DbError> {
    if leaves.is_empty() {
        return Ok(());
    }
    if c.kind() == Kind::Sqlite {
        let next = appended(c)?;
        let rows = (next..)
            .zip(leaves)
            .map(|(n, l)| Ok([as_i64(n)?.into(), l.reference().into(), l.to_text().into()]))
            .collect::<Result<Vec<[Value; 3]>, DbError>>()?;
        return insert_leaves(c, &rows);
    }
    if let Some((sql, params)) = queue_statement(leaves) {
        c.execute(&sql, &params)?;
    }
    Ok(())
}

/// PostgreSQL: the one statement that queues `leaves` (whatever their count), for a caller
/// that sends it with its other writes in one round trip; `None` for no leaves.
pub fn queue_statement(leaves: &[Leaf]) -> Option<(String, Vec<Value>)> {
    if leaves.is_empty() {
        return None;
    }
    let (refs, data) = leaves.iter().map(|l| (l.reference(), l.to_text())).unzip();
    Some((
        "INSERT INTO ledger_queue (ref, data) SELECT * FROM unnest($1::text[], $2::text[])".into(),
        vec![Value::Texts(refs), Value::Texts(data)],
    ))
}

/// PostgreSQL: `insert` (an `INSERT` or `UPDATE` of at most one row, with its `params`, that
/// may do nothing) made to queue `leaf` too when, and only when, it writes its row: one
/// statement, whose count is the row's (1 or 0).
pub fn queue_with(insert: &str, mut params: Vec<Value>, leaf: &Leaf) -> (String, Vec<Value>) {
    let k = params.len();
    params.push(leaf.reference().into());
    params.push(leaf.to_text().into());
    (
        format!(
            "WITH inserted AS ({insert} RETURNING 1) INSERT INTO ledger_queue (ref, data) SELECT ${}, ${} FROM inserted",
            k + 1,
            k + 2
        ),
        params,
    )
}

/// How many leaves hold an index (the log's size and those appended since, still to hash).
fn appended(c: &mut dyn Conn) -> Result<u64, DbError> {
    let next = c
        .query("SELECT MAX(n) FROM ledger_leaves", &[])?
        .first()
        .and_then(|r| r.first())
        .and_then(Value::int)
        .map_or(0, |n| n.saturating_add(1));
    u64::try_from(next).map_err(|_| DbError("ledger index out of range".into()))
}

/// Inserts rows of (index, reference, data).
fn insert_leaves(c: &mut dyn Conn, rows: &[[Value; 3]]) -> Result<(), DbError> {
    for chunk in shaped_chunks(rows) {
        c.execute(
            &format!(
                "INSERT INTO ledger_leaves (n, ref, data) VALUES {}",
                values_list(chunk.len(), 3)
            ),
            chunk.as_flattened(),
        )?;
    }
    Ok(())
}

/// The log's size.
pub fn size(c: &mut dyn Conn) -> Result<u64, DbError> {
    Ok(c.query(
        "SELECT value FROM server_meta WHERE name = 'ledger_size'",
        &[],
    )?
    .first()
    .and_then(|r| r.first())
    .and_then(Value::text)
    .and_then(|t| t.parse().ok())
    .unwrap_or(0))
}

/// Reads stored hashes from the database, and from what this transaction added; what it read
/// stays cached (a group of leaves keeps asking for the same frontier of older subtrees).
struct Hashes<'a> {
    c: RefCell<&'a mut dyn Conn>,
    fresh: HashMap<u64, Hash>,
    read: RefCell<HashMap<u64, Hash>>,
}

impl HashReader for Hashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        let mut out: Vec<Option<Hash>> = {
            let read = self.read.borrow();
            indexes
                .iter()
                .map(|i| self.fresh.get(i).or_else(|| read.get(i)).copied())
                .collect()
        };
        let missing: Vec<u64> = indexes
            .iter()
            .zip(&out)
            .filter(|(_, h)| h.is_none())
            .map(|(i, _)| *i)
            .collect();
        if !missing.is_empty() {
            let mut found = HashMap::new();
            let ids = missing
                .iter()
                .map(|i| as_i64(*i))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tlog::Error::InvalidInput(e.0))?;
            // PostgreSQL: one statement whatever the count; SQLite: `shaped_chunks`.
            let reads: Vec<(String, Vec<Value>)> = if self.c.borrow().kind() == Kind::Postgres {
                vec![(
                    "SELECT idx, hash FROM ledger_hashes WHERE idx = ANY($1::bigint[])".into(),
                    vec![Value::Ints(ids)],
                )]
            } else {
                shaped_chunks(&ids)
                    .map(|chunk| {
                        (
                            format!(
                                "SELECT idx, hash FROM ledger_hashes WHERE idx IN {}",
                                values_list(1, chunk.len())
                            ),
                            chunk.iter().map(|i| Value::Int(*i)).collect(),
                        )
                    })
                    .collect()
            };
            for (sql, params) in reads {
                let rows = self
                    .c
                    .borrow_mut()
                    .query(&sql, &params)
                    .map_err(|e| tlog::Error::InvalidInput(e.0))?;
                for r in rows {
                    let (Some(i), Some(h)) = (
                        r.first().and_then(Value::int),
                        r.get(1).and_then(Value::text),
                    ) else {
                        continue;
                    };
                    found.insert(u64::try_from(i).unwrap_or(u64::MAX), Hash::parse_hash(h)?);
                }
            }
            for (slot, i) in out.iter_mut().zip(indexes) {
                if slot.is_none() {
                    *slot = found.get(i).copied();
                }
            }
            self.read.borrow_mut().extend(found);
        }
        out.into_iter()
            .map(|h| h.ok_or(tlog::Error::IndexesNotInTree))
            .collect()
    }
}

fn tlog_err(e: tlog::Error) -> DbError {
    DbError(format!("ledger: {e}"))
}

fn hashes(c: &mut dyn Conn) -> Hashes<'_> {
    Hashes {
        c: RefCell::new(c),
        fresh: HashMap::new(),
        read: RefCell::new(HashMap::new()),
    }
}

/// Hashes up to [`MAX_GROUP`] leaves into the tree in the caller's transaction; returns the
/// new size. Leaves already indexed (SQLite's) come first; otherwise queued leaves
/// (PostgreSQL's, or an older server's) take the next indexes now. Concurrent sequencers (two
/// server processes on one PostgreSQL) collide on the leaves' primary key: one transaction
/// fails and its leaves wait for the next run.
pub fn integrate(c: &mut dyn Conn) -> Result<u64, DbError> {
    let start = size(c)?;
    let leaves: Vec<(u64, String)> = if appended(c)? > start {
        let rows = c.query(
            &format!(
                "SELECT n, data FROM ledger_leaves WHERE n >= $1 ORDER BY n LIMIT {MAX_GROUP}"
            ),
            &[as_i64(start)?.into()],
        )?;
        let mut leaves = Vec::with_capacity(rows.len());
        for (expected, r) in (start..).zip(rows) {
            let mut columns = r.into_iter();
            let n = columns.next().and_then(|v| v.int());
            if n.and_then(|n| u64::try_from(n).ok()) != Some(expected) {
                return Err(DbError(format!(
                    "ledger: leaf {expected} is missing from the leaves to hash (found {n:?})"
                )));
            }
            let data = match columns.next() {
                Some(Value::Text(t)) => t,
                _ => String::new(),
            };
            leaves.push((expected, data));
        }
        leaves
    } else {
        sequence_queue(c, start)?
    };
    if leaves.is_empty() {
        return Ok(start);
    }
    let mut h = hashes(c);
    for (n, data) in &leaves {
        let stored = tlog::stored_hashes(*n, data.as_bytes(), &h).map_err(tlog_err)?;
        let first = tlog::stored_hash_index(0, *n);
        for (i, s) in (first..).zip(stored) {
            h.fresh.insert(i, s);
        }
    }
    let fresh: Vec<(u64, Hash)> = h.fresh.into_iter().collect();
    let end = start + leaves.len() as u64;
    insert_hashes(c, &fresh)?;
    c.execute(
        "INSERT INTO server_meta (name, value) VALUES ('ledger_size', $1) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        &[end.to_string().into()],
    )?;
    Ok(end)
}

/// Stores hashes of the tree (index, hash): on PostgreSQL in one statement whatever their
/// count, on SQLite in [`shaped_chunks`].
fn insert_hashes(c: &mut dyn Conn, fresh: &[(u64, Hash)]) -> Result<(), DbError> {
    if c.kind() == Kind::Postgres {
        let (idx, hash): (Vec<i64>, Vec<String>) = fresh
            .iter()
            .map(|(i, h)| Ok((as_i64(*i)?, B64.encode(h.0))))
            .collect::<Result<Vec<_>, DbError>>()?
            .into_iter()
            .unzip();
        c.execute(
            "INSERT INTO ledger_hashes (idx, hash) SELECT * FROM unnest($1::bigint[], $2::text[])",
            &[Value::Ints(idx), Value::Texts(hash)],
        )?;
        return Ok(());
    }
    for chunk in shaped_chunks(fresh) {
        let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 2);
        for (idx, hash) in chunk {
            params.push(as_i64(*idx)?.into());
            params.push(B64.encode(hash.0).into());
        }
        c.execute(
            &format!(
                "INSERT INTO ledger_hashes (idx, hash) VALUES {}",
                values_list(chunk.len(), 2)
            ),
            &params,
        )?;
    }
    Ok(())
}

/// Gives up to [`MAX_GROUP`] queued leaves the indexes from `start` (every leaf before it is
/// hashed) and removes them from the queue; returns them (index, data).
fn sequence_queue(c: &mut dyn Conn, start: u64) -> Result<Vec<(u64, String)>, DbError> {
    if c.kind() == Kind::Postgres {
        // One statement: taken from the queue in id order, numbered from `start`, inserted.
        // `= ANY(ARRAY(..))` deletes through the primary key; `IN (SELECT ..)` was planned as
        // a hash join over the whole queue, a backlog's every row scanned for each group.
        let rows = c.query(
            &format!(
                "WITH moved AS (DELETE FROM ledger_queue WHERE id = ANY(ARRAY(SELECT id FROM ledger_queue ORDER BY id LIMIT {MAX_GROUP})) RETURNING id, ref, data) \
                 INSERT INTO ledger_leaves (n, ref, data) SELECT $1::bigint + row_number() OVER (ORDER BY id) - 1, ref, data FROM moved RETURNING n, data"
            ),
            &[as_i64(start)?.into()],
        )?;
        let mut leaves = rows
            .into_iter()
            .map(|r| {
                let mut columns = r.into_iter();
                let n = columns.next().and_then(|v| v.int());
                let n = n
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| DbError("ledger: a sequenced leaf has no index".into()))?;
                let data = match columns.next() {
                    Some(Value::Text(t)) => t,
                    _ => String::new(),
                };
                Ok((n, data))
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        leaves.sort_unstable_by_key(|(n, _)| *n);
        return Ok(leaves);
    }
    let queued = c.query(
        &format!("SELECT id, data, ref FROM ledger_queue ORDER BY id LIMIT {MAX_GROUP}"),
        &[],
    )?;
    let mut rows: Vec<[Value; 3]> = Vec::with_capacity(queued.len());
    let mut ids: Vec<Value> = Vec::with_capacity(queued.len());
    let mut leaves = Vec::with_capacity(queued.len());
    for (n, r) in (start..).zip(queued) {
        let mut columns = r.into_iter();
        ids.push(Value::Int(
            columns.next().and_then(|v| v.int()).unwrap_or_default(),
        ));
        let mut text = || match columns.next() {
            Some(Value::Text(t)) => t,
            _ => String::new(),
        };
        let (data, reference) = (text(), text());
        rows.push([as_i64(n)?.into(), reference.into(), data.clone().into()]);
        leaves.push((n, data));
    }
    insert_leaves(c, &rows)?;
    for chunk in shaped_chunks(&ids) {
        c.execute(
            &format!(
                "DELETE FROM ledger_queue WHERE id IN {}",
                values_list(1, chunk.len())
            ),
            chunk,
        )?;
    }
    Ok(leaves)
}

fn as_i64(n: u64) -> Result<i64, DbError> {
    i64::try_from(n).map_err(|_| DbError("ledger index out of range".into()))
}

/// The tree hash of the first `size` leaves.
pub fn root(c: &mut dyn Conn, size: u64) -> Result<Hash, DbError> {
    if size == 0 {
        return Ok(tlog::EMPTY_HASH);
    }
    tlog::tree_hash(size, &hashes(c)).map_err(tlog_err)
}

/// Inclusion proof of leaf `n` in the tree of `size` leaves.
pub fn inclusion(c: &mut dyn Conn, n: u64, size: u64) -> Result<Vec<Hash>, DbError> {
    tlog::prove_record(size, n, &hashes(c)).map_err(tlog_err)
}

/// Consistency proof of the tree of `from` leaves within the tree of `to` leaves.
pub fn consistency(c: &mut dyn Conn, from: u64, to: u64) -> Result<Vec<Hash>, DbError> {
    if from == to || from == 0 {
        return Ok(Vec::new());
    }
    tlog::prove_tree(to, from, &hashes(c)).map_err(tlog_err)
}

/// Leaves `start..start+limit` (at most [`MAX_LEAVES_PAGE`]) below `size`.
pub fn leaves(
    c: &mut dyn Conn,
    start: u64,
    limit: u64,
    size: u64,
) -> Result<Vec<(u64, String)>, DbError> {
    let end = start.saturating_add(limit.min(MAX_LEAVES_PAGE)).min(size);
    if start >= end {
        return Ok(Vec::new());
    }
    let rows = c.query(
        "SELECT n, data FROM ledger_leaves WHERE n >= $1 AND n < $2 ORDER BY n",
        &[as_i64(start)?.into(), as_i64(end)?.into()],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some((
                u64::try_from(r.first()?.int()?).ok()?,
                r.get(1)?.text()?.to_owned(),
            ))
        })
        .collect())
}

/// The index and data of the leaf named `reference` ([`Leaf::reference`]), if in the log.
pub fn find(c: &mut dyn Conn, reference: &str) -> Result<Option<(u64, String)>, DbError> {
    let rows = c.query(
        "SELECT n, data FROM ledger_leaves WHERE ref = $1 ORDER BY n LIMIT 1",
        &[reference.into()],
    )?;
    Ok(rows.first().and_then(|r| {
        Some((
            u64::try_from(r.first()?.int()?).ok()?,
            r.get(1)?.text()?.to_owned(),
        ))
    }))
}

/// Base64 of each hash, as proofs travel.
pub fn encode(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h.0)).collect()
}

/// Parses base64 hashes.
pub fn decode(hashes: &[String]) -> Result<Vec<Hash>, String> {
    hashes
        .iter()
        .map(|h| Hash::parse_hash(h).map_err(|e| format!("bad hash in proof: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;
    use crate::db::Db;

    fn custody(id: &str) -> Leaf {
        Leaf::Custody {
            record_id: id.into(),
            digest: "00".repeat(32),
        }
    }

    /// `f` in one transaction; its error's message.
    fn run<T>(db: &Db, f: impl FnOnce(&mut dyn Conn) -> Result<T, DbError>) -> Result<T, String> {
        db.tx(|c| Ok(f(c)?)).map_err(|e| e.message)
    }

    fn sqlite() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}", dir.path().join("l.db").display()), 1).unwrap();
        run(&db, |c| crate::schema::init(c, Kind::Sqlite)).unwrap();
        (dir, db)
    }

    /// (index, data) of every leaf, and how many wait in the queue.
    fn stored(db: &Db) -> (Vec<(i64, String)>, usize) {
        run(db, |c| {
            let leaves = c
                .query("SELECT n, data FROM ledger_leaves ORDER BY n", &[])?
                .into_iter()
                .map(|r| (r[0].int().unwrap(), r[1].text().unwrap().to_owned()))
                .collect();
            let queued = c.query("SELECT id FROM ledger_queue", &[])?.len();
            Ok((leaves, queued))
        })
        .unwrap()
    }

    #[test]
    fn on_sqlite_a_leaf_takes_its_index_with_what_it_describes_and_a_rollback_leaves_no_hole() {
        let (_dir, db) = sqlite();
        run(&db, |c| enqueue(c, &[custody("a"), custody("b")])).unwrap();
        let failed: Result<(), String> = run(&db, |c| {
            enqueue(c, &[custody("lost")])?;
            Err(DbError("the rest of the upload failed".into()))
        });
        assert!(failed.is_err());
        run(&db, |c| enqueue(c, &[custody("c")])).unwrap();
        let (leaves, queued) = stored(&db);
        let indexes: Vec<i64> = leaves.iter().map(|(n, _)| *n).collect();
        assert_eq!(indexes, [0, 1, 2], "dense, in commit order");
        assert!(leaves.iter().all(|(_, d)| !d.contains("lost")));
        assert_eq!(queued, 0, "SQLite's leaves never wait in the queue");

        // Not in the tree until the sequencer hashes them; then its root is RFC 6962's.
        assert_eq!(run(&db, size).unwrap(), 0);
        assert_eq!(run(&db, integrate).unwrap(), 3);
        let h: Vec<Hash> = leaves
            .iter()
            .map(|(_, d)| tlog::record_hash(d.as_bytes()))
            .collect();
        let expected = tlog::node_hash(tlog::node_hash(h[0], h[1]), h[2]);
        assert_eq!(run(&db, |c| root(c, 3)).unwrap(), expected);
        assert_eq!(run(&db, integrate).unwrap(), 3, "nothing left to hash");
    }

    #[test]
    fn queued_leaves_take_the_indexes_after_those_already_hashed() {
        let (_dir, db) = sqlite();
        run(&db, |c| enqueue(c, &[custody("a")])).unwrap();
        // What PostgreSQL (or a server before direct appends) leaves in the queue.
        run(&db, |c| {
            for l in [custody("q1"), custody("q2")] {
                c.execute(
                    "INSERT INTO ledger_queue (ref, data) VALUES ($1, $2)",
                    &[l.reference().into(), l.to_text().into()],
                )?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(run(&db, integrate).unwrap(), 1, "the indexed leaf first");
        assert_eq!(run(&db, integrate).unwrap(), 3, "then the queue");
        run(&db, |c| enqueue(c, &[custody("b")])).unwrap();
        assert_eq!(run(&db, integrate).unwrap(), 4);
        let (leaves, queued) = stored(&db);
        let order: Vec<bool> = ["\"a\"", "q1", "q2", "\"b\""]
            .iter()
            .zip(&leaves)
            .map(|(id, (_, d))| d.contains(id))
            .collect();
        assert_eq!(order, [true; 4], "{leaves:?}");
        assert_eq!(queued, 0);
    }

    #[test]
    fn a_leaf_missing_below_the_appended_end_stops_the_sequencer_with_its_index() {
        let (_dir, db) = sqlite();
        run(&db, |c| {
            enqueue(c, &[custody("a"), custody("b"), custody("c")])
        })
        .unwrap();
        run(&db, |c| {
            c.execute("DELETE FROM ledger_leaves WHERE n = 1", &[])
        })
        .unwrap();
        let err = db
            .tx(|c| Ok(integrate(c).map_err(|e| e.0)))
            .unwrap()
            .unwrap_err();
        assert!(err.contains("leaf 1 is missing"), "{err}");
        assert_eq!(run(&db, size).unwrap(), 0, "nothing hashed past the hole");
    }
}
