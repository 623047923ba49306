//! Issue 21: evidence an inquiry can trust. A real `baomi-server` (in process, over loopback,
//! on SQLite and on PostgreSQL when `BAOMI_TEST_PG_URL` is set) receives two phones' records;
//! then an insider with the database deletes, edits, swaps, rolls back, forks and drops, and
//! `baomi audit`'s checks (the HTTP source the CLI uses, as an auditor officer) report each
//! with its own finding naming the device and seq (or the checkpoint). An evidence package
//! exported for one violation verifies offline, and refuses an edited record.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::sync::Arc;

use baomi_core::agent::{Agent, enroll, sync_now};
use baomi_core::bundle::sign_bundle;
use baomi_core::compile::Platform;
use baomi_core::level::Clearance;
use baomi_core::policy::Policy;
use baomi_core::policy::model::HolderAssignment;
use baomi_core::store::{HostFileKeyProvider, StoreOptions};
use baomi_core::sync::http::HttpTransport;
use baomi_core::sync::protocol::path;
use baomi_core::sync::{HttpRequest, HttpResponse, Transport, TransportError};
use baomi_core::time::Timestamp;
use baomi_server::console::officers::Role;
use baomi_server::db::Db;
use baomi_server::http::Listener;
use baomi_server::ledger::audit::{
    AuditState, Finding, HttpSource, Source, audit, audit_with_carried, parse_note_checkpoint,
};
use baomi_server::ledger::{Evidence, LogKey, evidence};
use baomi_server::upload_key::UploadKey;
use baomi_server::{Server, admin};

const BASELINE: &str = include_str!("../../policies/baseline.json");

use common::backends;

struct Phone {
    agent: Agent,
    _dir: tempfile::TempDir,
}

impl Phone {
    fn id(&self) -> String {
        self.agent.store().device_id().to_owned()
    }

    fn violate(&mut self, n: usize) {
        for i in 0..n {
            let at = Timestamp::now().plus_millis(i as i64);
            let ev = common::messenger_launch(at);
            assert!(self.agent.handle(&ev).unwrap().violation);
        }
    }
}

/// An office with a log key, serving on loopback; two phones, each with two batches synced
/// (A: seqs 1-3 then 4-7; B: 1-2 then 3-5); an auditor officer.
struct Office {
    keys: common::OfficeKeys,
    log: String,
    url: String,
    listener: Listener,
    base: String,
    admin: Server,
    a: Phone,
    b: Phone,
    _dir: tempfile::TempDir,
}

const AUDITOR: (&str, &str) = ("qian.shenji", "correct horse battery staple 7");

fn server(url: &str, keys: &common::OfficeKeys, log: &str) -> Server {
    Server::new(
        Db::open(url, 2).unwrap(),
        Some(UploadKey::load(&keys.upload_key_file).unwrap()),
        Timestamp::now,
    )
    .unwrap()
    .with_log_key(LogKey::from_private(log).unwrap())
}

fn office(url: &str) -> Office {
    let dir = tempfile::tempdir().unwrap();
    let keys = common::office_keys(dir.path());
    let (_, log) = LogKey::generate("ledger.bmj.example").unwrap();
    let log = log.to_string();
    let admin = server(url, &keys, &log);
    admin.publish_trust_root(&keys.root).unwrap();
    admin
        .officer_add(AUDITOR.0, Role::Auditor, AUDITOR.1)
        .unwrap();
    let listener = Listener::start(
        Arc::new(server(url, &keys, &log)),
        "127.0.0.1:0".parse().unwrap(),
        None,
        2,
    )
    .unwrap();
    let base = format!("http://{}", listener.addr().unwrap());
    let mut phones: Vec<Phone> = (0..2)
        .map(|_| {
            let d = tempfile::tempdir().unwrap();
            let kek = HostFileKeyProvider::open_or_create(&d.path().join("kek")).unwrap();
            let now = Timestamp::now();
            let mut agent = Agent::open(
                &d.path().join("store"),
                &kek,
                StoreOptions::default(),
                Platform::Android,
                now,
            )
            .unwrap();
            agent.provision_trust_root(&keys.root, now).unwrap();
            let token = admin::new_token(&admin, 1).unwrap();
            enroll(
                &mut agent,
                &transport(&base),
                &base,
                &token,
                Platform::Android,
                now,
            )
            .unwrap();
            Phone { agent, _dir: d }
        })
        .collect();
    let mut p = Policy::from_json(BASELINE.as_bytes()).unwrap();
    p.holders = vec![HolderAssignment {
        holder: "zhang.wei".into(),
        clearance: Clearance::Important,
        devices: phones.iter().map(Phone::id).collect(),
    }];
    let now = Timestamp::now();
    let bundle = sign_bundle(&p, 1, now, now.plus_seconds(86_400), &[&keys.key]).unwrap();
    admin.publish_bundle(bundle.to_json().as_bytes()).unwrap();
    let b = phones.pop().unwrap();
    let a = phones.pop().unwrap();
    let mut o = Office {
        keys,
        log,
        url: url.to_owned(),
        listener,
        base,
        admin,
        a,
        b,
        _dir: dir,
    };
    o.sync_all();
    for (pa, pb) in [(3, 2), (4, 3)] {
        o.a.violate(pa);
        o.b.violate(pb);
        o.sync_all();
    }
    o
}

fn transport(base: &str) -> HttpTransport {
    HttpTransport::new(base)
}

impl Office {
    fn sync_all(&mut self) {
        for p in [&mut self.a, &mut self.b] {
            sync_now(&mut p.agent, &transport(&self.base), Timestamp::now()).unwrap();
        }
    }

    fn verifier(&self) -> String {
        LogKey::from_private(&self.log)
            .unwrap()
            .verifier_key()
            .to_owned()
    }

    fn auditor(&self) -> HttpSource {
        HttpSource::login(&self.base, AUDITOR.0, AUDITOR.1, None).unwrap()
    }

    fn audit(&self, state: &AuditState) -> (Vec<Finding>, AuditState) {
        let (report, next) = audit(&self.auditor(), &self.verifier(), state).unwrap();
        (report.findings, next)
    }

    /// The auditor's evidence package for `device`'s record `seq`, and what it proves once
    /// verified offline with the log's key.
    fn verified_evidence(&self, device: &str, seq: u64) -> (Evidence, evidence::Verified) {
        let text = self.auditor().evidence(device, seq).unwrap();
        let e: Evidence = serde_json::from_str(&text).unwrap();
        let v = evidence::verify(&e, &self.verifier()).unwrap();
        (e, v)
    }

    /// One number the database answers (`SELECT COUNT(*) ...`).
    fn count(&self, sql: &str) -> i64 {
        let db = Db::open(&self.url, 1).unwrap();
        db.tx(|c| Ok(c.query(sql, &[])?[0][0].int().unwrap_or_default()))
            .unwrap()
    }

