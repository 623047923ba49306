//! MDM-applied posture: where the phone cannot apply a posture itself (iOS; an Android phone
//! whose EMM owns it), the server turns the posture into MDM commands and tracks them.
//!
//! - `profile`: the Restrictions profile and the Install/RemoveProfile commands from a posture.
//! - `connector`: the generic connector and its two implementations (NanoMDM, signed webhook).
//! - this module: the target state of each linked device, the command ledger (every command,
//!   its delivery to the MDM and the MDM's acknowledgement, with times), dispatch with backoff,
//!   and the MDM's events.
//!
//! The target comes from two paths. **Custody** does not wait for the phone: the server holds
//! the registry's feed, so a sign-out for the holder is evaluated at once by the same core
//! engine (the published policy, the holder's clearance, the holder's documents signed out now)
//! and the command is queued in the same request. **Zones**, which only the phone sees, come
//! with its check-in (the posture its core wants), used while it is newer than the last custody
//! change.

pub mod connector;
pub mod profile;

use baomi_core::compile::Platform;
use baomi_core::policy::ValidPolicy;
use baomi_core::posture::Posture;
use baomi_core::time::Timestamp;
use serde::Serialize;

use crate::api::{ApiError, Server, text};
use crate::db::{Conn, Value};
use connector::MdmConnector;
use profile::Target;

/// How far an MDM event's `created_at` may be from now.
pub const MDM_EVENT_WINDOW_MS: i64 = 10 * 60 * 1000;

/// The server's MDM side: where commands go, and the key NanoMDM signs its events with.
pub struct MdmConfig {
    /// Where commands go.
    pub connector: Box<dyn MdmConnector>,
    /// `-webhook-hmac-key` of NanoMDM; events without a valid signature are refused.
    pub event_key: Option<Vec<u8>>,
}

/// One MDM command as the officer sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CommandRow {
    /// The command's UUID (what the MDM and the device report back).
    pub command_uuid: String,
    /// Baomi device id.
    pub device_id: String,
    /// MDM enrolment id (UDID).
    pub mdm_id: String,
    /// `install_profile` or `remove_profile`.
    pub kind: String,
    /// What caused it (`custody`, `check_in`, `re_enrolled`).
    pub reason: String,
    /// `pending` (not yet handed to the MDM: not yet applied), `queued`, `acknowledged`,
    /// `error`, `not_now`, `superseded`.
    pub status: String,
    /// Attempts to hand it to the MDM.
    pub attempts: i64,
    /// The last failure, when there was one.
    pub last_error: Option<String>,
    /// Created (ms).
    pub created_at: i64,
    /// Handed to the MDM (ms).
    pub queued_at: Option<i64>,
    /// The device answered (ms).
    pub answered_at: Option<i64>,
}

const MAX_BACKOFF_MS: i64 = 300_000;

fn n(r: &[Value], i: usize) -> Option<i64> {
    r.get(i).and_then(Value::int)
}

impl Server {
    /// MDM commands waiting, by state (`pending`, `queued`, `not_now`; zero when none), for
    /// the metrics.
    pub fn mdm_queue_counts(&self) -> Result<Vec<(&'static str, i64)>, ApiError> {
        let rows = self.db().tx(|c| {
            Ok(c.query(
                "SELECT status, COUNT(*) FROM mdm_commands WHERE status IN ('pending', 'queued', 'not_now') GROUP BY status",
                &[],
            )?)
        })?;
        Ok(["pending", "queued", "not_now"]
            .into_iter()
            .map(|state| {
                let n = rows
                    .iter()
                    .find(|r| r.first().and_then(Value::text) == Some(state))
                    .and_then(|r| r.get(1).and_then(Value::int))
                    .unwrap_or(0);
                (state, n)
            })
            .collect())
    }

