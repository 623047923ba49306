//! Baomi core: decides what a government work phone may do near classified documents.
//!
//! The platform reports [`event::Event`]s; the [`engine::Engine`] keeps the device
//! [`context::Context`] (zones, custody, installed apps) and returns a [`decision::Decision`]
//! carrying the verdict and the full desired [`posture::Posture`]. The platform applies posture
//! diffs; the core never assumes it did.
//!
//! Layout (one concern per module):
//! - [`level`]: clearance and classification ladders.
//! - [`time`]: timestamps (RFC 3339 at the edges, milliseconds inside).
//! - [`policy`]: the policy document, its parsing and validation with precise errors.
//! - [`compile`]: the policy turned into lookup structures for one platform.
//! - [`event`]: events from the platform and their JSON-lines form.
//! - [`context`]: the facts the core keeps between events.
//! - [`eval`]: pure functions: context -> active rules and posture; event -> decision.
//! - [`engine`]: policy + context + cached activation, the stateful front.
//! - [`bundle`]: signed policy bundles, trust roots and key rotation.
//! - [`store`]: the encrypted, hash-chained violation log and sealed agent state.
//! - [`sync`]: the compliance sync's wire types, signatures, sealing and proofs (shared with
//!   the server).
//! - [`rules`]: the agent's own rule ids, in one table.
//! - [`agent`]: the device-side facade (engine + store + the sync stages in
//!   [`agent::sync`]): what the FFI exposes and the CLI drives.
#![forbid(unsafe_code)]

pub mod agent;
pub mod bitset;
pub mod bundle;
pub mod compile;
pub mod context;
pub mod decision;
pub mod engine;
pub mod eval;
pub mod event;
pub mod level;
pub mod logging;
pub mod policy;
pub mod posture;
pub mod rules;
pub mod store;
pub mod suite;
pub mod sync;
pub mod time;

pub use compile::{CompiledPolicy, Platform};
pub use decision::{Decision, Verdict};
pub use engine::Engine;
pub use event::{Event, EventKind};
pub use level::{Classification, Clearance};
pub use policy::Policy;
pub use posture::Posture;
pub use time::Timestamp;
