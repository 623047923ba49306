//! The JNI fast path for events that arrive in bursts (BLE scan results, camera availability
//! callbacks, package broadcasts): one native call per event, primitives in (no JSON), and a
//! packed `long` out that carries the posture bits; the package list is fetched through uniffi
//! only when bit 3 says the posture changed.
//!
//! Java side (`android/.../FastPath.kt`):
//! `external fun beacon(handle: Long, atMs: Long, uuidHigh: Long, uuidLow: Long, major: Int, minor: Int, rssi: Int): Long`
//! `external fun packageEvent(handle: Long, atMs: Long, kind: Int, pkg: String): Long`
//!
//! Result bits: 0-1 verdict (0 allow, 1 deny, 2 warn), 2 violation, 3 posture changed,
//! 4 camera disabled, 5 screen capture disabled. `-1`: unknown or released handle, a destroyed
//! agent, a null package, a time out of range, or a failure (logged; call the uniffi method
//! for the typed error).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use baomi_core::decision::{Decision, Verdict};
use baomi_core::event::{BeaconUuid, Event, EventKind};
use baomi_core::time::Timestamp;
use jni::EnvUnowned;
use jni::objects::{JClass, JString};
use jni::sys::{jint, jlong};

use crate::agent::BaomiAgent;

/// Handles to agents. Weak: a handle never keeps an agent (and its store's lock) alive after
/// the app destroyed it; a call on it then answers -1. One handle per agent, so asking again
/// returns the same number and the table never holds more entries than live agents (plus the
/// dead ones, pruned on every registration).
static AGENTS: LazyLock<Mutex<HashMap<u64, Weak<BaomiAgent>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Most live handles at once (one per open agent is the norm: a store admits one agent).
pub const MAX_HANDLES: usize = 1024;

/// Result bit: violation recorded.
pub const VIOLATION: i64 = 1 << 2;
/// Result bit: posture changed with this event.
pub const POSTURE_CHANGED: i64 = 1 << 3;
/// Result bit: camera disabled.
pub const CAMERA_DISABLED: i64 = 1 << 4;
/// Result bit: screen capture disabled.
pub const SCREEN_CAPTURE_DISABLED: i64 = 1 << 5;

/// The agent's handle (the same one each time); 0 when the table is full.
pub(crate) fn register(agent: &Arc<BaomiAgent>) -> u64 {
    let Ok(mut m) = AGENTS.lock() else { return 0 };
    m.retain(|_, w| w.strong_count() > 0);
    let target = Arc::downgrade(agent);
    if let Some((h, _)) = m.iter().find(|(_, w)| Weak::ptr_eq(w, &target)) {
        return *h;
    }
    if m.len() >= MAX_HANDLES {
        log::error!("fast path: {MAX_HANDLES} live handles; refusing another");
        return 0;
    }
    let h = NEXT.fetch_add(1, Ordering::Relaxed);
    m.insert(h, target);
    h
}

/// Entries in the handle table (live or not yet pruned), for tests.
pub fn handle_count() -> usize {
    AGENTS.lock().map_or(0, |m| m.len())
}

pub(crate) fn release(handle: u64) {
    if let Ok(mut m) = AGENTS.lock() {
        m.remove(&handle);
    }
}

fn agent(handle: jlong) -> Option<Arc<BaomiAgent>> {
    let h = u64::try_from(handle).ok()?;
    AGENTS.lock().ok()?.get(&h)?.upgrade()
}

/// Packs a decision into the result bits.
pub fn pack(d: &Decision) -> i64 {
    let verdict = match d.verdict {
        Verdict::Allow => 0,
        Verdict::Deny => 1,
        Verdict::Warn => 2,
    };
    let mut bits = verdict;
    if d.violation {
        bits |= VIOLATION;
    }
    if d.posture_changed {
        bits |= POSTURE_CHANGED;
    }
    if d.posture.camera_disabled {
        bits |= CAMERA_DISABLED;
    }
    if d.posture.screen_capture_disabled {
        bits |= SCREEN_CAPTURE_DISABLED;
    }
    bits
}