    /// Phone A's next batch (records 8 and 9) is stored, and the answer lost on the way back.
    fn lose_the_answer_to_a_batch(&mut self) {
        self.a.violate(2);
        let lossy = LosesUploadAnswers(transport(&self.base));
        assert!(sync_now(&mut self.a.agent, &lossy, Timestamp::now()).is_err());
    }

    /// The insider: SQL straight into the database.
    fn sql(&self, sql: &str) {
        let db = Db::open(&self.url, 1).unwrap();
        db.tx(|c| {
            c.batch(sql)?;
            Ok(())
        })
        .unwrap();
    }

    /// Last month's backup restored: the log as it stood at `size` leaves.
    fn restore_log(&self, size: u64) {
        self.rewrite_log(|_| false);
        self.sql(&format!(
            "DELETE FROM ledger_queue WHERE id NOT IN (SELECT id FROM ledger_queue ORDER BY id LIMIT {size})"
        ));
    }

    /// The insider rewrites the log without the leaves `drop` names and re-signs it (the log
    /// key is on the server): a history that never held them.
    fn rewrite_log(&self, drop: impl Fn(&str) -> bool) {
        self.admin.ledger_integrate().unwrap();
        let db = Db::open(&self.url, 1).unwrap();
        db.tx(|c| {
            let rows = c.query("SELECT ref, data FROM ledger_leaves ORDER BY n", &[])?;
            c.batch(
                "DELETE FROM ledger_leaves; DELETE FROM ledger_hashes; DELETE FROM ledger_checkpoints; DELETE FROM ledger_queue;
                 UPDATE server_meta SET value = '0' WHERE name = 'ledger_size';",
            )?;
            for r in rows {
                let (reference, data) = (
                    r[0].text().unwrap().to_owned(),
                    r[1].text().unwrap().to_owned(),
                );
                if !drop(&reference) {
                    c.execute(
                        "INSERT INTO ledger_queue (ref, data) VALUES ($1, $2)",
                        &[reference.into(), data.into()],
                    )?;
                }
            }
            Ok(())
        })
        .unwrap();
    }
}

#[test]
fn an_untouched_ledger_verifies_and_every_chain_is_complete() {
    for (label, url, _d) in backends() {
        let o = office(&url);
        let (report, state) = audit(&o.auditor(), &o.verifier(), &AuditState::default()).unwrap();
        assert!(report.clean(), "{label}: {:?}", report.findings);
        assert_eq!(report.devices[&o.a.id()].checkpoint, 7, "{label}");
        assert_eq!(report.devices[&o.b.id()].records, 5, "{label}");
        assert!(report.devices.values().all(|d| d.complete), "{label}");
        // Again, later, from the kept state: consistent.
        let mut o = o;
        o.a.violate(2);
        o.sync_all();
        let (report, next) = audit(&o.auditor(), &o.verifier(), &state).unwrap();
        assert!(report.clean(), "{label}: {:?}", report.findings);
        assert!(next.size > state.size, "{label}");
        o.listener.stop();
    }
}

#[test]
fn an_insider_deleting_or_editing_rows_is_named_by_device_and_seq() {
    for (label, url, _d) in backends() {
        let o = office(&url);
        let (a, b) = (o.a.id(), o.b.id());
        o.sql(&format!(
            "DELETE FROM violations WHERE device_id = '{a}' AND seq = 2"
        ));
        o.sql(&format!(
            "UPDATE violations SET rules = 'nothing' WHERE device_id = '{a}' AND seq = 3"
        ));
        o.sql(&format!(
            "UPDATE violations SET record = replace(record, 'com.tencent.mm', 'com.example.ok') WHERE device_id = '{a}' AND seq = 5"
        ));
        let (findings, _) = o.audit(&AuditState::default());
        for f in [
            Finding::RowDeleted {
                device: a.clone(),
                seq: 2,
            },
            Finding::RulesEdited {
                device: a.clone(),
                seq: 3,
                shown: "nothing".into(),
            },
            Finding::RowEdited {
                device: a.clone(),
                seq: 5,
            },
        ] {
            assert!(findings.contains(&f), "{label}: {f:?} not in {findings:?}");
        }
        assert_eq!(findings.len(), 3, "{label}: {findings:?}");
        // Swapping two rows of B; then deleting every row of B.
        o.sql(&format!(
            "UPDATE violations SET seq = 100 WHERE device_id = '{b}' AND seq = 1;
             UPDATE violations SET seq = 1 WHERE device_id = '{b}' AND seq = 2;
             UPDATE violations SET seq = 2 WHERE device_id = '{b}' AND seq = 100;"
        ));
        let (findings, _) = o.audit(&AuditState::default());
        assert!(
            findings.contains(&Finding::RowsSwapped {
                device: b.clone(),
                seq: 1,
                holds: 2
            }) && findings.contains(&Finding::RowsSwapped {
                device: b.clone(),
                seq: 2,
                holds: 1
            }),
            "{label}: {findings:?}"
        );
        o.sql(&format!("DELETE FROM violations WHERE device_id = '{b}'"));
        let (findings, _) = o.audit(&AuditState::default());
        assert!(
            findings.contains(&Finding::DeviceRowsDeleted {
                device: b.clone(),
                count: 5
            }),
            "{label}: {findings:?}"
        );
        o.listener.stop();
    }
}

#[test]
fn a_restored_older_database_is_a_rollback_and_a_forked_history_a_fork() {
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        let (findings, before) = o.audit(&AuditState::default());
        assert!(findings.is_empty(), "{label}: {findings:?}");
        o.a.violate(3);
        o.sync_all();
        let (findings, seen) = o.audit(&before);
        assert!(findings.is_empty(), "{label}: {findings:?}");
        // Last month's backup restored: the log as it stood at `before`.
        o.restore_log(before.size);
        let (findings, after) = o.audit(&seen);
        assert!(
            matches!(findings.first(), Some(Finding::Rollback { seen: s, now }) if *s == seen.size && *now < seen.size),
            "{label}: {findings:?}"
        );
        assert_eq!(
            after, seen,
            "{label}: the state does not move past a rollback"
        );

        // A fork: the insider drops one record leaf and re-signs a log of the same size or
        // more (new activity): not an extension of what the auditor verified.
        let a = o.a.id();
        o.rewrite_log(|r| r == format!("record/{a}/1"));
        o.a.violate(4);
        o.sync_all();
        let (findings, _) = o.audit(&seen);
        assert!(
            matches!(findings.first(), Some(Finding::Fork { seen: s, .. }) if *s == seen.size),
            "{label}: {findings:?}"
        );
        o.listener.stop();
    }
}

