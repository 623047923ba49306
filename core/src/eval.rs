//! Pure evaluation, in two steps:
//! 1. [`activate`]: (policy, context, time) -> which rules apply and the posture they imply.
//!    Runs only when something rules read has changed, or the previous result has expired.
//! 2. [`decide`]: (policy, context, activation, event) -> decision. Hash lookups and bit tests
//!    only; it allocates nothing unless a rule matches.

use std::borrow::Cow;
use std::sync::Arc;

use crate::bitset::BitSet;
use crate::compile::{CompiledPolicy, Cond, Gate, TAMPER_RULE};
use crate::context::Context;
use crate::decision::{Decision, Verdict};
use crate::event::{Event, EventKind};
use crate::level::{Classification, Clearance};
use crate::policy::mime_matches;
use crate::policy::model::{Mode, Severity};
use crate::posture::Posture;
use crate::time::Timestamp;

/// The rules that apply at one moment, and the posture they imply.
#[derive(Debug, Clone)]
pub struct Activation {
    pub(crate) active: BitSet,
    camera: bool,
    screen: bool,
    blocked: BitSet,
    pub(crate) posture: Arc<Posture>,
    pub(crate) fail_closed: bool,
    /// The activation must be recomputed at or after this time even without an event.
    pub(crate) valid_until: Option<Timestamp>,
    /// The time it was derived at: a later call at an earlier time derives it again.
    pub(crate) at: Timestamp,
}

impl Activation {
    /// The posture.
    pub fn posture(&self) -> &Arc<Posture> {
        &self.posture
    }

    /// Whether the rule at `index` applies.
    pub fn is_active(&self, index: usize) -> bool {
        self.active.contains(index)
    }

    /// When this activation stops being valid without any event.
    pub fn valid_until(&self) -> Option<Timestamp> {
        self.valid_until
    }
}

struct Facts<'a> {
    clearance: Clearance,
    custody_max: Option<Classification>,
    zones: &'a BitSet,
    now: Timestamp,
    fail_closed: bool,
}

fn holds(c: &Cond, f: &Facts<'_>) -> bool {
    match c {
        Cond::True => true,
        Cond::ClearanceAtLeast(l) => f.clearance >= *l,
        Cond::CustodyAtLeast(l) => f.custody_max.is_some_and(|m| m >= *l),
        Cond::InZones(zs) => zs.iter().any(|z| f.zones.contains(*z as usize)),
        Cond::InAnyZone(inside) => f.zones.is_empty() != *inside,
        Cond::Window {
            days,
            from,
            to,
            offset,
        } => {
            let m = f.now.minute_of_week(*offset);
            let (day, minute) = (m / 1440, m % 1440);
            let open_on = |d: u32| days & (1 << d) != 0;
            if from < to {
                open_on(day) && (*from..*to).contains(&minute)
            } else {
                // Runs past midnight: the evening part belongs to `day`, the morning part to
                // the day before.
                (open_on(day) && minute >= *from) || (open_on((day + 6) % 7) && minute < *to)
            }
        }
        Cond::All(cs) => cs.iter().all(|c| holds(c, f)),
        Cond::Any(cs) => cs.iter().any(|c| holds(c, f)),
        Cond::Not(c) => !holds(c, f),
        Cond::FailClosed => f.fail_closed,
    }
}

impl Gate {
    fn holds(&self, f: &Facts<'_>) -> bool {
        self.clearance.is_none_or(|l| f.clearance >= l)
            && self
                .custody
                .is_none_or(|l| f.custody_max.is_some_and(|m| m >= l))
            && self
                .any_zone
                .is_none_or(|inside| f.zones.is_empty() != inside)
            && (self.nzones == 0
                || self.zones[..usize::from(self.nzones).min(2)]
                    .iter()
                    .any(|z| f.zones.contains(*z as usize)))
    }
}

