//! A validated policy compiled for one platform into the structures the hot path needs:
//! package name -> index (one hash lookup per app event), per-package lists of the rules that
//! ban or restrict it, signal -> zone indexes, and conditions with names resolved to indices.
//!
//! Packages are numbered in lexical order, so walking a package bit set yields the sorted
//! `blocked_packages` list the posture promises without sorting at run time.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::bitset::BitSet;
use crate::level::{Classification, Clearance};
use crate::policy::model::{Condition, Effect, Mode, Policy, Severity, SyncSettings};
use crate::policy::{PolicyErrors, ValidPolicy, parse_bssid, parse_hhmm, parse_uuid};

/// Which platform's app ids the policy is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Platform {
    /// Package names.
    #[default]
    Android,
    /// Bundle identifiers.
    Ios,
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "android" => Ok(Self::Android),
            "ios" => Ok(Self::Ios),
            _ => Err(format!(
                "unknown platform `{s}`, expected `android` or `ios`"
            )),
        }
    }
}

/// Id of the agent's own rule that holds the fail-closed posture.
pub const FAIL_CLOSED_RULE: &str = crate::rules::FAIL_CLOSED;
/// Id under which tamper events are reported.
pub const TAMPER_RULE: &str = crate::rules::TAMPER;

/// A policy ready to evaluate.
#[derive(Debug)]
pub struct CompiledPolicy {
    /// The source document (validated).
    pub source: Arc<Policy>,
    /// Platform the app ids were taken for.
    pub platform: Platform,
    pub(crate) packages: Vec<Arc<str>>,
    package_index: HashMap<Arc<str>, u32>,
    pub(crate) zones: Vec<CompiledZone>,
    beacon_index: HashMap<u128, Vec<BeaconMatch>>,
    wifi_index: HashMap<u64, Vec<u32>>,
    nfc_index: HashMap<String, Vec<(u32, bool)>>,
    pub(crate) geofences: Vec<GeofenceSpec>,
    pub(crate) rules: Vec<CompiledRule>,
    /// Per rule index: the rule's condition as a flat gate when it has a common shape (so
    /// activation reads one dense array instead of walking 1,000 condition trees).
    pub(crate) gates: Vec<Option<Gate>>,
    /// Per package index: rules that block it (ban or suspended share target).
    pub(crate) block_rules: Vec<Vec<u32>>,
    /// Per package index: (rule, share spec index) restricting shares into it.
    pub(crate) share_rules: Vec<Vec<(u32, u32)>>,
    pub(crate) camera_rules: Vec<u32>,
    pub(crate) screen_rules: Vec<u32>,
    /// Whether any condition reads the clock (then activations expire each minute).
    pub(crate) time_dependent: bool,
    /// Rule id -> index, for the officer's per-rule counters.
    rule_index: HashMap<Arc<str>, u32>,
}

#[derive(Debug)]
pub(crate) struct CompiledZone {
    pub id: Arc<str>,
}

#[derive(Debug, Clone)]
pub(crate) struct BeaconMatch {
    pub zone: u32,
    pub major: Option<u16>,
    pub minor: Option<u16>,
    pub timeout_ms: i64,
    pub min_rssi: Option<i16>,
}

#[derive(Debug, Clone)]
pub(crate) struct GeofenceSpec {
    pub zone: u32,
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub id: Arc<str>,
    pub severity: Severity,
    pub mode: Mode,
    pub cond: Cond,
    pub camera: bool,
    pub screen: bool,
    /// Packages blocked while active (only applied in enforce mode).
    pub blocks: BitSet,
    pub shares: Vec<ShareSpec>,
}

#[derive(Debug)]
pub(crate) struct ShareSpec {
    /// Empty: any content.
    pub mime: Vec<String>,
}

/// A condition of the common shape `clearance >= a AND custody >= b AND in one of <= 2 zones
/// AND (not) in any zone`, each part optional: evaluated with a few compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gate {
    pub clearance: Option<Clearance>,
    pub custody: Option<Classification>,
    /// Zone indexes, any of which must be present (`nzones` of them are used).
    pub zones: [u32; 2],
    pub nzones: u8,
    pub any_zone: Option<bool>,
}

