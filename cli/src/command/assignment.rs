//! `baomi assignment sign`: the personnel office signs "this phone to that holder".

use std::path::PathBuf;

use baomi_core::level::Clearance;
use baomi_core::sync::assignment::{AssignmentRecordDoc, sign_assignment_record};
use baomi_core::time::Timestamp;
use clap::{Args, Subcommand};

use crate::{CliError, files};

#[derive(Subcommand)]
pub enum AssignmentCmd {
    /// Sign an assignment record with personnel keys (the trust root's `--personnel-key`).
    Sign(SignArgs),
}

#[derive(Args)]
pub struct SignArgs {
    /// Personnel private key(s) (.key).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// The personnel office's unique id of this record.
    #[arg(long)]
    record_id: String,
    /// The device id (as enrolled).
    #[arg(long)]
    device: String,
    /// Personnel id of the holder.
    #[arg(long)]
    holder: String,
    /// none, general, important, core (一般/重要/核心涉密人员).
    #[arg(long)]
    clearance: Clearance,
    /// From when (RFC 3339); default now.
    #[arg(long)]
    valid_from: Option<String>,
    /// Until when (RFC 3339, exclusive); open-ended when absent.
    #[arg(long)]
    valid_until: Option<String>,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(cmd: AssignmentCmd) -> Result<(), CliError> {
    match cmd {
        AssignmentCmd::Sign(a) => {
            let keys = files::signing_keys(&a.keys)?;
            let valid_until = match a.valid_until.as_deref() {
                Some(t) => Some(
                    Timestamp::parse(t)
                        .map_err(|e| CliError::Usage(format!("--valid-until {t}: {e}")))?,
                ),
                None => None,
            };
            let doc = AssignmentRecordDoc {
                record_id: a.record_id,
                device: a.device,
                holder: a.holder,
                clearance: a.clearance,
                valid_from: match a.valid_from.as_deref() {
                    Some(t) => Timestamp::parse(t)
                        .map_err(|e| CliError::Usage(format!("--valid-from {t}: {e}")))?,
                    None => Timestamp::now(),
                },
                valid_until,
                issued_at: Timestamp::now(),
            };
            let env = sign_assignment_record(&doc, &keys.iter().collect::<Vec<_>>())
                .map_err(CliError::refused)?;
            files::write(&a.out, env.to_json().as_bytes())?;
            println!("wrote {}", a.out.display());
            Ok(())
        }
    }
}
