//! Push under load: 1,000 enrolled devices each hold `POST /v1/wait` open against an
//! in-process `baomi-server` on loopback (SQLite); the registry then posts 100 sign-outs, one
//! for each of 100 devices' holders, and each latency is from the post to that device's wait
//! returning `changed`. Also reports the process's CPU while the 1,000 waits sit idle.
//!
//! `cargo bench -p baomi-server --bench push`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baomi_core::bundle::trust::{KeyEntry, RoleKeys, TrustRootDoc};
use baomi_core::bundle::{SigningKey, TrustRoot, sign_bundle};
use baomi_core::level::{Classification, Clearance};
use baomi_core::policy::Policy;
use baomi_core::policy::model::HolderAssignment;
use baomi_core::sync::custody::{CustodyAction, CustodyRecordDoc, sign_custody_record};
use baomi_core::sync::http::HttpTransport;
use baomi_core::sync::protocol::{WaitRequest, WaitResponse, path};
use baomi_core::sync::{HttpRequest, Transport};
use baomi_core::time::Timestamp;
use baomi_server::Server;
use baomi_server::db::Db;
use baomi_server::http::Listener;
use baomi_server::upload_key::UploadKey;

const DEVICES: usize = 1000;
const SIGN_OUTS: usize = 100;

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = stat.rsplit(')').next().unwrap();
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("push.db").display());
    let office = SigningKey::generate().unwrap();
    let registry = SigningKey::generate().unwrap();
    let upload = UploadKey::generate().unwrap();
    let doc = TrustRootDoc {
        version: 1,
        issued_at: Timestamp::now(),
        keys: vec![KeyEntry::of(office.public())],
        threshold: 1,
        registry: Some(RoleKeys {
            keys: vec![KeyEntry::of(registry.public())],
            threshold: 1,
        }),
        suite: Default::default(),
        sm2_id: None,
        personnel: None,
        upload_key: Some(upload.public_base64()),
        expires_at: None,
        policy: None,
    };
    let server =
        Arc::new(Server::new(Db::open(&url, 1).unwrap(), Some(upload), Timestamp::now).unwrap());
    server
        .publish_trust_root(TrustRoot::sign(&doc, &[&office]).to_json().as_bytes())
        .unwrap();
    let mut policy = Policy::from_json(include_bytes!("../../policies/baseline.json")).unwrap();
    policy.holders = (0..DEVICES)
        .map(|i| HolderAssignment {
            holder: format!("holder-{i:04}"),
            clearance: Clearance::Important,
            devices: vec![format!("push-{i:04}")],
        })
        .collect();
    let now = Timestamp::now();
    let bundle = sign_bundle(&policy, 1, now, now.plus_seconds(86_400), &[&office]).unwrap();
    server.publish_bundle(bundle.to_json().as_bytes()).unwrap();
    let l = Listener::start(server.clone(), "127.0.0.1:0".parse().unwrap(), None, 2).unwrap();
    let base = format!("http://{}", l.addr().unwrap());

    let t = HttpTransport::new(&base);
    let devices = common::enroll_fleet(&server, &base, "push", DEVICES);

    // Every device holds a wait open until it hears of a change (or the listener stops).
    let answered: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; DEVICES]));
    let waiters: Vec<_> = devices
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let (base, answered) = (base.clone(), answered.clone());
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let t = HttpTransport::new(&base);
                    loop {
                        let req = WaitRequest {
                            device_id: d.device_id().into(),
                            trust_root_version: 1,
                            policy_version: 1,
                            custody_after: 0,
                            max_wait_ms: 20_000,
                        };
                        let body = serde_json::to_vec(&req).unwrap();
                        let auth = d.sign("POST", path::WAIT, &body, Timestamp::now()).unwrap();
                        let Ok(r) = t.send(&HttpRequest {
                            method: "POST".into(),
                            path: path::WAIT.into(),
                            headers: auth.headers(),
                            body,
                        }) else {
                            return;
                        };
                        if r.status != 200 {
                            return;
                        }
                        let w: WaitResponse = serde_json::from_slice(&r.body).unwrap();
                        if w.changed {
                            answered.lock().unwrap()[i] = Some(Instant::now());
                            return;
                        }
                    }
                })
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));

    // Idle: 1,000 waits open, nothing happening.
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let (c0, t0) = (cpu_ticks(), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu = (cpu_ticks() - c0) as f64 / ticks_per_s / t0.elapsed().as_secs_f64() * 100.0;

    // 100 sign-outs, 50 ms apart, through the registry endpoint.
    let mut posted = Vec::with_capacity(SIGN_OUTS);
    for k in 0..SIGN_OUTS {
        let doc = CustodyRecordDoc {
            record_id: format!("push-r-{k}"),
            holder: format!("holder-{k:04}"),
            document: format!("MIMI-{k}"),
            classification: Classification::Secret,
            action: CustodyAction::SignOut,
            at: Timestamp::now(),
        };
        let body = sign_custody_record(&doc, &[&registry])
            .unwrap()
            .to_json()
            .into_bytes();
        posted.push(Instant::now());
        common::post(&t, None, path::REGISTRY_CUSTODY, body);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut lat: Vec<Duration> = {
        let a = answered.lock().unwrap();
        (0..SIGN_OUTS)
            .map(|k| a[k].expect("every signed-out holder's device was answered") - posted[k])
            .collect()
    };
    let others = answered.lock().unwrap()[SIGN_OUTS..]
        .iter()
        .filter(|a| a.is_some())
        .count();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "push: {DEVICES} devices waiting, {SIGN_OUTS} sign-outs: post -> wait answered p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; devices woken without a record for them: {others}; process CPU with all waits idle: {idle_cpu:.1}% of one core",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
    );
    l.stop();
    for w in waiters {
        let _ = w.join();
    }
}
