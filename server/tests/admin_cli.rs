//! Issue 23's traps that an administrator meets first, each through the real binary: a
//! password reset demoted an admin, `| head -1` panicked, the database was world-readable, an
//! unsupported database URL said "unable to open database file", and there was no health or
//! readiness endpoint.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

fn server_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_baomi-server"))
}

fn officer_add(db: &str, name: &str, role: Option<&str>) -> String {
    let mut c = server_bin();
    c.args(["officer", "add", name, "--db", db])
        .env("BAOMI_OFFICER_PASSWORD", "a long enough password");
    if let Some(r) = role {
        c.args(["--role", r]);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_password_reset_keeps_the_role_and_the_audit_names_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    assert!(officer_add(&db, "chen.admin", Some("admin")).contains("admin"));
    // The reset, without --role: still an admin.
    assert!(officer_add(&db, "chen.admin", None).contains("ready: admin"));
    // A new officer without --role is an auditor.
    assert!(officer_add(&db, "li.new", None).contains("ready: auditor"));
    let s = baomi_server::Server::new(
        baomi_server::db::Db::open(&db, 1).unwrap(),
        None,
        baomi_core::time::Timestamp::now,
    )
    .unwrap();
    let log = s.audit_log(10).unwrap();
    assert!(
        log.iter()
            .filter(|e| e.action == "officer_add")
            .all(|e| e.officer.starts_with("cli:")),
        "{log:?}"
    );
}

#[test]
fn listings_end_quietly_when_the_reader_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let s = baomi_server::Server::new(
        baomi_server::db::Db::open(&db, 1).unwrap(),
        None,
        baomi_core::time::Timestamp::now,
    )
    .unwrap();
    s.db()
        .tx(|c| {
            for i in 0..5000 {
                c.execute(
                    "INSERT INTO devices (device_id, public_key, platform, agent_version, enrolled_at) VALUES ($1, 'k', 'android', 't', 0)",
                    &[format!("dev-{i:05}").into()],
                )?;
            }
            Ok(())
        })
        .unwrap();
    drop(s);
    // `baomi-server devices | head -1`: the reader closes after one line.
    let mut child = server_bin()
        .args(["devices", "--db", &db])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
}

