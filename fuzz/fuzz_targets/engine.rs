//! Structure-aware (`arbitrary`): a generated policy (rules with condition trees and effects
//! over the baseline's zones and app sets) and a generated stream of events from the policy's
//! world, through the engine. Beyond "no panic", it checks what users rely on: a context
//! restored from its snapshot gives the live posture (the property that found the Wi-Fi/beacon
//! wake-time bug), two engines decide alike, and monitor-only rules never change the posture.
#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use baomi_core::compile::{CompiledPolicy, Platform};
use baomi_core::context::Context;
use baomi_core::engine::Engine;
use baomi_core::event::Event;
use baomi_core::level::Clearance;
use baomi_core::policy::Policy;
use baomi_core::posture::Posture;
use baomi_core::time::Timestamp;
use baomi_fuzz::{BASELINE, NOW_MS};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const LEVELS: [&str; 4] = ["none", "general", "important", "core"];
const CLASSES: [&str; 4] = ["work_secret", "secret", "highly_secret", "top_secret"];
const ZONES: [&str; 2] = ["secrets-office", "reading-room"];
const APPS: [&str; 5] = [
    "com.tencent.mm",
    "com.tencent.mobileqq",
    "com.android.camera",
    "com.android.calculator2",
    "com.sina.weibo",
];
const TAGS: [&str; 5] = [
    "baomi:secrets-office:in",
    "baomi:secrets-office:out",
    "baomi:reading-room:in",
    "baomi:reading-room:out",
    "x",
];
const BSSIDS: [&str; 2] = ["02:1a:11:f0:00:01", "aa:bb:cc:dd:ee:ff"];

#[derive(Arbitrary, Debug)]
enum Cond {
    Clearance(u8),
    Custody(u8),
    InZone(u8),
    AnyZone(bool),
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

#[derive(Arbitrary, Debug)]
enum Effect {
    Ban,
    Camera,
    Capture,
    DenyShare(bool),
}

#[derive(Arbitrary, Debug)]
struct Rule {
    when: Cond,
    effects: Vec<Effect>,
    monitor: bool,
}

#[derive(Arbitrary, Debug)]
enum Ev {
    Launch(u8),
    Install(u8),
    Remove(u8),
    Camera(u8),
    Photo(u8),
    Screen(u8),
    Share(u8),
    CustodyStart(u8, u8),
    CustodyEnd(u8),
    Beacon(u8, i8),
    Location(u8, u8),
    Wifi(u8),
    WifiOff,
    Nfc(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    rules: Vec<Rule>,
    clearance: u8,
    ios: bool,
    events: Vec<(u16, Ev)>,
}

fn pick<'a>(xs: &[&'a str], i: u8) -> &'a str {
    xs[usize::from(i) % xs.len()]
}

fn cond(c: &Cond, depth: u8) -> Value {
    if depth > 4 {
        return json!({ "in_any_zone": false });
    }
    match c {
        Cond::Clearance(l) => json!({ "clearance_at_least": pick(&LEVELS, *l) }),
        Cond::Custody(l) => json!({ "custody_at_least": pick(&CLASSES, *l) }),
        Cond::InZone(z) => json!({ "in_zone": [pick(&ZONES, *z)] }),
        Cond::AnyZone(b) => json!({ "in_any_zone": b }),
        Cond::All(cs) if !cs.is_empty() => {
            json!({ "all": cs.iter().take(4).map(|c| cond(c, depth + 1)).collect::<Vec<_>>() })
        }
        Cond::Any(cs) if !cs.is_empty() => {
            json!({ "any": cs.iter().take(4).map(|c| cond(c, depth + 1)).collect::<Vec<_>>() })
        }
        Cond::Not(c) => json!({ "not": cond(c, depth + 1) }),
        _ => json!({ "in_any_zone": true }),
    }
}

fn policy(input: &Input, monitor_only: bool) -> Option<Policy> {
    let mut p: Value = serde_json::from_str(BASELINE).ok()?;
    let rules: Vec<Value> = input
        .rules
        .iter()
        .take(8)
        .enumerate()
        .map(|(i, r)| {
            let mut effects: Vec<Value> = r
                .effects
                .iter()
                .take(3)
                .map(|e| match e {
                    Effect::Ban => json!({ "ban_apps": "messengers" }),
                    Effect::Camera => json!("disable_camera"),
                    Effect::Capture => json!("disable_screen_capture"),
                    Effect::DenyShare(s) => json!({ "deny_share_into": { "app_set": "messengers", "mime": ["*/*"], "suspend_targets": s } }),
                })
                .collect();
            if effects.is_empty() {
                effects.push(json!("disable_camera"));
            }
            let mode = if r.monitor || monitor_only { "monitor" } else { "enforce" };
            json!({ "id": format!("r{i}"), "severity": "high", "mode": mode, "when": cond(&r.when, 0), "effects": effects })
        })
        .collect();
    if rules.is_empty() {
        return None;
    }
    p["rules"] = Value::Array(rules);
    Policy::from_json(p.to_string().as_bytes()).ok()
}

