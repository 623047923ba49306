//! Stage 2: upload. Opens a sealed batch, stores it exactly once, answers with its receipt.

use super::*;

impl Server {
    pub(super) fn upload(&self, dev: &str, at: i64, req: Upload) -> Reply {
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
        let now = self.now();
        let acked = self.db.tx(|c| {
            claim_request(c, dev, at)?;
            for r in &records {
                let rec = serde_json::to_string(&r.record).map_err(|e| ApiError::internal(e.to_string()))?;
                // Re-sent batches hit the primary key and change nothing: exactly once.
                c.execute(
                    "INSERT INTO violations (device_id, seq, received_at, at, rules, record, tag) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (device_id, seq) DO NOTHING",
                    &[
                        dev.into(),
                        seq_i64(r.seq)?.into(),
                        now.0.into(),
                        r.record.event.at.0.into(),
                        r.record.rules.join(",").into(),
                        rec.into(),
                        r.tag.clone().into(),
                    ],
                )?;
            }
            let mut acked = c
                .query("SELECT acked_through FROM devices WHERE device_id = $1", &[dev.into()])?
                .first()
                .map_or(0, |r| int(r, 0));
            loop {
                let next = c.query(
                    "SELECT seq FROM violations WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT 1000",
                    &[dev.into(), acked.into()],
                )?;
                let before = acked;
                for r in &next {
                    if int(r, 0) == acked + 1 {
                        acked += 1;
                    } else {
                        break;
                    }
                }
                if acked == before || next.len() < 1000 {
                    break;
                }
            }
            let acked_tag = c
                .query(
                    "SELECT tag FROM violations WHERE device_id = $1 AND seq = $2",
                    &[dev.into(), acked.into()],
                )?
                .first()
                .and_then(|r| text(r, 0))
                .unwrap_or_default();
            c.execute(
                "UPDATE devices SET acked_through = $1, acked_tag = $2 WHERE device_id = $3",
                &[acked.into(), acked_tag.into(), dev.into()],
            )?;
            Ok(acked)
        })?;
        // Committed: only now does the receipt exist, so a device deletes only stored records.
        let last_tag = records.last().map(|r| r.tag.as_str()).unwrap_or_default();
        json(&UploadResponse {
            acked_through: u(acked),
            receipt: receipt_key.receipt(dev, req.first_seq, req.last_seq, last_tag),
        })
    }
}
