//! Replays every scenario through the core engine and checks each verdict and posture.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::sync::Arc;

use baomi_core::compile::CompiledPolicy;
use baomi_core::engine::Engine;
use baomi_core::event::parse_jsonl;
use baomi_scenarios::{Observed, all, baseline, check};

#[test]
fn every_scenario_matches_its_expectations_in_the_core() {
    let policy = baseline().unwrap();
    let scenarios = all().unwrap();
    assert!(scenarios.len() >= 6);
    for s in &scenarios {
        let compiled = Arc::new(CompiledPolicy::compile(policy.clone(), s.platform).unwrap());
        let events = parse_jsonl(s.events_jsonl).unwrap();
        let mut engine = Engine::new(compiled, s.clearance, events[0].at);
        let observed: Vec<Observed> = events
            .iter()
            .map(|e| {
                let d = engine.handle(e);
                Observed {
                    verdict: d.verdict.as_str().to_owned(),
                    violation: d.violation,
                    rules: d.rules.iter().map(|r| r.to_string()).collect(),
                    posture: (*d.posture).clone(),
                }
            })
            .collect();
        if let Err(e) = check(s, &policy, &observed) {
            panic!("{e}");
        }
    }
}

#[test]
fn the_four_published_cases_each_record_a_violation_before_the_photo_leaves() {
    // In every case the photo is taken and then shared: both must be denied.
    for s in all().unwrap().iter().filter(|s| s.name.starts_with("case")) {
        let events = parse_jsonl(s.events_jsonl).unwrap();
        let photo = events
            .iter()
            .position(|e| e.kind.type_name() == "photo_captured")
            .unwrap();
        let share = events
            .iter()
            .position(|e| e.kind.type_name() == "share")
            .unwrap();
        assert_eq!(s.expect[photo].verdict, "deny", "{}", s.name);
        assert_eq!(s.expect[share].verdict, "deny", "{}", s.name);
    }
}