/// The shared body of both entry points, callable from Rust benches and tests.
pub fn decide_packed(handle: jlong, event: &Event) -> jlong {
    let Some(a) = agent(handle) else {
        log::warn!("fast path: unknown handle {handle}");
        return -1;
    };
    match a.decide(event) {
        Ok(d) => pack(&d),
        Err(e) => {
            log::error!("fast path: {e}");
            -1
        }
    }
}

/// A beacon sighting from a BLE scan result.
pub fn beacon_event(
    at_ms: i64,
    uuid_high: i64,
    uuid_low: i64,
    major: i32,
    minor: i32,
    rssi: i32,
) -> Event {
    let uuid = (u128::from(uuid_high as u64) << 64) | u128::from(uuid_low as u64);
    Event {
        at: Timestamp(at_ms),
        kind: EventKind::BeaconSeen {
            uuid: BeaconUuid(uuid),
            major: u16::try_from(major).unwrap_or(0),
            minor: u16::try_from(minor).unwrap_or(0),
            rssi: i16::try_from(rssi).unwrap_or(i16::MIN),
        },
    }
}

/// A package event: 0 launched, 1 camera opened, 2 photo captured, 3 screen captured,
/// 4 installed, 5 removed. `None` for an unknown kind or no package (a null from Java).
pub fn package_event(at_ms: i64, kind: i32, package: Option<String>) -> Option<Event> {
    let package = package?;
    let kind = match kind {
        0 => EventKind::AppLaunched { package },
        1 => EventKind::CameraOpened { package },
        2 => EventKind::PhotoCaptured { package },
        3 => EventKind::ScreenCaptured { package },
        4 => EventKind::AppInstalled { package },
        5 => EventKind::AppRemoved { package },
        _ => return None,
    };
    Some(Event {
        at: Timestamp(at_ms),
        kind,
    })
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_cn_baomi_agent_FastPath_beacon<'caller>(
    mut env: EnvUnowned<'caller>,
    _class: JClass<'caller>,
    handle: jlong,
    at_ms: jlong,
    uuid_high: jlong,
    uuid_low: jlong,
    major: jint,
    minor: jint,
    rssi: jint,
) -> jlong {
    env.with_env(|_env| -> jni::errors::Result<jlong> {
        Ok(decide_packed(
            handle,
            &beacon_event(at_ms, uuid_high, uuid_low, major, minor, rssi),
        ))
    })
    .resolve::<jni::errors::LogErrorAndDefault>()
}

#[unsafe(no_mangle)]
pub extern "system" fn Java_cn_baomi_agent_FastPath_packageEvent<'caller>(
    mut env: EnvUnowned<'caller>,
    _class: JClass<'caller>,
    handle: jlong,
    at_ms: jlong,
    kind: jint,
    package: JString<'caller>,
) -> jlong {
    env.with_env(|env| -> jni::errors::Result<jlong> {
        // A null (or unreadable) package name is a failure (-1), never a default "allow" (0).
        let package = if package.is_null() {
            None
        } else {
            package.try_to_string(env).ok()
        };
        Ok(match package_event(at_ms, kind, package) {
            Some(e) => decide_packed(handle, &e),
            None => -1,
        })
    })
    .resolve::<jni::errors::LogErrorAndDefault>()
}

/// Called by the JVM when `System.loadLibrary("baomi_ffi")` loads this library: routes `log`
/// to logcat on Android (tag `baomi`) and to stderr elsewhere.
#[unsafe(no_mangle)]
pub extern "system" fn JNI_OnLoad(
    _vm: *mut jni::sys::JavaVM,
    _reserved: *mut std::ffi::c_void,
) -> jint {
    init_logging();
    jni::sys::JNI_VERSION_1_6
}

#[cfg(target_os = "android")]
fn init_logging() {
    android_logger::init_once(
        android_logger::Config::default()
            .with_max_level(log::LevelFilter::Info)
            .with_tag("baomi"),
    );
}

#[cfg(not(target_os = "android"))]
fn init_logging() {
    baomi_core::logging::log_to_stderr();
}
