//! The facts the core keeps between events: clearance, installed apps, custody, and the zone
//! signals. Raw signals are kept per zone id (not per compiled index) in the snapshot, so a new
//! policy version can be bound to the same context without losing a check-in or a custody.
//!
//! Applying an event is a pure state transition; it says whether anything the rules read
//! (zones, custody, clearance) changed, so the engine re-derives the posture only then.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bitset::BitSet;
use crate::compile::CompiledPolicy;
use crate::event::{Bssid, Event, EventKind};
use crate::level::{Classification, Clearance};
use crate::time::Timestamp;

/// Where a custody record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustodySource {
    /// Scanned on the phone; a scan at return ends it.
    Device,
    /// Signed sign-out record from the document registry; only a signed return ends it.
    Registry,
}

/// A document the holder has signed for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyRecord {
    /// Its level.
    pub classification: Classification,
    /// When custody started.
    pub since: Timestamp,
    /// Who reported it.
    pub source: CustodySource,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ZoneSignals {
    /// A beacon of the zone was seen; inside until this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    beacon_until: Option<Timestamp>,
    /// The last location fix overlaps a geofence of the zone.
    #[serde(default)]
    geofence: bool,
    /// Connected to an access point of the zone.
    #[serde(default)]
    wifi: bool,
    /// Checked in by NFC and not out.
    #[serde(default)]
    nfc: bool,
}

impl ZoneSignals {
    fn present(&self, now: Timestamp) -> bool {
        self.geofence || self.wifi || self.nfc || self.beacon_until.is_some_and(|u| u > now)
    }
}

/// A location fix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// Degrees.
    pub lat: f64,
    /// Degrees.
    pub lon: f64,
    /// Radius of the accuracy circle, metres.
    pub accuracy_m: f64,
}

/// What an event changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    /// Something rules read changed: the posture must be re-derived.
    pub rules_input: bool,
    /// A beacon sighting set a zone's presence to run out at this time: the posture must be
    /// re-derived by then even if presence did not change now (the zone may have been held by
    /// Wi-Fi, which can go while the beacon's time runs).
    pub wake_by: Option<Timestamp>,
}

/// Device context.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) clearance: Clearance,
    pub(crate) installed: HashSet<String>,
    pub(crate) custody: BTreeMap<String, CustodyRecord>,
    zone_ids: Vec<Arc<str>>,
    zones: Vec<ZoneSignals>,
    last_fix: Option<Fix>,
    wifi: Option<Bssid>,
}

const EARTH_RADIUS_M: f64 = 6_371_008.8;
const METRES_PER_DEGREE_LAT: f64 = 111_195.0;

impl Context {
    /// An empty context for `policy`.
    pub fn new(policy: &CompiledPolicy, clearance: Clearance) -> Self {
        Self {
            clearance,
            installed: HashSet::new(),
            custody: BTreeMap::new(),
            zone_ids: policy.zones.iter().map(|z| z.id.clone()).collect(),
            zones: vec![ZoneSignals::default(); policy.zone_count()],
            last_fix: None,
            wifi: None,
        }
    }

    /// The holder's clearance.
    pub fn clearance(&self) -> Clearance {
        self.clearance
    }

    pub(crate) fn set_clearance(&mut self, c: Clearance) -> Change {
        let changed = self.clearance != c;
        self.clearance = c;
        Change {
            rules_input: changed,
            wake_by: None,
        }
    }

    /// Documents in custody.
    pub fn custody(&self) -> &BTreeMap<String, CustodyRecord> {
        &self.custody
    }

    /// Highest classification in custody.
    pub fn custody_max(&self) -> Option<Classification> {
        self.custody.values().map(|c| c.classification).max()
    }

