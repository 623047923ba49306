//! The `baomi` binary as an officer uses it: exit codes, messages, and the scenario corpus
//! replayed through `baomi simulate`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use baomi_core::posture::Posture;
use baomi_scenarios::{Observed, all, baseline, check};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn baomi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baomi"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn policy_check_passes_the_baseline() {
    let o = baomi(&["policy", "check", "policies/baseline.json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.starts_with("ok: policy `baseline`"), "{out}");
}

#[test]
fn policy_check_points_at_the_offending_field_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    let mut v: serde_json::Value = serde_json::from_str(baomi_scenarios::BASELINE_POLICY).unwrap();
    v["rules"][2]["when"] = serde_json::json!({"in_zone": ["vault"]});
    std::fs::write(&bad, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let o = baomi(&["policy", "check", p(&bad)]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(3));
    assert!(err.contains("rules[2].when.in_zone[0] in rule `no-capture-in-secure-zone`: zone `vault` is not defined"), "{err}");

    let o = baomi(&["policy", "check", "does/not/exist.json"]);
    assert_eq!(o.status.code(), Some(1));
}

struct Office {
    dir: tempfile::TempDir,
}

impl Office {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Two office keys (2-of-2), a trust root and a signed baseline v1, in the suite under
    /// test (`BAOMI_TEST_SUITE`, `intl` unless set: `.ci/test` runs these again with `sm`).
    fn new() -> Self {
        let o = Office {
            dir: tempfile::tempdir().unwrap(),
        };
        let suite = std::env::var("BAOMI_TEST_SUITE").unwrap_or_else(|_| "intl".into());
        for k in ["a", "b"] {
            let out = baomi(&["keys", "new", "--suite", &suite, "--out", p(&o.path(k))]);
            assert!(out.status.success(), "{:?}", text(&out));
        }
        let out = baomi(&[
            "trust",
            "new",
            "--suite",
            &suite,
            "--key",
            p(&o.path("a.pub")),
            "--key",
            p(&o.path("b.pub")),
            "--threshold",
            "2",
            "--sign-key",
            p(&o.path("a.key")),
            "--sign-key",
            p(&o.path("b.key")),
            "--out",
            p(&o.path("trust.json")),
        ]);
        assert!(out.status.success(), "{:?}", text(&out));
        o.sign(1, &["a", "b"], "v1.json");
        o
    }

    fn sign(&self, version: u32, keys: &[&str], out: &str) -> Output {
        let mut args = vec![
            "bundle".to_owned(),
            "sign".into(),
            "--policy".into(),
            "policies/baseline.json".into(),
        ];
        for k in keys {
            args.extend([
                "--key".into(),
                p(&self.path(&format!("{k}.key"))).to_owned(),
            ]);
        }
        args.extend([
            "--version".into(),
            version.to_string(),
            "--out".into(),
            p(&self.path(out)).to_owned(),
        ]);
        baomi(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn verify(&self, bundle: &str, extra: &[&str]) -> Output {
        let trust = self.path("trust.json");
        let b = self.path(bundle);
        let mut args = vec!["bundle", "verify", "--trust", p(&trust), "--bundle", p(&b)];
        args.extend_from_slice(extra);
        baomi(&args)
    }
}

#[test]
fn a_private_key_file_is_readable_by_its_owner_only() {
    let o = Office::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(o.path("a.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never overwritten.
    let out = baomi(&["keys", "new", "--out", p(&o.path("a"))]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bundle_verify_accepts_a_good_bundle_with_a_one_line_summary() {
    let o = Office::new();
    let out = o.verify("v1.json", &[]);
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(stdout.lines().count(), 1);
    assert!(
        stdout.starts_with("ok: policy `baseline` v1, 5 rules"),
        "{stdout}"
    );
}

#[test]
fn bundle_verify_rejects_with_exit_3_and_the_reason() {
    let o = Office::new();
    let cases: Vec<(Output, &str)> = vec![
        (
            o.verify("v1.json", &["--installed-version", "1"]),
            "rollback refused",
        ),
        (
            o.verify("v1.json", &["--policy-id", "other"]),
            "this device runs `other`",
        ),
        (
            o.verify("v1.json", &["--now", "2099-01-01T00:00:00Z"]),
            "a frozen policy is refused",
        ),
        (
            {
                assert!(o.sign(2, &["a"], "one-sig.json").status.success());
                o.verify("one-sig.json", &[])
            },
            "1 valid signature(s) from the policy keys, 2 required",
        ),
        (
            {
                let mut b = std::fs::read_to_string(o.path("v1.json")).unwrap();
                let i = b.find("\"payload\": \"").unwrap() + 20;
                let c = if &b[i..i + 1] == "A" { "B" } else { "A" };
                b.replace_range(i..i + 1, c);
                std::fs::write(o.path("tampered.json"), b).unwrap();
                o.verify("tampered.json", &[])
            },
            "does not verify",
        ),
    ];
    for (out, want) in cases {
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(err.contains(want), "want `{want}` in {err}");
    }
}

fn observed(stdout: &str) -> Vec<Observed> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Observed {
                verdict: v["verdict"].as_str().unwrap().to_owned(),
                violation: v["violation"].as_bool().unwrap(),
                rules: v["rules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
                posture: serde_json::from_value::<Posture>(v["posture"].clone()).unwrap(),
            }
        })
        .collect()
}

#[test]
fn simulate_replays_every_scenario_as_the_core_does() {
    let policy = baseline().unwrap();
    for s in all().unwrap() {
        let events = format!("tests/scenarios/{}.events.jsonl", s.name);
        let platform = format!("{:?}", s.platform).to_lowercase();
        let out = baomi(&[
            "simulate",
            "--policy",
            "policies/baseline.json",
            "--clearance",
            s.clearance.as_str(),
            "--platform",
            &platform,
            "--events",
            &events,
        ]);
        let (stdout, err) = text(&out);
        assert!(out.status.success(), "{}: {err}", s.name);
        check(&s, &policy, &observed(&stdout)).unwrap();
    }
}

#[test]
fn simulate_reads_a_signed_bundle_with_its_trust_root() {
    let o = Office::new();
    let trust = o.path("trust.json");
    let bundle = o.path("v1.json");
    let out = baomi(&[
        "simulate",
        "--policy",
        p(&bundle),
        "--trust",
        p(&trust),
        "--clearance",
        "general",
        "--events",
        "tests/scenarios/case1-urgent-relay.events.jsonl",
    ]);
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(observed(&stdout).iter().filter(|d| d.violation).count(), 5);
    // A signed bundle without --trust is a usage error, not silently trusted.
    let out = baomi(&[
        "simulate",
        "--policy",
        p(&bundle),
        "--clearance",
        "general",
        "--events",
        "tests/scenarios/case1-urgent-relay.events.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn simulate_stops_at_a_bad_line_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("e.jsonl");
    std::fs::write(
        &events,
        "{\"at\":\"2026-11-23T09:00:00+08:00\",\"type\":\"app_launched\",\"package\":\"com.tencent.mm\"}\n\n{\"at\":\"2026-11-23T09:00:00+08:00\",\"type\":\"teleport\"}\n",
    )
    .unwrap();
    let out = baomi(&[
        "simulate",
        "--policy",
        "policies/baseline.json",
        "--clearance",
        "core",
        "--events",
        p(&events),
    ]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        stdout.lines().count(),
        1,
        "the good line before it was decided"
    );
    assert!(
        err.contains("line 3: unknown event type `teleport`"),
        "{err}"
    );

    let out = baomi(&[
        "simulate",
        "--policy",
        "policies/baseline.json",
        "--clearance",
        "secret",
        "--events",
        p(&events),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "unknown clearance is a usage error"
    );
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = baomi(&["demo", "--dir", p(dir.path())]);
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    for want in [
        "2-of-3 root keys, 2-of-3 policy keys",
        "rollback refused",
        "a frozen policy is refused",
        "case1-urgent-relay",
        "== Summary",
    ] {
        assert!(stdout.contains(want), "missing `{want}`");
    }
    assert!(!stdout.contains("ACCEPTED"), "{stdout}");
    assert!(dir.path().join("baseline.bundle.json").exists());
}

#[test]
fn simulate_records_into_a_store_that_log_shows_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("device");
    let out = baomi(&[
        "simulate",
        "--policy",
        "policies/baseline.json",
        "--clearance",
        "general",
        "--events",
        "tests/scenarios/case1-urgent-relay.events.jsonl",
        "--store",
        p(&store),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = baomi(&["log", "show", "--store", p(&store)]);
    let (stdout, _) = text(&out);
    let seqs: Vec<u64> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert!(stdout.contains("SHIWEI") || stdout.contains("com.tencent.mm"));
    let out = baomi(&["log", "verify", "--store", p(&store)]);
    assert!(out.status.success());
    assert!(text(&out).0.starts_with("ok: 5 records intact"));

    // Someone deletes the photo record: verify names the gap and exits 3.
    let db = rusqlite::Connection::open(store.join("baomi.db")).unwrap();
    db.execute("DELETE FROM violations WHERE seq = 3", [])
        .unwrap();
    drop(db);
    let out = baomi(&["log", "verify", "--store", p(&store)]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out).1.contains("records 3..=3 are missing"),
        "{:?}",
        text(&out)
    );

    let out = baomi(&["log", "verify", "--store", p(&dir.path().join("nothing"))]);
    assert_eq!(out.status.code(), Some(2));
}
