//! `baomi log show|verify --store DIR`: the security office's view of a device store on a
//! host. The store's data key is wrapped by the host key file (`DIR/host-kek.bin` unless
//! `--key-file` says otherwise); phones wrap it in their keystore instead.

use std::io::Write;
use std::path::{Path, PathBuf};

use baomi_core::store::{HostFileKeyProvider, Store, StoreOptions};
use clap::{Args, Subcommand};

use crate::CliError;

#[derive(Subcommand)]
pub enum LogCmd {
    /// Decrypt and print records as JSON lines.
    Show(ShowArgs),
    /// Walk the hash chain: exit 0, or 3 with the first broken link.
    Verify(StoreArgs),
}

#[derive(Args)]
pub struct StoreArgs {
    /// Store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Host key file wrapping the store's data key.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Print records after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// At most this many records.
    #[arg(long, default_value_t = 10_000)]
    limit: usize,
}

impl StoreArgs {
    pub fn key_provider(&self) -> Result<HostFileKeyProvider, CliError> {
        let path = self
            .key_file
            .clone()
            .unwrap_or_else(|| default_key_file(&self.store));
        HostFileKeyProvider::open_or_create(&path).map_err(|e| CliError::Io(e.to_string()))
    }

    fn open_existing(&self) -> Result<Store, CliError> {
        if !self.store.join(baomi_core::store::DB_FILE).exists() {
            return Err(CliError::Usage(format!(
                "{}: no store here",
                self.store.display()
            )));
        }
        Store::open(&self.store, &self.key_provider()?, StoreOptions::default())
            .map_err(|e| CliError::refused(format!("{}: {e}", self.store.display())))
    }
}

pub fn default_key_file(store: &Path) -> PathBuf {
    store.join("host-kek.bin")
}

pub fn run(cmd: LogCmd) -> Result<(), CliError> {
    match cmd {
        LogCmd::Show(a) => {
            let store = a.store.open_existing()?;
            let records = store
                .records_after(a.after, a.limit)
                .map_err(|e| CliError::refused(format!("{}: {e}", a.store.store.display())))?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for r in records {
                let line = serde_json::to_string(&r).map_err(|e| CliError::Io(e.to_string()))?;
                writeln!(out, "{line}").map_err(|e| CliError::Io(format!("stdout: {e}")))?;
            }
            Ok(())
        }
        LogCmd::Verify(a) => {
            let store = a.open_existing()?;
            let r = store
                .verify()
                .map_err(|e| CliError::refused(format!("{}: {e}", a.store.display())))?;
            println!(
                "ok: {} records intact (seq {}..={}), {} acknowledged and deleted, head {}",
                r.records,
                r.acked_through + 1,
                r.head,
                r.acked_through,
                store.head().tag_hex()
            );
            Ok(())
        }
    }
}
