//! The holder with a rooted phone, tried as an attacker would (docs/SECURITY.md, attacks 4-9):
//! every test here fails on the agent before protocol 2 / store 2.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::path::Path;

use baomi_core::agent::{Agent, AgentError, CustodyOutcome, enroll};
use baomi_core::bundle::{BundleError, Envelope, POLICY_BUNDLE_TYPE, SigningKey, sign_bundle};
use baomi_core::compile::Platform;
use baomi_core::engine::FailClosedReason;
use baomi_core::event::Event;
use baomi_core::level::{Classification, Clearance};
use baomi_core::policy::Policy;
use baomi_core::rules;
use baomi_core::store::{ChainError, DB_FILE, StoreError, StoreOptions};
use baomi_core::sync::custody::{CustodyAction, CustodyRecordDoc};
use baomi_core::sync::{HttpRequest, HttpResponse, Transport, TransportError};
use baomi_core::time::Timestamp;
use rusqlite::Connection;

const DAY: i64 = 86_400;

fn t0() -> Timestamp {
    Timestamp::parse("2026-03-02T09:00:00+08:00").unwrap()
}

fn root(
    version: u64,
    keys: &[&SigningKey],
    signers: &[&SigningKey],
    expires: Option<Timestamp>,
) -> Vec<u8> {
    let mut doc = common::root_doc(version, keys, 1, t0());
    doc.expires_at = expires;
    common::signed_root(&doc, signers)
}

fn policy(device: &str) -> Policy {
    common::assigned(device, Clearance::Important)
}

fn bundle(p: &Policy, version: u64, issued: Timestamp, days: i64, key: &SigningKey) -> Vec<u8> {
    sign_bundle(p, version, issued, issued.plus_seconds(days * DAY), &[key])
        .unwrap()
        .to_json()
        .into_bytes()
}

fn open(dir: &Path) -> Result<Agent, AgentError> {
    common::agent_in(dir, StoreOptions::default(), t0())
}

fn at(t: Timestamp, kind: &str) -> Event {
    Event::from_json_line(1, &format!(r#"{{"at":"{}",{kind}}}"#, t.to_rfc3339())).unwrap()
}

/// A device provisioned with a root of `key` and a 30-day bundle assigning it.
fn provisioned(dir: &Path, key: &SigningKey) -> Agent {
    let mut a = open(dir).unwrap();
    a.provision_trust_root(&root(1, &[key], &[key], None), t0())
        .unwrap();
    let device = a.store().device_id().to_owned();
    a.install_bundle(&bundle(&policy(&device), 1, t0(), 30, key), t0())
        .unwrap();
    a
}

// Attack 4: the holder copies the sealed rows of an older installed policy back.
#[test]
fn an_older_policy_row_copied_back_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::key();
    let mut a = provisioned(dir.path(), &key);
    drop(a);
    let db = dir.path().join("store").join(DB_FILE);
    let old: (Vec<u8>, Vec<u8>) = Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT nonce, sealed FROM state WHERE name = 'installed_bundle'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    a = open(dir.path()).unwrap();
    let device = a.store().device_id().to_owned();
    a.install_bundle(&bundle(&policy(&device), 2, t0(), 30, &key), t0())
        .unwrap();
    drop(a);
    Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE state SET nonce = ?1, sealed = ?2 WHERE name = 'installed_bundle'",
            rusqlite::params![old.0, old.1],
        )
        .unwrap();
    assert_eq!(
        open(dir.path()).unwrap_err(),
        AgentError::Store(StoreError::Integrity(ChainError::StateRolledBack))
    );
}

// Attack 5: once a time past the bundle's expiry was seen, setting the clock back 31 days does
// not bring the camera back; the set-back is recorded, and survives a restart.
#[test]
fn a_clock_set_back_after_expiry_keeps_the_camera_off() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::key();
    let mut a = provisioned(dir.path(), &key);
    let launch = r#""type":"app_launched","package":"com.android.camera""#;
    assert!(
        !a.handle(&at(t0().plus_seconds(60), launch))
            .unwrap()
            .posture
            .camera_disabled
    );
    let expired = t0().plus_seconds(31 * DAY);
    let d = a.handle(&at(expired, launch)).unwrap();
    assert!(d.posture.camera_disabled, "expired: fail-closed");
    let back = expired.plus_seconds(-31 * DAY);
    let d = a.handle(&at(back, launch)).unwrap();
    assert!(
        d.posture.camera_disabled,
        "a set-back clock reopened the camera"
    );
    let clock: Vec<_> = a
        .store()
        .records_after(0, 100)
        .unwrap()
        .into_iter()
        .filter(|r| r.record.rules == [rules::CLOCK])
        .collect();
    assert_eq!(clock.len(), 1);
    assert!(clock[0].record.reason.contains("already seen"));
    drop(a);
    let mut a = open(dir.path()).unwrap();
    let d = a.handle(&at(back.plus_seconds(60), launch)).unwrap();
    assert!(
        d.posture.camera_disabled,
        "the high-water mark survives a restart"
    );
}

