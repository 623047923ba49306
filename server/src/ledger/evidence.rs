//! `baomi evidence verify`: one violation's evidence, checked offline with the log's and the
//! device's public keys alone (the device's comes from its enrolment leaf, itself proven in
//! the log).
//!
//! 1. The checkpoint verifies under the pinned log key.
//! 2. The record's, the device's and the device checkpoint's leaves are in that log
//!    (inclusion proofs).
//! 3. The stored record is the logged one (its SHA-256 is the leaf's digest).
//! 4. Its link follows the previous link over that digest, and the links of the records after
//!    it lead to the link the device signed in its checkpoint.
//! 5. The device checkpoint is signed by the key the device enrolled with.

use tlog_tiles::tlog;

use super::audit::verify_note;
use super::{EVIDENCE_FORMAT, Evidence, Leaf, ProvenLeaf, log::decode};
use baomi_core::bundle::keys::{PublicKey, hex};
use baomi_core::sync::ledger::{self as chain, DeviceCheckpoint};

/// What a verified package establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Device.
    pub device: String,
    /// Seq.
    pub seq: u64,
    /// The record as the device sent it.
    pub record: String,
    /// The log checkpoint's size.
    pub log_size: u64,
    /// The device checkpoint covering it.
    pub device_checkpoint: u64,
}

fn included(l: &ProvenLeaf, size: u64, root: tlog::Hash, what: &str) -> Result<Leaf, String> {
    let proof = decode(&l.proof)?;
    tlog::check_record(
        &proof,
        size,
        root,
        l.index,
        tlog::record_hash(l.data.as_bytes()),
    )
    .map_err(|_| format!("step 2: the {what} leaf is not in the signed log"))?;
    Leaf::parse(l.data.as_bytes())
}

/// Verifies a package with the pinned log verifier key.
pub fn verify(e: &Evidence, log_key: &str) -> Result<Verified, String> {
    if e.format != EVIDENCE_FORMAT {
        return Err(format!("not an evidence package ({})", e.format));
    }
    let cp = verify_note(&e.checkpoint, log_key).map_err(|r| format!("step 1: {r}"))?;
    let (size, root) = (cp.size(), *cp.hash());
    let Leaf::Record {
        device,
        seq,
        link,
        digest,
        ..
    } = included(&e.record, size, root, "record")?
    else {
        return Err("step 2: the record leaf is not a record".into());
    };
    let Leaf::Device {
        device: enrolled,
        public_key,
        ..
    } = included(&e.device, size, root, "device")?
    else {
        return Err("step 2: the device leaf is not an enrolment".into());
    };
    let Leaf::Checkpoint {
        device: cp_device,
        seq: cp_seq,
        link: cp_link,
        at,
        signature,
        binding,
    } = included(&e.device_checkpoint, size, root, "device checkpoint")?
    else {
        return Err("step 2: the device checkpoint leaf is not a checkpoint".into());
    };
    if enrolled != device || cp_device != device || cp_seq < seq {
        return Err(
            "step 2: the leaves are not of one device, or the checkpoint does not cover the record"
                .into(),
        );
    }
    if !chain::digest_matches_any_suite(e.content.as_bytes(), &digest) {
        return Err("step 3: the record is not the one logged".into());
    }
    let d = chain::parse_link(&digest).ok_or("step 3: bad digest")?;
    let prev = chain::parse_link(&e.previous_link).ok_or("step 4: bad previous link")?;
    if !chain::link_matches_any_suite(&device, seq, &prev, &d, &link)
        && !chain::link_matches_any_suite(&device, seq, &chain::GENESIS, &d, &link)
    {
        return Err("step 4: the record's link does not follow".into());
    }
    let mut cur = chain::parse_link(&link).ok_or("step 4: bad link")?;
    let mut s = seq;
    for data in &e.segment {
        let Ok(Leaf::Record {
            device: dv,
            seq: sq,
            link: l,
            digest: dg,
            ..
        }) = Leaf::parse(data.as_bytes())
        else {
            return Err("step 4: the segment holds something other than records".into());
        };
        let dg = chain::parse_link(&dg).ok_or("step 4: bad digest in the segment")?;
        if dv != device || sq != s + 1 || !chain::link_matches_any_suite(&device, sq, &cur, &dg, &l)
        {
            return Err(format!("step 4: the chain breaks at seq {sq}"));
        }
        cur = chain::parse_link(&l).ok_or("step 4: bad link")?;
        s = sq;
    }
    if s != cp_seq || hex(&cur) != cp_link {
        return Err("step 4: the chain does not reach the device's checkpoint".into());
    }
    let key = PublicKey::from_base64(&public_key).map_err(|_| "step 5: bad device key")?;
    let signed = DeviceCheckpoint {
        seq: cp_seq,
        link: cp_link,
        at,
        signature,
        binding,
    };
    if !signed.verify(&device, &key) {
        return Err("step 5: the device checkpoint is not the device's signature".into());
    }
    Ok(Verified {
        device,
        seq,
        record: e.content.clone(),
        log_size: size,
        device_checkpoint: cp_seq,
    })
}