    /// Links a Baomi device to its MDM enrolment id (the UDID NanoMDM knows it by).
    pub fn mdm_link(&self, device_id: &str, mdm_id: &str) -> Result<(), ApiError> {
        let now = self.now();
        self.db().tx(|c| {
            if c.query("SELECT 1 FROM devices WHERE device_id = $1", &[device_id.into()])?.is_empty() {
                return Err(ApiError::conflict(format!("no enrolled device {device_id}")));
            }
            c.execute(
                "INSERT INTO mdm_links (device_id, mdm_id, linked_at) VALUES ($1, $2, $3) ON CONFLICT (device_id) DO UPDATE SET mdm_id = $2, linked_at = $3",
                &[device_id.into(), mdm_id.into(), now.0.into()],
            )?;
            c.execute(
                "INSERT INTO mdm_state (device_id) VALUES ($1) ON CONFLICT (device_id) DO NOTHING",
                &[device_id.into()],
            )?;
            Ok(())
        })?;
        self.mdm_reconcile(device_id, "linked")?;
        Ok(())
    }

    /// The command ledger, newest first, optionally for one device.
    pub fn mdm_commands(&self, device: Option<&str>) -> Result<Vec<CommandRow>, ApiError> {
        let rows = self.db().tx(|c| {
            let sql = "SELECT command_uuid, device_id, mdm_id, kind, reason, status, attempts, last_error, created_at, queued_at, answered_at FROM mdm_commands";
            Ok(match device {
                Some(d) => c.query(&format!("{sql} WHERE device_id = $1 ORDER BY ord DESC"), &[d.into()])?,
                None => c.query(&format!("{sql} ORDER BY created_at DESC, ord DESC"), &[])?,
            })
        })?;
        Ok(rows
            .iter()
            .map(|r| CommandRow {
                command_uuid: text(r, 0).unwrap_or_default(),
                device_id: text(r, 1).unwrap_or_default(),
                mdm_id: text(r, 2).unwrap_or_default(),
                kind: text(r, 3).unwrap_or_default(),
                reason: text(r, 4).unwrap_or_default(),
                status: text(r, 5).unwrap_or_default(),
                attempts: n(r, 6).unwrap_or(0),
                last_error: text(r, 7),
                created_at: n(r, 8).unwrap_or(0),
                queued_at: n(r, 9),
                answered_at: n(r, 10),
            })
            .collect())
    }

    /// A registry custody record for `holder` arrived: re-target that holder's linked devices
    /// and hand the commands to the MDM now.
    pub(crate) fn mdm_on_custody(&self, holder: &str) -> Result<(), ApiError> {
        let now = self.now();
        let devices: Vec<String> = self.db().tx(|c| {
            let rows = c.query(
                "SELECT l.device_id FROM mdm_links l JOIN device_holders h ON h.device_id = l.device_id WHERE h.holder = $1",
                &[holder.into()],
            )?;
            for r in &rows {
                c.execute(
                    "UPDATE mdm_state SET custody_changed_at = $1 WHERE device_id = $2",
                    &[now.0.into(), text(r, 0).unwrap_or_default().into()],
                )?;
            }
            Ok(rows.iter().filter_map(|r| text(r, 0)).collect())
        })?;
        for d in devices {
            self.mdm_reconcile(&d, "custody")?;
        }
        if self.mdm_config().is_some() {
            self.mdm_dispatch_due()?;
        }
        Ok(())
    }

    /// A linked device checked in with the posture its core wants (zones, which only it sees).
    pub(crate) fn mdm_on_check_in(
        &self,
        device_id: &str,
        posture: &Posture,
    ) -> Result<(), ApiError> {
        // Only a server driving an MDM looks: no extra transaction per check-in otherwise.
        if self.mdm_config().is_none() {
            return Ok(());
        }
        let now = self.now();
        let linked = self.db().tx(|c| {
            let linked = !c.query("SELECT 1 FROM mdm_links WHERE device_id = $1", &[device_id.into()])?.is_empty();
            if linked {
                c.execute(
                    "UPDATE mdm_state SET device_posture = $1, device_posture_at = $2 WHERE device_id = $3",
                    &[serde_json::to_string(posture).unwrap_or_default().into(), now.0.into(), device_id.into()],
                )?;
            }
            Ok(linked)
        })?;
        if linked {
            self.mdm_reconcile(device_id, "check_in")?;
            self.mdm_dispatch_due()?;
        }
        Ok(())
    }

