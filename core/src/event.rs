//! What the platform reports. The JSON-lines form (one object per line, `at` + `type`) is used
//! by the CLI, the tests and the store; the FFI builds [`Event`]s directly.
//!
//! Signal identities (beacon UUIDs, BSSIDs) are parsed once here, at the edge, so the engine
//! compares integers.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::level::Classification;
use crate::time::Timestamp;

/// One thing that happened on the phone.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When it happened, by the phone's clock.
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
}

/// The kinds of events, with their fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)]
pub enum EventKind {
    /// Full list of installed packages (reconcile).
    AppInventory {
        packages: Vec<String>,
    },
    AppInstalled {
        package: String,
    },
    AppRemoved {
        package: String,
    },
    AppLaunched {
        package: String,
    },
    /// `package` is the app that opened the camera.
    CameraOpened {
        package: String,
    },
    PhotoCaptured {
        package: String,
    },
    ScreenCaptured {
        package: String,
    },
    /// Content handed from one app to another.
    Share {
        from_package: String,
        to_package: String,
        mime: String,
    },
    /// The holder signed for a document (scanned on the phone).
    CustodyStarted {
        document: String,
        classification: Classification,
    },
    /// The holder returned a document.
    CustodyEnded {
        document: String,
    },
    BeaconSeen {
        uuid: BeaconUuid,
        major: u16,
        minor: u16,
        rssi: i16,
    },
    Location {
        lat: f64,
        lon: f64,
        accuracy_m: f64,
    },
    WifiConnected {
        bssid: Bssid,
    },
    WifiDisconnected {},
    NfcTag {
        tag: String,
    },
    /// Something tried to disable the agent: device admin removed, agent killed, clock set
    /// back, an enforcement call that failed.
    Tamper {
        kind: String,
    },
}

impl EventKind {
    /// Every `type` value, for error messages.
    pub const TYPES: [&'static str; 16] = [
        "app_inventory",
        "app_installed",
        "app_removed",
        "app_launched",
        "camera_opened",
        "photo_captured",
        "screen_captured",
        "share",
        "custody_started",
        "custody_ended",
        "beacon_seen",
        "location",
        "wifi_connected",
        "wifi_disconnected",
        "nfc_tag",
        "tamper",
    ];

    /// The `type` of this event.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::AppInventory { .. } => "app_inventory",
            Self::AppInstalled { .. } => "app_installed",
            Self::AppRemoved { .. } => "app_removed",
            Self::AppLaunched { .. } => "app_launched",
            Self::CameraOpened { .. } => "camera_opened",
            Self::PhotoCaptured { .. } => "photo_captured",
            Self::ScreenCaptured { .. } => "screen_captured",
            Self::Share { .. } => "share",
            Self::CustodyStarted { .. } => "custody_started",
            Self::CustodyEnded { .. } => "custody_ended",
            Self::BeaconSeen { .. } => "beacon_seen",
            Self::Location { .. } => "location",
            Self::WifiConnected { .. } => "wifi_connected",
            Self::WifiDisconnected {} => "wifi_disconnected",
            Self::NfcTag { .. } => "nfc_tag",
            Self::Tamper { .. } => "tamper",
        }
    }

    /// Checks ranges the types cannot express.
    pub fn validate(&self) -> Result<(), String> {
        let nonempty = |field: &str, v: &str| {
            if v.is_empty() || v.len() > 1024 {
                Err(format!("`{field}` must be 1 to 1024 characters"))
            } else {
                Ok(())
            }
        };
        match self {
            Self::AppInventory { packages } => {
                packages.iter().try_for_each(|p| nonempty("packages[]", p))
            }
            Self::AppInstalled { package }
            | Self::AppRemoved { package }
            | Self::AppLaunched { package }
            | Self::CameraOpened { package }
            | Self::PhotoCaptured { package }
            | Self::ScreenCaptured { package } => nonempty("package", package),
            Self::Share {
                from_package,
                to_package,
                mime,
            } => {
                nonempty("from_package", from_package)?;
                nonempty("to_package", to_package)?;
                nonempty("mime", mime)
            }
            Self::CustodyStarted { document, .. } | Self::CustodyEnded { document } => {
                nonempty("document", document)
            }
            Self::Location {
                lat,
                lon,
                accuracy_m,
            } => {
                if !(lat.is_finite() && (-90.0..=90.0).contains(lat)) {
                    return Err("`lat` must be between -90 and 90".into());
                }
                if !(lon.is_finite() && (-180.0..=180.0).contains(lon)) {
                    return Err("`lon` must be between -180 and 180".into());
                }
                if !(accuracy_m.is_finite() && *accuracy_m >= 0.0) {
                    return Err("`accuracy_m` must be a non-negative number".into());
                }
                Ok(())
            }
            Self::NfcTag { tag } => nonempty("tag", tag),
            Self::Tamper { kind } => nonempty("kind", kind),
            Self::BeaconSeen { .. } | Self::WifiConnected { .. } | Self::WifiDisconnected {} => {
                Ok(())
            }
        }
    }
}

