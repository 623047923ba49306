//! Issue 24: the office picks the suite when it creates its trust root, and everything signed
//! follows it. An `sm` root lists SM2 keys only; its bundles, custody records and assignment
//! records are SM2 signatures an agent verifies and installs. A mixed configuration (an
//! Ed25519 key in an `sm` root, an X25519 upload key with an `sm` root, an SM-signed bundle
//! under an `intl` root and the reverse) is refused with an error that says so. A fleet moves
//! from `intl` to `sm` by a rotation signed under both, running closed between the rotation
//! and the first SM-signed bundle. A root naming its own SM2 distinguishing ID accepts only
//! signatures made under it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use baomi_core::bundle::trust::{KeyEntry, RoleKeys, TrustRootDoc};
use baomi_core::bundle::{SigningKey, TrustRoot, sign_bundle, sign_bundle_with_id};
use baomi_core::engine::FailClosedReason;
use baomi_core::level::{Classification, Clearance};
use baomi_core::store::StoreOptions;
use baomi_core::suite::Suite;
use baomi_core::suite::sm::Sm2SecretKey;
use baomi_core::sync::assignment::{
    AssignmentRecordDoc, sign_assignment_record, verify_assignment_record,
};
use baomi_core::sync::custody::{
    CustodyAction, CustodyRecordDoc, sign_custody_record, verify_custody_record,
};
use baomi_core::time::Timestamp;
use base64::Engine as _;

const T0: Timestamp = Timestamp(1_800_000_000_000);

/// An office's keys in one suite.
struct Keys {
    root: SigningKey,
    policy: SigningKey,
    registry: SigningKey,
    personnel: SigningKey,
}

fn keys(suite: Suite) -> Keys {
    let k = || SigningKey::generate_for(suite).unwrap();
    Keys {
        root: k(),
        policy: k(),
        registry: k(),
        personnel: k(),
    }
}

fn role(k: &SigningKey) -> Option<RoleKeys> {
    Some(RoleKeys {
        keys: vec![KeyEntry::of(k.public())],
        threshold: 1,
    })
}

fn doc(version: u64, k: &Keys, suite: Suite) -> TrustRootDoc {
    let mut d = common::root_doc(version, &[&k.root], 1, T0);
    d.suite = suite;
    d.policy = role(&k.policy);
    d.registry = role(&k.registry);
    d.personnel = role(&k.personnel);
    d.upload_key = Some(match suite {
        Suite::Sm => base64::engine::general_purpose::STANDARD
            .encode(Sm2SecretKey::generate().public().to_bytes()),
        Suite::Intl => base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
    });
    d
}

fn bundle(device: &str, version: u64, signer: &SigningKey) -> Vec<u8> {
    let p = common::assigned(device, Clearance::Important);
    sign_bundle(&p, version, T0, T0.plus_seconds(30 * 86_400), &[signer])
        .unwrap()
        .to_json()
        .into_bytes()
}