// Attack 5, offline: the clock set back while the phone sits unused, no event in between. The
// platform's monotonic clock counts the time.
#[test]
fn time_offline_is_counted_with_the_monotonic_clock() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::key();
    let mut a = provisioned(dir.path(), &key);
    let launch = r#""type":"app_launched","package":"com.android.camera""#;
    let last = t0().plus_seconds(29 * DAY);
    assert!(!a.handle(&at(last, launch)).unwrap().posture.camera_disabled);
    a.observe_uptime("boot-7", 1_000).unwrap();
    // Two days pass with the phone unused; the holder sets the clock back a month.
    a.observe_uptime("boot-7", 1_000 + 2 * DAY * 1000).unwrap();
    let d = a.handle(&at(last.plus_seconds(-30 * DAY), launch)).unwrap();
    assert!(
        d.posture.camera_disabled,
        "the bundle expired while the phone sat unused"
    );
    assert_eq!(
        a.engine().unwrap().fail_closed_reason(a.acting_time(t0())),
        Some(FailClosedReason::PolicyExpired)
    );
}

// A transport that records whether anything was sent.
struct Watch(std::sync::Mutex<usize>);
impl Transport for Watch {
    fn send(&self, _: &HttpRequest) -> Result<HttpResponse, TransportError> {
        *self.0.lock().unwrap() += 1;
        Err(TransportError("no server here".into()))
    }
}

// Attack 6: no trust on first use: enrolment (and so sync) refuse without a root provisioned
// out of band, before anything is sent; the network can only rotate a root.
#[test]
fn without_an_out_of_band_root_nothing_is_enrolled_or_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = open(dir.path()).unwrap();
    let w = Watch(std::sync::Mutex::new(0));
    let e = enroll(
        &mut a,
        &w,
        "http://127.0.0.1:9",
        "tok",
        Platform::Android,
        t0(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            baomi_core::agent::SyncError::Agent(AgentError::NoTrustRoot)
        ),
        "{e}"
    );
    assert_eq!(*w.0.lock().unwrap(), 0, "nothing may be sent");
    let key = common::key();
    assert_eq!(
        a.rotate_trust_root(&root(1, &[&key], &[&key], None), t0()),
        Err(AgentError::NoTrustRoot)
    );
    // And plain http:// off loopback is refused even with a root.
    a.provision_trust_root(&root(1, &[&key], &[&key], None), t0())
        .unwrap();
    let e = enroll(
        &mut a,
        &w,
        "http://10.1.2.3:8443",
        "tok",
        Platform::Android,
        t0(),
    )
    .unwrap_err();
    assert!(
        matches!(e, baomi_core::agent::SyncError::Transport(_)),
        "{e}"
    );
    assert_eq!(*w.0.lock().unwrap(), 0);
}

// Attack 7: a bundle signed with stolen keys (even fast-forwarded to a huge version) does not
// survive the rotation that drops those keys; the floor resets for the new keys' bundles.
#[test]
fn a_rotation_untrusts_the_stolen_keys_bundle_and_resets_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let stolen = common::key();
    let fresh = common::key();
    let mut a = open(dir.path()).unwrap();
    a.provision_trust_root(&root(1, &[&stolen], &[&stolen], None), t0())
        .unwrap();
    let device = a.store().device_id().to_owned();
    let mut open_policy = policy(&device);
    open_policy.sync.fail_closed.camera_disabled = true;
    // The thief publishes version 1,000,000.
    a.install_bundle(&bundle(&open_policy, 1_000_000, t0(), 30, &stolen), t0())
        .unwrap();
    // The office rotates to a root without the stolen key (signed by old and new keys).
    a.rotate_trust_root(&root(2, &[&fresh], &[&stolen, &fresh], None), t0())
        .unwrap();
    assert!(!a.installed().unwrap().trusted);
    assert_eq!(
        a.engine().unwrap().fail_closed_reason(t0()),
        Some(FailClosedReason::PolicyUntrusted)
    );
    assert!(a.posture().camera_disabled);
    assert_eq!(
        a.policy_state(),
        None,
        "the server is asked for its newest bundle"
    );
    // Still untrusted after a restart (re-verified at open).
    drop(a);
    let mut a = open(dir.path()).unwrap();
    assert!(!a.installed().unwrap().trusted);
    // The office's real bundle, version 2, installs: the floor was reset.
    a.install_bundle(&bundle(&policy(&device), 2, t0(), 30, &fresh), t0())
        .unwrap();
    assert!(a.installed().unwrap().trusted);
    assert_eq!(a.engine().unwrap().fail_closed_reason(t0()), None);
    // Bundles still signed by the stolen key are refused under the new root.
    assert!(matches!(
        a.install_bundle(&bundle(&policy(&device), 3, t0(), 30, &stolen), t0()),
        Err(AgentError::Bundle(BundleError::UnknownKey { .. }))
    ));
}

