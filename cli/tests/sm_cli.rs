//! Issue 24, keys and CLI: `baomi keys new --suite sm` writes SM2 key files, `baomi trust new
//! --suite sm` records the suite (and `trust verify` names it), a bundle signed with SM2 keys
//! verifies under that root, and an Ed25519 key given to an sm root is refused with an error
//! that says so.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::process::{Command, Output};

fn baomi(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baomi"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn an_sm_office_is_made_with_the_cli_and_a_mixed_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in ["root", "office"] {
        let out = ok(&baomi(d, &["keys", "new", "--suite", "sm", "--out", k]));
        assert!(out.contains("sm key id"), "{out}");
    }
    ok(&baomi(d, &["keys", "new", "--out", "ed"]));
    let public: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("root.pub")).unwrap()).unwrap();
    assert_eq!(public["type"], "baomi-sm2-public-key");
    let out = ok(&baomi(
        d,
        &[
            "trust",
            "new",
            "--suite",
            "sm",
            "--key",
            "root.pub",
            "--threshold",
            "1",
            "--sign-key",
            "root.key",
            "--policy-key",
            "office.pub",
            "--out",
            "trust.json",
        ],
    ));
    assert!(out.contains("(sm suite)"), "{out}");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/baseline.json");
    ok(&baomi(
        d,
        &[
            "bundle",
            "sign",
            "--policy",
            policy.to_str().unwrap(),
            "--key",
            "office.key",
            "--version",
            "1",
            "--out",
            "b1.json",
        ],
    ));
    ok(&baomi(
        d,
        &[
            "bundle",
            "verify",
            "--trust",
            "trust.json",
            "--bundle",
            "b1.json",
        ],
    ));
    // An Ed25519 policy key in an sm root: refused, exit 3, and why.
    let mixed = baomi(
        d,
        &[
            "trust",
            "new",
            "--suite",
            "sm",
            "--key",
            "root.pub",
            "--threshold",
            "1",
            "--sign-key",
            "root.key",
            "--policy-key",
            "ed.pub",
            "--out",
            "mixed.json",
        ],
    );
    assert_eq!(mixed.status.code(), Some(3));
    let err = String::from_utf8_lossy(&mixed.stderr);
    assert!(err.contains("suite"), "{err}");
    assert!(!d.join("mixed.json").exists());
}
