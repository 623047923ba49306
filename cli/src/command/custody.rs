//! `baomi custody sign`: the document registry signs a sign-out or return record.

use std::path::PathBuf;

use baomi_core::level::Classification;
use baomi_core::sync::custody::{CustodyAction, CustodyRecordDoc, sign_custody_record};
use clap::{Args, Subcommand, ValueEnum};

use crate::command::bundle::parse_now;
use crate::{CliError, files};

#[derive(Subcommand)]
pub enum CustodyCmd {
    /// Sign a custody record with registry keys.
    Sign(SignArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Action {
    SignOut,
    Return,
}

#[derive(Args)]
pub struct SignArgs {
    /// Registry private key(s) (.key).
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Registry's unique id of this record.
    #[arg(long)]
    record_id: String,
    /// Personnel id of the holder.
    #[arg(long)]
    holder: String,
    /// Document id.
    #[arg(long)]
    document: String,
    /// work_secret, secret, highly_secret, top_secret.
    #[arg(long)]
    classification: Classification,
    /// sign-out or return.
    #[arg(long)]
    action: Action,
    /// When (RFC 3339); default now.
    #[arg(long)]
    at: Option<String>,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(cmd: CustodyCmd) -> Result<(), CliError> {
    match cmd {
        CustodyCmd::Sign(a) => {
            let keys = files::signing_keys(&a.keys)?;
            let doc = CustodyRecordDoc {
                record_id: a.record_id,
                holder: a.holder,
                document: a.document,
                classification: a.classification,
                action: match a.action {
                    Action::SignOut => CustodyAction::SignOut,
                    Action::Return => CustodyAction::Return,
                },
                at: parse_now(a.at.as_deref())?,
            };
            let env = sign_custody_record(&doc, &keys.iter().collect::<Vec<_>>())
                .map_err(CliError::refused)?;
            files::write(&a.out, env.to_json().as_bytes())?;
            println!("wrote {}", a.out.display());
            Ok(())
        }
    }
}
