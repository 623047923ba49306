//! The agent wires evaluation to the store and survives restarts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::path::Path;

use baomi_core::agent::{Agent, AgentError, STORE_FULL_RULE};
use baomi_core::bundle::{BundleError, SigningKey, sign_bundle};
use baomi_core::compile::FAIL_CLOSED_RULE;
use baomi_core::engine::FailClosedReason;
use baomi_core::event::{Event, parse_jsonl};
use baomi_core::level::Clearance;
use baomi_core::policy::Policy;
use baomi_core::store::StoreOptions;
use baomi_core::time::Timestamp;

const BASELINE: &str = include_str!("../../policies/baseline.json");
const CASE1: &str = include_str!("../../tests/scenarios/case1-urgent-relay.events.jsonl");

struct Office {
    key: SigningKey,
    root: Vec<u8>,
}

fn now() -> Timestamp {
    Timestamp::parse("2016-10-20T20:00:00+08:00").unwrap()
}

fn office() -> Office {
    let key = common::key();
    Office {
        root: common::signed_root(&common::root_doc(1, &[&key], 1, now()), &[&key]),
        key,
    }
}

fn bundle(o: &Office, policy: &Policy, version: u64) -> Vec<u8> {
    sign_bundle(
        policy,
        version,
        now(),
        now().plus_seconds(86_400 * 90),
        &[&o.key],
    )
    .unwrap()
    .to_json()
    .into_bytes()
}

fn open(dir: &Path, opts: StoreOptions) -> Agent {
    common::agent_in(dir, opts, now()).unwrap()
}

#[test]
fn violations_are_recorded_and_everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let o = office();
    let mut a = open(dir.path(), common::store_options());
    let device = a.store().device_id().to_owned();
    assert_eq!(a.provision_trust_root(&o.root, now()).unwrap(), 1);
    a.install_bundle(
        &bundle(&o, &common::assigned(&device, Clearance::General), 2),
        now(),
    )
    .unwrap();

    let events = parse_jsonl(CASE1).unwrap();
    let violations = events
        .iter()
        .map(|e| a.handle(e).unwrap())
        .filter(|d| d.violation)
        .count();
    assert_eq!(violations, 5);
    let stored = a.store().records_after(0, 100).unwrap();
    assert_eq!(stored.len(), 5);
    assert_eq!(stored[1].record.event, events[2]);
    assert_eq!(stored[1].record.rules, ["no-capture-during-custody"]);
    assert_eq!(stored[1].record.policy.as_ref().unwrap().version, 2);
    drop(a);

    // Restart: policy, custody (camera off) and the signed clearance come back.
    let mut a = open(dir.path(), common::store_options());
    assert_eq!(a.installed().unwrap().header.version, 2);
    assert!(
        a.posture().camera_disabled,
        "custody must survive a restart"
    );
    assert_eq!(
        a.engine().unwrap().context().clearance(),
        Clearance::General
    );
    assert_eq!(a.store().verify().unwrap().records, 5);
    // Anti-rollback survives the restart too.
    let old = bundle(&o, &common::assigned(&device, Clearance::General), 1);
    assert_eq!(
        a.install_bundle(&old, now()).unwrap_err(),
        AgentError::Bundle(BundleError::Rollback {
            installed: 2,
            offered: 1
        })
    );
    let d = a.handle(&events[3]).unwrap();
    assert!(d.violation);
    assert_eq!(a.store().head().seq, 6);
}

// Attack 9 (docs/SECURITY.md): a phone enrolled but in no signed assignment runs closed.
#[test]
fn clearance_comes_only_from_the_signed_assignment() {
    let dir = tempfile::tempdir().unwrap();
    let o = office();
    let mut a = open(dir.path(), common::store_options());
    a.provision_trust_root(&o.root, now()).unwrap();
    // Assigned to nobody (the policy names some other device): fail-closed, not open.
    a.install_bundle(
        &bundle(&o, &common::assigned("someone-else", Clearance::Core), 1),
        now(),
    )
    .unwrap();
    let launch = Event::from_json_line(
        1,
        r#"{"at":"2016-10-20T20:01:00+08:00","type":"app_launched","package":"com.tencent.mm"}"#,
    )
    .unwrap();
    let d = a.handle(&launch).unwrap();
    assert!(d.violation);
    assert_eq!(&*d.rules[0], FAIL_CLOSED_RULE);
    assert!(a.posture().camera_disabled);
    assert_eq!(
        a.engine().unwrap().fail_closed_reason(now()),
        Some(FailClosedReason::Unassigned)
    );
    // Assigned to an uncleared holder: the office decided, WeChat is allowed.
    let device = a.store().device_id().to_owned();
    a.install_bundle(
        &bundle(&o, &common::assigned(&device, Clearance::None), 2),
        now(),
    )
    .unwrap();
    assert!(!a.handle(&launch).unwrap().violation);
    assert!(!a.posture().camera_disabled);
    a.install_bundle(
        &bundle(&o, &common::assigned(&device, Clearance::Core), 3),
        now(),
    )
    .unwrap();
    assert!(a.handle(&launch).unwrap().violation);
}

