//! docs/openapi.json cannot drift from the code: every endpoint the router serves is in it and
//! nothing else; every wire message, serialized from the Rust types, has exactly the properties
//! and types its schema names; every error code the server emits is in the error schema; and
//! the server serves the same document at `GET /openapi.json`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};

use baomi_core::posture::Posture;
use baomi_core::sync::protocol::*;
use baomi_core::sync::seal::SealedBox;
use baomi_core::time::Timestamp;
use serde_json::{Value, json};

/// A log checkpoint as a check-in carries one (a C2SP signed note's shape).
const LOG_NOTE: &str =
    "log.example\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} log.example abcd\n";

fn doc() -> Value {
    serde_json::from_str(baomi_server::http::OPENAPI).unwrap()
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// `value` has exactly what `schema` says, recursively.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str) {
    let schema = resolve(doc, schema);
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        if value.is_null() {
            assert!(
                options.iter().any(|o| o["type"] == "null"),
                "{at}: null not allowed"
            );
            return;
        }
        let non_null = options.iter().find(|o| o["type"] != "null").unwrap();
        return check(doc, non_null, value, at);
    }
    match schema["type"]
        .as_str()
        .unwrap_or_else(|| panic!("{at}: no type"))
    {
        "object" => {
            let obj = value
                .as_object()
                .unwrap_or_else(|| panic!("{at}: not an object"));
            let props = schema["properties"].as_object().unwrap();
            let have: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
            let documented: BTreeSet<&str> = props.keys().map(String::as_str).collect();
            assert_eq!(have, documented, "{at}: properties differ from the schema");
            for r in schema["required"].as_array().unwrap() {
                assert!(
                    have.contains(r.as_str().unwrap()),
                    "{at}: required {r} missing"
                );
            }
            for (k, v) in obj {
                check(doc, &props[k], v, &format!("{at}.{k}"));
            }
        }
        "array" => {
            for (i, v) in value.as_array().unwrap().iter().enumerate() {
                check(doc, &schema["items"], v, &format!("{at}[{i}]"));
            }
        }
        "string" => assert!(value.is_string(), "{at}: not a string"),
        "integer" => assert!(value.is_u64() || value.is_i64(), "{at}: not an integer"),
        "boolean" => assert!(value.is_boolean(), "{at}: not a boolean"),
        other => panic!("{at}: unexpected type {other}"),
    }
}

fn sealed() -> SealedBox {
    SealedBox {
        ephemeral: "AAAA".into(),
        ciphertext: "BBBB".into(),
    }
}

fn policy() -> PolicyState {
    PolicyState {
        id: "baseline".into(),
        version: 2,
        digest: "ab".into(),
    }
}

fn chain() -> ChainState {
    ChainState {
        acked_through: 1,
        head_seq: 2,
        head_tag: "cd".into(),
        generation: 7,
    }
}

#[test]
fn every_wire_message_matches_its_schema() {
    let d = doc();
    let t = Timestamp::parse("2026-11-28T09:00:00+08:00").unwrap();
    let posture = Posture {
        camera_disabled: true,
        screen_capture_disabled: true,
        blocked_packages: vec!["com.tencent.mm".into()],
    };
    let samples: Vec<(&str, Value)> = vec![
        (
            "EnrollRequest",
            json!(EnrollRequest {
                protocol: PROTOCOL_VERSION,
                token: "t".into(),
                device_id: "d".into(),
                public_key: "k".into(),
                proof: "p".into(),
                platform: "android".into(),
                agent_version: "0.1.0".into(),
            }),
        ),
        (
            "EnrollResponse",
            json!(EnrollResponse {
                device_id: "d".into(),
                server_time: t,
            }),
        ),
        (
            "CheckIn",
            json!(CheckIn {
                protocol: PROTOCOL_VERSION,
                device_id: "d".into(),
                agent_version: "0.1.0".into(),
                policy: Some(policy()),
                trust_root_version: 1,
                trust_root_digest: Some("ab".repeat(32)),
                posture: posture.clone(),
                applied: Some(baomi_core::posture::AppliedPosture {
                    enforcement: baomi_core::posture::Enforcement::DeviceOwner,
                    settings: vec![baomi_core::posture::AppliedSetting {
                        setting: "package:com.tencent.mm".into(),
                        desired: true,
                        state: baomi_core::posture::SettingState::Failed,
                        detail: Some("not allowed".into()),
                    }],
                }),
                fail_closed: None,
                chain: chain(),
                device_time: t,
                custody_cursor: 3,
                session: sealed(),
                log_checkpoint: Some(LOG_NOTE.into()),
            }),
        ),
        (
            "CheckInResponse",
            json!(CheckInResponse {
                server_time: t,
                acked_through: 1,
                acked_tag: "cd".into(),
                bundle: None,
                trust_root_version: 1,
                custody_pending: true,
                retired: true,
                log_checkpoint: Some(LOG_NOTE.into()),
                proof: "p".into(),
            }),
        ),
        (
            "Upload",
            json!(Upload {
                device_id: "d".into(),
                first_seq: 1,
                last_seq: 2,
                sealed: sealed(),
            }),
        ),
        (
            "UploadResponse",
            json!(UploadResponse {
                acked_through: 2,
                receipt: "r".into(),
            }),
        ),
        (
            "DownloadRequest",
            json!(DownloadRequest {
                device_id: "d".into(),
                trust_root_version: 1,
                policy_version: 2,
                custody_after: 3,
            }),
        ),
        (
            "DownloadResponse",
            json!(DownloadResponse {
                trust_roots: vec!["{}".into()],
                bundle: Some("{}".into()),
                custody: vec![CustodyFeedEntry {
                    cursor: 4,
                    envelope: "{}".into(),
                }],
                custody_more: false,
                proof: "bWFj".into(),
            }),
        ),
        (
            "Finish",
            json!(Finish {
                device_id: "d".into(),
                posture,
                policy: None,
                chain: chain(),
                custody_cursor: 3,
            }),
        ),
        (
            "FinishResponse",
            json!(FinishResponse { proof: "p".into() }),
        ),
        (
            "SyncRequest",
            json!(SyncRequest {
                check_in: CheckIn {
                    protocol: PROTOCOL_VERSION,
                    device_id: "d".into(),
                    agent_version: "0.1.0".into(),
                    policy: None,
                    trust_root_version: 1,
                    trust_root_digest: Some("ab".repeat(32)),
                    posture: Posture::open(),
                    applied: Some(baomi_core::posture::AppliedPosture {
                        enforcement: baomi_core::posture::Enforcement::Mdm,
                        settings: vec![],
                    }),
                    fail_closed: Some("offline".into()),
                    chain: chain(),
                    device_time: t,
                    custody_cursor: 3,
                    session: sealed(),
                    log_checkpoint: Some(LOG_NOTE.into()),
                },
                upload: Some(Upload {
                    device_id: "d".into(),
                    first_seq: 1,
                    last_seq: 2,
                    sealed: sealed(),
                }),
                finish: Finish {
                    device_id: "d".into(),
                    posture: Posture::open(),
                    policy: Some(policy()),
                    chain: chain(),
                    custody_cursor: 3,
                },
            }),
        ),
        (
            "SyncResponse",
            json!(SyncResponse {
                check_in: CheckInResponse {
                    server_time: t,
                    acked_through: 0,
                    acked_tag: String::new(),
                    bundle: Some(policy()),
                    trust_root_version: 1,
                    custody_pending: false,
                    retired: true,
                    log_checkpoint: Some(LOG_NOTE.into()),
                    proof: "p".into(),
                },
                upload: None,
                finish: Some(FinishResponse { proof: "p".into() }),
            }),
        ),
        (
            "WaitRequest",
            json!(WaitRequest {
                device_id: "d".into(),
                trust_root_version: 1,
                policy_version: 2,
                custody_after: 3,
                max_wait_ms: 1000,
            }),
        ),
        ("WaitResponse", json!(WaitResponse { changed: false })),
        (
            "ErrorBody",
            json!(ErrorBody {
                error: "replayed".into(),
                message: "m".into(),
            }),
        ),
    ];
    for (name, value) in &samples {
        let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
        check(&d, &schema, value, name);
    }
}

