//! `baomi keys new --out PREFIX`

use std::path::PathBuf;

use baomi_core::bundle::SigningKey;
use baomi_core::suite::Suite;
use clap::Subcommand;

use crate::{CliError, files};

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Generate a key pair: PREFIX.key (private, mode 0600) and PREFIX.pub. Ed25519 for the
    /// `intl` suite (the default), SM2 for `sm`.
    New {
        /// Path prefix of the two files.
        #[arg(long)]
        out: PathBuf,
        /// intl (Ed25519) or sm (SM2 with SM3): the suite of the trust root it goes into.
        #[arg(long, default_value = "intl")]
        suite: Suite,
    },
}

pub fn run(cmd: KeysCmd) -> Result<(), CliError> {
    match cmd {
        KeysCmd::New { out, suite } => {
            let (key_path, pub_path) = new_key_pair_for(&out, suite)?;
            println!("wrote {} and {}", key_path.display(), pub_path.display());
            Ok(())
        }
    }
}

/// Writes a new key pair of `suite` next to `prefix`; refuses to overwrite a private key.
pub fn new_key_pair_for(
    prefix: &std::path::Path,
    suite: Suite,
) -> Result<(PathBuf, PathBuf), CliError> {
    let key = SigningKey::generate_for(suite).map_err(|e| CliError::Io(e.to_string()))?;
    let key_path = prefix.with_extension("key");
    let pub_path = prefix.with_extension("pub");
    files::write_secret(&key_path, key.to_file().as_bytes())?;
    let public = serde_json::to_string_pretty(&key.public().to_file()).unwrap_or_default();
    files::write(&pub_path, public.as_bytes())?;
    eprintln!("{} key id {}", key.suite(), key.public().keyid());
    Ok((key_path, pub_path))
}
