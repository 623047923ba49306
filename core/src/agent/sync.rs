//! The device side of the four sync stages (docs/sync-protocol.md), driven by the agent.
//! Every function takes the time it runs at; nothing here reads the clock or touches the
//! network except through the [`Transport`].
//!
//! Nothing from the network is taken on its word. Evidence is deleted only on a receipt that
//! only the office's upload key can produce, the sync counts as successful only on a finish
//! answer proven with this sync's session key, the server's time raises the agent's clock only
//! from a proven answer, and everything downloaded is signed and verified on the device
//! ([`crate::sync::proof`]).

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::{Zeroize, Zeroizing};

use super::{Agent, AgentError, AssignmentOutcome, CustodyOutcome};
use crate::bundle::BundleError;
use crate::bundle::envelope::{ASSIGNMENT_RECORD_TYPE, Envelope};
use crate::bundle::keys::hex;
use crate::compile::Platform;
use crate::posture::Posture;
use crate::rules;
use crate::store::{StoreError, StoredViolation};
use crate::sync::assignment::verify_assignment_record;
use crate::sync::custody::verify_custody_record;
use crate::sync::identity::DeviceIdentity;
use crate::sync::ledger;
use crate::sync::proof::{Answer, ProofKey, session_aad};
use crate::sync::protocol::{
    CheckIn, DownloadRequest, DownloadResponse, EnrollRequest, EnrollResponse, ErrorBody, Finish,
    FinishResponse, MAX_BATCH_RECORDS, PROTOCOL_VERSION, SyncRequest, SyncResponse, Upload,
    UploadBatch, UploadResponse, UploadedRecord, WaitRequest, WaitResponse, path,
};
use crate::sync::schedule::random_jitter;
use crate::sync::seal::{Recipient, batch_aad, seal};
use crate::sync::{HttpRequest, Transport, TransportError, check_server_url};
use crate::time::Timestamp;

/// Agent build reported at check-in.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Device clock further than this from the server's is recorded as a violation. Below the
/// server's request window (5 minutes), so a drifting clock is reported while the device can
/// still sync; beyond the window the server answers `stale`, which is recorded too.
pub const MAX_CLOCK_SKEW_MS: i64 = 2 * 60 * 1000;

/// Id of the violation raised for a device clock that is far off or was set back.
pub const CLOCK_RULE: &str = rules::CLOCK;
/// Id of the violation raised when the server delivers something that does not verify.
pub const REJECTED_DELIVERY_RULE: &str = rules::REJECTED_DELIVERY;

/// Why a sync (or enrolment) failed. Nothing unacknowledged is ever deleted on any of them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyncError {
    /// The network failed (offline, refused, TLS), or the URL is plain HTTP off loopback:
    /// retried with backoff.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The server answered with an error.
    #[error("server refused {path}: HTTP {status} {code}: {message}")]
    Server {
        /// Path.
        path: &'static str,
        /// Status.
        status: u16,
        /// Error code from the body.
        code: String,
        /// Message from the body.
        message: String,
    },
    /// The server's answer makes no sense (malformed, or claims what cannot be true, like
    /// acknowledging records the device never sent). Nothing is acknowledged on it.
    #[error("server answer to {path} is not acceptable: {reason}")]
    Protocol {
        /// Path.
        path: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The answer does not carry a valid proof from the office's upload key: a relay or an
    /// impostor answered. Nothing is deleted and the sync does not count as successful.
    #[error(
        "the answer to {path} is not proven by the office's key (a relay or an impostor answered): nothing was deleted"
    )]
    Unproven {
        /// Path.
        path: &'static str,
    },
    /// The office's proven check-in announced a delivery (a custody record, a newer bundle, a
    /// trust-root rotation) that the download did not carry: withheld in transit. The sync
    /// fails (and is recorded); if it persists the device fails closed as when overdue.
    #[error("the office announced {what} but it did not arrive (withheld in transit)")]
    Withheld {
        /// What was missing.
        what: String,
    },
    /// Signed material from the server did not verify (rollback, bad signature, ...); it was
    /// not installed and the refusal is recorded as a violation.
    #[error("refused delivery: {0}")]
    Rejected(BundleError),
    /// The device has not enrolled.
    #[error("this device is not enrolled: run enrolment with a token first")]
    NotEnrolled,
    /// The office retired this device (its proven check-in said so): it syncs no more.
    #[error("the office retired this device: it no longer syncs; return it to the office")]
    Retired,
    /// The trust root names no upload key: violations cannot be sealed for the office and the
    /// office's answers cannot be proven.
    #[error("the trust root names no upload key: violations stay on the device")]
    NoUploadKey,
    /// The agent (store, bundle) failed, or no trust root was provisioned.
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// What a completed sync did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncReport {
    /// Records the server acknowledged in this sync.
    pub uploaded: u64,
    /// Newest acknowledged seq afterwards.
    pub acked_through: u64,
    /// Trust root version installed during the sync, if it rotated.
    pub trust_root_installed: Option<u64>,
    /// Bundle version installed during the sync.
    pub bundle_installed: Option<u64>,
    /// Custody records applied to this device's holder.
    pub custody_applied: usize,
    /// Whether a personnel assignment record for this device was applied.
    pub assignment_applied: bool,
    /// Device clock minus server clock.
    pub clock_skew_ms: i64,
    /// Posture after the sync.
    pub posture: Posture,
    /// When the next sync is due.
    pub next_due: Option<Timestamp>,
}

