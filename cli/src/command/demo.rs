//! `baomi demo`: the whole device-side flow on this machine, from fresh keys to the four
//! published leak cases, printed for a person to read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use baomi_core::bundle::trust::{KeyEntry, RoleKeys, TrustRootDoc};
use baomi_core::bundle::{
    BundleError, Installed, SigningKey, TrustRoot, sign_bundle, verify_bundle,
};
use baomi_core::compile::CompiledPolicy;
use baomi_core::decision::{Decision, Verdict};
use baomi_core::engine::Engine;
use baomi_core::event::{Event, EventKind, parse_jsonl};
use baomi_core::posture::Posture;
use baomi_core::time::Timestamp;
use baomi_scenarios::{BASELINE_POLICY, all};
use clap::Args;

use crate::command::bundle::summary;
use crate::{CliError, files};

#[derive(Args)]
pub struct DemoArgs {
    /// Directory for the demo's keys and bundle (default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

struct Row {
    title: String,
    events: usize,
    violations: usize,
    denied: usize,
    posture: String,
}

pub fn run(a: &DemoArgs) -> Result<(), CliError> {
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "baomi-demo-{}-{}",
            std::process::id(),
            Timestamp::now().0
        )),
    };
    std::fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir, e))?;
    println!("Baomi demo: working in {}\n", dir.display());

    // 1. The security office: three offline root keys (two sign a root), three policy keys
    // (two sign a bundle: a stolen one cannot rotate the root), one registry key.
    println!("== 1. Security office keys and trust root (2-of-3 root keys, 2-of-3 policy keys)");
    let new_key = || SigningKey::generate().map_err(|e| CliError::Io(e.to_string()));
    let root_keys = [new_key()?, new_key()?, new_key()?];
    let office = [new_key()?, new_key()?, new_key()?];
    let registry = new_key()?;
    // The office's upload key: devices seal violation batches to it (step 5).
    let upload = baomi_server::upload_key::UploadKey::generate().map_err(CliError::Io)?;
    files::write_secret(&dir.join("upload.key"), upload.to_file().as_bytes())?;
    let doc = TrustRootDoc {
        suite: Default::default(),
        sm2_id: None,
        personnel: None,
        upload_key: Some(upload.public_base64()),
        expires_at: None,
        version: 1,
        issued_at: Timestamp::now(),
        keys: root_keys.iter().map(|k| KeyEntry::of(k.public())).collect(),
        threshold: 2,
        registry: Some(RoleKeys {
            keys: vec![KeyEntry::of(registry.public())],
            threshold: 1,
        }),
        policy: Some(RoleKeys {
            keys: office.iter().map(|k| KeyEntry::of(k.public())).collect(),
            threshold: 2,
        }),
    };
    let root_env = TrustRoot::sign(&doc, &[&root_keys[0], &root_keys[1]]).to_json();
    write(&dir.join("trust.json"), root_env.as_bytes())?;
    let root = TrustRoot::from_self_signed(root_env.as_bytes()).map_err(CliError::refused)?;
    println!("   {}", crate::command::trust::summary(&root));

    // 2. Sign the baseline and verify it as the phone does.
    println!("\n== 2. Sign policies/baseline.json and verify it on the device");
    let policy = baomi_scenarios::baseline().map_err(|e| CliError::refused(e.to_string()))?;
    let now = Timestamp::now();
    let sign = |version, keys: &[&SigningKey]| {
        sign_bundle(&policy, version, now, now.plus_seconds(30 * 86_400), keys)
            .map(|e| e.to_json().into_bytes())
            .map_err(CliError::refused)
    };
    let bundle = sign(1, &[&office[0], &office[2]])?;
    write(&dir.join("baseline.bundle.json"), &bundle)?;
    let verified =
        verify_bundle(&bundle, &root, &Installed::default(), now).map_err(CliError::refused)?;
    println!("   {}", summary(&verified));
    println!(
        "   ({} bytes of policy source, {} signed bytes)",
        BASELINE_POLICY.len(),
        bundle.len()
    );

    // 3. What the device refuses.
    println!("\n== 3. What the device refuses");
    let installed = Installed {
        policy_id: Some(verified.header.policy_id.clone()),
        version: verified.header.version,
    };
    let mut tampered = bundle.clone();
    flip_payload_byte(&mut tampered);
    let one_sig = sign(2, &[&office[0]])?;
    let stranger = new_key()?;
    let foreign = sign(2, &[&stranger])?;
    let cases: [(&str, &[u8], &Installed); 4] = [
        (
            "a byte changed in transit",
            &tampered,
            &Installed::default(),
        ),
        (
            "only one of the two required signatures",
            &one_sig,
            &installed,
        ),
        (
            "signed by a key the office never listed",
            &foreign,
            &installed,
        ),
        (
            "the same version offered again (rollback)",
            &bundle,
            &installed,
        ),
    ];
    for (what, bytes, inst) in cases {
        let outcome = match verify_bundle(bytes, &root, inst, now) {
            Err(e) => format!("rejected: {e}"),
            Ok(_) => "ACCEPTED (this is a bug)".into(),
        };
        println!("   {what:<44} -> {outcome}");
    }
    let expired = verify_bundle(
        &bundle,
        &root,
        &Installed::default(),
        now.plus_seconds(31 * 86_400),
    );
    if let Err(e @ BundleError::Expired { .. }) = expired {
        println!(
            "   {:<44} -> rejected: {e}",
            "the same bundle 31 days later (freeze)"
        );
    }

    // 4. Replay the published cases and the controls.
    println!("\n== 4. The published leak cases, replayed on the device (times in Beijing time)");
    let scenarios = all().map_err(|e| CliError::refused(e.to_string()))?;
    let mut rows = Vec::new();
    for s in &scenarios {
        let compiled = Arc::new(CompiledPolicy::from_valid(
            verified.policy.clone(),
            s.platform,
        ));
        let events = parse_jsonl(s.events_jsonl).map_err(CliError::refused)?;
        println!("\n-- {} [{}, clearance {}]", s.title, s.name, s.clearance);
        let Some(first) = events.first() else {
            continue;
        };
        let mut engine = Engine::new(compiled, s.clearance, first.at);
        engine.set_policy_expiry(Some(verified.header.expires_at));
        let mut row = Row {
            title: s.name.clone(),
            events: events.len(),
            violations: 0,
            denied: 0,
            posture: String::new(),
        };
        for e in &events {
            let d = engine.handle(e);
            row.violations += usize::from(d.violation);
            row.denied += usize::from(d.verdict == Verdict::Deny);
            print_decision(e, &d);
            row.posture = posture_text(&d.posture);
        }
        rows.push(row);
    }

    println!("\n== Summary");
    println!(
        "{:<28} {:>6} {:>10} {:>7}  final posture",
        "scenario", "events", "violations", "denied"
    );
    for r in &rows {
        println!(
            "{:<28} {:>6} {:>10} {:>7}  {}",
            r.title, r.events, r.violations, r.denied, r.posture
        );
    }
    let total: usize = rows.iter().map(|r| r.violations).sum();
    println!("\n{total} violations in the replays above");

    // 5. The device agent with its encrypted store, syncing with the reference server.
    crate::command::demo_sync::run(&crate::command::demo_sync::Office {
        dir: &dir,
        signers: [&office[0], &office[1]],
        registry: &registry,
        trust_root: root_env.as_bytes(),
    })?;
    println!(
        "\nkeys, trust root, bundles, device store and server database are in {}",
        dir.display()
    );
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    files::write(path, bytes)
}