    /// Installed packages as last reported, sorted.
    pub fn installed(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.installed.iter().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Zones the phone is inside at `now`, and the earliest time that can change without an
    /// event (a beacon sighting running out).
    pub fn zones_present(&self, now: Timestamp) -> (BitSet, Option<Timestamp>) {
        let mut set = BitSet::with_len(self.zones.len());
        let mut next: Option<Timestamp> = None;
        for (i, z) in self.zones.iter().enumerate() {
            if z.present(now) {
                set.insert(i);
            }
            if let Some(u) = z.beacon_until.filter(|u| *u > now) {
                next = Some(next.map_or(u, |n| n.min(u)));
            }
        }
        (set, next)
    }

    /// Ids of the zones the phone is inside at `now`.
    pub fn zone_ids_present(&self, now: Timestamp) -> Vec<&str> {
        self.zones_present(now)
            .0
            .iter()
            .filter_map(|i| self.zone_ids.get(i).map(|z| &**z))
            .collect()
    }

    /// Starts custody from a signed registry record (the sync's custody feed).
    pub fn registry_custody_started(
        &mut self,
        document: &str,
        classification: Classification,
        at: Timestamp,
    ) -> Change {
        self.start_custody(document, classification, at, CustodySource::Registry)
    }

    /// Ends custody from a signed registry return record.
    pub fn registry_custody_ended(&mut self, document: &str) -> Change {
        Change {
            rules_input: self.custody.remove(document).is_some(),
            wake_by: None,
        }
    }

    fn start_custody(
        &mut self,
        document: &str,
        classification: Classification,
        at: Timestamp,
        source: CustodySource,
    ) -> Change {
        let before = self.custody_max();
        let rec = self
            .custody
            .entry(document.to_owned())
            .or_insert(CustodyRecord {
                classification,
                since: at,
                source,
            });
        // A second report never lowers the level or downgrades a registry record.
        rec.classification = rec.classification.max(classification);
        if source == CustodySource::Registry {
            rec.source = CustodySource::Registry;
        }
        Change {
            rules_input: self.custody_max() != before,
            wake_by: None,
        }
    }

    /// Applies an event. Events that only ask for a decision (launch, capture, share) change
    /// nothing here.
    pub fn apply(&mut self, policy: &CompiledPolicy, event: &Event) -> Change {
        let at = event.at;
        match &event.kind {
            EventKind::AppInventory { packages } => {
                self.installed = packages.iter().cloned().collect();
                Change::default()
            }
            EventKind::AppInstalled { package } => {
                self.installed.insert(package.clone());
                Change::default()
            }
            EventKind::AppRemoved { package } => {
                self.installed.remove(package);
                Change::default()
            }
            EventKind::CustodyStarted {
                document,
                classification,
            } => self.start_custody(document, *classification, at, CustodySource::Device),
            EventKind::CustodyEnded { document } => {
                // Only a signed return ends custody the registry reported.
                match self.custody.get(document) {
                    Some(r) if r.source == CustodySource::Device => {
                        let before = self.custody_max();
                        self.custody.remove(document);
                        Change {
                            rules_input: self.custody_max() != before,
                            wake_by: None,
                        }
                    }
                    _ => Change::default(),
                }
            }
            EventKind::BeaconSeen {
                uuid,
                major,
                minor,
                rssi,
            } => {
                let mut wake_by: Option<Timestamp> = None;
                let mut change = self.zone_update(at, |ctx| {
                    for m in policy.beacons_for(uuid.0) {
                        let matches = m.major.is_none_or(|v| v == *major)
                            && m.minor.is_none_or(|v| v == *minor)
                            && m.min_rssi.is_none_or(|min| *rssi >= min);
                        if let (true, Some(z)) = (matches, ctx.zones.get_mut(m.zone as usize)) {
                            let until = at.plus_millis(m.timeout_ms);
                            let until = z.beacon_until.map_or(until, |u| u.max(until));
                            z.beacon_until = Some(until);
                            wake_by = Some(wake_by.map_or(until, |w| w.min(until)));
                        }
                    }
                });
                change.wake_by = wake_by;
                change
            }
            EventKind::Location {
                lat,
                lon,
                accuracy_m,
            } => {
                let fix = Fix {
                    lat: *lat,
                    lon: *lon,
                    accuracy_m: *accuracy_m,
                };
                self.last_fix = Some(fix);
                self.zone_update(at, |ctx| ctx.resolve_geofences(policy))
            }
            EventKind::WifiConnected { bssid } => {
                self.wifi = Some(*bssid);
                self.zone_update(at, |ctx| ctx.resolve_wifi(policy))
            }
            EventKind::WifiDisconnected {} => {
                self.wifi = None;
                self.zone_update(at, |ctx| ctx.resolve_wifi(policy))
            }
            EventKind::NfcTag { tag } => self.zone_update(at, |ctx| {
                for (zone, check_in) in policy.nfc_actions(tag) {
                    if let Some(z) = ctx.zones.get_mut(*zone as usize) {
                        z.nfc = *check_in;
                    }
                }
            }),
            EventKind::AppLaunched { .. }
            | EventKind::CameraOpened { .. }
            | EventKind::PhotoCaptured { .. }
            | EventKind::ScreenCaptured { .. }
            | EventKind::Share { .. }
            | EventKind::Tamper { .. } => Change::default(),
        }
    }

    /// Runs `f` and reports whether the set of zones the phone is inside changed.
    fn zone_update(&mut self, at: Timestamp, f: impl FnOnce(&mut Self)) -> Change {
        let before: Vec<bool> = self.zones.iter().map(|z| z.present(at)).collect();
        f(self);
        let changed = self
            .zones
            .iter()
            .zip(before)
            .any(|(z, b)| z.present(at) != b);
        Change {
            rules_input: changed,
            wake_by: None,
        }
    }

    fn resolve_wifi(&mut self, policy: &CompiledPolicy) {
        for z in &mut self.zones {
            z.wifi = false;
        }
        if let Some(b) = self.wifi {
            for zone in policy.zones_for_bssid(b.0) {
                if let Some(z) = self.zones.get_mut(*zone as usize) {
                    z.wifi = true;
                }
            }
        }
    }

    fn resolve_geofences(&mut self, policy: &CompiledPolicy) {
        for z in &mut self.zones {
            z.geofence = false;
        }
        let Some(fix) = self.last_fix else { return };
        for g in &policy.geofences {
            if overlaps(&fix, g.lat, g.lon, g.radius_m)
                && let Some(z) = self.zones.get_mut(g.zone as usize)
            {
                z.geofence = true;
            }
        }
    }

    /// Re-binds the context to a new policy version: zone signals carry over by zone id,
    /// Wi-Fi and geofence membership are re-resolved against the new zones.
    pub fn rebind(&mut self, policy: &CompiledPolicy) {
        let old: BTreeMap<Arc<str>, ZoneSignals> = self
            .zone_ids
            .iter()
            .cloned()
            .zip(self.zones.iter().copied())
            .collect();
        self.zone_ids = policy.zones.iter().map(|z| z.id.clone()).collect();
        self.zones = self
            .zone_ids
            .iter()
            .map(|id| old.get(id).copied().unwrap_or_default())
            .collect();
        self.resolve_wifi(policy);
        self.resolve_geofences(policy);
    }

    /// A serialisable copy, for the store.
    pub fn snapshot(&self) -> ContextSnapshot {
        ContextSnapshot {
            clearance: self.clearance,
            installed: self.installed.iter().cloned().collect(),
            custody: self.custody.clone(),
            zones: self
                .zone_ids
                .iter()
                .zip(&self.zones)
                .filter(|(_, z)| **z != ZoneSignals::default())
                .map(|(id, z)| (id.to_string(), *z))
                .collect(),
            last_fix: self.last_fix,
            wifi: self.wifi.map(|b| b.to_string()),
        }
    }

    /// Restores a snapshot against `policy` (which may be newer than the one it was taken under).
    pub fn restore(policy: &CompiledPolicy, snap: ContextSnapshot) -> Self {
        let mut ctx = Self::new(policy, snap.clearance);
        ctx.installed = snap.installed.into_iter().collect();
        ctx.custody = snap.custody;
        ctx.last_fix = snap.last_fix;
        ctx.wifi = snap.wifi.and_then(|w| w.parse().ok());
        for (i, id) in ctx.zone_ids.iter().enumerate() {
            if let (Some(z), Some(s)) = (ctx.zones.get_mut(i), snap.zones.get(&**id)) {
                *z = *s;
            }
        }
        ctx.resolve_wifi(policy);
        ctx.resolve_geofences(policy);
        ctx
    }
}

/// Serialisable context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextSnapshot {
    clearance: Clearance,
    installed: BTreeSet<String>,
    custody: BTreeMap<String, CustodyRecord>,
    zones: BTreeMap<String, ZoneSignals>,
    last_fix: Option<Fix>,
    wifi: Option<String>,
}

