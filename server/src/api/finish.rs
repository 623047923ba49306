//! Stage 4: finish. Records the posture applied and proves the sync complete.

use super::*;
use check_in::set_reported_state;

impl Server {
    pub(super) fn finish(&self, dev: &str, at: i64, req: Finish, body: &[u8]) -> Reply {
        Self::same_device(dev, &req.device_id)?;
        let now = self.now();
        let stored = self.db.tx(|c| {
            let row = claim_request(c, dev, at)?;
            // Refused before anything is written: a finish without a check-in must not move
            // the head or the generation (that hid a restored store from the alert).
            let stored = row
                .session_key
                .ok_or_else(|| ApiError::conflict("finish without a check-in in this sync"))?;
            let mut update = DeviceUpdate::default();
            // Why it fails closed, as its check-in in this sync reported it.
            let fail_closed = c
                .query(
                    "SELECT fail_closed FROM devices WHERE device_id = $1",
                    &[dev.into()],
                )?
                .first()
                .and_then(|r| text(r, 0));
            record_finish(c, dev, &req, now, None, fail_closed.as_deref(), &mut update)?;
            update.write(c, dev)?;
            Ok(stored)
        })?;
        let key = ProofKey::from_stored(&stored)
            .ok_or_else(|| ApiError::internal("stored session key is damaged"))?;
        crate::metrics::sync_finished("stages");
        json(&FinishResponse {
            proof: key.prove(Answer::Finish, dev, body, b""),
        })
    }
}

/// The finish's writes (the device row's into `update`; the session key is spent), inside the
/// caller's transaction. `unchanged_from`: the posture the device row had, when a finish that
/// reports the same one needs no history row (a sync that delivered nothing); `None` records.
/// `fail_closed`: why the phone runs closed, as its check-in said (the history keeps it).
pub(super) fn record_finish(
    c: &mut dyn Conn,
    dev: &str,
    req: &Finish,
    now: Timestamp,
    unchanged_from: Option<&str>,
    fail_closed: Option<&str>,
    update: &mut DeviceUpdate,
) -> Result<(), ApiError> {
    let posture = serde_json::to_string(&req.posture).unwrap_or_default();
    update.set("posture", posture.clone());
    set_reported_state(update, req.policy.as_ref(), &req.chain)?;
    update.set("custody_cursor", seq_i64(req.custody_cursor)?);
    update.set("session_key", Value::Null);
    // The device's history for the officer: the posture after every sync that delivered
    // something (custody applied: the console's "camera off confirmed" reads it) or changed
    // it, 30 days kept; the time of the last sync is on the device row. A scheduled sync that
    // changed nothing adds no row (a million phones at 96 syncs a day would add 96 million).
    if unchanged_from != Some(posture.as_str()) || fail_closed.is_some() {
        c.execute(
            "INSERT INTO checkins (device_id, at, posture, fail_closed) VALUES ($1, $2, $3, $4)",
            &[
                dev.into(),
                now.0.into(),
                posture.into(),
                fail_closed.map_or(Value::Null, Value::from),
            ],
        )?;
    }
    if now.0 % 97 == 0 {
        c.execute(
            "DELETE FROM checkins WHERE device_id = $1 AND at < $2",
            &[dev.into(), now.plus_seconds(-30 * 86_400).0.into()],
        )?;
    }
    Ok(())
}
