//! `baomi audit` and `baomi evidence` as an auditor runs them, against a real `baomi-server`
//! listener on loopback (issue 21): a clean ledger exits 0 and keeps the auditor's state; a row
//! an insider deleted exits 3 naming the device and seq; the witness's verdict reaches the
//! console; one violation's evidence exports and verifies offline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::process::{Command, Output};
use std::sync::Arc;

use baomi_core::agent::{Agent, enroll, sync_now};
use baomi_core::bundle::trust::{KeyEntry, TrustRootDoc};
use baomi_core::bundle::{SigningKey, TrustRoot, sign_bundle};
use baomi_core::compile::Platform;
use baomi_core::event::Event;
use baomi_core::level::Clearance;
use baomi_core::policy::Policy;
use baomi_core::policy::model::HolderAssignment;
use baomi_core::store::{HostFileKeyProvider, StoreOptions};
use baomi_core::sync::http::HttpTransport;
use baomi_core::time::Timestamp;
use baomi_server::console::officers::Role;
use baomi_server::db::Db;
use baomi_server::http::Listener;
use baomi_server::ledger::LogKey;
use baomi_server::upload_key::UploadKey;
use baomi_server::{Server, admin};

const PASSWORD: &str = "an auditor's long passphrase 42";

fn baomi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baomi"))
        .args(args)
        .env("BAOMI_OFFICER_PASSWORD", PASSWORD)
        .output()
        .unwrap()
}

