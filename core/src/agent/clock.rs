//! Time that never runs backwards for the agent (like tough's `latest_known_time`).
//!
//! The high-water mark is the latest of every event time, every authenticated server time and
//! every installed bundle's `issued_at`. A reading more than [`CLOCK_TOLERANCE_MS`] below it
//! is a clock set back (by hand, to escape a time window or an expiry, or by a reset): it is
//! reported once and the agent acts as at the high-water time, so a set-back clock can only
//! close things, never reopen them. Readings just below the mark (events arriving out of
//! order) are also acted on at the mark, without a report.
//!
//! Only the office's proven clock ([`TimeGuard::settle`]) may bring the mark back, so a clock
//! once set far forward does not lock the device out.
//!
//! Where the platform has a monotonic clock that keeps counting while the phone sleeps
//! (Android `SystemClock.elapsedRealtime`, iOS `mach_continuous_time`), [`TimeGuard::uptime`]
//! counts time offline with it: within one boot, the real time is at least the mark at the
//! last uptime reading plus the uptime elapsed since, whatever the wall clock says. So a policy
//! expires on time even when the holder sets the clock back while the phone sits unused.
//!
//! The mark is kept sealed in the store; it is written with other state, or on its own when it
//! has moved [`PERSIST_STEP_MS`] past the stored value, so a restart loses at most that much.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// How far below the high-water mark a reading may be before it counts as set back.
pub const CLOCK_TOLERANCE_MS: i64 = 2 * 60 * 1000;

/// How far the mark may move before it is written on its own.
pub const PERSIST_STEP_MS: i64 = 10 * 60 * 1000;

/// The high-water mark and whether the current set-back was reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeGuard {
    high_water: Option<Timestamp>,
    #[serde(default)]
    set_back_reported: bool,
    /// The last monotonic reading: boot, uptime, and the mark at that moment.
    #[serde(default)]
    uptime: Option<UptimeAnchor>,
    #[serde(skip)]
    stored: Option<Timestamp>,
    #[serde(skip)]
    dirty: bool,
}

/// A monotonic reading tied to the high-water mark at the moment it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UptimeAnchor {
    boot: String,
    uptime_ms: i64,
    mark: Timestamp,
}

/// What one reading gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The time to act at: the reading, or the high-water mark if that is later.
    pub effective: Timestamp,
    /// The high-water mark, when this reading is the first of a set-back (report it).
    pub first_set_back: Option<Timestamp>,
}

impl TimeGuard {
    /// Restores the sealed form.
    pub fn restore(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let mut g: Self = serde_json::from_slice(bytes)?;
        g.stored = g.high_water;
        Ok(g)
    }

    /// The sealed form.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The highest time seen.
    pub fn high_water(&self) -> Option<Timestamp> {
        self.high_water
    }

    /// The time to act at for `reading`, without recording anything.
    pub fn effective(&self, reading: Timestamp) -> Timestamp {
        self.high_water.map_or(reading, |h| h.max(reading))
    }

    /// Takes a platform clock reading.
    pub fn observe(&mut self, reading: Timestamp) -> Seen {
        let Some(high) = self.high_water else {
            self.raise(reading);
            return Seen {
                effective: reading,
                first_set_back: None,
            };
        };
        if reading.0 < high.0.saturating_sub(CLOCK_TOLERANCE_MS) {
            let first = !self.set_back_reported;
            if first {
                self.set_back_reported = true;
                self.dirty = true;
            }
            return Seen {
                effective: high,
                first_set_back: first.then_some(high),
            };
        }
        if self.set_back_reported {
            self.set_back_reported = false;
            self.dirty = true;
        }
        self.raise(reading);
        Seen {
            effective: high.max(reading),
            first_set_back: None,
        }
    }

    /// Takes a monotonic reading (`boot` identifies the boot; `uptime_ms` counts from it,
    /// sleep included). Within the same boot the mark rises by the uptime elapsed since the last
    /// reading; across a reboot (or an uptime that went back) nothing can be counted and the
    /// reading only anchors the next one.
    pub fn uptime(&mut self, boot: &str, uptime_ms: i64) {
        if let (Some(a), Some(_)) = (&self.uptime, self.high_water)
            && a.boot == boot
            && uptime_ms >= a.uptime_ms
        {
            // Checked: an uptime near i64::MAX must not wrap (or saturate into year 292 million).
            if let Some(ms) = a.mark.0.checked_add(uptime_ms - a.uptime_ms) {
                self.raise(Timestamp(ms));
            }
        }
        if let Some(mark) = self.high_water {
            // A stored anchor older than this one still gives a true lower bound, so the
            // anchor is written only when the boot changes (or with the mark's own steps).
            if self.uptime.as_ref().is_none_or(|a| a.boot != boot) {
                self.dirty = true;
            }
            self.uptime = Some(UptimeAnchor {
                boot: boot.to_owned(),
                uptime_ms,
                mark,
            });
        }
    }