/// Derives which rules apply. `previous` lets an unchanged posture keep its allocation, so
/// callers can compare postures by pointer.
pub fn activate(
    policy: &CompiledPolicy,
    ctx: &Context,
    now: Timestamp,
    fail_closed: bool,
    previous: Option<&Activation>,
) -> Activation {
    let (zones, mut valid_until) = ctx.zones_present(now);
    if policy.time_dependent {
        let next_minute = Timestamp((now.0.div_euclid(60_000) + 1) * 60_000);
        valid_until = Some(valid_until.map_or(next_minute, |v| v.min(next_minute)));
    }
    let facts = Facts {
        clearance: ctx.clearance,
        custody_max: ctx.custody_max(),
        zones: &zones,
        now,
        fail_closed,
    };
    let mut active = BitSet::with_len(policy.rules.len());
    let (mut camera, mut screen) = (false, false);
    let mut blocked = BitSet::with_len(policy.packages.len());
    for (i, r) in policy.rules.iter().enumerate() {
        let on = match policy.gates.get(i) {
            Some(Some(g)) => g.holds(&facts),
            _ => holds(&r.cond, &facts),
        };
        if on {
            active.insert(i);
            // Monitor rules record; they never change the device.
            if r.mode == Mode::Enforce {
                camera |= r.camera;
                screen |= r.screen;
                blocked.union_with(&r.blocks);
            }
        }
    }
    let posture = match previous {
        Some(p) if p.camera == camera && p.screen == screen && p.blocked == blocked => {
            p.posture.clone()
        }
        _ => Arc::new(Posture {
            camera_disabled: camera,
            screen_capture_disabled: screen,
            blocked_packages: blocked
                .iter()
                .map(|i| policy.package_name(i).clone())
                .collect(),
        }),
    };
    Activation {
        active,
        camera,
        screen,
        blocked,
        posture,
        fail_closed,
        valid_until,
        at: now,
    }
}

/// Rules that matched an event, at most a handful; collected without a heap allocation in the
/// common case of none.
struct Matches<'p> {
    policy: &'p CompiledPolicy,
    rules: Vec<u32>,
}

impl<'p> Matches<'p> {
    fn new(policy: &'p CompiledPolicy) -> Self {
        Self {
            policy,
            rules: Vec::new(),
        }
    }

    fn add(&mut self, rule: u32) {
        if !self.rules.contains(&rule) {
            self.rules.push(rule);
        }
    }

    fn add_active(&mut self, act: &Activation, rules: &[u32]) {
        for &r in rules {
            if act.active.contains(r as usize) {
                self.add(r);
            }
        }
    }

    fn finish(
        mut self,
        event: &Event,
        act: &Activation,
        reason: impl FnOnce(&mut String),
    ) -> Decision {
        self.rules.sort_unstable();
        let compiled = |r: &u32| self.policy.rules.get(*r as usize);
        let verdict = if self.rules.is_empty() {
            Verdict::Allow
        } else if self
            .rules
            .iter()
            .filter_map(compiled)
            .any(|r| r.mode == Mode::Enforce)
        {
            Verdict::Deny
        } else {
            Verdict::Warn
        };
        let severity = self
            .rules
            .iter()
            .filter_map(compiled)
            .map(|r| r.severity)
            .max();
        let rules = self
            .rules
            .iter()
            .filter_map(compiled)
            .map(|r| r.id.clone())
            .collect();
        Decision {
            at: event.at,
            event_type: event.kind.type_name(),
            verdict,
            violation: verdict != Verdict::Allow,
            rules,
            severity,
            reason: if verdict == Verdict::Allow {
                Cow::Borrowed("allowed")
            } else {
                // One allocation: the caller writes what happened, then the rule ids follow.
                let mut text = String::with_capacity(160);
                reason(&mut text);
                self.write_rule_list(&mut text);
                Cow::Owned(text)
            },
            posture: act.posture.clone(),
            posture_changed: false,
        }
    }
}

impl Matches<'_> {
    /// ` (rule `a`)` or ` (rules `a`, `b`)`, in rule order (`rules` is sorted by `finish`).
    fn write_rule_list(&self, out: &mut String) {
        out.push_str(if self.rules.len() == 1 {
            " (rule "
        } else {
            " (rules "
        });
        let ids = self
            .rules
            .iter()
            .filter_map(|r| self.policy.rules.get(*r as usize));
        for (i, r) in ids.enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push('`');
            out.push_str(&r.id);
            out.push('`');
        }
        out.push(')');
    }
}