#[test]
fn an_auditor_verifies_the_ledger_names_a_deleted_row_and_verifies_one_violations_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let url = format!("sqlite:{}", p("server.db"));
    let key = SigningKey::generate().unwrap();
    let upload = UploadKey::generate().unwrap();
    let root = TrustRoot::sign(
        &TrustRootDoc {
            version: 1,
            issued_at: Timestamp::now(),
            keys: vec![KeyEntry::of(key.public())],
            threshold: 1,
            registry: None,
            suite: Default::default(),
            sm2_id: None,
            personnel: None,
            upload_key: Some(upload.public_base64()),
            expires_at: None,
            policy: None,
        },
        &[&key],
    )
    .to_json();
    let (log, secret) = LogKey::generate("ledger.bmj.example").unwrap();
    std::fs::write(p("log.pub"), log.verifier_key()).unwrap();
    std::fs::write(p("upload.key"), upload.to_file()).unwrap();
    let office = || {
        Server::new(
            Db::open(&url, 2).unwrap(),
            Some(UploadKey::load(std::path::Path::new(&p("upload.key"))).unwrap()),
            Timestamp::now,
        )
        .unwrap()
        .with_log_key(LogKey::from_private(&secret).unwrap())
    };
    let admin = office();
    admin.publish_trust_root(root.as_bytes()).unwrap();
    admin
        .officer_add("qian.shenji", Role::Auditor, PASSWORD)
        .unwrap();
    let l = Listener::start(Arc::new(office()), "127.0.0.1:0".parse().unwrap(), None, 2).unwrap();
    let base = format!("http://{}", l.addr().unwrap());

    // One phone, enrolled, with three violations delivered.
    let now = Timestamp::now();
    let kek = HostFileKeyProvider::open_or_create(&dir.path().join("kek")).unwrap();
    let mut phone = Agent::open(
        &dir.path().join("store"),
        &kek,
        StoreOptions::default(),
        Platform::Android,
        now,
    )
    .unwrap();
    phone.provision_trust_root(root.as_bytes(), now).unwrap();
    let t = HttpTransport::new(&base);
    let token = admin::new_token(&admin, 1).unwrap();
    enroll(&mut phone, &t, &base, &token, Platform::Android, now).unwrap();
    let dev = phone.store().device_id().to_owned();
    let mut policy = Policy::from_json(include_bytes!("../../policies/baseline.json")).unwrap();
    policy.holders = vec![HolderAssignment {
        holder: "zhang.wei".into(),
        clearance: Clearance::Important,
        devices: vec![dev.clone()],
    }];
    let bundle = sign_bundle(&policy, 1, now, now.plus_seconds(86_400), &[&key]).unwrap();
    admin.publish_bundle(bundle.to_json().as_bytes()).unwrap();
    sync_now(&mut phone, &t, Timestamp::now()).unwrap();
    for i in 0..3 {
        let ev = Event::from_json_line(
            1,
            &format!(
                r#"{{"at":"{}","type":"app_launched","package":"com.tencent.mm"}}"#,
                Timestamp::now().plus_millis(i).to_rfc3339()
            ),
        )
        .unwrap();
        phone.handle(&ev).unwrap();
    }
    sync_now(&mut phone, &t, Timestamp::now()).unwrap();

    let (_, witness) = LogKey::generate("witness.audit.example").unwrap();
    std::fs::write(p("witness.key"), witness.as_str()).unwrap();
    // `baomi audit` as the auditor, keeping its state in `state`.
    let audit_as = |state: &str, extra: &[&str]| {
        let mut args = vec![
            "audit",
            "--server",
            &base,
            "--officer",
            "qian.shenji",
            "--log-key",
        ];
        let (k, s) = (p("log.pub"), p(state));
        args.extend([k.as_str(), "--state", s.as_str()]);
        args.extend(extra);
        baomi(&args)
    };
    let audit = |extra: &[&str]| audit_as("state.json", extra);
    let w = p("witness.key");
    let out = audit(&["--witness", &w]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "device {dev}: 3 records, signed through seq 3, complete"
        )),
        "{stdout}"
    );
    assert!(std::path::Path::new(&p("state.json")).exists());
    // The witness's verdict is what the console shows.
    let w = admin.ledger_witnesses().unwrap();
    assert_eq!(w[0].0, "witness.audit.example");

    // Evidence of violation 2, exported and verified offline.
    let (e, k) = (p("evidence.json"), p("log.pub"));
    let out = baomi(&[
        "evidence",
        "export",
        "--server",
        &base,
        "--officer",
        "qian.shenji",
        "--device",
        &dev,
        "--seq",
        "2",
        "--out",
        &e,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = baomi(&["evidence", "verify", &e, "--log-key", &k]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("violation 2 of device {dev}")),
        "{stdout}"
    );

    // The insider deletes violation 2.
    rusqlite::Connection::open(p("server.db"))
        .unwrap()
        .execute("DELETE FROM violations WHERE seq = 2", [])
        .unwrap();
    let out = audit(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FINDING: device {dev} seq 2: deleted from the office's records"
        )),
        "{stdout}"
    );

    // The phone carries the log's checkpoint (shown it at one sync, reported at the next);
    // the insider then restores a database from before the log began, and a new auditor
    // with the phone in hand (its note from `baomi agent status`) runs as a witness.
    sync_now(&mut phone, &t, Timestamp::now()).unwrap();
    sync_now(&mut phone, &t, Timestamp::now()).unwrap();
    let carried = phone.sync_state().log_checkpoint.clone().unwrap();
    std::fs::write(p("phone.note"), &carried).unwrap();
    rusqlite::Connection::open(p("server.db"))
        .unwrap()
        .execute_batch(
            "DELETE FROM ledger_leaves; DELETE FROM ledger_hashes; DELETE FROM ledger_checkpoints;
             DELETE FROM ledger_queue; UPDATE server_meta SET value = '0' WHERE name = 'ledger_size';
             UPDATE devices SET log_seen = NULL, log_seen_size = NULL, log_seen_at = NULL;",
        )
        .unwrap();
    let (s, n, w) = (p("new-state.json"), p("phone.note"), p("witness.key"));
    let out = audit_as("new-state.json", &["--carried", &n, "--witness", &w]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let size = carried.lines().nth(1).unwrap();
    let finding =
        format!("rollback: device {n} carries the log's signed checkpoint of size {size}");
    assert!(stdout.contains(&finding), "{stdout}");
    assert!(
        !std::path::Path::new(&s).exists(),
        "nothing verified, nothing kept"
    );
    // Not cosigned, but on the console: the witness's report names the rollback.
    let (_, _, report, _) = admin.ledger_witnesses().unwrap().remove(0);
    assert!(report.contains("carried_rollback"), "{report}");
    l.stop();
}