impl Gate {
    const OPEN: Gate = Gate {
        clearance: None,
        custody: None,
        zones: [0; 2],
        nzones: 0,
        any_zone: None,
    };

    /// The gate for `c`, if `c` has the gate's shape.
    pub(crate) fn of(c: &Cond) -> Option<Gate> {
        let mut g = Gate::OPEN;
        let atoms = match c {
            Cond::All(cs) => cs.as_slice(),
            other => std::slice::from_ref(other),
        };
        for a in atoms {
            match a {
                Cond::True => {}
                Cond::ClearanceAtLeast(l) => g.clearance = g.clearance.max(Some(*l)),
                Cond::CustodyAtLeast(l) => g.custody = g.custody.max(Some(*l)),
                Cond::InAnyZone(b) if g.any_zone.is_none_or(|x| x == *b) => {
                    g.any_zone = Some(*b);
                }
                Cond::InZones(zs) if g.nzones == 0 => g.set_zones(zs.iter().copied())?,
                Cond::Any(alts) if g.nzones == 0 => {
                    let mut ids = Vec::new();
                    for alt in alts {
                        match alt {
                            Cond::InZones(zs) => ids.extend_from_slice(zs),
                            _ => return None,
                        }
                    }
                    g.set_zones(ids.into_iter())?;
                }
                _ => return None,
            }
        }
        Some(g)
    }

    fn set_zones(&mut self, zs: impl Iterator<Item = u32>) -> Option<()> {
        for z in zs {
            let slot = self.zones.get_mut(usize::from(self.nzones))?;
            *slot = z;
            self.nzones += 1;
        }
        (self.nzones > 0).then_some(())
    }
}

/// A condition with names resolved.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    True,
    ClearanceAtLeast(Clearance),
    CustodyAtLeast(Classification),
    InZones(Vec<u32>),
    InAnyZone(bool),
    Window {
        days: u8,
        from: u32,
        to: u32,
        offset: i32,
    },
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    /// Holds only for the agent's fail-closed rule, while the policy is stale.
    FailClosed,
}

impl CompiledPolicy {
    /// Validates and compiles.
    pub fn compile(policy: Policy, platform: Platform) -> Result<Self, PolicyErrors> {
        Ok(Self::from_valid(policy.into_valid()?, platform))
    }

    /// Compiles a policy already validated (a verified bundle's): nothing to fail.
    pub fn from_valid(policy: ValidPolicy, platform: Platform) -> Self {
        Compiler::new(policy.into_inner(), platform).finish()
    }

    /// The policy's id.
    pub fn policy_id(&self) -> &str {
        &self.source.policy_id
    }

    /// Sync settings.
    pub fn sync(&self) -> &SyncSettings {
        &self.source.sync
    }

    /// Number of rules, the agent's own included.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Index of a package the policy names, if it names it.
    pub(crate) fn package(&self, name: &str) -> Option<usize> {
        self.package_index.get(name).map(|&i| i as usize)
    }

    /// Package name by index.
    pub(crate) fn package_name(&self, i: usize) -> &Arc<str> {
        static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
        self.packages
            .get(i)
            .unwrap_or_else(|| EMPTY.get_or_init(|| Arc::from("")))
    }

    /// Index of a rule by id.
    pub fn rule_position(&self, id: &str) -> Option<usize> {
        self.rule_index.get(id).map(|&i| i as usize)
    }

    pub(crate) fn zone_count(&self) -> usize {
        self.zones.len()
    }

