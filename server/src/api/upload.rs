//! Stage 2: upload. Opens a sealed batch, stores it exactly once, answers with its receipt.

use super::*;

/// An upload opened and checked (outside any transaction).
pub(super) struct OpenedBatch {
    first_seq: u64,
    last_seq: u64,
    receipt_key: ProofKey,
    records: Vec<UploadedRecord>,
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
    pub(super) fn upload(&self, dev: &str, at: i64, req: Upload) -> Reply {
        let batch = self.open_upload(dev, &req)?;
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

    /// Checks the batch's device and range and opens it.
    pub(super) fn open_upload(&self, dev: &str, req: &Upload) -> Result<OpenedBatch, ApiError> {
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
        let plain = zeroize::Zeroizing::new(
            key.open(&batch_aad(dev, req.first_seq, req.last_seq), &req.sealed)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        );
        let batch: UploadBatch = parse(&plain)?;
        let receipt_key = ProofKey::from_base64(&batch.receipt_key)
            .ok_or_else(|| ApiError::bad_request("receipt key must be 32 bytes of base64"))?;
        let records = batch.records;
        let contiguous = records.iter().zip(req.first_seq..).all(|(r, s)| r.seq == s)
            && records.len() as u64 == req.last_seq - req.first_seq + 1;
        if !contiguous {
            return Err(ApiError::bad_request(
                "batch records do not match its seq range",
            ));
        }
        Ok(OpenedBatch {
            first_seq: req.first_seq,
            last_seq: req.last_seq,
            receipt_key,
            records,
        })
    }
}

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
        "INSERT INTO violations (device_id, seq, received_at, at, rules, record, tag) VALUES ",
    );
    let mut params: Vec<Value> = Vec::with_capacity(batch.records.len() * 7);
    for (i, r) in batch.records.iter().enumerate() {
        let rec =
            serde_json::to_string(&r.record).map_err(|e| ApiError::internal(e.to_string()))?;
        let n = i * 7;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            n + 5,
            n + 6,
            n + 7
        ));
        params.extend([
            dev.into(),
            seq_i64(r.seq)?.into(),
            now.0.into(),
            r.record.event.at.0.into(),
            r.record.rules.join(",").into(),
            rec.into(),
            r.tag.clone().into(),
        ]);
    }
    sql.push_str(" ON CONFLICT (device_id, seq) DO NOTHING");
    if !batch.records.is_empty() {
        c.execute(&sql, &params)?;
    }
    // The contiguous run after what was acknowledged, with the tag of its last record.
    let (mut acked, mut acked_tag) = (row.acked_through, row.acked_tag.clone());
    loop {
        let next = c.query(
            "SELECT seq, tag FROM violations WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT 1000",
            &[dev.into(), acked.into()],
        )?;
        let before = acked;
        for r in &next {
            if int(r, 0) != acked + 1 {
                break;
            }
            acked += 1;
            acked_tag = text(r, 1).unwrap_or_default();
        }
        if acked == before || next.len() < 1000 {
            break;
        }
    }
    if acked != row.acked_through {
        update.set("acked_through", acked);
        update.set("acked_tag", acked_tag);
    }
    Ok(acked)
}