#[test]
fn nothing_runs_before_it_is_provisioned() {
    let dir = tempfile::tempdir().unwrap();
    let o = office();
    let mut a = open(dir.path(), common::store_options());
    let policy = Policy::from_json(BASELINE.as_bytes()).unwrap();
    assert_eq!(
        a.install_bundle(&bundle(&o, &policy, 1), now())
            .unwrap_err(),
        AgentError::NoTrustRoot
    );
    let e = Event::from_json_line(
        1,
        r#"{"at":"2016-10-20T20:01:00+08:00","type":"tamper","kind":"x"}"#,
    )
    .unwrap();
    assert_eq!(a.handle(&e).unwrap_err(), AgentError::NoPolicy);
    // A forged "rotation" of the root is refused once a root is installed.
    a.provision_trust_root(&o.root, now()).unwrap();
    let other = office();
    assert!(matches!(
        a.provision_trust_root(&other.root, now()),
        Err(AgentError::Bundle(BundleError::TrustRootVersion { .. }))
    ));
}

#[test]
fn a_full_store_keeps_evidence_records_store_full_once_and_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let o = office();
    let mut a = open(
        dir.path(),
        StoreOptions {
            max_bytes: 40 * 1024,
            ..common::store_options()
        },
    );
    a.provision_trust_root(&o.root, now()).unwrap();
    let device = a.store().device_id().to_owned();
    a.install_bundle(
        &bundle(&o, &common::assigned(&device, Clearance::None), 1),
        now(),
    )
    .unwrap();
    assert!(!a.posture().camera_disabled);
    let tamper = |i: u32| {
        let at = now().plus_seconds(i64::from(i)).to_rfc3339();
        Event::from_json_line(
            1,
            &format!(r#"{{"at":"{at}","type":"tamper","kind":"agent_killed_{i}"}}"#),
        )
        .unwrap()
    };
    let mut i = 0;
    while !a.store().over_cap().unwrap() {
        a.handle(&tamper(i)).unwrap();
        i += 1;
        assert!(i < 5000, "never reached the cap");
    }
    assert!(
        a.posture().camera_disabled,
        "over the cap the device fails closed"
    );
    for k in 0..5 {
        a.handle(&tamper(i + k)).unwrap();
    }
    let all = a.store().records_after(0, 100_000).unwrap();
    assert_eq!(
        all.len() as u32,
        i + 5 + 1,
        "every violation kept, plus one store_full"
    );
    assert_eq!(
        all.iter()
            .filter(|r| r.record.rules == [STORE_FULL_RULE])
            .count(),
        1
    );
    let launch = Event::from_json_line(
        1,
        r#"{"at":"2016-10-20T23:00:00+08:00","type":"app_launched","package":"com.tencent.mm"}"#,
    )
    .unwrap();
    assert_eq!(&*a.handle(&launch).unwrap().rules[0], FAIL_CLOSED_RULE);
}

fn root_v(version: u64, keys: &[&SigningKey], signers: &[&SigningKey]) -> Vec<u8> {
    common::signed_root(&common::root_doc(version, keys, 1, now()), signers)
}