    /// Compares the device's target with what was last asked of the MDM; a change becomes a
    /// new command (older ones not yet handed over are superseded). Returns its UUID.
    pub(crate) fn mdm_reconcile(
        &self,
        device_id: &str,
        reason: &str,
    ) -> Result<Option<String>, ApiError> {
        let now = self.now();
        let trust = self.trust_root()?;
        self.db().tx(|c| {
            let Some(link) = c.query(
                "SELECT l.mdm_id, s.desired, s.device_posture, s.device_posture_at, s.custody_changed_at, d.platform FROM mdm_links l JOIN mdm_state s ON s.device_id = l.device_id JOIN devices d ON d.device_id = l.device_id WHERE l.device_id = $1",
                &[device_id.into()],
            )?.first().cloned() else {
                return Ok(None);
            };
            let platform = crate::fleet::platform_of(text(&link, 5).as_deref().unwrap_or_default());
            let policy = self.newest_policy(c)?;
            let mut posture = custody_posture(
                c,
                policy.as_ref().map(|(_, p)| &**p),
                device_id,
                platform,
                trust.as_ref(),
                now,
            )?;
            if n(&link, 3).unwrap_or(0) > n(&link, 4).unwrap_or(0)
                && let Some(p) = text(&link, 2).and_then(|p| serde_json::from_str::<Posture>(&p).ok())
            {
                posture = union(&posture, &p);
            }
            let target = Target::of(&posture).map_err(|e| ApiError::internal(format!("profile: {e}")))?;
            let digest = target.digest();
            let desired = text(&link, 1);
            // Nothing was ever asked and nothing is wanted: no command.
            if desired.as_deref() == Some(digest.as_str()) || (desired.is_none() && target == Target::Open) {
                return Ok(None);
            }
            let uuid = new_uuid()?;
            let body = profile::command(&uuid, &target).map_err(|e| ApiError::internal(format!("command: {e}")))?;
            let kind = if target == Target::Open { "remove_profile" } else { "install_profile" };
            let ord = c
                .query("SELECT COALESCE(MAX(ord), 0) + 1 FROM mdm_commands WHERE device_id = $1", &[device_id.into()])?
                .first()
                .and_then(|r| n(r, 0))
                .unwrap_or(1);
            c.execute(
                "UPDATE mdm_commands SET status = 'superseded' WHERE device_id = $1 AND status = 'pending'",
                &[device_id.into()],
            )?;
            c.execute(
                "INSERT INTO mdm_commands (command_uuid, device_id, mdm_id, kind, reason, body, digest, ord, status, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9)",
                &[
                    uuid.clone().into(),
                    device_id.into(),
                    text(&link, 0).unwrap_or_default().into(),
                    kind.into(),
                    reason.into(),
                    String::from_utf8_lossy(&body).into_owned().into(),
                    digest.clone().into(),
                    ord.into(),
                    now.0.into(),
                ],
            )?;
            c.execute("UPDATE mdm_state SET desired = $1 WHERE device_id = $2", &[digest.into(), device_id.into()])?;
            log::info!("mdm: {kind} {uuid} for {device_id} ({reason})");
            Ok(Some(uuid))
        })
    }

