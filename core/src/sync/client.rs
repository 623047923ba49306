//! The device side of the four stages. Every function takes the time it runs at; nothing here
//! reads the clock or touches the network except through the [`Transport`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::custody::verify_custody_record;
use super::identity::DeviceIdentity;
use super::protocol::{
    ChainState, CheckIn, CheckInResponse, DownloadRequest, DownloadResponse, EnrollRequest,
    EnrollResponse, ErrorBody, Finish, MAX_BATCH_RECORDS, PROTOCOL_VERSION, PolicyState, Upload,
    UploadResponse, UploadedRecord, path,
};
use super::schedule::random_jitter;
use super::seal::{batch_aad, seal};
use super::transport::{HttpRequest, Transport, TransportError};
use crate::agent::{Agent, AgentError};
use crate::bundle::BundleError;
use crate::compile::Platform;
use crate::posture::Posture;
use crate::time::Timestamp;

/// Agent build reported at check-in.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Device clock further than this from the server's is recorded as a violation. Below the
/// server's request window (5 minutes), so a drifting clock is reported while the device can
/// still sync; beyond the window the server answers `stale`, which is recorded too.
pub const MAX_CLOCK_SKEW_MS: i64 = 2 * 60 * 1000;

/// Id of the violation raised for a device clock that is far off or was set back.
pub const CLOCK_RULE: &str = "baomi.clock";
/// Id of the violation raised when the server delivers something that does not verify.
pub const REJECTED_DELIVERY_RULE: &str = "baomi.rejected_delivery";

/// Why a sync (or enrolment) failed. Nothing unacknowledged is ever deleted on any of them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyncError {
    /// The network failed (offline, refused, TLS): retried with backoff.
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
    /// Signed material from the server did not verify (rollback, bad signature, ...); it was
    /// not installed and the refusal is recorded as a violation.
    #[error("refused delivery: {0}")]
    Rejected(BundleError),
    /// The device has not enrolled.
    #[error("this device is not enrolled: run enrolment with a token first")]
    NotEnrolled,
    /// The trust root names no upload key, so violations cannot be sealed for the office.
    #[error("the trust root names no upload key: violations stay on the device")]
    NoUploadKey,
    /// The agent (store, bundle) failed.
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
    /// Device clock minus server clock.
    pub clock_skew_ms: i64,
    /// Posture after the sync.
    pub posture: Posture,
    /// When the next sync is due.
    pub next_due: Option<Timestamp>,
}

/// Enrols the device with a one-time token. The identity key is created on the device and
/// never leaves it; the server learns only its public half.
pub fn enroll(
    agent: &mut Agent,
    transport: &dyn Transport,
    server: &str,
    token: &str,
    platform: Platform,
    now: Timestamp,
) -> Result<EnrollResponse, SyncError> {
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
    let resp: EnrollResponse = exchange(transport, None, path::ENROLL, &req, now)?;
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
    let mut state = agent.sync_state().clone();
    state.server = Some(server.to_owned());
    state.enrolled_at = Some(now);
    state.next_due = Some(now);
    agent.set_sync_state(state)?;
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
    let result = run_stages(agent, transport, now);
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
        let mut s = agent.sync_state().clone();
        s.skew_reported = true;
        agent.set_sync_state(s)?;
    }
    let mut state = agent.sync_state().clone();
    match &result {
        Ok(_) => state.succeeded(now, interval),
        Err(e) => {
            log::warn!("sync failed: {e}");
            state.failed(now, interval, random_jitter());
        }
    }
    agent.set_sync_state(state)?;
    // The deadline moved: the posture may reopen (or close) right now.
    agent.tick(now)?;
    result.map(|mut r| {
        r.next_due = agent.sync_state().next_due;
        r.posture = agent.posture();
        r
    })
}