/// A beacon proximity UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BeaconUuid(pub u128);

/// A Wi-Fi access point's BSSID (48 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bssid(pub u64);

impl fmt::Display for BeaconUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = format!("{:032x}", self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

impl fmt::Display for Bssid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.to_be_bytes();
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[2], b[3], b[4], b[5], b[6], b[7]
        )
    }
}

impl std::str::FromStr for BeaconUuid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::policy::parse_uuid(s)
            .map(Self)
            .ok_or_else(|| format!("`{s}` is not a UUID (8-4-4-4-12 hex)"))
    }
}

impl std::str::FromStr for Bssid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::policy::parse_bssid(s)
            .map(Self)
            .ok_or_else(|| format!("`{s}` is not a BSSID (aa:bb:cc:dd:ee:ff)"))
    }
}

macro_rules! serde_via_display {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_via_display!(BeaconUuid);
serde_via_display!(Bssid);

/// A bad line in an event stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct EventError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub kind: EventErrorKind,
}

/// What is wrong with an event line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventErrorKind {
    /// Not a JSON object.
    #[error("not a JSON object: {0}")]
    Malformed(String),
    /// No `type` field, or not a string.
    #[error("missing string field `type`")]
    MissingType,
    /// A `type` this agent does not know.
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    /// `at` is missing or not RFC 3339.
    #[error("field `at`: {0}")]
    BadTime(String),
    /// Fields of the wrong type, missing or unknown, or out of range.
    #[error("event `{kind}`: {message}")]
    BadFields {
        /// The event's type.
        kind: String,
        /// Details.
        message: String,
    },
}

impl Event {
    /// Parses one JSON object. `line` is used only for the error.
    pub fn from_json_line(line: usize, text: &str) -> Result<Event, EventError> {
        let err = |kind| EventError { line, kind };
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| err(EventErrorKind::Malformed(e.to_string())))?;
        let serde_json::Value::Object(mut map) = value else {
            return Err(err(EventErrorKind::Malformed("expected an object".into())));
        };
        let ty = match map.get("type") {
            Some(serde_json::Value::String(t)) => t.clone(),
            _ => return Err(err(EventErrorKind::MissingType)),
        };
        if !EventKind::TYPES.contains(&ty.as_str()) {
            return Err(err(EventErrorKind::UnknownType(ty)));
        }
        let at = match map.remove("at") {
            Some(serde_json::Value::String(s)) => {
                Timestamp::parse(&s).map_err(|e| err(EventErrorKind::BadTime(e.to_string())))?
            }
            Some(_) => return Err(err(EventErrorKind::BadTime("must be a string".into()))),
            None => return Err(err(EventErrorKind::BadTime("missing".into()))),
        };
        let bad = |message: String| EventErrorKind::BadFields {
            kind: ty.clone(),
            message,
        };
        let kind: EventKind = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| err(bad(e.to_string())))?;
        kind.validate().map_err(|m| err(bad(m)))?;
        Ok(Event { at, kind })
    }

    /// The JSON object form (one line, no trailing newline).
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(&self.kind).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(map) = &mut v {
            map.insert("at".into(), serde_json::Value::String(self.at.to_rfc3339()));
        }
        v.to_string()
    }
}