    /// Hands every due command to the MDM, oldest first per device; a failure is retried with
    /// exponential backoff (1 s doubling to 5 min) and stays `pending`: not yet applied.
    /// Returns how many were handed over.
    pub fn mdm_dispatch_due(&self) -> Result<usize, ApiError> {
        let Some(cfg) = self.mdm_config() else {
            return Ok(0);
        };
        let now = self.now();
        let due = self.db().tx(|c| {
            Ok(c.query(
                "SELECT command_uuid, mdm_id, body, attempts FROM mdm_commands WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY device_id, ord",
                &[now.0.into()],
            )?)
        })?;
        let mut sent = 0;
        for r in due {
            let (uuid, mdm_id, body, attempts) = (
                text(&r, 0).unwrap_or_default(),
                text(&r, 1).unwrap_or_default(),
                text(&r, 2).unwrap_or_default(),
                n(&r, 3).unwrap_or(0),
            );
            // Lease it, so another process (or the retry loop) does not send it meanwhile.
            let leased = self.db().tx(|c| {
                Ok(c.execute(
                    "UPDATE mdm_commands SET next_attempt_at = $1 WHERE command_uuid = $2 AND status = 'pending' AND next_attempt_at <= $3",
                    &[now.plus_seconds(30).0.into(), uuid.clone().into(), now.0.into()],
                )? == 1)
            })?;
            if !leased {
                continue;
            }
            let result = cfg.connector.enqueue(&mdm_id, &uuid, body.as_bytes());
            let at = self.now();
            self.db().tx(|c| {
                match &result {
                    Ok(()) => c.execute(
                        "UPDATE mdm_commands SET status = 'queued', queued_at = $1, attempts = $2, last_error = NULL WHERE command_uuid = $3 AND status = 'pending'",
                        &[at.0.into(), (attempts + 1).into(), uuid.clone().into()],
                    )?,
                    Err(e) => {
                        let backoff = (1_000i64 << attempts.clamp(0, 20)).min(MAX_BACKOFF_MS);
                        c.execute(
                            "UPDATE mdm_commands SET attempts = $1, last_error = $2, next_attempt_at = $3 WHERE command_uuid = $4 AND status = 'pending'",
                            &[(attempts + 1).into(), format!("{}: {e}", cfg.connector.name()).into(), (at.0 + backoff).into(), uuid.clone().into()],
                        )?
                    }
                };
                Ok(())
            })?;
            match result {
                Ok(()) => sent += 1,
                Err(e) => log::warn!(
                    "mdm: {uuid} not handed over (attempt {}): {e}",
                    attempts + 1
                ),
            }
        }
        Ok(sent)
    }

    /// Refuses an event seen before (its `event_id`) or created outside the window
    /// ([`MDM_EVENT_WINDOW_MS`] either way of now): a captured, signed event replayed later
    /// (an `mdm.Authenticate` that re-queues commands, an acknowledgement that marks one)
    /// changes nothing. Seen ids are kept for the window only.
    fn mdm_event_fresh(&self, ev: &serde_json::Value) -> Result<(), ApiError> {
        let now = self.now();
        let id = ev
            .get("event_id")
            .and_then(|v| v.as_str())
            .filter(|id| !id.is_empty() && id.len() <= 128)
            .ok_or_else(|| ApiError::bad_request("an MDM event needs its event_id"))?;
        let created = ev
            .get("created_at")
            .and_then(|v| v.as_str())
            .and_then(|t| Timestamp::parse(t).ok())
            .ok_or_else(|| ApiError::bad_request("an MDM event needs its created_at"))?;
        if (created.0 - now.0).abs() > MDM_EVENT_WINDOW_MS {
            return Err(ApiError::new_pub(
                401,
                "stale",
                format!("MDM event created at {created}, outside the window of now"),
            ));
        }
        let fresh = self.db().tx(|c| {
            c.execute(
                "DELETE FROM mdm_events_seen WHERE at < $1",
                &[(now.0 - 2 * MDM_EVENT_WINDOW_MS).into()],
            )?;
            Ok(c.execute(
                "INSERT INTO mdm_events_seen (event_id, at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
                &[id.into(), now.0.into()],
            )? == 1)
        })?;
        if !fresh {
            return Err(ApiError::new_pub(
                401,
                "replayed",
                format!("MDM event {id} was seen before"),
            ));
        }
        Ok(())
    }

