//! Stage 4: finish. Records the posture applied and proves the sync complete.

use super::*;

impl Server {
    pub(super) fn finish(&self, dev: &str, at: i64, req: Finish, body: &[u8]) -> Reply {
        Self::same_device(dev, &req.device_id)?;
        let now = self.now();
        let session = self.db.tx(|c| {
            let row = claim_request(c, dev, at)?;
            record_finish(c, dev, &req, now)?;
            Ok(row.session_key)
        })?;
        let stored =
            session.ok_or_else(|| ApiError::conflict("finish without a check-in in this sync"))?;
        let key = ProofKey::from_base64(&stored)
            .ok_or_else(|| ApiError::internal("stored session key is damaged"))?;
        json(&FinishResponse {
            proof: key.prove(Answer::Finish, dev, body, b""),
        })
    }
}

/// The finish's writes (the session key is spent), inside the caller's transaction.
pub(super) fn record_finish(
    c: &mut dyn Conn,
    dev: &str,
    req: &Finish,
    now: Timestamp,
) -> Result<(), ApiError> {
    let posture = serde_json::to_string(&req.posture).unwrap_or_default();
    c.execute(
        "UPDATE devices SET posture = $1, policy_id = $2, policy_version = $3, policy_digest = $4, head_seq = $5, head_tag = $6, custody_cursor = $7, generation = $8, session_key = NULL WHERE device_id = $9",
        &[
            posture.clone().into(),
            req.policy.as_ref().map(|p| p.id.clone()).into(),
            req.policy.as_ref().map(|p| p.version as i64).into(),
            req.policy.as_ref().map(|p| p.digest.clone()).into(),
            seq_i64(req.chain.head_seq)?.into(),
            req.chain.head_tag.clone().into(),
            seq_i64(req.custody_cursor)?.into(),
            seq_i64(req.chain.generation)?.into(),
            dev.into(),
        ],
    )?;
    // The device's sync history for the officer (the posture after the sync, custody
    // applied: the console's "camera off confirmed" reads it), 30 days kept; pruned about
    // once a day per device (a device syncs ~96 times a day).
    c.execute(
        "INSERT INTO checkins (device_id, at, posture, fail_closed) VALUES ($1, $2, $3, $4)",
        &[dev.into(), now.0.into(), posture.into(), Value::Null],
    )?;
    if now.0 % 97 == 0 {
        c.execute(
            "DELETE FROM checkins WHERE device_id = $1 AND at < $2",
            &[dev.into(), now.plus_seconds(-30 * 86_400).0.into()],
        )?;
    }
    Ok(())
}
