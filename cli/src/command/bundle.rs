//! `baomi bundle sign`, `baomi bundle verify`

use std::path::PathBuf;

use baomi_core::bundle::{Installed, VerifiedBundle, verify_bundle};
use baomi_core::policy::Policy;
use baomi_core::time::Timestamp;
use clap::{Args, Subcommand};

use crate::{CliError, files};

#[derive(Subcommand)]
pub enum BundleCmd {
    /// Sign a policy into a bundle.
    Sign(SignArgs),
    /// Verify a bundle as a device would; exit 0 with a one-line summary, or 3 and the reason.
    Verify(VerifyArgs),
}

#[derive(Args)]
pub struct SignArgs {
    /// Policy document.
    #[arg(long)]
    policy: PathBuf,
    /// Private keys (.key), repeated up to the trust root's threshold.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// Bundle version; must exceed the version devices have installed.
    #[arg(long)]
    version: u64,
    /// Days until the bundle expires and devices fall back to fail-closed (at most 90: a
    /// device refuses a longer-lived bundle).
    #[arg(long, default_value_t = 30)]
    expires_in_days: u32,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// SM2 keys sign under this distinguishing ID (the trust root's `--sm2-id`).
    #[arg(long, default_value = baomi_core::suite::sm::DEFAULT_ID)]
    sm2_id: String,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Trust root.
    #[arg(long)]
    trust: PathBuf,
    /// Bundle.
    #[arg(long)]
    bundle: PathBuf,
    /// Version the device has installed (rollback check).
    #[arg(long, default_value_t = 0)]
    installed_version: u64,
    /// Policy id the device runs (identity check).
    #[arg(long)]
    policy_id: Option<String>,
    /// Check expiry at this RFC 3339 time instead of now.
    #[arg(long)]
    now: Option<String>,
}

pub fn run(cmd: BundleCmd) -> Result<(), CliError> {
    match cmd {
        BundleCmd::Sign(a) => {
            let policy = Policy::from_json(&files::read(&a.policy)?)
                .map_err(|e| CliError::refused(format!("{}: {e}", a.policy.display())))?;
            let keys = files::signing_keys(&a.keys)?;
            let now = Timestamp::now();
            let expires = now.plus_seconds(i64::from(a.expires_in_days) * 86_400);
            let env = baomi_core::bundle::sign_bundle_with_id(
                &a.sm2_id,
                &policy,
                a.version,
                now,
                expires,
                &keys.iter().collect::<Vec<_>>(),
            )
            .map_err(CliError::refused)?;
            files::write(&a.out, env.to_json().as_bytes())?;
            println!(
                "wrote {} (policy `{}` v{}, expires {expires})",
                a.out.display(),
                policy.policy_id,
                a.version
            );
            Ok(())
        }
        BundleCmd::Verify(a) => {
            let trust = files::trust_root(&a.trust)?;
            let now = parse_now(a.now.as_deref())?;
            let installed = Installed {
                policy_id: a.policy_id,
                version: a.installed_version,
            };
            let v = verify_bundle(&files::read(&a.bundle)?, &trust, &installed, now)
                .map_err(|e| CliError::refused(format!("{}: rejected: {e}", a.bundle.display())))?;
            println!("{}", summary(&v));
            Ok(())
        }
    }
}

pub fn parse_now(now: Option<&str>) -> Result<Timestamp, CliError> {
    match now {
        Some(s) => Timestamp::parse(s).map_err(|e| CliError::Usage(format!("--now: {e}"))),
        None => Ok(Timestamp::now()),
    }
}

pub fn summary(v: &VerifiedBundle) -> String {
    format!(
        "ok: policy `{}` v{}, {} rules, expires {}, digest {}",
        v.header.policy_id,
        v.header.version,
        v.policy.rules.len(),
        v.header.expires_at,
        v.digest.get(..16).unwrap_or(&v.digest)
    )
}