#[test]
fn a_server_that_dropped_a_batch_cannot_claim_the_device_complete() {
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        o.a.violate(3);
        o.sync_all();
        let a = o.a.id();
        // Batch 4-7 (and its checkpoint) never reached the log, nor the rows.
        o.sql(&format!(
            "DELETE FROM violations WHERE device_id = '{a}' AND seq >= 4 AND seq <= 7"
        ));
        o.rewrite_log(|r| {
            (4..=7).any(|s| {
                r == format!("record/{a}/{s}") || r == format!("record/{a}/{s}/checkpoint")
            })
        });
        let (report, _) = audit(&o.auditor(), &o.verifier(), &AuditState::default()).unwrap();
        assert!(
            report.findings.contains(&Finding::MissingRecord {
                device: a.clone(),
                seq: 4,
                checkpoint: 10
            }),
            "{label}: {:?}",
            report.findings
        );
        assert!(!report.devices[&a].complete, "{label}");
        o.listener.stop();
    }
}

#[test]
fn one_violations_evidence_verifies_offline_and_an_edited_record_does_not() {
    for (label, url, _d) in backends() {
        let o = office(&url);
        let a = o.a.id();
        let (e, v) = o.verified_evidence(&a, 2);
        assert_eq!(
            (v.device.as_str(), v.seq, v.device_checkpoint),
            (a.as_str(), 2, 3),
            "{label}"
        );
        assert!(v.record.contains("com.tencent.mm"), "{label}");
        let mut edited = e.clone();
        edited.content = edited.content.replace("com.tencent.mm", "com.example.ok");
        assert!(
            evidence::verify(&edited, &o.verifier())
                .unwrap_err()
                .contains("step 3"),
            "{label}"
        );
        let other = LogKey::generate("ledger.bmj.example").unwrap().0;
        assert!(
            evidence::verify(&e, other.verifier_key())
                .unwrap_err()
                .contains("step 1"),
            "{label}"
        );
        // The export is in the audit log (itself in the ledger).
        assert!(
            o.admin
                .audit_log(5)
                .unwrap()
                .iter()
                .any(|x| x.action == "evidence_exported"),
            "{label}"
        );
        let _ = &o.keys;
        o.listener.stop();
    }
}

/// Go's `golang.org/x/mod/sumdb/{tlog,note}` and `crypto/ed25519` (server/ledger-interop),
/// built with the machine's Go; `None` (skipped outside CI) without Go.
fn go_checker() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ledger-interop");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ledger-interop");
    let built = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&dir)
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must build server/ledger-interop with Go"
        );
        eprintln!("skipped: no Go toolchain to build server/ledger-interop");
        return None;
    }
    Some(out)
}

fn go_check(checker: &std::path::Path, case: &serde_json::Value) -> String {
    let mut child = std::process::Command::new(checker)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), case.to_string().as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn gos_sumdb_packages_verify_the_checkpoints_proofs_and_a_device_checkpoint() {
    let Some(checker) = go_checker() else { return };
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        let old_note = o.admin.ledger_checkpoint().unwrap();
        o.a.violate(5);
        o.sync_all();
        let note = o.admin.ledger_checkpoint().unwrap();
        let size = baomi_server::ledger::audit::parse_note_checkpoint(&note)
            .unwrap()
            .size();
        let old_size = baomi_server::ledger::audit::parse_note_checkpoint(&old_note)
            .unwrap()
            .size();
        let leaves: Vec<String> = o
            .admin
            .ledger_leaves(0, 1000)
            .unwrap()
            .leaves
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert_eq!(leaves.len() as u64, size, "{label}");
        let inclusion: Vec<serde_json::Value> = [0, size / 2, size - 1]
            .iter()
            .map(|&n| {
                serde_json::json!({
                    "index": n,
                    "size": size,
                    "hashes": o.admin.ledger_inclusion(n, size).unwrap().hashes,
                })
            })
            .collect();
        let a = o.a.id();
        let parse = |r: &str| {
            leaves
                .iter()
                .map(|d| baomi_server::ledger::Leaf::parse(d.as_bytes()).unwrap())
                .find(|l| l.reference() == r)
                .unwrap()
        };
        let baomi_server::ledger::Leaf::Device { public_key, .. } = parse(&format!("device/{a}"))
        else {
            panic!()
        };
        // The device's checkpoint, as the agent signed it (with the request that carried it)
        // and as the log holds it; Go builds the message it verifies from the leaf.
        let checkpoint = parse(&format!("record/{a}/12/checkpoint"));
        let baomi_server::ledger::Leaf::Checkpoint { binding, .. } = &checkpoint else {
            panic!()
        };
        assert_eq!(binding.len(), 64, "{label}: the agent binds its checkpoint");
        // The device's checkpoint signature: Ed25519, which Go verifies; an sm office's phone
        // signs with SM2, which Go's standard library cannot (GmSSL and sm-crypto verify SM2 in
        // core/tests/sm_interop.rs), so the case then leaves it out.
        let device = (common::suite() == baomi_core::suite::Suite::Intl).then(
            || serde_json::json!({ "public_key": public_key, "checkpoint": checkpoint.to_text() }),
        );
        let device_case = device.clone();
        let case = serde_json::json!({
            "verifier_key": o.verifier(),
            "note": note,
            "old_note": old_note,
            "leaves": leaves,
            "inclusion": inclusion,
            "consistency": o.admin.ledger_consistency(old_size, size).unwrap().hashes,
            "device": device_case,
        });
        assert_eq!(go_check(&checker, &case), "ok", "{label}");
        // And Go refuses what an insider changed: one leaf edited.
        let mut edited = case.clone();
        edited["leaves"][3] = serde_json::Value::String(leaves[3].replace('1', "2"));
        assert!(go_check(&checker, &edited).contains("tree hash"), "{label}");
        // And a device checkpoint whose binding was changed (the message Go builds differs).
        if let Some(d) = device {
            let mut cp: serde_json::Value =
                serde_json::from_str(d["checkpoint"].as_str().unwrap()).unwrap();
            cp["binding"] = serde_json::Value::String("0".repeat(64));
            let mut rebound = case.clone();
            rebound["device"]["checkpoint"] = serde_json::Value::String(cp.to_string());
            assert_eq!(
                go_check(&checker, &rebound),
                "device checkpoint signature does not verify",
                "{label}"
            );
        }
        o.listener.stop();
    }
}

/// The console's fleet page as an officer sees it.
fn console_fleet(o: &Office) -> String {
    console_page(o, "/console/fleet")
}

