//! Issue 23, item 1: the Debian package (cargo-deb, `server/packaging`), built from the binary
//! these tests just built, its contents and permissions checked, the systemd unit verified
//! with `systemd-analyze`, and, where the test runs as root with dpkg (CI), installed: the
//! `baomi` user and owner-only directories made, the installed binary started as that user
//! with the packaged configuration, `/readyz` answered, then purged. Outside CI the test is
//! skipped without cargo-deb (`cargo install --locked cargo-deb@3.8.0`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_debian_package_installs_a_sandboxed_service_that_starts() {
    if !have("cargo", "deb") && !have("cargo-deb", "--version") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install cargo-deb (.ci/run)"
        );
        eprintln!("skipped: cargo install --locked cargo-deb@3.8.0");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("baomi-server.deb");
    // The binary `cargo test` built (the dev profile: a release build takes minutes here).
    ok(Command::new("cargo")
        .args([
            "deb",
            "-p",
            "baomi-server",
            "--profile",
            "dev",
            "--no-build",
            "--no-strip",
            "--fast",
            "-o",
        ])
        .arg(&deb)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")));
    let listing = ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for (path, mode) in [
        ("./usr/bin/baomi-server", "-rwxr-xr-x"),
        ("./etc/baomi/server.toml", "-rw-r-----"),
        (
            "./usr/lib/systemd/system/baomi-server.service",
            "-rw-r--r--",
        ),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{path} {mode} in:\n{listing}"
        );
    }
    let info = ok(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(
        info.contains("conffiles") && info.contains("Depends: adduser"),
        "{info}"
    );
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/baomi-server.service"),
    )
    .unwrap();
    for line in [
        "User=baomi",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}");
    }

    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if !root || !have("dpkg", "--version") {
        eprintln!("not installed: the test runs as root with dpkg only");
        return;
    }
    ok(Command::new("dpkg").arg("-i").arg(&deb));
    let purge = || {
        let _ = Command::new("dpkg")
            .args(["--purge", "baomi-server"])
            .output();
    };
    let stat = |p: &str| {
        ok(Command::new("stat").args(["-c", "%U:%G %a", p]))
            .trim()
            .to_owned()
    };
    let checks = std::panic::catch_unwind(|| {
        assert_eq!(stat("/var/lib/baomi"), "baomi:baomi 700");
        assert_eq!(stat("/etc/baomi/server.toml"), "root:baomi 640");
        if have("systemd-analyze", "--version") {
            let v = Command::new("systemd-analyze")
                .args([
                    "verify",
                    "--man=no",
                    "/usr/lib/systemd/system/baomi-server.service",
                ])
                .output()
                .unwrap();
            assert!(
                v.status.success() && v.stderr.is_empty(),
                "{}",
                String::from_utf8_lossy(&v.stderr)
            );
        }
        // What the unit runs, as its user, on a free port.
        let mut child = Command::new("runuser")
            .args([
                "-u",
                "baomi",
                "--",
                "/usr/bin/baomi-server",
                "serve",
                "--config",
            ])
            .args(["/etc/baomi/server.toml", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_owned();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(out.contains("\"ready\""), "{out}");
        assert_eq!(stat("/var/lib/baomi/server.db"), "baomi:baomi 600");
    });
    purge();
    if let Err(e) = checks {
        std::panic::resume_unwind(e);
    }
}
