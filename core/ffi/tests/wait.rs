//! The push channel over the FFI does not hold the agent: while `wait_for_change` waits on the
//! network, events are still decided.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baomi_core::bundle::trust::TrustRootDoc;
use baomi_core::bundle::{SigningKey, TrustRoot};
use baomi_core::time::Timestamp;
use baomi_ffi::platform::{HttpClient, SystemClock};
use baomi_ffi::types::{HttpHeader, HttpReply, PlatformKind};
use baomi_ffi::{BaomiAgent, BaomiError};
use common::Keys;

/// Answers enrolment; holds a wait for 600 ms, then says "changed".
#[derive(Debug)]
struct SlowServer;
impl HttpClient for SlowServer {
    fn post(
        &self,
        path: String,
        _: Vec<HttpHeader>,
        body: Vec<u8>,
    ) -> Result<HttpReply, BaomiError> {
        if path == "/v1/enroll" {
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let resp =
                serde_json::json!({"device_id": req["device_id"], "server_time": Timestamp::now()});
            return Ok(HttpReply {
                status: 200,
                body: serde_json::to_vec(&resp).unwrap(),
            });
        }
        assert_eq!(path, "/v1/wait");
        std::thread::sleep(Duration::from_millis(600));
        Ok(HttpReply {
            status: 200,
            body: br#"{"changed":true}"#.to_vec(),
        })
    }
}

#[test]
fn events_are_decided_while_the_push_channel_waits() {
    let dir = tempfile::tempdir().unwrap();
    let agent = BaomiAgent::open(
        dir.path().join("store").display().to_string(),
        Arc::new(Keys(Mutex::new(vec![]))),
        PlatformKind::Android,
        SystemClock::new(),
    )
    .unwrap();
    let key = SigningKey::generate().unwrap();
    let upload = baomi_server::upload_key::UploadKey::generate()
        .unwrap()
        .public_base64();
    let doc = TrustRootDoc::one_key(key.public(), Some(upload), Timestamp::now());
    agent
        .install_trust_root(TrustRoot::sign(&doc, &[&key]).to_json().into_bytes())
        .unwrap();
    agent
        .enroll(
            "http://127.0.0.1:9".into(),
            "tok".into(),
            Arc::new(SlowServer),
        )
        .unwrap();
    let waiting = agent.clone();
    let waiter = std::thread::spawn(move || waiting.wait_for_change(Arc::new(SlowServer), 5_000));
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    agent.posture().unwrap();
    agent.tick().unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "the agent was held by the wait: {:?}",
        started.elapsed()
    );
    assert!(waiter.join().unwrap().unwrap());
}
