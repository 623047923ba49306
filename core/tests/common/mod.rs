//! What more than one core test file builds: trust roots signed as an office would, the
//! baseline assigned to a device, an agent over a directory.

#![allow(dead_code, reason = "each test file uses some of these")]

use std::path::Path;

use baomi_core::agent::{Agent, AgentError};
use baomi_core::bundle::SigningKey;
use baomi_core::bundle::TrustRoot;
use baomi_core::bundle::trust::{KeyEntry, TrustRootDoc};
use baomi_core::compile::Platform;
use baomi_core::level::Clearance;
use baomi_core::policy::Policy;
use baomi_core::policy::model::HolderAssignment;
use baomi_core::store::{HostFileKeyProvider, StoreOptions};
use baomi_core::suite::Suite;
use baomi_core::time::Timestamp;

const BASELINE: &str = include_str!("../../../policies/baseline.json");

/// The suite the signature tests run under: `BAOMI_TEST_SUITE` (`intl` unless set; `.ci/test`
/// runs them again with `sm`, issue 24: one test, both suites, nothing copied).
pub fn suite() -> Suite {
    std::env::var("BAOMI_TEST_SUITE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

/// Store options of the suite under test (the store seals and MACs under it).
pub fn store_options() -> StoreOptions {
    StoreOptions {
        suite: suite(),
        ..StoreOptions::default()
    }
}

/// A WeChat launch at `at`: a violation for a holder the baseline bars from messengers.
pub fn messenger_launch(at: Timestamp) -> baomi_core::event::Event {
    baomi_core::event::Event::from_json_line(
        1,
        &format!(
            r#"{{"at":"{}","type":"app_launched","package":"com.tencent.mm"}}"#,
            at.to_rfc3339()
        ),
    )
    .expect("an event")
}

/// A fresh signing key of the suite under test.
pub fn key() -> SigningKey {
    SigningKey::generate_for(suite()).expect("a signing key")
}

/// A trust root naming `keys`, any `threshold` of which sign bundles, issued at `issued_at`;
/// no upload key, no registry, no expiry (set them on the result where a test needs them). Its
/// suite is its keys'.
pub fn root_doc(
    version: u64,
    keys: &[&SigningKey],
    threshold: u32,
    issued_at: Timestamp,
) -> TrustRootDoc {
    TrustRootDoc {
        suite: keys.first().map_or(Suite::Intl, |k| k.suite()),
        sm2_id: None,
        personnel: None,
        upload_key: None,
        expires_at: None,
        version,
        issued_at,
        keys: keys.iter().map(|k| KeyEntry::of(k.public())).collect(),
        threshold,
        registry: None,
        policy: None,
    }
}

/// `doc` signed by `signers`: the envelope an agent is provisioned with.
pub fn signed_root(doc: &TrustRootDoc, signers: &[&SigningKey]) -> Vec<u8> {
    TrustRoot::sign(doc, signers).to_json().into_bytes()
}

/// The baseline policy with `device` issued to holder `hong` of `clearance`.
pub fn assigned(device: &str, clearance: Clearance) -> Policy {
    let mut p = Policy::from_json(BASELINE.as_bytes()).expect("the baseline parses");
    p.holders = vec![HolderAssignment {
        holder: "hong".into(),
        clearance,
        devices: vec![device.into()],
    }];
    p
}

/// An Android agent over the store in `dir` (its key in a host file beside it), opened at `at`.
pub fn agent_in(dir: &Path, opts: StoreOptions, at: Timestamp) -> Result<Agent, AgentError> {
    let kek = HostFileKeyProvider::open_or_create(&dir.join("kek")).expect("key file");
    Agent::open(&dir.join("store"), &kek, opts, Platform::Android, at)
}
