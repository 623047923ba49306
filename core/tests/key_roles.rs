//! Issue 19, "a key thief locks the office out": one key set signed both bundles and roots, so
//! a thief with the office key rotated the root first (through a relay) and the office's real
//! rotation and bundles were refused forever after, by sync and by managed configuration.
//! Now roots separate the roles as TUF does (root keys sign roots, policy keys sign bundles,
//! registry keys sign custody), and managed configuration (out of band) recovers a phone
//! whose chain of roots a thief forked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use baomi_core::agent::{Agent, AgentError, IntakeItem};
use baomi_core::bundle::trust::{KeyEntry, RoleKeys, TrustRootDoc};
use baomi_core::bundle::{BundleError, SigningKey, sign_bundle};
use baomi_core::engine::FailClosedReason;
use baomi_core::level::Clearance;
use baomi_core::rules;
use baomi_core::store::StoreOptions;
use baomi_core::time::Timestamp;

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn key() -> SigningKey {
    common::key()
}

/// A root at `version` with root keys `root` (threshold 1) and, if given, policy keys.
fn doc(version: u64, root: &SigningKey, policy: Option<&SigningKey>) -> TrustRootDoc {
    let mut d = common::root_doc(version, &[root], 1, T0);
    d.policy = policy.map(|p| RoleKeys {
        keys: vec![KeyEntry::of(p.public())],
        threshold: 1,
    });
    d
}

fn bundle(a: &Agent, version: u64, signer: &SigningKey) -> Vec<u8> {
    let p = common::assigned(a.store().device_id(), Clearance::Important);
    sign_bundle(&p, version, T0, T0.plus_seconds(30 * 86_400), &[signer])
        .unwrap()
        .to_json()
        .into_bytes()
}

#[test]
fn a_stolen_policy_key_cannot_rotate_the_root_and_the_office_recovers_by_rotating() {
    let dir = tempfile::tempdir().unwrap();
    let (root1, policy1, thief) = (key(), key(), key());
    let mut a = common::agent_in(dir.path(), StoreOptions::default(), T0).unwrap();
    a.provision_trust_root(
        &common::signed_root(&doc(1, &root1, Some(&policy1)), &[&root1]),
        T0,
    )
    .unwrap();
    // Root keys no longer sign bundles; policy keys do.
    assert!(matches!(
        a.install_bundle(&bundle(&a, 1, &root1), T0),
        Err(AgentError::Bundle(BundleError::UnknownKey { .. }))
    ));
    a.install_bundle(&bundle(&a, 1, &policy1), T0).unwrap();
    // The thief has the policy key: it tries to rotate to a root of its own.
    let thief_policy = key();
    let forged = common::signed_root(&doc(2, &thief, Some(&thief_policy)), &[&policy1, &thief]);
    assert!(matches!(
        a.rotate_trust_root(&forged, T0),
        Err(AgentError::Bundle(
            BundleError::ThresholdNotMet { .. } | BundleError::UnknownKey { .. }
        ))
    ));
    assert_eq!(a.trust_root().unwrap().version(), 1);
    // It can sign a bundle (that is what a policy key does), even at version 1,000,000 ...
    a.install_bundle(&bundle(&a, 1_000_000, &policy1), T0)
        .unwrap();
    // ... until the office rotates the policy key away with its offline root key.
    let (root2, policy2) = (key(), key());
    let next = common::signed_root(&doc(2, &root2, Some(&policy2)), &[&root1, &root2]);
    a.rotate_trust_root(&next, T0).unwrap();
    assert_eq!(
        a.engine().unwrap().fail_closed_reason(T0),
        Some(FailClosedReason::PolicyUntrusted)
    );
    a.install_bundle(&bundle(&a, 2, &policy2), T0).unwrap();
    assert_eq!(a.engine().unwrap().fail_closed_reason(T0), None);
}