#[test]
fn an_sm_office_signs_everything_with_sm2_and_the_phone_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys(Suite::Sm);
    let root = common::signed_root(&doc(1, &k, Suite::Sm), &[&k.root]);
    let mut a = common::agent_in(dir.path(), StoreOptions::default(), T0).unwrap();
    assert_eq!(a.store().suite(), Suite::Intl);
    a.provision_trust_root(&root, T0).unwrap();
    assert_eq!(a.trust_root().unwrap().suite(), Suite::Sm);
    // The platform opened the store before the root came: it never recorded, so it moved to
    // SM4-GCM and HMAC-SM3 with the root, and says so; reopened, it still is.
    assert_eq!(a.store().suite(), Suite::Sm);
    assert_eq!(a.status(T0).store_suite, Suite::Sm);
    drop(a);
    let mut a = common::agent_in(dir.path(), StoreOptions::default(), T0).unwrap();
    assert_eq!(a.store().suite(), Suite::Sm);
    assert!(a.trust_root().unwrap().sm2_upload_key().is_some());
    assert!(a.trust_root().unwrap().upload_key().is_none());
    let dev = a.store().device_id().to_owned();
    let h = a.install_bundle(&bundle(&dev, 1, &k.policy), T0).unwrap();
    assert_eq!(h.version, 1);
    assert_eq!(a.status(T0).fail_closed, None);
    // A custody record by the SM2 registry key verifies and applies: camera off.
    let record = sign_custody_record(
        &CustodyRecordDoc {
            record_id: "r-1".into(),
            holder: "hong".into(),
            document: "MIMI-2026-042".into(),
            classification: Classification::Secret,
            action: CustodyAction::SignOut,
            at: T0,
        },
        &[&k.registry],
    )
    .unwrap()
    .to_json();
    let trust = a.trust_root().unwrap().clone();
    let doc = verify_custody_record(record.as_bytes(), &trust).unwrap();
    a.apply_registry_custody(&doc, T0).unwrap();
    assert!(a.posture().camera_disabled);
    // An assignment record by the SM2 personnel key verifies.
    let assignment = sign_assignment_record(
        &AssignmentRecordDoc {
            record_id: "a-1".into(),
            device: dev.clone(),
            holder: "hong".into(),
            clearance: Clearance::Important,
            valid_from: T0,
            valid_until: None,
            issued_at: T0,
        },
        &[&k.personnel],
    )
    .unwrap()
    .to_json();
    assert!(verify_assignment_record(assignment.as_bytes(), &trust).is_ok());
    // The same records signed by the registry's key of another suite: refused.
    let intl = keys(Suite::Intl);
    let forged = sign_custody_record(&doc, &[&intl.registry])
        .unwrap()
        .to_json();
    assert!(verify_custody_record(forged.as_bytes(), &trust).is_err());
}

#[test]
fn a_mixed_configuration_is_refused_with_an_error_that_names_it() {
    let (sm, intl) = (keys(Suite::Sm), keys(Suite::Intl));
    // An Ed25519 policy key in an sm root.
    let mut d = doc(1, &sm, Suite::Sm);
    d.policy = role(&intl.policy);
    let e = TrustRoot::from_self_signed(&common::signed_root(&d, &[&sm.root])).unwrap_err();
    assert!(e.to_string().contains("suite"), "{e}");
    // An SM2 root key in an intl root.
    let mut d = doc(1, &intl, Suite::Intl);
    d.keys = vec![KeyEntry::of(sm.root.public())];
    let e = TrustRoot::from_self_signed(&common::signed_root(&d, &[&sm.root])).unwrap_err();
    assert!(e.to_string().contains("suite"), "{e}");
    // An international (X25519) upload key with an sm root.
    let mut d = doc(1, &sm, Suite::Sm);
    d.upload_key = Some(base64::engine::general_purpose::STANDARD.encode([9u8; 32]));
    let e = TrustRoot::from_self_signed(&common::signed_root(&d, &[&sm.root])).unwrap_err();
    assert!(e.to_string().contains("SM2"), "{e}");
    // An SM-signed bundle under an intl root, and an Ed25519-signed one under an sm root.
    for (root_keys, suite, signer) in [
        (&intl, Suite::Intl, &sm.policy),
        (&sm, Suite::Sm, &intl.policy),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut a = common::agent_in(dir.path(), StoreOptions::default(), T0).unwrap();
        a.provision_trust_root(
            &common::signed_root(&doc(1, root_keys, suite), &[&root_keys.root]),
            T0,
        )
        .unwrap();
        let dev = a.store().device_id().to_owned();
        let e = a.install_bundle(&bundle(&dev, 1, signer), T0).unwrap_err();
        assert!(e.to_string().contains("key"), "{suite}: {e}");
        assert!(a.installed().is_none());
    }
}

