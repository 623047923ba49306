//! `baomi audit` and `baomi evidence`: an inquiry's independent checks of the office's
//! evidence ledger (`baomi_server::ledger`), trusting only the pinned log key and the phones'
//! signatures.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use baomi_server::ledger::audit::{self, AuditState, HttpSource, Source};
use baomi_server::ledger::{Evidence, evidence};

use crate::CliError;
use crate::files;

/// Where the ledger is read.
#[derive(Args)]
pub struct Office {
    /// The office server (`https://...`; plain `http://` only on loopback).
    #[arg(long, conflicts_with = "db", required_unless_present = "db")]
    server: Option<String>,
    /// Read a database directly instead (`sqlite:PATH` or `postgres://...`), e.g. a backup
    /// copy: its newest signed checkpoint is audited.
    #[arg(long)]
    db: Option<String>,
    /// The officer to log in as (an auditor); the password from `BAOMI_OFFICER_PASSWORD`.
    #[arg(long, requires = "server")]
    officer: Option<String>,
    /// The office CA (PEM) when the server's certificate is not in the system's roots.
    #[arg(long, requires = "server")]
    ca: Option<PathBuf>,
}

/// `baomi audit`.
#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    office: Office,
    /// The log's verifier key (`name+id+base64`, or a file holding it: `log.pub`), pinned.
    #[arg(long)]
    log_key: String,
    /// The auditor's state: the last checkpoint verified (created on the first run).
    #[arg(long)]
    state: PathBuf,
    /// Cosign a checkpoint consistent with the last one verified, with this key
    /// (`baomi-server log-key new` makes one), and post it with the report: the console then
    /// shows this auditor's verdict.
    #[arg(long, requires = "server")]
    witness: Option<PathBuf>,
    /// A log checkpoint taken from a phone (a file holding the note, e.g. the
    /// `sync.log_checkpoint` of `baomi agent status`), checked like those the office reports:
    /// one its log does not extend is a rollback or a fork. Repeatable.
    #[arg(long, value_name = "FILE")]
    carried: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `baomi evidence`.