    pub(crate) fn beacons_for(&self, uuid: u128) -> &[BeaconMatch] {
        self.beacon_index.get(&uuid).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn zones_for_bssid(&self, bssid: u64) -> &[u32] {
        self.wifi_index.get(&bssid).map_or(&[], Vec::as_slice)
    }

    /// (zone, true = check in / false = check out) for an NFC tag.
    pub(crate) fn nfc_actions(&self, tag: &str) -> &[(u32, bool)] {
        self.nfc_index.get(tag).map_or(&[], Vec::as_slice)
    }
}

struct Compiler {
    policy: Policy,
    platform: Platform,
    packages: Vec<Arc<str>>,
    package_index: HashMap<Arc<str>, u32>,
    set_index: HashMap<String, BitSet>,
    zone_index: HashMap<String, u32>,
    time_dependent: bool,
}

impl Compiler {
    fn new(policy: Policy, platform: Platform) -> Self {
        let ids = |set: &crate::policy::model::AppSet| match platform {
            Platform::Android => set.android.clone(),
            Platform::Ios => set.ios.clone(),
        };
        let all: BTreeSet<String> = policy.app_sets.values().flat_map(ids).collect();
        let packages: Vec<Arc<str>> = all.into_iter().map(Arc::from).collect();
        let package_index: HashMap<Arc<str>, u32> = packages
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        let set_index = policy
            .app_sets
            .iter()
            .map(|(name, set)| {
                let mut bits = BitSet::with_len(packages.len());
                for p in ids(set) {
                    if let Some(&i) = package_index.get(p.as_str()) {
                        bits.insert(i as usize);
                    }
                }
                (name.clone(), bits)
            })
            .collect();
        let zone_index = policy
            .zones
            .keys()
            .enumerate()
            .map(|(i, z)| (z.clone(), i as u32))
            .collect();
        Self {
            policy,
            platform,
            packages,
            package_index,
            set_index,
            zone_index,
            time_dependent: false,
        }
    }

    fn set(&self, name: &str) -> BitSet {
        // Validation guarantees the name resolves; an empty set is the safe reading otherwise.
        self.set_index
            .get(name)
            .cloned()
            .unwrap_or_else(|| BitSet::with_len(self.packages.len()))
    }

    fn cond(&mut self, c: &Condition) -> Cond {
        match c {
            Condition::ClearanceAtLeast(l) => Cond::ClearanceAtLeast(*l),
            Condition::CustodyAtLeast(l) => Cond::CustodyAtLeast(*l),
            Condition::InZone(zs) => Cond::InZones(
                zs.iter()
                    .filter_map(|z| self.zone_index.get(z).copied())
                    .collect(),
            ),
            Condition::InAnyZone(b) => Cond::InAnyZone(*b),
            Condition::TimeWindow(w) => {
                self.time_dependent = true;
                Cond::Window {
                    days: w.days.iter().fold(0u8, |m, d| m | (1 << d.index())),
                    from: parse_hhmm(&w.from).unwrap_or(0),
                    to: parse_hhmm(&w.to).unwrap_or(0),
                    offset: w.utc_offset_minutes,
                }
            }
            Condition::All(cs) => Cond::All(cs.iter().map(|c| self.cond(c)).collect()),
            Condition::Any(cs) => Cond::Any(cs.iter().map(|c| self.cond(c)).collect()),
            Condition::Not(c) => Cond::Not(Box::new(self.cond(c))),
        }
    }

