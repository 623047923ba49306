//! Issue 23, item 6: personnel assignment records. What an attacker tries first: a record
//! signed by a key of another role, a root that gives one key two roles, a record for another
//! phone, an older record replayed after a newer one, a record whose validity is empty; and
//! what the office relies on: the record decides the holder while in force, by time alone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use baomi_core::agent::AssignmentOutcome;
use baomi_core::bundle::trust::{KeyEntry, RoleKeys, TrustRootDoc};
use baomi_core::bundle::{BundleError, SigningKey, TrustRoot, sign_bundle};
use baomi_core::engine::FailClosedReason;
use baomi_core::level::Clearance;
use baomi_core::policy::Policy;
use baomi_core::store::StoreOptions;
use baomi_core::sync::assignment::{
    AssignmentRecordDoc, sign_assignment_record, verify_assignment_record,
};
use baomi_core::time::Timestamp;

const T0: Timestamp = Timestamp(1_800_000_000_000);
const BASELINE: &str = include_str!("../../policies/baseline.json");

fn key() -> SigningKey {
    common::key()
}

fn root_doc(
    root: &SigningKey,
    registry: &SigningKey,
    personnel: Option<&SigningKey>,
) -> TrustRootDoc {
    let mut d = common::root_doc(1, &[root], 1, T0);
    d.registry = Some(RoleKeys {
        keys: vec![KeyEntry::of(registry.public())],
        threshold: 1,
    });
    d.personnel = personnel.map(|p| RoleKeys {
        keys: vec![KeyEntry::of(p.public())],
        threshold: 1,
    });
    d
}

fn record(id: &str, device: &str, holder: &str, issued: Timestamp) -> AssignmentRecordDoc {
    AssignmentRecordDoc {
        record_id: id.into(),
        device: device.into(),
        holder: holder.into(),
        clearance: Clearance::Important,
        valid_from: T0,
        valid_until: Some(T0.plus_seconds(3600)),
        issued_at: issued,
    }
}

fn signed(doc: &AssignmentRecordDoc, k: &SigningKey) -> Vec<u8> {
    sign_assignment_record(doc, &[k])
        .unwrap()
        .to_json()
        .into_bytes()
}

#[test]
fn only_the_personnel_role_signs_assignments_and_a_key_holds_one_role() {
    let (root, registry, personnel) = (key(), key(), key());
    let trust = TrustRoot::from_self_signed(&common::signed_root(
        &root_doc(&root, &registry, Some(&personnel)),
        &[&root],
    ))
    .unwrap();
    let doc = record("a-1", "dev-1", "li.na", T0);
    assert_eq!(
        verify_assignment_record(&signed(&doc, &personnel), &trust).unwrap(),
        doc
    );
    for other in [&root, &registry, &key()] {
        assert!(verify_assignment_record(&signed(&doc, other), &trust).is_err());
    }
    // A custody record's envelope type is not an assignment (no cross-role replay).
    let custody = baomi_core::sync::custody::sign_custody_record(
        &baomi_core::sync::custody::CustodyRecordDoc {
            record_id: "a-1".into(),
            holder: "li.na".into(),
            document: "D".into(),
            classification: baomi_core::level::Classification::Secret,
            action: baomi_core::sync::custody::CustodyAction::SignOut,
            at: T0,
        },
        &[&personnel],
    )
    .unwrap()
    .to_json();
    assert!(matches!(
        verify_assignment_record(custody.as_bytes(), &trust),
        Err(BundleError::WrongPayloadType { .. })
    ));
    // A root without personnel keys trusts no assignment at all.
    let bare = TrustRoot::from_self_signed(&common::signed_root(
        &root_doc(&root, &registry, None),
        &[&root],
    ))
    .unwrap();
    assert!(verify_assignment_record(&signed(&doc, &personnel), &bare).is_err());
    // One key as registry and personnel: the root is refused.
    let twice = root_doc(&root, &registry, Some(&registry));
    let err = TrustRoot::from_self_signed(&common::signed_root(&twice, &[&root])).unwrap_err();
    assert!(err.to_string().contains("a key holds one role"), "{err}");
    // An empty validity is refused when signed and when read.
    let mut empty = doc.clone();
    empty.valid_until = Some(T0);
    assert!(sign_assignment_record(&empty, &[&personnel]).is_err());
}

#[test]
fn the_newest_record_decides_the_holder_while_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let (root, registry, personnel) = (key(), key(), key());
    let mut a = common::agent_in(dir.path(), StoreOptions::default(), T0).unwrap();
    a.provision_trust_root(
        &common::signed_root(&root_doc(&root, &registry, Some(&personnel)), &[&root]),
        T0,
    )
    .unwrap();
    // A bundle that assigns the phone to nobody: closed.
    let p = Policy::from_json(BASELINE.as_bytes()).unwrap();
    let b = sign_bundle(&p, 1, T0, T0.plus_seconds(30 * 86_400), &[&root]).unwrap();
    a.install_bundle(b.to_json().as_bytes(), T0).unwrap();
    let dev = a.store().device_id().to_owned();
    let reason = |a: &baomi_core::agent::Agent, at| a.status(at).fail_closed;
    assert_eq!(
        reason(&a, T0).as_deref(),
        Some(FailClosedReason::Unassigned.as_str())
    );

    // For another phone: not applied.
    let other = record("a-0", "dev-other", "li.na", T0);
    assert_eq!(
        a.apply_assignment(&other, T0).unwrap(),
        AssignmentOutcome::NotApplicable
    );
    let newer = record("a-2", &dev, "li.na", T0.plus_seconds(10));
    assert_eq!(
        a.apply_assignment(&newer, T0).unwrap(),
        AssignmentOutcome::Applied {
            holder_changed: true
        }
    );
    assert_eq!(a.holder().as_deref(), Some("li.na"));
    assert_eq!(reason(&a, T0), None);
    // An older record replayed after it changes nothing.
    let older = record("a-1", &dev, "wang.fang", T0);
    assert_eq!(
        a.apply_assignment(&older, T0).unwrap(),
        AssignmentOutcome::Superseded
    );
    assert_eq!(a.holder().as_deref(), Some("li.na"));
    // The status names the end as a deadline; at it, the phone closes again by time alone,
    // and a restart keeps what was decided.
    let end = T0.plus_seconds(3600);
    assert!(a.status(T0).next_deadline.is_some_and(|d| d <= end));
    assert!(a.tick(end).unwrap().is_none_or(|p| p.camera_disabled));
    assert_eq!(a.holder(), None);
    assert_eq!(
        reason(&a, end).as_deref(),
        Some(FailClosedReason::Unassigned.as_str())
    );
    drop(a);
    let a = common::agent_in(dir.path(), StoreOptions::default(), end).unwrap();
    assert_eq!(a.holder(), None);
}
