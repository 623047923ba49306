//! A server that answers badly (issue 15's faults): garbage, a truncated body, a 500, a body
//! that trickles in, a body far over the limit. Each time the device's sync fails with a typed
//! error, deletes nothing, does not count as a sync, and backs off. The "server" is a few lines
//! of raw TCP on loopback that answer enrolment properly and then misbehave.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use baomi_core::agent::{Agent, SyncError, enroll, sync_now};
use baomi_core::bundle::trust::TrustRootDoc;
use baomi_core::bundle::{SigningKey, TrustRoot};
use baomi_core::compile::Platform;
use baomi_core::store::{HostFileKeyProvider, StoreOptions};
use baomi_core::sync::http::HttpTransport;
use baomi_core::sync::protocol::{EnrollRequest, EnrollResponse};
use baomi_core::time::Timestamp;

#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    Garbage,
    Truncated,
    ServerError,
    Trickle,
    Huge,
}

/// Reads one request; returns its path and body.
fn read_request(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some((path, body))
}

fn answer(s: &mut TcpStream, status: &str, body: &[u8]) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(body);
}

/// Serves enrolment properly, then misbehaves on everything else, for `requests` requests.
fn hostile(mode: Misbehaviour, requests: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming().take(requests) {
            let Ok(mut s) = conn else { continue };
            let Some((path, body)) = read_request(&mut s) else {
                continue;
            };
            if path == "/v1/enroll" {
                let req: EnrollRequest = serde_json::from_slice(&body).unwrap();
                let resp = EnrollResponse {
                    device_id: req.device_id,
                    server_time: Timestamp::now(),
                };
                answer(&mut s, "200 OK", &serde_json::to_vec(&resp).unwrap());
                continue;
            }
            match mode {
                Misbehaviour::Garbage => answer(&mut s, "200 OK", b"\x00\xffnot json at all"),
                Misbehaviour::Truncated => {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{\"server_time\":",
                    );
                }
                Misbehaviour::ServerError => answer(
                    &mut s,
                    "500 Internal Server Error",
                    br#"{"error":"internal","message":"storage failed"}"#,
                ),
                Misbehaviour::Trickle => {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n",
                    );
                    for _ in 0..20 {
                        std::thread::sleep(Duration::from_millis(250));
                        if s.write_all(b" ").is_err() {
                            break;
                        }
                    }
                }
                Misbehaviour::Huge => {
                    let len = 64 * 1024 * 1024;
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                    );
                    let chunk = vec![b' '; 64 * 1024];
                    for _ in 0..(len / chunk.len()) {
                        if s.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    format!("http://{addr}")
}

fn device(dir: &std::path::Path) -> Agent {
    let kek = HostFileKeyProvider::open_or_create(&dir.join("kek")).unwrap();
    let mut a = Agent::open(
        &dir.join("store"),
        &kek,
        StoreOptions::default(),
        Platform::Android,
        Timestamp::now(),
    )
    .unwrap();
    let key = SigningKey::generate().unwrap();
    let upload = x25519_public();
    let doc = TrustRootDoc::one_key(key.public(), Some(upload), Timestamp::now());
    a.provision_trust_root(
        TrustRoot::sign(&doc, &[&key]).to_json().as_bytes(),
        Timestamp::now(),
    )
    .unwrap();
    a
}

fn x25519_public() -> String {
    baomi_server::upload_key::UploadKey::generate()
        .unwrap()
        .public_base64()
}

#[test]
fn a_misbehaving_server_fails_the_sync_typed_and_deletes_nothing() {
    for mode in [
        Misbehaviour::Garbage,
        Misbehaviour::Truncated,
        Misbehaviour::ServerError,
        Misbehaviour::Trickle,
        Misbehaviour::Huge,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut a = device(dir.path());
        let base = hostile(mode, 8);
        let t = HttpTransport::with_timeout(&base, Duration::from_secs(2));
        enroll(
            &mut a,
            &t,
            &base,
            "tok",
            Platform::Android,
            Timestamp::now(),
        )
        .unwrap();
        // Evidence to lose: a tamper record (no policy is needed for the agent's own records).
        a.record_agent_violation(Timestamp::now(), "test", "baomi.tamper", "evidence".into())
            .unwrap();
        let before = (a.store().unacked_count(), a.sync_state().last_success);
        let started = std::time::Instant::now();
        let e = sync_now(&mut a, &t, Timestamp::now()).unwrap_err();
        let took = started.elapsed();
        match (mode, &e) {
            (Misbehaviour::Garbage, SyncError::Protocol { .. })
            | (Misbehaviour::ServerError, SyncError::Server { status: 500, .. })
            | (
                Misbehaviour::Truncated | Misbehaviour::Trickle | Misbehaviour::Huge,
                SyncError::Transport(_),
            ) => {}
            _ => panic!("{mode:?}: unexpected {e:?}"),
        }
        assert!(took < Duration::from_secs(10), "{mode:?} took {took:?}");
        assert_eq!(
            (a.store().unacked_count(), a.sync_state().last_success),
            before,
            "{mode:?}: something was deleted or counted"
        );
        assert_eq!(a.sync_state().failures, 1, "{mode:?}");
        assert!(
            a.sync_state()
                .next_due
                .is_some_and(|d| d > Timestamp::now()),
            "{mode:?}: no backoff"
        );
        a.store().verify().unwrap();
    }
}