/// Enrols the device with a one-time token. The identity key is created on the device and
/// never leaves it; the server learns only its public half. Refused without a trust root
/// provisioned out of band: enrolment never trusts the network for the first root.
pub fn enroll(
    agent: &mut Agent,
    transport: &dyn Transport,
    server: &str,
    token: &str,
    platform: Platform,
    now: Timestamp,
) -> Result<EnrollResponse, SyncError> {
    check_server_url(server)?;
    agent.trust_root().ok_or(AgentError::NoTrustRoot)?;
    let now = agent.observe_time(now)?;
    let identity = agent.identity()?;
    let req = EnrollRequest {
        protocol: PROTOCOL_VERSION,
        token: token.to_owned(),
        device_id: identity.device_id().to_owned(),
        public_key: identity.public().to_base64(),
        proof: identity.enroll_proof(token),
        platform: platform_name(platform).into(),
        agent_version: AGENT_VERSION.into(),
    };
    let (resp, _): (EnrollResponse, _) = exchange(transport, None, path::ENROLL, &req, now)?;
    if resp.device_id != identity.device_id() {
        return Err(SyncError::Protocol {
            path: path::ENROLL,
            reason: format!(
                "enrolled `{}` instead of `{}`",
                resp.device_id,
                identity.device_id()
            ),
        });
    }
    agent.update_sync(|s| {
        s.server = Some(server.to_owned());
        s.enrolled_at = Some(now);
        s.next_due = Some(now);
    })?;
    Ok(resp)
}

/// Runs check-in, upload, download and finish. On failure the schedule backs off (with
/// jitter) and the error says which stage failed; on success the sync deadline moves.
pub fn sync_now(
    agent: &mut Agent,
    transport: &dyn Transport,
    now: Timestamp,
) -> Result<SyncReport, SyncError> {
    if agent.sync_state().enrolled_at.is_none() {
        return Err(SyncError::NotEnrolled);
    }
    if agent.sync_state().retired {
        return Err(SyncError::Retired);
    }
    // Requests carry the device's own reading, so the office sees (and refuses) a clock set
    // back; the agent acts at its high-water time.
    let reading = now;
    agent.observe_time(reading)?;
    let mut shown_log = None;
    let result = run_stages(agent, transport, reading, &mut shown_log);
    let now = agent.acting_time(reading);
    let interval = agent
        .engine()
        .map_or(900, |e| e.policy().source.sync.interval_s);
    if let Err(SyncError::Server {
        status: 401,
        code,
        message,
        ..
    }) = &result
        && code == "stale"
        && !agent.sync_state().skew_reported
    {
        agent.record_agent_violation(
            now,
            "clock_skew",
            CLOCK_RULE,
            format!(
                "the server refused the device clock ({}): {message}",
                now.to_rfc3339()
            ),
        )?;
        agent.update_sync(|s| s.skew_reported = true)?;
    }
    let jitter = random_jitter();
    agent.update_sync(|s| {
        if let Some(note) = &shown_log {
            s.carry_log_checkpoint(note);
        }
        match &result {
            Ok(_) => s.succeeded(now, interval),
            Err(SyncError::Retired) => {
                s.retired = true;
                s.next_due = None;
            }
            Err(e) => {
                log::warn!("sync failed: {e}");
                s.failed(now, interval, jitter);
            }
        }
    })?;
    // The deadline moved: the posture may reopen (or close) right now.
    agent.tick(now)?;
    result.map(|mut r| {
        r.next_due = agent.sync_state().next_due;
        r.posture = agent.posture();
        r
    })
}

