//! The scenario corpus in `tests/scenarios/`: each scenario is an event stream
//! (`NAME.events.jsonl`, the same format `baomi simulate` reads) and one expectation per event
//! (`NAME.expect.jsonl`). Expectations name app *sets* (`"blocked": ["messengers"]`), expanded
//! against the baseline policy for the scenario's platform, so they read like the policy does.
//!
//! The files are embedded, so the `baomi demo` binary carries them and needs no checkout.
#![forbid(unsafe_code)]

pub mod generated;

use std::str::FromStr;

use baomi_core::compile::Platform;
use baomi_core::level::Clearance;
use baomi_core::policy::Policy;
use baomi_core::posture::Posture;
use serde::Deserialize;

/// The baseline policy the scenarios are written against.
pub const BASELINE_POLICY: &str = include_str!("../../policies/baseline.json");

macro_rules! corpus {
    ($($name:literal),* $(,)?) => {
        &[$(($name,
            include_str!(concat!("../scenarios/", $name, ".events.jsonl")),
            include_str!(concat!("../scenarios/", $name, ".expect.jsonl")))),*]
    };
}

const FILES: &[(&str, &str, &str)] = corpus![
    "case1-urgent-relay",
    "case2-report-to-leader",
    "case3-intern-telegrams",
    "case4-misclick",
    "control-uncleared-wechat",
    "control-camera-restored",
    "control-ios-ids",
];

const INDEX: &str = include_str!("../scenarios/index.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexEntry {
    name: String,
    title: String,
    clearance: String,
    platform: String,
}

/// One scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// File stem.
    pub name: String,
    /// One line for the demo.
    pub title: String,
    /// Holder's clearance.
    pub clearance: Clearance,
    /// Platform the app ids are for.
    pub platform: Platform,
    /// The event stream, JSON lines.
    pub events_jsonl: &'static str,
    /// One expectation per event.
    pub expect: Vec<Expect>,
}

/// What one decision must be.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `allow`, `deny` or `warn`.
    pub verdict: String,
    /// Whether a violation is recorded.
    pub violation: bool,
    /// Matched rule ids, in policy order.
    pub rules: Vec<String>,
    /// Posture: camera.
    pub camera_disabled: bool,
    /// Posture: screen capture.
    pub screen_capture_disabled: bool,
    /// Posture: blocked packages, as app set names.
    pub blocked: Vec<String>,
}

/// A decision reduced to what expectations check, from any front end (core, CLI, FFI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Verdict name.
    pub verdict: String,
    /// Violation flag.
    pub violation: bool,
    /// Rule ids.
    pub rules: Vec<String>,
    /// Full posture.
    pub posture: Posture,
}

/// A corpus file that does not parse (a bug in the corpus, reported with the file name).
#[derive(Debug)]
pub struct CorpusError(pub String);

impl std::fmt::Display for CorpusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every scenario, in index order.
pub fn all() -> Result<Vec<Scenario>, CorpusError> {
    let index: Vec<IndexEntry> = serde_json::from_str(INDEX)
        .map_err(|e| CorpusError(format!("scenarios/index.json: {e}")))?;
    index
        .into_iter()
        .map(|entry| {
            let (_, events, expect) =
                FILES
                    .iter()
                    .find(|(n, _, _)| *n == entry.name)
                    .ok_or_else(|| {
                        CorpusError(format!(
                            "scenario `{}` is in index.json but not embedded",
                            entry.name
                        ))
                    })?;
            let expect = expect
                .lines()
                .filter(|l| !l.trim().is_empty())
                .enumerate()
                .map(|(i, l)| {
                    serde_json::from_str(l).map_err(|e| {
                        CorpusError(format!("{}.expect.jsonl line {}: {e}", entry.name, i + 1))
                    })
                })
                .collect::<Result<Vec<Expect>, _>>()?;
            Ok(Scenario {
                clearance: Clearance::from_str(&entry.clearance)
                    .map_err(|e| CorpusError(e.to_string()))?,
                platform: Platform::from_str(&entry.platform).map_err(CorpusError)?,
                name: entry.name,
                title: entry.title,
                events_jsonl: events,
                expect,
            })
        })
        .collect()
}

/// The baseline policy, parsed.
pub fn baseline() -> Result<Policy, CorpusError> {
    Policy::from_json(BASELINE_POLICY.as_bytes())
        .map_err(|e| CorpusError(format!("baseline.json: {e}")))
}

/// Checks observed decisions against a scenario, naming the first difference.
pub fn check(s: &Scenario, policy: &Policy, observed: &[Observed]) -> Result<(), String> {
    if observed.len() != s.expect.len() {
        return Err(format!(
            "{}: {} decisions for {} expectations",
            s.name,
            observed.len(),
            s.expect.len()
        ));
    }
    for (i, (o, e)) in observed.iter().zip(&s.expect).enumerate() {
        let mut blocked: Vec<String> = e
            .blocked
            .iter()
            .flat_map(|set| {
                policy
                    .app_sets
                    .get(set)
                    .map_or_else(Vec::new, |a| match s.platform {
                        Platform::Android => a.android.clone(),
                        Platform::Ios => a.ios.clone(),
                    })
            })
            .collect();
        blocked.sort();
        blocked.dedup();
        let want = Observed {
            verdict: e.verdict.clone(),
            violation: e.violation,
            rules: e.rules.clone(),
            posture: Posture {
                camera_disabled: e.camera_disabled,
                screen_capture_disabled: e.screen_capture_disabled,
                blocked_packages: blocked.into_iter().map(Into::into).collect(),
            },
        };
        if *o != want {
            return Err(format!(
                "{} event {}:\n  expected {want:?}\n  observed {o:?}",
                s.name,
                i + 1
            ));
        }
    }
    Ok(())
}
