//! Every way a bundle or trust root is refused has its own error, and nothing weaker passes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use baomi_core::bundle::envelope::Envelope;
use baomi_core::bundle::trust::{KeyEntry, RoleKeys, TrustRootDoc};
use baomi_core::bundle::{
    BundleError, Installed, MAX_BUNDLE_BYTES, POLICY_BUNDLE_TYPE, SigningKey, TrustRoot,
    sign_bundle, verify_bundle,
};
use baomi_core::policy::Policy;
use baomi_core::time::Timestamp;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

const BASELINE: &str = include_str!("../../policies/baseline.json");

struct Office {
    keys: Vec<SigningKey>,
    root: TrustRoot,
}

fn now() -> Timestamp {
    Timestamp::parse("2026-11-27T10:00:00+08:00").unwrap()
}

fn root_doc(keys: &[&SigningKey], threshold: u32, version: u64) -> TrustRootDoc {
    common::root_doc(version, keys, threshold, now())
}

/// Three office keys, two must sign.
fn office() -> Office {
    let keys: Vec<SigningKey> = (0..3).map(|_| common::key()).collect();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    let env = TrustRoot::sign(&root_doc(&refs, 2, 1), &refs[..2]);
    let root = TrustRoot::from_self_signed(env.to_json().as_bytes()).unwrap();
    Office { keys, root }
}

fn policy() -> Policy {
    Policy::from_json(BASELINE.as_bytes()).unwrap()
}

fn signed(policy: &Policy, version: u64, keys: &[&SigningKey]) -> Vec<u8> {
    sign_bundle(
        policy,
        version,
        now(),
        now().plus_seconds(86_400 * 30),
        keys,
    )
    .unwrap()
    .to_json()
    .into_bytes()
}

fn installed(version: u64) -> Installed {
    Installed {
        policy_id: Some("baseline".into()),
        version,
    }
}

#[test]
fn a_threshold_signed_bundle_verifies_and_reports_its_digest() {
    let o = office();
    let b = signed(&policy(), 3, &[&o.keys[0], &o.keys[2]]);
    let v = verify_bundle(&b, &o.root, &installed(2), now()).unwrap();
    assert_eq!(v.header.version, 3);
    assert_eq!(v.header.policy_id, "baseline");
    assert_eq!(v.digest.len(), 64);
}

#[test]
fn a_changed_payload_is_a_bad_signature() {
    let o = office();
    let b = signed(&policy(), 1, &[&o.keys[0], &o.keys[1]]);
    let mut env: Envelope = serde_json::from_slice(&b).unwrap();
    let mut payload = B64.decode(&env.payload).unwrap();
    // Turn the camera back on: the attack a forged bundle would make.
    let text = String::from_utf8(payload.clone()).unwrap().replacen(
        "disable_camera",
        "disable_screen_capture",
        1,
    );
    payload = text.into_bytes();
    env.payload = B64.encode(&payload);
    let err = verify_bundle(
        env.to_json().as_bytes(),
        &o.root,
        &Installed::default(),
        now(),
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::BadSignature { .. }), "{err}");
}

#[test]
fn a_bundle_signed_by_keys_outside_the_root_is_an_unknown_key() {
    let o = office();
    let stranger = common::key();
    let b = signed(&policy(), 1, &[&stranger]);
    let err = verify_bundle(&b, &o.root, &Installed::default(), now()).unwrap_err();
    assert_eq!(
        err,
        BundleError::UnknownKey {
            keyid: stranger.public().keyid().0.clone(),
            role: "policy keys"
        }
    );
}

#[test]
fn one_signature_where_two_are_required_fails_the_threshold() {
    let o = office();
    let b = signed(&policy(), 1, &[&o.keys[1]]);
    let err = verify_bundle(&b, &o.root, &Installed::default(), now()).unwrap_err();
    assert_eq!(
        err,
        BundleError::ThresholdNotMet {
            role: "policy keys",
            valid: 1,
            threshold: 2
        }
    );
    // A stranger's signature does not make up the difference.
    let stranger = common::key();
    let b = signed(&policy(), 1, &[&o.keys[1], &stranger]);
    let err = verify_bundle(&b, &o.root, &Installed::default(), now()).unwrap_err();
    assert_eq!(
        err,
        BundleError::ThresholdNotMet {
            role: "policy keys",
            valid: 1,
            threshold: 2
        }
    );
}

