//! Typed form of the policy document (`policies/policy.schema.json` is its JSON Schema).
//! Unknown fields are errors everywhere: a misspelt `disable_camera` must not silently leave
//! the camera on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::level::{Classification, Clearance};

/// A complete policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Document format; must be [`super::FORMAT`].
    pub format: u32,
    /// Stable identity of this policy across versions (bundles for another id are refused).
    pub policy_id: String,
    /// Free text for the officer's console.
    #[serde(default)]
    pub description: String,
    /// Named sets of apps, by platform id.
    #[serde(default)]
    pub app_sets: BTreeMap<String, AppSet>,
    /// Secure zones and the signals that place the phone inside them.
    #[serde(default)]
    pub zones: BTreeMap<String, Zone>,
    /// Rules, evaluated independently; their effects are unioned.
    pub rules: Vec<Rule>,
    /// Sync schedule and the fail-closed posture.
    pub sync: SyncSettings,
    /// Which holder uses which device, and their clearance. Signed with the policy, so the
    /// phone's user cannot change it.
    #[serde(default)]
    pub holders: Vec<HolderAssignment>,
}

/// Apps named once per platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSet {
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Android package names.
    #[serde(default)]
    pub android: Vec<String>,
    /// iOS bundle identifiers.
    #[serde(default)]
    pub ios: Vec<String>,
    /// What people call the apps, by package or bundle id (`com.tencent.mm` -> 微信): the
    /// office's console shows these. Omitted when empty, so a policy without names reads as
    /// before on every agent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, String>,
}

/// A secure area. The phone is inside when any one of its signals says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// Free text (e.g. "3rd floor reading room").
    #[serde(default)]
    pub description: String,
    /// BLE beacons installed in the zone.
    #[serde(default)]
    pub beacons: Vec<Beacon>,
    /// Circles on the map.
    #[serde(default)]
    pub geofences: Vec<Geofence>,
    /// Access points whose BSSID places the phone inside while connected.
    #[serde(default)]
    pub wifi_bssids: Vec<String>,
    /// NFC tags at the door: scanning one checks in.
    #[serde(default)]
    pub nfc_check_in: Vec<String>,
    /// NFC tags at the door: scanning one checks out.
    #[serde(default)]
    pub nfc_check_out: Vec<String>,
}

/// An iBeacon-style identity; absent major/minor match any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beacon {
    /// Proximity UUID, canonical 8-4-4-4-12 hex form.
    pub uuid: String,
    /// Major number, if the zone uses one.
    #[serde(default)]
    pub major: Option<u16>,
    /// Minor number, if the zone uses one.
    #[serde(default)]
    pub minor: Option<u16>,
    /// How long one sighting keeps the phone inside.
    #[serde(default = "default_beacon_timeout_s")]
    pub timeout_s: u32,
    /// Sightings weaker than this are ignored (a beacon through a wall).
    #[serde(default)]
    pub min_rssi: Option<i16>,
}

fn default_beacon_timeout_s() -> u32 {
    30
}

/// A circle; a location fix whose accuracy circle overlaps it counts as inside (fail closed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geofence {
    /// Latitude of the centre, degrees.
    pub lat: f64,
    /// Longitude of the centre, degrees.
    pub lon: f64,
    /// Radius, metres.
    pub radius_m: f64,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique id, reported with every decision and violation.
    pub id: String,
    /// What the rule is for, shown to the officer.
    #[serde(default)]
    pub description: String,
    /// How serious a breach is.
    #[serde(default)]
    pub severity: Severity,
    /// `enforce` changes the posture and denies; `monitor` only records.
    #[serde(default)]
    pub mode: Mode,
    /// When the rule applies; absent means always.
    #[serde(default)]
    pub when: Option<Condition>,
    /// What the rule does while it applies.
    pub effects: Vec<Effect>,
}

