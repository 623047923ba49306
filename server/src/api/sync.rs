//! Stages 1, 2 and 4 in one request and one transaction (`POST /v1/sync`): the scheduled
//! sync of a phone with nothing waiting for it, which is most of them. The stages' own
//! functions do the work; this only decides whether the sync can finish here.

use super::*;
use check_in::record_check_in;
use finish::record_finish;
use upload::store_batch;

impl Server {
    pub(super) fn sync(
        &self,
        dev: &str,
        at: i64,
        req: SyncRequest,
        body: &[u8],
        signed: Option<DeviceCheckpoint>,
    ) -> Reply {
        Self::same_device(dev, &req.finish.device_id)?;
        // Crypto before the transaction: it never holds the database.
        let session = self.open_check_in(dev, &req.check_in)?;
        let batch = match &req.upload {
            Some(u) => Some(self.open_upload(dev, u, signed)?),
            None if signed.is_some() => {
                return Err(ApiError::bad_request(
                    "the request's signature is a device checkpoint but it carries no batch",
                ));
            }
            None => None,
        };
        let now = self.now();
        let mut batch = batch;
        let mut result = self.sync_tx(dev, at, &req, &session, batch.as_ref(), now);
        if matches!(&result, Err(e) if e.code == upload::SEQ_CONFLICT) {
            // The batch reuses seqs the office holds with other records (a restored store):
            // nothing of it is stored and it gets no receipt; the check-in still goes through
            // so the device learns, proven, how far the office holds its chain.
            batch = None;
            result = self.sync_tx(dev, at, &req, &session, None, now);
        }
        let (mut check_in, acked, finished) = result?;
        check_in.log_checkpoint = self.shown_log_note();
        check_in.proof = session
            .key
            .prove(Answer::CheckIn, dev, body, &check_in.proof_bytes());
        let resp = SyncResponse {
            check_in,
            upload: batch.zip(acked).map(|(b, acked)| b.receipt(dev, acked)),
            finish: finished.then(|| FinishResponse {
                proof: session.key.prove(Answer::Finish, dev, body, b""),
            }),
        };
        self.after_check_in(dev, &req.check_in);
        if resp.finish.is_some() {
            crate::metrics::sync_finished("one_request");
        }
        json(&resp)
    }

    /// The one transaction of a one-request sync.
    fn sync_tx(
        &self,
        dev: &str,
        at: i64,
        req: &SyncRequest,
        session: &check_in::Session,
        batch: Option<&upload::OpenedBatch>,
        now: Timestamp,
    ) -> Result<(CheckInResponse, Option<i64>, bool), ApiError> {
        self.db.tx(|c| {
            let (row, waiting) = claim_check_in(c, dev, at, req.check_in.custody_cursor)?;
            // One write of the device row for the three stages.
            let mut update = DeviceUpdate::default();
            let check_in = record_check_in(
                c,
                dev,
                &req.check_in,
                &row,
                waiting,
                session,
                now,
                &mut update,
            )?;
            if row.retired {
                // Told by the proven check-in; nothing stored, nothing finished.
                update.write(c, dev)?;
                return Ok((check_in, None, false));
            }
            let acked = batch
                .map(|b| store_batch(c, dev, b, &row, now, &mut update))
                .transpose()?;
            // Anything to deliver: the device downloads it and finishes at stage 4.
            let waiting = check_in.bundle.is_some()
                || check_in.trust_root_version > req.check_in.trust_root_version
                || check_in.custody_pending;
            if !waiting {
                record_finish(
                    c,
                    dev,
                    &req.finish,
                    now,
                    row.posture.as_deref(),
                    req.check_in.fail_closed.as_deref(),
                    &mut update,
                )?;
            }
            update.write(c, dev)?;
            Ok((check_in, acked, !waiting))
        })
    }
}
