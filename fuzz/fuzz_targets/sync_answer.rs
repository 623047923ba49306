//! The device's side of a sync against a server whose every answer is the fuzz input: the
//! decoders, the proof checks and everything after them. Nothing may panic, and nothing may
//! be deleted without a valid receipt (the input cannot make one).
#![no_main]

use std::sync::{Mutex, OnceLock};

use baomi_core::agent::{Agent, enroll, sync_now};
use baomi_core::compile::Platform;
use baomi_core::event::Event;
use baomi_core::store::{HostFileKeyProvider, StoreOptions};
use baomi_core::sync::{HttpRequest, HttpResponse, Transport, TransportError};
use baomi_core::time::Timestamp;
use libfuzzer_sys::fuzz_target;

struct Answer(Vec<u8>);
impl Transport for Answer {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        if req.path == "/v1/enroll" {
            let r: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let body =
                serde_json::json!({"device_id": r["device_id"], "server_time": Timestamp::now()});
            return Ok(HttpResponse {
                status: 200,
                body: serde_json::to_vec(&body).unwrap_or_default(),
            });
        }
        Ok(HttpResponse {
            status: 200,
            body: self.0.clone(),
        })
    }
}

fn agent() -> &'static Mutex<Agent> {
    static A: OnceLock<Mutex<Agent>> = OnceLock::new();
    A.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("baomi-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let kek = HostFileKeyProvider::open_or_create(&dir.join("kek")).expect("key file");
        let mut a = Agent::open(
            &dir.join("store"),
            &kek,
            StoreOptions::default(),
            Platform::Android,
            Timestamp::now(),
        )
        .expect("store opens");
        let root = baomi_fuzz::trust_root();
        a.provision_trust_root(root.envelope_bytes(), Timestamp::now())
            .expect("root");
        enroll(
            &mut a,
            &Answer(vec![]),
            "http://127.0.0.1:1",
            "t",
            Platform::Android,
            Timestamp::now(),
        )
        .expect("enrol");
        let ev = Event {
            at: Timestamp::now(),
            kind: baomi_core::event::EventKind::Tamper {
                kind: "seed".into(),
            },
        };
        a.record_agent_violation(ev.at, "seed", "baomi.tamper", "evidence".into())
            .expect("record");
        Mutex::new(a)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut a) = agent().lock() else { return };
    let before = a.store().unacked_count();
    let _ = sync_now(&mut a, &Answer(data.to_vec()), Timestamp::now());
    assert!(
        a.store().unacked_count() >= before,
        "evidence deleted on a forged answer"
    );
});