/// Severity of a breach of a rule.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Low,
    /// Default.
    #[default]
    Medium,
    /// A likely leak path.
    High,
    /// A leak in progress or the agent being disabled.
    Critical,
}

impl Severity {
    /// Name as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// Whether a rule acts or only watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Changes the posture, denies, records.
    #[default]
    Enforce,
    /// Records would-be denials as violations with verdict `warn`; posture untouched.
    Monitor,
}

/// When a rule applies. Written as a single-key object, e.g. `{"clearance_at_least": "general"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The holder's clearance is at least this level.
    ClearanceAtLeast(Clearance),
    /// The holder has custody of at least one document at or above this level.
    CustodyAtLeast(Classification),
    /// The phone is inside one of these zones.
    InZone(Vec<String>),
    /// The phone is inside any zone of the policy (`true`) or outside all (`false`).
    InAnyZone(bool),
    /// The time falls in a weekly window.
    TimeWindow(TimeWindow),
    /// Every sub-condition holds (true when empty).
    All(Vec<Condition>),
    /// At least one sub-condition holds (false when empty).
    Any(Vec<Condition>),
    /// The sub-condition does not hold.
    Not(Box<Condition>),
}

/// A weekly window in a fixed UTC offset (China does not observe DST).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// Days the window opens on: `mon` .. `sun`.
    pub days: Vec<Weekday>,
    /// Opening time `HH:MM`, local.
    pub from: String,
    /// Closing time `HH:MM`, local; earlier than `from` means the window runs past midnight.
    pub to: String,
    /// Offset of local time east of UTC, minutes (Beijing: 480).
    #[serde(default = "default_utc_offset")]
    pub utc_offset_minutes: i32,
}

fn default_utc_offset() -> i32 {
    480
}

/// Day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Monday = 0.
    pub fn index(self) -> u32 {
        self as u32
    }
}

/// What an active rule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Apps of this set are blocked (suspended, install and launch denied) and reported.
    BanApps(String),
    /// The camera is off; opening it or taking a photo is a violation.
    DisableCamera,
    /// Screenshots and screen recording are off; capturing is a violation.
    DisableScreenCapture,
    /// Content may not be shared into these apps.
    DenyShareInto(ShareRestriction),
}

/// Sharing restriction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRestriction {
    /// Target apps.
    pub app_set: String,
    /// MIME patterns (`image/*`, `*/*`, `application/pdf`); empty means all content.
    #[serde(default)]
    pub mime: Vec<String>,
    /// Also suspend the targets while the rule applies: Android and iOS cannot intercept a
    /// share into another app, so suspending it is the only way to enforce the restriction.
    #[serde(default)]
    pub suspend_targets: bool,
}

/// Sync schedule and what to do when the policy can no longer be trusted to be current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    /// Seconds between syncs.
    pub interval_s: u32,
    /// Seconds without a successful sync before the phone falls back to `fail_closed`.
    pub max_offline_s: u32,
    /// The posture while the policy has expired or sync is overdue.
    pub fail_closed: FailClosedPosture,
}

/// The posture to fall back to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailClosedPosture {
    /// Turn the camera off.
    pub camera_disabled: bool,
    /// Turn screen capture off.
    pub screen_capture_disabled: bool,
    /// App sets to block.
    #[serde(default)]
    pub ban_app_sets: Vec<String>,
}

/// A holder, their clearance and the devices issued to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolderAssignment {
    /// Personnel id as the security office knows it.
    pub holder: String,
    /// Clearance granted to the holder.
    pub clearance: Clearance,
    /// Device ids (as enrolled) issued to the holder.
    pub devices: Vec<String>,
}

impl Policy {
    /// The clearance this policy assigns to `device_id`, if any. An unassigned device is
    /// treated as the policy's lowest level by the caller's choice, never guessed here.
    pub fn holder_for_device(&self, device_id: &str) -> Option<&HolderAssignment> {
        self.holders
            .iter()
            .find(|h| h.devices.iter().any(|d| d == device_id))
    }
}
