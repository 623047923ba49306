//! `baomi policy check FILE`, `baomi policy assign`

use std::path::PathBuf;

use baomi_core::policy::Policy;
use clap::Subcommand;

use crate::{CliError, files};

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Parse and validate a policy; print every problem with its path and rule id.
    Check {
        /// Policy document (JSON).
        file: PathBuf,
    },
    /// Assign devices to a holder in a policy's `holders` (added, or the holder's entry
    /// updated), write the result and check it: the policy to sign with `bundle sign`.
    Assign {
        /// Policy document (JSON).
        #[arg(long)]
        policy: PathBuf,
        /// Personnel id.
        #[arg(long)]
        holder: String,
        /// `none`, `general`, `important` or `core` (the holder's clearance).
        #[arg(long)]
        clearance: String,
        /// Device id (`baomi agent id`); repeat for several.
        #[arg(long = "device", required = true)]
        devices: Vec<String>,
        /// Where to write the policy.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: PolicyCmd) -> Result<(), CliError> {
    match cmd {
        PolicyCmd::Assign {
            policy,
            holder,
            clearance,
            devices,
            out,
        } => {
            let mut doc: serde_json::Value = serde_json::from_slice(&files::read(&policy)?)
                .map_err(|e| CliError::refused(format!("{}: {e}", policy.display())))?;
            let holders = doc
                .as_object_mut()
                .ok_or_else(|| CliError::refused(format!("{}: not a policy", policy.display())))?
                .entry("holders")
                .or_insert_with(|| serde_json::json!([]));
            let list = holders.as_array_mut().ok_or_else(|| {
                CliError::refused(format!("{}: `holders` is not a list", policy.display()))
            })?;
            match list.iter_mut().find(|h| h["holder"] == holder.as_str()) {
                Some(h) => {
                    h["clearance"] = clearance.clone().into();
                    let have: Vec<serde_json::Value> =
                        h["devices"].as_array().cloned().unwrap_or_default();
                    let mut all = have;
                    for d in &devices {
                        if !all.iter().any(|x| x == d.as_str()) {
                            all.push(d.clone().into());
                        }
                    }
                    h["devices"] = all.into();
                }
                None => list.push(serde_json::json!({
                    "holder": holder,
                    "clearance": clearance,
                    "devices": devices,
                })),
            }
            let text = serde_json::to_vec_pretty(&doc).map_err(|e| CliError::Io(e.to_string()))?;
            if let Err(errs) = Policy::from_json(&text) {
                for e in errs.iter() {
                    eprintln!("{}: {e}", out.display());
                }
                return Err(CliError::refused("the assigned policy does not check"));
            }
            std::fs::write(&out, text).map_err(|e| CliError::io(&out, e))?;
            println!(
                "wrote {}: {holder} ({clearance}) on {}",
                out.display(),
                devices.join(", ")
            );
            Ok(())
        }
        PolicyCmd::Check { file } => {
            let bytes = files::read(&file)?;
            match Policy::from_json(&bytes) {
                Ok(p) => {
                    println!(
                        "ok: policy `{}` ({} rules, {} app sets, {} zones)",
                        p.policy_id,
                        p.rules.len(),
                        p.app_sets.len(),
                        p.zones.len()
                    );
                    Ok(())
                }
                Err(errs) => {
                    for e in errs.iter() {
                        eprintln!("{}: {e}", file.display());
                    }
                    Err(CliError::refused(format!(
                        "{}: {} problem(s)",
                        file.display(),
                        errs.0.len()
                    )))
                }
            }
        }
    }
}
