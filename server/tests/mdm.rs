//! MDM-applied posture end to end, with a real NanoMDM on loopback (issue 12): a simulated
//! iPhone enrolled in NanoMDM (Authenticate, TokenUpdate, then polling for commands, its
//! identity a certificate from a CA this test makes) and in Baomi; a registry sign-out for its
//! holder makes NanoMDM hand it an `InstallProfile` with `allowCamera` false, the signed return
//! a `RemoveProfile` for the same identifier; the device's answers come back through NanoMDM's
//! signed webhook into the command ledger. Then NanoMDM goes down: the command waits, retried
//! with backoff, shown as not yet applied, and arrives once NanoMDM is back.
//!
//! NanoMDM v0.9.0 is installed by `.ci/run` (`go install`); outside CI the test is skipped when
//! the binary is missing (`BAOMI_NANOMDM=/path/to/nanomdm` to point at one).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baomi_core::agent::{Agent, enroll, sync_now};
use baomi_core::bundle::{SigningKey, sign_bundle};
use baomi_core::compile::Platform;
use baomi_core::level::{Classification, Clearance};
use baomi_core::policy::Policy;
use baomi_core::policy::model::HolderAssignment;
use baomi_core::store::{HostFileKeyProvider, StoreOptions};
use baomi_core::sync::custody::{CustodyAction, CustodyRecordDoc, sign_custody_record};
use baomi_core::sync::http::HttpTransport;
use baomi_core::time::Timestamp;
use baomi_server::db::Db;
use baomi_server::mdm::profile::PROFILE_ID;
use baomi_server::{Server, admin};
use plist::Value;

const BASELINE: &str = include_str!("../../policies/baseline.json");
const API_KEY: &str = "test-api-key-1f2e3d";
const HOOK_KEY: &str = "test-webhook-hmac-9a8b";
const TOPIC: &str = "com.apple.mgmt.External.00000000-0000-0000-0000-000000000000";
const UDID: &str = "0000AAAA-1111-2222-3333-444455556666";
const HOLDER: &str = "zhang.wei";

fn nanomdm_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("BAOMI_NANOMDM") {
        return Some(PathBuf::from(p));
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nanomdm"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join("go/bin/nanomdm"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway device CA and one device identity (EKU clientAuth), as NanoMDM requires.
fn device_identity(dir: &Path) -> String {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=Baomi Test Device CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir,
    );
    openssl(
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "device.key",
            "-out",
            "device.csr",
            "-subj",
            "/CN=sim-iphone-1",
        ],
        dir,
    );
    std::fs::write(dir.join("ext.cnf"), "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "device.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "device.pem",
        ],
        dir,
    );
    let pem = std::fs::read_to_string(dir.join("device.pem")).unwrap();
    // URL-query-escaped PEM, as nginx's $ssl_client_escaped_cert gives it.
    pem.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct NanoMdm {
    child: Child,
    base: String,
}