fn event(at: i64, e: &Ev) -> Option<Event> {
    let body = match e {
        Ev::Launch(a) => json!({ "type": "app_launched", "package": pick(&APPS, *a) }),
        Ev::Install(a) => json!({ "type": "app_installed", "package": pick(&APPS, *a) }),
        Ev::Remove(a) => json!({ "type": "app_removed", "package": pick(&APPS, *a) }),
        Ev::Camera(a) => json!({ "type": "camera_opened", "package": pick(&APPS, *a) }),
        Ev::Photo(a) => json!({ "type": "photo_captured", "package": pick(&APPS, *a) }),
        Ev::Screen(a) => json!({ "type": "screen_captured", "package": pick(&APPS, *a) }),
        Ev::Share(a) => {
            json!({ "type": "share", "from_package": "com.android.gallery3d", "to_package": pick(&APPS, *a), "mime": "image/jpeg" })
        }
        Ev::CustodyStart(d, c) => {
            json!({ "type": "custody_started", "document": format!("D-{}", d % 3), "classification": pick(&CLASSES, *c) })
        }
        Ev::CustodyEnd(d) => json!({ "type": "custody_ended", "document": format!("D-{}", d % 3) }),
        Ev::Beacon(m, rssi) => {
            let major = [100, 200, 300][usize::from(*m) % 3];
            let rssi = -40 - i32::from(rssi.unsigned_abs() % 60);
            json!({ "type": "beacon_seen", "uuid": "f7826da6-4fa2-4e98-8024-bc5b71e0893e", "major": major, "minor": 1, "rssi": rssi })
        }
        Ev::Location(a, b) => {
            json!({ "type": "location", "lat": 39.90 + f64::from(*a) / 25_500.0, "lon": 116.40 + f64::from(*b) / 25_500.0, "accuracy_m": 10.0 })
        }
        Ev::Wifi(b) => json!({ "type": "wifi_connected", "bssid": pick(&BSSIDS, *b) }),
        Ev::WifiOff => json!({ "type": "wifi_disconnected" }),
        Ev::Nfc(t) => json!({ "type": "nfc_tag", "tag": pick(&TAGS, *t) }),
    };
    let mut v = body;
    v["at"] = json!(Timestamp(at).to_rfc3339());
    Event::from_json_line(1, &v.to_string()).ok()
}

fuzz_target!(|input: Input| {
    let Some(p) = policy(&input, false) else {
        return;
    };
    let platform = if input.ios {
        Platform::Ios
    } else {
        Platform::Android
    };
    let Ok(compiled) = CompiledPolicy::compile(p, platform) else {
        return;
    };
    let compiled = Arc::new(compiled);
    let c = [
        Clearance::None,
        Clearance::General,
        Clearance::Important,
        Clearance::Core,
    ][usize::from(input.clearance % 4)];
    let mut live = Engine::new(compiled.clone(), c, Timestamp(NOW_MS));
    let mut twin = Engine::new(compiled.clone(), c, Timestamp(NOW_MS));
    let monitor = policy(&input, true)
        .and_then(|p| CompiledPolicy::compile(p, platform).ok())
        .map(Arc::new);
    let mut quiet = monitor.map(|m| Engine::new(m, c, Timestamp(NOW_MS)));
    let mut at = NOW_MS;
    for (gap, e) in input.events.iter().take(64) {
        at += i64::from(*gap) * 100;
        let Some(ev) = event(at, e) else { continue };
        let d = live.handle(&ev);
        let d2 = twin.handle(&ev);
        assert_eq!(
            serde_json::to_string(&d).ok(),
            serde_json::to_string(&d2).ok(),
            "evaluation is deterministic"
        );
        let restored = Engine::with_context(
            compiled.clone(),
            Context::restore(&compiled, live.context().snapshot()),
            ev.at,
        );
        assert_eq!(
            &**restored.posture(),
            &**live.posture(),
            "a restored context gives the live posture after {ev:?}"
        );
        if let Some(q) = quiet.as_mut() {
            assert_eq!(
                &*q.handle(&ev).posture,
                &Posture::open(),
                "monitor-only rules never change the posture"
            );
        }
    }
});