fn run_stages(
    agent: &mut Agent,
    transport: &dyn Transport,
    now: Timestamp,
) -> Result<SyncReport, SyncError> {
    let identity = agent.identity()?;
    let id = Some(&identity);
    check_set_back(agent, now)?;

    // 1. check-in
    let check_in = CheckIn {
        protocol: PROTOCOL_VERSION,
        device_id: identity.device_id().to_owned(),
        agent_version: AGENT_VERSION.into(),
        policy: policy_state(agent),
        trust_root_version: agent.trust_root().map_or(0, |t| t.version()),
        posture: agent.posture(),
        fail_closed: agent
            .engine()
            .and_then(|e| e.fail_closed_reason(now))
            .map(|r| r.as_str().to_owned()),
        chain: chain_state(agent),
        device_time: now,
        custody_cursor: agent.sync_state().custody_cursor,
    };
    let answer: CheckInResponse = exchange(transport, id, path::CHECK_IN, &check_in, now)?;
    let skew = check_clock(agent, now, answer.server_time)?;

    // The server may hold records whose acknowledgement never reached us (it was killed after
    // committing): accept its word up to our own head, never beyond.
    let head = agent.store().head().seq;
    if answer.acked_through > head {
        return Err(SyncError::Protocol {
            path: path::CHECK_IN,
            reason: format!(
                "acknowledges seq {} but the newest record is {head}",
                answer.acked_through
            ),
        });
    }
    let acked_before = agent.store().acked_through();
    if answer.acked_through > acked_before {
        agent
            .store_mut()
            .acknowledge(answer.acked_through)
            .map_err(AgentError::from)?;
    }

    // 2. upload
    upload(agent, transport, &identity, now)?;
    let uploaded = agent.store().acked_through().saturating_sub(acked_before);

    // 3. download
    let mut report = SyncReport {
        uploaded,
        acked_through: agent.store().acked_through(),
        trust_root_installed: None,
        bundle_installed: None,
        custody_applied: 0,
        clock_skew_ms: skew,
        posture: agent.posture(),
        next_due: None,
    };
    let installed = policy_state(agent);
    let wants_bundle = answer.bundle.as_ref().is_some_and(|b| {
        installed
            .as_ref()
            .is_none_or(|i| i.version < b.version || i.id != b.id)
    });
    let trust_version = agent.trust_root().map_or(0, |t| t.version());
    let rejected =
        if wants_bundle || answer.trust_root_version > trust_version || answer.custody_pending {
            download(agent, transport, &identity, now, &mut report)?
        } else {
            None
        };

    // 4. finish
    let finish = Finish {
        device_id: identity.device_id().to_owned(),
        posture: agent.posture(),
        policy: policy_state(agent),
        chain: chain_state(agent),
        custody_cursor: agent.sync_state().custody_cursor,
    };
    let _: serde_json::Value = exchange(transport, id, path::FINISH, &finish, now)?;
    match rejected {
        Some(e) => Err(SyncError::Rejected(e)),
        None => Ok(report),
    }
}

fn upload(
    agent: &mut Agent,
    transport: &dyn Transport,
    identity: &DeviceIdentity,
    now: Timestamp,
) -> Result<(), SyncError> {
    loop {
        let after = agent.store().acked_through();
        let batch = agent
            .store()
            .records_after(after, MAX_BATCH_RECORDS)
            .map_err(AgentError::from)?;
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(());
        };
        let (first_seq, last_seq) = (first.seq, last.seq);
        let recipient = agent
            .trust_root()
            .and_then(|t| t.upload_key())
            .ok_or(SyncError::NoUploadKey)?;
        let records: Vec<UploadedRecord> = batch
            .into_iter()
            .map(|v| UploadedRecord {
                seq: v.seq,
                record: v.record,
            })
            .collect();
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&records).map_err(|e| {
            SyncError::Protocol {
                path: path::UPLOAD,
                reason: e.to_string(),
            }
        })?);
        drop(records);
        let sealed = seal(
            &recipient,
            &batch_aad(identity.device_id(), first_seq, last_seq),
            &plain,
        )
        .map_err(|e| SyncError::Protocol {
            path: path::UPLOAD,
            reason: e.to_string(),
        })?;
        let req = Upload {
            device_id: identity.device_id().to_owned(),
            first_seq,
            last_seq,
            sealed,
        };
        let resp: UploadResponse = exchange(transport, Some(identity), path::UPLOAD, &req, now)?;
        if resp.acked_through > last_seq || resp.acked_through <= after {
            return Err(SyncError::Protocol {
                path: path::UPLOAD,
                reason: format!(
                    "acknowledged seq {} for a batch of {first_seq}..={last_seq} (already acknowledged: {after})",
                    resp.acked_through
                ),
            });
        }
        agent
            .store_mut()
            .acknowledge(resp.acked_through)
            .map_err(AgentError::from)?;
    }
}