/// Whether the fix's accuracy circle overlaps the fence: a fix that might be inside counts as
/// inside, because leaving the camera on in a reading room is the worse mistake.
fn overlaps(fix: &Fix, lat: f64, lon: f64, radius_m: f64) -> bool {
    let reach = radius_m + fix.accuracy_m;
    // Cheap reject on latitude alone before the trigonometry.
    if (fix.lat - lat).abs() * METRES_PER_DEGREE_LAT > reach {
        return false;
    }
    haversine_m(fix.lat, fix.lon, lat, lon) <= reach
}

fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_a_known_distance() {
        // Tiananmen to the Forbidden City's north gate: about 1.9 km due north.
        let d = haversine_m(39.9087, 116.3975, 39.9256, 116.3972);
        assert!((1850.0..1950.0).contains(&d), "{d}");
    }

    #[test]
    fn accuracy_circle_overlap_counts_as_inside() {
        let fix = |acc| Fix {
            lat: 39.9087,
            lon: 116.3975,
            accuracy_m: acc,
        };
        // Fence 200 m north, radius 50 m: 150 m gap.
        let north = 39.9087 + 200.0 / METRES_PER_DEGREE_LAT;
        assert!(!overlaps(&fix(100.0), north, 116.3975, 50.0));
        assert!(overlaps(&fix(160.0), north, 116.3975, 50.0));
    }
}