#[test]
fn a_key_may_hold_one_role_only() {
    let (root, other) = (key(), key());
    let shared = common::signed_root(&doc(1, &root, Some(&root)), &[&root]);
    let dir = tempfile::tempdir().unwrap();
    let mut a = common::agent_in(dir.path(), StoreOptions::default(), T0).unwrap();
    match a.provision_trust_root(&shared, T0) {
        Err(AgentError::Bundle(BundleError::InvalidTrustRoot(m))) => {
            assert!(m.contains("one role"), "{m}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut d = doc(1, &root, Some(&other));
    d.registry = Some(RoleKeys {
        keys: vec![KeyEntry::of(root.public())],
        threshold: 1,
    });
    assert!(
        a.provision_trust_root(&common::signed_root(&d, &[&root]), T0)
            .is_err()
    );
}

#[test]
fn managed_configuration_recovers_a_phone_whose_root_a_thief_rotated() {
    let dir = tempfile::tempdir().unwrap();
    // A root from before the roles were separated: its one key signs roots and bundles.
    let (office, thief) = (key(), key());
    let v1 = common::signed_root(&doc(1, &office, None), &[&office]);
    let mut a = common::agent_in(dir.path(), StoreOptions::default(), T0).unwrap();
    a.provision_trust_root(&v1, T0).unwrap();
    a.install_bundle(&bundle(&a, 1, &office), T0).unwrap();
    // The thief, with the office key, rotates first through a relay and installs its bundle.
    let stolen = common::signed_root(&doc(2, &thief, None), &[&office, &thief]);
    a.rotate_trust_root(&stolen, T0).unwrap();
    a.install_bundle(&bundle(&a, 1_000_000, &thief), T0)
        .unwrap();
    // The office's real rotation no longer rotates (the thief's root did not sign it) ...
    let office2 = key();
    let real = common::signed_root(&doc(2, &office2, None), &[&office, &office2]);
    assert!(a.rotate_trust_root(&real, T0).is_err());
    // ... but out of band, through managed configuration, it replaces the forked root.
    let out = a
        .apply_managed_config(Some(&real), Some(&bundle(&a, 2, &office2)), T0)
        .unwrap();
    assert_eq!(out.trust_root, IntakeItem::Installed { version: 2 });
    assert_eq!(out.bundle, IntakeItem::Installed { version: 2 });
    assert_eq!(a.installed().unwrap().header.version, 2);
    assert!(a.installed().unwrap().trusted);
    assert_eq!(a.engine().unwrap().fail_closed_reason(T0), None);
    // Recorded for the office.
    let log = a.store().records_after(0, 100).unwrap();
    assert!(
        log.iter()
            .any(|v| v.record.rules == [rules::TRUST_ROOT_REPLACED]),
        "{log:#?}"
    );
    // An older root in managed configuration is still skipped (no downgrade that way).
    let out = a.apply_managed_config(Some(&v1), None, T0).unwrap();
    assert!(matches!(out.trust_root, IntakeItem::Older { .. }));
}

#[test]
fn a_bundle_issued_in_9999_is_refused_and_a_root_without_expiry_still_expires() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    let mut a = common::agent_in(dir.path(), StoreOptions::default(), T0).unwrap();
    a.provision_trust_root(&common::signed_root(&doc(1, &k, None), &[&k]), T0)
        .unwrap();
    let p = common::assigned(a.store().device_id(), Clearance::Important);
    let far = Timestamp::parse("9999-12-01T00:00:00Z").unwrap();
    let b = sign_bundle(&p, 1, far, far.plus_seconds(86_400), &[&k]).unwrap();
    assert!(matches!(
        a.install_bundle(b.to_json().as_bytes(), T0),
        Err(AgentError::Bundle(BundleError::IssuedInFuture { .. }))
    ));
    // The office's bundle of today still installs: the clock did not move to 9999.
    a.install_bundle(&bundle(&a, 1, &k), T0).unwrap();
    // A root that names no expiry expires a year after it was issued.
    let root = a.trust_root().unwrap();
    assert_eq!(root.expires_at(), Some(T0.plus_seconds(365 * 86_400)));
    let later = T0.plus_seconds(366 * 86_400);
    a.tick(later).unwrap();
    assert_eq!(
        a.engine().unwrap().fail_closed_reason(later),
        Some(FailClosedReason::PolicyExpired)
    );
    // And a root cannot claim more than three years.
    let mut long = doc(1, &k, None);
    long.expires_at = Some(T0.plus_seconds(4 * 366 * 86_400));
    let dir2 = tempfile::tempdir().unwrap();
    let mut b = common::agent_in(dir2.path(), StoreOptions::default(), T0).unwrap();
    assert!(matches!(
        b.provision_trust_root(&common::signed_root(&long, &[&k]), T0),
        Err(AgentError::Bundle(BundleError::InvalidTrustRoot(_)))
    ));
}

#[test]
fn a_time_window_closed_by_a_clock_jump_reopens_when_the_office_settles_the_time() {
    // Camera off during office hours (a time-window rule); the clock set 6 h forward makes it
    // "evening"; setting it back is recorded, and the office's proven time must bring the
    // camera-off window back at once, not at the deadline cached at the forward time.
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    let mut a = common::agent_in(dir.path(), StoreOptions::default(), T0).unwrap();
    a.provision_trust_root(&common::signed_root(&doc(1, &k, None), &[&k]), T0)
        .unwrap();
    let mut p = common::assigned(a.store().device_id(), Clearance::Important);
    let window: baomi_core::policy::model::Rule = serde_json::from_value(serde_json::json!({
        "id": "office-hours-no-camera",
        "description": "工作时间禁用相机",
        "severity": "high",
        "mode": "enforce",
        "when": {"time_window": {"days": ["mon","tue","wed","thu","fri","sat","sun"], "from": "08:00", "to": "18:00", "utc_offset_minutes": 480}},
        "effects": ["disable_camera"]
    }))
    .unwrap();
    p.rules.push(window);
    // 10:00 Beijing time on some day.
    let ten = Timestamp::parse("2027-01-11T10:00:00+08:00").unwrap();
    let b = sign_bundle(&p, 1, ten, ten.plus_seconds(30 * 86_400), &[&k]).unwrap();
    a.install_bundle(b.to_json().as_bytes(), ten).unwrap();
    a.tick(ten).unwrap();
    assert!(a.posture().camera_disabled, "office hours: camera off");
    let evening = ten.plus_seconds(9 * 3_600);
    a.tick(evening).unwrap();
    assert!(!a.posture().camera_disabled, "19:00: camera on");
    // Back to 10:00: recorded, acted on at the mark (still 19:00) ...
    a.observe_time(ten.plus_seconds(60)).unwrap();
    // ... until the office's proven time says it is 10:01.
    let settled = a.settle_time(ten.plus_seconds(60), ten.plus_seconds(60));
    assert_eq!(settled, ten.plus_seconds(60));
    a.tick(settled).unwrap();
    assert!(
        a.posture().camera_disabled,
        "the office's time is 10:01: the camera-off window is back"
    );
}