fn console_page(o: &Office, path: &str) -> String {
    let (token, _) = o.admin.officer_login(AUDITOR.0, AUDITOR.1).unwrap();
    let r = o.admin.handle_office(
        "GET",
        path,
        &[(
            "cookie".into(),
            format!("baomi_session={token}; baomi_lang=en"),
        )],
        b"",
    );
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

#[test]
fn the_console_shows_the_auditors_verdict_and_names_a_broken_chain() {
    for (label, url, _d) in backends() {
        let o = office(&url);
        assert!(
            console_fleet(&o).contains("has not been verified by an auditor"),
            "{label}"
        );
        let (_, witness_key) = LogKey::generate("witness.audit.example").unwrap();
        let witness = |state: &AuditState| {
            let src = o.auditor();
            let (report, next) = audit(&src, &o.verifier(), state).unwrap();
            let cosigned =
                baomi_server::ledger::audit::cosign(next.note.as_ref().unwrap(), &witness_key)
                    .unwrap();
            src.witness(
                "witness.audit.example",
                &cosigned,
                &serde_json::to_string(&report).unwrap(),
            )
            .unwrap();
            next
        };
        let state = witness(&AuditState::default());
        let page = console_fleet(&o);
        assert!(
            page.contains("verified by witness.audit.example")
                && page.contains("every phone's chain complete")
                && page.contains("complete through seq 7"),
            "{label}"
        );
        let a = o.a.id();
        o.sql(&format!(
            "DELETE FROM violations WHERE device_id = '{a}' AND seq = 6"
        ));
        witness(&state);
        let page = console_fleet(&o);
        assert!(
            page.contains("1 finding(s)")
                && page.contains(&format!("device {a} seq 6: deleted from the office")),
            "{label}"
        );
        o.listener.stop();
    }
}

/// The network drops the answer to every request that uploads: the office stored the batch,
/// the phone never heard so, and sends it again.
struct LosesUploadAnswers(HttpTransport);

impl Transport for LosesUploadAnswers {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let answer = self.0.send(req)?;
        if req.path == path::SYNC || req.path == path::UPLOAD {
            return Err(TransportError("connection reset before the answer".into()));
        }
        Ok(answer)
    }
}

#[test]
fn a_batch_sent_again_after_its_answer_was_lost_enters_the_log_once() {
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        o.lose_the_answer_to_a_batch();
        // The same records and a checkpoint over the same seq, again: stored once already.
        o.sync_all();
        o.admin.ledger_integrate().unwrap();
        let twice = o.count(
            "SELECT COUNT(*) FROM (SELECT ref FROM ledger_leaves GROUP BY ref HAVING COUNT(*) > 1) t",
        );
        assert_eq!(twice, 0, "{label}: no leaf twice");
        assert_eq!(o.count("SELECT COUNT(*) FROM ledger_queue"), 0, "{label}");
        assert_eq!(
            o.count("SELECT COUNT(*) FROM ledger_leaves WHERE ref LIKE '%/checkpoint'"),
            o.count("SELECT COUNT(*) FROM violations WHERE checkpoint_at IS NOT NULL"),
            "{label}: one leaf per stored checkpoint"
        );
        let (report, _) = audit(&o.auditor(), &o.verifier(), &AuditState::default()).unwrap();
        assert!(report.clean(), "{label}: {:?}", report.findings);
        assert_eq!(report.devices[&o.a.id()].records, 9, "{label}");
        assert!(report.devices[&o.a.id()].complete, "{label}");
        o.listener.stop();
    }
}

// A batch stored by a try that carried no checkpoint (an agent from before the ledger whose
// answer was lost, retried after its upgrade; made here by removing the first try's checkpoint
// from the row and the log): the retry's checkpoint over the same record is kept and logged,
// once, and the chain is complete again.
#[test]
fn a_checkpoint_over_a_record_already_stored_without_one_is_logged_when_it_comes() {
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        o.lose_the_answer_to_a_batch();
        let a = o.a.id();
        o.sql(&format!(
            "UPDATE violations SET checkpoint_at = NULL WHERE device_id = '{a}' AND seq = 9"
        ));
        o.rewrite_log(|r| r == format!("record/{a}/9/checkpoint"));
        assert_eq!(
            held(&o, &a),
            (9, 2),
            "{label}: records 1-9, checkpoints at 3 and 7"
        );
        o.sync_all();
        o.admin.ledger_integrate().unwrap();
        assert_eq!(held(&o, &a), (9, 3), "{label}: and the retry's at 9");
        let logged = o.count(&format!(
            "SELECT COUNT(*) FROM ledger_leaves WHERE ref = 'record/{a}/9/checkpoint'"
        ));
        assert_eq!(logged, 1, "{label}");
        let (report, _) = audit(&o.auditor(), &o.verifier(), &AuditState::default()).unwrap();
        assert!(report.clean(), "{label}: {:?}", report.findings);
        assert!(report.devices[&a].complete, "{label}");
        o.listener.stop();
    }
}

// The insider edits the mark a violation row carries for the device checkpoint that ends at it
// (`violations.checkpoint_at`): it only tells the evidence export where to look. Cleared, the
// export takes the next checkpoint, which covers the record too and verifies; set on a row no
// checkpoint ends at, the export finds no such leaf and says so. The auditor reads the log, not
// the mark: both edits leave its verdict clean.
#[test]
fn an_edited_checkpoint_mark_misleads_neither_the_evidence_nor_the_auditor() {
    for (label, url, _d) in backends() {
        let o = office(&url);
        let a = o.a.id();
        o.sql(&format!(
            "UPDATE violations SET checkpoint_at = NULL WHERE device_id = '{a}' AND seq = 3"
        ));
        let (_, v) = o.verified_evidence(&a, 2);
        assert_eq!(
            (v.seq, v.device_checkpoint),
            (2, 7),
            "{label}: the next one covers it"
        );
        o.sql(&format!(
            "UPDATE violations SET checkpoint_at = 1 WHERE device_id = '{a}' AND seq = 5"
        ));
        let refused = o.auditor().evidence(&a, 4).unwrap_err();
        assert!(refused.contains("404"), "{label}: {refused}");
        let (report, _) = audit(&o.auditor(), &o.verifier(), &AuditState::default()).unwrap();
        assert!(report.clean(), "{label}: {:?}", report.findings);
        o.listener.stop();
    }
}