/// Holds a signed long-poll open (`POST /v1/wait`, up to `max_wait_ms`, capped by the server at
/// 25 s); returns whether the server has something newer for this device (a registry
/// sign-out or return for its holder, a newer bundle, a trust-root rotation). The platform runs
/// [`sync_now`] at once on `true`, and waits again on `false`; the scheduled sync stays the
/// fallback. Nothing is installed or deleted here.
pub fn wait_for_change(
    agent: &mut Agent,
    transport: &dyn Transport,
    max_wait_ms: u32,
    now: Timestamp,
) -> Result<bool, SyncError> {
    let (identity, req) = prepare_wait(agent, max_wait_ms)?;
    send_wait(&identity, &req, transport, now)
}

/// The agent's part of a wait: who asks, and what it has. Split from [`send_wait`] so a
/// platform can hold the long-poll open without holding the agent (events keep being decided
/// while it waits).
pub fn prepare_wait(
    agent: &mut Agent,
    max_wait_ms: u32,
) -> Result<(DeviceIdentity, WaitRequest), SyncError> {
    if agent.sync_state().enrolled_at.is_none() {
        return Err(SyncError::NotEnrolled);
    }
    let identity = agent.identity()?;
    let req = WaitRequest {
        device_id: identity.device_id().to_owned(),
        trust_root_version: agent.trust_root().map_or(0, |t| t.version()),
        policy_version: agent.policy_state().map_or(0, |p| p.version),
        custody_after: agent.sync_state().custody_cursor,
        max_wait_ms,
    };
    Ok((identity, req))
}

/// The network part of a wait: sends it and returns whether to sync now.
pub fn send_wait(
    identity: &DeviceIdentity,
    req: &WaitRequest,
    transport: &dyn Transport,
    now: Timestamp,
) -> Result<bool, SyncError> {
    let (resp, _): (WaitResponse, _) = exchange(transport, Some(identity), path::WAIT, req, now)?;
    Ok(resp.changed)
}