#[test]
fn the_document_lists_exactly_the_endpoints_served() {
    let d = doc();
    let documented: BTreeSet<&str> = d["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut served: BTreeSet<&str> = path::ALL.into_iter().collect();
    served.extend(baomi_server::console::OFFICE_API.iter().map(|(_, p)| *p));
    served.extend(baomi_server::http::SERVICE_PATHS);
    assert_eq!(documented, served);
    // Each office endpoint with its method, and the console's router handles it.
    let console =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/console/mod.rs"))
            .unwrap();
    for (method, p) in baomi_server::console::OFFICE_API {
        assert!(
            d["paths"][p][method].is_object(),
            "{method} {p} undocumented"
        );
        if let Some(rest) = p.strip_prefix("/v1/office/") {
            // A templated path is routed by its prefix.
            let arm = match rest.split_once('{') {
                Some((prefix, _)) => format!(
                    "(\"{}\", p) if p.starts_with(\"{prefix}\")",
                    method.to_uppercase()
                ),
                None => format!("(\"{}\", \"{rest}\")", method.to_uppercase()),
            };
            assert!(console.contains(&arm), "console router lacks {arm}");
        }
    }
    // The router serves every one of them (404 is the router's "no such endpoint").
    let router =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/mod.rs")).unwrap();
    for p in [
        "path::ENROLL",
        "path::CHECK_IN",
        "path::UPLOAD",
        "path::DOWNLOAD",
        "path::FINISH",
        "path::WAIT",
        "path::REGISTRY_CUSTODY",
    ] {
        assert!(router.contains(&format!("{p} =>")), "router lacks {p}");
    }
}

#[test]
fn every_error_code_the_server_emits_is_documented() {
    let d = doc();
    let documented: BTreeSet<String> =
        d["components"]["schemas"]["ErrorBody"]["properties"]["error"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
    let mut emitted = BTreeSet::new();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut dirs = vec![std::path::PathBuf::from(src)];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // `new(4xx, "code"` and `code: "code"`: every way an ApiError gets its code.
            for (i, _) in text.match_indices("new(") {
                let rest = &text[i + 4..];
                let rest = rest.trim_start();
                if rest.len() > 4
                    && rest.as_bytes()[..3].iter().all(u8::is_ascii_digit)
                    && let Some(q) = rest[3..]
                        .trim_start_matches([',', ' ', '\n'])
                        .strip_prefix('"')
                {
                    emitted.insert(q.split('"').next().unwrap().to_owned());
                }
            }
            for (i, _) in text.match_indices("code: \"") {
                emitted.insert(text[i + 7..].split('"').next().unwrap().to_owned());
            }
        }
    }
    // AuthError's codes come through `From<AuthError>` with literal codes too.
    assert!(
        emitted.contains("replayed") && emitted.contains("bad_request"),
        "{emitted:?}"
    );
    let missing: Vec<_> = emitted.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "emitted but not documented: {missing:?}"
    );
}

#[test]
fn the_server_serves_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let (mut child, addr) = common::serve(["--db", db.as_str()]);
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let body = out.split("\r\n\r\n").nth(1).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        doc(),
        "served document differs"
    );
}
