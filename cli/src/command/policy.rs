//! `baomi policy check FILE`

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
}

pub fn run(cmd: PolicyCmd) -> Result<(), CliError> {
    match cmd {
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
