//! A process killed at any moment loses no committed record and never leaves a chain that
//! fails verification. The test binary re-runs itself as the child that appends in a loop.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use baomi_core::decision::Verdict;
use baomi_core::event::Event;
use baomi_core::posture::Posture;
use baomi_core::store::{HostFileKeyProvider, Store, ViolationRecord};
use ring::rand::{SecureRandom, SystemRandom};

const CHILD_ENV: &str = "BAOMI_CRASH_CHILD_DIR";
const ROUNDS: usize = 40;

fn record(i: u64) -> ViolationRecord {
    ViolationRecord {
        event: Event::from_json_line(1, r#"{"at":"2017-10-11T10:03:00+08:00","type":"photo_captured","package":"com.android.camera"}"#).unwrap(),
        verdict: Verdict::Deny,
        rules: vec![format!("rule-{i}")],
        severity: None,
        reason: "x".repeat((i % 300) as usize),
        posture: Posture::default(),
        policy: None,
    }
}

fn open(dir: &Path) -> Store {
    let kek = HostFileKeyProvider::open_or_create(&dir.join("kek")).unwrap();
    Store::open(&dir.join("store"), &kek, common::store_options()).unwrap()
}

/// The child: appends singles and batches forever, printing each committed head.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut s = open(Path::new(&dir));
    let mut i = s.head().seq;
    loop {
        i += 1;
        let head = if i.is_multiple_of(3) {
            let batch: Vec<_> = (0..7).map(|k| record(i + k)).collect();
            *s.append_batch(&batch).unwrap().last().unwrap()
        } else {
            s.append(&record(i)).unwrap()
        };
        if i.is_multiple_of(11) {
            s.acknowledge(head.saturating_sub(20)).unwrap();
        }
        println!("committed {head}");
    }
}

fn random_ms(lo: u64, hi: u64) -> u64 {
    let mut b = [0u8; 8];
    SystemRandom::new().fill(&mut b).unwrap();
    lo + u64::from_le_bytes(b) % (hi - lo)
}

#[test]
fn killed_at_random_moments_loses_no_committed_record() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut last_committed = 0u64;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    l.strip_prefix("committed ")
                        .and_then(|n| n.parse::<u64>().ok())
                })
                .max()
        });
        std::thread::sleep(Duration::from_millis(random_ms(30, 250)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Some(seen) = reader.join().unwrap() {
            last_committed = last_committed.max(seen);
        }
        let s = open(dir.path());
        let report = s.verify().unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            report.head >= last_committed,
            "round {round}: head {} but {last_committed} was reported committed",
            report.head
        );
        assert_eq!(
            report.records,
            report.head - report.acked_through,
            "round {round}"
        );
    }
    assert!(last_committed > 0, "the child never committed anything");
}