#[test]
fn an_unsigned_envelope_is_refused_as_unsigned() {
    let o = office();
    let b = signed(&policy(), 1, &[]);
    assert_eq!(
        verify_bundle(&b, &o.root, &Installed::default(), now()).unwrap_err(),
        BundleError::Unsigned {
            what: "policy bundle"
        }
    );
}

#[test]
fn same_or_older_versions_are_rollbacks() {
    let o = office();
    let ks = [&o.keys[0], &o.keys[1]];
    for v in [4, 5] {
        let err =
            verify_bundle(&signed(&policy(), v, &ks), &o.root, &installed(5), now()).unwrap_err();
        assert_eq!(
            err,
            BundleError::Rollback {
                installed: 5,
                offered: v
            }
        );
    }
}

#[test]
fn an_expired_bundle_is_refused_as_frozen() {
    let o = office();
    let b = signed(&policy(), 1, &[&o.keys[0], &o.keys[1]]);
    let later = now().plus_seconds(86_400 * 30);
    let err = verify_bundle(&b, &o.root, &Installed::default(), later).unwrap_err();
    assert!(matches!(err, BundleError::Expired { .. }), "{err}");
}

#[test]
fn a_bundle_for_another_policy_id_is_refused() {
    let o = office();
    let mut p = policy();
    p.policy_id = "another-ministry".into();
    let err = verify_bundle(
        &signed(&p, 9, &[&o.keys[0], &o.keys[1]]),
        &o.root,
        &installed(1),
        now(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        BundleError::WrongPolicyId {
            expected: "baseline".into(),
            found: "another-ministry".into()
        }
    );
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let o = office();
    let big = vec![b' '; MAX_BUNDLE_BYTES + 1];
    assert!(matches!(
        verify_bundle(&big, &o.root, &Installed::default(), now()),
        Err(BundleError::Oversized { size, limit: MAX_BUNDLE_BYTES, .. }) if size == MAX_BUNDLE_BYTES + 1
    ));
}

#[test]
fn malformed_input_is_malformed_never_a_panic() {
    let o = office();
    for bad in [&b""[..], b"{", b"[]", b"{\"payload_type\":1}", b"\xff\xfe"] {
        let err = verify_bundle(bad, &o.root, &Installed::default(), now()).unwrap_err();
        assert!(matches!(err, BundleError::Malformed { .. }), "{err}");
    }
    let env = Envelope {
        payload_type: POLICY_BUNDLE_TYPE.into(),
        payload: "!!".into(),
        signatures: vec![],
    };
    let err = verify_bundle(
        env.to_json().as_bytes(),
        &o.root,
        &Installed::default(),
        now(),
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::Malformed { .. }), "{err}");
}

#[test]
fn a_signed_payload_that_is_not_a_bundle_is_malformed_and_a_bad_policy_is_invalid() {
    let o = office();
    let ks = [&o.keys[0], &o.keys[1]];
    let env = Envelope::sign(POLICY_BUNDLE_TYPE, b"{\"hello\":1}", &ks);
    let err = verify_bundle(
        env.to_json().as_bytes(),
        &o.root,
        &Installed::default(),
        now(),
    )
    .unwrap_err();
    assert!(matches!(err, BundleError::Malformed { .. }), "{err}");

    // Signed by the office, but the policy inside references an undefined app set.
    let payload = format!(
        r#"{{"policy_id":"baseline","version":1,"issued_at":"2026-11-27T00:00:00Z","expires_at":"2027-01-01T00:00:00Z","policy":{}}}"#,
        BASELINE.replace(
            "\"ban_apps\": \"messengers\"",
            "\"ban_apps\": \"mesengers\""
        )
    );
    let env = Envelope::sign(POLICY_BUNDLE_TYPE, payload.as_bytes(), &ks);
    let err = verify_bundle(
        env.to_json().as_bytes(),
        &o.root,
        &Installed::default(),
        now(),
    )
    .unwrap_err();
    let BundleError::InvalidPolicy(errs) = &err else {
        panic!("{err}")
    };
    assert!(err.to_string().contains("`mesengers`"), "{err}");
    assert_eq!(errs.0[0].rule(), Some("no-messengers-for-classified-staff"));
}

