//! Stage 2: upload. Opens a sealed batch, stores it exactly once, answers with its receipt.

use super::*;
use crate::ledger::Leaf;
use crate::schema::Indexed;
use baomi_core::bundle::keys::hex;
use baomi_core::sync::ledger::{self, DeviceCheckpoint};

/// An upload opened and checked (outside any transaction).
pub(super) struct OpenedBatch {
    first_seq: u64,
    last_seq: u64,
    receipt_key: ProofKey,
    records: Vec<UploadedRecord>,
    /// The device's signed checkpoint over the batch's last record (signature checked).
    checkpoint: Option<DeviceCheckpoint>,
}

impl OpenedBatch {
    /// The receipt, once the batch is committed: only now may the device delete it.
    pub(super) fn receipt(&self, dev: &str, acked: i64) -> UploadResponse {
        let last_tag = self
            .records
            .last()
            .map(|r| r.tag.as_str())
            .unwrap_or_default();
        UploadResponse {
            acked_through: u(acked),
            receipt: self
                .receipt_key
                .receipt(dev, self.first_seq, self.last_seq, last_tag),
        }
    }
}

impl Server {
    pub(super) fn upload(
        &self,
        dev: &str,
        at: i64,
        req: Upload,
        signed: Option<DeviceCheckpoint>,
    ) -> Reply {
        let batch = self.open_upload(dev, &req, signed)?;
        let now = self.now();
        let acked = self.db.tx(|c| {
            let row = claim_request(c, dev, at)?;
            let mut update = DeviceUpdate::default();
            let acked = store_batch(c, dev, &batch, &row, now, &mut update)?;
            update.write(c, dev)?;
            Ok(acked)
        })?;
        // Committed: only now does the receipt exist, so a device deletes only stored records.
        json(&batch.receipt(dev, acked))
    }

    /// Checks the batch's device and range and opens it. `signed`: the device checkpoint the
    /// carrying request's signature is (already verified), if it is one.
    pub(super) fn open_upload(
        &self,
        dev: &str,
        req: &Upload,
        signed: Option<DeviceCheckpoint>,
    ) -> Result<OpenedBatch, ApiError> {
        Self::same_device(dev, &req.device_id)?;
        let key = self.upload_key()?;
        if req.first_seq == 0
            || req.last_seq < req.first_seq
            || req.last_seq - req.first_seq >= MAX_BATCH_RECORDS as u64
        {
            return Err(ApiError::bad_request(format!(
                "batch {}..={} must be 1 to {MAX_BATCH_RECORDS} records starting at 1 or later",
                req.first_seq, req.last_seq
            )));
        }
        let (suite, plain) = key
            .open(&batch_aad(dev, req.first_seq, req.last_seq), &req.sealed)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let plain = zeroize::Zeroizing::new(plain);
        let batch: UploadBatch = parse(&plain)?;
        let receipt_key = ProofKey::from_base64(suite, &batch.receipt_key)
            .ok_or_else(|| ApiError::bad_request("receipt key must be 32 bytes of base64"))?;
        let records = batch.records;
        let contiguous = records.iter().zip(req.first_seq..).all(|(r, s)| r.seq == s)
            && records.len() as u64 == req.last_seq - req.first_seq + 1;
        if !contiguous {
            return Err(ApiError::bad_request(
                "batch records do not match its seq range",
            ));
        }
        // The device's checkpoint: over this batch's last record, signed by its identity key
        // (the key it enrolled with, which the ledger holds). Today's agents sign it with the
        // request (verified with it); agents of 2026-12 before that carry it in the batch,
        // signed apart; batches from agents before the ledger carry none: stored, and
        // reported by the auditor as not covered.
        let checkpoint = match (batch.checkpoint, signed) {
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "the batch carries a checkpoint and the request's signature is another",
                ));
            }
            (None, Some(cp)) => {
                if cp.seq != req.last_seq {
                    return Err(ApiError::bad_request(
                        "the request's checkpoint is not over the batch's last record",
                    ));
                }
                Some(cp)
            }
            (Some(cp), None) => {
                let key = self.device_key(dev)?;
                if cp.seq != req.last_seq || !cp.binding.is_empty() || !cp.verify(dev, &key) {
                    return Err(ApiError::bad_request(
                        "the batch's checkpoint is not the device's signature over its last record",
                    ));
                }
                Some(cp)
            }
        };
        Ok(OpenedBatch {
            first_seq: req.first_seq,
            last_seq: req.last_seq,
            receipt_key,
            records,
            checkpoint,
        })
    }
}