    fn finish(mut self) -> CompiledPolicy {
        let policy = std::mem::replace(&mut self.policy, empty_policy());
        let n_pkg = self.packages.len();
        let mut rules = Vec::with_capacity(policy.rules.len() + 1);
        for r in &policy.rules {
            let cond = r.when.as_ref().map_or(Cond::True, |c| self.cond(c));
            let mut rule = CompiledRule {
                id: Arc::from(r.id.as_str()),
                severity: r.severity,
                mode: r.mode,
                cond,
                camera: false,
                screen: false,
                blocks: BitSet::with_len(n_pkg),
                shares: Vec::new(),
            };
            for e in &r.effects {
                match e {
                    Effect::BanApps(set) => rule.blocks.union_with(&self.set(set)),
                    Effect::DisableCamera => rule.camera = true,
                    Effect::DisableScreenCapture => rule.screen = true,
                    Effect::DenyShareInto(s) => {
                        if s.suspend_targets {
                            rule.blocks.union_with(&self.set(&s.app_set));
                        }
                        rule.shares.push(ShareSpec {
                            mime: s.mime.clone(),
                        });
                    }
                }
            }
            rules.push(rule);
        }
        // The fail-closed posture is one more rule, active only while the policy is stale, so
        // the same lookup paths report it.
        let fc = &policy.sync.fail_closed;
        let mut fc_blocks = BitSet::with_len(n_pkg);
        for set in &fc.ban_app_sets {
            fc_blocks.union_with(&self.set(set));
        }
        rules.push(CompiledRule {
            id: Arc::from(FAIL_CLOSED_RULE),
            severity: Severity::High,
            mode: Mode::Enforce,
            cond: Cond::FailClosed,
            camera: fc.camera_disabled,
            screen: fc.screen_capture_disabled,
            blocks: fc_blocks,
            shares: Vec::new(),
        });

        let mut block_rules = vec![Vec::new(); n_pkg];
        let mut share_rules = vec![Vec::new(); n_pkg];
        let mut camera_rules = Vec::new();
        let mut screen_rules = Vec::new();
        for (ri, r) in rules.iter().enumerate() {
            let ri = ri as u32;
            for p in r.blocks.iter() {
                if let Some(v) = block_rules.get_mut(p) {
                    v.push(ri);
                }
            }
            if r.camera {
                camera_rules.push(ri);
            }
            if r.screen {
                screen_rules.push(ri);
            }
        }
        // Share targets, in rule order, with the spec index inside the rule.
        for (ri, src) in policy.rules.iter().enumerate() {
            let shares = src.effects.iter().filter_map(|e| match e {
                Effect::DenyShareInto(s) => Some(s),
                _ => None,
            });
            for (si, s) in shares.enumerate() {
                for p in self.set(&s.app_set).iter() {
                    if let Some(v) = share_rules.get_mut(p) {
                        v.push((ri as u32, si as u32));
                    }
                }
            }
        }

        let mut beacon_index: HashMap<u128, Vec<BeaconMatch>> = HashMap::new();
        let mut wifi_index: HashMap<u64, Vec<u32>> = HashMap::new();
        let mut nfc_index: HashMap<String, Vec<(u32, bool)>> = HashMap::new();
        let mut geofences = Vec::new();
        let mut zones = Vec::with_capacity(policy.zones.len());
        for (zi, (id, z)) in policy.zones.iter().enumerate() {
            let zone = zi as u32;
            zones.push(CompiledZone {
                id: Arc::from(id.as_str()),
            });
            for b in &z.beacons {
                if let Some(uuid) = parse_uuid(&b.uuid) {
                    beacon_index.entry(uuid).or_default().push(BeaconMatch {
                        zone,
                        major: b.major,
                        minor: b.minor,
                        timeout_ms: i64::from(b.timeout_s) * 1000,
                        min_rssi: b.min_rssi,
                    });
                }
            }
            for g in &z.geofences {
                geofences.push(GeofenceSpec {
                    zone,
                    lat: g.lat,
                    lon: g.lon,
                    radius_m: g.radius_m,
                });
            }
            for b in &z.wifi_bssids {
                if let Some(bssid) = parse_bssid(b) {
                    wifi_index.entry(bssid).or_default().push(zone);
                }
            }
            for t in &z.nfc_check_in {
                nfc_index.entry(t.clone()).or_default().push((zone, true));
            }
            for t in &z.nfc_check_out {
                nfc_index.entry(t.clone()).or_default().push((zone, false));
            }
        }
        let gates = rules.iter().map(|r| Gate::of(&r.cond)).collect();
        let rule_index = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i as u32))
            .collect();

        CompiledPolicy {
            source: Arc::new(policy),
            platform: self.platform,
            packages: self.packages,
            package_index: self.package_index,
            zones,
            beacon_index,
            wifi_index,
            nfc_index,
            geofences,
            rules,
            gates,
            block_rules,
            share_rules,
            camera_rules,
            screen_rules,
            time_dependent: self.time_dependent,
            rule_index,
        }
    }
}

fn empty_policy() -> Policy {
    Policy {
        format: crate::policy::FORMAT,
        policy_id: String::new(),
        description: String::new(),
        app_sets: Default::default(),
        zones: Default::default(),
        rules: Vec::new(),
        sync: SyncSettings {
            interval_s: 0,
            max_offline_s: 0,
            fail_closed: crate::policy::model::FailClosedPosture {
                camera_disabled: true,
                screen_capture_disabled: true,
                ban_app_sets: Vec::new(),
            },
        },
        holders: Vec::new(),
    }
}
