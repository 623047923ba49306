//! Server ingest under load: 1,000 simulated devices each run a sync (check-in, one upload
//! of 5 sealed records, finish) against an in-process `baomi-server` on loopback HTTP, from
//! 16 client threads, both ways a device can: the three stage requests, and the one request
//! (`/v1/sync`) an agent sends when its backlog fits one batch. Reports completed device
//! syncs per second and sync latency percentiles, for SQLite and (with `BAOMI_BENCH_PG_URL`)
//! PostgreSQL.
//!
//! The one-request flow with the ledger runs again under the `sm` suite (SM2 device keys and
//! upload key, SM4-GCM batches, HMAC-SM3 proofs, SM3 links: issue 24), in the same run.
//!
//! The ledger's same-run ratio (issue 21) compares the one-request flow without and with the
//! ledger; `BAOMI_BENCH_ROUNDS=N` runs that pair N times, alternating, and reports the ratio
//! of the medians (the timed syncs' leaves are appended to the log on the clock).
//!
//! `cargo bench -p baomi-server --bench sync_load`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark harness"
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use baomi_core::bundle::trust::TrustRootDoc;
use baomi_core::bundle::{SigningKey, TrustRoot};
use baomi_core::event::Event;
use baomi_core::posture::Posture;
use baomi_core::store::{PolicyRef, ViolationRecord};
use baomi_core::suite::Suite;
use baomi_core::sync::HttpRequest;
use baomi_core::sync::http::HttpTransport;
use baomi_core::sync::identity::DeviceIdentity;
use baomi_core::sync::ledger;
use baomi_core::sync::proof::{ProofKey, session_aad};
use baomi_core::sync::protocol::{
    ChainState, CheckIn, Finish, PROTOCOL_VERSION, SyncRequest, Upload, UploadBatch,
    UploadedRecord, path,
};
use baomi_core::sync::seal::{Recipient, batch_aad, seal};
use baomi_core::time::Timestamp;
use baomi_server::db::Db;
use baomi_server::http::Listener;
use baomi_server::upload_key::UploadKey;
use baomi_server::{Server, admin};

