//! Shared by the server's test binaries: the real `baomi-server serve` on a loopback port.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts `baomi-server serve --listen 127.0.0.1:0` with `args`; returns the child and the
/// address it printed.
#[allow(dead_code, reason = "not every test binary uses it")]
pub fn serve<I, S>(args: I) -> (Child, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    serve_env(args, &[])
}

/// [`serve`] with environment variables (secrets are never on the command line).
#[allow(dead_code, reason = "not every test binary passes an environment")]
pub fn serve_env<I, S>(args: I, env: &[(&str, &str)]) -> (Child, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = Command::new(env!("CARGO_BIN_EXE_baomi-server"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("baomi-server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("baomi-server prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .expect("a `listening on` line")
        .to_owned();
    (child, addr)
}