#[derive(Subcommand)]
pub enum EvidenceCmd {
    /// Fetch one violation's evidence package from the office.
    Export {
        #[command(flatten)]
        office: Office,
        /// Device id.
        #[arg(long)]
        device: String,
        /// The violation's seq.
        #[arg(long)]
        seq: u64,
        /// Where to write the package.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Verify a package offline with the log's verifier key.
    Verify {
        /// The package.
        file: PathBuf,
        /// The log's verifier key (text or file), pinned.
        #[arg(long)]
        log_key: String,
    },
}

fn key_text(k: &str) -> Result<String, CliError> {
    let p = std::path::Path::new(k);
    if !k.contains('+') && p.exists() {
        return String::from_utf8(files::read(p)?)
            .map(|s| s.trim().to_owned())
            .map_err(|_| CliError::refused(format!("{k}: not a verifier key")));
    }
    Ok(k.trim().to_owned())
}

fn http(o: &Office) -> Result<HttpSource, CliError> {
    let server = o
        .server
        .as_deref()
        .ok_or_else(|| CliError::Usage("--server is required here".into()))?;
    let officer = o
        .officer
        .as_deref()
        .ok_or_else(|| CliError::Usage("--officer is required with --server".into()))?;
    let password = std::env::var("BAOMI_OFFICER_PASSWORD").map_err(|_| {
        CliError::Usage("set BAOMI_OFFICER_PASSWORD to the officer's password".into())
    })?;
    let ca = o.ca.as_deref().map(files::read).transpose()?;
    HttpSource::login(server, officer, &password, ca.as_deref()).map_err(CliError::Io)
}

fn source(o: &Office) -> Result<Box<dyn Source>, CliError> {
    match &o.db {
        Some(db) => {
            let db = baomi_server::db::Db::open(db, 1).map_err(|e| CliError::Io(e.to_string()))?;
            let s = baomi_server::Server::new(db, None, baomi_core::time::Timestamp::now)
                .map_err(|e| CliError::Io(e.message))?;
            Ok(Box::new(s))
        }
        None => Ok(Box::new(http(o)?)),
    }
}

/// Runs `baomi audit`: exit 0 when the ledger verifies, 3 with findings (each printed).
pub fn run_audit(a: &AuditArgs) -> Result<(), CliError> {
    let vkey = key_text(&a.log_key)?;
    let state: AuditState = if a.state.exists() {
        serde_json::from_slice(&files::read(&a.state)?)
            .map_err(|e| CliError::refused(format!("{}: {e}", a.state.display())))?
    } else {
        AuditState::default()
    };
    let mut from_phones = Vec::new();
    for f in &a.carried {
        let note = String::from_utf8(files::read(f)?)
            .map_err(|_| CliError::refused(format!("{}: not a signed note", f.display())))?;
        from_phones.push((f.display().to_string(), note));
    }
    let src = source(&a.office)?;
    let (report, next) = audit::audit_with_carried(src.as_ref(), &vkey, &state, &from_phones)
        .map_err(CliError::Io)?;
    if next != state {
        let text = serde_json::to_vec_pretty(&next).map_err(|e| CliError::Io(e.to_string()))?;
        std::fs::write(&a.state, text).map_err(|e| CliError::io(&a.state, e))?;
    }
    let consistent = !report.findings.iter().any(audit::Finding::is_log_level);
    if let Some(w) = &a.witness {
        let key = String::from_utf8(files::read(w)?)
            .map_err(|_| CliError::refused(format!("{}: not a witness key", w.display())))?;
        let name = key.trim().split('+').nth(2).unwrap_or("witness").to_owned();
        let body = serde_json::to_string(&report).map_err(|e| CliError::Io(e.to_string()))?;
        // A consistent checkpoint is cosigned; an inconsistent one (a rollback, a fork) is
        // posted as served, never cosigned, so the console names what the witness found.
        let posted = match (consistent, &next.note) {
            (true, Some(note)) => Some(audit::cosign(note, &key).map_err(CliError::refused)?),
            _ => (!report.note.is_empty()).then(|| report.note.clone()),
        };
        if let Some(note) = posted {
            http(&a.office)?
                .witness(&name, &note, &body)
                .map_err(CliError::Io)?;
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Io(e.to_string()))?
        );
    } else {
        println!(
            "checkpoint: {} leaves, root {}{}",
            report.size,
            report.root,
            if consistent {
                " (consistent with the last verified)"
            } else {
                ""
            }
        );
        for (d, c) in &report.devices {
            println!(
                "device {d}: {} records, signed through seq {}, {}",
                c.records,
                c.checkpoint,
                if c.complete {
                    "complete"
                } else {
                    "NOT complete"
                }
            );
        }
        for f in &report.findings {
            println!("FINDING: {f}");
        }
    }
    if report.clean() {
        Ok(())
    } else {
        Err(CliError::refused(format!(
            "the ledger does not verify: {} finding(s)",
            report.findings.len()
        )))
    }
}

/// Runs `baomi evidence`.
pub fn run_evidence(c: EvidenceCmd) -> Result<(), CliError> {
    match c {
        EvidenceCmd::Export {
            office,
            device,
            seq,
            out,
        } => {
            let text = http(&office)?
                .evidence(&device, seq)
                .map_err(CliError::Io)?;
            std::fs::write(&out, text).map_err(|e| CliError::io(&out, e))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        EvidenceCmd::Verify { file, log_key } => {
            let e: Evidence = serde_json::from_slice(&files::read(&file)?)
                .map_err(|e| CliError::refused(format!("{}: {e}", file.display())))?;
            let v = evidence::verify(&e, &key_text(&log_key)?)
                .map_err(|r| CliError::refused(format!("{}: refused: {r}", file.display())))?;
            println!(
                "verified: violation {} of device {}, in the office's log of {} leaves, signed by the device through seq {}",
                v.seq, v.device, v.log_size, v.device_checkpoint
            );
            println!("{}", v.record);
            Ok(())
        }
    }
}
