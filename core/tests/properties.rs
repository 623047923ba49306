//! Properties over generated event streams on the baseline policy (proptest, issue 15):
//! evaluation is deterministic; the posture is a pure function of the context (a restored
//! snapshot gives the same posture); monitor-mode rules never change the posture; a bundle that
//! verifies re-verifies after a store round trip. (A sealed record opening only at its own seq
//! and device is in `store.rs`; gates agreeing with condition trees in `eval.rs`, where both
//! are visible.)
//!
//! 256 cases a property in CI; `PROPTEST_CASES=300000 cargo test --release -p baomi-core --test
//! properties` is the soak (about a minute here).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::sync::Arc;

use baomi_core::compile::{CompiledPolicy, Platform};
use baomi_core::context::Context;
use baomi_core::engine::Engine;
use baomi_core::event::Event;
use baomi_core::level::Clearance;
use baomi_core::policy::Policy;
use baomi_core::policy::model::Mode;
use baomi_core::posture::Posture;
use baomi_core::time::Timestamp;
use proptest::prelude::*;

const BASELINE: &str = include_str!("../../policies/baseline.json");
const T0: i64 = 1_795_800_000_000;

fn compiled(monitor_only: bool) -> Arc<CompiledPolicy> {
    let mut p = Policy::from_json(BASELINE.as_bytes()).unwrap();
    if monitor_only {
        for r in &mut p.rules {
            r.mode = Mode::Monitor;
        }
    }
    Arc::new(CompiledPolicy::compile(p, Platform::Android).unwrap())
}

