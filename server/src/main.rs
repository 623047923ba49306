//! `baomi-server`: the reference compliance server and the office's admin commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use baomi_core::time::Timestamp;
use baomi_server::db::Db;
use baomi_server::http::{Limits, Listener, Scope, Tls};
use baomi_server::ledger::LogKey;
use baomi_server::upload_key::UploadKey;
use baomi_server::{Server, admin};
use clap::{Parser, Subcommand};

/// Default database: an SQLite file in the working directory.
const DEFAULT_DB: &str = "sqlite:baomi-server.db";

#[derive(Parser)]
#[command(
    name = "baomi-server",
    version,
    about = "Baomi reference compliance server",
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing the serve options buys nothing"
)]
enum Cmd {
    /// Serve the sync API.
    /// Options also come from `--config FILE` (TOML, one key per flag) and `BAOMI_*`
    /// variables: flags win over the environment, the environment over the file.
    Serve {
        /// A TOML file of these options (`db = "sqlite:/var/lib/baomi/server.db"`, ...).
        #[arg(long, env = "BAOMI_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (plain HTTP only on loopback).
        #[arg(long, env = "BAOMI_LISTEN", default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// Serve the console and the officer API on this address of their own (the same TLS):
        /// then `--listen` serves devices only, and no device or stranger can fill the
        /// officers' connections. Prints a second line, `office listening on ADDR`.
        #[arg(long, env = "BAOMI_OFFICE_LISTEN")]
        office_listen: Option<std::net::SocketAddr>,
        /// `sqlite:PATH` (default) or `postgres://user@host/db`.
        #[arg(long, env = "BAOMI_DB", default_value = DEFAULT_DB)]
        db: String,
        /// The office's upload key (from `baomi-server upload-key new`; X25519, or SM2 for an
        /// `sm` trust root).
        #[arg(long, env = "BAOMI_UPLOAD_KEY")]
        upload_key: Option<PathBuf>,
        /// The office's previous upload key, kept while a rotated trust root naming the new
        /// one reaches the phones (a move from the intl suite to sm, or a new key): what they
        /// still seal to it opens, and their proofs follow its suite.
        #[arg(long, env = "BAOMI_PREVIOUS_UPLOAD_KEY", requires = "upload_key")]
        previous_upload_key: Option<PathBuf>,
        /// The evidence ledger's log key (from `baomi-server log-key new`): signs the
        /// ledger's checkpoints. Without it the ledger still records, but serves no checkpoint.
        #[arg(long, env = "BAOMI_LOG_KEY")]
        log_key: Option<PathBuf>,
        /// PEM certificate chain for TLS.
        #[arg(long, env = "BAOMI_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for TLS.
        #[arg(long, env = "BAOMI_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Runtime worker threads, and database connections (PostgreSQL pool size).
        #[arg(long, default_value_t = 8)]
        threads: usize,
        /// Most open connections; more are closed at accept.
        #[arg(long, default_value_t = 4096)]
        max_connections: usize,
        /// Seconds a client has for the TLS handshake and the request headers (slowloris).
        #[arg(long, default_value_t = 10)]
        header_timeout_secs: u64,
        /// Drive NanoMDM at this URL (its `-api` key in `BAOMI_NANOMDM_API_KEY`, its
        /// `-webhook-hmac-key` in `BAOMI_NANOMDM_WEBHOOK_KEY`; point its `-webhook-url` at
        /// `/v1/mdm/nanomdm` here).
        #[arg(long, conflicts_with = "mdm_webhook")]
        nanomdm: Option<String>,
        /// Queue commands without an APNs push (when the MDM pushes itself; tests).
        #[arg(long, requires = "nanomdm")]
        nanomdm_no_push: bool,
        /// Send MDM commands to this URL as HMAC-signed JSON (key in `BAOMI_MDM_WEBHOOK_KEY`).
        #[arg(long)]
        mdm_webhook: Option<String>,
        /// The console's default language: zh-CN (简体中文) or en. Officers can switch.
        #[arg(long, env = "BAOMI_CONSOLE_LANGUAGE", default_value = "zh-CN")]
        console_language: String,
        /// The time zone the console shows times in (IANA name).
        #[arg(long, env = "BAOMI_CONSOLE_TIMEZONE", default_value = "Asia/Shanghai")]
        console_timezone: String,
        /// POST alerts and critical violations here as JSON, signed (base64 HMAC-SHA256 in
        /// `X-Baomi-Signature`) with the key in `BAOMI_ALERT_WEBHOOK_KEY`.
        #[arg(long, env = "BAOMI_ALERT_WEBHOOK")]
        alert_webhook: Option<String>,
        /// Send them to a syslog receiver (SIEM) at HOST:PORT: RFC 5424 over TCP.
        #[arg(long, env = "BAOMI_ALERT_SYSLOG")]
        alert_syslog: Option<String>,
        /// E-mail them through this SMTP relay, HOST:PORT (STARTTLS required unless the relay
        /// is on loopback).
        #[arg(long, env = "BAOMI_ALERT_SMTP", requires = "alert_mail_to")]
        alert_smtp: Option<String>,
        /// The e-mails' sender.
        #[arg(long, env = "BAOMI_ALERT_MAIL_FROM", default_value = "baomi@localhost")]
        alert_mail_from: String,
        /// Their recipients, comma-separated.
        #[arg(long, env = "BAOMI_ALERT_MAIL_TO")]
        alert_mail_to: Option<String>,
        /// The URL phones reach this server at (`https://...`), for the console's Android
        /// provisioning QR code.
        #[arg(long, env = "BAOMI_PROVISIONING_SERVER_URL")]
        provisioning_server_url: Option<String>,
        /// Where a phone's setup wizard downloads the Baomi APK (the QR code's
        /// PACKAGE_DOWNLOAD_LOCATION).
        #[arg(long, env = "BAOMI_PROVISIONING_APK_URL")]
        provisioning_apk_url: Option<String>,
        /// Base64url SHA-256 of the APK's signing certificate (SIGNATURE_CHECKSUM).
        #[arg(long, env = "BAOMI_PROVISIONING_APK_CHECKSUM")]
        provisioning_apk_checksum: Option<String>,
        /// The device-policy controller's admin receiver, `package/class`.
        #[arg(long, env = "BAOMI_PROVISIONING_COMPONENT", default_value = baomi_server::provisioning::DEFAULT_COMPONENT)]
        provisioning_component: String,
    },
    /// Enrolment tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Signed policy bundles.
    #[command(subcommand)]
    Bundle(PublishCmd),
    /// Trust roots (first one, then rotations).
    #[command(subcommand)]
    Trust(PublishCmd),
    /// Registry custody records.
    #[command(subcommand)]
    Custody(PostCmd),
    /// Personnel assignment records (`baomi assignment sign`): a phone issued to a holder
    /// without re-signing the policy.
    #[command(subcommand)]
    Assignment(PostCmd),
    /// The office's upload key.
    #[command(subcommand, name = "upload-key")]
    UploadKey(UploadKeyCmd),
    /// The evidence ledger's log key.
    #[command(subcommand, name = "log-key")]
    LogKey(LogKeyCmd),
    /// List enrolled devices, their posture and last check-in (JSON lines).
    Devices {
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
    /// Enrolled devices: retire one.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Security officers for the console and the office API.
    #[command(subcommand)]
    Officer(OfficerCmd),
    /// MDM-applied posture: link devices to MDM enrolments, list commands.
    #[command(subcommand)]
    Mdm(MdmCmd),
    /// Retention: delete violations received more than DAYS ago (at least 180), recorded in
    /// the evidence ledger so auditors count them as purged, not deleted.
    Purge {
        /// Keep this many days of violations.
        #[arg(long)]
        older_than_days: u32,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
    /// Fill an empty database with a generated office (phones, holders, violations over the
    /// last days) for the console's benchmarks and demonstrations. Refuses a database that
    /// holds devices.
    Seed {
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
        /// Phones (two per holder).
        #[arg(long, default_value_t = 10_000)]
        devices: u64,
        /// Violations.
        #[arg(long, default_value_t = 1_000_000)]
        violations: u64,
        /// Days of history.
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// Continue a seed that stopped after N violations (the database holds its phones):
        /// adds violations N.. up to --violations.
        #[arg(long, default_value_t = 0)]
        violations_from: u64,
    },
    /// Copy the database to OUT (mode 0600) while the server runs: SQLite's online backup
    /// API, or `pg_dump --format=custom` for PostgreSQL.
    Backup {
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace the database with a backup (stop the server first): SQLite's backup API, or
    /// `pg_restore --clean` for PostgreSQL; then the schema is brought up to date.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to standard output:
    /// `baomi-server completions bash > /etc/bash_completion.d/baomi-server`.
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff) to standard output: `baomi-server man > baomi-server.1`.
    Man,
    /// List received violations (JSON lines).
    Violations {
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print a new one-time enrolment token.
    New {
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
        /// Hours until it expires.
        #[arg(long, default_value_t = 24)]
        valid_hours: i64,
        /// The holder (personnel id) the phone is issued to: shown with the device until a
        /// signed bundle assigns it.
        #[arg(long)]
        holder: Option<String>,
    },
    /// List enrolment tokens (JSON lines): id, issued, expires, holder, state.
    List {
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
    /// Revoke an unused token by its id (from `token list`).
    Revoke {
        id: String,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
}

#[derive(Subcommand)]
enum PublishCmd {
    /// Verify and publish FILE.
    Publish {
        file: PathBuf,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
}

#[derive(Subcommand)]
enum PostCmd {
    /// Verify and post a signed record FILE to the feed.
    Post {
        file: PathBuf,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
}

#[derive(Subcommand)]
enum OfficerCmd {
    /// Create an officer (or set a new password); the password is read from
    /// `BAOMI_OFFICER_PASSWORD` or the first line of standard input, never the command line.
    Add {
        name: String,
        /// `admin` (tokens, publishing, custody) or `auditor` (read-only). A new officer is an
        /// auditor unless told; an existing one keeps its role (a password reset never
        /// changes it) unless told.
        #[arg(long)]
        role: Option<String>,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
    /// Disable an officer: their sessions end at once and no login succeeds until `officer
    /// add` gives them a new password.
    Disable {
        name: String,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
}

#[derive(Subcommand)]
enum MdmCmd {
    /// Link an enrolled device to its MDM enrolment id (the UDID the MDM knows it by).
    Link {
        #[arg(long)]
        device: String,
        #[arg(long)]
        mdm_id: String,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
    /// Every MDM command with its delivery and the device's answer (JSON lines, newest first).
    Commands {
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Retire a device: its next check-in tells it to stop syncing (proven, so no relay can);
    /// its records stay at the office.
    Retire {
        device: String,
        #[arg(long, default_value = DEFAULT_DB)]
        db: String,
    },
}

#[derive(Subcommand)]
enum LogKeyCmd {
    /// Create a key named NAME (the log's origin): writes OUT (secret, mode 0600) and OUT.pub
    /// (the verifier key auditors pin), and prints the verifier key.
    New {
        /// The log's name, e.g. `ledger.bmj.example.gov.cn`.
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum UploadKeyCmd {
    /// Create a key: writes OUT (secret, mode 0600) and OUT.pub (base64 public key).
    New {
        #[arg(long)]
        out: PathBuf,
        /// intl (X25519) or sm (SM2: for a trust root of the sm suite).
        #[arg(long, default_value = "intl")]
        suite: baomi_core::suite::Suite,
    },
}

fn main() -> ExitCode {
    // Timestamped, levelled, never blocking a request (see `baomi_server::logging`).
    let _log = match baomi_server::logging::init() {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("baomi-server: {e}; logging to stderr unfiltered");
            baomi_core::logging::log_to_stderr();
            None
        }
    };
    // `serve --config FILE`: the file's options, under the command line's and the
    // environment's (`baomi_server::config`).
    let args = {
        use clap::CommandFactory as _;
        let cmd = Cli::command();
        match cmd
            .find_subcommand("serve")
            .ok_or_else(|| "no serve command".to_owned())
            .and_then(|serve| baomi_server::config::expand(std::env::args_os().collect(), serve))
        {
            Ok(a) => a,
            Err(e) => {
                eprintln!("baomi-server: {e}");
                return ExitCode::from(2);
            }
        }
    };
    match run(Cli::parse_from(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baomi-server: {e}");
            ExitCode::from(1)
        }
    }
}

fn open(db: &str, pool: usize, upload_key: Option<UploadKey>) -> Result<Server, String> {
    let db = Db::open(db, pool).map_err(|e| e.to_string())?;
    Server::new(db, upload_key, Timestamp::now).map_err(|e| e.message)
}

/// Records a state-changing CLI action in the audit log (and so the ledger) under the local
/// operator (`cli:USER@HOST`), as the console records an officer's.
fn audited(server: &Server, action: &str, detail: &str) -> Result<(), String> {
    server
        .audit(
            &baomi_server::console::officers::local_operator(),
            action,
            detail,
        )
        .map_err(|e| e.message)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Serve {
            config: _,
            listen,
            office_listen,
            db,
            upload_key,
            previous_upload_key,
            log_key,
            tls_cert,
            tls_key,
            threads,
            max_connections,
            header_timeout_secs,
            nanomdm,
            nanomdm_no_push,
            mdm_webhook,
            console_language,
            console_timezone,
            alert_webhook,
            alert_syslog,
            alert_smtp,
            alert_mail_from,
            alert_mail_to,
            provisioning_server_url,
            provisioning_apk_url,
            provisioning_apk_checksum,
            provisioning_component,
        } => {
            let channels = alert_channels(
                alert_webhook,
                alert_syslog,
                alert_smtp,
                alert_mail_from,
                alert_mail_to,
            )?;
            let mut key = upload_key.as_deref().map(UploadKey::load).transpose()?;
            if let Some(prev) = previous_upload_key.as_deref() {
                let prev = UploadKey::load(prev)?;
                key = key.map(|k| k.with_previous(prev));
            }
            if key.is_none() {
                log::warn!("no --upload-key: uploads will be refused with 503");
            }
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => Some(Tls {
                    cert_pem: read(&c)?,
                    key_pem: read(&k)?,
                }),
                _ => None,
            };
            let locale =
                baomi_server::console::i18n::Locale::new(&console_language, &console_timezone)?;
            let mut server = open(&db, threads, key)?
                .with_locale(locale)
                .with_channels(channels.clone())
                .with_provisioning(baomi_server::provisioning::Provisioning {
                    server_url: provisioning_server_url,
                    component: provisioning_component,
                    apk_url: provisioning_apk_url,
                    apk_checksum: provisioning_apk_checksum,
                });
            server.check_upload_key()?;
            baomi_server::notify::register_channels(&server, &channels).map_err(|e| e.message)?;
            if !channels.names().is_empty() {
                log::info!("alerts delivered to {:?}", channels);
            }
            match log_key.as_deref().map(LogKey::load).transpose()? {
                Some(k) => server = server.with_log_key(k),
                None => log::warn!(
                    "no --log-key: the evidence ledger records but serves no signed checkpoint"
                ),
            }
            if let Some(mdm) =
                mdm_config(nanomdm.as_deref(), !nanomdm_no_push, mdm_webhook.as_deref())?
            {
                server = server.with_mdm(mdm);
            }
            let server = Arc::new(server);
            let limits = Limits {
                max_connections,
                header_timeout: std::time::Duration::from_secs(header_timeout_secs.max(1)),
                ..Limits::default()
            };
            let scope = if office_listen.is_some() {
                Scope::Devices
            } else {
                Scope::All
            };
            let l = Listener::start_scoped(
                server.clone(),
                listen,
                tls.clone(),
                threads,
                limits,
                scope,
            )?;
            // The line tests and scripts wait for.
            println!(
                "listening on {}",
                l.addr()
                    .map_or_else(|| listen.to_string(), |a| a.to_string())
            );
            let office = match office_listen {
                Some(addr) => {
                    // Officers are few: a small cap of its own, never shared with devices.
                    let office_limits = Limits {
                        max_connections: 256,
                        max_in_flight: 8,
                        ..limits
                    };
                    let o =
                        Listener::start_scoped(server, addr, tls, 2, office_limits, Scope::Office)?;
                    println!(
                        "office listening on {}",
                        o.addr().map_or_else(|| addr.to_string(), |a| a.to_string())
                    );
                    Some(o)
                }
                None => None,
            };
            // Until SIGTERM (or Ctrl-C): then stop accepting and drain requests in flight.
            l.run_until_signal()?;
            if let Some(o) = office {
                o.stop();
            }
            Ok(())
        }
        Cmd::Token(TokenCmd::New {
            db,
            valid_hours,
            holder,
        }) => {
            let server = open(&db, 1, None)?;
            let token = admin::new_token_for(&server, valid_hours, holder.as_deref())
                .map_err(|e| e.message)?;
            audited(
                &server,
                "token_issued",
                &format!("holder {}", holder.unwrap_or_default()),
            )?;
            println!("{token}");
            Ok(())
        }
        Cmd::Token(TokenCmd::List { db }) => {
            let tokens = admin::tokens(&open(&db, 1, None)?).map_err(|e| e.message)?;
            lines(
                tokens
                    .iter()
                    .map(|t| serde_json::to_string(t).unwrap_or_default()),
            )
        }
        Cmd::Token(TokenCmd::Revoke { id, db }) => {
            let server = open(&db, 1, None)?;
            admin::revoke_token(&server, &id).map_err(|e| e.message)?;
            audited(&server, "token_revoked", &id)?;
            println!("token {id} revoked");
            Ok(())
        }
        Cmd::Bundle(PublishCmd::Publish { file, db }) => {
            let server = open(&db, 1, None)?;
            let s = server
                .publish_bundle(&read(&file)?)
                .map_err(|e| e.message)?;
            audited(
                &server,
                "bundle_published",
                &format!("{}@{} {}", s.id, s.version, s.digest),
            )?;
            println!("published {}@{} ({})", s.id, s.version, s.digest);
            Ok(())
        }
        Cmd::Trust(PublishCmd::Publish { file, db }) => {
            let server = open(&db, 1, None)?;
            let v = server
                .publish_trust_root(&read(&file)?)
                .map_err(|e| e.message)?;
            audited(&server, "trust_root_published", &format!("v{v}"))?;
            println!("published trust root v{v}");
            Ok(())
        }
        Cmd::Custody(PostCmd::Post { file, db }) => {
            let server = open(&db, 1, None)?;
            let c = server
                .accept_custody(&read(&file)?)
                .map_err(|e| e.message)?;
            audited(&server, "custody_posted", &format!("feed position {c}"))?;
            println!("custody record at feed position {c}");
            Ok(())
        }
        Cmd::Assignment(PostCmd::Post { file, db }) => {
            let server = open(&db, 1, None)?;
            let (c, doc) = server
                .accept_assignment(&read(&file)?)
                .map_err(|e| e.message)?;
            let detail = assignment_detail(&doc, c);
            audited(&server, "assignment_posted", &detail)?;
            println!("assignment record at feed position {c}: {detail}");
            Ok(())
        }
        Cmd::LogKey(LogKeyCmd::New { name, out }) => {
            if out.exists() {
                return Err(format!("{} exists; not overwriting a key", out.display()));
            }
            let (k, secret) = LogKey::generate(&name)?;
            write_secret(&out, format!("{}\n", secret.as_str()).as_bytes())?;
            let pub_path = out.with_extension("pub");
            std::fs::write(&pub_path, format!("{}\n", k.verifier_key()))
                .map_err(|e| format!("{}: {e}", pub_path.display()))?;
            println!("{}", k.verifier_key());
            Ok(())
        }
        Cmd::UploadKey(UploadKeyCmd::New { out, suite }) => {
            if out.exists() {
                return Err(format!("{} exists; not overwriting a key", out.display()));
            }
            let k = UploadKey::generate_for(suite)?;
            write_secret(&out, k.to_file().as_bytes())?;
            let pub_path = out.with_extension("pub");
            std::fs::write(&pub_path, format!("{}\n", k.public_base64()))
                .map_err(|e| format!("{}: {e}", pub_path.display()))?;
            println!(
                "wrote {} ({}, 0600) and {}: name it in a trust root of that suite (baomi trust new --suite {} --upload-key {})",
                out.display(),
                match suite {
                    baomi_core::suite::Suite::Intl => "X25519",
                    baomi_core::suite::Suite::Sm => "SM2",
                },
                pub_path.display(),
                suite,
                pub_path.display()
            );
            Ok(())
        }
        Cmd::Devices { db } => {
            let server = open(&db, 1, None)?;
            let devices = admin::devices(&server).map_err(|e| e.message)?;
            // Every phone follows the office's trust root: its suite on each line.
            let suite = server
                .trust_root()
                .map_err(|e| e.message)?
                .map(|r| r.suite().as_str());
            lines(devices.iter().map(|d| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                if let (Some(o), Some(suite)) = (v.as_object_mut(), suite) {
                    o.insert("suite".into(), suite.into());
                }
                v.to_string()
            }))
        }
        Cmd::Officer(OfficerCmd::Add { name, role, db }) => {
            use baomi_server::console::officers::Role;
            let server = open(&db, 1, None)?;
            let role = match role {
                Some(r) => Role::parse(&r).ok_or("--role is admin or auditor")?,
                None => server
                    .officer_role(&name)
                    .map_err(|e| e.message)?
                    .unwrap_or(Role::Auditor),
            };
            let password = match std::env::var("BAOMI_OFFICER_PASSWORD") {
                Ok(p) if !p.is_empty() => p,
                _ if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                    // On a terminal: asked for, twice, without echo.
                    let first = rpassword::prompt_password(format!("Password for {name}: "))
                        .map_err(|e| format!("reading the password: {e}"))?;
                    let again = rpassword::prompt_password("Again: ")
                        .map_err(|e| format!("reading the password: {e}"))?;
                    if first != again {
                        return Err("the two passwords differ; nothing changed".into());
                    }
                    first
                }
                _ => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| format!("reading the password: {e}"))?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            server
                .officer_add(&name, role, &password)
                .map_err(|e| e.message)?;
            println!("officer {name} ready: {}", role.as_str());
            Ok(())
        }
        Cmd::Officer(OfficerCmd::Disable { name, db }) => {
            // The local operator acts; the audit log names the host's user.
            let by = baomi_server::console::officers::local_operator();
            open(&db, 1, None)?
                .officer_disable(&name, &by)
                .map_err(|e| e.message)?;
            println!("officer {name} disabled: sessions ended");
            Ok(())
        }
        Cmd::Mdm(MdmCmd::Link { device, mdm_id, db }) => {
            open(&db, 1, None)?
                .mdm_link(&device, &mdm_id)
                .map_err(|e| e.message)?;
            println!("linked {device} to MDM enrolment {mdm_id}");
            Ok(())
        }
        Cmd::Mdm(MdmCmd::Commands { device, db }) => {
            for c in open(&db, 1, None)?
                .mdm_commands(device.as_deref())
                .map_err(|e| e.message)?
            {
                println!("{}", serde_json::to_string(&c).unwrap_or_default());
            }
            Ok(())
        }
        Cmd::Seed {
            db,
            devices,
            violations,
            days,
            violations_from,
        } => {
            let server = open(&db, 1, None)?;
            let held = admin::devices_count(&server).map_err(|e| e.message)?;
            if violations_from == 0 && held > 0 {
                return Err(format!(
                    "{db} holds {held} devices: seed only an empty database (or continue one with --violations-from)"
                ));
            }
            if violations_from > 0 && u64::try_from(held).ok() != Some(devices) {
                return Err(format!(
                    "{db} holds {held} devices, not the {devices} of the seed to continue"
                ));
            }
            let plan = baomi_server::seed::Plan {
                devices,
                violations,
                days: days.max(1),
                now: Timestamp::now().0,
                violations_from,
            };
            let mut last = std::time::Instant::now();
            baomi_server::seed::seed(&server, &plan, &mut |what, n| {
                if last.elapsed().as_secs() >= 5 {
                    last = std::time::Instant::now();
                    eprintln!("{what}: {n}");
                }
            })
            .map_err(|e| e.message)?;
            println!("seeded {devices} devices and {violations} violations over {days} days");
            Ok(())
        }
        Cmd::Purge {
            older_than_days,
            db,
        } => {
            let server = open(&db, 1, None)?;
            let before = Timestamp::now().0 - i64::from(older_than_days) * 86_400_000;
            let who = baomi_server::console::officers::local_operator();
            let n = server.purge_before(before, &who).map_err(|e| e.message)?;
            server
                .audit(
                    &who,
                    "retention_purge",
                    &format!("{n} violations received before {before}"),
                )
                .map_err(|e| e.message)?;
            println!("purged {n} violations received more than {older_than_days} days ago");
            Ok(())
        }
        Cmd::Device(DeviceCmd::Retire { device, db }) => {
            let server = open(&db, 1, None)?;
            admin::retire_device(&server, &device).map_err(|e| e.message)?;
            audited(&server, "device_retired", &device)?;
            println!("device {device} retired: it stops syncing at its next check-in");
            Ok(())
        }
        Cmd::Backup { db, out } => {
            baomi_server::backup::backup(&db, &out)?;
            audited(&open(&db, 1, None)?, "backup", &out.display().to_string())?;
            println!("backed up to {}", out.display());
            Ok(())
        }
        Cmd::Restore { from, db } => {
            baomi_server::backup::restore(&from, &db)?;
            // Migrations run on open: a backup from an older server comes up to date.
            let server = open(&db, 1, None)?;
            audited(&server, "restore", &from.display().to_string())?;
            println!("restored from {}", from.display());
            Ok(())
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "baomi-server",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Cmd::Man => {
            use clap::CommandFactory as _;
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| format!("writing the manual page: {e}"))
        }
        Cmd::Violations { db, device } => {
            let found = admin::violations(&open(&db, 1, None)?, device.as_deref())
                .map_err(|e| e.message)?;
            lines(found.iter().map(ToString::to_string))
        }
    }
}

/// Writes listing lines to standard output; a reader that went away (`| head -1`) ends the
/// listing quietly instead of a panic on the broken pipe.
fn lines(items: impl Iterator<Item = String>) -> Result<(), String> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for line in items {
        match writeln!(out, "{line}") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(format!("writing the listing: {e}")),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("writing the listing: {e}"))
        }
        _ => Ok(()),
    }
}

/// The MDM connector from the flags; secrets come from the environment, never the command line.
fn mdm_config(
    nanomdm: Option<&str>,
    push: bool,
    webhook: Option<&str>,
) -> Result<Option<baomi_server::mdm::MdmConfig>, String> {
    use baomi_server::mdm::{MdmConfig, connector};
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(url) = nanomdm {
        let key = env("BAOMI_NANOMDM_API_KEY")
            .ok_or("--nanomdm needs BAOMI_NANOMDM_API_KEY (NanoMDM's -api key)")?;
        return Ok(Some(MdmConfig {
            connector: Box::new(connector::NanoMdm::new(url, &key, push)),
            event_key: env("BAOMI_NANOMDM_WEBHOOK_KEY").map(String::into_bytes),
        }));
    }
    if let Some(url) = webhook {
        let key =
            env("BAOMI_MDM_WEBHOOK_KEY").ok_or("--mdm-webhook needs BAOMI_MDM_WEBHOOK_KEY")?;
        return Ok(Some(MdmConfig {
            connector: Box::new(connector::SignedWebhook::new(url, key.as_bytes())),
            event_key: None,
        }));
    }
    Ok(None)
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The alert channels of the serve options (the webhook's key from the environment).
fn alert_channels(
    webhook: Option<String>,
    syslog: Option<String>,
    smtp: Option<String>,
    from: String,
    to: Option<String>,
) -> Result<baomi_server::notify::Channels, String> {
    let webhook = match webhook {
        Some(url) => {
            let key = std::env::var("BAOMI_ALERT_WEBHOOK_KEY").map_err(|_| {
                "--alert-webhook needs its signing key in BAOMI_ALERT_WEBHOOK_KEY".to_owned()
            })?;
            if key.len() < 16 {
                return Err("BAOMI_ALERT_WEBHOOK_KEY: at least 16 characters".into());
            }
            Some((url, key.into_bytes()))
        }
        None => None,
    };
    let smtp = match smtp {
        Some(relay) => {
            let (host, port) = relay
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| format!("--alert-smtp {relay}: HOST:PORT"))?;
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback());
            Some(baomi_server::notify::Smtp {
                starttls: !loopback,
                host,
                port,
                from,
                to: to
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            })
        }
        None => None,
    };
    Ok(baomi_server::notify::Channels {
        webhook,
        syslog,
        smtp,
    })
}

/// How an assignment reads in the audit log and on the terminal.
fn assignment_detail(
    doc: &baomi_core::sync::assignment::AssignmentRecordDoc,
    cursor: u64,
) -> String {
    format!(
        "{} -> {} ({}) from {}{} [{}] feed position {cursor}",
        doc.device,
        doc.holder,
        doc.clearance.as_str(),
        doc.valid_from.to_rfc3339(),
        doc.valid_until
            .map(|u| format!(" until {}", u.to_rfc3339()))
            .unwrap_or_default(),
        doc.record_id
    )
}
