//! Engine behaviour beyond the scenario corpus: monitor mode, time windows, fail-closed,
//! registry custody, beacon deadlines, policy replacement.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::Arc;

use baomi_core::compile::{CompiledPolicy, FAIL_CLOSED_RULE, Platform, TAMPER_RULE};
use baomi_core::decision::Verdict;
use baomi_core::engine::{Engine, FailClosedReason};
use baomi_core::event::Event;
use baomi_core::level::{Classification, Clearance};
use baomi_core::policy::Policy;
use baomi_core::time::Timestamp;

const BASELINE: &str = include_str!("../../policies/baseline.json");

fn compiled(doc: &str) -> Arc<CompiledPolicy> {
    Arc::new(
        CompiledPolicy::compile(
            Policy::from_json(doc.as_bytes()).unwrap(),
            Platform::Android,
        )
        .unwrap(),
    )
}

fn baseline() -> Arc<CompiledPolicy> {
    compiled(BASELINE)
}

fn t(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn ev(line: &str) -> Event {
    Event::from_json_line(1, line).unwrap()
}

#[test]
fn monitor_rules_warn_and_record_without_touching_the_posture() {
    let mut e = Engine::new(baseline(), Clearance::None, t("2026-11-23T09:00:00+08:00"));
    let d = e.handle(&ev(r#"{"at":"2026-11-23T09:00:00+08:00","type":"custody_started","document":"W-1","classification":"work_secret"}"#));
    // Work secrets suspend messengers (enforce) but leave the camera on (monitor only).
    assert!(!d.posture.camera_disabled);
    let d = e.handle(&ev(r#"{"at":"2026-11-23T09:01:00+08:00","type":"photo_captured","package":"com.android.camera"}"#));
    assert_eq!(d.verdict, Verdict::Warn);
    assert!(d.violation);
    assert_eq!(
        d.rules.iter().map(|r| &**r).collect::<Vec<_>>(),
        ["watch-capture-with-work-secrets"]
    );
    assert!(!d.posture.camera_disabled);
}

#[test]
fn tamper_is_always_a_critical_violation() {
    let mut e = Engine::new(baseline(), Clearance::None, t("2026-11-23T09:00:00+08:00"));
    let d = e.handle(&ev(
        r#"{"at":"2026-11-23T09:00:00+08:00","type":"tamper","kind":"device_admin_disabled"}"#,
    ));
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.violation);
    assert_eq!(&*d.rules[0], TAMPER_RULE);
    assert!(d.reason.contains("device_admin_disabled"));
}

#[test]
fn time_windows_follow_local_time_and_run_past_midnight() {
    let mut doc: serde_json::Value = serde_json::from_str(BASELINE).unwrap();
    doc["rules"][0]["when"] =
        serde_json::json!({"time_window": {"days": ["fri"], "from": "22:00", "to": "06:00"}});
    let p = compiled(&doc.to_string());
    // Friday 23:00 Beijing: inside. Saturday 05:59: inside (the night that began on Friday).
    // Saturday 06:00 and Saturday 23:00: outside.
    let mut e = Engine::new(p, Clearance::None, t("2026-11-27T23:00:00+08:00"));
    let launch = |at: &str| {
        ev(&format!(
            r#"{{"at":"{at}","type":"app_launched","package":"com.tencent.mm"}}"#
        ))
    };
    assert_eq!(
        e.handle(&launch("2026-11-27T23:00:00+08:00")).verdict,
        Verdict::Deny
    );
    assert_eq!(
        e.handle(&launch("2026-11-28T05:59:00+08:00")).verdict,
        Verdict::Deny
    );
    assert_eq!(
        e.handle(&launch("2026-11-28T06:00:00+08:00")).verdict,
        Verdict::Allow
    );
    assert_eq!(
        e.handle(&launch("2026-11-28T23:00:00+08:00")).verdict,
        Verdict::Allow
    );
    // Friday 21:59: outside.
    assert_eq!(
        e.handle(&launch("2026-11-27T21:59:00+08:00")).verdict,
        Verdict::Allow
    );
}

#[test]
fn an_expired_policy_or_overdue_sync_falls_back_to_the_fail_closed_posture() {
    let start = t("2026-11-23T09:00:00+08:00");
    let mut e = Engine::new(baseline(), Clearance::None, start);
    assert!(!e.posture().camera_disabled);
    e.set_sync_due_by(Some(start.plus_seconds(3600)));
    e.set_policy_expiry(Some(start.plus_seconds(7200)));
    assert_eq!(e.next_deadline(), Some(start.plus_seconds(3600)));
    assert_eq!(e.tick(start.plus_seconds(10)), None);

    let p = e
        .tick(start.plus_seconds(3600))
        .expect("posture changes at the deadline");
    assert!(p.camera_disabled && p.screen_capture_disabled);
    assert!(p.blocked_packages.iter().any(|b| &**b == "com.tencent.mm"));
    assert_eq!(
        e.fail_closed_reason(start.plus_seconds(3600)),
        Some(FailClosedReason::SyncOverdue)
    );
    let d = e.handle(&ev(
        r#"{"at":"2026-11-23T10:30:00+08:00","type":"app_launched","package":"com.tencent.mm"}"#,
    ));
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(&*d.rules[0], FAIL_CLOSED_RULE);

    // A successful sync moves the deadline: the device opens again.
    e.set_sync_due_by(Some(start.plus_seconds(86_400)));
    let p = e.tick(start.plus_seconds(3700)).expect("recovers");
    assert!(!p.camera_disabled);
    // Past the bundle's expiry it closes again, for that reason.
    assert!(e.tick(start.plus_seconds(7200)).is_some());
    assert_eq!(
        e.fail_closed_reason(start.plus_seconds(7200)),
        Some(FailClosedReason::PolicyExpired)
    );
}

#[test]
fn only_a_signed_return_ends_registry_custody() {
    let start = t("2026-11-23T09:00:00+08:00");
    let mut e = Engine::new(baseline(), Clearance::General, start);
    e.context_mut()
        .registry_custody_started("REG-1", Classification::Secret, start);
    assert!(e.refresh(start));
    assert!(e.posture().camera_disabled);
    let d = e.handle(&ev(
        r#"{"at":"2026-11-23T09:10:00+08:00","type":"custody_ended","document":"REG-1"}"#,
    ));
    assert!(
        d.posture.camera_disabled,
        "a local scan must not end registry custody"
    );
    assert!(d.reason.contains("only a signed return"), "{}", d.reason);
    e.context_mut().registry_custody_ended("REG-1");
    assert!(e.refresh(start.plus_seconds(700)));
    assert!(!e.posture().camera_disabled);
}

#[test]
fn a_beacon_sighting_expires_on_its_own_and_says_when() {
    let start = t("2026-11-23T09:00:00+08:00");
    let mut e = Engine::new(baseline(), Clearance::None, start);
    let d = e.handle(&ev(r#"{"at":"2026-11-23T09:00:00+08:00","type":"beacon_seen","uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":100,"minor":1,"rssi":-60}"#));
    assert!(d.posture.camera_disabled && d.posture_changed);
    assert!(d.reason.contains("secrets-office"), "{}", d.reason);
    assert_eq!(e.next_deadline(), Some(start.plus_seconds(30)));
    assert_eq!(e.tick(start.plus_seconds(29)), None);
    let p = e
        .tick(start.plus_seconds(30))
        .expect("leaves the zone when the sighting runs out");
    assert!(!p.camera_disabled);
}

/// Found by `properties.rs` in CI: a beacon seen while Wi-Fi already held the zone did not set
/// the engine's wake time, so after leaving the Wi-Fi the camera stayed off for good.
#[test]
fn a_beacon_seen_while_wifi_holds_the_zone_still_runs_out() {
    let start = t("2026-11-23T09:00:00+08:00");
    let mut e = Engine::new(baseline(), Clearance::None, start);
    let d = e.handle(&ev(
        r#"{"at":"2026-11-23T09:00:00+08:00","type":"wifi_connected","bssid":"02:1a:11:f0:00:01"}"#,
    ));
    assert!(d.posture.camera_disabled);
    e.handle(&ev(r#"{"at":"2026-11-23T09:00:01+08:00","type":"beacon_seen","uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":100,"minor":1,"rssi":-60}"#));
    let d = e.handle(&ev(
        r#"{"at":"2026-11-23T09:00:02+08:00","type":"wifi_connected","bssid":"aa:bb:cc:dd:ee:ff"}"#,
    ));
    assert!(d.posture.camera_disabled, "the beacon still holds the zone");
    assert_eq!(e.next_deadline(), Some(start.plus_seconds(31)));
    let p = e
        .tick(start.plus_seconds(31))
        .expect("leaves the zone when the sighting runs out");
    assert!(!p.camera_disabled);
}

#[test]
fn unchanged_postures_are_shared_not_rebuilt() {
    let start = t("2026-11-23T09:00:00+08:00");
    let mut e = Engine::new(baseline(), Clearance::General, start);
    let before = e.posture().clone();
    let d = e.handle(&ev(
        r#"{"at":"2026-11-23T09:00:01+08:00","type":"app_launched","package":"com.example.notes"}"#,
    ));
    assert!(Arc::ptr_eq(&before, &d.posture));
    assert!(!d.posture_changed);
}

#[test]
fn a_new_policy_version_keeps_check_ins_and_custody() {
    let start = t("2026-11-23T09:00:00+08:00");
    let mut e = Engine::new(baseline(), Clearance::None, start);
    e.handle(&ev(
        r#"{"at":"2026-11-23T09:00:00+08:00","type":"nfc_tag","tag":"baomi:reading-room:in"}"#,
    ));
    e.handle(&ev(r#"{"at":"2026-11-23T09:00:00+08:00","type":"custody_started","document":"D","classification":"secret"}"#));
    assert!(e.posture().camera_disabled);
    // v2 drops the custody camera rule; the zone rule still holds through the rebind.
    let mut v2: serde_json::Value = serde_json::from_str(BASELINE).unwrap();
    assert_eq!(v2["rules"][1]["id"], "no-capture-during-custody");
    v2["rules"][1]["when"] = serde_json::json!({"custody_at_least": "top_secret"});
    e.replace_policy(compiled(&v2.to_string()), start.plus_seconds(5));
    assert!(e.posture().camera_disabled);
    assert_eq!(
        e.context().zone_ids_present(start.plus_seconds(5)),
        ["reading-room"]
    );
    e.handle(&ev(
        r#"{"at":"2026-11-23T09:01:00+08:00","type":"nfc_tag","tag":"baomi:reading-room:out"}"#,
    ));
    assert!(!e.posture().camera_disabled);
    assert_eq!(e.context().custody().len(), 1);
}

#[test]
fn context_snapshots_restore_the_same_posture() {
    let start = t("2026-11-23T09:00:00+08:00");
    let p = baseline();
    let mut e = Engine::new(p.clone(), Clearance::Important, start);
    for line in [
        r#"{"at":"2026-11-23T09:00:00+08:00","type":"wifi_connected","bssid":"02:1a:11:f0:00:01"}"#,
        r#"{"at":"2026-11-23T09:00:00+08:00","type":"custody_started","document":"D","classification":"top_secret"}"#,
        r#"{"at":"2026-11-23T09:00:00+08:00","type":"app_inventory","packages":["com.tencent.mm"]}"#,
    ] {
        e.handle(&ev(line));
    }
    let snap = e.context().snapshot();
    let json = serde_json::to_string(&snap).unwrap();
    let back = baomi_core::context::Context::restore(&p, serde_json::from_str(&json).unwrap());
    let e2 = Engine::with_context(p, back, start);
    assert_eq!(e2.posture(), e.posture());
    assert_eq!(e2.context().installed(), ["com.tencent.mm"]);
    assert_eq!(e2.context().clearance(), Clearance::Important);
}
