//! The policy document parser and validator, then compilation for both platforms.
#![no_main]

use baomi_core::compile::{CompiledPolicy, Platform};
use baomi_core::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Policy::from_json(data) {
        for platform in [Platform::Android, Platform::Ios] {
            let _ = CompiledPolicy::compile(p.clone(), platform);
        }
    }
});