/// Most records one device may deliver in a day (a phone records a handful; a phone with its
/// own keys stored 199 MiB in 10 s before this).
pub const MAX_RECORDS_PER_DAY: i64 = 20_000;
/// Most bytes of records one device may deliver in a day.
pub const MAX_BYTES_PER_DAY: i64 = 64 * 1024 * 1024;

/// The office's link of the record before `first`: genesis for the first record, `None`
/// when the office holds no linked record there; the device row's when the batch follows the
/// acknowledged record (the usual batch: no query).
fn chain_before(
    c: &mut dyn Conn,
    dev: &str,
    first: u64,
    row: &DeviceRow,
) -> Result<Option<[u8; 32]>, ApiError> {
    if first <= 1 {
        return Ok(Some(ledger::GENESIS));
    }
    if u64::try_from(row.acked_through).ok().map(|a| a + 1) == Some(first)
        && let Some(l) = ledger::parse_link(&row.acked_link)
    {
        return Ok(Some(l));
    }
    let rows = c.query(
        "SELECT link FROM violations WHERE device_id = $1 AND seq = $2",
        &[dev.into(), seq_i64(first - 1)?.into()],
    )?;
    Ok(rows
        .first()
        .and_then(|r| text(r, 0))
        .and_then(|l| ledger::parse_link(&l)))
}

/// Error code of a batch that reuses a seq the office holds with another record.
pub(super) const SEQ_CONFLICT: &str = "seq_conflict";

