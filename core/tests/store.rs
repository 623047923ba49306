//! The violation store keeps evidence secret, complete and tamper-evident.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;

mod common;

use baomi_core::decision::Verdict;
use baomi_core::event::Event;
use baomi_core::posture::Posture;
use baomi_core::store::{
    ChainError, DB_FILE, HostFileKeyProvider, PolicyRef, Store, StoreError, StoreOptions,
    ViolationRecord,
};
use rusqlite::Connection;

fn record(i: u32) -> ViolationRecord {
    let event = Event::from_json_line(
        1,
        &format!(
            r#"{{"at":"2016-10-20T23:0{}:00+08:00","type":"share","from_package":"com.android.gallery3d","to_package":"com.tencent.mm","mime":"image/jpeg"}}"#,
            i % 10
        ),
    )
    .unwrap();
    ViolationRecord {
        event,
        verdict: Verdict::Deny,
        rules: vec!["no-sharing-into-messengers-during-custody".into()],
        severity: None,
        reason: format!("share of SHIWEI-2016-117 page {i} in zone reading-room"),
        posture: Posture {
            camera_disabled: true,
            screen_capture_disabled: true,
            blocked_packages: vec!["com.tencent.mm".into()],
        },
        policy: Some(PolicyRef {
            id: "baseline".into(),
            version: 1,
        }),
    }
}

fn provider(dir: &Path, name: &str) -> HostFileKeyProvider {
    HostFileKeyProvider::open_or_create(&dir.join(name)).unwrap()
}

fn open(dir: &Path, kek: &HostFileKeyProvider) -> Store {
    Store::open(&dir.join("store"), kek, common::store_options()).unwrap()
}

/// A store with `n` records, closed.
fn filled(n: u32) -> (tempfile::TempDir, HostFileKeyProvider) {
    let dir = tempfile::tempdir().unwrap();
    let kek = provider(dir.path(), "kek");
    let mut s = open(dir.path(), &kek);
    for i in 1..=n {
        assert_eq!(s.append(&record(i)).unwrap(), u64::from(i));
    }
    (dir, kek)
}

fn raw(dir: &Path) -> Connection {
    Connection::open(dir.join("store").join(DB_FILE)).unwrap()
}

