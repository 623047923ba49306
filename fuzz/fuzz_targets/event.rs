//! The event decoder, then the engine deciding what decodes (baseline policy, a cleared
//! holder), so every event kind's path through evaluation is reached.
#![no_main]

use std::sync::{Arc, OnceLock};

use baomi_core::compile::{CompiledPolicy, Platform};
use baomi_core::engine::Engine;
use baomi_core::event::parse_jsonl;
use baomi_core::level::Clearance;
use baomi_core::policy::Policy;
use baomi_core::time::Timestamp;
use baomi_fuzz::{BASELINE, NOW_MS};
use libfuzzer_sys::fuzz_target;

fn policy() -> Arc<CompiledPolicy> {
    static P: OnceLock<Arc<CompiledPolicy>> = OnceLock::new();
    P.get_or_init(|| {
        let p = Policy::from_json(BASELINE.as_bytes()).expect("baseline parses");
        Arc::new(CompiledPolicy::compile(p, Platform::Android).expect("baseline compiles"))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(events) = parse_jsonl(text) {
        let mut e = Engine::new(policy(), Clearance::Important, Timestamp(NOW_MS));
        for ev in &events {
            let _ = e.handle(ev);
        }
    }
});