/// Runs the stages; `shown_log` gets the log checkpoint of the proven check-in answer.
fn run_stages(
    agent: &mut Agent,
    transport: &dyn Transport,
    reading: Timestamp,
    shown_log: &mut Option<String>,
) -> Result<SyncReport, SyncError> {
    let now = agent.acting_time(reading);
    let trust = agent.trust_root().ok_or(AgentError::NoTrustRoot)?;
    let upload_key = trust.upload_recipient().ok_or(SyncError::NoUploadKey)?;
    let suite = trust.suite();
    let identity = agent.identity()?;
    let device = identity.device_id().to_owned();
    let id = Some(&identity);

    // 1. check-in, with a fresh session key only the office can open.
    let session = ProofKey::generate(suite).ok_or_else(|| random_failed(path::CHECK_IN))?;
    let sealed_session = seal(&upload_key, &session_aad(&device), session.as_bytes())
        .map_err(|e| protocol(path::CHECK_IN, e.to_string()))?;
    let check_in = CheckIn {
        protocol: PROTOCOL_VERSION,
        device_id: device.clone(),
        agent_version: AGENT_VERSION.into(),
        policy: agent.policy_state(),
        trust_root_version: agent.trust_root().map_or(0, |t| t.version()),
        trust_root_digest: agent.trust_root().map(|t| t.digest().to_owned()),
        posture: agent.posture(),
        applied: agent.sync_state().applied.clone(),
        fail_closed: agent
            .engine()
            .and_then(|e| e.fail_closed_reason(now))
            .map(|r| r.as_str().to_owned()),
        chain: agent.chain_state(),
        device_time: reading,
        custody_cursor: agent.sync_state().custody_cursor,
        session: sealed_session,
        log_checkpoint: agent.sync_state().log_checkpoint.clone(),
    };
    let acked_before = agent.store().acked_through();
    // Where this sync's uploads count from (lower when a restored office gets records again).
    let mut acked_low = acked_before;

    // The usual case in one request: the whole backlog fits in one batch.
    let mut backlog = agent.unacknowledged(MAX_BATCH_RECORDS + 1, now)?;
    let all = backlog.len();
    fit_batch(&mut backlog);
    let mut in_one = None;
    if backlog.len() == all && all <= MAX_BATCH_RECORDS {
        let batch = seal_batch(&identity, &upload_key, backlog, agent.ledger_prev(), now)?;
        let req = SyncRequest {
            check_in: check_in.clone(),
            upload: batch.as_ref().map(|b| b.upload.clone()),
            finish: finish_message(agent, &device),
        };
        let bound = batch.as_ref().map(|b| b.checkpoint);
        match exchange_bound::<_, SyncResponse>(transport, id, path::SYNC, &req, reading, bound) {
            Ok((answer, request)) => in_one = Some((answer, request, batch)),
            // A server without the one-request path: run the stages.
            Err(SyncError::Server { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let (answer, finished, request, check_in_path) = match in_one {
        Some((answer, request, batch)) => {
            // The receipt first: the check-in's acknowledgement predates the batch.
            match (&batch, &answer.upload) {
                (Some(b), Some(r)) => b.accept(agent, r, path::SYNC)?,
                // Not stored (the office holds those seqs with other records: this store was
                // restored): nothing is deleted; the check-in below says how far it holds.
                (Some(_), None) | (None, None) => {}
                (None, Some(_)) => {
                    return Err(protocol(
                        path::SYNC,
                        "the answer's receipt does not match the request's batch".into(),
                    ));
                }
            }
            (answer.check_in, answer.finish, request, path::SYNC)
        }
        None => {
            let (answer, request) = exchange(transport, id, path::CHECK_IN, &check_in, reading)?;
            (answer, None, request, path::CHECK_IN)
        }
    };
    if !session.verify(
        Answer::CheckIn,
        &device,
        &request,
        &answer.proof_bytes(),
        &answer.proof,
    ) {
        return Err(SyncError::Unproven {
            path: check_in_path,
        });
    }
    if answer.retired {
        return Err(SyncError::Retired);
    }
    // The office's log as it showed it to this phone, proven: carried (with the sync's
    // outcome, in the same write) and reported back at the next check-in.
    shown_log.clone_from(&answer.log_checkpoint);
    let skew = check_clock(agent, reading, answer.server_time)?;
    // From here the agent acts at the office-settled time; requests still carry the reading.
    let now = agent.settle_time(answer.server_time, reading);

    // The office may hold records whose acknowledgement never reached us (it was killed after
    // committing). Its proven word counts, for records this device actually has. If it holds
    // a record this device does not have at that seq (the store was restored from an older
    // copy and reused seqs), the chain continues past the office's: nothing recorded since is
    // deleted, and no seq the office holds is sent again.
    if answer.acked_through > agent.store().acked_through() {
        let office = answer.acked_through;
        let ours = if office <= agent.store().head().seq {
            agent.store().tag_at(office).map_err(AgentError::from)?
        } else {
            None
        };
        if ours.map(|t| hex(&t)).as_deref() == Some(answer.acked_tag.as_str()) {
            acknowledge(agent, check_in_path, office, &answer.acked_tag, None)?;
        } else {
            let tag = parse_tag(&answer.acked_tag);
            agent.continue_past(office, tag, now)?;
        }
    } else if answer.acked_through < acked_before {
        // The office holds fewer of this phone's records than it acknowledged before this
        // sync (its check-in answer predates a batch the same request carried): restored from
        // an older backup. What it lost goes again, from the copies this store kept.
        if agent
            .resend_to_restored_office(answer.acked_through, parse_tag(&answer.acked_tag))?
            .is_some()
        {
            acked_low = answer.acked_through;
        }
    }

    // 2. upload (what the one request did not carry)
    upload(agent, transport, &identity, &upload_key, reading)?;
    let uploaded = agent.store().acked_through().saturating_sub(acked_low);

    // 3. download
    let mut report = SyncReport {
        uploaded,
        acked_through: agent.store().acked_through(),
        trust_root_installed: None,
        bundle_installed: None,
        custody_applied: 0,
        assignment_applied: false,
        clock_skew_ms: skew,
        posture: agent.posture(),
        next_due: None,
    };
    let installed = agent.policy_state();
    let wants_bundle = answer.bundle.as_ref().is_some_and(|b| {
        installed
            .as_ref()
            .is_none_or(|i| i.version < b.version || i.id != b.id)
    });
    let trust_version = agent.trust_root().map_or(0, |t| t.version());
    let wants_download =
        wants_bundle || answer.trust_root_version > trust_version || answer.custody_pending;

    // Finished in the one request: proven, and only when nothing waited.
    if let Some(done) = finished {
        if wants_download {
            return Err(protocol(
                path::SYNC,
                "finished a sync with deliveries waiting".into(),
            ));
        }
        if !session.verify(Answer::Finish, &device, &request, b"", &done.proof) {
            return Err(SyncError::Unproven { path: path::SYNC });
        }
        return Ok(report);
    }

    let mut rejected = None;
    if wants_download {
        let mut delivered = Delivered::default();
        let result = (|| {
            let mut rejected = None;
            let mut refetched = false;
            for _ in 0..MAX_DOWNLOADS {
                let (r, more) = download(
                    agent,
                    transport,
                    &identity,
                    &session,
                    reading,
                    now,
                    &mut report,
                    &mut delivered,
                )?;
                rejected = rejected.or(r);
                // A rotation that untrusted the installed bundle resets the floor: fetch the
                // office's newest bundle now rather than run closed until the next sync.
                let untrusted = agent.installed().is_some_and(|i| !i.trusted);
                let refetch = untrusted
                    && !refetched
                    && report.bundle_installed.is_none()
                    && rejected.is_none();
                refetched |= refetch;
                if !(more || refetch) {
                    break;
                }
            }
            // What the proven check-in announced must have arrived.
            let missing = [
                (wants_bundle && !delivered.bundle, "the newer policy bundle"),
                (
                    answer.trust_root_version > trust_version && !delivered.trust_root,
                    "the trust-root rotation",
                ),
                (
                    answer.custody_pending && !delivered.custody,
                    "the custody records",
                ),
            ];
            if let Some((_, what)) = missing.iter().find(|(m, _)| *m) {
                return Err(SyncError::Withheld {
                    what: (*what).to_owned(),
                });
            }
            Ok(rejected)
        })();
        match result {
            Ok(r) => rejected = r,
            Err(e @ (SyncError::Withheld { .. } | SyncError::Unproven { .. })) => {
                record_withheld(agent, now, &e)?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    if agent.sync_state().withheld_reported {
        agent.update_sync(|s| s.withheld_reported = false)?;
    }

    // 4. finish: the sync counts only if the office proves it saw it through.
    let finish = finish_message(agent, &device);
    let (done, request): (FinishResponse, _) =
        exchange(transport, id, path::FINISH, &finish, reading)?;
    if !session.verify(Answer::Finish, &device, &request, b"", &done.proof) {
        return Err(SyncError::Unproven { path: path::FINISH });
    }
    match rejected {
        Some(e) => Err(SyncError::Rejected(e)),
        None => Ok(report),
    }
}

/// What the device reports at finish: the posture it asks of the platform now.
fn finish_message(agent: &Agent, device: &str) -> Finish {
    Finish {
        device_id: device.to_owned(),
        posture: agent.posture(),
        policy: agent.policy_state(),
        chain: agent.chain_state(),
        custody_cursor: agent.sync_state().custody_cursor,
    }
}

/// Most bytes of records (as uploaded JSON) in one batch: sealed and in base64 a batch of this
/// size stays well under the server's body limit ([`crate::sync::protocol::MAX_REQUEST_BYTES`],
/// 2 MiB) with the check-in beside it.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Cuts a batch (oldest first) to [`MAX_BATCH_BYTES`], keeping at least one record, and
/// compacts any record over [`MAX_UPLOAD_RECORD_BYTES`](crate::store::record::MAX_UPLOAD_RECORD_BYTES):
/// a backlog of large records uploads in several batches and none is stuck behind a 413.
fn fit_batch(records: &mut Vec<StoredViolation>) {
    let mut total = 0usize;
    let mut keep = 0usize;
    for r in records.iter_mut() {
        // Sized once; only a record over the limit is compacted (and sized again).
        let mut size = r.record.upload_size();
        if size > crate::store::record::MAX_UPLOAD_RECORD_BYTES
            && let Some(c) = r.record.compacted()
        {
            size = c.upload_size();
            r.record = c;
        }
        if keep > 0 && total.saturating_add(size) > MAX_BATCH_BYTES {
            break;
        }
        total = total.saturating_add(size);
        keep += 1;
    }
    records.truncate(keep);
}

/// A batch sealed for the office, with what its receipt must prove.
struct SealedBatch {
    upload: Upload,
    receipt_key: ProofKey,
    last_tag: String,
    /// Each record's public chain link, oldest first (kept with the acknowledgement).
    links: Vec<[u8; 32]>,
    /// What the device checkpoint over its last record states: signed with the request that
    /// carries the batch, one signature for both ([`DeviceIdentity::sign_with_checkpoint`]).
    checkpoint: ledger::ChainEnd,
}

impl SealedBatch {
    /// Deletes the batch on a valid receipt, and on nothing else.
    fn accept(
        &self,
        agent: &mut Agent,
        resp: &UploadResponse,
        path: &'static str,
    ) -> Result<(), SyncError> {
        let (device, first, last) = (
            &self.upload.device_id,
            self.upload.first_seq,
            self.upload.last_seq,
        );
        if !self
            .receipt_key
            .verify_receipt(device, first, last, &self.last_tag, &resp.receipt)
        {
            return Err(SyncError::Unproven { path });
        }
        acknowledge(
            agent,
            path,
            last,
            &self.last_tag,
            Some((first, &self.links)),
        )
    }
}

/// Seals records (oldest first) as one batch with a fresh receipt key, each with its public
/// link after `prev`; the device's checkpoint over the last one ([`crate::sync::ledger`]) is
/// signed with the request that carries the batch. `None` for none.
fn seal_batch(
    identity: &DeviceIdentity,
    upload_key: &Recipient,
    batch: Vec<StoredViolation>,
    prev: [u8; 32],
    now: Timestamp,
) -> Result<Option<SealedBatch>, SyncError> {
    let device = identity.device_id();
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
        return Ok(None);
    };
    let (first_seq, last_seq, last_tag) = (first.seq, last.seq, hex(&last.tag));
    let suite = upload_key.suite();
    let receipt_key = ProofKey::generate(suite).ok_or_else(|| random_failed(path::UPLOAD))?;
    let mut link = prev;
    let mut links = Vec::with_capacity(batch.len());
    let records: Vec<UploadedRecord> = batch
        .into_iter()
        .map(|v| {
            link = ledger::link_of(suite, device, v.seq, &link, &v.record);
            links.push(link);
            UploadedRecord {
                seq: v.seq,
                tag: hex(&v.tag),
                record: v.record,
                link: hex(&link),
            }
        })
        .collect();
    let mut contents = UploadBatch {
        receipt_key: receipt_key.to_base64().to_string(),
        records,
        // In the request's signature instead (one signature, not two).
        checkpoint: None,
    };
    let plain = Zeroizing::new(
        serde_json::to_vec(&contents).map_err(|e| protocol(path::UPLOAD, e.to_string()))?,
    );
    contents.receipt_key.zeroize();
    drop(contents);
    let sealed = seal(upload_key, &batch_aad(device, first_seq, last_seq), &plain)
        .map_err(|e| protocol(path::UPLOAD, e.to_string()))?;
    Ok(Some(SealedBatch {
        upload: Upload {
            device_id: device.to_owned(),
            first_seq,
            last_seq,
            sealed,
        },
        receipt_key,
        last_tag,
        links,
        checkpoint: ledger::ChainEnd {
            seq: last_seq,
            link,
            at: now,
        },
    }))
}

/// Deletes through `through` if it names a record this device has, with the tag it has.
fn acknowledge(
    agent: &mut Agent,
    path: &'static str,
    through: u64,
    tag_hex: &str,
    sealed: Option<(u64, &[[u8; 32]])>,
) -> Result<(), SyncError> {
    let head = agent.store().head().seq;
    if through > head {
        return Err(protocol(
            path,
            format!("acknowledges seq {through} but the newest record is {head}"),
        ));
    }
    match agent.acknowledge_linked(through, tag_hex, sealed) {
        Ok(_) => Ok(()),
        Err(AgentError::Store(StoreError::Integrity(_))) => Err(protocol(
            path,
            format!("acknowledges seq {through} with a tag this device's record does not have"),
        )),
        Err(e) => Err(e.into()),
    }
}

fn upload(
    agent: &mut Agent,
    transport: &dyn Transport,
    identity: &DeviceIdentity,
    upload_key: &Recipient,
    now: Timestamp,
) -> Result<(), SyncError> {
    loop {
        let mut records = agent.unacknowledged(MAX_BATCH_RECORDS, now)?;
        fit_batch(&mut records);
        let Some(batch) = seal_batch(identity, upload_key, records, agent.ledger_prev(), now)?
        else {
            return Ok(());
        };
        let (resp, _): (UploadResponse, _) = exchange_bound(
            transport,
            Some(identity),
            path::UPLOAD,
            &batch.upload,
            now,
            Some(batch.checkpoint),
        )?;
        batch.accept(agent, &resp, path::UPLOAD)?;
    }
}

/// Most download requests in one sync (custody pages and the refetch after a rotation).
const MAX_DOWNLOADS: usize = 8;

/// What the downloads of one sync carried (proven), against what the check-in announced.
#[derive(Debug, Default)]
struct Delivered {
    bundle: bool,
    trust_root: bool,
    custody: bool,
}

/// Records a withheld or altered delivery once per run of failed syncs: the sync fails (so
/// `sync_overdue` and the fail-closed posture follow if it persists), and the office learns
/// of it with the first sync that gets through.
fn record_withheld(agent: &mut Agent, now: Timestamp, e: &SyncError) -> Result<(), SyncError> {
    log::warn!("delivery withheld: {e}");
    if agent.sync_state().withheld_reported {
        return Ok(());
    }
    agent.record_agent_violation(
        now,
        "withheld_delivery",
        rules::WITHHELD,
        format!("the office's delivery did not arrive as sent: {e}"),
    )?;
    agent.update_sync(|s| s.withheld_reported = true)?;
    Ok(())
}

/// Installs what the server delivers. A delivery that does not verify is recorded and
/// returned (the rest of the sync still completes); the device keeps what it had. The answer
/// counts only with the office's proof under this sync's session key, so nothing can be
/// dropped from it in transit. Returns the first refusal and whether more custody waits.
#[allow(clippy::too_many_arguments)]
fn download(
    agent: &mut Agent,
    transport: &dyn Transport,
    identity: &DeviceIdentity,
    session: &ProofKey,
    reading: Timestamp,
    now: Timestamp,
    report: &mut SyncReport,
    delivered: &mut Delivered,
) -> Result<(Option<BundleError>, bool), SyncError> {
    let req = DownloadRequest {
        device_id: identity.device_id().to_owned(),
        trust_root_version: agent.trust_root().map_or(0, |t| t.version()),
        policy_version: agent.policy_state().map_or(0, |p| p.version),
        custody_after: agent.sync_state().custody_cursor,
    };
    let (resp, request): (DownloadResponse, _) =
        exchange(transport, Some(identity), path::DOWNLOAD, &req, reading)?;
    if !session.verify(
        Answer::Download,
        identity.device_id(),
        &request,
        &resp.proof_bytes(),
        &resp.proof,
    ) {
        return Err(SyncError::Unproven {
            path: path::DOWNLOAD,
        });
    }
    delivered.bundle |= resp.bundle.is_some();
    delivered.trust_root |= !resp.trust_roots.is_empty();
    delivered.custody |= !resp.custody.is_empty();
    let mut first_rejection = None;
    for root in &resp.trust_roots {
        // Only rotations: the first root never comes from the network.
        match agent.rotate_trust_root(root.as_bytes(), now) {
            Ok(v) => report.trust_root_installed = Some(v),
            Err(AgentError::Bundle(e)) => {
                refuse(agent, now, "trust root", &e)?;
                first_rejection.get_or_insert(e);
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(bundle) = &resp.bundle {
        match agent.install_bundle(bundle.as_bytes(), now) {
            Ok(h) => report.bundle_installed = Some(h.version),
            Err(AgentError::Bundle(e)) => {
                refuse(agent, now, "policy bundle", &e)?;
                first_rejection.get_or_insert(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Assignment records first: they decide whose custody records this phone applies (the
    // holder's sign-out may come before the phone's assignment in the feed).
    // Which entries are assignment records, read once per entry (a page holds up to 500).
    let assignment: Vec<bool> = resp
        .custody
        .iter()
        .map(|e| {
            Envelope::claimed_type(e.envelope.as_bytes()).as_deref() == Some(ASSIGNMENT_RECORD_TYPE)
        })
        .collect();
    let mut holder_changed = false;
    for (entry, _) in resp.custody.iter().zip(&assignment).filter(|(_, a)| **a) {
        let trust = agent
            .trust_root()
            .ok_or(SyncError::Agent(AgentError::NoTrustRoot))?;
        match verify_assignment_record(entry.envelope.as_bytes(), trust) {
            Ok(doc) => match agent.apply_assignment(&doc, now)? {
                AssignmentOutcome::Applied { holder_changed: h } => {
                    report.assignment_applied = true;
                    holder_changed |= h;
                }
                AssignmentOutcome::Superseded | AssignmentOutcome::NotApplicable => {}
            },
            Err(e) => {
                refuse(agent, now, "assignment record", &e)?;
                first_rejection.get_or_insert(e);
            }
        }
    }
    // The feed is routed by holder: a new holder's earlier records were never sent to this
    // phone, so it reads the feed again from its start (the agent reset the cursor).
    if holder_changed {
        return Ok((first_rejection, true));
    }
    let start = agent.sync_state().custody_cursor;
    let mut cursor = start;
    for (entry, is_assignment) in resp.custody.iter().zip(assignment) {
        if entry.cursor <= cursor {
            return Err(protocol(
                path::DOWNLOAD,
                format!(
                    "custody feed went backwards ({} after {cursor})",
                    entry.cursor
                ),
            ));
        }
        if is_assignment {
            cursor = entry.cursor;
            continue;
        }
        let trust = agent
            .trust_root()
            .ok_or(SyncError::Agent(AgentError::NoTrustRoot))?;
        let bytes = entry.envelope.as_bytes();
        match verify_custody_record(bytes, trust) {
            Ok(doc) => match agent.apply_registry_custody(&doc, now)? {
                CustodyOutcome::Applied => report.custody_applied += 1,
                CustodyOutcome::Duplicate | CustodyOutcome::Superseded => {}
                // Not for this device's holder as it knows it (its bundle is behind): keep
                // the cursor here so the record is applied once the assignment arrives.
                CustodyOutcome::NotApplicable => break,
            },
            // A forged record is evidence, not a reason to stall the feed forever.
            Err(e) => {
                refuse(agent, now, "custody record", &e)?;
                first_rejection.get_or_insert(e);
            }
        }
        cursor = entry.cursor;
    }
    let stopped_early = resp.custody.last().is_some_and(|e| e.cursor != cursor);
    if cursor != start {
        agent.update_sync(|s| s.custody_cursor = cursor)?;
    }
    Ok((first_rejection, resp.custody_more && !stopped_early))
}

/// The office's acknowledged tag as bytes (zeros when it is not 16 bytes of hex: the anchor
/// of a renumbered chain only needs to be fixed, not secret).
fn parse_tag(hex_tag: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    if hex_tag.len() == 32 {
        for (i, b) in out.iter_mut().enumerate() {
            match hex_tag
                .get(2 * i..2 * i + 2)
                .map(|h| u8::from_str_radix(h, 16))
            {
                Some(Ok(v)) => *b = v,
                _ => return [0u8; 16],
            }
        }
    }
    out
}

fn refuse(agent: &mut Agent, now: Timestamp, what: &str, e: &BundleError) -> Result<(), SyncError> {
    log::warn!("refused {what} from the server: {e}");
    agent.record_agent_violation(
        now,
        "rejected_delivery",
        REJECTED_DELIVERY_RULE,
        format!("the server delivered a {what} that was refused: {e}"),
    )?;
    Ok(())
}

/// Records a device clock far from the (proven) server's.
fn check_clock(agent: &mut Agent, now: Timestamp, server: Timestamp) -> Result<i64, SyncError> {
    let skew = now.0.saturating_sub(server.0);
    let off = skew.abs() > MAX_CLOCK_SKEW_MS;
    if off && !agent.sync_state().skew_reported {
        agent.record_agent_violation(
            now,
            "clock_skew",
            CLOCK_RULE,
            format!(
                "device clock is {} s off the server's ({})",
                skew / 1000,
                server.to_rfc3339()
            ),
        )?;
    }
    agent.update_sync(|s| s.skew_reported = off)?;
    Ok(skew)
}

fn platform_name(p: Platform) -> &'static str {
    match p {
        Platform::Android => "android",
        Platform::Ios => "ios",
    }
}

fn protocol(path: &'static str, reason: String) -> SyncError {
    SyncError::Protocol { path, reason }
}

fn random_failed(path: &'static str) -> SyncError {
    protocol(path, "the system random source failed".into())
}

/// One signed JSON exchange: serialize, sign, send, map errors, parse. Returns the answer and
/// the exact request body (answer proofs are bound to it).
fn exchange<Req: Serialize, Resp: DeserializeOwned>(
    transport: &dyn Transport,
    identity: Option<&DeviceIdentity>,
    path: &'static str,
    body: &Req,
    now: Timestamp,
) -> Result<(Resp, Vec<u8>), SyncError> {
    exchange_bound(transport, identity, path, body, now, None)
}

/// [`exchange`] of a request carrying a batch: its signature is also the batch's device
/// `checkpoint` (bound to the request).
fn exchange_bound<Req: Serialize, Resp: DeserializeOwned>(
    transport: &dyn Transport,
    identity: Option<&DeviceIdentity>,
    path: &'static str,
    body: &Req,
    now: Timestamp,
    checkpoint: Option<ledger::ChainEnd>,
) -> Result<(Resp, Vec<u8>), SyncError> {
    let body = serde_json::to_vec(body).map_err(|e| protocol(path, e.to_string()))?;
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(id) = identity {
        let auth = match checkpoint {
            None => id.sign("POST", path, &body, now),
            Some(end) => id
                .sign_with_checkpoint("POST", path, &body, now, end)
                .map(|(auth, _)| auth),
        }
        .ok_or_else(|| random_failed(path))?;
        headers.extend(auth.headers());
    }
    let req = HttpRequest {
        method: "POST".into(),
        path: path.into(),
        headers,
        body,
    };
    let resp = transport.send(&req)?;
    if !(200..300).contains(&resp.status) {
        let err: Option<ErrorBody> = serde_json::from_slice(&resp.body).ok();
        return Err(SyncError::Server {
            path,
            status: resp.status,
            code: err
                .as_ref()
                .map_or_else(|| "unknown".into(), |e| e.error.clone()),
            message: err.map_or_else(
                || {
                    String::from_utf8_lossy(&resp.body)
                        .chars()
                        .take(200)
                        .collect()
                },
                |e| e.message,
            ),
        });
    }
    let answer = serde_json::from_slice(&resp.body)
        .map_err(|e| protocol(path, format!("malformed JSON: {e}")))?;
    Ok((answer, req.body))
}
