//! The evidence ledger's endpoints (`crate::ledger`): the signed checkpoint, leaves,
//! inclusion and consistency proofs, stored records for auditors, witnesses' cosignatures and
//! evidence packages.

use super::*;
use crate::ledger::{
    self, Evidence, LeafPage, ProofAnswer, ProvenLeaf, RecordPage, SeenCheckpoint, SeenPage,
    StoredRecord, log as tree,
};

/// Most sequencer rounds one call runs (each appends up to `tree::MAX_GROUP` leaves).
const MAX_ROUNDS: usize = 512;
/// Most records one listing returns.
pub const MAX_RECORDS_PAGE: i64 = 1000;

impl Server {
    /// Appends queued leaves to the log (group commits); returns the log's size.
    pub fn ledger_integrate(&self) -> Result<u64, ApiError> {
        let _one = self
            .ledger_lock
            .lock()
            .map_err(|_| ApiError::internal("ledger lock poisoned"))?;
        let mut size = 0;
        for _ in 0..MAX_ROUNDS {
            let (before, after) = self.db.tx(|c| {
                let before = tree::size(c)?;
                Ok((before, tree::integrate(c)?))
            })?;
            size = after;
            if before == after {
                break;
            }
        }
        Ok(size)
    }

    /// Whether checkpoints can be signed.
    pub fn has_log_key(&self) -> bool {
        self.log_key.is_some()
    }

    fn log_key(&self) -> Result<&ledger::LogKey, ApiError> {
        self.log_key.as_ref().ok_or_else(|| {
            ApiError::new_pub(
                503,
                "no_log_key",
                "this server has no log key: start it with --log-key FILE (baomi-server log-key new)",
            )
        })
    }

    /// The checkpoint a check-in answer shows the phone: the newest this process signed or
    /// read (none before the first).
    pub(super) fn shown_log_note(&self) -> Option<String> {
        self.log_note.read().ok().and_then(|n| n.clone())
    }

    fn keep_log_note(&self, note: &str) {
        if let Ok(mut n) = self.log_note.write() {
            *n = Some(note.to_owned());
        }
    }

    /// The log's newest signed checkpoint, signing one if the log grew since the last.
    pub fn ledger_checkpoint(&self) -> Result<String, ApiError> {
        let note = self.sign_ledger_checkpoint()?;
        self.keep_log_note(&note);
        Ok(note)
    }

    fn sign_ledger_checkpoint(&self) -> Result<String, ApiError> {
        let key = self.log_key()?;
        let size = self.ledger_integrate()?;
        let now = self.now();
        self.db.tx(|c| {
            let last = c.query(
                "SELECT size, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1",
                &[],
            )?;
            if let Some(r) = last.first()
                && u(int(r, 0)) == size
            {
                return Ok(text(r, 1).unwrap_or_default());
            }
            let root = tree::root(c, size)?;
            let body = tlog_tiles::checkpoint::Checkpoint::new(key.name(), size, root, "")
                .map_err(|e| ApiError::internal(e.to_string()))?
                .to_bytes();
            let note = key.sign(&body).map_err(ApiError::internal)?;
            c.execute(
                "INSERT INTO ledger_checkpoints (size, note, at) VALUES ($1, $2, $3) ON CONFLICT (size) DO NOTHING",
                &[seq_i64(size)?.into(), note.clone().into(), now.0.into()],
            )?;
            Ok(note)
        })
    }

    /// Retention: deletes every violation received before `before` (ms), recording the purge
    /// in the ledger in the same transaction; the leaves stay, so the log still verifies and
    /// the auditor counts those records as purged. Refused under the minimum retention.
    pub fn purge_before(&self, before: i64, by: &str) -> Result<u64, ApiError> {
        let now = self.now();
        if before > now.0 - ledger::MIN_RETENTION_MS {
            return Err(ApiError::bad_request(format!(
                "retention must keep at least {} days of records",
                ledger::MIN_RETENTION_MS / 86_400_000
            )));
        }
        self.db.tx(|c| {
            let n = c.execute(
                "DELETE FROM violations WHERE received_at < $1",
                &[before.into()],
            )?;
            tree::enqueue(
                c,
                &[ledger::Leaf::Purge {
                    before,
                    at: now.0,
                    by: by.to_owned(),
                }],
            )?;
            Ok(n)
        })
    }