    /// Raises the mark to a trusted time (authenticated server time, a signed `issued_at`).
    pub fn raise(&mut self, t: Timestamp) {
        // Nothing past the last writable time is ever kept (it could not be read back).
        if t.is_valid() && self.high_water.is_none_or(|h| t > h) {
            self.high_water = Some(t);
        }
    }

    /// Settles the mark against the office's proven clock: raised to it, or, when the mark ran
    /// ahead of it by more than the tolerance (a clock once set far forward), brought back to
    /// it: the office's time is the authority, so a forward jump cannot lock the device out.
    /// Returns the mark it replaced when it went back.
    pub fn settle(&mut self, server: Timestamp) -> Option<Timestamp> {
        match self.high_water {
            Some(h) if h.0 > server.0.saturating_add(CLOCK_TOLERANCE_MS) => {
                self.high_water = Some(server);
                self.dirty = true;
                Some(h)
            }
            _ => {
                self.raise(server);
                None
            }
        }
    }

    /// Whether the mark should be written now.
    pub fn needs_persist(&self) -> bool {
        match (self.high_water, self.stored) {
            (Some(_), None) => true,
            (Some(h), Some(s)) => self.dirty || h.0.saturating_sub(s.0) >= PERSIST_STEP_MS,
            (None, _) => false,
        }
    }

    /// The mark was written.
    pub fn persisted(&mut self) {
        self.stored = self.high_water;
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timestamp = Timestamp(1_800_000_000_000);

    #[test]
    fn a_set_back_clock_acts_at_the_high_water_and_is_reported_once() {
        let mut g = TimeGuard::default();
        assert_eq!(g.observe(T).effective, T);
        let back = T.plus_seconds(-31 * 86_400);
        let s = g.observe(back);
        assert_eq!((s.effective, s.first_set_back), (T, Some(T)));
        assert_eq!(g.observe(back.plus_seconds(1)).first_set_back, None);
        // Back in step: the next set-back is reported again.
        assert_eq!(g.observe(T.plus_seconds(5)).effective, T.plus_seconds(5));
        assert!(g.observe(back).first_set_back.is_some());
    }

    #[test]
    fn small_disorder_is_absorbed_without_a_report() {
        let mut g = TimeGuard::default();
        g.observe(T);
        let s = g.observe(T.plus_seconds(-30));
        assert_eq!((s.effective, s.first_set_back), (T, None));
    }

    #[test]
    fn uptime_counts_time_offline_within_a_boot_only() {
        let mut g = TimeGuard::default();
        g.observe(T);
        g.uptime("boot-1", 1_000);
        // Two hours of uptime later the wall clock reads a month earlier: the mark moved on.
        g.uptime("boot-1", 1_000 + 7_200_000);
        assert_eq!(g.high_water(), Some(T.plus_seconds(7_200)));
        let s = g.observe(T.plus_seconds(-31 * 86_400));
        assert_eq!(s.effective, T.plus_seconds(7_200));
        assert!(s.first_set_back.is_some());
        // After a reboot the uptime restarts: nothing is counted, nothing goes back.
        g.uptime("boot-2", 5);
        g.uptime("boot-2", 10);
        assert_eq!(g.high_water(), Some(T.plus_millis(7_200_005)));
    }

    #[test]
    fn the_mark_is_written_when_new_and_every_step() {
        let mut g = TimeGuard::default();
        assert!(!g.needs_persist());
        g.observe(T);
        assert!(g.needs_persist());
        g.persisted();
        g.observe(T.plus_seconds(60));
        assert!(!g.needs_persist());
        g.observe(T.plus_millis(PERSIST_STEP_MS));
        assert!(g.needs_persist());
        let back = TimeGuard::restore(&g.to_bytes()).unwrap();
        assert_eq!(back.high_water(), g.high_water());
    }
}
