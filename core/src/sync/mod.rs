//! Compliance sync, device side: check-in, upload, download, finish (docs/sync-protocol.md).
//!
//! The core owns the protocol and every decision in it; the platform only moves bytes through
//! a [`Transport`] (OkHttp on Android, URLSession on iOS, `ureq` in the host CLI) and calls
//! [`client::sync_now`] when its scheduler ([`schedule::SyncSchedule::next_due`]) says so.

pub mod client;
pub mod custody;
#[cfg(feature = "host-http")]
pub mod http;
pub mod identity;
pub mod protocol;
pub mod schedule;
pub mod seal;
pub mod transport;

pub use client::{SyncError, SyncReport, enroll, sync_now};
pub use transport::{HttpRequest, HttpResponse, Transport, TransportError};
