//! `baomi agent ...`: the device agent running on this host, as a phone would run it, with
//! the host key file in place of the keystore and `ureq` in place of the platform's HTTP.

use std::io::Write;
use std::path::PathBuf;

use baomi_core::agent::{Agent, AgentError, SyncError, enroll, sync_now, wait_for_change};
use baomi_core::compile::Platform;
use baomi_core::store::StoreOptions;
use baomi_core::sync::protocol::MAX_WAIT_MS;
use clap::{Args, Subcommand};

use crate::command::bundle::parse_now;
use crate::command::log::StoreArgs;
use crate::{CliError, files};
use baomi_core::sync::http::HttpTransport;

#[derive(Subcommand)]
pub enum AgentCmd {
    /// Provision the trust root and enrol with a one-time token.
    Enroll(EnrollArgs),
    /// Run one sync (check-in, upload, download, finish).
    Sync(SyncArgs),
    /// Keep the server's push channel open (`POST /v1/wait`) and sync whenever it says so, or
    /// when the scheduled sync is due; prints one sync report per line.
    Watch(WatchArgs),
    /// Feed platform events (JSON lines) to the installed policy; print decisions.
    Events(EventsArgs),
    /// Print the agent's state: policy, posture, chain, sync schedule.
    Status(CommonArgs),
    /// Print the device id (what a policy's `holders` names).
    Id(CommonArgs),
}

#[derive(Args)]
pub struct CommonArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Platform whose app ids the policy is compiled for.
    #[arg(long, default_value = "android")]
    platform: Platform,
    /// The time the agent runs at (RFC 3339); default now. For replaying a week offline.
    #[arg(long)]
    now: Option<String>,
    /// Trust only this CA (PEM) for the server's TLS certificate (an office's private CA);
    /// default: the Mozilla root set.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

#[derive(Args)]
pub struct EnrollArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Compliance server base URL.
    #[arg(long)]
    server: String,
    /// One-time enrolment token.
    #[arg(long)]
    token: String,
    /// Trust root provisioned out of band (MDM managed configuration on a phone).
    #[arg(long)]
    trust: PathBuf,
}

#[derive(Args)]
pub struct SyncArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Server base URL; default the one enrolled with.
    #[arg(long)]
    server: Option<String>,
}

#[derive(Args)]
pub struct WatchArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Stop after this many syncs (default: run until killed).
    #[arg(long)]
    syncs: Option<u64>,
}

#[derive(Args)]
pub struct EventsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Event stream, one JSON object per line.
    #[arg(long)]
    events: PathBuf,
}

impl CommonArgs {
    fn transport(&self, server: &str) -> Result<HttpTransport, CliError> {
        match &self.ca_cert {
            Some(p) => HttpTransport::with_ca_pem(server, &files::read(p)?)
                .map_err(|e| CliError::refused(format!("{}: {e}", p.display()))),
            None => Ok(HttpTransport::new(server)),
        }
    }

    fn open(&self) -> Result<(Agent, baomi_core::time::Timestamp), CliError> {
        let now = parse_now(self.now.as_deref())?;
        let agent = Agent::open(
            &self.store.store,
            &self.store.key_provider()?,
            StoreOptions::default(),
            self.platform,
            now,
        )
        .map_err(|e| CliError::refused(format!("{}: {e}", self.store.store.display())))?;
        Ok((agent, now))
    }
}

fn sync_error(e: SyncError) -> CliError {
    match e {
        SyncError::Transport(_) | SyncError::Agent(AgentError::Store(_)) => {
            CliError::Io(e.to_string())
        }
        other => CliError::refused(other),
    }
}

pub fn run(cmd: AgentCmd) -> Result<(), CliError> {
    match cmd {
        AgentCmd::Enroll(a) => {
            let (mut agent, now) = a.common.open()?;
            // Out of band, as managed configuration would: the first root, a rotation, or
            // the root already installed (a no-op).
            agent
                .provision_trust_root(&files::read(&a.trust)?, now)
                .map_err(|e| CliError::refused(format!("{}: {e}", a.trust.display())))?;
            let t = a.common.transport(&a.server)?;
            let r = enroll(&mut agent, &t, &a.server, &a.token, a.common.platform, now)
                .map_err(sync_error)?;
            println!("enrolled {} with {}", r.device_id, a.server);
            Ok(())
        }
        AgentCmd::Sync(a) => {
            let (mut agent, now) = a.common.open()?;
            let server = a
                .server
                .or_else(|| agent.sync_state().server.clone())
                .ok_or_else(|| {
                    CliError::Usage("not enrolled: run `baomi agent enroll` first".into())
                })?;
            let t = a.common.transport(&server)?;
            let report = sync_now(&mut agent, &t, now);
            let next = agent.sync_state().next_due.map(|t| t.to_rfc3339());
            match report {
                Ok(r) => {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                    Ok(())
                }
                Err(e) => {
                    eprintln!("next sync due {}", next.unwrap_or_else(|| "now".into()));
                    Err(sync_error(e))
                }
            }
        }
        AgentCmd::Watch(a) => {
            let (mut agent, _) = a.common.open()?;
            let server = agent.sync_state().server.clone().ok_or_else(|| {
                CliError::Usage("not enrolled: run `baomi agent enroll` first".into())
            })?;
            let t = a.common.transport(&server)?;
            let mut done = 0u64;
            while a.syncs.is_none_or(|n| done < n) {
                let now = baomi_core::time::Timestamp::now();
                let due = agent.sync_state().next_due.is_none_or(|d| d <= now);
                let changed = if due {
                    true
                } else {
                    // Wait for a push, but not past the scheduled sync.
                    let until_due = agent.sync_state().next_due.map_or(MAX_WAIT_MS, |d| {
                        u32::try_from(d.0 - now.0).unwrap_or(MAX_WAIT_MS)
                    });
                    match wait_for_change(&mut agent, &t, until_due.min(MAX_WAIT_MS), now) {
                        Ok(c) => c,
                        Err(e) => {
                            eprintln!("wait: {e}");
                            std::thread::sleep(std::time::Duration::from_secs(5));
                            false
                        }
                    }
                };
                if changed
                    || agent
                        .sync_state()
                        .next_due
                        .is_none_or(|d| d <= baomi_core::time::Timestamp::now())
                {
                    match sync_now(&mut agent, &t, baomi_core::time::Timestamp::now()) {
                        Ok(r) => println!("{}", serde_json::to_string(&r).unwrap_or_default()),
                        Err(e) => eprintln!("sync: {e}"),
                    }
                    done += 1;
                }
            }
            Ok(())
        }
        AgentCmd::Events(a) => {
            let (mut agent, _) = a.common.open()?;
            let text = files::read_text(&a.events)?;
            let events = baomi_core::event::parse_jsonl(&text)
                .map_err(|e| CliError::refused(format!("{}: {e}", a.events.display())))?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for ev in &events {
                let d = agent.handle(ev).map_err(CliError::refused)?;
                let line = serde_json::to_string(&d).map_err(|e| CliError::Io(e.to_string()))?;
                writeln!(out, "{line}").map_err(|e| CliError::Io(format!("stdout: {e}")))?;
            }
            Ok(())
        }
        AgentCmd::Id(a) => {
            let (agent, _) = a.open()?;
            println!("{}", agent.store().device_id());
            Ok(())
        }
        AgentCmd::Status(a) => {
            let (mut agent, now) = a.open()?;
            agent.tick(now).map_err(CliError::refused)?;
            let status = serde_json::json!({
                "agent": agent.status(now),
                "sync": agent.sync_state(),
            });
            println!("{status}");
            Ok(())
        }
    }
}
