//! Issue 19, "the FFI boundary" and "time": what a careless (or hostile) platform can hand the
//! core. Each of these got through before: a time past 9999 sealed into the store bricked it
//! (`stored clock does not parse`), a second `open` on one directory interleaved writes, a
//! destroyed agent kept recording through an old fast-path handle, a null package name on the
//! JNI path answered 0 (allow), and text that is not UTF-8 was stored.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap is a failed test"
)]

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use baomi_core::bundle::trust::{KeyEntry, TrustRootDoc};
use baomi_core::bundle::{SigningKey, TrustRoot, sign_bundle};
use baomi_core::event::Event;
use baomi_core::level::Clearance;
use baomi_core::policy::Policy;
use baomi_core::policy::model::HolderAssignment;
use baomi_core::time::Timestamp;
use baomi_ffi::jni_fast_path::{decide_packed, handle_count, package_event};
use baomi_ffi::platform::Clock;
use baomi_ffi::types::PlatformKind;
use baomi_ffi::{BaomiAgent, BaomiError};
use common::Keys;

const BASELINE: &str = include_str!("../../../policies/baseline.json");

/// A clock the test moves.
#[derive(Debug)]
struct TestClock(AtomicI64);
impl Clock for TestClock {
    fn now_ms(&self) -> Result<i64, BaomiError> {
        Ok(self.0.load(Ordering::SeqCst))
    }
}

const T0: i64 = 1_800_000_000_000;

fn open(dir: &std::path::Path, clock: &Arc<TestClock>) -> Result<Arc<BaomiAgent>, BaomiError> {
    BaomiAgent::open(
        dir.join("store").display().to_string(),
        Arc::new(Keys(Mutex::new(vec![]))),
        PlatformKind::Android,
        clock.clone(),
    )
}

/// An agent with the baseline installed (holder assigned).
fn ready(dir: &std::path::Path, clock: &Arc<TestClock>) -> Arc<BaomiAgent> {
    let a = open(dir, clock).unwrap();
    let key = SigningKey::generate().unwrap();
    let doc = TrustRootDoc {
        version: 1,
        issued_at: Timestamp(T0 - 60_000),
        keys: vec![KeyEntry::of(key.public())],
        threshold: 1,
        registry: None,
        suite: Default::default(),
        sm2_id: None,
        personnel: None,
        upload_key: None,
        expires_at: None,
        policy: None,
    };
    a.install_trust_root(TrustRoot::sign(&doc, &[&key]).to_json().into_bytes())
        .unwrap();
    let mut p = Policy::from_json(BASELINE.as_bytes()).unwrap();
    p.holders = vec![HolderAssignment {
        holder: "hong".into(),
        clearance: Clearance::Important,
        devices: vec![a.status().unwrap().device_id],
    }];
    let t = Timestamp(T0);
    let b = sign_bundle(&p, 1, t, t.plus_seconds(30 * 86_400), &[&key]).unwrap();
    a.install_bundle(b.to_json().into_bytes()).unwrap();
    a
}

fn launch(at_ms: i64) -> Event {
    package_event(at_ms, 0, Some("com.tencent.mm".into())).unwrap()
}

#[test]
fn times_past_9999_or_before_1970_are_refused_and_never_brick_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(T0)));
    let a = ready(dir.path(), &clock);
    let h = i64::try_from(a.clone().fast_path_handle()).unwrap();
    for bad in [i64::MAX, 253_402_300_800_000, -1, i64::MIN] {
        // The JNI fast path: refused (-1), nothing sealed.
        assert_eq!(decide_packed(h, &launch(bad)), -1, "{bad}");
        // The platform clock: a typed error.
        clock.0.store(bad, Ordering::SeqCst);
        assert!(
            matches!(a.tick(), Err(BaomiError::InvalidInput { .. })),
            "{bad}"
        );
        clock.0.store(T0 + 1_000, Ordering::SeqCst);
    }
    // The monotonic clock: a negative uptime is refused, a huge one moves nothing past 9999.
    assert!(matches!(
        a.observe_uptime("boot-1".into(), -5),
        Err(BaomiError::InvalidInput { .. })
    ));
    a.observe_uptime("boot-1".into(), 1).unwrap();
    a.observe_uptime("boot-1".into(), i64::MAX).unwrap();
    // Still recording, and the store opens again.
    assert!(decide_packed(h, &launch(T0 + 2_000)) >= 0);
    drop(a);
    let a = open(dir.path(), &clock).unwrap();
    assert_eq!(a.verify_log().unwrap().head, 1);
}

#[test]
fn a_second_open_of_one_store_is_refused_and_a_destroyed_agent_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(T0)));
    let a = ready(dir.path(), &clock);
    match open(dir.path(), &clock) {
        Err(BaomiError::Store { reason }) => assert!(reason.contains("another agent"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let h = i64::try_from(a.clone().fast_path_handle()).unwrap();
    // One handle per agent however often it is asked for: nothing grows.
    for _ in 0..10_000 {
        assert_eq!(i64::try_from(a.clone().fast_path_handle()).unwrap(), h);
    }
    assert!(handle_count() < 16, "{}", handle_count());
    assert!(decide_packed(h, &launch(T0 + 1)) >= 0);
    // The app destroys the agent: the handle no longer reaches it, and the store is free.
    drop(a);
    assert_eq!(decide_packed(h, &launch(T0 + 2)), -1);
    let again = open(dir.path(), &clock).unwrap();
    assert_eq!(again.verify_log().unwrap().head, 1);
}

#[test]
fn a_null_package_name_on_the_fast_path_is_a_failure_not_an_allow() {
    assert!(package_event(T0, 0, None).is_none());
    assert!(package_event(T0, 9, Some("x".into())).is_none());
}

#[test]
fn text_that_is_not_utf8_is_refused_before_it_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(T0)));
    let a = ready(dir.path(), &clock);
    // What uniffi's generated lift hands the core for a buffer a caller filled by hand: the
    // bytes unchecked.
    let bad = || {
        // SAFETY: deliberately invalid UTF-8, to stand for bytes a caller wrote past the
        // generated encoders; the core must look at the bytes before using them as text.
        unsafe { String::from_utf8_unchecked(vec![b'c', 0xff, 0xfe]) }
    };
    for r in [
        a.report_enforcement_failure(bad(), "detail".into())
            .map(|_| ()),
        a.report_enforcement_failure("camera".into(), bad())
            .map(|_| ()),
        a.handle_event_json(bad()).map(|_| ()),
        a.observe_uptime(bad(), 1),
    ] {
        assert!(matches!(r, Err(BaomiError::InvalidInput { .. })), "{r:?}");
    }
    // Nothing was stored; the log reads.
    assert!(a.violations(0, 100).unwrap().is_empty());
    a.export_violations_jsonl().unwrap();
}
