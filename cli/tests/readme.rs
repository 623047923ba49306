//! Issue 23, item 7: the README's walkthrough ("Run a server and a device by hand") works as
//! written. The shell block is extracted from README.md (not copied here) and run by bash
//! with the freshly built `baomi` and `baomi-server` first on PATH, from a scratch directory
//! holding the repository's `policies/`. The one change: port 8443 becomes a free one, so the
//! test never meets a server already running. Needs curl (the block waits on `/readyz`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::path::Path;
use std::process::Command;

fn walkthrough() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let at = readme
        .find("Run a server and a device by hand")
        .expect("the walkthrough's heading");
    let rest = &readme[at..];
    let start = rest.find("```sh\n").expect("its shell block") + "```sh\n".len();
    let end = rest[start..].find("\n```").expect("the block's end");
    rest[start..start + end].to_owned()
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let script = walkthrough();
    assert!(script.contains("baomi-server serve") && script.contains("baomi agent sync"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = script.replace("8443", &port.to_string());
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::os::unix::fs::symlink(repo.join("policies"), dir.path().join("policies")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_baomi"))
        .parent()
        .unwrap()
        .to_owned();
    let server_bin = bin.join("baomi-server");
    assert!(
        server_bin.exists(),
        "build baomi-server first (cargo test --workspace builds it)"
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c"])
        .arg(format!(
            "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}"
        ))
        .current_dir(dir.path())
        .env("PATH", path)
        .env("BAOMI_LOG", "warn")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // What the walkthrough promises: the bundle installed, the violations at the office.
    assert!(stdout.contains("\"policy_version\":1"), "{stdout}");
    assert!(
        stdout.contains("com.tencent.mm"),
        "the WeChat launch reached the office: {stdout}"
    );
    assert!(
        stdout.contains("\"camera_disabled\":true"),
        "custody: camera off: {stdout}"
    );
    // The second phone, assigned by a signed record: its holder, and open (the last status).
    let last_status = stdout.rsplit("\"device_id\"").next().unwrap_or_default();
    assert!(
        last_status.contains("\"holder\":\"li.na\"")
            && last_status.contains("\"fail_closed\":null"),
        "the assigned phone: {stdout}"
    );
}
