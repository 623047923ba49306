//! Decision latency, posture recompute, bundle verify + compile and cold start, against Cedar
//! (`cedar-policy`) evaluating the same rules for the same requests in the same run.
//!
//! `cargo bench -p baomi-scenarios --features cedar --bench decision` (docs/BENCHMARKS.md;
//! `docs/plot.py` draws decision latency vs policy size from criterion's output). Cedar is an
//! optional dependency behind that feature, not a dev-dependency: as one, it switched
//! serde_json's maps to insertion order in every test build of the workspace.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark setup"
)]

use std::hint::black_box;
use std::sync::Arc;

use baomi_core::Engine;
use baomi_core::agent::Agent;
use baomi_core::bundle::trust::{KeyEntry, TrustRootDoc};
use baomi_core::bundle::{Envelope, Installed, SigningKey, TrustRoot, sign_bundle, verify_bundle};
use baomi_core::compile::{CompiledPolicy, Platform};
use baomi_core::event::Event;
use baomi_core::level::Clearance;
use baomi_core::policy::Policy;
use baomi_core::policy::model::HolderAssignment;
use baomi_core::store::{HostFileKeyProvider, StoreOptions};
use baomi_core::time::Timestamp;
use baomi_scenarios::generated::{
    CEDAR_BASELINE, GENERATED_BEACON_UUID, cedar_baseline_entities, cedar_entities, cedar_policies,
    package, policy_json, shape,
};
use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const AT: &str = "2026-11-27T10:00:00+08:00";

fn ev(json: &str) -> Event {
    Event::from_json_line(1, json).unwrap()
}

