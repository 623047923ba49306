//! `baomi trust new`, `baomi trust verify`

use std::path::PathBuf;

use baomi_core::bundle::TrustRoot;
use baomi_core::bundle::trust::{KeyEntry, RoleKeys, TrustRootDoc};
use baomi_core::time::Timestamp;
use clap::{Args, Subcommand};

use crate::{CliError, files};

#[derive(Subcommand)]
pub enum TrustCmd {
    /// Create a signed trust root (the first one, or the next one for a key rotation).
    New(NewArgs),
    /// Check a trust root; with --current, check it as a rotation from that root.
    Verify {
        /// The trust root to check.
        file: PathBuf,
        /// The root the device has now.
        #[arg(long)]
        current: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct NewArgs {
    /// Root public keys (.pub), repeated: they sign trust roots.
    #[arg(long = "key", required = true)]
    keys: Vec<PathBuf>,
    /// How many root keys must sign a root (and a policy, when no --policy-key is given).
    #[arg(long)]
    threshold: u32,
    /// Private keys (.key) to sign this root with: a threshold of its own keys and, for a
    /// rotation, a threshold of the current root's keys.
    #[arg(long = "sign-key", required = true)]
    sign_keys: Vec<PathBuf>,
    /// Version: 1 for the first root, current + 1 for a rotation.
    #[arg(long, default_value_t = 1)]
    version: u64,
    /// Policy public keys (.pub) that sign bundles, repeated. Keep the root keys (`--key`)
    /// offline: with policy keys of their own, a stolen bundle key cannot rotate the root.
    /// Without any, the root keys sign bundles too (a warning says so).
    #[arg(long = "policy-key")]
    policy_keys: Vec<PathBuf>,
    /// How many policy keys must sign a bundle.
    #[arg(long, default_value_t = 1)]
    policy_threshold: u32,
    /// Document registry public keys (.pub) that sign custody records.
    #[arg(long = "registry-key")]
    registry_keys: Vec<PathBuf>,
    /// How many registry keys must sign a custody record.
    #[arg(long, default_value_t = 1)]
    registry_threshold: u32,
    /// Personnel public keys (.pub) that sign assignment records (`baomi assignment sign`):
    /// a phone is then issued to a holder without re-signing the policy.
    #[arg(long = "personnel-key")]
    personnel_keys: Vec<PathBuf>,
    /// How many personnel keys must sign an assignment record.
    #[arg(long, default_value_t = 1)]
    personnel_threshold: u32,
    /// The suite every key of the root follows, and everything it signs: intl (Ed25519,
    /// X25519, AES-GCM, SHA-256) or sm (SM2, SM3, SM4; `baomi keys new --suite sm`).
    #[arg(long, default_value = "intl")]
    suite: baomi_core::suite::Suite,
    /// The SM2 distinguishing ID signatures under the root are made with (sm roots; default
    /// 1234567812345678).
    #[arg(long)]
    sm2_id: Option<String>,
    /// The office's upload key (`baomi-server upload-key new` writes it as OUT.pub): devices
    /// seal violation batches to it.
    #[arg(long)]
    upload_key: Option<PathBuf>,
    /// Days until the root expires: the devices then freeze (fail closed) until a rotation
    /// reaches them, so a root nobody renews cannot vouch forever.
    #[arg(long, default_value_t = 365)]
    expires_in_days: i64,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(cmd: TrustCmd) -> Result<(), CliError> {
    match cmd {
        TrustCmd::New(a) => new(&a),
        TrustCmd::Verify { file, current } => {
            let bytes = files::read(&file)?;
            let root = match current {
                Some(c) => files::trust_root(&c)?.rotate(&bytes),
                None => TrustRoot::from_self_signed(&bytes),
            }
            .map_err(|e| CliError::refused(format!("{}: {e}", file.display())))?;
            println!("ok: {}", summary(&root));
            Ok(())
        }
    }
}

pub fn summary(root: &TrustRoot) -> String {
    let (reg, reg_t) = root.registry_keys();
    let (pol, pol_t) = root.policy_keys();
    let policy = if root.roles_separated() {
        format!("{pol_t}-of-{} policy keys", pol.len())
    } else {
        "the root keys sign policies".to_owned()
    };
    let personnel = root
        .personnel_keys()
        .map(|(k, t)| format!(", {t}-of-{} personnel keys", k.len()))
        .unwrap_or_default();
    format!(
        "trust root v{} ({} suite): {}-of-{} root keys, {policy}, {}-of-{} registry keys{personnel}",
        root.version(),
        root.suite(),
        root.threshold(),
        root.office_keys().len(),
        reg_t,
        reg.len()
    )
}

fn new(a: &NewArgs) -> Result<(), CliError> {
    let keys = a
        .keys
        .iter()
        .map(|p| files::public_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = a
        .policy_keys
        .iter()
        .map(|p| files::public_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    if policy.is_empty() {
        eprintln!(
            "warning: no --policy-key: the root keys sign bundles too, so a thief of one bundle-signing key could rotate the root; give bundles keys of their own"
        );
    }
    let registry = a
        .registry_keys
        .iter()
        .map(|p| files::public_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let personnel = a
        .personnel_keys
        .iter()
        .map(|p| files::public_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let signers = files::signing_keys(&a.sign_keys)?;
    let now = Timestamp::now();
    let doc = TrustRootDoc {
        expires_at: Some(now.plus_seconds(a.expires_in_days.saturating_mul(86_400))),
        upload_key: match &a.upload_key {
            Some(p) => Some(files::read_text(p)?.trim().to_owned()),
            None => None,
        },
        version: a.version,
        issued_at: now,
        keys: keys.iter().map(KeyEntry::of).collect(),
        threshold: a.threshold,
        registry: (!registry.is_empty()).then(|| RoleKeys {
            keys: registry.iter().map(KeyEntry::of).collect(),
            threshold: a.registry_threshold,
        }),
        policy: (!policy.is_empty()).then(|| RoleKeys {
            keys: policy.iter().map(KeyEntry::of).collect(),
            threshold: a.policy_threshold,
        }),
        suite: a.suite,
        sm2_id: a.sm2_id.clone(),
        personnel: (!personnel.is_empty()).then(|| RoleKeys {
            keys: personnel.iter().map(KeyEntry::of).collect(),
            threshold: a.personnel_threshold,
        }),
    };
    let env = TrustRoot::sign(&doc, &signers.iter().collect::<Vec<_>>());
    let bytes = env.to_json();
    // Refuse to write a root the device would refuse (first roots only: a rotation is
    // checked with `trust verify --current`).
    if a.version == 1 {
        let root = TrustRoot::from_self_signed(bytes.as_bytes()).map_err(CliError::refused)?;
        eprintln!("{}", summary(&root));
    }
    files::write(&a.out, bytes.as_bytes())?;
    println!("wrote {}", a.out.display());
    Ok(())
}