#[test]
fn a_fleet_moves_from_intl_to_sm_by_a_rotation_signed_under_both() {
    let dir = tempfile::tempdir().unwrap();
    let (intl, sm) = (keys(Suite::Intl), keys(Suite::Sm));
    let mut a = common::agent_in(dir.path(), StoreOptions::default(), T0).unwrap();
    a.provision_trust_root(
        &common::signed_root(&doc(1, &intl, Suite::Intl), &[&intl.root]),
        T0,
    )
    .unwrap();
    let dev = a.store().device_id().to_owned();
    a.install_bundle(&bundle(&dev, 1, &intl.policy), T0)
        .unwrap();
    assert_eq!(a.status(T0).fail_closed, None);
    // A violation under intl: the store has recorded, so it keeps its suite through the
    // rotation (its records and chain stay verifiable under what sealed them).
    a.handle(&common::messenger_launch(T0)).unwrap();
    let v2 = doc(2, &sm, Suite::Sm);
    // Signed by the new SM2 keys alone: the current root did not agree.
    let e = a
        .rotate_trust_root(&common::signed_root(&v2, &[&sm.root]), T0)
        .unwrap_err();
    assert!(
        e.to_string().contains("threshold") || e.to_string().contains("key"),
        "{e}"
    );
    // Signed under both: the phone moves to sm; the intl bundle no longer counts.
    a.rotate_trust_root(&common::signed_root(&v2, &[&intl.root, &sm.root]), T0)
        .unwrap();
    assert_eq!(a.trust_root().unwrap().suite(), Suite::Sm);
    assert_eq!(
        a.status(T0).fail_closed.as_deref(),
        Some(FailClosedReason::PolicyUntrusted.as_str())
    );
    // The first SM2-signed bundle: open again. An Ed25519 one is no longer accepted.
    assert!(
        a.install_bundle(&bundle(&dev, 2, &intl.policy), T0)
            .is_err()
    );
    a.install_bundle(&bundle(&dev, 2, &sm.policy), T0).unwrap();
    assert_eq!(a.status(T0).fail_closed, None);
    assert!(a.installed().unwrap().trusted);
    assert_eq!(a.store().suite(), Suite::Intl);
    a.handle(&common::messenger_launch(T0)).unwrap();
    drop(a);
    let a = common::agent_in(dir.path(), StoreOptions::default(), T0).unwrap();
    assert_eq!(a.store().verify().unwrap().records, 2);
}

// The store under the sm suite: its suite is kept with it; a store whose recorded suite is
// changed does not open (the key check is under the suite's MAC), and loses nothing.
#[test]
fn an_sm_store_keeps_its_suite_and_a_changed_suite_does_not_open_it() {
    use baomi_core::store::{DB_FILE, HostFileKeyProvider, Store, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let kek = HostFileKeyProvider::open_or_create(&dir.path().join("kek")).unwrap();
    let opts = StoreOptions {
        suite: Suite::Sm,
        ..StoreOptions::default()
    };
    let mut st = Store::open(&dir.path().join("s"), &kek, opts).unwrap();
    assert_eq!(st.suite(), Suite::Sm);
    drop(st);
    // Reopened with the default (intl) options: still sm.
    st = Store::open(&dir.path().join("s"), &kek, StoreOptions::default()).unwrap();
    assert_eq!(st.suite(), Suite::Sm);
    drop(st);
    let db = rusqlite::Connection::open(dir.path().join("s").join(DB_FILE)).unwrap();
    db.execute(
        "UPDATE meta SET value = CAST('intl' AS BLOB) WHERE name = 'suite'",
        [],
    )
    .unwrap();
    drop(db);
    assert!(matches!(
        Store::open(&dir.path().join("s"), &kek, StoreOptions::default()),
        Err(StoreError::WrongKey)
    ));
}

#[test]
fn a_root_naming_its_own_sm2_id_accepts_only_signatures_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let sm = keys(Suite::Sm);
    let mut d = doc(1, &sm, Suite::Sm);
    d.sm2_id = Some("security-office@example.gov.cn".into());
    let mut a = common::agent_in(dir.path(), StoreOptions::default(), T0).unwrap();
    a.provision_trust_root(&common::signed_root(&d, &[&sm.root]), T0)
        .unwrap();
    let dev = a.store().device_id().to_owned();
    // Under the default ID: refused.
    assert!(a.install_bundle(&bundle(&dev, 1, &sm.policy), T0).is_err());
    let p = common::assigned(&dev, Clearance::Important);
    let under_id = sign_bundle_with_id(
        "security-office@example.gov.cn",
        &p,
        1,
        T0,
        T0.plus_seconds(86_400),
        &[&sm.policy],
    )
    .unwrap()
    .to_json();
    a.install_bundle(under_id.as_bytes(), T0).unwrap();
    // An sm2_id on an intl root is refused.
    let mut d = doc(1, &keys(Suite::Intl), Suite::Intl);
    d.sm2_id = Some("x".into());
    assert!(TrustRoot::from_self_signed(&common::signed_root(&d, &[])).is_err());
}