/// Decides one event against an activation computed for the context after the event.
pub fn decide(policy: &CompiledPolicy, ctx: &Context, act: &Activation, event: &Event) -> Decision {
    let mut m = Matches::new(policy);
    let block_rules = |pkg: &str| {
        policy
            .package(pkg)
            .and_then(|i| policy.block_rules.get(i))
            .map_or(&[][..], Vec::as_slice)
    };
    match &event.kind {
        EventKind::AppInstalled { package } | EventKind::AppLaunched { package } => {
            m.add_active(act, block_rules(package));
            let verb = if matches!(event.kind, EventKind::AppInstalled { .. }) {
                "install of"
            } else {
                "launch of"
            };
            m.finish(event, act, |out| {
                out.push_str(verb);
                out.push_str(" banned app `");
                out.push_str(package);
                out.push('`');
            })
        }
        EventKind::AppInventory { .. } => {
            let mut offending: Vec<&str> = Vec::new();
            for pkg in &ctx.installed {
                let rules = block_rules(pkg);
                if rules.iter().any(|r| act.active.contains(*r as usize)) {
                    offending.push(pkg);
                    m.add_active(act, rules);
                }
            }
            offending.sort_unstable();
            m.finish(event, act, |out| {
                out.push_str("banned apps installed: ");
                out.push_str(&offending.join(", "));
            })
        }
        EventKind::CameraOpened { package } | EventKind::PhotoCaptured { package } => {
            m.add_active(act, &policy.camera_rules);
            let what = if matches!(event.kind, EventKind::PhotoCaptured { .. }) {
                "photo taken"
            } else {
                "camera opened"
            };
            m.finish(event, act, |out| {
                out.push_str(what);
                out.push_str(" by `");
                out.push_str(package);
                out.push_str("` while the camera must be off");
            })
        }
        EventKind::ScreenCaptured { package } => {
            m.add_active(act, &policy.screen_rules);
            m.finish(event, act, |out| {
                out.push_str("screen captured by `");
                out.push_str(package);
                out.push_str("` while capture must be off");
            })
        }
        EventKind::Share {
            from_package,
            to_package,
            mime,
        } => {
            if let Some(i) = policy.package(to_package) {
                for &(rule, spec) in policy.share_rules.get(i).map_or(&[][..], Vec::as_slice) {
                    let covers = policy
                        .rules
                        .get(rule as usize)
                        .and_then(|r| r.shares.get(spec as usize))
                        .is_some_and(|s| {
                            s.mime.is_empty() || s.mime.iter().any(|p| mime_matches(p, mime))
                        });
                    if covers && act.active.contains(rule as usize) {
                        m.add(rule);
                    }
                }
                // Sharing into a banned app is using a banned app.
                m.add_active(act, block_rules(to_package));
            }
            m.finish(event, act, |out| {
                out.push_str("share of ");
                out.push_str(mime);
                out.push_str(" from `");
                out.push_str(from_package);
                out.push_str("` into `");
                out.push_str(to_package);
                out.push_str("` is denied");
            })
        }
        EventKind::Tamper { kind } => Decision {
            at: event.at,
            event_type: event.kind.type_name(),
            verdict: Verdict::Deny,
            violation: true,
            rules: vec![Arc::from(TAMPER_RULE)],
            severity: Some(Severity::Critical),
            reason: Cow::Owned(format!("agent tampering: {kind}")),
            posture: act.posture.clone(),
            posture_changed: false,
        },
        EventKind::AppRemoved { .. }
        | EventKind::CustodyStarted { .. }
        | EventKind::CustodyEnded { .. }
        | EventKind::BeaconSeen { .. }
        | EventKind::Location { .. }
        | EventKind::WifiConnected { .. }
        | EventKind::WifiDisconnected {}
        | EventKind::NfcTag { .. } => m.finish(event, act, |_| {}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::Platform;
    use crate::policy::Policy;

    /// Every shape of condition: the flat gates must agree with the condition trees in every
    /// context, and the shapes a gate cannot express must fall back to the tree.
    #[test]
    fn gates_agree_with_condition_trees() {
        let zone = |n: &str| format!(r#""{n}": {{"nfc_check_in": ["{n}:in"]}}"#);
        let rules = [
            r#"{"clearance_at_least": "general"}"#,
            r#"{"custody_at_least": "secret"}"#,
            r#"{"in_any_zone": true}"#,
            r#"{"in_any_zone": false}"#,
            r#"{"in_zone": ["a", "b"]}"#,
            r#"{"in_zone": ["a", "b", "c"]}"#,
            r#"{"all": [{"clearance_at_least": "important"}, {"in_zone": ["c"]}, {"custody_at_least": "work_secret"}]}"#,
            r#"{"all": [{"clearance_at_least": "general"}, {"any": [{"in_zone": ["a"]}, {"in_zone": ["b"]}]}]}"#,
            r#"{"all": [{"in_zone": ["a"]}, {"in_zone": ["b"]}]}"#,
            r#"{"any": [{"in_zone": ["a"]}, {"custody_at_least": "secret"}]}"#,
            r#"{"not": {"in_any_zone": true}}"#,
            r#"{"all": [{"in_any_zone": true}, {"not": {"custody_at_least": "secret"}}]}"#,
        ];
        let rule_json: Vec<String> = rules
            .iter()
            .enumerate()
            .map(|(i, w)| {
                format!(r#"{{"id": "r{i}", "when": {w}, "effects": ["disable_camera"]}}"#)
            })
            .collect();
        let doc = format!(
            r#"{{"format": 1, "policy_id": "shapes", "app_sets": {{}}, "zones": {{{}, {}, {}}},
               "rules": [{}],
               "sync": {{"interval_s": 900, "max_offline_s": 86400,
                         "fail_closed": {{"camera_disabled": true, "screen_capture_disabled": true}}}}}}"#,
            zone("a"),
            zone("b"),
            zone("c"),
            rule_json.join(",")
        );
        let policy = CompiledPolicy::compile(
            Policy::from_json(doc.as_bytes()).unwrap(),
            Platform::Android,
        )
        .unwrap();
        let gated: Vec<usize> = (0..policy.gates.len())
            .filter(|i| policy.gates[*i].is_some())
            .collect();
        assert_eq!(gated, [0, 1, 2, 3, 4, 6, 7], "which shapes are gates");
        let custody = [
            None,
            Some(Classification::WorkSecret),
            Some(Classification::Secret),
            Some(Classification::TopSecret),
        ];
        for zone_mask in 0..8u32 {
            let mut zones = BitSet::with_len(policy.zones.len());
            for z in 0..3 {
                if zone_mask & (1 << z) != 0 {
                    zones.insert(z);
                }
            }
            for clearance in Clearance::ALL {
                for custody_max in custody {
                    let f = Facts {
                        clearance,
                        custody_max,
                        zones: &zones,
                        now: Timestamp(0),
                        fail_closed: false,
                    };
                    for (i, r) in policy.rules.iter().enumerate() {
                        if let Some(Some(g)) = policy.gates.get(i) {
                            assert_eq!(
                                g.holds(&f),
                                holds(&r.cond, &f),
                                "rule {i} zones {zone_mask:03b} {clearance:?} {custody_max:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Property (issue 15): the compiled gate, where a rule has one, says exactly what the rule's
/// condition tree says, for every generated condition of the gate's shape and every fact.
#[cfg(test)]
mod gates_agree_with_trees {
    use super::*;
    use proptest::prelude::*;

    fn clearance() -> impl Strategy<Value = Clearance> {
        prop::sample::select(Clearance::ALL.to_vec())
    }

    fn classification() -> impl Strategy<Value = Classification> {
        prop::sample::select(Classification::ALL.to_vec())
    }

    fn zones() -> impl Strategy<Value = Vec<u32>> {
        prop::collection::vec(0u32..5, 1..4)
    }

    /// Atoms a gate can hold, and a few it cannot (windows, negations), so both paths run.
    fn atom() -> impl Strategy<Value = Cond> {
        prop_oneof![
            Just(Cond::True),
            clearance().prop_map(Cond::ClearanceAtLeast),
            classification().prop_map(Cond::CustodyAtLeast),
            zones().prop_map(Cond::InZones),
            any::<bool>().prop_map(Cond::InAnyZone),
            prop::collection::vec(zones().prop_map(Cond::InZones), 1..3).prop_map(Cond::Any),
            clearance().prop_map(|c| Cond::Not(Box::new(Cond::ClearanceAtLeast(c)))),
        ]
    }

    fn cond() -> impl Strategy<Value = Cond> {
        prop_oneof![
            atom(),
            prop::collection::vec(atom(), 0..5).prop_map(Cond::All)
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn a_gate_holds_exactly_when_its_tree_does(
            c in cond(),
            cl in clearance(),
            custody in prop::option::of(classification()),
            present in prop::collection::btree_set(0usize..5, 0..5),
        ) {
            let mut zs = BitSet::with_len(5);
            for z in present {
                zs.insert(z);
            }
            let f = Facts { clearance: cl, custody_max: custody, zones: &zs, now: Timestamp(1_795_800_000_000), fail_closed: false };
            if let Some(g) = Gate::of(&c) {
                prop_assert_eq!(g.holds(&f), holds(&c, &f), "{:?}", c);
            }
        }
    }
}
