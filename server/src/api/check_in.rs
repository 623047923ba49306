//! Stage 1: check-in. Records what the device reports, raises chain alerts, and proves its
//! answer with the session key the device sealed to the office.

use super::*;

/// A check-in's session key, opened from its sealed box (outside any transaction).
pub(super) struct Session {
    pub(super) key: ProofKey,
    /// Base64 of the key, as the device row keeps it until finish.
    pub(super) stored: zeroize::Zeroizing<String>,
    /// The device reports a trust root or bundle the office never published.
    pub(super) alert: Option<String>,
}

impl Server {
    pub(super) fn check_in(&self, dev: &str, at: i64, req: CheckIn, body: &[u8]) -> Reply {
        let session = self.open_check_in(dev, &req)?;
        let now = self.now();
        let mut resp = self.db.tx(|c| {
            let (row, waiting) = claim_check_in(c, dev, at, req.custody_cursor)?;
            let mut update = DeviceUpdate::default();
            let resp = record_check_in(c, dev, &req, &row, waiting, &session, now, &mut update)?;
            update.write(c, dev)?;
            Ok(resp)
        })?;
        resp.log_checkpoint = self.shown_log_note();
        resp.proof = session
            .key
            .prove(Answer::CheckIn, dev, body, &resp.proof_bytes());
        self.after_check_in(dev, &req);
        json(&resp)
    }

    /// Checks the check-in's device and protocol and opens its session key.
    pub(super) fn open_check_in(&self, dev: &str, req: &CheckIn) -> Result<Session, ApiError> {
        Self::same_device(dev, &req.device_id)?;
        if req.protocol != PROTOCOL_VERSION {
            return Err(ApiError::bad_request(format!(
                "protocol {} not supported (server speaks {PROTOCOL_VERSION})",
                req.protocol
            )));
        }
        // Opened with the key the phone sealed it to (the office's, or during a migration its
        // previous one): the sync's proofs are in that key's suite.
        let (suite, raw) = self
            .upload_key()?
            .open(&session_aad(dev), &req.session)
            .map_err(|e| ApiError::bad_request(format!("session key: {e}")))?;
        let raw = zeroize::Zeroizing::new(raw);
        let key = ProofKey::from_bytes(suite, &raw)
            .ok_or_else(|| ApiError::bad_request("session key must be 32 bytes"))?;
        let stored = key.to_stored();
        let alert = self.unpublished(req);
        Ok(Session { key, stored, alert })
    }

    /// A trust root or bundle the device reports that this office never published (a
    /// thief's rotation or bundle reached it): the alert's text. Digests of what was published
    /// are read once per version and kept.
    fn unpublished(&self, req: &CheckIn) -> Option<String> {
        let root = req.trust_root_digest.as_deref().and_then(|d| {
            let published = self.published_digest(Published::Root, req.trust_root_version)?;
            (published.as_deref() != Some(d)).then(|| {
                format!(
                    "reports trust root v{} that the office never published: rotated by someone else (push the office's root through managed configuration)",
                    req.trust_root_version
                )
            })
        });
        let bundle = req.policy.as_ref().and_then(|p| {
            let published = self.published_digest(Published::Bundle, p.version)?;
            (published.as_deref() != Some(p.digest.as_str())).then(|| {
                format!(
                    "reports policy {} v{} that the office never published",
                    p.id, p.version
                )
            })
        });
        root.or(bundle)
    }

    /// The digest of the root or bundle the office published at `version` (`Some(None)`: none
    /// was); `None` when the database could not say (no alert then).
    fn published_digest(&self, what: Published, version: u64) -> Option<Option<String>> {
        if let Some(d) = self
            .published
            .lock()
            .ok()
            .and_then(|m| m.get(&(what, version)).cloned())
        {
            return Some(Some(d));
        }
        let v = i64::try_from(version).ok()?;
        let sql = match what {
            Published::Root => "SELECT envelope FROM trust_roots WHERE version = $1",
            Published::Bundle => "SELECT digest FROM bundles WHERE version = $1",
        };
        let rows = self
            .db
            .tx(|c| Ok(c.query(sql, &[v.into()])?))
            .map_err(|e: ApiError| log::warn!("published digest: {}", e.message))
            .ok()?;
        let Some(value) = rows.first().and_then(|r| text(r, 0)) else {
            return Some(None);
        };
        let digest = match what {
            Published::Root => TrustRoot::claimed_digest(value.as_bytes()).ok()?,
            Published::Bundle => value,
        };
        if let Ok(mut m) = self.published.lock() {
            m.insert((what, version), digest.clone());
        }
        Some(Some(digest))
    }