// An office upgraded from schema version 10 (device checkpoints in a table of their own, their
// leaves named `checkpoint/DEVICE/SEQ`) keeps every checkpoint: a violation's evidence still
// finds the one over its record, one queued but not yet in the log (PostgreSQL) is renamed and
// found once logged, a batch sent after the upgrade logs its own, and the auditor finds every
// chain complete with each checkpoint logged once.
#[test]
fn an_office_upgraded_from_schema_10_keeps_every_device_checkpoint() {
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        o.admin.ledger_integrate().unwrap();
        // Batch 8-9 of phone A: on PostgreSQL its leaves wait in the queue.
        o.a.violate(2);
        o.sync_all();
        // What a server of version 10 left, made from this one's rows.
        o.sql(
            "CREATE TABLE device_checkpoints (device_id TEXT NOT NULL, seq BIGINT NOT NULL, link TEXT NOT NULL, at BIGINT NOT NULL, signature TEXT NOT NULL, received_at BIGINT NOT NULL, binding TEXT NOT NULL DEFAULT '', PRIMARY KEY (device_id, seq));
             INSERT INTO device_checkpoints (device_id, seq, link, at, signature, received_at) SELECT device_id, seq, link, checkpoint_at, '', received_at FROM violations WHERE checkpoint_at IS NOT NULL;
             ALTER TABLE violations DROP COLUMN checkpoint_at;
             UPDATE ledger_leaves SET ref = 'checkpoint/' || substr(ref, 8, length(ref) - 18) WHERE ref LIKE '%/checkpoint';
             UPDATE ledger_queue SET ref = 'checkpoint/' || substr(ref, 8, length(ref) - 18) WHERE ref LIKE '%/checkpoint';
             ALTER TABLE devices DROP COLUMN log_seen;
             ALTER TABLE devices DROP COLUMN log_seen_size;
             ALTER TABLE devices DROP COLUMN log_seen_at;
             UPDATE server_meta SET value = '10' WHERE name = 'schema_version';",
        );
        // The upgrade: the next server to open the database, serving the phones and the auditor.
        let upgraded = Arc::new(server(&o.url, &o.keys, &o.log));
        let listener =
            Listener::start(upgraded.clone(), "127.0.0.1:0".parse().unwrap(), None, 2).unwrap();
        o.base = format!("http://{}", listener.addr().unwrap());
        o.a.violate(1);
        o.sync_all();
        upgraded.ledger_integrate().unwrap();
        let a = o.a.id();
        for (seq, checkpoint) in [(2, 3), (8, 9), (10, 10)] {
            let (_, v) = o.verified_evidence(&a, seq);
            assert_eq!(v.device_checkpoint, checkpoint, "{label}: record {seq}");
        }
        let twice = o.count(
            "SELECT COUNT(*) FROM (SELECT ref FROM ledger_leaves GROUP BY ref HAVING COUNT(*) > 1) t",
        );
        assert_eq!(twice, 0, "{label}: no leaf twice");
        assert_eq!(
            o.count("SELECT COUNT(*) FROM ledger_leaves WHERE ref LIKE 'checkpoint/%'"),
            0,
            "{label}: every leaf renamed"
        );
        // A: 3, 7, 9, 10; B: 2, 5.
        assert_eq!(
            o.count("SELECT COUNT(*) FROM violations WHERE checkpoint_at IS NOT NULL"),
            6,
            "{label}"
        );
        let db = Db::open(&o.url, 1).unwrap();
        assert!(
            db.tx(|c| Ok(c.query("SELECT COUNT(*) FROM device_checkpoints", &[])?))
                .is_err(),
            "{label}: the table of version 10 is gone"
        );
        let (report, _) = audit(&o.auditor(), &o.verifier(), &AuditState::default()).unwrap();
        assert!(report.clean(), "{label}: {:?}", report.findings);
        assert_eq!(report.devices[&a].records, 10, "{label}");
        assert!(report.devices[&a].complete, "{label}");
        listener.stop();
        o.listener.stop();
    }
}

// A device checkpoint's leaf comes after the leaves of the records it signs for: a log checkpoint
// signed between them (the sequencer takes leaves in groups, and signs on a schedule) would
// otherwise show an auditor the checkpoint without its records, a gap that is not there.
#[test]
fn a_device_checkpoints_leaf_follows_the_records_it_signs_for() {
    for (label, url, _d) in backends() {
        let o = office(&url);
        o.admin.ledger_integrate().unwrap();
        let db = Db::open(&o.url, 1).unwrap();
        let leaves: Vec<(i64, String)> = db
            .tx(|c| {
                Ok(c.query("SELECT n, ref FROM ledger_leaves ORDER BY n", &[])?
                    .iter()
                    .map(|r| (r[0].int().unwrap(), r[1].text().unwrap().to_owned()))
                    .collect())
            })
            .unwrap();
        let at = |kind: &str, device: &str, seq: u64| {
            leaves
                .iter()
                .find(|(_, r)| *r == format!("{kind}/{device}/{seq}"))
                .map(|(n, _)| *n)
        };
        let mut checked = 0;
        for (n, reference) in &leaves {
            let parts: Vec<&str> = reference.split('/').collect();
            let [_, device, seq, "checkpoint"] = parts[..] else {
                continue;
            };
            for s in 1..=seq.parse::<u64>().unwrap() {
                let record = at("record", device, s).unwrap();
                assert!(
                    record < *n,
                    "{label}: {reference} at leaf {n}, its record {s} at leaf {record}"
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 4, "{label}: two batches from each of two phones");
        o.listener.stop();
    }
}

/// A relay that rewrites the header carrying the checkpoint a request's signature is.
struct RewritesCheckpoint(HttpTransport, fn(&mut Vec<(String, String)>));

impl Transport for RewritesCheckpoint {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let mut req = req.clone();
        (self.1)(&mut req.headers);
        self.0.send(&req)
    }
}

const CHECKPOINT_HEADER: &str = baomi_core::sync::identity::HEADER_CHECKPOINT;

fn rewrite_checkpoint(h: &mut [(String, String)], f: impl Fn(&str) -> String) {
    for (k, v) in h.iter_mut() {
        if k == CHECKPOINT_HEADER {
            *v = f(v);
        }
    }
}

/// How many records and device checkpoints the office holds for `device`.
fn held(o: &Office, device: &str) -> (i64, i64) {
    let db = Db::open(&o.url, 1).unwrap();
    db.tx(|c| {
        let count = |c: &mut dyn baomi_server::db::Conn, also: &str| {
            c.query(
                &format!("SELECT COUNT(*) FROM violations WHERE device_id = $1{also}"),
                &[device.into()],
            )
            .map(|r| r[0][0].int().unwrap_or_default())
        };
        Ok((count(c, "")?, count(c, " AND checkpoint_at IS NOT NULL")?))
    })
    .unwrap()
}

// The phone signs a batch's checkpoint with the request that carries it: one signature is both.
// A relay that strips that checkpoint (to make the batch look unsigned), moves it to an earlier
// seq or another link (to make the office log a chain the phone never signed), or changes its
// time gets the whole request refused: nothing of the batch is stored, and the next honest
// sync stores it all with the phone's own checkpoint.
#[test]
fn a_relay_cannot_strip_or_move_the_checkpoint_a_request_is_signed_as() {
    type Rewrite = fn(&mut Vec<(String, String)>);
    let attacks: [(&str, Rewrite); 4] = [
        ("stripped", |h| h.retain(|(k, _)| k != CHECKPOINT_HEADER)),
        ("moved to an earlier seq", |h| {
            rewrite_checkpoint(h, |v| {
                let (seq, rest) = v.split_once(':').unwrap();
                format!("{}:{rest}", seq.parse::<u64>().unwrap() - 1)
            })
        }),
        ("another link", |h| {
            rewrite_checkpoint(h, |v| {
                let (seq, rest) = v.split_once(':').unwrap();
                let (_, at) = rest.split_once(':').unwrap();
                format!("{seq}:{}:{at}", "0".repeat(64))
            })
        }),
        ("another time", |h| {
            rewrite_checkpoint(h, |v| {
                let (head, at) = v.rsplit_once(':').unwrap();
                format!("{head}:{}", at.parse::<i64>().unwrap() + 1)
            })
        }),
    ];
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        let a = o.a.id();
        o.a.violate(2);
        let before = held(&o, &a);
        for (attack, rewrite) in attacks {
            let relay = RewritesCheckpoint(transport(&o.base), rewrite);
            let e = sync_now(&mut o.a.agent, &relay, Timestamp::now()).unwrap_err();
            assert!(
                matches!(e, baomi_core::agent::SyncError::Server { status: 401, .. }),
                "{label}, {attack}: {e:?}"
            );
            assert_eq!(held(&o, &a), before, "{label}, {attack}: nothing stored");
        }
        o.sync_all();
        assert_eq!(held(&o, &a), (before.0 + 2, before.1 + 1), "{label}");
        let (findings, _) = o.audit(&AuditState::default());
        assert!(findings.is_empty(), "{label}: {findings:?}");
        o.listener.stop();
    }
}

