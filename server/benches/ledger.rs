//! The evidence ledger at size: seeds a log of `BAOMI_BENCH_RECORDS` violation records
//! (default 1,000,000) from 1,000 phones, each chain linked and checkpointed every 10 records
//! as phones do, with their rows, into SQLite through the server's own code (enqueue,
//! sequencer); then measures the sequencer's rate, inclusion proofs against a same-run
//! baseline (reading one leaf by index), the auditor's full check (`baomi audit --db`), and
//! the bytes the ledger adds per record.
//!
//! `cargo bench -p baomi-server --bench ledger`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

use std::time::Instant;

use baomi_core::bundle::SigningKey;
use baomi_core::bundle::keys::hex;
use baomi_core::sync::identity::DeviceIdentity;
use baomi_core::sync::ledger::{self as chain, DeviceCheckpoint};
use baomi_core::time::Timestamp;
use baomi_server::Server;
use baomi_server::db::{Db, Value};
use baomi_server::ledger::audit::{AuditState, audit};
use baomi_server::ledger::{Leaf, LogKey, log};

const DEVICES: u64 = 1000;
const PER_CHECKPOINT: u64 = 10;

fn records() -> u64 {
    std::env::var("BAOMI_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let url = format!("sqlite:{}", path.display());
    let (key, _) = LogKey::generate("ledger.bench.example").unwrap();
    let verifier = key.verifier_key().to_owned();
    let server = Server::new(Db::open(&url, 1).unwrap(), None, Timestamp::now)
        .unwrap()
        .with_log_key(key);
    let n = records();
    let per_device = n / DEVICES;
    let record = r#"{"event":{"at":"2026-12-03T10:00:00+08:00","type":"app_launched","package":"com.tencent.mm"},"verdict":"deny","rules":["no-messengers"],"severity":"high","reason":"banned","posture":{},"policy":null}"#;
    let digest = chain::record_digest(baomi_core::suite::Suite::Intl, record.as_bytes());
    let db = Db::open(&url, 1).unwrap();

    // Seed: rows and leaves queued in transactions of one device each, as uploads do.
    let t0 = Instant::now();
    for d in 0..DEVICES {
        let id = DeviceIdentity::new(format!("dev-{d:04}"), SigningKey::generate().unwrap());
        let dev = id.device_id().to_owned();
        db.tx(|c| {
            let mut leaves = vec![Leaf::Device {
                device: dev.clone(),
                public_key: id.public().to_base64(),
                at: 0,
            }];
            let mut link = chain::GENESIS;
            let mut rows: Vec<Value> = Vec::new();
            for seq in 1..=per_device {
                link = chain::chain_link(baomi_core::suite::Suite::Intl, &dev, seq, &link, &digest);
                leaves.push(Leaf::Record {
                    device: dev.clone(),
                    seq,
                    link: hex(&link),
                    digest: hex(&digest),
                    received_at: 1,
                });
                rows.extend([
                    dev.clone().into(),
                    i64::try_from(seq).unwrap().into(),
                    hex(&link).into(),
                ]);
                if seq % PER_CHECKPOINT == 0 || seq == per_device {
                    let cp = DeviceCheckpoint::sign(&id, seq, &link, Timestamp(1));
                    leaves.push(Leaf::Checkpoint {
                        device: dev.clone(),
                        seq,
                        link: cp.link,
                        at: cp.at,
                        signature: cp.signature,
                        binding: cp.binding,
                    });
                }
            }
            for chunk in rows.chunks(3 * 300) {
                let mut sql = String::from(
                    "INSERT INTO violations (device_id, seq, received_at, at, rules, record, tag, link) VALUES ",
                );
                for i in 0..chunk.len() / 3 {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!(
                        "(${}, ${}, 1, 0, 'no-messengers', '{record}', '', ${})",
                        3 * i + 1,
                        3 * i + 2,
                        3 * i + 3
                    ));
                }
                c.execute(&sql, chunk)?;
            }
            log::enqueue(c, &leaves)?;
            Ok(())
        })
        .unwrap();
    }
    let seeded = t0.elapsed();

    // The sequencer.
    let t1 = Instant::now();
    let mut size = 0;
    loop {
        let grown = server.ledger_integrate().unwrap();
        if grown == size {
            break;
        }
        size = grown;
    }
    let integrated = t1.elapsed();
    let note = server.ledger_checkpoint().unwrap();
    println!(
        "seeded {n} records ({DEVICES} phones, a checkpoint every {PER_CHECKPOINT}) in {:.1} s; sequencer appended {size} leaves in {:.1} s: {:.0} leaves/s",
        seeded.as_secs_f64(),
        integrated.as_secs_f64(),
        size as f64 / integrated.as_secs_f64()
    );

    // Inclusion proofs against reading one leaf, same run.
    let probes: Vec<u64> = (0..1000u64).map(|i| (i * 7919) % size).collect();
    let t2 = Instant::now();
    for &p in &probes {
        let l = server.ledger_leaves(p, 1).unwrap();
        assert_eq!(l.leaves.len(), 1);
    }
    let read_one = t2.elapsed() / 1000;
    let t3 = Instant::now();
    for &p in &probes {
        let proof = server.ledger_inclusion(p, size).unwrap();
        assert!(!proof.hashes.is_empty());
    }
    let prove = t3.elapsed() / 1000;
    println!(
        "inclusion proof in a log of {size}: {:.0} µs each (reading one leaf by index: {:.0} µs; ratio {:.2}x)",
        prove.as_secs_f64() * 1e6,
        read_one.as_secs_f64() * 1e6,
        prove.as_secs_f64() / read_one.as_secs_f64()
    );

    // The auditor, reading the database (`baomi audit --db`).
    let t4 = Instant::now();
    let (report, _) = audit(&server, &verifier, &AuditState::default()).unwrap();
    let audited = t4.elapsed();
    assert!(
        report.clean(),
        "{:?}",
        &report.findings[..report.findings.len().min(3)]
    );
    assert_eq!(report.devices.len() as u64, DEVICES);
    println!(
        "audit of {n} records ({size} leaves, every chain and signature, every row compared): {:.1} s",
        audited.as_secs_f64()
    );
    let _ = note;
    // Bytes the ledger adds per record (payload, before SQLite's page and index overhead):
    // the leaves' text, the stored hashes (base64, with their index), the link column.
    let (leaf_bytes, hashes) = db
        .tx(|c| {
            let r = c.query(
                "SELECT (SELECT SUM(LENGTH(data) + LENGTH(ref) + 8) FROM ledger_leaves), (SELECT COUNT(*) FROM ledger_hashes)",
                &[],
            )?;
            Ok((r[0][0].int().unwrap_or(0), r[0][1].int().unwrap_or(0)))
        })
        .unwrap();
    let per_record = (leaf_bytes as f64 + hashes as f64 * (44.0 + 8.0)) / n as f64 + 64.0;
    println!(
        "bytes: {:.0} per record (leaves {:.0}, stored hashes {:.0}, link column 64), payload before SQLite's page and index overhead; the whole file {:.1} MiB",
        per_record,
        leaf_bytes as f64 / n as f64,
        hashes as f64 * 52.0 / n as f64,
        std::fs::metadata(&path).unwrap().len() as f64 / 1048576.0
    );
}
