//! `baomi`: the security office's command line. Thin dispatch; each subcommand lives in
//! `command/<name>.rs` and returns a [`CliError`] that maps to a documented exit code.
#![forbid(unsafe_code)]

mod command;
mod error;
mod files;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::CliError;

/// Baomi admin CLI.
#[derive(Parser)]
#[command(
    name = "baomi",
    version,
    about = "Baomi policy agent: policies, keys, bundles, simulation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check policy documents.
    #[command(subcommand)]
    Policy(command::policy::PolicyCmd),
    /// Create signing keys.
    #[command(subcommand)]
    Keys(command::keys::KeysCmd),
    /// Create and check trust roots.
    #[command(subcommand)]
    Trust(command::trust::TrustCmd),
    /// Sign and verify policy bundles.
    #[command(subcommand)]
    Bundle(command::bundle::BundleCmd),
    /// Read and verify a device's encrypted violation log.
    #[command(subcommand)]
    Log(command::log::LogCmd),
    /// The device agent on this host: enrol, feed events, sync, status.
    #[command(subcommand)]
    Agent(command::agent::AgentCmd),
    /// Sign personnel assignment records (this phone to that holder, at that clearance).
    #[command(subcommand)]
    Assignment(command::assignment::AssignmentCmd),
    /// Sign document registry custody records (sign-out, return).
    #[command(subcommand)]
    Custody(command::custody::CustodyCmd),
    /// Replay an event stream through a policy and print one decision per event.
    Simulate(command::simulate::SimulateArgs),
    /// End-to-end demo: keys, trust root, signed baseline, the four published leak cases.
    Demo(command::demo::DemoArgs),
    /// Check the office's evidence ledger: signed, consistent, every phone's chain complete,
    /// and everything the office shows in it.
    Audit(command::ledger::AuditArgs),
    /// One violation's evidence: export it from the office, verify it offline.
    #[command(subcommand)]
    Evidence(command::ledger::EvidenceCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff): `baomi man > baomi.1`.
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(c) => command::policy::run(c),
        Command::Keys(c) => command::keys::run(c),
        Command::Trust(c) => command::trust::run(c),
        Command::Bundle(c) => command::bundle::run(c),
        Command::Log(c) => command::log::run(c),
        Command::Agent(c) => command::agent::run(c),
        Command::Assignment(c) => command::assignment::run(c),
        Command::Custody(c) => command::custody::run(c),
        Command::Simulate(a) => command::simulate::run(&a),
        Command::Demo(a) => command::demo::run(&a),
        Command::Audit(a) => command::ledger::run_audit(&a),
        Command::Evidence(c) => command::ledger::run_evidence(c),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "baomi", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            use clap::CommandFactory as _;
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| CliError::Io(format!("writing the manual page: {e}")))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