/// One event of the kinds a phone reports, with values drawn from the policy's world (its
/// zones, beacons, tags, messengers) and outside it.
fn event_json() -> impl Strategy<Value = String> {
    let app = prop::sample::select(vec![
        "com.tencent.mm",
        "com.tencent.mobileqq",
        "com.android.camera",
        "com.android.calculator2",
        "com.alibaba.android.rimet",
    ]);
    let doc = prop::sample::select(vec!["D-1", "D-2", "D-3"]);
    let class = prop::sample::select(vec!["work_secret", "secret", "highly_secret", "top_secret"]);
    let tag = prop::sample::select(vec![
        "baomi:secrets-office:in",
        "baomi:secrets-office:out",
        "baomi:reading-room:in",
        "baomi:reading-room:out",
        "unknown-tag",
    ]);
    prop_oneof![
        app.clone()
            .prop_map(|a| format!(r#""type":"app_launched","package":"{a}""#)),
        app.clone()
            .prop_map(|a| format!(r#""type":"app_installed","package":"{a}""#)),
        app.clone()
            .prop_map(|a| format!(r#""type":"app_removed","package":"{a}""#)),
        app.clone()
            .prop_map(|a| format!(r#""type":"camera_opened","package":"{a}""#)),
        app.clone()
            .prop_map(|a| format!(r#""type":"photo_captured","package":"{a}""#)),
        app.clone()
            .prop_map(|a| format!(r#""type":"screen_captured","package":"{a}""#)),
        app.prop_map(|a| format!(
            r#""type":"share","from_package":"com.android.gallery3d","to_package":"{a}","mime":"image/jpeg""#
        )),
        (doc.clone(), class).prop_map(|(d, c)| format!(
            r#""type":"custody_started","document":"{d}","classification":"{c}""#
        )),
        doc.prop_map(|d| format!(r#""type":"custody_ended","document":"{d}""#)),
        (prop::sample::select(vec![100u16, 200, 300]), -100i32..-40).prop_map(|(major, rssi)| format!(
            r#""type":"beacon_seen","uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":{major},"minor":1,"rssi":{rssi}"#
        )),
        (39.90f64..39.91, 116.40f64..116.41, 1.0f64..100.0).prop_map(|(lat, lon, acc)| format!(
            r#""type":"location","lat":{lat},"lon":{lon},"accuracy_m":{acc}"#
        )),
        prop::sample::select(vec!["02:1a:11:f0:00:01", "aa:bb:cc:dd:ee:ff"])
            .prop_map(|b| format!(r#""type":"wifi_connected","bssid":"{b}""#)),
        Just(r#""type":"wifi_disconnected""#.to_owned()),
        tag.prop_map(|t| format!(r#""type":"nfc_tag","tag":"{t}""#)),
    ]
}

/// Events in time order, seconds to minutes apart.
fn stream() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec((event_json(), 1i64..120_000), 1..40).prop_map(|items| {
        let mut at = T0;
        items
            .into_iter()
            .map(|(body, gap)| {
                at += gap;
                let ts = Timestamp(at).to_rfc3339();
                Event::from_json_line(1, &format!(r#"{{"at":"{ts}",{body}}}"#)).unwrap()
            })
            .collect()
    })
}

fn clearance() -> impl Strategy<Value = Clearance> {
    prop::sample::select(Clearance::ALL.to_vec())
}

proptest! {
    // 256 cases by default; `PROPTEST_CASES=N` runs more (a soak), as the properties doc says.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn evaluation_is_deterministic(events in stream(), c in clearance()) {
        let p = compiled(false);
        let mut a = Engine::new(p.clone(), c, Timestamp(T0));
        let mut b = Engine::new(p, c, Timestamp(T0));
        for e in &events {
            let (x, y) = (a.handle(e), b.handle(e));
            prop_assert_eq!(
                serde_json::to_string(&x).unwrap(),
                serde_json::to_string(&y).unwrap()
            );
        }
    }

    #[test]
    fn the_posture_is_a_function_of_the_context(events in stream(), c in clearance()) {
        let p = compiled(false);
        let mut live = Engine::new(p.clone(), c, Timestamp(T0));
        for e in &events {
            live.handle(e);
            let at = e.at;
            let restored = Engine::with_context(
                p.clone(),
                Context::restore(&p, live.context().snapshot()),
                at,
            );
            prop_assert_eq!(&**restored.posture(), &**live.posture(), "after {:?}", e);
        }
    }

    #[test]
    fn monitor_rules_never_change_the_posture(events in stream(), c in clearance()) {
        let p = compiled(true);
        let mut e = Engine::new(p, c, Timestamp(T0));
        for ev in &events {
            let d = e.handle(ev);
            prop_assert_eq!(&*d.posture, &Posture::open());
            prop_assert!(!d.posture_changed);
            prop_assert_ne!(d.verdict, baomi_core::Verdict::Deny, "monitor rules only warn");
        }
    }
}

fn trust(key: &baomi_core::bundle::SigningKey) -> Vec<u8> {
    common::signed_root(&common::root_doc(1, &[key], 1, Timestamp(T0)), &[key])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    /// A bundle that verifies is stored as its signed envelope and verifies again when the
    /// agent reopens the store: same header, same digest, still trusted.
    #[test]
    fn a_verified_bundle_reverifies_after_a_store_round_trip(
        version in 1u64..1_000_000,
        c in clearance(),
        days in 1i64..90,
        monitor in any::<bool>(),
    ) {
        use baomi_core::agent::Agent;
        use baomi_core::bundle::{SigningKey, sign_bundle};
        use baomi_core::policy::model::HolderAssignment;
        use baomi_core::store::HostFileKeyProvider;
        let dir = tempfile::tempdir().unwrap();
        let kek = HostFileKeyProvider::open_or_create(&dir.path().join("kek")).unwrap();
        let key = SigningKey::generate().unwrap();
        let now = Timestamp(T0);
        let mut a = Agent::open(&dir.path().join("s"), &kek, common::store_options(), Platform::Android, now).unwrap();
        a.provision_trust_root(&trust(&key), now).unwrap();
        let mut p = Policy::from_json(BASELINE.as_bytes()).unwrap();
        if monitor {
            p.rules[0].mode = Mode::Monitor;
        }
        p.holders = vec![HolderAssignment { holder: "h".into(), clearance: c, devices: vec![a.store().device_id().into()] }];
        let env = sign_bundle(&p, version, now, now.plus_seconds(days * 86_400), &[&key]).unwrap().to_json().into_bytes();
        let header = a.install_bundle(&env, now).unwrap();
        let before = a.installed().unwrap().clone();
        drop(a);
        let again = Agent::open(&dir.path().join("s"), &kek, common::store_options(), Platform::Android, now).unwrap();
        let after = again.installed().unwrap();
        prop_assert_eq!(&after.header, &header);
        prop_assert_eq!(&after.digest, &before.digest);
        prop_assert!(after.trusted);
        prop_assert_eq!(again.engine().unwrap().context().clearance(), c);
    }
}
