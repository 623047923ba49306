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

/// An office for the tests: its signing key, the registry's and the personnel office's keys,
/// the upload key written to `DIR/upload.key`, and the first trust root naming them all.
#[allow(dead_code, reason = "not every test binary needs an office")]
pub struct OfficeKeys {
    /// Signs bundles and roots.
    pub key: baomi_core::bundle::SigningKey,
    /// Signs custody records.
    pub registry: baomi_core::bundle::SigningKey,
    /// Signs assignment records.
    pub personnel: baomi_core::bundle::SigningKey,
    /// The upload key's file, for `serve --upload-key`.
    pub upload_key_file: std::path::PathBuf,
    /// Trust root v1, self-signed.
    pub root: Vec<u8>,
}

/// The suite the office's keys are of: `BAOMI_TEST_SUITE` (`intl` unless set; `.ci/test`
/// runs the end-to-end suite again with `sm`, issue 24: the same tests, nothing copied).
#[allow(dead_code, reason = "not every test binary needs an office")]
pub fn suite() -> baomi_core::suite::Suite {
    std::env::var("BAOMI_TEST_SUITE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

/// See [`OfficeKeys`].
#[allow(dead_code, reason = "not every test binary needs an office")]
pub fn office_keys(dir: &std::path::Path) -> OfficeKeys {
    use baomi_core::bundle::trust::{KeyEntry, RoleKeys, TrustRootDoc};
    use baomi_core::bundle::{SigningKey, TrustRoot};
    let suite = suite();
    let key = SigningKey::generate_for(suite).expect("a signing key");
    let registry = SigningKey::generate_for(suite).expect("a registry key");
    let personnel = SigningKey::generate_for(suite).expect("a personnel key");
    let upload = baomi_server::upload_key::UploadKey::generate_for(suite).expect("an upload key");
    let upload_key_file = dir.join("upload.key");
    std::fs::write(&upload_key_file, upload.to_file().as_bytes())
        .expect("the upload key is written");
    let doc = TrustRootDoc {
        version: 1,
        issued_at: baomi_core::time::Timestamp::now(),
        keys: vec![KeyEntry::of(key.public())],
        threshold: 1,
        registry: Some(RoleKeys {
            keys: vec![KeyEntry::of(registry.public())],
            threshold: 1,
        }),
        suite,
        sm2_id: None,
        personnel: Some(RoleKeys {
            keys: vec![KeyEntry::of(personnel.public())],
            threshold: 1,
        }),
        upload_key: Some(upload.public_base64()),
        expires_at: None,
        policy: None,
    };
    OfficeKeys {
        root: TrustRoot::sign(&doc, &[&key]).to_json().into_bytes(),
        key,
        registry,
        personnel,
        upload_key_file,
    }
}

/// Where a test's database lives, removed when the test drops it: the SQLite file's directory,
/// or a database of the PostgreSQL test cluster.
#[allow(dead_code, reason = "not every test binary uses it")]
pub enum Scratch {
    /// The SQLite file's directory.
    Dir(tempfile::TempDir),
    /// A PostgreSQL database.
    Pg(PgDatabase),
}

/// The database URLs a server test runs on: a fresh SQLite file, and a fresh database on the
/// PostgreSQL cluster of `BAOMI_TEST_PG_URL` when set. (label, URL, what keeps it until the
/// test is done and removes it then.)
#[allow(dead_code, reason = "not every test binary uses it")]
pub fn backends() -> Vec<(&'static str, String, Scratch)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut v = vec![(
        "sqlite",
        format!("sqlite:{}", dir.path().join("server.db").display()),
        Scratch::Dir(dir),
    )];
    if let Ok(base) = std::env::var("BAOMI_TEST_PG_URL") {
        let db = fresh_pg_database(&base);
        v.push(("postgres", db.url.clone(), Scratch::Pg(db)));
    }
    v
}

/// A database of the PostgreSQL test cluster, dropped (with any connection still open to it)
/// when this is: a CI run creates some 300 and would otherwise leave gigabytes behind.
pub struct PgDatabase {
    /// Its URL.
    pub url: String,
    base: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Best effort: a test that failed still fails for its own reason.
        if let Ok(mut c) = postgres::Client::connect(&self.base, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A new, empty database on the test cluster at `base`, so tests never see each other's rows.
fn fresh_pg_database(base: &str) -> PgDatabase {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "baomi_t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        baomi_core::time::Timestamp::now().0 % 1_000_000
    );
    let mut c = postgres::Client::connect(base, postgres::NoTls).expect("BAOMI_TEST_PG_URL");
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("a database is created");
    let cut = base.rfind('/').expect("a URL with a database");
    PgDatabase {
        url: format!("{}/{name}", &base[..cut]),
        base: base.to_owned(),
        name,
    }
}

/// A banned messenger (WeChat) launched at `at`: the violation the tests record.
#[allow(dead_code, reason = "not every test binary uses it")]
pub fn messenger_launch(at: baomi_core::time::Timestamp) -> baomi_core::event::Event {
    baomi_core::event::Event::from_json_line(
        1,
        &format!(
            r#"{{"at":"{}","type":"app_launched","package":"com.tencent.mm"}}"#,
            at.to_rfc3339()
        ),
    )
    .expect("a well-formed event")
}

/// POSTs `body` to `p` over `t` with a device's signature headers (`auth`); the answer, whatever
/// its status.
#[allow(dead_code, reason = "not every test binary uses it")]
pub fn post_signed(
    t: &dyn baomi_core::sync::Transport,
    p: &str,
    auth: &baomi_core::sync::identity::RequestAuth,
    body: &[u8],
) -> baomi_core::sync::HttpResponse {
    t.send(&baomi_core::sync::HttpRequest {
        method: "POST".into(),
        path: p.into(),
        headers: auth.headers(),
        body: body.to_vec(),
    })
    .unwrap()
}