// A checkpoint header belongs to a request that carries a batch: on a check-in, or on a
// one-request sync without a batch, it is refused with a clear error (and the signature,
// though it verifies as a checkpoint, authenticates nothing else).
#[test]
fn a_checkpoint_signature_on_a_request_without_a_batch_is_refused() {
    let (label, url, _d) = backends().remove(0);
    let mut o = office(&url);
    let id = o.a.agent.identity().unwrap();
    let base = o.base.clone();
    let send = |p: &str, body: &[u8]| {
        let (auth, _) = id
            .sign_with_checkpoint(
                "POST",
                p,
                body,
                Timestamp::now(),
                baomi_core::sync::ledger::ChainEnd {
                    seq: 7,
                    link: [1; 32],
                    at: Timestamp::now(),
                },
            )
            .unwrap();
        common::post_signed(&transport(&base), p, &auth, body)
    };
    for (p, body) in [
        (path::CHECK_IN, b"{}".to_vec()),
        (path::FINISH, b"{}".to_vec()),
    ] {
        let r = send(p, &body);
        assert_eq!(r.status, 400, "{label}: {p}");
        assert!(
            String::from_utf8_lossy(&r.body).contains("only a request that carries a batch"),
            "{label}: {p}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    o.sync_all();
    o.listener.stop();
}

/// Phone A's unacknowledged records as one upload, linked and sealed as an agent does, with
/// the device checkpoint over its last record in the batch (signed apart, as agents before the
/// one-signature upload did) when `apart`. Returns the upload's body, the phone's identity and
/// the checkpoint's seq and link.
fn upload_of_phone_a(
    o: &mut Office,
    apart: bool,
) -> (
    Vec<u8>,
    baomi_core::sync::identity::DeviceIdentity,
    u64,
    [u8; 32],
) {
    use baomi_core::sync::ledger::{self as chain, DeviceCheckpoint};
    use baomi_core::sync::protocol::{Upload, UploadBatch, UploadedRecord};
    use baomi_core::sync::seal::{batch_aad, seal};
    let a = o.a.id();
    let now = Timestamp::now();
    let id = o.a.agent.identity().unwrap();
    let recipient = o.a.agent.trust_root().unwrap().upload_recipient().unwrap();
    let suite = recipient.suite();
    let mut link = o.a.agent.ledger_prev();
    let records: Vec<UploadedRecord> =
        o.a.agent
            .unacknowledged(100, now)
            .unwrap()
            .into_iter()
            .map(|v| {
                link = chain::link_of(suite, &a, v.seq, &link, &v.record);
                UploadedRecord {
                    seq: v.seq,
                    tag: baomi_core::bundle::keys::hex(&v.tag),
                    record: v.record,
                    link: baomi_core::bundle::keys::hex(&link),
                }
            })
            .collect();
    let (first, last) = (records[0].seq, records[records.len() - 1].seq);
    let receipt_key = baomi_core::sync::proof::ProofKey::generate(suite).unwrap();
    let batch = UploadBatch {
        receipt_key: receipt_key.to_base64().to_string(),
        records,
        checkpoint: apart.then(|| DeviceCheckpoint::sign(&id, last, &link, now)),
    };
    let upload = Upload {
        device_id: a.clone(),
        first_seq: first,
        last_seq: last,
        sealed: seal(
            &recipient,
            &batch_aad(&a, first, last),
            &serde_json::to_vec(&batch).unwrap(),
        )
        .unwrap(),
    };
    (serde_json::to_vec(&upload).unwrap(), id, last, link)
}

// Agents from before the one-signature upload send the checkpoint in the batch, signed apart:
// the office still verifies, stores and logs it, and the auditor checks it like any other.
#[test]
fn a_checkpoint_signed_apart_by_an_older_agent_is_still_verified_and_logged() {
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        let a = o.a.id();
        o.a.violate(2);
        let (body, id, last, _) = upload_of_phone_a(&mut o, true);
        let auth = id
            .sign("POST", path::UPLOAD, &body, Timestamp::now())
            .unwrap();
        let r = common::post_signed(&transport(&o.base), path::UPLOAD, &auth, &body);
        assert_eq!(
            r.status,
            200,
            "{label}: {}",
            String::from_utf8_lossy(&r.body)
        );
        o.admin.ledger_checkpoint().unwrap();
        let leaf = o
            .admin
            .ledger_leaves(0, 1000)
            .unwrap()
            .leaves
            .into_iter()
            .map(|(_, d)| baomi_server::ledger::Leaf::parse(d.as_bytes()).unwrap())
            .find(|l| l.reference() == format!("record/{a}/{last}/checkpoint"))
            .unwrap();
        let baomi_server::ledger::Leaf::Checkpoint { binding, .. } = &leaf else {
            panic!()
        };
        assert!(binding.is_empty(), "{label}: logged as signed, apart");
        assert!(
            !leaf.to_text().contains("binding"),
            "{label}: its leaf's bytes are what they were before bound checkpoints"
        );
        let (findings, _) = o.audit(&AuditState::default());
        assert!(findings.is_empty(), "{label}: {findings:?}");
        // The phone learns the office holds them at its next check-in.
        o.sync_all();
        o.listener.stop();
    }
}

// A phone's own bug, not a relay's: a batch with a checkpoint of its own *and* a request signed
// as one, or a request's checkpoint that is not over the batch's last record. Each is refused
// with a clear error and nothing is stored (the signature verifies; the statement is wrong).
#[test]
fn a_batch_with_two_checkpoints_or_one_off_its_last_record_is_refused() {
    let (label, url, _d) = backends().remove(0);
    let mut o = office(&url);
    let a = o.a.id();
    o.a.violate(2);
    let before = held(&o, &a);
    for (apart, off_by, expect) in [
        (
            true,
            0,
            "carries a checkpoint and the request's signature is another",
        ),
        (false, 1, "not over the batch's last record"),
    ] {
        let (body, id, last, link) = upload_of_phone_a(&mut o, apart);
        let (auth, _) = id
            .sign_with_checkpoint(
                "POST",
                path::UPLOAD,
                &body,
                Timestamp::now(),
                baomi_core::sync::ledger::ChainEnd {
                    seq: last - off_by,
                    link,
                    at: Timestamp::now(),
                },
            )
            .unwrap();
        let r = common::post_signed(&transport(&o.base), path::UPLOAD, &auth, &body);
        let text = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, 400, "{label}: {text}");
        assert!(text.contains(expect), "{label}: {text}");
        assert_eq!(held(&o, &a), before, "{label}: nothing stored");
    }
    o.sync_all();
    assert_eq!(held(&o, &a), (before.0 + 2, before.1 + 1), "{label}");
    o.listener.stop();
}

