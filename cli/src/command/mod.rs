//! One module per subcommand.

pub mod agent;
pub mod assignment;
pub mod bundle;
pub mod custody;
pub mod demo;
pub mod demo_sync;
pub mod keys;
pub mod ledger;
pub mod log;
pub mod policy;
pub mod simulate;
pub mod trust;