    /// Zones only the phone sees: its posture goes to the MDM when the MDM applies it. A
    /// failure here never fails the sync (the command is retried).
    pub(super) fn after_check_in(&self, dev: &str, req: &CheckIn) {
        if let Err(e) = self.mdm_on_check_in(dev, &req.posture) {
            log::warn!("mdm after check-in of {dev}: {}", e.message);
        }
    }
}

/// The check-in's writes (into `update`) and its answer without its proof, from the device
/// row and what waits for it as the claim read them.
#[allow(clippy::too_many_arguments, reason = "the stage's inputs, each named")]
pub(super) fn record_check_in(
    c: &mut dyn Conn,
    dev: &str,
    req: &CheckIn,
    row: &DeviceRow,
    waiting: Waiting,
    session: &Session,
    now: Timestamp,
    update: &mut DeviceUpdate,
) -> Result<CheckInResponse, ApiError> {
    let alert = chain_alert(
        req,
        row.acked_through,
        row.head_seq,
        &row.head_tag,
        row.generation,
    )?
    .or_else(|| session.alert.clone());
    if let Some(a) = &alert {
        log::warn!("device {dev}: {a}");
        crate::alerts::raise(c, dev, crate::alerts::Kind::Chain, a, now.0)?;
    }
    update.set("last_check_in", now.0);
    update.set("agent_version", req.agent_version.clone());
    update.set(
        "posture",
        serde_json::to_string(&req.posture).unwrap_or_default(),
    );
    update.set("fail_closed", req.fail_closed.clone());
    update.set("clock_skew_ms", req.device_time.0 - now.0);
    update.set_unless_null("alert", alert);
    update.set("session_key", session.stored.to_string());
    // Bounded like the device bounds it: the report is the phone's word, hostile or not.
    update.set_unless_null(
        "applied",
        req.applied
            .as_ref()
            .map(|a| serde_json::to_string(&a.clone().bounded()).unwrap_or_default()),
    );
    if let Some(a) = &req.applied {
        update.set("applied_ok", i64::from(a.compliant()));
    }
    set_reported_state(update, req.policy.as_ref(), &req.chain)?;
    // The log checkpoint the phone carries, kept for the auditor when it is larger than the
    // one kept (most check-ins write nothing for it). The phone's word: bounded and only
    // parsed here; the auditor verifies its signature and that the log holds it.
    if let Some(note) = &req.log_checkpoint
        && let Some(size) =
            baomi_core::sync::ledger::log_note_size(note).and_then(|s| i64::try_from(s).ok())
        && row.log_seen_size.is_none_or(|kept| size > kept)
    {
        update.set("log_seen", note.clone());
        update.set("log_seen_size", size);
        update.set("log_seen_at", now.0);
    }
    let bundle = waiting.bundle.filter(|b| {
        req.policy
            .as_ref()
            .is_none_or(|p| p.version < b.version || p.id != b.id)
    });
    if row.retired {
        // Nothing more for a retired device: the proven answer tells it to stop.
        return Ok(CheckInResponse {
            server_time: now,
            acked_through: u(row.acked_through),
            acked_tag: row.acked_tag.clone(),
            bundle: None,
            trust_root_version: req.trust_root_version,
            custody_pending: false,
            retired: true,
            log_checkpoint: None,
            proof: String::new(),
        });
    }
    Ok(CheckInResponse {
        server_time: now,
        acked_through: u(row.acked_through),
        acked_tag: row.acked_tag.clone(),
        bundle,
        trust_root_version: waiting.trust_root_version,
        custody_pending: waiting.custody_pending,
        retired: false,
        log_checkpoint: None,
        proof: String::new(),
    })
}

/// The installed policy and the chain as the device reports them (check-in and finish).
pub(super) fn set_reported_state(
    update: &mut DeviceUpdate,
    policy: Option<&PolicyState>,
    chain: &ChainState,
) -> Result<(), ApiError> {
    update.set("policy_id", policy.map(|p| p.id.clone()));
    update.set("policy_version", policy.map(|p| p.version as i64));
    update.set("policy_digest", policy.map(|p| p.digest.clone()));
    update.set("head_seq", seq_i64(chain.head_seq)?);
    update.set("head_tag", chain.head_tag.clone());
    update.set("generation", seq_i64(chain.generation)?);
    Ok(())
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