fn in_200_days() -> Timestamp {
    Timestamp(Timestamp::now().0 + 200 * 86_400_000)
}

#[test]
fn retention_purges_old_records_without_breaking_verification_and_a_recent_purge_is_a_finding() {
    for (label, url, _d) in backends() {
        let o = office(&url);
        // 200 days later: everything received today is past a 180-day retention.
        let later = Server::new(Db::open(&url, 1).unwrap(), None, in_200_days).unwrap();
        let too_soon = later.purge_before(in_200_days().0 - 10 * 86_400_000, "cli:test");
        assert_eq!(too_soon.unwrap_err().status, 400, "{label}");
        let n = later
            .purge_before(in_200_days().0 - 181 * 86_400_000, "cli:test")
            .unwrap();
        assert_eq!(n, 12, "{label}: both phones' records");
        let (findings, _) = o.audit(&AuditState::default());
        assert!(findings.is_empty(), "{label}: {findings:?}");
        // An insider's "purge" of yesterday's records, written straight into the ledger.
        let now = Timestamp::now().0;
        o.sql(&format!(
            "INSERT INTO ledger_queue (ref, data) VALUES ('purge/x', '{{\"kind\":\"purge\",\"before\":{now},\"at\":{now},\"by\":\"root\"}}')"
        ));
        let (findings, _) = o.audit(&AuditState::default());
        assert!(
            findings.contains(&Finding::PurgeTooRecent {
                before: now,
                at: now
            }),
            "{label}: {findings:?}"
        );
        o.listener.stop();
    }
}

#[test]
fn an_audit_log_entry_deleted_or_forged_is_named() {
    for (label, url, _d) in backends() {
        let o = office(&url);
        o.admin
            .audit(
                "chen.admin",
                "bundle_published",
                "baseline@2 (the one to hide)",
            )
            .unwrap();
        let (findings, _) = o.audit(&AuditState::default());
        assert!(findings.is_empty(), "{label}: {findings:?}");
        o.sql("DELETE FROM audit WHERE detail = 'baseline@2 (the one to hide)'");
        o.sql("UPDATE audit SET officer = 'someone.else' WHERE action = 'officer_add'");
        let (findings, _) = o.audit(&AuditState::default());
        assert!(
            findings.iter().any(|f| matches!(f, Finding::AuditEntryDeleted { action, officer, .. } if action == "bundle_published" && officer == "chen.admin")),
            "{label}: {findings:?}"
        );
        assert!(
            findings.iter().any(|f| matches!(f, Finding::AuditEntryNotInLog { officer, .. } if officer == "someone.else")),
            "{label}: {findings:?}"
        );
        o.listener.stop();
    }
}

// A restore to an older point (issue 23, item 4, with the ledger of issue 21): the phones'
// next records must still be accepted, and the batch the restored office lost comes again
// from the phone's kept copies, linked into its chain: the auditor finds nothing missing and
// no broken chain. (Before, the phone had deleted it: the auditor named it missing.)
#[test]
fn after_a_restore_to_an_older_point_phones_send_the_lost_records_again() {
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("b");
        baomi_server::backup::backup(&url, &backup).unwrap();
        o.a.violate(2);
        o.sync_all();
        // The office restores last night's backup (the server stopped and started again).
        let old = std::mem::replace(
            &mut o.listener,
            Listener::start(
                Arc::new(
                    Server::new(
                        Db::open("sqlite::memory:", 1).unwrap(),
                        None,
                        Timestamp::now,
                    )
                    .unwrap(),
                ),
                "127.0.0.1:0".parse().unwrap(),
                None,
                1,
            )
            .unwrap(),
        );
        old.stop();
        baomi_server::backup::restore(&backup, &url).unwrap();
        o.listener.stop();
        o.listener = Listener::start(
            Arc::new(server(&url, &o.keys, &o.log)),
            o.base.trim_start_matches("http://").parse().unwrap(),
            None,
            2,
        )
        .unwrap();
        let a = o.a.id();
        o.a.violate(3);
        let r = sync_now(&mut o.a.agent, &transport(&o.base), Timestamp::now());
        assert!(
            r.is_ok(),
            "{label}: the phone's sync after the restore: {r:?}"
        );
        let seqs: Vec<i64> = admin::violations(&o.admin, Some(&a))
            .unwrap()
            .iter()
            .map(|v| v["seq"].as_i64().unwrap())
            .collect();
        assert!((8..=12).all(|s| seqs.contains(&s)), "{label}: {seqs:?}");
        let (report, _) = audit(&o.auditor(), &o.verifier(), &AuditState::default()).unwrap();
        assert!(
            !report
                .findings
                .iter()
                .any(|f| matches!(f, Finding::MissingRecord { .. })),
            "{label}: {:?}",
            report.findings
        );
        assert!(
            !report
                .findings
                .iter()
                .any(|f| matches!(f, Finding::ChainBroken { .. })),
            "{label}: {:?}",
            report.findings
        );
        o.listener.stop();
    }
}

/// The log checkpoints the office says its phones carry: device -> size.
fn carried(o: &Office) -> std::collections::BTreeMap<String, u64> {
    o.auditor()
        .seen("")
        .unwrap()
        .devices
        .into_iter()
        .map(|s| (s.device, parse_note_checkpoint(&s.note).unwrap().size()))
        .collect()
}

/// The office signs a checkpoint; both phones sync twice, shown it and then reporting it.
/// Returns its size.
fn phones_carry_the_log(o: &mut Office) -> u64 {
    let note = o.auditor().checkpoint().unwrap();
    o.sync_all();
    o.sync_all();
    parse_note_checkpoint(&note).unwrap().size()
}