    /// The newest checkpoint already signed, without signing one (reading a database copy:
    /// `baomi audit --db`).
    pub fn ledger_latest_checkpoint(&self) -> Result<String, ApiError> {
        self.db.tx(|c| {
            c.query(
                "SELECT note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1",
                &[],
            )?
            .first()
            .and_then(|r| text(r, 0))
            .ok_or_else(|| ApiError::new_pub(404, "not_in_ledger", "no signed checkpoint yet"))
        })
    }

    /// The size of the newest signed checkpoint (0 before any).
    fn signed_size(c: &mut dyn Conn) -> Result<u64, DbError> {
        Ok(c.query("SELECT MAX(size) FROM ledger_checkpoints", &[])?
            .first()
            .and_then(|r| r.first())
            .and_then(Value::int)
            .map_or(0, u))
    }

    /// Leaves from `start`, within the newest signed checkpoint.
    pub fn ledger_leaves(&self, start: u64, limit: u64) -> Result<LeafPage, ApiError> {
        self.db.tx(|c| {
            let size = Self::signed_size(c)?;
            Ok(LeafPage {
                leaves: tree::leaves(c, start, limit, size)?,
            })
        })
    }

    /// Inclusion proof of leaf `n` in the tree of `size` leaves (a signed size).
    pub fn ledger_inclusion(&self, n: u64, size: u64) -> Result<ProofAnswer, ApiError> {
        self.db.tx(|c| {
            if n >= size || size > Self::signed_size(c)? {
                return Err(ApiError::bad_request(
                    "leaf must be below size, and size at most the newest checkpoint's",
                ));
            }
            Ok(ProofAnswer {
                hashes: tree::encode(&tree::inclusion(c, n, size)?),
            })
        })
    }

    /// Consistency proof of the tree of `from` leaves within the tree of `to` leaves.
    pub fn ledger_consistency(&self, from: u64, to: u64) -> Result<ProofAnswer, ApiError> {
        self.db.tx(|c| {
            if from > to || to > Self::signed_size(c)? {
                return Err(ApiError::bad_request(
                    "from must be at most to, and to at most the newest checkpoint's size",
                ));
            }
            Ok(ProofAnswer {
                hashes: tree::encode(&tree::consistency(c, from, to)?),
            })
        })
    }

