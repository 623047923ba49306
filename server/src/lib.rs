//! Baomi reference compliance server: enrolment, the four sync stages, the document
//! registry's custody feed, and the officer's view of the fleet (docs/sync-protocol.md).
//!
//! - [`db`] — SQLite or PostgreSQL behind one dialect.
//! - [`schema`] — the tables.
//! - [`api`] — each endpoint as a function of (state, request) -> response, no HTTP in it:
//!   the router and errors, authentication, one module per sync stage, office operations.
//! - [`http`] — the listener: hyper on tokio, limits on what a client controls, TLS through
//!   tokio-rustls when a certificate is given, graceful stop.
//! - [`console`] — the security officer's console (server-rendered pages) and the officer API
//!   under `/v1/office/`: argon2id logins, sessions, roles, CSRF, the audit log.
//! - [`admin`] — what the CLI does for the security office (tokens, publishing, listings).
//! - [`fleet`] — what the server knows of a device's posture (the core engine over the policy,
//!   the holder's assignment and the registry's custody feed).
//! - [`mdm`] — MDM-applied posture: profiles from postures, the command ledger, connectors
//!   (NanoMDM, signed webhook), the MDM's events.
#![forbid(unsafe_code)]

pub mod admin;
pub mod alerts;
pub mod api;
pub mod backup;
pub mod config;
pub mod console;
pub mod db;
pub mod fleet;
pub mod http;
pub mod ledger;
pub mod logging;
pub mod mdm;
pub mod metrics;
pub mod notify;
pub mod provisioning;
pub mod schema;
pub mod seed;
pub mod upload_key;

pub use api::{ApiError, Server};
