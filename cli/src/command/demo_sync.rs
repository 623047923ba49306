//! Step 5 of `baomi demo`: a device agent (encrypted store, host key file) enrols with the
//! reference compliance server on loopback, installs the signed policy that assigns its
//! holder, records the first published case, and syncs: violations up (sealed to the office),
//! the registry's custody record down.

use std::path::Path;
use std::sync::Arc;

use baomi_core::agent::Agent;
use baomi_core::agent::{enroll, sync_now};
use baomi_core::bundle::{SigningKey, sign_bundle};
use baomi_core::compile::Platform;
use baomi_core::level::{Classification, Clearance};
use baomi_core::policy::model::HolderAssignment;
use baomi_core::store::{HostFileKeyProvider, StoreOptions};
use baomi_core::sync::custody::{CustodyAction, CustodyRecordDoc, sign_custody_record};
use baomi_core::sync::http::HttpTransport;
use baomi_core::time::Timestamp;
use baomi_server::db::Db;
use baomi_server::http::Listener;
use baomi_server::upload_key::UploadKey;
use baomi_server::{Server, admin};

use crate::CliError;

/// What step 5 needs from steps 1-4.
pub struct Office<'a> {
    pub dir: &'a Path,
    pub signers: [&'a SigningKey; 2],
    pub registry: &'a SigningKey,
    pub trust_root: &'a [u8],
}

fn refused(e: impl std::fmt::Display) -> CliError {
    CliError::refused(e)
}

pub fn run(o: &Office<'_>) -> Result<(), CliError> {
    println!("\n== 5. The device agent and the compliance server (loopback HTTP)");
    let db = format!("sqlite:{}", o.dir.join("server.db").display());
    let key = UploadKey::load(&o.dir.join("upload.key")).map_err(CliError::Io)?;
    let server = Arc::new(
        Server::new(
            Db::open(&db, 2).map_err(refused)?,
            Some(key),
            Timestamp::now,
        )
        .map_err(|e| refused(e.message))?,
    );
    server
        .publish_trust_root(o.trust_root)
        .map_err(|e| refused(e.message))?;
    let listener = Listener::start(server.clone(), ([127, 0, 0, 1], 0).into(), None, 2)
        .map_err(CliError::Io)?;
    let base = listener
        .addr()
        .map(|a| format!("http://{a}"))
        .ok_or_else(|| CliError::Io("listener has no address".into()))?;
    println!("   baomi-server listening on {base} (database {db})");

    // The phone: its store is sealed under a key the host key file wraps.
    let now = Timestamp::now();
    let kek = HostFileKeyProvider::open_or_create(&o.dir.join("device-kek.bin"))
        .map_err(|e| CliError::Io(e.to_string()))?;
    let mut agent = Agent::open(
        &o.dir.join("device"),
        &kek,
        StoreOptions::default(),
        Platform::Android,
        now,
    )
    .map_err(refused)?;
    agent
        .provision_trust_root(o.trust_root, now)
        .map_err(refused)?;
    let t = HttpTransport::new(&base);
    let token = admin::new_token(&server, 1).map_err(|e| refused(e.message))?;
    enroll(&mut agent, &t, &base, &token, Platform::Android, now).map_err(refused)?;
    let device = agent.store().device_id().to_owned();
    println!("   enrolled {device} with a one-time token (Ed25519 identity made on the device)");

    // The office assigns the device's holder and publishes a new bundle version.
    let mut policy = baomi_scenarios::baseline().map_err(|e| refused(e.to_string()))?;
    policy.holders = vec![HolderAssignment {
        holder: "wang.fang".into(),
        clearance: Clearance::Important,
        devices: vec![device.clone()],
    }];
    let bundle = sign_bundle(&policy, 2, now, now.plus_seconds(30 * 86_400), &o.signers)
        .map_err(refused)?
        .to_json();
    let published = server
        .publish_bundle(bundle.as_bytes())
        .map_err(|e| refused(e.message))?;
    println!(
        "   office published {}@{} assigning holder wang.fang (clearance important)",
        published.id, published.version
    );
    let r = sync_now(&mut agent, &t, Timestamp::now()).map_err(refused)?;
    println!(
        "   sync 1: installed bundle v{}, posture {}",
        r.bundle_installed.unwrap_or(0),
        super::demo::posture_text(&r.posture)
    );

    // The first published case happens on this phone.
    let case = baomi_scenarios::all()
        .map_err(|e| refused(e.to_string()))?
        .into_iter()
        .find(|s| s.name == "case1-urgent-relay")
        .ok_or_else(|| refused("scenario case1-urgent-relay is missing"))?;
    // It happens now, a second between events: the agent never acts at a time earlier than
    // one it has seen (a clock set back is itself a violation), so the 2016 timeline of the
    // case is replayed in order at the present.
    let mut events = baomi_core::event::parse_jsonl(case.events_jsonl).map_err(refused)?;
    let start = Timestamp::now();
    for (i, e) in events.iter_mut().enumerate() {
        e.at = start.plus_seconds(i64::try_from(i).unwrap_or(0));
    }
    let mut violations = 0;
    for e in &events {
        violations += usize::from(agent.handle(e).map_err(refused)?.violation);
    }
    let report = agent.store().verify().map_err(refused)?;
    println!(
        "   replayed {}: {violations} violations sealed into the store (chain verifies: {} records, head {})",
        case.name,
        report.records,
        agent.store().head().tag_hex().get(..16).unwrap_or("")
    );

    // The registry signs a document out to the holder; nobody scans anything on the phone.
    let record = CustodyRecordDoc {
        record_id: "reg-2026-0001".into(),
        holder: "wang.fang".into(),
        document: "MIMI-2026-042".into(),
        classification: Classification::Secret,
        action: CustodyAction::SignOut,
        at: Timestamp::now(),
    };
    let env = sign_custody_record(&record, &[o.registry]).map_err(refused)?;
    server
        .accept_custody(env.to_json().as_bytes())
        .map_err(|e| refused(e.message))?;
    println!("   registry signed MIMI-2026-042 (secret) out to wang.fang");

    let r = sync_now(&mut agent, &t, Timestamp::now()).map_err(refused)?;
    println!(
        "   sync 2: uploaded {} violations (sealed to the office key), acknowledged through {}, custody records applied {}, posture {}",
        r.uploaded,
        r.acked_through,
        r.custody_applied,
        super::demo::posture_text(&r.posture)
    );

    println!("   the officer's view (baomi-server devices / violations):");
    for d in admin::devices(&server).map_err(|e| refused(e.message))? {
        println!(
            "     {} {} policy {} records {} posture {}",
            d.device_id,
            d.platform,
            d.policy.unwrap_or_default(),
            d.acked_through,
            d.posture.map(|p| p.to_string()).unwrap_or_default()
        );
    }
    let received = admin::violations(&server, Some(&device)).map_err(|e| refused(e.message))?;
    for v in received.iter().take(3) {
        println!(
            "     #{} {}",
            v["seq"],
            v["record"]["reason"].as_str().unwrap_or_default()
        );
    }
    if received.len() > 3 {
        println!("     ... {} in all", received.len());
    }
    listener.stop();
    Ok(())
}