    /// Stored violations after `(device, seq)` in (device, seq) order, as the office shows
    /// them: what an auditor compares with the log.
    pub fn ledger_records(
        &self,
        after_device: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<RecordPage, ApiError> {
        let limit = limit.clamp(1, MAX_RECORDS_PAGE);
        let rows = self.db.tx(|c| {
            Ok(c.query(
                &format!(
                    "SELECT device_id, seq, rules, record, link FROM violations
                     WHERE device_id > $1 OR (device_id = $1 AND seq > $2)
                     ORDER BY device_id, seq LIMIT {limit}"
                ),
                &[after_device.into(), after_seq.into()],
            )?)
        })?;
        Ok(RecordPage {
            records: rows
                .iter()
                .map(|r| StoredRecord {
                    device: text(r, 0).unwrap_or_default(),
                    seq: u(int(r, 1)),
                    rules: text(r, 2).unwrap_or_default(),
                    record: text(r, 3).unwrap_or_default(),
                    link: text(r, 4).unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// The log checkpoints the phones report carrying, by device after `after_device`.
    pub fn ledger_seen(&self, after_device: &str, limit: i64) -> Result<SeenPage, ApiError> {
        let limit = limit.clamp(1, MAX_RECORDS_PAGE);
        let rows = self.db.tx(|c| {
            Ok(c.query(
                &format!(
                    "SELECT device_id, log_seen, log_seen_at FROM devices
                     WHERE device_id > $1 AND log_seen IS NOT NULL
                     ORDER BY device_id LIMIT {limit}"
                ),
                &[after_device.into()],
            )?)
        })?;
        Ok(SeenPage {
            devices: rows
                .iter()
                .map(|r| SeenCheckpoint {
                    device: text(r, 0).unwrap_or_default(),
                    note: text(r, 1).unwrap_or_default(),
                    at: int(r, 2),
                })
                .collect(),
        })
    }

    /// Stores a witness's cosigned checkpoint and its audit report (what the console shows).
    pub fn ledger_witness(&self, witness: &str, note: &str, report: &str) -> Result<(), ApiError> {
        let checkpoint = ledger::audit::parse_note_checkpoint(note)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let now = self.now();
        let report: String = report.chars().take(64 * 1024).collect();
        self.db.tx(|c| {
            c.execute(
                "INSERT INTO ledger_witnesses (witness, size, note, report, at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (witness) DO UPDATE SET size = excluded.size, note = excluded.note, report = excluded.report, at = excluded.at",
                &[
                    witness.into(),
                    seq_i64(checkpoint.size())?.into(),
                    note.into(),
                    report.clone().into(),
                    now.0.into(),
                ],
            )?;
            Ok(())
        })
    }

    /// The witnesses' latest reports: (witness, size, report, at).
    pub fn ledger_witnesses(&self) -> Result<Vec<(String, u64, String, i64)>, ApiError> {
        let rows = self.db.tx(|c| {
            Ok(c.query(
                "SELECT witness, size, report, at FROM ledger_witnesses ORDER BY at DESC",
                &[],
            )?)
        })?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    text(r, 0).unwrap_or_default(),
                    u(int(r, 1)),
                    text(r, 2).unwrap_or_default(),
                    int(r, 3),
                )
            })
            .collect())
    }

    /// Evidence of violation `seq` of `device`, against a freshly signed checkpoint.
    pub fn ledger_evidence(&self, device: &str, seq: u64) -> Result<Evidence, ApiError> {
        let note = self.ledger_checkpoint()?;
        let size = ledger::audit::parse_note_checkpoint(&note)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .size();
        self.db.tx(|c| {
            let missing = |what: String| ApiError::new_pub(404, "not_in_ledger", what);
            let proven = |c: &mut dyn Conn, reference: String| -> Result<ProvenLeaf, ApiError> {
                let (index, data) = tree::find(c, &reference)?
                    .filter(|(n, _)| *n < size)
                    .ok_or_else(|| missing(format!("{reference} is not in the ledger")))?;
                Ok(ProvenLeaf {
                    index,
                    proof: tree::encode(&tree::inclusion(c, index, size)?),
                    data,
                })
            };
            let record = proven(c, format!("record/{device}/{seq}"))?;
            let content = c
                .query(
                    "SELECT record FROM violations WHERE device_id = $1 AND seq = $2",
                    &[device.into(), seq_i64(seq)?.into()],
                )?
                .first()
                .and_then(|r| text(r, 0))
                .ok_or_else(|| missing(format!("violation {device}/{seq} is not stored")))?;
            let cp_seq = c
                .query(
                    "SELECT MIN(seq) FROM violations WHERE device_id = $1 AND seq >= $2 AND checkpoint_at IS NOT NULL",
                    &[device.into(), seq_i64(seq)?.into()],
                )?
                .first()
                .and_then(|r| r.first())
                .and_then(Value::int)
                .ok_or_else(|| missing(format!("no device checkpoint covers {device}/{seq}")))?;
            let device_checkpoint = proven(c, format!("record/{device}/{cp_seq}/checkpoint"))?;
            let device_leaf = proven(c, format!("device/{device}"))?;
            let previous_link = if seq > 1 {
                tree::find(c, &format!("record/{device}/{}", seq - 1))?
                    .and_then(|(_, d)| match ledger::Leaf::parse(d.as_bytes()) {
                        Ok(ledger::Leaf::Record { link, .. }) => Some(link),
                        _ => None,
                    })
                    .unwrap_or_else(|| baomi_core::bundle::keys::hex(&[0u8; 32]))
            } else {
                baomi_core::bundle::keys::hex(&[0u8; 32])
            };
            let mut segment = Vec::new();
            for s in seq + 1..=u(cp_seq) {
                let (_, d) = tree::find(c, &format!("record/{device}/{s}"))?
                    .ok_or_else(|| missing(format!("record/{device}/{s} is not in the ledger")))?;
                segment.push(d);
            }
            Ok(Evidence {
                format: ledger::EVIDENCE_FORMAT.into(),
                checkpoint: note.clone(),
                device: device_leaf,
                record,
                content,
                previous_link,
                segment,
                device_checkpoint,
            })
        })
    }
}
