//! Stage 1: check-in. Records what the device reports, raises chain alerts, and proves its
//! answer with the session key the device sealed to the office.

use super::*;

impl Server {
    pub(super) fn check_in(&self, dev: &str, at: i64, req: CheckIn, body: &[u8]) -> Reply {
        Self::same_device(dev, &req.device_id)?;
        if req.protocol != PROTOCOL_VERSION {
            return Err(ApiError::bad_request(format!(
                "protocol {} not supported (server speaks {PROTOCOL_VERSION})",
                req.protocol
            )));
        }
        let session_raw = zeroize::Zeroizing::new(
            self.upload_key()?
                .open(&session_aad(dev), &req.session)
                .map_err(|e| ApiError::bad_request(format!("session key: {e}")))?,
        );
        let session = ProofKey::from_bytes(&session_raw)
            .ok_or_else(|| ApiError::bad_request("session key must be 32 bytes"))?;
        let session_b64 = zeroize::Zeroizing::new({
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(session_raw.as_slice())
        });
        let now = self.now();
        let posture = serde_json::to_string(&req.posture).unwrap_or_default();
        // Bounded like the device bounds it: the report is the phone's word, hostile or not.
        let applied = req
            .applied
            .clone()
            .map(|a| serde_json::to_string(&a.bounded()).unwrap_or_default());
        let mut resp = self.db.tx(|c| {
            claim_request(c, dev, at)?;
            let row = c.query(
                "SELECT acked_through, acked_tag, head_seq, head_tag, generation FROM devices WHERE device_id = $1",
                &[dev.into()],
            )?;
            let row = row.first().cloned().unwrap_or_default();
            let acked = int(&row, 0);
            let alert = chain_alert(&req, acked, int(&row, 2), &text(&row, 3).unwrap_or_default(), int(&row, 4))?;
            if let Some(a) = &alert {
                log::warn!("device {dev}: {a}");
            }
            c.execute(
                "UPDATE devices SET last_check_in = $1, agent_version = $2, head_seq = $3, head_tag = $4, policy_id = $5, policy_version = $6, policy_digest = $7, posture = $8, fail_closed = $9, clock_skew_ms = $10, alert = COALESCE($11, alert), generation = $12, session_key = $13, applied = COALESCE($14, applied) WHERE device_id = $15",
                &[
                    now.0.into(),
                    req.agent_version.clone().into(),
                    seq_i64(req.chain.head_seq)?.into(),
                    req.chain.head_tag.clone().into(),
                    req.policy.as_ref().map(|p| p.id.clone()).into(),
                    req.policy.as_ref().map(|p| p.version as i64).into(),
                    req.policy.as_ref().map(|p| p.digest.clone()).into(),
                    posture.clone().into(),
                    req.fail_closed.clone().into(),
                    (req.device_time.0 - now.0).into(),
                    alert.into(),
                    seq_i64(req.chain.generation)?.into(),
                    session_b64.to_string().into(),
                    applied.clone().into(),
                    dev.into(),
                ],
            )?;
            let bundle = latest_bundle(c)?.filter(|b| {
                req.policy
                    .as_ref()
                    .is_none_or(|p| p.version < b.version || p.id != b.id)
            });
            let trust_root_version = latest_trust_root_version(c)?;
            let pending = custody_pending(c, dev, req.custody_cursor)?;
            Ok(CheckInResponse {
                server_time: now,
                acked_through: u(acked),
                acked_tag: text(&row, 1).unwrap_or_default(),
                bundle,
                trust_root_version,
                custody_pending: pending,
                proof: String::new(),
            })
        })?;
        resp.proof = session.prove(Answer::CheckIn, dev, body, &resp.proof_bytes());
        // Zones only the phone sees: its posture goes to the MDM when the MDM applies it. A
        // failure here never fails the sync (the command is retried).
        if let Err(e) = self.mdm_on_check_in(dev, &req.posture) {
            log::warn!("mdm after check-in of {dev}: {}", e.message);
        }
        json(&resp)
    }
}

/// Compares what a device reports of its store with what it reported before: a head below the
/// records already received or than reported, the same head seq with another tag, or a
/// generation that went back means the store was restored from an older copy or replaced.
pub(super) fn chain_alert(
    req: &CheckIn,
    acked: i64,
    head_seq: i64,
    head_tag: &str,
    generation: i64,
) -> Result<Option<String>, ApiError> {
    let seq = seq_i64(req.chain.head_seq)?;
    let gen_now = seq_i64(req.chain.generation)?;
    Ok(if seq < acked {
        Some(format!(
            "chain head {seq} is below the {acked} records already received: store rolled back or replaced"
        ))
    } else if seq < head_seq {
        Some(format!(
            "chain head {seq} is below the {head_seq} reported before: store rolled back"
        ))
    } else if seq == head_seq && seq > 0 && !head_tag.is_empty() && head_tag != req.chain.head_tag {
        Some(format!(
            "chain head {seq} has another tag than reported before: store rolled back and rewritten"
        ))
    } else if gen_now < generation {
        Some(format!(
            "store generation {gen_now} is below the {generation} reported before: store restored from an older copy"
        ))
    } else {
        None
    })
}