    /// NanoMDM's webhook (`POST /v1/mdm/nanomdm`): the device's answers to commands, and
    /// re-enrolments (which clear its queue, so the target is queued again).
    pub fn mdm_event(&self, headers: &[(String, String)], body: &[u8]) -> Result<(), ApiError> {
        let cfg = self.mdm_config().ok_or_else(|| {
            ApiError::new_pub(404, "not_found", "no MDM connector on this server")
        })?;
        let key = cfg
            .event_key
            .as_deref()
            .ok_or_else(|| ApiError::forbidden("MDM events need a webhook key"))?;
        let sig = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-hmac-signature"))
            .map(|(_, v)| v.as_str());
        if !connector::verify_event_signature(key, body, sig) {
            return Err(ApiError::unauthorized(
                "MDM event signature does not verify",
            ));
        }
        let ev: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("malformed event: {e}")))?;
        let topic = ev.get("topic").and_then(|v| v.as_str()).unwrap_or_default();
        self.mdm_event_fresh(&ev)?;
        if let Some(ack) = ev.get("acknowledge_event") {
            let (Some(uuid), Some(status)) = (
                ack.get("command_uuid").and_then(|v| v.as_str()),
                ack.get("status").and_then(|v| v.as_str()),
            ) else {
                return Ok(()); // An Idle poll: no command to account for.
            };
            // The enrolment that answered: an acknowledgement marks only a command sent to it.
            let Some(udid) = ack
                .get("udid")
                .or_else(|| ack.pointer("/ids/id"))
                .and_then(|v| v.as_str())
            else {
                return Err(ApiError::bad_request(
                    "an acknowledgement without the enrolment that sent it",
                ));
            };
            let new = match status {
                "Acknowledged" => "acknowledged",
                "Error" | "CommandFormatError" => "error",
                "NotNow" => "not_now",
                _ => return Ok(()),
            };
            let now = self.now();
            self.db().tx(|c| {
                c.execute(
                    "UPDATE mdm_commands SET status = $1, answered_at = $2 WHERE command_uuid = $3 AND mdm_id = $4 AND status IN ('queued', 'not_now')",
                    &[new.into(), now.0.into(), uuid.into(), udid.into()],
                )?;
                Ok(())
            })?;
            return Ok(());
        }
        if topic == "mdm.Authenticate"
            && let Some(udid) = ev.pointer("/checkin_event/udid").and_then(|v| v.as_str())
        {
            let device = self.db().tx(|c| {
                let d = c.query("SELECT device_id FROM mdm_links WHERE mdm_id = $1", &[udid.into()])?.first().and_then(|r| text(r, 0));
                if let Some(d) = &d {
                    // Authenticate cleared the device's queue at the MDM: ask again.
                    c.execute("UPDATE mdm_state SET desired = NULL WHERE device_id = $1", &[d.clone().into()])?;
                    c.execute("UPDATE mdm_commands SET status = 'superseded' WHERE device_id = $1 AND status IN ('pending', 'queued', 'not_now')", &[d.clone().into()])?;
                }
                Ok(d)
            })?;
            if let Some(d) = device {
                self.mdm_reconcile(&d, "re_enrolled")?;
                self.mdm_dispatch_due()?;
            }
        }
        Ok(())
    }
}

/// The posture the core derives for the device from what the server knows (`crate::fleet`)
/// under the newest published policy; open before any policy.
fn custody_posture(
    c: &mut dyn Conn,
    policy: Option<&ValidPolicy>,
    device_id: &str,
    platform: Platform,
    trust: Option<&baomi_core::bundle::TrustRoot>,
    now: Timestamp,
) -> Result<Posture, ApiError> {
    let Some(policy) = policy else {
        return Ok(Posture::open());
    };
    let custody = match (policy.holder_for_device(device_id), trust) {
        (Some(h), Some(trust)) => crate::fleet::signed_out(c, &h.holder, trust)?,
        _ => Vec::new(),
    };
    Ok(crate::fleet::posture_under(
        policy, device_id, platform, &custody, now,
    ))
}

fn union(a: &Posture, b: &Posture) -> Posture {
    let mut blocked: Vec<_> = a
        .blocked_packages
        .iter()
        .chain(&b.blocked_packages)
        .cloned()
        .collect();
    blocked.sort();
    blocked.dedup();
    Posture {
        camera_disabled: a.camera_disabled || b.camera_disabled,
        screen_capture_disabled: a.screen_capture_disabled || b.screen_capture_disabled,
        blocked_packages: blocked,
    }
}

/// A random (v4) UUID in upper case, as MDMs write them.
fn new_uuid() -> Result<String, ApiError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ApiError::internal("no randomness"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(profile::uuid_text(&b))
}