fn carried_findings(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| {
            matches!(
                f,
                Finding::CarriedRollback { .. }
                    | Finding::CarriedFork { .. }
                    | Finding::CarriedUnsigned { .. }
            )
        })
        .collect()
}

// The insider restores last month's database, devices table and all, before any auditor ran
// since: the log the office now serves is consistent in itself, and an auditor with no state
// of its own has nothing to compare it with. The phones do: each carries the larger
// checkpoint the office signed and showed it, and reports it again at its next check-in.
#[test]
fn a_restore_before_any_audit_is_a_rollback_the_phones_carry_the_proof_of() {
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        let (findings, first) = o.audit(&AuditState::default());
        assert!(findings.is_empty(), "{label}: {findings:?}");
        o.a.violate(3);
        o.sync_all();
        let shown = phones_carry_the_log(&mut o);
        assert!(shown > first.size, "{label}");
        let c = carried(&o);
        assert_eq!(c.len(), 2, "{label}: {c:?}");
        assert!(c.values().all(|s| *s >= shown), "{label}: {c:?}");
        let a = o.a.id();
        let page = console_page(&o, &format!("/console/device/{a}"));
        assert!(
            page.contains(&format!(
                "Carries the office log's checkpoint of {} leaves",
                c[&a]
            )),
            "{label}: the device page shows what the phone carries"
        );
        let (findings, _) = o.audit(&AuditState::default());
        assert!(findings.is_empty(), "{label}: {findings:?}");

        // The backup: the log as it stood at `first`, and no phone's report yet.
        o.restore_log(first.size);
        o.sql("UPDATE devices SET log_seen = NULL, log_seen_size = NULL, log_seen_at = NULL");
        let (findings, _) = o.audit(&AuditState::default());
        assert!(
            !findings.iter().any(Finding::is_log_level),
            "{label}: the log alone looks whole to a new auditor: {findings:?}"
        );
        // An inquiry with phone A in hand (`baomi audit --carried`): its note is enough.
        let from_a = (
            "phone A".to_owned(),
            o.a.agent.sync_state().log_checkpoint.clone().unwrap(),
        );
        let (report, _) = audit_with_carried(
            &o.auditor(),
            &o.verifier(),
            &AuditState::default(),
            &[from_a],
        )
        .unwrap();
        assert!(
            matches!(carried_findings(&report.findings)[..],
                [Finding::CarriedRollback { device, .. }] if device == "phone A"),
            "{label}: {:?}",
            report.findings
        );
        // The phones' next check-ins.
        o.sync_all();
        let (findings, state) = o.audit(&AuditState::default());
        for device in [o.a.id(), o.b.id()] {
            assert!(
                findings.iter().any(|f| matches!(f,
                    Finding::CarriedRollback { device: d, carried, now }
                        if *d == device && *carried >= shown && *now < shown)),
                "{label}: {device}: {findings:?}"
            );
        }
        assert_eq!(state, AuditState::default(), "{label}: nothing verified");
        o.listener.stop();
    }
}

// The insider shows the auditor another history (rewritten without one of phone B's records,
// re-signed, and grown past what the phones were shown): consistent in itself, but not the
// history the phones carry a signed checkpoint of.
#[test]
fn a_history_rewritten_after_the_phones_saw_it_is_a_fork_they_carry_the_proof_of() {
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        let shown = phones_carry_the_log(&mut o);
        let b = o.b.id();
        o.rewrite_log(|r| r == format!("record/{b}/2"));
        o.a.violate(4);
        sync_now(&mut o.a.agent, &transport(&o.base), Timestamp::now()).unwrap();
        let (report, state) = audit(&o.auditor(), &o.verifier(), &AuditState::default()).unwrap();
        let findings = report.findings;
        assert!(
            report.size > shown,
            "{label}: the forked log is larger than what the phones carry"
        );
        assert_eq!(state, AuditState::default(), "{label}: nothing verified");
        for device in [o.a.id(), b.clone()] {
            assert!(
                findings.iter().any(|f| matches!(f,
                    Finding::CarriedFork { device: d, carried } if *d == device && *carried >= shown)),
                "{label}: {device}: {findings:?}"
            );
        }
        o.listener.stop();
    }
}

// A phone (or whoever sends in its name) reports a checkpoint the log key never signed: named,
// but it proves nothing against the log, so the auditor still verifies and advances.
#[test]
fn a_carried_checkpoint_the_log_key_did_not_sign_is_named_and_proves_nothing() {
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        phones_carry_the_log(&mut o);
        let real = o.auditor().checkpoint().unwrap();
        let body = real.split_once("\n\n").unwrap().0;
        let (other, _) = LogKey::generate("ledger.bmj.example").unwrap();
        let forged = other.sign(format!("{body}\n").as_bytes()).unwrap();
        let a = o.a.id();
        o.sql(&format!(
            "UPDATE devices SET log_seen = '{forged}' WHERE device_id = '{a}'"
        ));
        let (findings, state) = o.audit(&AuditState::default());
        assert!(
            matches!(carried_findings(&findings)[..],
                [Finding::CarriedUnsigned { device, .. }] if *device == a),
            "{label}: {findings:?}"
        );
        assert!(state.size > 0, "{label}: the log itself verified");
        o.listener.stop();
    }
}

/// A relay that takes the log checkpoint out of every check-in answer (the phone would carry
/// nothing and report nothing).
struct WithholdsTheLog(HttpTransport);

impl Transport for WithholdsTheLog {
    fn send(&self, req: &HttpRequest) -> Result<HttpResponse, TransportError> {
        let mut answer = self.0.send(req)?;
        if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&answer.body) {
            if let Some(c) = v.get_mut("check_in").and_then(|c| c.as_object_mut()) {
                c.remove("log_checkpoint");
            }
            if let Some(c) = v.as_object_mut() {
                c.remove("log_checkpoint");
            }
            answer.body = serde_json::to_vec(&v).unwrap();
        }
        Ok(answer)
    }
}

#[test]
fn a_relay_that_withholds_the_log_checkpoint_fails_the_sync_and_the_phone_keeps_its_own() {
    for (label, url, _d) in backends() {
        let mut o = office(&url);
        let shown = phones_carry_the_log(&mut o);
        let carried_before = o.a.agent.sync_state().log_checkpoint.clone();
        assert!(carried_before.is_some(), "{label}");
        o.a.violate(2);
        o.auditor().checkpoint().unwrap();
        let e = sync_now(
            &mut o.a.agent,
            &WithholdsTheLog(transport(&o.base)),
            Timestamp::now(),
        )
        .unwrap_err();
        assert!(
            matches!(e, baomi_core::agent::SyncError::Unproven { .. }),
            "{label}: {e}"
        );
        assert_eq!(
            o.a.agent.sync_state().log_checkpoint,
            carried_before,
            "{label}"
        );
        assert!(carried(&o)[&o.a.id()] >= shown, "{label}");
        o.listener.stop();
    }
}