#[test]
fn the_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    officer_add(
        &format!("sqlite:{}", path.display()),
        "a.admin",
        Some("admin"),
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[test]
fn an_unsupported_database_url_says_what_is_supported() {
    let out = server_bin()
        .args(["devices", "--db", "mysql://x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("unsupported database URL") && err.contains("postgres://"),
        "{err}"
    );
}

#[test]
fn health_and_readiness_answer_without_authentication() {
    for (label, db, _dir) in common::backends() {
        let (mut child, addr) = common::serve(["--db", &db]);
        for (path, want) in [("/healthz", "\"ok\""), ("/readyz", "\"ready\"")] {
            let out = http_get(&addr, path);
            assert!(out.starts_with("HTTP/1.1 200"), "{label} {path}: {out}");
            assert!(out.contains(want), "{label} {path}: {out}");
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

// Issue 23, item 3: no metrics. Prometheus text on `/metrics`: requests by path and status,
// latency, open waits, errors by code, the MDM queue (syncs finished and alert deliveries are
// counted in the e2e tests that make them).
#[test]
fn metrics_count_requests_by_path_and_status() {
    for (_label, db, _dir) in common::backends() {
        let (mut child, addr) = common::serve(["--db", &db]);
        let get = |path: &str| http_get(&addr, path);
        for _ in 0..3 {
            get("/healthz");
        }
        get("/no/such/path");
        let m = get("/metrics");
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(
            m.contains(r#"baomi_http_requests_total{path="/healthz",status="200"} 3"#),
            "{m}"
        );
        assert!(m.contains(r#"path="other""#), "{m}");
        assert!(m.contains("baomi_http_request_seconds_bucket"), "{m}");
        assert!(m.contains("baomi_open_waits 0"), "{m}");
        // Errors by their code, the MDM queue by state (read at the scrape).
        assert!(
            m.contains(r#"baomi_errors_total{code="method_not_allowed"} 1"#),
            "{m}"
        );
        assert!(
            m.contains(r#"baomi_mdm_commands{state="pending"} 0"#),
            "{m}"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = server_bin().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Issue 23, item 5: tokens could be issued but not listed or revoked, and no CLI action
// reached the audit log.
#[test]
fn tokens_are_listed_and_revoked_and_every_cli_action_is_audited_under_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let (ok, token, _) = run(&["token", "new", "--holder", "wu.gang", "--db", &db]);
    assert!(ok);
    let (ok, listed, _) = run(&["token", "list", "--db", &db]);
    assert!(ok);
    let row: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(
        (row["holder"].as_str(), row["state"].as_str()),
        (Some("wu.gang"), Some("unused"))
    );
    assert!(row["expires"].as_str().unwrap().contains('T'), "{row}");
    let id = row["id"].as_str().unwrap().to_owned();
    assert!(
        !listed.contains(token.trim()),
        "the token itself is never listed"
    );
    let (ok, _, err) = run(&["token", "revoke", "abc", "--db", &db]);
    assert!(!ok && err.contains("8 hex digits"), "{err}");
    let (ok, _, _) = run(&["token", "revoke", &id, "--db", &db]);
    assert!(ok);
    let (_, listed, _) = run(&["token", "list", "--db", &db]);
    assert!(listed.contains("\"state\":\"revoked\""), "{listed}");
    // The revoked token enrols nothing.
    let s = baomi_server::Server::new(
        baomi_server::db::Db::open(&db, 1).unwrap(),
        None,
        baomi_core::time::Timestamp::now,
    )
    .unwrap();
    let id_key = baomi_core::sync::identity::DeviceIdentity::new(
        "dev-revoked".into(),
        baomi_core::bundle::SigningKey::generate().unwrap(),
    );
    let body = serde_json::json!({
        "protocol": baomi_core::sync::protocol::PROTOCOL_VERSION,
        "token": token.trim(),
        "device_id": "dev-revoked",
        "public_key": id_key.public().to_base64(),
        "platform": "android",
        "agent_version": "t",
        "proof": id_key.enroll_proof(token.trim()),
    });
    let refused = s
        .handle("POST", "/v1/enroll", &[], body.to_string().as_bytes())
        .unwrap_err();
    assert!(
        refused.status == 401 || refused.status == 403,
        "a revoked token: {} {}",
        refused.status,
        refused.message
    );
    let log = s.audit_log(20).unwrap();
    for action in ["token_issued", "token_revoked"] {
        assert!(
            log.iter()
                .any(|e| e.action == action && e.officer.starts_with("cli:")),
            "{action}: {log:?}"
        );
    }
}

// Issue 23, item 5: an https:// URL against a plain server said `received corrupt message of
// type InvalidContentType`.
#[test]
fn an_https_url_against_a_plain_server_says_what_to_do() {
    use baomi_core::sync::Transport as _;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let server = baomi_server::Server::new(
        baomi_server::db::Db::open(&db, 1).unwrap(),
        None,
        baomi_core::time::Timestamp::now,
    )
    .unwrap();
    let l = baomi_server::http::Listener::start(
        std::sync::Arc::new(server),
        "127.0.0.1:0".parse().unwrap(),
        None,
        1,
    )
    .unwrap();
    let t = baomi_core::sync::http::HttpTransport::new(&format!("https://{}", l.addr().unwrap()));
    let e = t
        .send(&baomi_core::sync::HttpRequest {
            method: "POST".into(),
            path: "/v1/enroll".into(),
            headers: vec![],
            body: b"{}".to_vec(),
        })
        .unwrap_err();
    assert!(
        e.0.contains("does not speak TLS") && e.0.contains("use http://"),
        "{}",
        e.0
    );
    l.stop();
}

// Issue 23, item 5: man pages and shell completions generated from the CLI definitions.
#[test]
fn the_manual_page_and_completions_come_from_the_cli_definitions() {
    let (ok, man, _) = run(&["man"]);
    assert!(ok && man.contains(".TH"), "{man}");
    assert!(
        man.contains("baomi\\-server") && man.contains("log\\-key"),
        "{man}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let (ok, script, _) = run(&["completions", shell]);
        assert!(ok, "{shell}");
        for sub in ["serve", "officer", "token", "purge", "log-key"] {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
    }
}

// Issue 23, item 4: backup and restore with the engines' own tools, on both databases.
#[test]
fn a_backup_restores_the_database_as_it_was() {
    for (label, db, _d) in common::backends() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("server.backup");
        let out_s = out.display().to_string();
        officer_add(&db, "chen.admin", Some("admin"));
        let (ok, _, err) = run(&["backup", "--db", &db, "--out", &out_s]);
        assert!(ok, "{label}: {err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{label}: the backup holds password hashes");
        }
        let (ok, _, err) = run(&["backup", "--db", &db, "--out", &out_s]);
        assert!(!ok && err.contains("not overwriting"), "{label}: {err}");
        officer_add(&db, "li.later", None);
        let (ok, _, err) = run(&["restore", "--from", &out_s, "--db", &db]);
        assert!(ok, "{label}: {err}");
        let s = baomi_server::Server::new(
            baomi_server::db::Db::open(&db, 1).unwrap(),
            None,
            baomi_core::time::Timestamp::now,
        )
        .unwrap();
        s.readiness().unwrap();
        assert!(s.officer_role("chen.admin").unwrap().is_some(), "{label}");
        assert!(
            s.officer_role("li.later").unwrap().is_none(),
            "{label}: after the backup"
        );
        assert!(
            s.audit_log(10)
                .unwrap()
                .iter()
                .any(|e| e.action == "restore"),
            "{label}"
        );
    }
}

/// One plain `GET` on a fresh connection: the whole answer, head and body.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn ready(addr: &str) -> String {
    http_get(addr, "/readyz")
}

// Issue 23, item 1: no config file. `serve --config FILE` (TOML, one key per flag): flags
// win over the environment, the environment over the file; an unknown key is named.
#[test]
fn serve_reads_a_toml_config_under_flags_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (_, log) = baomi_server::ledger::LogKey::generate("ledger.cfg.example").unwrap();
    std::fs::write(p("log.key"), log.as_str()).unwrap();
    std::fs::write(
        p("server.toml"),
        format!(
            "# the office's server\nlisten = \"127.0.0.2:0\"\ndb = \"sqlite:{}\"\nlog-key = \"{}\"\nthreads = 2\n",
            p("from-file.db").display(),
            p("log.key").display()
        ),
    )
    .unwrap();
    let cfg = p("server.toml").display().to_string();
    // The file's db and log key; the command line's listen address (127.0.0.1, not .2).
    let (mut child, addr) = common::serve(["--config", &cfg]);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(ready(&addr).contains("\"ready\""));
    assert!(p("from-file.db").exists());
    let _ = child.kill();
    let _ = child.wait();
    // The environment over the file.
    let env_db = format!("sqlite:{}", p("from-env.db").display());
    let (mut child, addr) = common::serve_env(["--config", &cfg], &[("BAOMI_DB", &env_db)]);
    assert!(ready(&addr).contains("\"ready\""));
    assert!(p("from-env.db").exists());
    let _ = child.kill();
    let _ = child.wait();
    // A key that is no serve option.
    std::fs::write(
        p("bad.toml"),
        "listen = \"127.0.0.1:0\"\ndatabase = \"x\"\n",
    )
    .unwrap();
    let bad = p("bad.toml").display().to_string();
    let (ok, _, err) = run(&["serve", "--config", &bad]);
    assert!(
        !ok && err.contains("`database` is not a serve option"),
        "{err}"
    );
}

// Issue 24: `upload-key new --suite sm` writes an SM2 key (0600) whose public half an sm trust
// root accepts as its upload key (an X25519 one it refuses); what a phone of that root seals
// to it, the key file opens (the end-to-end suite runs `serve` with such a key under
// `BAOMI_TEST_SUITE=sm`).
#[test]
fn an_sm2_upload_key_is_made_and_an_sm_root_takes_it() {
    use baomi_core::bundle::trust::KeyEntry;
    use baomi_core::bundle::{SigningKey, TrustRoot};
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("upload.key");
    let out_s = out.to_string_lossy().into_owned();
    let (ok, stdout, err) = run(&["upload-key", "new", "--suite", "sm", "--out", &out_s]);
    assert!(ok, "{err}");
    assert!(stdout.contains("SM2"), "{stdout}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let public = std::fs::read_to_string(out.with_extension("pub")).unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(public.trim())
        .unwrap();
    assert_eq!(raw.len(), 65);
    let root = SigningKey::generate_for(baomi_core::suite::Suite::Sm).unwrap();
    let doc = baomi_core::bundle::trust::TrustRootDoc {
        version: 1,
        issued_at: baomi_core::time::Timestamp::now(),
        keys: vec![KeyEntry::of(root.public())],
        threshold: 1,
        registry: None,
        policy: None,
        personnel: None,
        upload_key: Some(public.trim().to_owned()),
        expires_at: None,
        suite: baomi_core::suite::Suite::Sm,
        sm2_id: None,
    };
    let env = TrustRoot::sign(&doc, &[&root]).to_json();
    let trust = TrustRoot::from_self_signed(env.as_bytes()).unwrap();
    assert!(trust.sm2_upload_key().is_some());
    let key = baomi_server::upload_key::UploadKey::load(&out).unwrap();
    assert_eq!(key.suite(), baomi_core::suite::Suite::Sm);
    let aad = baomi_core::sync::seal::batch_aad("dev-1", 1, 1);
    let sealed =
        baomi_core::sync::seal::seal(&trust.upload_recipient().unwrap(), &aad, b"[record]")
            .unwrap();
    assert_eq!(key.open(&aad, &sealed).unwrap().1, b"[record]");
    // A mixed configuration is refused at start: the published sm root names this SM2 key,
    // and `serve` is given an X25519 one.
    let root_file = dir.path().join("trust.json");
    std::fs::write(&root_file, env.as_bytes()).unwrap();
    let db = format!("sqlite:{}", dir.path().join("s.db").display());
    let (ok, _, err) = run(&[
        "trust",
        "publish",
        &root_file.to_string_lossy(),
        "--db",
        &db,
    ]);
    assert!(ok, "{err}");
    let intl = dir.path().join("intl.key");
    let (ok, _, err) = run(&["upload-key", "new", "--out", &intl.to_string_lossy()]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--db",
        &db,
        "--upload-key",
        &intl.to_string_lossy(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("names upload key") && err.contains("sm suite"),
        "{err}"
    );
}
