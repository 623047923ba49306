//! A full disk (issue 15): the agent runs in a child process whose file-size limit
//! (`ulimit -f`, SIGXFSZ ignored, so writes fail with EFBIG as on a full disk) stops the store
//! from growing, mid-append and mid-install. Evidence already written is kept, the error is
//! the typed `storage full`, the posture fails closed at once, a bundle install that cannot be
//! written leaves the old policy in force, nothing is corrupted, and once space returns the
//! same store takes records again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::path::Path;
use std::process::Command;

use baomi_core::agent::Agent;
use baomi_core::bundle::{SigningKey, sign_bundle};
use baomi_core::event::Event;
use baomi_core::level::Clearance;
use baomi_core::time::Timestamp;

const CHILD_ENV: &str = "BAOMI_DISK_FULL_DIR";

fn open(dir: &Path) -> Agent {
    common::agent_in(dir, common::store_options(), Timestamp::now()).unwrap()
}

fn bundle(key: &SigningKey, device: &str, version: u64, clearance: Clearance) -> Vec<u8> {
    let mut p = common::assigned(device, clearance);
    // A long description makes the bundle big enough not to fit in what little room is left.
    p.description = "x".repeat(200_000);
    let t = Timestamp::now();
    sign_bundle(
        &p,
        version,
        Timestamp(t.0 - 1_000),
        t.plus_seconds(86_400),
        &[key],
    )
    .unwrap()
    .to_json()
    .into_bytes()
}

fn launch(a: &mut Agent) -> Result<bool, baomi_core::agent::AgentError> {
    let ev = Event::from_json_line(
        1,
        &format!(
            r#"{{"at":"{}","type":"app_launched","package":"com.tencent.mm"}}"#,
            Timestamp::now().to_rfc3339()
        ),
    )
    .unwrap();
    a.handle(&ev).map(|d| d.violation)
}

/// The child, under the file-size limit: appends until the disk is "full", then tries to
/// install the next bundle, and reports.
#[test]
fn disk_full_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let mut a = open(dir);
    let mut committed = 0u64;
    let err = loop {
        match launch(&mut a) {
            Ok(_) => committed = a.chain_state().head_seq,
            Err(e) => break e.to_string(),
        }
        assert!(committed < 1_000_000, "the limit never bit");
    };
    println!("committed {committed}");
    println!("error {err}");
    println!("camera_disabled {}", a.posture().camera_disabled);
    let key = SigningKey::from_file_json(&std::fs::read_to_string(dir.join("office.key")).unwrap())
        .unwrap();
    let device = a.store().device_id().to_owned();
    match a.install_bundle(
        &bundle(&key, &device, 2, Clearance::Important),
        Timestamp::now(),
    ) {
        Ok(_) => println!("install ok"),
        Err(e) => println!("install error {e}"),
    }
}

#[test]
fn a_full_disk_keeps_evidence_fails_closed_and_recovers() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    std::fs::write(dir.path().join("office.key"), key.to_file().as_bytes()).unwrap();
    {
        let mut a = open(dir.path());
        let doc = common::root_doc(1, &[&key], 1, Timestamp(Timestamp::now().0 - 60_000));
        a.provision_trust_root(&common::signed_root(&doc, &[&key]), Timestamp::now())
            .unwrap();
        let device = a.store().device_id().to_owned();
        a.install_bundle(
            &bundle(&key, &device, 1, Clearance::General),
            Timestamp::now(),
        )
        .unwrap();
    }
    let db_bytes: u64 = std::fs::read_dir(dir.path().join("store"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    // Room for a few hundred records more, not for another 200 kB bundle.
    let limit_kib = db_bytes / 1024 + 96;
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" --exact disk_full_child --nocapture --test-threads=1"))
        .arg(&exe)
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        let key = format!("{name} ");
        text.lines()
            .find_map(|l| l.find(&key).map(|i| l[i + key.len()..].to_owned()))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let committed: u64 = field("committed").parse().unwrap();
    assert!(committed > 10, "{text}");
    // EFBIG (the stand-in for ENOSPC here) is SQLITE_IOERR_WRITE: `storage write failed`; a
    // real full disk is SQLITE_FULL: `storage full`. Both are typed, both fail closed.
    assert!(
        field("error").starts_with("violation store: storage")
            || field("error").starts_with("storage"),
        "a typed error: {text}"
    );
    assert_eq!(
        field("camera_disabled"),
        "true",
        "fails closed at once: {text}"
    );
    assert!(
        field("install").starts_with("error") && field("install").contains("storage"),
        "{text}"
    );

    // Space returns: the same store opens, verifies, kept every committed record and the old
    // policy, and takes records again.
    let mut a = open(dir.path());
    let report = a.store().verify().unwrap();
    assert!(report.head >= committed, "{} < {committed}", report.head);
    assert_eq!(
        a.installed().unwrap().header.version,
        1,
        "the install that could not be written left v1 in force"
    );
    assert!(launch(&mut a).unwrap());
    assert!(a.store().verify().unwrap().head > report.head);
    assert!(
        !a.posture().camera_disabled
            || a.engine()
                .unwrap()
                .fail_closed_reason(Timestamp::now())
                .is_none()
    );
}
