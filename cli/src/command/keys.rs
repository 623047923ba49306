//! `baomi keys new --out PREFIX`

use std::path::PathBuf;

use baomi_core::bundle::SigningKey;
use clap::Subcommand;

use crate::{CliError, files};

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Generate an Ed25519 key pair: PREFIX.key (private, mode 0600) and PREFIX.pub.
    New {
        /// Path prefix of the two files.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: KeysCmd) -> Result<(), CliError> {
    match cmd {
        KeysCmd::New { out } => {
            let (key_path, pub_path) = new_key_pair(&out)?;
            println!("wrote {} and {}", key_path.display(), pub_path.display());
            Ok(())
        }
    }
}

/// Writes a new key pair next to `prefix`; refuses to overwrite a private key.
pub fn new_key_pair(prefix: &std::path::Path) -> Result<(PathBuf, PathBuf), CliError> {
    let key = SigningKey::generate().map_err(|e| CliError::Io(e.to_string()))?;
    let key_path = prefix.with_extension("key");
    let pub_path = prefix.with_extension("pub");
    files::write_secret(&key_path, key.to_file().as_bytes())?;
    let public = serde_json::to_string_pretty(&key.public().to_file()).unwrap_or_default();
    files::write(&pub_path, public.as_bytes())?;
    eprintln!("key id {}", key.public().keyid());
    Ok((key_path, pub_path))
}