/// Changes one character of the base64 payload, as a corrupting proxy would.
fn flip_payload_byte(envelope: &mut [u8]) {
    let needle = b"\"payload\": \"";
    if let Some(pos) = envelope.windows(needle.len()).position(|w| w == needle)
        && let Some(b) = envelope.get_mut(pos + needle.len() + 10)
    {
        *b = if *b == b'A' { b'B' } else { b'A' };
    }
}

fn event_text(e: &Event) -> String {
    match &e.kind {
        EventKind::AppInventory { packages } => format!("inventory: {}", packages.join(", ")),
        EventKind::AppInstalled { package } => format!("installed {package}"),
        EventKind::AppRemoved { package } => format!("removed {package}"),
        EventKind::AppLaunched { package } => format!("launched {package}"),
        EventKind::CameraOpened { package } => format!("camera opened by {package}"),
        EventKind::PhotoCaptured { package } => format!("photo taken by {package}"),
        EventKind::ScreenCaptured { package } => format!("screenshot by {package}"),
        EventKind::Share {
            to_package, mime, ..
        } => format!("share {mime} into {to_package}"),
        EventKind::CustodyStarted {
            document,
            classification,
        } => format!("signed for {document} ({classification})"),
        EventKind::CustodyEnded { document } => format!("returned {document}"),
        EventKind::BeaconSeen { major, rssi, .. } => format!("beacon major {major} at {rssi} dBm"),
        EventKind::Location {
            lat,
            lon,
            accuracy_m,
        } => format!("location {lat:.4},{lon:.4} ±{accuracy_m}m"),
        EventKind::WifiConnected { bssid } => format!("wifi {bssid}"),
        EventKind::WifiDisconnected {} => "wifi disconnected".into(),
        EventKind::NfcTag { tag } => format!("nfc {tag}"),
        EventKind::Tamper { kind } => format!("tamper: {kind}"),
    }
}

/// "camera off, capture off, 5 apps blocked" or "open".
pub fn posture_text(p: &Posture) -> String {
    let mut parts = Vec::new();
    if p.camera_disabled {
        parts.push("camera off".to_owned());
    }
    if p.screen_capture_disabled {
        parts.push("capture off".to_owned());
    }
    if !p.blocked_packages.is_empty() {
        parts.push(format!("{} apps blocked", p.blocked_packages.len()));
    }
    if parts.is_empty() {
        "open".into()
    } else {
        parts.join(", ")
    }
}

fn print_decision(e: &Event, d: &Decision) {
    // The cases happened in China: show Beijing time.
    let local = Timestamp(e.at.0 + 8 * 3_600_000).to_rfc3339();
    let time = format!(
        "{} {}",
        local.get(..10).unwrap_or(&local),
        local.get(11..16).unwrap_or("")
    );
    let mark = match d.verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "DENY ",
        Verdict::Warn => "warn ",
    };
    let posture = if d.posture_changed {
        format!("  => posture: {}", posture_text(&d.posture))
    } else {
        String::new()
    };
    println!(
        "   {time} {:<46} {mark} {}{posture}",
        event_text(e),
        if d.violation { &d.reason } else { "" }
    );
}
