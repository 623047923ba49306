//! Issue 20, item 11: the MDM webhook. One captured signed `mdm.Authenticate` was accepted 20
//! times (20 more commands to NanoMDM), and replayed just before the phone's acknowledgement
//! it erased the camera-off confirmation; a signed acknowledgement from one enrolment marked
//! another device's command. Now events are refused when seen before (`event_id`) or outside
//! a 10-minute window (`created_at`), and an acknowledgement marks only a command sent to the
//! enrolment that reports it. The connector here records what it is asked to queue (the
//! NanoMDM path itself is `server/tests/mdm.rs`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use baomi_core::time::Timestamp;
use baomi_server::Server;
use baomi_server::db::Db;
use baomi_server::mdm::MdmConfig;
use baomi_server::mdm::connector::{ConnectorError, MdmConnector};
use base64::Engine as _;

const KEY: &[u8] = b"webhook key of the test";

struct Counting(Arc<AtomicUsize>);
impl MdmConnector for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn enqueue(&self, _: &str, _: &str, _: &[u8]) -> Result<(), ConnectorError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn signed(s: &Server, event: &serde_json::Value) -> u16 {
    let body = serde_json::to_vec(event).unwrap();
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, KEY), &body);
    let sig = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    match s.mdm_event(&[("X-Hmac-Signature".into(), sig)], &body) {
        Ok(()) => 200,
        Err(e) => e.status,
    }
}

fn status(s: &Server, uuid: &str) -> String {
    s.mdm_commands(None)
        .unwrap()
        .into_iter()
        .find(|c| c.command_uuid == uuid)
        .unwrap()
        .status
}

#[test]
fn mdm_events_are_bound_to_their_enrolment_and_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("s.db").display());
    let queued = Arc::new(AtomicUsize::new(0));
    let s = Server::new(Db::open(&url, 2).unwrap(), None, Timestamp::now)
        .unwrap()
        .with_mdm(MdmConfig {
            connector: Box::new(Counting(queued.clone())),
            event_key: Some(KEY.to_vec()),
        });
    s.db()
        .tx(|c| {
            for d in ["d1", "d2"] {
                c.execute(
                    "INSERT INTO devices (device_id, public_key, platform, agent_version, enrolled_at) VALUES ($1, 'k', 'ios', 't', 0)",
                    &[d.into()],
                )?;
            }
            for (uuid, d, udid) in [("C1", "d1", "UDID-1"), ("C2", "d2", "UDID-2")] {
                c.execute(
                    "INSERT INTO mdm_commands (command_uuid, device_id, mdm_id, kind, reason, body, digest, ord, status, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, 'install_profile', 'custody', '', '', 1, 'queued', 1, 0, 0)",
                    &[uuid.into(), d.into(), udid.into()],
                )?;
            }
            Ok(())
        })
        .unwrap();
    s.mdm_link("d1", "UDID-1").unwrap();
    s.mdm_link("d2", "UDID-2").unwrap();
    let now = Timestamp::now().to_rfc3339();
    let ack = |id: &str, udid: &str, uuid: &str| {
        serde_json::json!({"topic": "mdm.Connect", "event_id": id, "created_at": now,
            "acknowledge_event": {"udid": udid, "status": "Acknowledged", "command_uuid": uuid,
                "ids": {"id": udid, "type": "Device"}}})
    };
    // Another enrolment's signed acknowledgement marks nothing.
    assert_eq!(signed(&s, &ack("e1", "UDID-2", "C1")), 200);
    assert_eq!(status(&s, "C1"), "queued");
    // Its own does.
    assert_eq!(signed(&s, &ack("e2", "UDID-1", "C1")), 200);
    assert_eq!(status(&s, "C1"), "acknowledged");
    // A captured Authenticate, replayed: taken once.
    let auth = serde_json::json!({"topic": "mdm.Authenticate", "event_id": "e3", "created_at": now,
        "checkin_event": {"udid": "UDID-2", "ids": {"id": "UDID-2", "type": "Device"}}});
    assert_eq!(signed(&s, &auth), 200);
    let after_first = queued.load(Ordering::SeqCst);
    for _ in 0..20 {
        assert_eq!(signed(&s, &auth), 401);
    }
    assert_eq!(queued.load(Ordering::SeqCst), after_first);
    // An event from an hour ago is refused whatever its id.
    let old = serde_json::json!({"topic": "mdm.Authenticate", "event_id": "e4",
        "created_at": Timestamp::now().plus_seconds(-3_600).to_rfc3339(),
        "checkin_event": {"udid": "UDID-2"}});
    assert_eq!(signed(&s, &old), 401);
    // And one without an id cannot be told from its replay: refused.
    let anonymous = serde_json::json!({"topic": "mdm.Authenticate", "created_at": now,
        "checkin_event": {"udid": "UDID-2"}});
    assert_eq!(signed(&s, &anonymous), 400);
}
