//! Reading and writing the CLI's files, with the path in every error.

use std::fs;
use std::path::Path;

use baomi_core::bundle::keys::{PublicKey, PublicKeyFile};
use baomi_core::bundle::{SigningKey, TrustRoot};

use zeroize::Zeroizing;

use crate::CliError;

pub fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    fs::read(path).map_err(|e| CliError::io(path, e))
}

pub fn read_text(path: &Path) -> Result<String, CliError> {
    fs::read_to_string(path).map_err(|e| CliError::io(path, e))
}

pub fn write(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    fs::write(path, bytes).map_err(|e| CliError::io(path, e))
}

/// Writes a secret readable by its owner only.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(|e| CliError::io(path, e))?;
    f.write_all(bytes).map_err(|e| CliError::io(path, e))
}

pub fn signing_key(path: &Path) -> Result<SigningKey, CliError> {
    let text = Zeroizing::new(read_text(path)?);
    SigningKey::from_file_json(&text)
        .map_err(|e| CliError::refused(format!("{}: {e}", path.display())))
}

/// Every signing key of `paths`, in order.
pub fn signing_keys(paths: &[std::path::PathBuf]) -> Result<Vec<SigningKey>, CliError> {
    paths.iter().map(|p| signing_key(p)).collect()
}

pub fn public_key(path: &Path) -> Result<PublicKey, CliError> {
    let f: PublicKeyFile = serde_json::from_slice(&read(path)?).map_err(|e| {
        CliError::refused(format!("{}: not a public key file: {e}", path.display()))
    })?;
    PublicKey::from_file(&f).map_err(|e| CliError::refused(format!("{}: {e}", path.display())))
}

pub fn trust_root(path: &Path) -> Result<TrustRoot, CliError> {
    TrustRoot::from_self_signed(&read(path)?)
        .map_err(|e| CliError::refused(format!("{}: {e}", path.display())))
}
