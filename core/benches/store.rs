//! Sealed, chained append vs a plain rusqlite insert of the same serialized record, with the
//! same pragmas (WAL, same `synchronous`), in the same run: the ratio is what matters.
//!
//! `cargo bench -p baomi-core --bench store`

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use baomi_core::decision::Verdict;
use baomi_core::event::Event;
use baomi_core::posture::Posture;
use baomi_core::store::{
    Durability, HostFileKeyProvider, PolicyRef, Store, StoreOptions, ViolationRecord,
};
use baomi_core::suite::Suite;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rusqlite::{Connection, params};

fn record() -> ViolationRecord {
    ViolationRecord {
        event: Event::from_json_line(
            1,
            r#"{"at":"2016-10-20T23:06:30+08:00","type":"share","from_package":"com.android.gallery3d","to_package":"com.tencent.mm","mime":"image/jpeg"}"#,
        )
        .unwrap(),
        verdict: Verdict::Deny,
        rules: vec!["no-messengers-for-classified-staff".into(), "no-sharing-into-messengers-during-custody".into()],
        severity: None,
        reason: "share of image/jpeg from `com.android.gallery3d` into `com.tencent.mm` is denied (rules `no-messengers-for-classified-staff`, `no-sharing-into-messengers-during-custody`)".into(),
        posture: Posture {
            camera_disabled: true,
            screen_capture_disabled: true,
            blocked_packages: ["com.alibaba.android.rimet", "com.sina.weibo", "com.tencent.mm", "com.tencent.mobileqq", "com.tencent.wework"]
                .map(std::sync::Arc::from)
                .to_vec(),
        },
        policy: Some(PolicyRef { id: "baseline".into(), version: 1 }),
    }
}

struct Plain {
    conn: Connection,
    seq: i64,
}

impl Plain {
    fn open(dir: &std::path::Path, durability: Durability) -> Self {
        let conn = Connection::open(dir.join("plain.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(
            None,
            "synchronous",
            if durability == Durability::Full {
                "FULL"
            } else {
                "NORMAL"
            },
        )
        .unwrap();
        conn.execute_batch("CREATE TABLE violations (seq INTEGER PRIMARY KEY NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL)").unwrap();
        Self { conn, seq: 0 }
    }

    /// The same work minus the crypto: serialize, insert, commit.
    fn insert_batch(&mut self, recs: &[ViolationRecord]) {
        let tx = self.conn.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached("INSERT INTO violations (seq, nonce, sealed) VALUES (?1, ?2, ?3)")
                .unwrap();
            for r in recs {
                self.seq += 1;
                let json = serde_json::to_vec(r).unwrap();
                st.execute(params![self.seq, &[0u8; 12][..], json]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

fn sealed(dir: &std::path::Path, durability: Durability, suite: Suite) -> Store {
    let kek = HostFileKeyProvider::open_or_create(&dir.join("kek")).unwrap();
    Store::open(
        &dir.join("sealed"),
        &kek,
        StoreOptions {
            durability,
            suite,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    for (label, durability) in [("normal", Durability::Normal), ("full", Durability::Full)] {
        for batch in [1usize, 100] {
            let recs: Vec<ViolationRecord> = (0..batch).map(|_| record()).collect();
            let mut g = c.benchmark_group(format!("append/{label}/batch{batch}"));
            g.throughput(Throughput::Elements(batch as u64));
            if durability == Durability::Full {
                g.sample_size(20);
            }
            // Each side gets its own directory and is closed before the other runs: sharing a
            // directory (and a still-open WAL) measurably slowed whichever side ran second.
            let plain_dir = tempfile::tempdir().unwrap();
            let mut plain = Plain::open(plain_dir.path(), durability);
            g.bench_function("plain_insert", |b| {
                b.iter_batched(
                    || (),
                    |_| plain.insert_batch(&recs),
                    BatchSize::PerIteration,
                )
            });
            drop(plain);
            // The same under each suite (issue 24): AES-256-GCM/HMAC-SHA256 and
            // SM4-GCM/HMAC-SM3.
            for (name, suite) in [
                ("sealed_append", Suite::Intl),
                ("sealed_append_sm", Suite::Sm),
            ] {
                let sealed_dir = tempfile::tempdir().unwrap();
                let mut store = sealed(sealed_dir.path(), durability, suite);
                g.bench_function(name, |b| {
                    b.iter_batched(
                        || (),
                        |_| store.append_batch(&recs).unwrap(),
                        BatchSize::PerIteration,
                    )
                });
            }
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