#[test]
fn a_trust_root_is_not_accepted_as_a_policy_bundle() {
    let o = office();
    let refs: Vec<&SigningKey> = o.keys.iter().collect();
    let root_env = TrustRoot::sign(&root_doc(&refs, 2, 2), &refs[..2]).to_json();
    let err =
        verify_bundle(root_env.as_bytes(), &o.root, &Installed::default(), now()).unwrap_err();
    assert!(matches!(err, BundleError::WrongPayloadType { .. }), "{err}");
}

#[test]
fn key_rotation_needs_both_the_old_and_the_new_threshold() {
    let o = office();
    let new_keys: Vec<SigningKey> = (0..2).map(|_| common::key()).collect();
    let new_refs: Vec<&SigningKey> = new_keys.iter().collect();
    let doc = root_doc(&new_refs, 2, 2);

    // Signed by the new keys only: the current office did not approve.
    let env = TrustRoot::sign(&doc, &new_refs);
    let err = o.root.rotate(env.to_json().as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::UnknownKey {
                role: "current trust root",
                ..
            }
        ),
        "{err}"
    );

    // Signed by the old office only: the new keys never proved possession.
    let env = TrustRoot::sign(&doc, &[&o.keys[0], &o.keys[1]]);
    let err = o.root.rotate(env.to_json().as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::UnknownKey {
                role: "new trust root",
                ..
            }
        ),
        "{err}"
    );

    // Both: accepted, and the new root then verifies bundles from the new keys only.
    let env = TrustRoot::sign(&doc, &[&o.keys[0], &o.keys[1], &new_keys[0], &new_keys[1]]);
    let rotated = o.root.rotate(env.to_json().as_bytes()).unwrap();
    assert_eq!(rotated.version(), 2);
    let b = signed(&policy(), 2, &[&new_keys[0], &new_keys[1]]);
    verify_bundle(&b, &rotated, &installed(1), now()).unwrap();
    let old = signed(&policy(), 3, &[&o.keys[0], &o.keys[1]]);
    assert!(matches!(
        verify_bundle(&old, &rotated, &installed(2), now()),
        Err(BundleError::UnknownKey { .. })
    ));

    // Skipping a version is refused, as is replaying the current one.
    for v in [1, 3] {
        let env = TrustRoot::sign(
            &root_doc(&new_refs, 2, v),
            &[&o.keys[0], &o.keys[1], &new_keys[0], &new_keys[1]],
        );
        assert_eq!(
            o.root.rotate(env.to_json().as_bytes()).unwrap_err(),
            BundleError::TrustRootVersion {
                installed: 1,
                offered: v
            }
        );
    }
}

#[test]
fn inconsistent_trust_roots_are_refused() {
    let k = common::key();
    // Threshold above the key count.
    let env = TrustRoot::sign(&root_doc(&[&k], 2, 1), &[&k]);
    assert!(matches!(
        TrustRoot::from_self_signed(env.to_json().as_bytes()),
        Err(BundleError::InvalidTrustRoot(_))
    ));
    // Threshold zero would accept anything.
    let env = TrustRoot::sign(&root_doc(&[&k], 0, 1), &[&k]);
    assert!(matches!(
        TrustRoot::from_self_signed(env.to_json().as_bytes()),
        Err(BundleError::InvalidTrustRoot(_))
    ));
    // A key listed under another key's id.
    let other = common::key();
    let mut doc = root_doc(&[&k], 1, 1);
    doc.keys[0].keyid = other.public().keyid().clone();
    let env = TrustRoot::sign(&doc, &[&k]);
    assert!(matches!(
        TrustRoot::from_self_signed(env.to_json().as_bytes()),
        Err(BundleError::InvalidTrustRoot(_))
    ));
    // The same key twice cannot satisfy a threshold of two.
    let mut doc = root_doc(&[&k, &k], 2, 1);
    doc.registry = Some(RoleKeys {
        keys: vec![KeyEntry::of(other.public())],
        threshold: 1,
    });
    let env = TrustRoot::sign(&doc, &[&k]);
    assert!(matches!(
        TrustRoot::from_self_signed(env.to_json().as_bytes()),
        Err(BundleError::InvalidTrustRoot(_))
    ));
    // A root not signed by its own keys.
    let env = TrustRoot::sign(&root_doc(&[&k], 1, 1), &[&other]);
    assert!(matches!(
        TrustRoot::from_self_signed(env.to_json().as_bytes()),
        Err(BundleError::UnknownKey { .. })
    ));
}
