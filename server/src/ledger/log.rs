//! The log's storage: leaves queued with what they describe, appended in group commits by a
//! sequencer, and every stored hash of the tree (`tlog`'s layout: each leaf adds its record
//! hash and the hashes of the subtrees it completes, about two a leaf).

use std::cell::RefCell;
use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tlog_tiles::tlog::{self, Hash, HashReader};

use super::Leaf;
use crate::db::{Conn, DbError, Value, values_list};

/// Most leaves one group commit appends (the rest wait for the next).
pub const MAX_GROUP: usize = 512;
/// Most leaves one listing returns.
pub const MAX_LEAVES_PAGE: u64 = 1000;

/// Queues leaves in the caller's transaction: they enter the log with what they describe or
/// not at all.
pub fn enqueue(c: &mut dyn Conn, leaves: &[Leaf]) -> Result<(), DbError> {
    for chunk in leaves.chunks(500) {
        let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 2);
        for l in chunk {
            params.push(l.reference().into());
            params.push(l.to_text().into());
        }
        c.execute(
            &format!(
                "INSERT INTO ledger_queue (ref, data) VALUES {}",
                values_list(chunk.len(), 2)
            ),
            &params,
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
            for chunk in missing.chunks(500) {
                let list: Vec<String> = chunk.iter().map(u64::to_string).collect();
                let rows = self
                    .c
                    .borrow_mut()
                    .query(
                        &format!(
                            "SELECT idx, hash FROM ledger_hashes WHERE idx IN ({})",
                            list.join(",")
                        ),
                        &[],
                    )
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

/// Appends up to [`MAX_GROUP`] queued leaves in the caller's transaction; returns the new
/// size. Concurrent sequencers (two server processes on one PostgreSQL) collide on the
/// leaves' primary key: one transaction fails and its leaves wait for the next run.
pub fn integrate(c: &mut dyn Conn) -> Result<u64, DbError> {
    let start = size(c)?;
    let queued = c.query(
        &format!("SELECT id, data, ref FROM ledger_queue ORDER BY id LIMIT {MAX_GROUP}"),
        &[],
    )?;
    if queued.is_empty() {
        return Ok(start);
    }
    let mut h = hashes(c);
    let mut leaves: Vec<(u64, String, String)> = Vec::with_capacity(queued.len());
    let mut ids: Vec<i64> = Vec::with_capacity(queued.len());
    for (n, r) in (start..).zip(&queued) {
        let data = r
            .get(1)
            .and_then(Value::text)
            .unwrap_or_default()
            .to_owned();
        let stored = tlog::stored_hashes(n, data.as_bytes(), &h).map_err(tlog_err)?;
        let first = tlog::stored_hash_index(0, n);
        for (i, s) in (first..).zip(stored) {
            h.fresh.insert(i, s);
        }
        ids.push(r.first().and_then(Value::int).unwrap_or_default());
        let reference = r
            .get(2)
            .and_then(Value::text)
            .unwrap_or_default()
            .to_owned();
        leaves.push((n, data, reference));
    }
    let fresh: Vec<(u64, Hash)> = h.fresh.into_iter().collect();
    let end = start + leaves.len() as u64;
    let mut leaves = leaves.into_iter().peekable();
    while leaves.peek().is_some() {
        let mut params: Vec<Value> = Vec::with_capacity(400 * 3);
        for (n, d, r) in leaves.by_ref().take(400) {
            params.push(as_i64(n)?.into());
            params.push(r.into());
            params.push(d.into());
        }
        c.execute(
            &format!(
                "INSERT INTO ledger_leaves (n, ref, data) VALUES {}",
                values_list(params.len() / 3, 3)
            ),
            &params,
        )?;
    }
    for chunk in fresh.chunks(400) {
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
    for chunk in ids.chunks(500) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        c.execute(
            &format!("DELETE FROM ledger_queue WHERE id IN ({})", list.join(",")),
            &[],
        )?;
    }
    c.execute(
        "INSERT INTO server_meta (name, value) VALUES ('ledger_size', $1) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        &[end.to_string().into()],
    )?;
    Ok(end)
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
