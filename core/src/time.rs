//! Timestamps: RFC 3339 at every edge (JSON, CLI), Unix milliseconds inside so comparisons
//! and deadlines cost one integer compare on the hot path.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// A string that is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not an RFC 3339 timestamp (e.g. 2026-11-27T09:30:00+08:00)")]
pub struct TimestampError {
    value: String,
}

/// A time outside what the agent accepts (see [`Timestamp::checked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("time {ms} ms is outside 1970-01-01T00:00:00Z..=9999-12-31T23:59:59.999Z: refused")]
pub struct TimeRangeError {
    /// The milliseconds given.
    pub ms: i64,
}

const MS_PER_MINUTE: i64 = 60_000;
const MS_PER_DAY: i64 = 86_400_000;

impl Timestamp {
    /// The latest time the agent accepts: 9999-12-31T23:59:59.999Z (the latest RFC 3339 can
    /// write; a later one sealed into the store could never be read back).
    pub const MAX_VALID: Timestamp = Timestamp(253_402_300_799_999);
    /// The earliest: the Unix epoch (where a phone whose clock was reset starts).
    pub const MIN_VALID: Timestamp = Timestamp(0);

    /// A platform's reading in milliseconds, refused outside
    /// [`Timestamp::MIN_VALID`]..=[`Timestamp::MAX_VALID`].
    pub fn checked(ms: i64) -> Result<Self, TimeRangeError> {
        let t = Self(ms);
        if (Self::MIN_VALID..=Self::MAX_VALID).contains(&t) {
            Ok(t)
        } else {
            Err(TimeRangeError { ms })
        }
    }

    /// Whether this time is one the agent accepts.
    pub fn is_valid(self) -> bool {
        (Self::MIN_VALID..=Self::MAX_VALID).contains(&self)
    }

    /// Parses an RFC 3339 timestamp with an explicit offset.
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError {
            value: s.chars().take(64).collect(),
        };
        let dt = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| err())?;
        let ms = dt.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(ms).map(Self).map_err(|_| err())
    }

    /// The current wall-clock time. Only the CLI and host adapters call this; the engine is
    /// always handed its time.
    pub fn now() -> Self {
        let ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        Self(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// From whole seconds since the epoch.
    pub fn from_unix_seconds(s: i64) -> Self {
        Self(s.saturating_mul(1000))
    }

    /// Whole seconds since the epoch (floor).
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This time plus `secs` seconds, saturating.
    pub fn plus_seconds(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// This time plus `ms` milliseconds, saturating.
    pub fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Minute of the week (Monday 00:00 = 0) in the zone `utc_offset_minutes` east of UTC.
    pub fn minute_of_week(self, utc_offset_minutes: i32) -> u32 {
        let local = self
            .0
            .saturating_add(i64::from(utc_offset_minutes) * MS_PER_MINUTE);
        let day = local.div_euclid(MS_PER_DAY);
        // 1970-01-01 was a Thursday: day 0 is weekday 3 when Monday is 0.
        let weekday = (day + 3).rem_euclid(7);
        let minute_of_day = local.rem_euclid(MS_PER_DAY) / MS_PER_MINUTE;
        // Both factors are small and non-negative, so the cast cannot truncate.
        (weekday * 1440 + minute_of_day) as u32
    }

    /// RFC 3339 in UTC with millisecond precision.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|dt| dt.format(&Rfc3339).ok())
            .unwrap_or_else(|| format!("@{}ms", self.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_to_the_same_instant() {
        let a = Timestamp::parse("2016-10-20T23:30:00+08:00").unwrap();
        let b = Timestamp::parse("2016-10-20T15:30:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(b.to_rfc3339(), "2016-10-20T15:30:00Z");
    }

    #[test]
    fn rejects_non_rfc3339() {
        for bad in [
            "",
            "2016-10-20",
            "2016-10-20 15:30:00",
            "yesterday",
            "2016-13-01T00:00:00Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn minute_of_week_uses_the_local_offset() {
        // Monday 2026-11-23 09:00 in Beijing is Monday 01:00 UTC.
        let t = Timestamp::parse("2026-11-23T09:00:00+08:00").unwrap();
        assert_eq!(t.minute_of_week(480), 9 * 60);
        assert_eq!(t.minute_of_week(0), 60);
        // Sunday 23:59 local is the last minute of the week.
        let t = Timestamp::parse("2026-11-29T23:59:00+08:00").unwrap();
        assert_eq!(t.minute_of_week(480), 7 * 1440 - 1);
    }
}