/// An event at `AT + s` seconds; `rest` is the JSON after `"at"`.
fn evt(s: u32, rest: &str) -> Event {
    ev(&format!(r#"{{"at":"{}",{rest}}}"#, t(s)))
}

fn t(s: u32) -> String {
    Timestamp::parse(AT)
        .unwrap()
        .plus_seconds(i64::from(s))
        .to_rfc3339()
}

/// An engine inside `zone` (NFC check-in) holding a secret document.
fn engine(policy: Policy, check_in: &str) -> Engine {
    let compiled = Arc::new(CompiledPolicy::compile(policy, Platform::Android).unwrap());
    let mut e = Engine::new(
        compiled,
        Clearance::Important,
        Timestamp::parse(AT).unwrap(),
    );
    e.handle(&evt(0, &format!(r#""type":"nfc_tag","tag":"{check_in}""#)));
    e.handle(&evt(
        1,
        r#""type":"custody_started","document":"D-1","classification":"secret""#,
    ));
    e
}

struct Cedar {
    policies: PolicySet,
    entities: Entities,
    authorizer: Authorizer,
}

impl Cedar {
    fn new(policies: &str, entities: &str) -> Self {
        Self {
            policies: policies.parse().unwrap(),
            entities: Entities::from_json_str(entities, None).unwrap(),
            authorizer: Authorizer::new(),
        }
    }
    fn request(action: &str, app: &str, zones: &[String], custody: i64) -> Request {
        let uid = |s: String| s.parse::<EntityUid>().unwrap();
        Request::new(
            uid(r#"User::"holder""#.into()),
            uid(format!(r#"Action::"{action}""#)),
            uid(format!(r#"App::"{app}""#)),
            Context::from_json_value(
                serde_json::json!({"zones": zones, "custody": custody}),
                None,
            )
            .unwrap(),
            None,
        )
        .unwrap()
    }
    fn deny(&self, r: &Request) -> bool {
        self.authorizer
            .is_authorized(r, &self.policies, &self.entities)
            .decision()
            == cedar_policy::Decision::Deny
    }
}

fn baseline_policy() -> Policy {
    baomi_scenarios::baseline().unwrap()
}

fn decision(c: &mut Criterion) {
    // Every event type on the baseline, inside the secrets office with a secret in custody.
    let mut g = c.benchmark_group("decision/baseline");
    let mut e = engine(baseline_policy(), "baomi:secrets-office:in");
    let events: Vec<(&str, Event)> = vec![
        (
            "app_launched/banned",
            evt(10, r#""type":"app_launched","package":"com.tencent.mm""#),
        ),
        (
            "app_launched/allowed",
            evt(
                10,
                r#""type":"app_launched","package":"com.android.calculator2""#,
            ),
        ),
        (
            "camera_opened",
            evt(
                10,
                r#""type":"camera_opened","package":"com.android.camera""#,
            ),
        ),
        (
            "photo_captured",
            evt(
                10,
                r#""type":"photo_captured","package":"com.android.camera""#,
            ),
        ),
        (
            "screen_captured",
            evt(
                10,
                r#""type":"screen_captured","package":"com.android.systemui""#,
            ),
        ),
        (
            "share",
            evt(
                10,
                r#""type":"share","from_package":"com.android.gallery3d","to_package":"com.tencent.mm","mime":"image/jpeg""#,
            ),
        ),
        (
            "app_installed",
            evt(
                10,
                r#""type":"app_installed","package":"com.example.notes""#,
            ),
        ),
        (
            "beacon_seen/same_zone",
            evt(
                10,
                r#""type":"beacon_seen","uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":100,"minor":1,"rssi":-60"#,
            ),
        ),
        (
            "location/outside",
            evt(
                10,
                r#""type":"location","lat":31.2,"lon":121.5,"accuracy_m":10"#,
            ),
        ),
        (
            "wifi_connected/other",
            evt(10, r#""type":"wifi_connected","bssid":"02:aa:bb:cc:dd:ee""#),
        ),
        (
            "custody_started/same",
            evt(
                10,
                r#""type":"custody_started","document":"D-1","classification":"secret""#,
            ),
        ),
        (
            "tamper",
            evt(10, r#""type":"tamper","kind":"root_detected""#),
        ),
    ];
    for (name, event) in &events {
        g.bench_function(BenchmarkId::new("baomi", name), |b| {
            b.iter(|| black_box(e.handle(black_box(event))))
        });
    }
    let cedar = Cedar::new(CEDAR_BASELINE, &cedar_baseline_entities(2));
    let zones = vec!["secrets-office".to_owned()];
    for (name, action, app) in [
        ("app_launched/banned", "launch", "com.tencent.mm"),
        ("app_launched/allowed", "launch", "com.android.calculator2"),
        ("camera_opened", "capture", "com.android.calculator2"),
        ("share", "share", "com.tencent.mm"),
    ] {
        let req = Cedar::request(action, app, &zones, 2);
        g.bench_function(BenchmarkId::new("cedar", name), |b| {
            b.iter(|| black_box(cedar.deny(black_box(&req))))
        });
    }
    g.finish();

    // Decision latency vs policy size: a banned launch inside a zone, Baomi and Cedar.
    let mut g = c.benchmark_group("decision/size");
    for n in [5usize, 10, 100, 1000] {
        let (sets, zones) = shape(n);
        let zone = 4 % zones;
        let pkg = package(4 % sets, 0);
        let policy = Policy::from_json(policy_json(n).as_bytes()).unwrap();
        let mut e = engine(policy, &format!("gen:zone-{zone}:in"));
        let launch = evt(10, &format!(r#""type":"app_launched","package":"{pkg}""#));
        assert!(
            e.handle(&launch).violation,
            "n={n}: the launch must be denied"
        );
        g.bench_function(BenchmarkId::new("baomi", n), |b| {
            b.iter(|| black_box(e.handle(black_box(&launch))))
        });
        let cedar = Cedar::new(&cedar_policies(n), &cedar_entities(n, 2));
        let req = Cedar::request("launch", &pkg, &[format!("zone-{zone}")], 2);
        assert!(cedar.deny(&req), "n={n}: Cedar must deny too");
        g.bench_function(BenchmarkId::new("cedar", n), |b| {
            b.iter(|| black_box(cedar.deny(black_box(&req))))
        });
    }
    g.finish();

    // Posture recompute on a context change, large policy: entering and leaving a zone.
    let mut g = c.benchmark_group("posture_recompute/1000_rules");
    let policy = Policy::from_json(policy_json(1000).as_bytes()).unwrap();
    let mut e = engine(policy, "gen:zone-4:in");
    let out = evt(20, r#""type":"nfc_tag","tag":"gen:zone-4:out""#);
    let back = evt(21, r#""type":"nfc_tag","tag":"gen:zone-4:in""#);
    assert!(e.handle(&out).posture_changed);
    assert!(e.handle(&back).posture_changed);
    g.bench_function("zone_left_then_entered", |b| {
        b.iter(|| {
            black_box(e.handle(&out));
            black_box(e.handle(&back))
        })
    });
    let end = evt(22, r#""type":"custody_ended","document":"D-1""#);
    let start = evt(
        23,
        r#""type":"custody_started","document":"D-1","classification":"secret""#,
    );
    g.bench_function("custody_ended_then_started", |b| {
        b.iter(|| {
            black_box(e.handle(&end));
            black_box(e.handle(&start))
        })
    });
    let beacon = evt(
        24,
        &format!(
            r#""type":"beacon_seen","uuid":"{GENERATED_BEACON_UUID}","major":1007,"minor":1,"rssi":-60"#
        ),
    );
    g.bench_function("beacon_seen_same_zone", |b| {
        b.iter(|| black_box(e.handle(&beacon)))
    });
    g.finish();
}

fn office(keys: usize) -> (Vec<SigningKey>, TrustRoot) {
    office_in(baomi_core::suite::Suite::Intl, keys)
}

fn office_in(suite: baomi_core::suite::Suite, keys: usize) -> (Vec<SigningKey>, TrustRoot) {
    let ks: Vec<SigningKey> = (0..keys)
        .map(|_| SigningKey::generate_for(suite).unwrap())
        .collect();
    let doc = TrustRootDoc {
        version: 1,
        issued_at: Timestamp::parse(AT).unwrap(),
        keys: ks.iter().map(|k| KeyEntry::of(k.public())).collect(),
        threshold: keys as u32,
        registry: None,
        suite,
        sm2_id: None,
        personnel: None,
        upload_key: None,
        expires_at: None,
        policy: None,
    };
    let env = TrustRoot::sign(&doc, &ks.iter().collect::<Vec<_>>()).to_json();
    (ks, TrustRoot::from_self_signed(env.as_bytes()).unwrap())
}

fn bundle_and_start(c: &mut Criterion) {
    let policy = Policy::from_json(policy_json(1000).as_bytes()).unwrap();
    let now = Timestamp::parse(AT).unwrap();
    let mut g = c.benchmark_group("bundle_verify_compile/1000_rules");
    let signed = |p: &Policy, ks: &[SigningKey]| {
        sign_bundle(
            p,
            1,
            now,
            now.plus_seconds(86_400),
            &ks.iter().collect::<Vec<_>>(),
        )
        .unwrap()
        .to_json()
        .into_bytes()
    };
    // The ShangMi suite (issue 24): one SM2 signature over the same 1,000 rules.
    {
        let (ks, root) = office_in(baomi_core::suite::Suite::Sm, 1);
        let bytes = signed(&policy, &ks);
        g.bench_function(
            BenchmarkId::new("1_signatures_sm", format!("{}_KB", bytes.len() / 1024)),
            |b| {
                b.iter(|| {
                    let v = verify_bundle(black_box(&bytes), &root, &Installed::default(), now)
                        .unwrap();
                    black_box(CompiledPolicy::from_valid(v.policy, Platform::Android))
                })
            },
        );
    }
    for sigs in [1usize, 3] {
        let (ks, root) = office(sigs);
        let bytes = signed(&policy, &ks);
        g.bench_function(
            BenchmarkId::new(
                format!("{sigs}_signatures"),
                format!("{}_KB", bytes.len() / 1024),
            ),
            |b| {
                b.iter(|| {
                    let v = verify_bundle(black_box(&bytes), &root, &Installed::default(), now)
                        .unwrap();
                    black_box(CompiledPolicy::from_valid(v.policy, Platform::Android))
                })
            },
        );
        if sigs == 1 {
            // The issue's reference size: a ~200 KB bundle (550 generated rules).
            let mid = Policy::from_json(policy_json(550).as_bytes()).unwrap();
            let mid_bytes = signed(&mid, &ks);
            g.bench_function(
                BenchmarkId::new("550_rules", format!("{}_KB", mid_bytes.len() / 1024)),
                |b| {
                    b.iter(|| {
                        let v =
                            verify_bundle(black_box(&mid_bytes), &root, &Installed::default(), now)
                                .unwrap();
                        black_box(CompiledPolicy::from_valid(v.policy, Platform::Android))
                    })
                },
            );
            // Same-run baselines: the irreducible parts. Decoding the envelope, then only
            // parsing the payload as untyped JSON, and only checking the one signature.
            let (env, payload) = Envelope::open(
                &bytes,
                "bundle",
                baomi_core::bundle::POLICY_BUNDLE_TYPE,
                1 << 20,
            )
            .unwrap();
            g.bench_function("baseline/parse_payload_as_json_value", |b| {
                b.iter(|| {
                    black_box(
                        serde_json::from_slice::<serde_json::Value>(black_box(&payload)).unwrap(),
                    )
                })
            });
            g.bench_function("baseline/one_ed25519_verify", |b| {
                b.iter(|| {
                    black_box(
                        env.check_threshold(
                            "bundle",
                            black_box(&payload),
                            root.office_keys(),
                            1,
                            "office",
                        )
                        .unwrap(),
                    )
                })
            });
        }
    }
    g.finish();

    // Cold start: open the encrypted store and reload the installed bundle and context.
    let mut g = c.benchmark_group("cold_start/1000_rules");
    g.sample_size(30);
    let dir = tempfile::tempdir().unwrap();
    let kek = HostFileKeyProvider::open_or_create(&dir.path().join("kek")).unwrap();
    let store = dir.path().join("store");
    let (ks, _) = office(1);
    {
        let mut agent = Agent::open(
            &store,
            &kek,
            StoreOptions::default(),
            Platform::Android,
            now,
        )
        .unwrap();
        let doc = TrustRootDoc {
            version: 1,
            issued_at: now,
            keys: vec![KeyEntry::of(ks[0].public())],
            threshold: 1,
            registry: None,
            suite: Default::default(),
            sm2_id: None,
            personnel: None,
            upload_key: None,
            expires_at: None,
            policy: None,
        };
        agent
            .provision_trust_root(TrustRoot::sign(&doc, &[&ks[0]]).to_json().as_bytes(), now)
            .unwrap();
        let mut p = policy.clone();
        p.holders = vec![HolderAssignment {
            holder: "h".into(),
            clearance: Clearance::Important,
            devices: vec![agent.store().device_id().to_owned()],
        }];
        let b = sign_bundle(&p, 1, now, now.plus_seconds(86_400), &[&ks[0]])
            .unwrap()
            .to_json();
        agent.install_bundle(b.as_bytes(), now).unwrap();
    }
    g.bench_function("open_store_and_load_bundle", |b| {
        b.iter(|| {
            let a = Agent::open(
                &store,
                &kek,
                StoreOptions::default(),
                Platform::Android,
                now,
            )
            .unwrap();
            assert!(a.engine().is_some());
            black_box(a)
        })
    });
    g.finish();
}

criterion_group!(benches, decision, bundle_and_start);
criterion_main!(benches);