/// Parses a JSON-lines stream; blank lines are skipped, the first bad line is an error.
pub fn parse_jsonl(text: &str) -> Result<Vec<Event>, EventError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Event::from_json_line(i + 1, l))
        .collect()
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v: serde_json::Value =
            serde_json::from_str(&self.to_json()).map_err(serde::ser::Error::custom)?;
        v.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Event::from_json_line(1, &v.to_string()).map_err(|e| serde::de::Error::custom(e.kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_listed_type() {
        let lines = r#"
{"at":"2026-01-05T09:00:00+08:00","type":"app_inventory","packages":["com.tencent.mm"]}
{"at":"2026-01-05T09:00:00+08:00","type":"app_installed","package":"com.tencent.mm"}
{"at":"2026-01-05T09:00:00+08:00","type":"app_removed","package":"com.tencent.mm"}
{"at":"2026-01-05T09:00:00+08:00","type":"app_launched","package":"com.tencent.mm"}
{"at":"2026-01-05T09:00:00+08:00","type":"camera_opened","package":"com.android.camera"}
{"at":"2026-01-05T09:00:00+08:00","type":"photo_captured","package":"com.android.camera"}
{"at":"2026-01-05T09:00:00+08:00","type":"screen_captured","package":"com.android.systemui"}
{"at":"2026-01-05T09:00:00+08:00","type":"share","from_package":"a.b","to_package":"com.tencent.mm","mime":"image/jpeg"}
{"at":"2026-01-05T09:00:00+08:00","type":"custody_started","document":"D-1","classification":"secret"}
{"at":"2026-01-05T09:00:00+08:00","type":"custody_ended","document":"D-1"}
{"at":"2026-01-05T09:00:00+08:00","type":"beacon_seen","uuid":"F7826DA6-4FA2-4E98-8024-BC5B71E0893E","major":1,"minor":2,"rssi":-60}
{"at":"2026-01-05T09:00:00+08:00","type":"location","lat":39.9,"lon":116.4,"accuracy_m":15}
{"at":"2026-01-05T09:00:00+08:00","type":"wifi_connected","bssid":"AA:BB:CC:DD:EE:FF"}
{"at":"2026-01-05T09:00:00+08:00","type":"wifi_disconnected"}
{"at":"2026-01-05T09:00:00+08:00","type":"nfc_tag","tag":"04A224B2C35E80"}
{"at":"2026-01-05T09:00:00+08:00","type":"tamper","kind":"device_admin_disabled"}
"#;
        let events = parse_jsonl(lines).unwrap();
        assert_eq!(events.len(), EventKind::TYPES.len());
        for (e, ty) in events.iter().zip(EventKind::TYPES) {
            assert_eq!(e.kind.type_name(), ty);
            // The JSON form round-trips, with identities normalised.
            let again = Event::from_json_line(1, &e.to_json()).unwrap();
            assert_eq!(&again, e);
        }
        assert!(
            events[10]
                .to_json()
                .contains("f7826da6-4fa2-4e98-8024-bc5b71e0893e")
        );
        assert!(events[12].to_json().contains("aa:bb:cc:dd:ee:ff"));
    }

    #[test]
    fn bad_lines_are_typed_errors_with_line_numbers() {
        let cases = [
            ("not json", "not a JSON object"),
            ("[1,2]", "expected an object"),
            (
                r#"{"at":"2026-01-05T09:00:00Z"}"#,
                "missing string field `type`",
            ),
            (
                r#"{"at":"2026-01-05T09:00:00Z","type":"teleport"}"#,
                "unknown event type `teleport`",
            ),
            (
                r#"{"type":"app_launched","package":"a.b"}"#,
                "field `at`: missing",
            ),
            (
                r#"{"at":"yesterday","type":"app_launched","package":"a.b"}"#,
                "field `at`",
            ),
            (
                r#"{"at":"2026-01-05T09:00:00Z","type":"app_launched"}"#,
                "missing field `package`",
            ),
            (
                r#"{"at":"2026-01-05T09:00:00Z","type":"app_launched","package":"a.b","x":1}"#,
                "unknown field `x`",
            ),
            (
                r#"{"at":"2026-01-05T09:00:00Z","type":"location","lat":91,"lon":0,"accuracy_m":1}"#,
                "`lat`",
            ),
            (
                r#"{"at":"2026-01-05T09:00:00Z","type":"wifi_connected","bssid":"nope"}"#,
                "not a BSSID",
            ),
            (
                r#"{"at":"2026-01-05T09:00:00Z","type":"custody_started","document":"D","classification":"public"}"#,
                "unknown variant",
            ),
        ];
        for (line, want) in cases {
            let text = format!("\n\n{line}\n");
            let err = parse_jsonl(&text).unwrap_err();
            assert_eq!(err.line, 3, "{line}");
            assert!(err.to_string().contains(want), "{line}: {err}");
        }
    }
}
