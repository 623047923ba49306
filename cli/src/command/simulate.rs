//! `baomi simulate --policy FILE [--trust TRUST] --clearance LEVEL --events FILE.jsonl`

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use baomi_core::Decision;
use baomi_core::bundle::{BundleHeader, Installed, verify_bundle};
use baomi_core::compile::{CompiledPolicy, Platform};
use baomi_core::engine::Engine;
use baomi_core::event::Event;
use baomi_core::level::Clearance;
use baomi_core::policy::Policy;
use baomi_core::store::{PolicyRef, Store, StoreOptions, ViolationRecord};
use clap::Args;

use crate::command::bundle::parse_now;
use crate::{CliError, files};

#[derive(Args)]
pub struct SimulateArgs {
    /// Plain policy (authoring) or signed bundle (with --trust).
    #[arg(long)]
    policy: PathBuf,
    /// Trust root: FILE is then a signed bundle, verified as a device would.
    #[arg(long)]
    trust: Option<PathBuf>,
    /// Holder's clearance: none, general, important, core. Defaults to the policy's holder
    /// assignment for --device.
    #[arg(long)]
    clearance: Option<Clearance>,
    /// Device id, to look up the holder assignment in the policy.
    #[arg(long)]
    device: Option<String>,
    /// Event stream, one JSON object per line.
    #[arg(long)]
    events: PathBuf,
    /// Platform the events' app ids are for.
    #[arg(long, default_value = "android")]
    platform: Platform,
    /// Time for the bundle's expiry check (RFC 3339); default now.
    #[arg(long)]
    now: Option<String>,
    /// Append the violations found to the encrypted store in this directory.
    #[arg(long)]
    store: Option<PathBuf>,
}

/// Reads a policy file: a plain policy, or a bundle verified against `trust`.
pub fn load_policy(
    path: &std::path::Path,
    trust: Option<&std::path::Path>,
    now: Option<&str>,
) -> Result<(Policy, Option<BundleHeader>), CliError> {
    let bytes = files::read(path)?;
    match trust {
        Some(t) => {
            let root = files::trust_root(t)?;
            let v = verify_bundle(&bytes, &root, &Installed::default(), parse_now(now)?)
                .map_err(|e| CliError::refused(format!("{}: rejected: {e}", path.display())))?;
            Ok((v.policy.into_inner(), Some(v.header)))
        }
        None => {
            let looks_signed = serde_json::from_slice::<serde_json::Value>(&bytes)
                .is_ok_and(|v| v.get("payloadType").or(v.get("payload_type")).is_some());
            if looks_signed {
                return Err(CliError::Usage(format!(
                    "{} is a signed bundle: pass --trust",
                    path.display()
                )));
            }
            let p = Policy::from_json(&bytes)
                .map_err(|e| CliError::refused(format!("{}: {e}", path.display())))?;
            Ok((p, None))
        }
    }
}

/// The workstation's simulator: the engine decides and (with `--store`) the encrypted store
/// records, as on a phone, but under a policy and clearance the phone's agent would never
/// accept unsigned. It lives here, not in the agent, so the phone library has no such door.
struct Simulator {
    policy: Arc<CompiledPolicy>,
    clearance: Clearance,
    expires_at: Option<baomi_core::time::Timestamp>,
    policy_ref: PolicyRef,
    engine: Option<Engine>,
    store: Option<Store>,
}

impl Simulator {
    fn decide(&mut self, event: &Event) -> Result<Decision, CliError> {
        let engine = self.engine.get_or_insert_with(|| {
            let mut e = Engine::new(self.policy.clone(), self.clearance, event.at);
            e.set_policy_expiry(self.expires_at);
            e
        });
        let d = engine.handle(event);
        if d.violation
            && let Some(store) = &mut self.store
        {
            store
                .append(&ViolationRecord::new(
                    event,
                    &d,
                    Some(self.policy_ref.clone()),
                ))
                .map_err(|e| CliError::refused(format!("store: {e}")))?;
        }
        Ok(d)
    }
}

pub fn run(a: &SimulateArgs) -> Result<(), CliError> {
    let (policy, header) = load_policy(&a.policy, a.trust.as_deref(), a.now.as_deref())?;
    let clearance = match (a.clearance, &a.device) {
        (Some(c), _) => c,
        (None, Some(d)) => policy
            .holder_for_device(d)
            .map(|h| h.clearance)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "device `{d}` has no holder assignment in the policy: pass --clearance"
                ))
            })?,
        (None, None) => return Err(CliError::Usage("pass --clearance or --device".into())),
    };
    let compiled = Arc::new(
        CompiledPolicy::compile(policy, a.platform)
            .map_err(|e| CliError::refused(format!("{}: {e}", a.policy.display())))?,
    );
    let text = files::read_text(&a.events)?;
    let store = match &a.store {
        Some(dir) => {
            let keys = crate::command::log::StoreArgs {
                store: dir.clone(),
                key_file: None,
            }
            .key_provider()?;
            Some(
                Store::open(dir, &keys, StoreOptions::default())
                    .map_err(|e| CliError::refused(format!("{}: {e}", dir.display())))?,
            )
        }
        None => None,
    };
    let mut sim = Simulator {
        policy_ref: PolicyRef {
            id: compiled.source.policy_id.clone(),
            version: header.as_ref().map_or(0, |h| h.version),
        },
        policy: compiled,
        clearance,
        expires_at: header.as_ref().map(|h| h.expires_at),
        engine: None,
        store,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event = Event::from_json_line(i + 1, line)
            .map_err(|e| CliError::refused(format!("{}: {e}", a.events.display())))?;
        let d = sim.decide(&event)?;
        let json = serde_json::to_string(&d).map_err(|e| CliError::Io(e.to_string()))?;
        writeln!(out, "{json}").map_err(|e| CliError::Io(format!("stdout: {e}")))?;
    }
    Ok(())
}