#[test]
fn roots_expire_and_bundles_cannot_claim_more_than_90_days() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::key();
    let mut a = open(dir.path()).unwrap();
    let expired = root(1, &[&key], &[&key], Some(t0().plus_seconds(-1)));
    assert!(matches!(
        a.provision_trust_root(&expired, t0()),
        Err(AgentError::Bundle(BundleError::Expired { .. }))
    ));
    let expiring = root(1, &[&key], &[&key], Some(t0().plus_seconds(10 * DAY)));
    a.provision_trust_root(&expiring, t0()).unwrap();
    // Offering the same root again (managed configuration re-delivers it) is a no-op.
    assert_eq!(a.provision_trust_root(&expiring, t0()).unwrap(), 1);
    let device = a.store().device_id().to_owned();
    // The office's tools refuse to sign it; a hand-made one is refused on the device.
    assert!(
        sign_bundle(
            &policy(&device),
            1,
            t0(),
            t0().plus_seconds(91 * DAY),
            &[&key]
        )
        .is_err()
    );
    let payload = serde_json::json!({
        "policy_id": "baseline",
        "version": 1,
        "issued_at": t0(),
        "expires_at": t0().plus_seconds(91 * DAY),
        "policy": policy(&device),
    });
    let long = Envelope::sign(
        POLICY_BUNDLE_TYPE,
        &serde_json::to_vec(&payload).unwrap(),
        &[&key],
    )
    .to_json();
    assert!(matches!(
        a.install_bundle(long.as_bytes(), t0()),
        Err(AgentError::Bundle(BundleError::ValidityTooLong {
            days: 91,
            max_days: 90
        }))
    ));
    a.install_bundle(&bundle(&policy(&device), 1, t0(), 30, &key), t0())
        .unwrap();
    // The root expires before the bundle: the device freezes then.
    let launch = r#""type":"app_launched","package":"com.android.camera""#;
    assert!(
        !a.handle(&at(t0().plus_seconds(9 * DAY), launch))
            .unwrap()
            .posture
            .camera_disabled
    );
    assert_eq!(
        a.engine()
            .unwrap()
            .fail_closed_reason(t0().plus_seconds(11 * DAY)),
        Some(FailClosedReason::PolicyExpired)
    );
}

fn custody(id: &str, doc: &str, action: CustodyAction, t: Timestamp) -> CustodyRecordDoc {
    CustodyRecordDoc {
        record_id: id.into(),
        holder: "hong".into(),
        document: doc.into(),
        classification: Classification::Secret,
        action,
        at: t,
    }
}

// Attack 8: an old signed return replayed later ends nothing; a return that does not follow the
// sign-out in force ends nothing; a record the device cannot apply yet is not consumed.
#[test]
fn replayed_or_out_of_order_custody_records_end_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::key();
    let mut a = provisioned(dir.path(), &key);
    let t = |m: i64| t0().plus_seconds(m * 60);
    let out1 = custody("r1", "D-1", CustodyAction::SignOut, t(1));
    let ret1 = custody("r2", "D-1", CustodyAction::Return, t(2));
    let out2 = custody("r3", "D-1", CustodyAction::SignOut, t(3));
    assert_eq!(
        a.apply_registry_custody(&out1, t(1)).unwrap(),
        CustodyOutcome::Applied
    );
    assert_eq!(
        a.apply_registry_custody(&ret1, t(2)).unwrap(),
        CustodyOutcome::Applied
    );
    assert!(!a.posture().camera_disabled);
    assert_eq!(
        a.apply_registry_custody(&out2, t(3)).unwrap(),
        CustodyOutcome::Applied
    );
    assert!(a.posture().camera_disabled);
    // The old return, replayed at a new cursor.
    assert_eq!(
        a.apply_registry_custody(&ret1, t(4)).unwrap(),
        CustodyOutcome::Duplicate
    );
    assert!(a.posture().camera_disabled);
    // A return never seen, but older than the sign-out in force.
    let stale = custody("r0", "D-1", CustodyAction::Return, t(2));
    assert_eq!(
        a.apply_registry_custody(&stale, t(4)).unwrap(),
        CustodyOutcome::Superseded
    );
    assert!(a.posture().camera_disabled);
    // An old sign-out replayed after the real return does not start custody again.
    let ret2 = custody("r4", "D-1", CustodyAction::Return, t(5));
    assert_eq!(
        a.apply_registry_custody(&ret2, t(5)).unwrap(),
        CustodyOutcome::Applied
    );
    assert!(!a.posture().camera_disabled);
    let old_out = custody("r-old", "D-1", CustodyAction::SignOut, t(3));
    assert_eq!(
        a.apply_registry_custody(&old_out, t(6)).unwrap(),
        CustodyOutcome::Superseded
    );
    assert!(!a.posture().camera_disabled);
    // For another holder: not applied, and the feed must stop there (see agent::sync).
    let mut other = custody("r9", "D-2", CustodyAction::SignOut, t(6));
    other.holder = "li".into();
    assert_eq!(
        a.apply_registry_custody(&other, t(6)).unwrap(),
        CustodyOutcome::NotApplicable
    );
    // The memory survives a restart.
    drop(a);
    let mut a = open(dir.path()).unwrap();
    assert_eq!(
        a.apply_registry_custody(&ret1, t(7)).unwrap(),
        CustodyOutcome::Duplicate
    );
}