/// Stores a batch exactly once and advances the device's contiguous acknowledgement, inside
/// the caller's transaction (which has claimed the request and read `row`; the device row's
/// new acknowledgement goes into `update`); returns the new `acked_through`.
pub(super) fn store_batch(
    c: &mut dyn Conn,
    dev: &str,
    batch: &OpenedBatch,
    row: &DeviceRow,
    now: Timestamp,
    update: &mut DeviceUpdate,
) -> Result<i64, ApiError> {
    // One statement for the batch. Re-sent records hit the primary key and change nothing:
    // exactly once.
    let mut sql = String::from(
        "INSERT INTO violations (device_id, seq, received_at, at, rules, record, tag, link, holder, severity, verdict, event_type, checkpoint_at) VALUES ",
    );
    const COLUMNS: usize = 13;
    let mut params: Vec<Value> = Vec::with_capacity(batch.records.len() * COLUMNS);
    // Who held the phone when the office received the record (the published assignment
    // then): the console filters on it, and a later reassignment does not rewrite it.
    // Unassigned: the person the enrolment token was issued for (the console shows the same).
    let holder: Value = row.holder.clone().into();
    let mut indexed = Vec::with_capacity(batch.records.len());
    let mut bytes: i64 = 0;
    // The public chain: each record's link must follow the previous one's (the office's copy
    // of the record before the batch, or genesis where the device's chain restarted after a
    // restored store), over the exact bytes stored.
    // `None`: the office does not hold the record before the batch (restored from a backup
    // older than the phone's acknowledgement, or a batch out of order): the first link
    // starts a segment here; the gap is the auditor's to name, from the phone's checkpoints.
    let mut prev = chain_before(c, dev, batch.first_seq, row)?;
    let mut leaves: Vec<(u64, Leaf)> = Vec::with_capacity(batch.records.len() + 1);
    for (i, r) in batch.records.iter().enumerate() {
        let rec =
            serde_json::to_string(&r.record).map_err(|e| ApiError::internal(e.to_string()))?;
        bytes = bytes.saturating_add(i64::try_from(rec.len()).unwrap_or(i64::MAX));
        // Under the suite the device sealed this batch in (its receipt key's).
        let suite = batch.receipt_key.suite();
        let digest = ledger::record_digest(suite, rec.as_bytes());
        let link = if r.link.is_empty() && batch.checkpoint.is_none() {
            // An agent before the ledger: stored unlinked; the auditor reports it.
            None
        } else {
            let follows =
                |p: &[u8; 32]| hex(&ledger::chain_link(suite, dev, r.seq, p, &digest)) == r.link;
            let ok = match &prev {
                Some(p) => follows(p) || (i == 0 && follows(&ledger::GENESIS)),
                None => i == 0 && ledger::parse_link(&r.link).is_some(),
            };
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "record {} does not follow the device's chain (its link is not over the previous link and this record)",
                    r.seq
                )));
            }
            prev = ledger::parse_link(&r.link);
            Some(r.link.clone())
        };
        if let Some(link) = &link {
            leaves.push((
                r.seq,
                Leaf::Record {
                    device: dev.to_owned(),
                    seq: r.seq,
                    link: link.clone(),
                    digest: hex(&digest),
                    received_at: now.0,
                },
            ));
        }
        let n = i * COLUMNS;
        if i > 0 {
            sql.push_str(", ");
        }
        let placeholders: Vec<String> = (1..=COLUMNS).map(|k| format!("${}", n + k)).collect();
        sql.push_str(&format!("({})", placeholders.join(", ")));
        let x = Indexed::from_record(&r.record);
        params.extend([
            dev.into(),
            seq_i64(r.seq)?.into(),
            now.0.into(),
            r.record.event.at.0.into(),
            r.record.rules.join(",").into(),
            rec.into(),
            r.tag.clone().into(),
            link.unwrap_or_default().into(),
            holder.clone(),
            x.severity.clone().into(),
            x.verdict.clone().into(),
            x.event_type.clone().into(),
            // The device's checkpoint is kept on the row of the record it ends at (the batch's
            // last: checked below); the checkpoint itself is its leaf.
            batch
                .checkpoint
                .as_ref()
                .filter(|cp| cp.seq == r.seq)
                .map_or(Value::Null, |cp| cp.at.into()),
        ]);
        indexed.push((r.seq, x));
    }
    if let Some(cp) = &batch.checkpoint
        && (cp.seq != batch.last_seq || batch.records.last().map(|r| &r.link) != Some(&cp.link))
    {
        return Err(ApiError::bad_request(
            "the batch's checkpoint does not end at its last record's link",
        ));
    }
    sql.push_str(" ON CONFLICT (device_id, seq) DO NOTHING RETURNING seq");
    // The device's daily quota, checked before anything is stored: over it, the batch is
    // refused whole (the phone keeps it and retries the next day; nothing of it is stored).
    let day = now.0.div_euclid(86_400_000);
    let (records_today, bytes_today) = if row.quota_day == day {
        (row.quota_records, row.quota_bytes)
    } else {
        (0, 0)
    };
    let n = i64::try_from(batch.records.len()).unwrap_or(i64::MAX);
    let (records_after, bytes_after) = (
        records_today.saturating_add(n),
        bytes_today.saturating_add(bytes),
    );
    if records_after > MAX_RECORDS_PER_DAY || bytes_after > MAX_BYTES_PER_DAY {
        return Err(ApiError::new_pub(
            429,
            "quota",
            format!(
                "this device delivered {records_today} records ({bytes_today} bytes) today: over its daily quota of {MAX_RECORDS_PER_DAY} records or {MAX_BYTES_PER_DAY} bytes; nothing of this batch was stored, retry tomorrow"
            ),
        ));
    }
    update.set("quota_day", day);
    update.set("quota_records", records_after);
    update.set("quota_bytes", bytes_after);
    let stored: Vec<u64> = if batch.records.is_empty() {
        Vec::new()
    } else {
        c.query(&sql, &params)?
            .iter()
            .map(|r| u(int(r, 0)))
            .collect()
    };
    let inserted = stored.len() as u64;
    // The console's filters and counts, and the alerts the new records raise.
    let new: Vec<(&str, i64, i64, &Indexed)> = indexed
        .iter()
        .filter(|(seq, _)| stored.contains(seq))
        .map(|(seq, x)| Ok((dev, seq_i64(*seq)?, now.0, x)))
        .collect::<Result<_, ApiError>>()?;
    // The console's rule rows and counts, the device's checkpoint the first time it arrives,
    // and (PostgreSQL) their leaves queued for the log: independent writes, sent together (one
    // round trip on PostgreSQL). On SQLite the leaves are written below, at their indexes.
    let pg = c.kind() == crate::db::Kind::Postgres;
    // The leaves of what was stored now (the records', then the checkpoint's below).
    let mut leaves: Vec<Leaf> = leaves
        .into_iter()
        .filter(|(seq, _)| stored.contains(seq))
        .map(|(_, l)| l)
        .collect();
    let checkpoint_leaf = batch.checkpoint.as_ref().map(|cp| Leaf::Checkpoint {
        device: dev.to_owned(),
        seq: cp.seq,
        link: cp.link.clone(),
        at: cp.at,
        signature: cp.signature.clone(),
        binding: cp.binding.clone(),
    });
    // The checkpoint arrived with its record's row (the usual batch), or that row was stored by
    // an earlier try of this batch: then it is new only if that try carried none (the first
    // checkpoint over a record is the one logged, as a re-sent batch's records are).
    let stored_with_its_record = batch
        .checkpoint
        .as_ref()
        .is_some_and(|cp| stored.contains(&cp.seq));
    let mut writes = Indexed::count_statements(&new);
    // The records' leaves before the checkpoint's: the log never holds a device's checkpoint
    // without the records it signs for (a log checkpoint can fall between two leaves).
    leaves.extend(checkpoint_leaf.clone().filter(|_| stored_with_its_record));
    if pg && let Some(queue) = crate::ledger::log::queue_statement(&leaves) {
        writes.push(queue);
    }
    let checkpoint_write = writes.len();
    if let Some(cp) = batch
        .checkpoint
        .as_ref()
        .filter(|_| !stored_with_its_record)
    {
        let insert = "UPDATE violations SET checkpoint_at = $3 WHERE device_id = $1 AND seq = $2 AND checkpoint_at IS NULL";
        let params = vec![dev.into(), seq_i64(cp.seq)?.into(), cp.at.into()];
        writes.push(match checkpoint_leaf.as_ref().filter(|_| pg) {
            // Its leaf queued by the same statement, only if the checkpoint is new.
            Some(leaf) => crate::ledger::log::queue_with(insert, params, leaf),
            None => (insert.into(), params),
        });
    }
    let written = c.execute_all(&writes)?;
    // The checkpoint of a re-sent batch whose row had none: new after all.
    let new_late = !stored_with_its_record
        && batch.checkpoint.is_some()
        && written.get(checkpoint_write) == Some(&1);
    // Critical violations reach the officer without their looking: one notification per
    // batch (its count and first record), in this transaction.
    let critical: Vec<&(&str, i64, i64, &Indexed)> = new
        .iter()
        .filter(|(.., x)| x.severity == "critical")
        .collect();
    if let Some((_, seq, _, x)) = critical.first() {
        crate::notify::enqueue(
            c,
            &crate::notify::Notification {
                kind: "critical_violations".into(),
                device_id: dev.to_owned(),
                summary: format!(
                    "{dev}: {} critical violation(s), first {} (record {seq})",
                    critical.len(),
                    x.rules.join(", ")
                ),
                at: now.0,
                detail: serde_json::json!({ "count": critical.len(), "first_seq": seq, "rules": x.rules, "event_type": x.event_type }),
            },
        )?;
    }
    for (kind, rule) in [
        (crate::alerts::Kind::Tamper, baomi_core::rules::TAMPER),
        (crate::alerts::Kind::Clock, baomi_core::rules::CLOCK),
        (crate::alerts::Kind::Withheld, baomi_core::rules::WITHHELD),
    ] {
        if let Some((_, seq, ..)) = new.iter().find(|(.., x)| x.rules.iter().any(|r| r == rule)) {
            crate::alerts::raise(c, dev, kind, &format!("{rule} (record {seq})"), now.0)?;
        }
    }
    // SQLite: into the ledger with the rows, in this transaction: what was stored now, and
    // the device's checkpoint the first time it arrives.
    if !pg {
        leaves.extend(checkpoint_leaf.filter(|_| new_late));
        crate::ledger::log::enqueue(c, &leaves)?;
    }
    // Some seqs were already there: a re-sent batch (same records: exactly once), or a store
    // restored from an older copy reusing seqs for other records. A receipt now would make
    // the device delete records the office never stored, so the request fails whole (the
    // caller's transaction rolls back what this statement inserted) and the device, told by
    // its next proven check-in how far the office holds its chain, continues past it.
    if inserted < batch.records.len() as u64
        && let (Some(first), Some(last)) = (batch.records.first(), batch.records.last())
    {
        let stored = c.query(
            "SELECT seq, tag FROM violations WHERE device_id = $1 AND seq >= $2 AND seq <= $3",
            &[
                dev.into(),
                seq_i64(first.seq)?.into(),
                seq_i64(last.seq)?.into(),
            ],
        )?;
        for r in &stored {
            let seq = u(int(r, 0));
            let sent = batch.records.iter().find(|x| x.seq == seq);
            if sent.is_some_and(|x| Some(x.tag.as_str()) != text(r, 1).as_deref()) {
                return Err(ApiError::new_pub(
                    409,
                    SEQ_CONFLICT,
                    format!(
                        "seq {seq} is already stored with another record (the device's store was restored from an older copy): nothing of this batch was stored"
                    ),
                ));
            }
        }
    }
    // The device found its store damaged (or restored) and says so in a record: an alert the
    // officer sees in the fleet, not only a row among the violations.
    if let Some(r) = batch.records.iter().find(|r| {
        r.record
            .rules
            .iter()
            .any(|x| x == baomi_core::rules::STORE_DAMAGED)
    }) {
        let reason: String = r.record.reason.chars().take(300).collect();
        let text = format!("the device reports its store damaged: {reason}");
        crate::alerts::raise(c, dev, crate::alerts::Kind::StoreDamaged, &text, now.0)?;
        update.set("alert", text);
    }
    let (mut acked, mut acked_tag, mut acked_link) = (
        row.acked_through,
        row.acked_tag.clone(),
        row.acked_link.clone(),
    );
    // The usual batch: it starts right after the acknowledged run and every record is new, so
    // the run now ends at its last record, with its tag (no query). Records stored beyond it
    // out of order are picked up by the next batch that finds a record already there.
    if u64::try_from(acked).ok().map(|a| a + 1) == Some(batch.first_seq)
        && inserted == batch.records.len() as u64
        && let Some(last) = batch.records.last()
    {
        update.set("acked_through", seq_i64(last.seq)?);
        update.set("acked_tag", last.tag.clone());
        update.set("acked_link", last.link.clone());
        return seq_i64(last.seq);
    }
    // Otherwise: the contiguous run after what was acknowledged, with the stored tag of its
    // last record.
    loop {
        let next = c.query(
            "SELECT seq, tag, link FROM violations WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT 1000",
            &[dev.into(), acked.into()],
        )?;
        let before = acked;
        for r in &next {
            if int(r, 0) != acked + 1 {
                break;
            }
            acked += 1;
            acked_tag = text(r, 1).unwrap_or_default();
            acked_link = text(r, 2).unwrap_or_default();
        }
        if acked == before || next.len() < 1000 {
            break;
        }
    }
    if acked != row.acked_through {
        update.set("acked_through", acked);
        update.set("acked_tag", acked_tag);
        update.set("acked_link", acked_link);
    }
    Ok(acked)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;
    use baomi_core::event::Event;
    use baomi_core::store::ViolationRecord;

    fn server() -> (tempfile::TempDir, Server) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}", dir.path().join("s.db").display()), 1).unwrap();
        let s = Server::new(db, None, Timestamp::now).unwrap();
        s.db.tx(|c| {
            c.execute(
                "INSERT INTO devices (device_id, public_key, platform, agent_version, enrolled_at) VALUES ('d', 'k', 'android', 't', 0)",
                &[],
            )?;
            Ok(())
        })
        .unwrap();
        (dir, s)
    }

    fn batch(seqs: std::ops::RangeInclusive<u64>) -> OpenedBatch {
        let record = ViolationRecord {
            event: Event::from_json_line(
                1,
                r#"{"at":"2026-11-28T10:00:00+08:00","type":"app_launched","package":"com.tencent.mm"}"#,
            )
            .unwrap(),
            verdict: baomi_core::Verdict::Deny,
            rules: vec!["no-messengers".into()],
            severity: None,
            reason: "banned".into(),
            posture: baomi_core::posture::Posture::open(),
            policy: None,
        };
        OpenedBatch {
            first_seq: *seqs.start(),
            last_seq: *seqs.end(),
            receipt_key: ProofKey::generate(baomi_core::suite::Suite::Intl).unwrap(),
            records: seqs
                .map(|seq| UploadedRecord {
                    seq,
                    tag: format!("{seq:032x}"),
                    record: record.clone(),
                    // Unlinked, as from an agent before the ledger.
                    link: String::new(),
                })
                .collect(),
            checkpoint: None,
        }
    }

    /// Stores `b` as an upload would; returns the acknowledgement and the stored tag.
    fn store(s: &Server, b: &OpenedBatch) -> (i64, String) {
        s.db.tx(|c| {
            let row = claim_request(c, "d", Timestamp::now().0 + i64::from(later()))?;
            let mut update = DeviceUpdate::default();
            let acked = store_batch(c, "d", b, &row, Timestamp::now(), &mut update)?;
            update.write(c, "d")?;
            let tag = c.query(
                "SELECT acked_tag, (SELECT COUNT(*) FROM violations) FROM devices",
                &[],
            )?;
            Ok((acked, text(&tag[0], 0).unwrap_or_default(), int(&tag[0], 1)))
        })
        .map(|(a, t, n)| {
            assert!(n <= 10, "never more rows than records sent");
            (a, t)
        })
        .unwrap()
    }

    // A record keeps who held the phone when the office received it: the person the token was
    // issued for until the office assigns the phone, then the assignment, and a later
    // reassignment does not rewrite what was stored.
    #[test]
    fn a_stored_record_names_who_held_the_phone_when_it_arrived() {
        let (_d, s) = server();
        let sql = |sql: &str| {
            s.db.tx(|c| {
                c.batch(sql)?;
                Ok(())
            })
            .unwrap();
        };
        let holders = || -> Vec<(i64, Option<String>)> {
            s.db.tx(|c| {
                Ok(
                    c.query("SELECT seq, holder FROM violations ORDER BY seq", &[])?
                        .iter()
                        .map(|r| (int(r, 0), text(r, 1)))
                        .collect(),
                )
            })
            .unwrap()
        };
        sql("UPDATE devices SET enrolled_for = 'li.na'");
        store(&s, &batch(1..=1));
        sql("INSERT INTO device_holders (device_id, holder) VALUES ('d', 'zhang.wei')");
        store(&s, &batch(2..=2));
        sql("UPDATE device_holders SET holder = 'wang.fang'");
        assert_eq!(
            holders(),
            [(1, Some("li.na".into())), (2, Some("zhang.wei".into()))]
        );
    }

    /// Request times only grow: each store claims a later one.
    fn later() -> u16 {
        static N: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    // Issue 20, item 5: one phone stored 199 MiB of violations in 10 s. Over its daily quota a
    // batch is refused whole, and nothing of it is stored.
    #[test]
    fn a_device_over_its_daily_quota_is_refused_and_nothing_is_stored() {
        let (_d, s) = server();
        let per = 100u64;
        let full = u64::try_from(MAX_RECORDS_PER_DAY).unwrap();
        for first in (1..=full).step_by(per as usize) {
            s.db.tx(|c| {
                let row = claim_request(c, "d", Timestamp::now().0 + i64::from(later()))?;
                let mut update = DeviceUpdate::default();
                store_batch(
                    c,
                    "d",
                    &batch(first..=first + per - 1),
                    &row,
                    Timestamp::now(),
                    &mut update,
                )?;
                update.write(c, "d")?;
                Ok(())
            })
            .unwrap();
        }
        let count = || -> i64 {
            s.db.tx(|c| Ok(int(&c.query("SELECT COUNT(*) FROM violations", &[])?[0], 0)))
                .unwrap()
        };
        assert_eq!(count(), MAX_RECORDS_PER_DAY);
        let over = s.db.tx(|c| {
            let row = claim_request(c, "d", Timestamp::now().0 + i64::from(later()))?;
            let mut update = DeviceUpdate::default();
            store_batch(
                c,
                "d",
                &batch(full + 1..=full + 1),
                &row,
                Timestamp::now(),
                &mut update,
            )
        });
        let e = over.unwrap_err();
        assert_eq!((e.status, e.code), (429, "quota"));
        assert_eq!(count(), MAX_RECORDS_PER_DAY);
    }

    #[test]
    fn batches_out_of_order_or_again_are_stored_once_and_acknowledged_contiguously() {
        let (_d, s) = server();
        // A batch past a gap: stored, acknowledges nothing.
        assert_eq!(store(&s, &batch(6..=10)), (0, String::new()));
        // The batch that fills the gap: acknowledged through its end at least.
        let (acked, tag) = store(&s, &batch(1..=5));
        assert!(acked >= 5, "{acked}");
        assert_eq!(tag, format!("{acked:032x}"));
        // The later batch again (what the device sends next): through 10, nothing twice.
        assert_eq!(store(&s, &batch(6..=10)), (10, format!("{:032x}", 10)));
        assert_eq!(store(&s, &batch(1..=5)), (10, format!("{:032x}", 10)));
    }
}
