//! Signed envelopes with a valid signer, so paths past the signature check are reached: a
//! policy bundle, a trust root (first one and rotation), a custody record, an assignment
//! record (its payload parsed and checked). The seeds are real
//! envelopes signed by the fixture office key (fuzz/seeds.sh).
#![no_main]

use baomi_core::bundle::{Installed, TrustRoot, read_unverified, verify_bundle, verify_signed};
use baomi_core::sync::assignment::{read_verified_assignment_record, verify_assignment_record};
use baomi_core::sync::custody::verify_custody_record;
use baomi_core::time::Timestamp;
use baomi_fuzz::{NOW_MS, trust_root};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let root = trust_root();
    let _ = verify_bundle(data, &root, &Installed::default(), Timestamp(NOW_MS));
    let _ = verify_signed(data, &root);
    let _ = read_unverified(data);
    let _ = TrustRoot::from_self_signed(data);
    let _ = root.rotate(data);
    let _ = verify_custody_record(data, &root);
    let _ = verify_assignment_record(data, &root);
    let _ = read_verified_assignment_record(data);
});