/// Simulated phones (`BAOMI_BENCH_DEVICES`, default 1,000): each runs one timed sync.
fn devices() -> usize {
    std::env::var("BAOMI_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}
const CLIENT_THREADS: usize = 16;
/// Server runtime threads (`BAOMI_BENCH_SERVER_THREADS`, default 8 as `baomi-server serve`).
fn server_threads() -> usize {
    std::env::var("BAOMI_BENCH_SERVER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}
const RECORDS_PER_SYNC: u64 = 5;

fn record() -> ViolationRecord {
    ViolationRecord {
        event: Event::from_json_line(
            1,
            r#"{"at":"2026-11-27T10:00:00+08:00","type":"app_launched","package":"com.tencent.mm"}"#,
        )
        .unwrap(),
        verdict: baomi_core::Verdict::Deny,
        rules: vec!["no-messengers-for-classified-staff".into()],
        severity: None,
        reason: "launch of banned app `com.tencent.mm`".into(),
        posture: Posture::open(),
        policy: Some(PolicyRef { id: "baseline".into(), version: 1 }),
    }
}

/// Runs one configuration; returns its device syncs per second.
/// A log checkpoint as a phone carries one: the shape and length of a signed note of size
/// `size` (its signature is not checked by the office).
fn carried_note(size: u64) -> String {
    format!(
        "ledger.bench.example\n{size}\n{}=\n\n\u{2014} ledger.bench.example {}\n",
        "A".repeat(43),
        "B".repeat(92)
    )
}

fn run(label: &str, url: &str, one_request: bool, ledger: bool, suite: Suite) -> f64 {
    let upload = UploadKey::generate_for(suite).unwrap();
    let upload_pub = upload.recipient();
    // The office's trust root, published: each phone reports its digest as a healthy phone
    // does (a root the office never published raises an alert on every sync).
    let root = trust_root(suite, &upload);
    let root_digest = TrustRoot::claimed_digest(&root).unwrap();
    let pool = if url.starts_with("postgres") {
        server_threads()
    } else {
        1
    };
    let mut server =
        Server::new(Db::open(url, pool).unwrap(), Some(upload), Timestamp::now).unwrap();
    if ledger {
        // Signed checkpoints, so each answer carries one as an office's does.
        let (key, _) = baomi_server::ledger::LogKey::generate("ledger.bench.example").unwrap();
        server = server.with_log_key(key);
    }
    let server = Arc::new(server);
    let l = Listener::start(
        server.clone(),
        "127.0.0.1:0".parse().unwrap(),
        None,
        server_threads(),
    )
    .unwrap();
    let base = format!("http://{}", l.addr().unwrap());
    server.publish_trust_root(&root).unwrap();

    // Enrol the fleet and give every phone its first sync (not timed): the timed sync is a
    // phone's scheduled one, with five new violations since the last.
    let n = devices();
    let devices = common::enroll_fleet_of(suite, &server, &base, "load", n);
    {
        let t = HttpTransport::new(&base);
        for d in &devices {
            let sync = sync_requests(d, &upload_pub, &root_digest, one_request, 0, ledger);
            send_sync(&t, &sync);
        }
    }
    // The timed syncs' requests, sealed, linked and signed before the clock starts: that is
    // each phone's work, done on the phone; the clock runs while they are sent and answered.
    let syncs: Vec<Vec<HttpRequest>> = devices
        .iter()
        .map(|d| sync_requests(d, &upload_pub, &root_digest, one_request, 1, ledger))
        .collect();
    let syncs = Arc::new(syncs);
    // The first round's leaves into the log before the clock: the timed syncs pay for their
    // own leaves (below), not for a backlog the sequencer happens to reach while they run.
    server.ledger_integrate().unwrap();
    if ledger {
        // The checkpoint the timed syncs' answers carry (the server signs one every 2 s).
        server.ledger_checkpoint().unwrap();
    }

    let next = Arc::new(AtomicUsize::new(0));
    // PostgreSQL: how much WAL the timed syncs write (for the fleet projection).
    let wal = |url: &str| -> Option<i64> {
        let mut c = postgres::Client::connect(url, postgres::NoTls).ok()?;
        c.query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
            &[],
        )
        .ok()?
        .try_get(0)
        .ok()
    };
    let wal_before = url.starts_with("postgres").then(|| wal(url)).flatten();
    let written_before = written();
    let server_cpu_before = server_cpu_ms();
    let postgres_cpu_before = url.starts_with("postgres").then(postgres_cpu_ms).flatten();

    if std::env::var("BAOMI_BENCH_DEBUG").is_ok() {
        // For `perf record -p` on the timed syncs alone.
        eprintln!("timed syncs start: {label}");
    }
    let start = Instant::now();
    let workers: Vec<_> = (0..CLIENT_THREADS)
        .map(|_| {
            let (syncs, next, base) = (syncs.clone(), next.clone(), base.clone());
            std::thread::spawn(move || {
                let t = HttpTransport::new(&base);
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(sync) = syncs.get(i) else { break };
                    let t0 = Instant::now();
                    send_sync(&t, sync);
                    lat.push(t0.elapsed());
                    if t0.elapsed() > Duration::from_millis(500)
                        && std::env::var("BAOMI_BENCH_DEBUG").is_ok()
                    {
                        eprintln!(
                            "slow sync {i} at +{:?}: {:?}",
                            t0.duration_since(start),
                            t0.elapsed()
                        );
                    }
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    // The timed syncs' leaves appended to the log, on the clock: the sequencer's share of a
    // sync (the server runs it every 2 s; a run that ended between two runs of it would
    // otherwise leave it out). Its CPU is this thread's.
    let sequencer_before = thread_cpu_ms();
    let sequencer_start = Instant::now();
    server.ledger_integrate().unwrap();
    let sequencer_wall = sequencer_start.elapsed();
    let sequencer = sequencer_before.zip(thread_cpu_ms()).map(|(a, b)| b - a);
    let elapsed = start.elapsed();
    let server_cpu = server_cpu_before
        .zip(server_cpu_ms())
        .map(|(a, b)| b - a + sequencer.unwrap_or(0.0));

    let postgres_cpu = postgres_cpu_before
        .zip(postgres_cpu_ms())
        .map(|(a, b)| b - a);
    let wal_bytes = wal_before.zip(wal(url)).map(|(a, b)| b - a);
    let written = written_before.zip(written()).map(|(a, b)| b - a);
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let (label, requests) = if one_request {
        (format!("{label}, 1 request"), n)
    } else {
        (format!("{label}, stages"), n * 3)
    };
    let label = if ledger {
        format!("{label}, ledger")
    } else {
        format!("{label}, no ledger")
    };
    let label = format!("{label}, {suite}");
    println!(
        "{label:<20} {n} devices in {:.2} s: {:.0} device syncs/s, {:.0} requests/s; sync latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
    );
    let received = admin::violations(&server, None).unwrap().len();
    assert_eq!(received, 2 * n * RECORDS_PER_SYNC as usize);
    if let (Some(w), false) = (written, url.starts_with("postgres")) {
        println!(
            "{:<20} written to disk by the timed syncs: {:.1} KiB per sync (SQLite's WAL and checkpoints)",
            "",
            w as f64 / n as f64 / 1024.0
        );
    }
    if ledger {
        println!(
            "{:<20} the sequencer after the syncs: {:.1} ms on the clock ({:.0} µs a sync)",
            "",
            sequencer_wall.as_secs_f64() * 1e3,
            sequencer_wall.as_secs_f64() * 1e6 / n as f64
        );
    }
    // Counted in 10 ms ticks: a run too short to register prints nothing.
    if let Some(cpu) = server_cpu.filter(|c| *c > 0.0) {
        // The load generator shares the cores: what the server alone would sustain on them.
        println!(
            "{:<20} server threads' CPU: {:.2} ms per sync ({:.0} syncs/s per core it has to itself{})",
            "",
            cpu / n as f64,
            n as f64 / (cpu / 1e3),
            if url.starts_with("postgres") {
                "; PostgreSQL's own CPU not counted"
            } else {
                "; SQLite's work included"
            }
        );
    }
    if let Some(cpu) = postgres_cpu.filter(|c| *c > 0.0) {
        println!(
            "{:<20} PostgreSQL's CPU (its processes on this machine): {:.2} ms per sync",
            "",
            cpu / n as f64,
        );
    }
    if let Some(w) = wal_bytes {
        println!(
            "{:<20} WAL written by the timed syncs: {:.1} KiB per sync (the cluster's, so an upper bound)",
            "",
            w as f64 / n as f64 / 1024.0
        );
    }
    l.stop();
    n as f64 / elapsed.as_secs_f64()
}

/// Alternating rounds of the one-request flow without and with the ledger
/// (`BAOMI_BENCH_ROUNDS`, default 1): this machine's speed drifts between runs seconds apart,
/// so the same-run ratio is taken between medians of interleaved runs.
fn rounds() -> usize {
    std::env::var("BAOMI_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// The median of `rates` (not empty).
fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    let m = rates.len() / 2;
    if rates.len().is_multiple_of(2) {
        (rates[m - 1] + rates[m]) / 2.0
    } else {
        rates[m]
    }
}

/// Prints the ledger's same-run ratio for one engine from its runs' rates.
fn report_ratio(engine: &str, results: &[((bool, bool, Suite), f64)]) {
    let rates = |ledger: bool| -> Vec<f64> {
        results
            .iter()
            .filter(|((one, l, suite), _)| *one && *l == ledger && *suite == Suite::Intl)
            .map(|(_, r)| *r)
            .collect()
    };
    let (mut off, mut on) = (rates(false), rates(true));
    if off.is_empty() || on.is_empty() {
        return;
    }
    let each: Vec<String> = off
        .iter()
        .zip(&on)
        .map(|(a, b)| format!("{:.0}/{:.0} = {:.2}x", b, a, b / a))
        .collect();
    let mut ratios: Vec<f64> = off.iter().zip(&on).map(|(a, b)| b / a).collect();
    let (m_off, m_on) = (median(&mut off), median(&mut on));
    println!(
        "{engine}, 1 request, intl: ledger on / off over {} alternating round(s): median {m_on:.0} / {m_off:.0} syncs/s = {:.2}x; median of the rounds' ratios {:.2}x (each round: {})",
        each.len(),
        m_on / m_off,
        median(&mut ratios),
        each.join(", ")
    );
}

/// A trust root of `suite` naming `upload` as the office's upload key, self-signed.
fn trust_root(suite: Suite, upload: &UploadKey) -> Vec<u8> {
    let key = SigningKey::generate_for(suite).unwrap();
    let doc = TrustRootDoc::one_key(key.public(), Some(upload.public_base64()), Timestamp::now());
    TrustRoot::sign(&doc, &[&key]).to_json().into_bytes()
}

/// CPU time (ms) of the server's threads (`baomi-http`: the runtime's workers and its
/// blocking pool, where requests' database work runs), from Linux's `/proc/self/task`; the
/// client threads are not counted.
fn server_cpu_ms() -> Option<f64> {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("stat")) else {
            continue; // the thread ended
        };
        if !stat.rsplit_once(')')?.0.ends_with("(baomi-http") {
            continue;
        }
        ticks += cpu_ticks(&stat)?;
    }
    // USER_HZ is 100 on Linux.
    Some(ticks as f64 * 10.0)
}

/// CPU time of every `postgres` process on this machine so far, in ms (10 ms ticks): the
/// cluster's own share of a sync when it runs here, as the bench's does (`None` if none is
/// found). Its background processes are included, so it is an upper bound.
fn postgres_cpu_ms() -> Option<f64> {
    let mut ticks = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // the process ended
        };
        if !stat
            .rsplit_once(')')
            .is_some_and(|(head, _)| head.ends_with("(postgres"))
        {
            continue;
        }
        found = true;
        ticks += cpu_ticks(&stat).unwrap_or(0);
    }
    found.then_some(ticks as f64 * 10.0)
}

/// CPU time of the calling thread so far, in ms (10 ms ticks).
fn thread_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    Some(cpu_ticks(&stat)? as f64 * 10.0)
}

/// User and system ticks of a thread's `stat` line.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, tail) = stat.rsplit_once(')')?;
    let f: Vec<&str> = tail.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat(5), the 12th and 13th after the name.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Bytes this process has caused to be written to storage (Linux's `/proc/self/io`).
fn written() -> Option<u64> {
    std::fs::read_to_string("/proc/self/io")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))?
        .trim()
        .parse()
        .ok()
}

/// Sends one phone's sync (one request, or the three stages in order); asserts each answer.
fn send_sync(t: &HttpTransport, sync: &[HttpRequest]) {
    for req in sync {
        let answer = common::send(t, req);
        if req.path == path::SYNC {
            let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
            assert!(
                answer["finish"].is_object() && answer["upload"].is_object(),
                "{answer}"
            );
        }
    }
}

/// Check-in, one sealed batch, finish: what a phone with five new violations sends (its
/// `round`-th sync, counting from 0), as three requests or as one, signed.
fn sync_requests(
    d: &DeviceIdentity,
    upload_pub: &Recipient,
    root_digest: &str,
    one_request: bool,
    round: u64,
    with_ledger: bool,
) -> Vec<HttpRequest> {
    let (first, last) = (round * RECORDS_PER_SYNC + 1, (round + 1) * RECORDS_PER_SYNC);
    let chain = ChainState {
        acked_through: first - 1,
        head_seq: last,
        head_tag: "00".repeat(16),
        generation: 1,
    };
    let suite = d.key().suite();
    let session = ProofKey::generate(suite).unwrap();
    let check_in = CheckIn {
        protocol: PROTOCOL_VERSION,
        device_id: d.device_id().into(),
        agent_version: "bench".into(),
        policy: None,
        trust_root_version: 1,
        trust_root_digest: Some(root_digest.to_owned()),
        posture: Posture::open(),
        applied: None,
        fail_closed: None,
        chain: chain.clone(),
        device_time: Timestamp::now(),
        custody_cursor: 0,
        session: seal(upload_pub, &session_aad(d.device_id()), session.as_bytes()).unwrap(),
        // With the ledger, the phone reports the log checkpoint it carries, larger each sync
        // (the office keeps the larger: a write each sync, as in a growing log).
        // `BAOMI_BENCH_CARRIED=off`: none (what the report costs, same ledger otherwise).
        log_checkpoint: (with_ledger
            && std::env::var("BAOMI_BENCH_CARRIED").as_deref() != Ok("off"))
        .then(|| carried_note(round + 1)),
    };
    let receipt_key = ProofKey::generate(suite).unwrap();
    // With the ledger, each batch linked and checkpointed as a phone does (each starts its
    // chain afresh, which the office accepts as a restart: the same work per record);
    // without, as an agent from before the ledger sends it (no link, no checkpoint: the
    // office verifies no chain and logs nothing), the same-run baseline.
    let mut link = baomi_core::sync::ledger::GENESIS;
    let records: Vec<UploadedRecord> = (first..=last)
        .map(|seq| {
            let record = record();
            link = ledger::link_of(suite, d.device_id(), seq, &link, &record);
            UploadedRecord {
                seq,
                tag: format!("{seq:032x}"),
                record,
                link: if with_ledger {
                    baomi_core::bundle::keys::hex(&link)
                } else {
                    String::new()
                },
            }
        })
        .collect();
    // Today's agent signs the checkpoint with the request that carries the batch (one
    // signature for both); `BAOMI_BENCH_CHECKPOINT=apart` sends it in the batch, signed apart,
    // as agents before that did (two signatures to verify).
    let apart = std::env::var("BAOMI_BENCH_CHECKPOINT").as_deref() == Ok("apart");
    let bound = (with_ledger && !apart).then(|| ledger::ChainEnd {
        seq: last,
        link,
        at: Timestamp::now(),
    });
    let batch = UploadBatch {
        receipt_key: receipt_key.to_base64().to_string(),
        records,
        checkpoint: (with_ledger && apart)
            .then(|| ledger::DeviceCheckpoint::sign(d, last, &link, Timestamp::now())),
    };
    let plain = serde_json::to_vec(&batch).unwrap();
    let up = Upload {
        device_id: d.device_id().into(),
        first_seq: first,
        last_seq: last,
        sealed: seal(upload_pub, &batch_aad(d.device_id(), first, last), &plain).unwrap(),
    };
    let finish = Finish {
        device_id: d.device_id().into(),
        posture: Posture::open(),
        policy: None,
        chain,
        custody_cursor: 0,
    };
    // Signed now, strictly increasing within the sync and past the previous round's (a
    // repeated time is a replay).
    let now = Timestamp::now().0 + 3 * round as i64;
    let at = |k: i64| Timestamp(now + k);
    if one_request {
        let req = SyncRequest {
            check_in,
            upload: Some(up),
            finish,
        };
        let body = serde_json::to_vec(&req).unwrap();
        return vec![match bound {
            Some(c) => common::request_with_checkpoint(d, path::SYNC, body, at(0), c),
            None => common::request_at(Some(d), path::SYNC, body, at(0)),
        }];
    }
    vec![
        common::request_at(
            Some(d),
            path::CHECK_IN,
            serde_json::to_vec(&check_in).unwrap(),
            at(0),
        ),
        match (bound, serde_json::to_vec(&up).unwrap()) {
            (Some(c), body) => common::request_with_checkpoint(d, path::UPLOAD, body, at(1), c),
            (None, body) => common::request_at(Some(d), path::UPLOAD, body, at(1)),
        },
        common::request_at(
            Some(d),
            path::FINISH,
            serde_json::to_vec(&finish).unwrap(),
            at(2),
        ),
    ]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    // `BAOMI_BENCH_ONLY=postgres,one` (any of sqlite, postgres, stages, one, ledger, intl, sm):
    // one engine, one flow, only the ledger-on runs or one suite, for profiling.
    let only = std::env::var("BAOMI_BENCH_ONLY").unwrap_or_default();
    let has = |w: &str| only.split(',').any(|o| o == w);
    let flows: Vec<bool> = [false, true]
        .into_iter()
        .filter(|one| !(has("stages") && *one || has("one") && !one))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    // The one-request flow with the ledger off first (the same-run baseline), then on, then
    // on under the sm suite.
    let runs: Vec<(bool, bool, Suite)> = flows
        .iter()
        .flat_map(|&one| {
            if one {
                let mut v: Vec<_> = (0..rounds())
                    .flat_map(|_| [(one, false, Suite::Intl), (one, true, Suite::Intl)])
                    .collect();
                v.push((one, true, Suite::Sm));
                v
            } else {
                vec![(one, true, Suite::Intl)]
            }
        })
        .filter(|&(_, ledger, suite)| {
            (ledger || !has("ledger"))
                && (suite == Suite::Intl || !has("intl"))
                && (suite == Suite::Sm || !has("sm"))
        })
        .collect();
    let mut results = Vec::new();
    for (i, (one, ledger, suite)) in runs.iter().copied().enumerate() {
        if has("postgres") {
            break;
        }
        let rate = run(
            "sqlite",
            &format!(
                "sqlite:{}",
                dir.path().join(format!("load{i}.db")).display()
            ),
            one,
            ledger,
            suite,
        );
        results.push(((one, ledger, suite), rate));
    }
    report_ratio("sqlite", &results);
    if let Ok(base) = std::env::var("BAOMI_BENCH_PG_URL") {
        let mut results = Vec::new();
        for (i, (one, ledger, suite)) in runs.iter().copied().enumerate() {
            if has("sqlite") {
                break;
            }
            let name = format!("baomi_load_{}_{i}", std::process::id());
            let mut c = postgres::Client::connect(&base, postgres::NoTls).unwrap();
            c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
            let cut = base.rfind('/').unwrap();
            let rate = run(
                "postgres",
                &format!("{}/{name}", &base[..cut]),
                one,
                ledger,
                suite,
            );
            results.push(((one, ledger, suite), rate));
            c.batch_execute(&format!("DROP DATABASE {name}")).unwrap();
        }
        report_ratio("postgres", &results);
    } else {
        println!("postgres   skipped: set BAOMI_BENCH_PG_URL (e.g. from .ci/postgres)");
    }
}