fn chain_error(dir: &Path, kek: &HostFileKeyProvider) -> ChainError {
    match open(dir, kek).verify() {
        Err(StoreError::Integrity(e)) => e,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

/// Digest of the database file (compared, never printed: it is megabytes).
fn file_bytes(dir: &Path) -> String {
    digest(&std::fs::read(dir.join("store").join(DB_FILE)).unwrap())
}

fn digest(b: &[u8]) -> String {
    format!(
        "{:?}",
        ring::digest::digest(&ring::digest::SHA256, b).as_ref()
    )
}

#[test]
fn records_round_trip_in_order_and_verify() {
    let (dir, kek) = filled(5);
    let mut s = open(dir.path(), &kek);
    let all = s.records_after(0, 100).unwrap();
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(all[2].record, record(3));
    assert_eq!(s.records_after(3, 1).unwrap()[0].seq, 4);
    assert_eq!(s.verify().unwrap().records, 5);
    // Batches continue the same chain.
    let seqs = s.append_batch(&[record(6), record(7)]).unwrap();
    assert_eq!(seqs, [6, 7]);
    assert_eq!(s.head().seq, 7);
    assert_eq!(s.verify().unwrap().head, 7);
}

#[test]
fn nothing_sensitive_is_readable_from_the_files() {
    let (dir, kek) = filled(20);
    let mut s = open(dir.path(), &kek);
    s.put_state("bundle", br#"{"app_sets":{"messengers":{"android":["com.tencent.mm"]}},"zones":{"reading-room":{}}}"#).unwrap();
    drop(s);
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("store")).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(bytes.len() > 4096);
    for needle in [
        "com.tencent.mm",
        "gallery3d",
        "SHIWEI-2016-117",
        "reading-room",
        "2016-10-20",
        "15:0",
        "no-sharing",
        "baseline",
        "image/jpeg",
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "`{needle}` is readable in the store files"
        );
    }
}

#[test]
fn an_edited_record_is_reported_at_its_seq() {
    let (dir, kek) = filled(5);
    let c = raw(dir.path());
    let mut sealed: Vec<u8> = c
        .query_row("SELECT sealed FROM violations WHERE seq = 3", [], |r| {
            r.get(0)
        })
        .unwrap();
    sealed[5] ^= 1;
    c.execute("UPDATE violations SET sealed = ?1 WHERE seq = 3", [sealed])
        .unwrap();
    drop(c);
    assert_eq!(
        chain_error(dir.path(), &kek),
        ChainError::Unauthentic { seq: 3 }
    );
}

#[test]
fn a_deleted_record_is_reported_as_missing() {
    let (dir, kek) = filled(5);
    raw(dir.path())
        .execute("DELETE FROM violations WHERE seq = 3", [])
        .unwrap();
    assert_eq!(
        chain_error(dir.path(), &kek),
        ChainError::Missing { from: 3, to: 3 }
    );
}

#[test]
fn swapped_records_do_not_authenticate() {
    let (dir, kek) = filled(5);
    let c = raw(dir.path());
    c.execute_batch(
        "UPDATE violations SET seq = -2 WHERE seq = 2;
         UPDATE violations SET seq = 2 WHERE seq = 3;
         UPDATE violations SET seq = 3 WHERE seq = -2;",
    )
    .unwrap();
    drop(c);
    assert_eq!(
        chain_error(dir.path(), &kek),
        ChainError::Unauthentic { seq: 2 }
    );
}

#[test]
fn a_truncated_tail_is_reported() {
    let (dir, kek) = filled(6);
    raw(dir.path())
        .execute("DELETE FROM violations WHERE seq > 4", [])
        .unwrap();
    assert_eq!(
        chain_error(dir.path(), &kek),
        ChainError::Truncated {
            last_present: 4,
            head: 6
        }
    );
}

#[test]
fn a_truncated_tail_after_an_acknowledgement_is_reported() {
    let (dir, kek) = filled(6);
    open(dir.path(), &kek).acknowledge(3).unwrap();
    raw(dir.path())
        .execute("DELETE FROM violations WHERE seq > 3", [])
        .unwrap();
    assert_eq!(
        chain_error(dir.path(), &kek),
        ChainError::Truncated {
            last_present: 3,
            head: 6
        }
    );
}

#[test]
fn altered_bookkeeping_is_reported_and_recording_goes_on() {
    let (dir, kek) = filled(3);
    let c = raw(dir.path());
    let mut head: Vec<u8> = c
        .query_row("SELECT value FROM meta WHERE name = 'head'", [], |r| {
            r.get(0)
        })
        .unwrap();
    head[7] = 1; // claim seq 1
    c.execute("UPDATE meta SET value = ?1 WHERE name = 'head'", [head])
        .unwrap();
    drop(c);
    let mut s = open(dir.path(), &kek);
    assert!(s.bookkeeping_altered());
    assert_eq!(s.append(&record(4)).unwrap(), 4);
    // Sealed state is not handed out under a head that does not authenticate.
    assert!(matches!(
        s.get_state("context"),
        Err(StoreError::Integrity(ChainError::Bookkeeping {
            which: "head"
        }))
    ));
}

// Attack 2 (docs/SECURITY.md): delete every unacknowledged record and the head row.
#[test]
fn a_log_truncated_with_its_head_row_fails_verify() {
    let (dir, kek) = filled(3);
    raw(dir.path())
        .execute_batch("DELETE FROM violations; DELETE FROM meta WHERE name = 'head';")
        .unwrap();
    let s = open(dir.path(), &kek);
    assert!(s.bookkeeping_altered());
    drop(s); // one store per directory at a time
    assert_eq!(
        chain_error(dir.path(), &kek),
        ChainError::Bookkeeping { which: "head" }
    );
    // The same on a store that never recorded anything: the head exists from creation.
    let (dir, kek) = filled(0);
    raw(dir.path())
        .execute("DELETE FROM meta WHERE name = 'head'", [])
        .unwrap();
    assert_eq!(
        chain_error(dir.path(), &kek),
        ChainError::Bookkeeping { which: "head" }
    );
    let (dir, kek) = filled(2);
    raw(dir.path())
        .execute("DELETE FROM meta WHERE name = 'anchor'", [])
        .unwrap();
    assert_eq!(
        chain_error(dir.path(), &kek),
        ChainError::Bookkeeping { which: "anchor" }
    );
}

// Attack 3: restoring an older copy of the file must not make the store reuse a nonce.
#[test]
fn nonces_never_repeat_across_a_restored_older_copy() {
    let (dir, kek) = filled(1);
    let db = dir.path().join("store").join(DB_FILE);
    let older = std::fs::read(&db).unwrap();
    let nonces = |dir: &Path| -> Vec<Vec<u8>> {
        let c = raw(dir);
        let mut st = c
            .prepare("SELECT nonce FROM violations UNION ALL SELECT nonce FROM state")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let before: std::collections::BTreeSet<Vec<u8>> = nonces(dir.path()).into_iter().collect();
    let session = || -> Vec<Vec<u8>> {
        let mut s = open(dir.path(), &kek);
        for i in 2..=5 {
            s.append(&record(i)).unwrap();
        }
        s.put_state("sync", b"after").unwrap();
        drop(s);
        nonces(dir.path())
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect()
    };
    let mut sealed = session();
    assert_eq!(sealed.len(), 5);
    // The holder restores the older file (and with it any nonce bookkeeping) and records go on.
    std::fs::write(&db, &older).unwrap();
    let _ = std::fs::remove_file(dir.path().join("store").join(format!("{DB_FILE}-wal")));
    sealed.extend(session());
    let unique: std::collections::BTreeSet<_> = sealed.iter().collect();
    assert_eq!(unique.len(), 10, "a nonce was sealed twice");
}

// Attack 4: an older state row copied back is refused, never served.
#[test]
fn a_state_row_copied_back_from_an_older_copy_is_refused() {
    let (dir, kek) = filled(0);
    let mut s = open(dir.path(), &kek);
    s.put_states(&[("installed_policy", b"v1"), ("trust_root", b"root-1")])
        .unwrap();
    let g1 = s.generation();
    drop(s);
    let old: (Vec<u8>, Vec<u8>) = raw(dir.path())
        .query_row(
            "SELECT nonce, sealed FROM state WHERE name = 'installed_policy'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut s = open(dir.path(), &kek);
    s.put_state("installed_policy", b"v2").unwrap();
    assert!(s.generation() > g1);
    drop(s);
    raw(dir.path())
        .execute(
            "UPDATE state SET nonce = ?1, sealed = ?2 WHERE name = 'installed_policy'",
            rusqlite::params![old.0, old.1],
        )
        .unwrap();
    let mut s = open(dir.path(), &kek);
    assert_eq!(s.state_fault(), Some(&ChainError::StateRolledBack));
    for name in ["installed_policy", "trust_root"] {
        assert_eq!(
            s.get_state(name),
            Err(StoreError::Integrity(ChainError::StateRolledBack))
        );
    }
    // Nothing is written over it either (that would bless the rolled-back row).
    assert_eq!(
        s.put_state("context", b"x"),
        Err(StoreError::Integrity(ChainError::StateRolledBack))
    );
    // Evidence still goes in.
    assert_eq!(s.append(&record(1)).unwrap(), 1);
    drop(s);
    assert_eq!(chain_error(dir.path(), &kek), ChainError::StateRolledBack);
    // A deleted state row is the same.
    let (dir, kek) = filled(0);
    let mut s = open(dir.path(), &kek);
    s.put_state("trust_root", b"root-2").unwrap();
    drop(s);
    raw(dir.path()).execute("DELETE FROM state", []).unwrap();
    let s = open(dir.path(), &kek);
    assert_eq!(s.state_fault(), Some(&ChainError::StateRolledBack));
}

// A store written by the schema-1 agent is refused with a clear error, untouched.
#[test]
fn a_schema_1_store_is_refused_untouched() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    for f in [DB_FILE, "host-kek.bin"] {
        std::fs::copy(fixture.join(f), store.join(f)).unwrap();
    }
    let before = std::fs::read(store.join(DB_FILE)).unwrap();
    let kek = HostFileKeyProvider::open_or_create(&store.join("host-kek.bin")).unwrap();
    let err = Store::open(&store, &kek, common::store_options()).unwrap_err();
    assert_eq!(
        err,
        StoreError::UnsupportedSchema {
            found: 1,
            supported: 3
        }
    );
    assert!(err.to_string().contains("earlier agent"), "{err}");
    assert_eq!(std::fs::read(store.join(DB_FILE)).unwrap(), before);
}

#[test]
fn a_record_replayed_from_another_device_does_not_authenticate() {
    let (a, kek) = filled(3);
    let b = tempfile::tempdir().unwrap();
    let mut sb = open(b.path(), &kek);
    for i in 1..=3 {
        sb.append(&record(i)).unwrap();
    }
    drop(sb);
    let (nonce, sealed): (Vec<u8>, Vec<u8>) = raw(b.path())
        .query_row(
            "SELECT nonce, sealed FROM violations WHERE seq = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    raw(a.path())
        .execute(
            "UPDATE violations SET nonce = ?1, sealed = ?2 WHERE seq = 2",
            (nonce, sealed),
        )
        .unwrap();
    assert_eq!(
        chain_error(a.path(), &kek),
        ChainError::Unauthentic { seq: 2 }
    );
}

#[test]
fn acknowledged_records_are_deleted_and_the_chain_still_verifies() {
    let (dir, kek) = filled(5);
    let mut s = open(dir.path(), &kek);
    s.acknowledge(3).unwrap();
    s.acknowledge(2).unwrap(); // idempotent: an older ack changes nothing
    assert_eq!(s.acked_through(), 3);
    assert_eq!(s.unacked_count(), 2);
    assert_eq!(
        s.records_after(3, 10)
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>(),
        [4, 5]
    );
    assert_eq!(
        s.verify().unwrap(),
        baomi_core::store::VerifyReport {
            records: 2,
            acked_through: 3,
            head: 5
        }
    );
    assert_eq!(
        s.acknowledge(9),
        Err(StoreError::AckBeyondHead { ack: 9, head: 5 })
    );
    assert_eq!(s.append(&record(6)).unwrap(), 6);
    drop(s);
    let s = open(dir.path(), &kek);
    assert_eq!(s.acked_through(), 3);
    assert_eq!(s.verify().unwrap().records, 3);
}

#[test]
fn a_wrong_key_is_refused_and_the_file_is_untouched() {
    let (dir, _kek) = filled(2);
    let before = file_bytes(dir.path());
    let other = provider(dir.path(), "other-kek");
    let err = Store::open(&dir.path().join("store"), &other, common::store_options()).unwrap_err();
    assert_eq!(err, StoreError::WrongKey);
    assert_eq!(file_bytes(dir.path()), before);
}

#[test]
fn a_non_sqlite_file_is_corrupt_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let kek = provider(dir.path(), "kek");
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let junk = b"this is a photo of a classified page, not a database".repeat(100);
    std::fs::write(dir.path().join("store").join(DB_FILE), &junk).unwrap();
    let err = Store::open(&dir.path().join("store"), &kek, common::store_options()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(file_bytes(dir.path()), digest(&junk));
}

#[test]
fn a_damaged_database_is_corrupt_and_untouched() {
    let (dir, kek) = filled(50);
    let mut bytes = std::fs::read(dir.path().join("store").join(DB_FILE)).unwrap();
    // Keep the header, smash the schema page.
    for b in bytes.iter_mut().skip(100).take(3000) {
        *b = 0xA5;
    }
    std::fs::write(dir.path().join("store").join(DB_FILE), &bytes).unwrap();
    let _ = std::fs::remove_file(dir.path().join("store").join("baomi.db-wal"));
    let err = Store::open(&dir.path().join("store"), &kek, common::store_options()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(file_bytes(dir.path()), digest(&bytes));
}

#[test]
fn another_applications_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let kek = provider(dir.path(), "kek");
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let c = Connection::open(dir.path().join("store").join(DB_FILE)).unwrap();
    c.execute_batch("CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES ('x');")
        .unwrap();
    drop(c);
    let before = file_bytes(dir.path());
    let err = Store::open(&dir.path().join("store"), &kek, common::store_options()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(file_bytes(dir.path()), before);
}

#[test]
fn a_newer_schema_is_refused() {
    let (dir, kek) = filled(1);
    raw(dir.path())
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = Store::open(&dir.path().join("store"), &kek, common::store_options()).unwrap_err();
    assert_eq!(
        err,
        StoreError::NewerSchema {
            found: 99,
            supported: baomi_core::store::schema::VERSION
        }
    );
}

#[test]
fn a_full_disk_is_a_typed_error_and_loses_nothing_committed() {
    let (dir, kek) = filled(3);
    let mut s = open(dir.path(), &kek);
    let pages = s.size_bytes().unwrap() / 4096;
    s.set_max_page_count(pages + 1).unwrap();
    let big: Vec<ViolationRecord> = (0..200).map(record).collect();
    let err = s.append_batch(&big).unwrap_err();
    assert_eq!(err, StoreError::Full);
    assert_eq!(s.head().seq, 3, "a failed batch does not move the head");
    assert_eq!(s.verify().unwrap().records, 3);
    s.set_max_page_count(1_000_000).unwrap();
    assert_eq!(s.append(&record(4)).unwrap(), 4);
    assert_eq!(s.verify().unwrap().records, 4);
}

#[test]
fn over_the_cap_every_record_is_kept_and_the_cap_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let kek = provider(dir.path(), "kek");
    let opts = StoreOptions {
        max_bytes: 32 * 1024,
        ..common::store_options()
    };
    let mut s = Store::open(&dir.path().join("store"), &kek, opts).unwrap();
    assert!(!s.over_cap().unwrap());
    let batch: Vec<ViolationRecord> = (0..200).map(record).collect();
    s.append_batch(&batch).unwrap();
    assert!(s.over_cap().unwrap());
    assert_eq!(s.verify().unwrap().records, 200);
}

#[test]
fn key_rotation_rewraps_without_touching_records() {
    let (dir, kek) = filled(4);
    let mut s = open(dir.path(), &kek);
    let sealed_before: Vec<Vec<u8>> = {
        let c = raw(dir.path());
        let mut st = c
            .prepare("SELECT sealed FROM violations ORDER BY seq")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let new_kek = provider(dir.path(), "kek-2");
    s.rewrap(&new_kek).unwrap();
    drop(s);
    assert_eq!(
        Store::open(&dir.path().join("store"), &kek, common::store_options()).unwrap_err(),
        StoreError::WrongKey
    );
    let s = open(dir.path(), &new_kek);
    assert_eq!(s.verify().unwrap().records, 4);
    let c = raw(dir.path());
    let mut st = c
        .prepare("SELECT sealed FROM violations ORDER BY seq")
        .unwrap();
    let after: Vec<Vec<u8>> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(after, sealed_before);
}

#[test]
fn state_survives_reopening_and_is_bound_to_its_name() {
    let (dir, kek) = filled(0);
    let mut s = open(dir.path(), &kek);
    s.put_state("installed_bundle", b"v1").unwrap();
    s.put_state("installed_bundle", b"v2").unwrap();
    s.put_state("context", b"ctx").unwrap();
    drop(s);
    let s = open(dir.path(), &kek);
    assert_eq!(
        s.get_state("installed_bundle").unwrap().unwrap().as_slice(),
        b"v2"
    );
    assert_eq!(s.get_state("missing").unwrap(), None);
    drop(s);
    // Moving one state value under another name is detected.
    raw(dir.path())
        .execute_batch("UPDATE state SET name = 'tmp' WHERE name = 'context'; UPDATE state SET name = 'context' WHERE name = 'installed_bundle'; UPDATE state SET name = 'installed_bundle' WHERE name = 'tmp';")
        .unwrap();
    let s = open(dir.path(), &kek);
    assert!(matches!(
        s.get_state("context"),
        Err(StoreError::Integrity(ChainError::StateRolledBack))
    ));
}

// Issue 15's faults: random bytes over the database file's pages give a typed error, never a
// panic and never a silent "fewer records".
#[test]
fn random_bytes_over_any_page_are_a_typed_error_never_a_quiet_loss() {
    let (dir, kek) = filled(40);
    let db = dir.path().join("store").join(DB_FILE);
    let pristine = std::fs::read(&db).unwrap();
    let pages = pristine.len() / 4096;
    assert!(pages >= 3, "{pages} pages");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut refused = 0;
    for round in 0..60 {
        let mut bytes = pristine.clone();
        let page = (next() as usize) % pages;
        let (start, len) = if round % 3 == 0 {
            (page * 4096, 4096) // a whole page
        } else {
            (
                page * 4096 + (next() as usize) % 4000,
                1 + (next() as usize) % 64,
            )
        };
        for b in &mut bytes[start..start + len] {
            *b = next() as u8;
        }
        let work = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(work.path().join("store")).unwrap();
        std::fs::write(work.path().join("store").join(DB_FILE), &bytes).unwrap();
        let outcome = Store::open(&work.path().join("store"), &kek, common::store_options())
            .and_then(|s| s.verify().map(|r| (r, s.records_after(0, 1000))));
        match outcome {
            Err(_) => refused += 1,
            Ok((report, records)) => {
                // Accepted only if nothing that mattered was hit: every record still there.
                assert_eq!(
                    report.records, 40,
                    "round {round}: page {page} lost records quietly"
                );
                assert_eq!(records.unwrap().len(), 40, "round {round}");
            }
        }
    }
    eprintln!(
        "random bytes over pages: {refused} of 60 refused with a typed error, the rest hit nothing that mattered"
    );
    assert!(refused > 0, "no corruption was ever noticed");
}

// A sealed record opens only at its own position (issue 15's property): any record moved to
// any other seq, or any two swapped, fails to authenticate there, whatever the store's size.
proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, failure_persistence: None, ..Default::default() })]

    #[test]
    fn a_sealed_record_opens_only_at_its_own_seq(n in 2u32..9, pick in 0usize..1000, other in 0usize..1000) {
        let (dir, kek) = filled(n);
        let i = 1 + (pick % n as usize) as i64;
        let mut j = 1 + (other % n as usize) as i64;
        if j == i {
            j = if i == i64::from(n) { 1 } else { i + 1 };
        }
        let c = raw(dir.path());
        c.execute_batch(&format!(
            "UPDATE violations SET seq = -1 WHERE seq = {i};
             UPDATE violations SET seq = {i} WHERE seq = {j};
             UPDATE violations SET seq = {j} WHERE seq = -1;"
        ))
        .unwrap();
        drop(c);
        let first = i.min(j) as u64;
        proptest::prop_assert_eq!(chain_error(dir.path(), &kek), ChainError::Unauthentic { seq: first });
    }
}