/// An MDM delivers its whole managed configuration again on every change, and may hold older
/// copies than sync installed since: the same, older or newer, one core call sorts it out and
/// only a refusal is recorded.
#[test]
fn managed_configuration_is_taken_whatever_the_mdm_redelivers() {
    use baomi_core::agent::IntakeItem;
    let dir = tempfile::tempdir().unwrap();
    let o = office();
    let mut a = open(dir.path(), common::store_options());
    let p = common::assigned(a.store().device_id(), Clearance::General);
    let v1 = bundle(&o, &p, 1);
    let first = a
        .apply_managed_config(Some(&o.root), Some(&v1), now())
        .unwrap();
    assert_eq!(first.trust_root, IntakeItem::Installed { version: 1 });
    assert_eq!(first.bundle, IntakeItem::Installed { version: 1 });
    assert!(first.changed());

    // The same configuration again (every change re-delivers everything): nothing to do.
    let again = a
        .apply_managed_config(Some(&o.root), Some(&v1), now())
        .unwrap();
    assert_eq!(
        again.trust_root,
        IntakeItem::AlreadyInstalled { version: 1 }
    );
    assert_eq!(again.bundle, IntakeItem::AlreadyInstalled { version: 1 });
    assert!(!again.changed());

    // Sync installs v3 and rotates the root; the MDM still holds root 1 and bundle 1.
    let next_key = common::key();
    let root2 = root_v(2, &[&next_key], &[&o.key, &next_key]);
    a.rotate_trust_root(&root2, now()).unwrap();
    let o2 = Office {
        key: next_key,
        root: root2.clone(),
    };
    a.install_bundle(&bundle(&o2, &p, 3), now()).unwrap();
    let stale = a
        .apply_managed_config(Some(&o.root), Some(&v1), now())
        .unwrap();
    assert_eq!(
        stale.trust_root,
        IntakeItem::Older {
            offered: 1,
            installed: 2
        }
    );
    assert_eq!(
        stale.bundle,
        IntakeItem::Older {
            offered: 1,
            installed: 3
        }
    );
    assert!(
        a.store().records_after(0, 10).unwrap().is_empty(),
        "nothing harmful, nothing recorded"
    );

    // A newer bundle from the MDM installs.
    let v4 = bundle(&o2, &p, 4);
    let newer = a
        .apply_managed_config(Some(&root2), Some(&v4), now())
        .unwrap();
    assert_eq!(
        newer.trust_root,
        IntakeItem::AlreadyInstalled { version: 2 }
    );
    assert_eq!(newer.bundle, IntakeItem::Installed { version: 4 });

    // Signed by a key the root does not name, or the same version with other bytes: refused
    // and recorded as tamper, the installed policy untouched.
    let rogue = Office {
        key: common::key(),
        root: Vec::new(),
    };
    let forged = a
        .apply_managed_config(None, Some(&bundle(&rogue, &p, 5)), now())
        .unwrap();
    assert!(
        matches!(forged.bundle, IntakeItem::Refused { recorded: true, .. }),
        "{forged:?}"
    );
    assert_eq!(forged.trust_root, IntakeItem::Absent);
    let mut other = p.clone();
    other.holders[0].clearance = Clearance::None;
    let same_version = a
        .apply_managed_config(None, Some(&bundle(&o2, &other, 4)), now())
        .unwrap();
    assert!(
        matches!(same_version.bundle, IntakeItem::Refused { .. }),
        "{same_version:?}"
    );
    let forged_root = root_v(3, &[&rogue.key], &[&rogue.key]);
    let r = a
        .apply_managed_config(Some(&forged_root), None, now())
        .unwrap();
    assert!(
        matches!(r.trust_root, IntakeItem::Refused { recorded: true, .. }),
        "{r:?}"
    );
    let log = a.store().records_after(0, 10).unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    let text = format!("{:?}", log);
    assert!(
        text.contains("managed_config_refused:policy_bundle"),
        "{text}"
    );
    assert!(text.contains("managed_config_refused:trust_root"), "{text}");
    assert_eq!(a.installed().unwrap().header.version, 4);
    assert_eq!(a.trust_root().unwrap().version(), 2);

    // Garbage and blanks: refused or absent, never an error.
    let junk = a
        .apply_managed_config(Some(b"not json"), Some(b"  \n"), now())
        .unwrap();
    assert!(matches!(junk.trust_root, IntakeItem::Refused { .. }));
    assert_eq!(junk.bundle, IntakeItem::Absent);
}

/// Before any root, a bundle from managed configuration is refused as `NoTrustRoot` in the
/// outcome (nothing to record it under), not thrown.
#[test]
fn a_bundle_without_a_root_is_an_outcome_not_a_crash() {
    use baomi_core::agent::IntakeItem;
    let dir = tempfile::tempdir().unwrap();
    let o = office();
    let mut a = open(dir.path(), common::store_options());
    let p = common::assigned(a.store().device_id(), Clearance::General);
    let r = a
        .apply_managed_config(None, Some(&bundle(&o, &p, 1)), now())
        .unwrap();
    assert!(
        matches!(&r.bundle, IntakeItem::Refused { recorded: false, reason } if reason.contains("no trust root")),
        "{r:?}"
    );
}

// Issue 23, item 6: before its first bundle an enrolled phone ran fully open (camera on,
// nothing blocked). A managed phone (a trust root) is fail-closed until a policy arrives, and
// it survives a restart; a phone not yet managed stays open.
#[test]
fn a_managed_phone_is_fail_closed_until_its_first_policy() {
    let dir = tempfile::tempdir().unwrap();
    let o = office();
    let mut a = open(dir.path(), common::store_options());
    assert_eq!(a.posture(), baomi_core::posture::Posture::open());
    a.provision_trust_root(&o.root, now()).unwrap();
    let held = a.posture();
    assert!(held.camera_disabled && held.screen_capture_disabled);
    assert!(
        held.blocked_packages
            .iter()
            .any(|p| &**p == "com.tencent.mm")
    );
    drop(a);
    let mut a = open(dir.path(), common::store_options());
    assert_eq!(a.posture(), held, "still held after a restart");
    let device = a.store().device_id().to_owned();
    a.install_bundle(
        &bundle(&o, &common::assigned(&device, Clearance::General), 1),
        now(),
    )
    .unwrap();
    assert!(
        !a.posture().camera_disabled,
        "the policy's posture once it arrives"
    );
}
