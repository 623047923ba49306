//! The foreign surface of the Baomi core, one crate for every platform:
//!
//! - [`agent`]: the uniffi object (`BaomiAgent`) Kotlin and Swift drive: open the agent on a
//!   directory with the platform's key store, install bundles, feed events, read the posture,
//!   sync, list/verify/export violations.
//! - [`platform`]: what only the platform has, as foreign traits (`KeyStore`, `HttpClient`,
//!   `Clock`), adapted to the core's own traits.
//! - [`types`]: records and the error enum that cross the boundary.
//! - [`jni_fast_path`]: hand-written JNI entry points for the hot path (BLE scans, camera
//!   callbacks): one native call per event, primitives in, a packed `long` out.
//!
//! No policy logic lives here or on the platform side: everything is a call into
//! `baomi_core::agent::Agent`.

pub mod agent;
pub mod jni_fast_path;
pub mod platform;
pub mod types;

pub use agent::BaomiAgent;
pub use types::BaomiError;

uniffi::setup_scaffolding!();