/// Installs what the server delivers. A delivery that does not verify is recorded and
/// returned (the rest of the sync still completes); the device keeps what it had.
fn download(
    agent: &mut Agent,
    transport: &dyn Transport,
    identity: &DeviceIdentity,
    now: Timestamp,
    report: &mut SyncReport,
) -> Result<Option<BundleError>, SyncError> {
    let req = DownloadRequest {
        device_id: identity.device_id().to_owned(),
        trust_root_version: agent.trust_root().map_or(0, |t| t.version()),
        policy_version: policy_state(agent).map_or(0, |p| p.version),
        custody_after: agent.sync_state().custody_cursor,
    };
    let resp: DownloadResponse = exchange(transport, Some(identity), path::DOWNLOAD, &req, now)?;
    let mut first_rejection = None;
    for root in &resp.trust_roots {
        match agent.install_trust_root(root.as_bytes()) {
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
    let mut cursor = agent.sync_state().custody_cursor;
    for entry in &resp.custody {
        if entry.cursor <= cursor {
            return Err(SyncError::Protocol {
                path: path::DOWNLOAD,
                reason: format!(
                    "custody feed went backwards ({} after {cursor})",
                    entry.cursor
                ),
            });
        }
        let verified = agent
            .trust_root()
            .ok_or(SyncError::Agent(AgentError::NoTrustRoot))
            .map(|t| verify_custody_record(entry.envelope.as_bytes(), t))?;
        match verified {
            Ok(doc) => {
                if agent.apply_registry_custody(&doc, now)? {
                    report.custody_applied += 1;
                }
            }
            // A forged record is evidence, not a reason to stall the feed forever.
            Err(e) => {
                refuse(agent, now, "custody record", &e)?;
                first_rejection.get_or_insert(e);
            }
        }
        cursor = entry.cursor;
    }
    let mut state = agent.sync_state().clone();
    state.custody_cursor = cursor;
    agent.set_sync_state(state)?;
    Ok(first_rejection)
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

/// Records a device clock that reads earlier than at the last check-in: set back by hand
/// (to escape a time window or a policy expiry) or reset. Local, so it is recorded even when
/// the server refuses the time.
fn check_set_back(agent: &mut Agent, now: Timestamp) -> Result<(), SyncError> {
    let mut state = agent.sync_state().clone();
    if let Some(last) = state.last_device_time
        && now.0 < last.0.saturating_sub(MAX_CLOCK_SKEW_MS)
    {
        agent.record_agent_violation(
            now,
            "clock_set_back",
            CLOCK_RULE,
            format!(
                "device clock reads {} but an earlier sync saw {}",
                now.to_rfc3339(),
                last.to_rfc3339()
            ),
        )?;
        // Report once; the next check compares against the new reading.
        state.last_device_time = Some(now);
        agent.set_sync_state(state)?;
    }
    Ok(())
}

/// Records a device clock far from the server's.
fn check_clock(agent: &mut Agent, now: Timestamp, server: Timestamp) -> Result<i64, SyncError> {
    let skew = now.0.saturating_sub(server.0);
    let mut state = agent.sync_state().clone();
    if skew.abs() > MAX_CLOCK_SKEW_MS {
        if !state.skew_reported {
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
            state.skew_reported = true;
        }
    } else {
        state.skew_reported = false;
    }
    state.last_device_time = Some(now);
    agent.set_sync_state(state)?;
    Ok(skew)
}

fn policy_state(agent: &Agent) -> Option<PolicyState> {
    agent
        .installed()
        .filter(|(h, _)| h.version > 0)
        .map(|(h, digest)| PolicyState {
            id: h.policy_id.clone(),
            version: h.version,
            digest: digest.clone(),
        })
}

fn chain_state(agent: &Agent) -> ChainState {
    let head = agent.store().head();
    ChainState {
        acked_through: agent.store().acked_through(),
        head_seq: head.seq,
        head_tag: head.tag_hex(),
    }
}

fn platform_name(p: Platform) -> &'static str {
    match p {
        Platform::Android => "android",
        Platform::Ios => "ios",
    }
}

/// One signed JSON exchange: serialize, sign, send, map errors, parse.
fn exchange<Req: Serialize, Resp: DeserializeOwned>(
    transport: &dyn Transport,
    identity: Option<&DeviceIdentity>,
    path: &'static str,
    body: &Req,
    now: Timestamp,
) -> Result<Resp, SyncError> {
    let proto = |reason: String| SyncError::Protocol { path, reason };
    let body = serde_json::to_vec(body).map_err(|e| proto(e.to_string()))?;
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(id) = identity {
        let auth = id
            .sign("POST", path, &body, now)
            .ok_or_else(|| proto("random source failed".into()))?;
        headers.extend(auth.headers());
    }
    let resp = transport.send(&HttpRequest {
        method: "POST".into(),
        path: path.into(),
        headers,
        body,
    })?;
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
    serde_json::from_slice(&resp.body).map_err(|e| proto(format!("malformed JSON: {e}")))
}
