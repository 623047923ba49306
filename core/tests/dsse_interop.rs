//! Issue 21: every signed object an inquiry relies on verifies with an independent
//! implementation. Baomi's envelopes (a policy bundle, a trust root, a custody record) are
//! handed to `securesystemslib`'s DSSE verifier (Python, PyPI; installed by `.ci/run`), which
//! knows nothing of Baomi: it must accept them, and refuse one whose payload was changed.
//! Outside CI the test is skipped when the package is missing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::process::Command;

use baomi_core::bundle::envelope::Envelope;
use baomi_core::bundle::{SigningKey, TrustRoot, sign_bundle};
use baomi_core::level::Classification;
use baomi_core::policy::Policy;
use baomi_core::sync::custody::{CustodyAction, CustodyRecordDoc, sign_custody_record};
use baomi_core::time::Timestamp;

const VERIFY: &str = r#"
import json, sys
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
cases = json.load(sys.stdin)
out = []
for c in cases:
    env = Envelope.from_dict(json.loads(c["envelope"]))
    keys = [SSlibKey(k["keyid"], "ed25519", "ed25519", {"public": k["public"]}) for k in c["keys"]]
    try:
        env.verify(keys, c["threshold"])
        out.append("ok")
    except Exception as e:
        out.append("refused: " + type(e).__name__)
print(json.dumps(out))
"#;

fn have_verifier() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import securesystemslib.dsse"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install securesystemslib (.ci/run)"
        );
        eprintln!("skipped: python3 -m pip install securesystemslib");
    }
    ok
}

fn case(env: &Envelope, keys: &[&SigningKey], threshold: usize) -> serde_json::Value {
    serde_json::json!({
        "envelope": env.to_json(),
        "threshold": threshold,
        "keys": keys.iter().map(|k| serde_json::json!({
            "keyid": k.public().keyid().0,
            "public": baomi_core::bundle::keys::hex(&k.public().raw()),
        })).collect::<Vec<_>>(),
    })
}

#[test]
fn a_standard_dsse_verifier_accepts_baomis_envelopes_and_refuses_an_altered_one() {
    if !have_verifier() {
        return;
    }
    let now = Timestamp::parse("2026-12-03T10:00:00+08:00").unwrap();
    let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap()).collect();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    let root = TrustRoot::sign(&common::root_doc(1, &refs, 2, now), &refs[..2]);
    let policy = Policy::from_json(include_bytes!("../../policies/baseline.json")).unwrap();
    let bundle = sign_bundle(&policy, 1, now, now.plus_seconds(86_400), &refs[..2]).unwrap();
    let custody = sign_custody_record(
        &CustodyRecordDoc {
            record_id: "r-1".into(),
            holder: "wu.gang".into(),
            document: "doc-7".into(),
            classification: Classification::Secret,
            action: CustodyAction::SignOut,
            at: now,
        },
        &refs[..1],
    )
    .unwrap();
    let mut altered = bundle.clone();
    altered.payload = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut p = b64.decode(&altered.payload).unwrap();
        p[10] ^= 1;
        b64.encode(p)
    };
    let cases = serde_json::json!([
        case(&root, &refs, 2),
        case(&bundle, &refs, 2),
        case(&custody, &refs, 1),
        case(&altered, &refs, 2),
    ]);
    let mut child = Command::new("python3")
        .args(["-c", VERIFY])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), cases.to_string().as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let verdicts: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdicts[..3], ["ok", "ok", "ok"], "{verdicts:?}");
    assert!(verdicts[3].starts_with("refused"), "{verdicts:?}");
}
