//! Stage 3: download. What the device does not have: trust-root rotations, the newest bundle,
//! its holder's custody records and its own assignment records.

use super::*;

impl Server {
    pub(super) fn download(&self, dev: &str, at: i64, req: DownloadRequest, body: &[u8]) -> Reply {
        Self::same_device(dev, &req.device_id)?;
        let (mut resp, session) = self.db.tx(|c| {
            let row = claim_request(c, dev, at)?;
            let trust_roots = c
                .query(
                    "SELECT envelope FROM trust_roots WHERE version > $1 ORDER BY version",
                    &[seq_i64(req.trust_root_version)?.into()],
                )?
                .iter()
                .filter_map(|r| text(r, 0))
                .collect();
            let bundle = c
                .query(
                    "SELECT envelope FROM bundles WHERE version > $1 ORDER BY version DESC LIMIT 1",
                    &[seq_i64(req.policy_version)?.into()],
                )?
                .first()
                .and_then(|r| text(r, 0));
            // The holder's custody records and the device's own assignment records, in one
            // feed order.
            let holder = holder_of(c, dev)?.unwrap_or_default();
            let custody = c
                .query(
                    "SELECT cursor, envelope FROM custody WHERE (holder = $1 AND device_id IS NULL OR device_id = $2) AND cursor > $3 ORDER BY cursor LIMIT $4",
                    &[holder.into(), dev.into(), seq_i64(req.custody_after)?.into(), (MAX_CUSTODY_PER_DOWNLOAD + 1).into()],
                )?
                .iter()
                .map(|r| CustodyFeedEntry {
                    cursor: u(int(r, 0)),
                    envelope: text(r, 1).unwrap_or_default(),
                })
                .collect();
            // One more than a page was read: more waits after this page.
            let mut custody: Vec<CustodyFeedEntry> = custody;
            let custody_more = custody.len() as i64 > MAX_CUSTODY_PER_DOWNLOAD;
            custody.truncate(usize::try_from(MAX_CUSTODY_PER_DOWNLOAD).unwrap_or(0));
            Ok((
                DownloadResponse {
                    trust_roots,
                    bundle,
                    custody,
                    custody_more,
                    proof: String::new(),
                },
                row.session_key,
            ))
        })?;
        // Proven with the session key of the sync's check-in, over exactly this answer: a relay
        // cannot drop a custody record, a bundle or a rotation from it unseen.
        let stored = session
            .ok_or_else(|| ApiError::conflict("download without a check-in in this sync"))?;
        let key = ProofKey::from_stored(&stored)
            .ok_or_else(|| ApiError::internal("stored session key is damaged"))?;
        resp.proof = key.prove(Answer::Download, dev, body, &resp.proof_bytes());
        json(&resp)
    }
}