impl Drop for NanoMdm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nanomdm(bin: &Path, dir: &Path, port: u16, webhook: &str) -> NanoMdm {
    let child = Command::new(bin)
        .args([
            "-listen",
            &format!("127.0.0.1:{port}"),
            "-storage",
            "filekv",
            "-storage-dsn",
        ])
        .arg(dir.join("dbkv"))
        .arg("-ca")
        .arg(dir.join("ca.pem"))
        .args(["-cert-header", "X-Client-Cert", "-webhook-url", webhook])
        .env("NANOMDM_API", API_KEY)
        .env("NANOMDM_WEBHOOK_HMAC_KEY", HOOK_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nanomdm starts");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ureq::get(&format!("{base}/version")).call().is_err() {
        assert!(
            Instant::now() < deadline,
            "nanomdm did not come up on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    NanoMdm { child, base }
}

/// The simulated iPhone: NanoMDM's check-in protocol with the identity in `X-Client-Cert`.
struct Phone {
    base: String,
    cert: String,
}

impl Phone {
    fn put(&self, body: &Value, checkin: bool) -> Vec<u8> {
        let mut bytes = Vec::new();
        plist::to_writer_xml(&mut bytes, body).unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent
            .put(&format!("{}/mdm", self.base))
            .header("X-Client-Cert", &self.cert);
        if checkin {
            req = req.header("Content-Type", "application/x-apple-aspen-mdm-checkin");
        }
        let mut resp = req.send(&bytes[..]).expect("nanomdm answers");
        assert_eq!(
            resp.status().as_u16(),
            200,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        resp.body_mut().read_to_vec().unwrap()
    }

    fn enrol(&self) {
        let d = |pairs: Vec<(&str, Value)>| {
            Value::Dictionary(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        };
        self.put(
            &d(vec![
                ("MessageType", "Authenticate".into()),
                ("UDID", UDID.into()),
                ("Topic", TOPIC.into()),
            ]),
            true,
        );
        self.put(
            &d(vec![
                ("MessageType", "TokenUpdate".into()),
                ("UDID", UDID.into()),
                ("Topic", TOPIC.into()),
                ("Token", Value::Data(vec![7; 32])),
                ("PushMagic", "5E4B5B7C-0C2D-4B0E-9E55-2D4A1E3C8F11".into()),
            ]),
            true,
        );
    }

    /// Polls (`Idle`) until a command comes, as a phone does after a push.
    fn next_command(&self, within: Duration) -> Option<plist::Dictionary> {
        let deadline = Instant::now() + within;
        loop {
            let idle = dict(vec![("UDID", UDID.into()), ("Status", "Idle".into())]);
            let body = self.put(&idle, false);
            if !body.is_empty() {
                return Some(
                    plist::from_bytes::<Value>(&body)
                        .unwrap()
                        .into_dictionary()
                        .unwrap(),
                );
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn acknowledge(&self, uuid: &str) {
        let ack = dict(vec![
            ("UDID", UDID.into()),
            ("Status", "Acknowledged".into()),
            ("CommandUUID", uuid.into()),
        ]);
        self.put(&ack, false);
    }
}

fn dict(pairs: Vec<(&str, Value)>) -> Value {
    Value::Dictionary(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

struct Office {
    key: SigningKey,
    registry: SigningKey,
    root: Vec<u8>,
    upload_key: PathBuf,
}

fn office(dir: &Path) -> Office {
    let k = common::office_keys(dir);
    Office {
        root: k.root,
        key: k.key,
        registry: k.registry,
        upload_key: k.upload_key_file,
    }
}

impl Office {
    fn bundle(&self, device: &str) -> Vec<u8> {
        let mut p = Policy::from_json(BASELINE.as_bytes()).unwrap();
        // No clearance: nothing is restricted until a document is signed out to the holder, so
        // the return removes the profile (with a clearance, the messenger ban stays installed).
        p.holders = vec![HolderAssignment {
            holder: HOLDER.into(),
            clearance: Clearance::None,
            devices: vec![device.into()],
        }];
        let now = Timestamp::now();
        sign_bundle(&p, 1, now, now.plus_seconds(30 * 86_400), &[&self.key])
            .unwrap()
            .to_json()
            .into_bytes()
    }

    fn custody(&self, id: &str, document: &str, action: CustodyAction) -> Vec<u8> {
        let doc = CustodyRecordDoc {
            record_id: id.into(),
            holder: HOLDER.into(),
            document: document.into(),
            classification: Classification::Secret,
            action,
            at: Timestamp::now(),
        };
        sign_custody_record(&doc, &[&self.registry])
            .unwrap()
            .to_json()
            .into_bytes()
    }
}

fn post_custody(base: &str, record: Vec<u8>) {
    let mut r = ureq::post(&format!("{base}/v1/registry/custody"))
        .config()
        .http_status_as_error(false)
        .build()
        .send(&record[..])
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "{}",
        r.body_mut().read_to_string().unwrap_or_default()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn profile_of(cmd: &plist::Dictionary) -> plist::Dictionary {
    let c = cmd["Command"].as_dictionary().unwrap();
    assert_eq!(
        c["RequestType"].as_string(),
        Some("InstallProfile"),
        "{cmd:?}"
    );
    plist::from_bytes::<Value>(c["Payload"].as_data().unwrap())
        .unwrap()
        .into_dictionary()
        .unwrap()
}

fn wait_for_status(admin: &Server, uuid: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = admin.mdm_commands(None).unwrap();
        let row = rows
            .iter()
            .find(|c| c.command_uuid == uuid)
            .expect("the command is in the ledger");
        if row.status == status {
            assert!(row.queued_at.is_some() && row.created_at > 0);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{uuid} stayed {} (wanted {status})",
            row.status
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn custody_reaches_an_mdm_enforced_iphone_through_nanomdm_at_once() {
    let Some(bin) = nanomdm_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have NanoMDM (.ci/run installs it)"
        );
        eprintln!(
            "skipped: no nanomdm binary (go install github.com/micromdm/nanomdm/cmd/nanomdm@v0.9.0)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cert = device_identity(dir.path());
    let o = office(dir.path());
    let db = format!("sqlite:{}", dir.path().join("baomi.db").display());
    let admin = Server::new(Db::open(&db, 1).unwrap(), None, Timestamp::now).unwrap();
    admin.publish_trust_root(&o.root).unwrap();

    // Baomi drives NanoMDM; NanoMDM reports back to Baomi's webhook.
    let mdm_port = free_port();
    let upload_key = o.upload_key.to_string_lossy().into_owned();
    let (mut baomi, addr) = common::serve_env(
        [
            "--db",
            db.as_str(),
            "--upload-key",
            upload_key.as_str(),
            "--nanomdm",
            &format!("http://127.0.0.1:{mdm_port}"),
            "--nanomdm-no-push",
        ],
        &[
            ("BAOMI_NANOMDM_API_KEY", API_KEY),
            ("BAOMI_NANOMDM_WEBHOOK_KEY", HOOK_KEY),
        ],
    );
    let base = format!("http://{addr}");
    let hook = format!("{base}/v1/mdm/nanomdm");
    let mut nanomdm = start_nanomdm(&bin, dir.path(), mdm_port, &hook);

    // The iPhone: enrolled in Baomi (its agent) and in NanoMDM; the office links the two.
    let store = tempfile::tempdir().unwrap();
    let kek = HostFileKeyProvider::open_or_create(&store.path().join("kek")).unwrap();
    let now = Timestamp::now();
    let mut agent = Agent::open(
        &store.path().join("store"),
        &kek,
        StoreOptions::default(),
        Platform::Ios,
        now,
    )
    .unwrap();
    agent.provision_trust_root(&o.root, now).unwrap();
    let t = HttpTransport::new(&base);
    enroll(
        &mut agent,
        &t,
        &base,
        &admin::new_token(&admin, 1).unwrap(),
        Platform::Ios,
        now,
    )
    .unwrap();
    let device = agent.store().device_id().to_owned();
    admin.publish_bundle(&o.bundle(&device)).unwrap();
    sync_now(&mut agent, &t, Timestamp::now()).unwrap();
    let phone = Phone {
        base: nanomdm.base.clone(),
        cert,
    };
    phone.enrol();
    admin.mdm_link(&device, UDID).unwrap();
    assert!(
        admin.mdm_commands(None).unwrap().is_empty(),
        "nothing restricted yet, nothing asked"
    );
    assert!(phone.next_command(Duration::from_millis(100)).is_none());

    // Sign-out and return, ten times: each reaches the phone as a command, without the phone's
    // own agent syncing at all.
    let mut latencies = Vec::new();
    for i in 0..10 {
        let doc = format!("MIMI-2026-{i:03}");
        let t0 = Instant::now();
        post_custody(
            &base,
            o.custody(&format!("out-{i}"), &doc, CustodyAction::SignOut),
        );
        let install = phone
            .next_command(Duration::from_secs(5))
            .expect("InstallProfile reaches the phone");
        latencies.push(t0.elapsed());
        let profile = profile_of(&install);
        assert_eq!(profile["PayloadIdentifier"].as_string(), Some(PROFILE_ID));
        let r = profile["PayloadContent"].as_array().unwrap()[0]
            .as_dictionary()
            .unwrap();
        assert_eq!(
            r["allowCamera"].as_boolean(),
            Some(false),
            "camera off during custody"
        );
        assert_eq!(r["allowScreenShot"].as_boolean(), Some(false));
        let bundle_ids: Vec<&str> = r["blockedAppBundleIDs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_string)
            .collect();
        assert!(
            bundle_ids.contains(&"com.tencent.xin"),
            "WeChat's iOS bundle id: {bundle_ids:?}"
        );
        let uuid = install["CommandUUID"].as_string().unwrap().to_owned();
        phone.acknowledge(&uuid);
        wait_for_status(&admin, &uuid, "acknowledged");

        let t0 = Instant::now();
        post_custody(
            &base,
            o.custody(&format!("ret-{i}"), &doc, CustodyAction::Return),
        );
        let remove = phone
            .next_command(Duration::from_secs(5))
            .expect("RemoveProfile reaches the phone");
        latencies.push(t0.elapsed());
        let c = remove["Command"].as_dictionary().unwrap();
        assert_eq!(c["RequestType"].as_string(), Some("RemoveProfile"));
        assert_eq!(
            c["Identifier"].as_string(),
            Some(PROFILE_ID),
            "removal matches the install"
        );
        let uuid = remove["CommandUUID"].as_string().unwrap().to_owned();
        phone.acknowledge(&uuid);
        wait_for_status(&admin, &uuid, "acknowledged");
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "custody -> command on the phone over loopback: n={} p50={:?} p99={:?} max={:?}",
        latencies.len(),
        p(0.5),
        p(0.99),
        latencies[latencies.len() - 1]
    );
    assert!(
        p(0.99) < Duration::from_secs(1),
        "goal: p99 under 1 s on loopback, got {:?}",
        p(0.99)
    );

    // NanoMDM goes down: the sign-out is recorded, the command waits (not yet applied) and is
    // retried; nothing is lost.
    drop(nanomdm);
    post_custody(
        &base,
        o.custody("out-down", "MIMI-2026-999", CustodyAction::SignOut),
    );
    let pending = admin.mdm_commands(Some(&device)).unwrap().remove(0);
    assert_eq!(pending.status, "pending", "{pending:?}");
    assert!(
        pending.attempts >= 1
            && pending
                .last_error
                .as_deref()
                .unwrap_or("")
                .contains("unreachable"),
        "{pending:?}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    nanomdm = start_nanomdm(&bin, dir.path(), mdm_port, &hook);
    let late = phone
        .next_command(Duration::from_secs(15))
        .expect("delivered once NanoMDM is back");
    assert_eq!(
        late["CommandUUID"].as_string(),
        Some(pending.command_uuid.as_str())
    );
    assert_eq!(
        profile_of(&late)["PayloadIdentifier"].as_string(),
        Some(PROFILE_ID)
    );
    phone.acknowledge(&pending.command_uuid);
    wait_for_status(&admin, &pending.command_uuid, "acknowledged");
    let row = admin.mdm_commands(Some(&device)).unwrap().remove(0);
    assert!(row.attempts >= 2, "{row:?}");

    // A forged event (wrong HMAC) changes nothing.
    let forged = ureq::post(&hook)
        .config()
        .http_status_as_error(false)
        .build()
        .header("X-Hmac-Signature", "AAAA")
        .send(
            br#"{"topic":"mdm.Connect","acknowledge_event":{"command_uuid":"x","status":"Error"}}"#
                .as_slice(),
        )
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    drop(nanomdm);
    let _ = baomi.kill();
    let _ = baomi.wait();
}