/// ... and only on its own device: the same file presented as another device's (its device id
/// rewritten) opens no record and verifies nothing.
#[test]
fn a_store_renamed_to_another_device_authenticates_nothing() {
    let (dir, kek) = filled(3);
    raw(dir.path())
        .execute(
            "UPDATE meta SET value = CAST('dev-someone-else' AS BLOB) WHERE name = 'device_id'",
            [],
        )
        .unwrap();
    let opened = Store::open(&dir.path().join("store"), &kek, common::store_options());
    match opened {
        Err(e) => assert!(matches!(e, StoreError::Integrity(_)), "{e:?}"),
        Ok(s) => {
            assert!(
                s.verify().is_err(),
                "records sealed for another device must not verify"
            );
            assert!(s.records_after(0, 10).is_err());
        }
    }
}

// Issue 23, item 4: the office restored from a backup older than its acknowledgement. The
// store keeps the acknowledged records it sent (sealed as they were) and puts back exactly
// those the office lost, as one chain that verifies; copies that do not join the office's
// record, or no longer reach back far enough, change nothing. A version-2 store gains the
// table on open.
#[test]
fn acknowledged_records_come_back_for_an_office_restored_from_an_older_backup() {
    let (dir, kek) = filled(5);
    let mut s = open(dir.path(), &kek);
    s.acknowledge(2).unwrap();
    let tag2 = s.anchor().tag;
    s.acknowledge(5).unwrap();
    assert_eq!(s.acked_through(), 5);
    assert!(s.records_after(5, 10).unwrap().is_empty());
    // The office says it holds only 1..=2: 3..=5 come back, the chain verifies.
    assert_eq!(s.reinstate(2, [0xAA; 16]).unwrap(), None, "another chain");
    assert_eq!(s.reinstate(2, tag2).unwrap(), Some(3));
    assert_eq!(s.acked_through(), 2);
    let back: Vec<u64> = s
        .records_after(2, 10)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(back, [3, 4, 5]);
    assert_eq!(s.records_after(2, 10).unwrap()[0].record, record(3));
    assert!(s.verify().is_ok());
    // Appended after them: one chain still.
    assert_eq!(s.append(&record(6)).unwrap(), 6);
    assert!(s.verify().is_ok());
    s.acknowledge(6).unwrap();
    // Older than the copies kept (seq 0: the office lost everything): nothing changes.
    drop(s);
    // A version-2 file (no `delivered` table) opens, upgraded.
    let c = raw(dir.path());
    c.execute_batch("DROP TABLE delivered; PRAGMA user_version = 2;")
        .unwrap();
    drop(c);
    let mut s = open(dir.path(), &kek);
    assert_eq!(s.acked_through(), 6);
    assert_eq!(
        s.reinstate(2, tag2).unwrap(),
        None,
        "no copies after the upgrade"
    );
    assert_eq!(s.acked_through(), 6);
    assert!(s.verify().is_ok());
}
