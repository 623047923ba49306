//! The device's public evidence chain (issue 21): what lets anyone holding the device's public
//! key check that the office's copy of its records is complete and unaltered.
//!
//! Each uploaded record carries a public hash link over the previous link and the digest of
//! the record's canonical bytes (the exact JSON the device uploads and the server stores):
//!
//! ```text
//! link(seq) = SHA-256("baomi-chain-v1\n" device "\n" seq "\n" hex(link(seq-1)) "\n" hex(SHA-256(record)))
//! ```
//!
//! with `link(0)` (and the link before the first record after a restored store) 32 zero
//! bytes. Each upload also carries a checkpoint over its last record signed with the device's
//! identity key:
//!
//! ```text
//! "baomi-device-checkpoint-v1\n" device "\n" seq "\n" hex(link(seq)) "\n" at_ms "\n"
//! ```
//!
//! `H` is the trust root's suite hash: SHA-256 (`intl`) or SM3 (`sm`, issue 24), and the
//! checkpoint's signature Ed25519 or SM2 with the device's key of that suite.
//!
//! A checkpoint can also be **bound** to the request that carries it: the device signs
//!
//! ```text
//! "baomi-device-checkpoint-v2\n" device "\n" seq "\n" hex(link(seq)) "\n" at_ms "\n" binding "\n"
//! ```
//!
//! where `binding` is the hex suite hash of that request's signed message
//! ([`super::identity::signed_message`]), and the one signature is both the checkpoint's and
//! the request's ([`super::identity::DeviceIdentity::sign_with_checkpoint`]). A phone then
//! signs once per upload instead of twice (one hardware-keystore operation fewer) and the
//! office verifies once. To anyone checking the chain later the binding is an opaque field of
//! the signed statement: it proves nothing about the chain and needs nothing to be checked.
//!
//! The store's private chain (HMAC tags under the device's own key) and the upload sealing are
//! unchanged: this chain is an addition anyone can verify, not a replacement.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::bundle::keys::{PublicKey, hex};
use crate::store::ViolationRecord;
use crate::suite::Suite;
use crate::time::Timestamp;

use super::identity::DeviceIdentity;

/// The link before a device's first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// The canonical bytes of a record: the JSON the device uploads and the office stores.
pub fn record_bytes(r: &ViolationRecord) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_default()
}

/// The suite hash of a record's canonical bytes.
pub fn record_digest(suite: Suite, bytes: &[u8]) -> [u8; 32] {
    suite.digest(bytes)
}

/// The link of `record` at `seq` of `device` after `prev` (its canonical bytes hashed).
pub fn link_of(
    suite: Suite,
    device: &str,
    seq: u64,
    prev: &[u8; 32],
    record: &ViolationRecord,
) -> [u8; 32] {
    chain_link(
        suite,
        device,
        seq,
        prev,
        &record_digest(suite, &record_bytes(record)),
    )
}

/// The link of record `seq` of `device` after `prev`.
pub fn chain_link(
    suite: Suite,
    device: &str,
    seq: u64,
    prev: &[u8; 32],
    digest: &[u8; 32],
) -> [u8; 32] {
    suite.digest(
        format!(
            "baomi-chain-v1\n{device}\n{seq}\n{}\n{}",
            hex(prev),
            hex(digest)
        )
        .as_bytes(),
    )
}

/// For verifiers of stored history (the office's auditor, an evidence package): whether
/// `link` (hex) is the link of record `seq` after `prev` under either suite, the record's
/// `digest` being under that same suite. A device's chain spans a suite migration (issue 24:
/// links before the rotation are SHA-256, after it SM3); either hash is collision-resistant,
/// so accepting both lets no one forge a link.
pub fn link_matches_any_suite(
    device: &str,
    seq: u64,
    prev: &[u8; 32],
    digest: &[u8; 32],
    link: &str,
) -> bool {
    [Suite::Intl, Suite::Sm]
        .into_iter()
        .any(|s| hex(&chain_link(s, device, seq, prev, digest)) == link)
}

/// Whether `digest` (hex) is a record digest of `bytes` under either suite (see
/// [`link_matches_any_suite`]).
pub fn digest_matches_any_suite(bytes: &[u8], digest: &str) -> bool {
    [Suite::Intl, Suite::Sm]
        .into_iter()
        .any(|s| hex(&record_digest(s, bytes)) == digest)
}

/// Parses 64 hex digits.
pub fn parse_link(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What a device checkpoint states, before it is signed: the device's chain through `seq` ends
/// in `link`, as of `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainEnd {
    /// The last record covered.
    pub seq: u64,
    /// That record's link.
    pub link: [u8; 32],
    /// When the device states it (its acting time).
    pub at: Timestamp,
}

/// A device's signed statement: its chain, through `seq`, ends in `link`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCheckpoint {
    /// The last record covered.
    pub seq: u64,
    /// Hex of that record's link.
    pub link: String,
    /// When the device signed it (its acting time, milliseconds).
    pub at: i64,
    /// Base64 Ed25519 or SM2 signature by the device's identity key over
    /// [`DeviceCheckpoint::message`].
    pub signature: String,
    /// For a checkpoint bound to the request that carried it: the hex suite hash of that
    /// request's signed message (empty for an unbound one, and then not serialised, so an
    /// unbound checkpoint's bytes are what they always were).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub binding: String,
}

/// The bytes an unbound device checkpoint's signature covers.
pub fn checkpoint_message(device: &str, seq: u64, link: &str, at: i64) -> Vec<u8> {
    format!("baomi-device-checkpoint-v1\n{device}\n{seq}\n{link}\n{at}\n").into_bytes()
}

/// The bytes a bound device checkpoint's signature covers (`binding`: the hex hash of the
/// carrying request's signed message).
pub fn bound_checkpoint_message(
    device: &str,
    seq: u64,
    link: &str,
    at: i64,
    binding: &str,
) -> Vec<u8> {
    format!("baomi-device-checkpoint-v2\n{device}\n{seq}\n{link}\n{at}\n{binding}\n").into_bytes()
}

impl DeviceCheckpoint {
    /// Signs `link` as the end of the chain through `seq`.
    pub fn sign(identity: &DeviceIdentity, seq: u64, link: &[u8; 32], at: Timestamp) -> Self {
        let link = hex(link);
        let msg = checkpoint_message(identity.device_id(), seq, &link, at.0);
        Self {
            seq,
            signature: B64.encode(identity.key().sign(&msg)),
            link,
            at: at.0,
            binding: String::new(),
        }
    }

    /// The bytes its signature covers, for `device`: the bound form when it has a binding.
    pub fn message(&self, device: &str) -> Vec<u8> {
        if self.binding.is_empty() {
            checkpoint_message(device, self.seq, &self.link, self.at)
        } else {
            bound_checkpoint_message(device, self.seq, &self.link, self.at, &self.binding)
        }
    }

    /// Whether `key` (the device's) signed this checkpoint for `device`.
    pub fn verify(&self, device: &str, key: &PublicKey) -> bool {
        // A device binds only to a hash: anything else in the field is not its statement.
        if !self.binding.is_empty() && parse_link(&self.binding).is_none() {
            return false;
        }
        let msg = self.message(device);
        B64.decode(self.signature.as_bytes())
            .is_ok_and(|sig| key.verify(&msg, &sig))
    }
}

/// The longest office log checkpoint (a C2SP signed note) a phone carries or the office keeps
/// for it: a checkpoint with its log's signature is about 200 bytes.
pub const MAX_LOG_NOTE: usize = 1024;

/// The tree size of an office log checkpoint, a C2SP `tlog-checkpoint` signed note
/// (`origin\nsize\nbase64(root)\n[extensions]\n\n— signatures`), read without its key: the
/// phone carries the largest it was shown and reports it at each check-in, and only the
/// auditor, holding the log's key, judges it (`baomi audit`). `None`: not such a note, or
/// longer than [`MAX_LOG_NOTE`].
pub fn log_note_size(note: &str) -> Option<u64> {
    if note.len() > MAX_LOG_NOTE {
        return None;
    }
    let (body, signatures) = note.split_once("\n\n")?;
    let mut lines = body.lines();
    let origin = lines.next()?;
    let size = lines.next()?;
    let root = lines.next()?;
    let canonical = size == "0" || (!size.starts_with('0') && size.len() <= 20);
    let root_ok = root.len() == 44 && B64.decode(root.as_bytes()).is_ok_and(|r| r.len() == 32);
    (!origin.is_empty()
        && canonical
        && size.bytes().all(|b| b.is_ascii_digit())
        && root_ok
        && signatures.starts_with("\u{2014} "))
    .then(|| size.parse().ok())
    .flatten()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::bundle::SigningKey;

    const NOTE: &str = "office.example/log\n12\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} office.example/log abcd\n";

    #[test]
    fn a_log_checkpoints_size_is_read_from_its_note_and_anything_else_is_none() {
        assert_eq!(log_note_size(NOTE), Some(12));
        assert_eq!(log_note_size(&NOTE.replace("\n12\n", "\n0\n")), Some(0));
        for bad in [
            "",
            "office.example/log\n12\n",
            &NOTE.replace("\n12\n", "\n012\n"),
            &NOTE.replace("\n12\n", "\n-1\n"),
            &NOTE.replace("\n12\n", "\n99999999999999999999\n"),
            &NOTE.replace("AAAA=", "AAA="),
            &NOTE.replace("\u{2014} ", "- "),
            &NOTE.replace("office.example/log\n12", "\n12"),
            &format!("{NOTE}{}", "x".repeat(MAX_LOG_NOTE)),
        ] {
            assert_eq!(log_note_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_link_depends_on_suite_device_seq_previous_link_and_record() {
        for s in [Suite::Intl, Suite::Sm] {
            let d = [7u8; 32];
            let l = chain_link(s, "a", 1, &GENESIS, &d);
            assert_ne!(l, chain_link(s, "b", 1, &GENESIS, &d));
            assert_ne!(l, chain_link(s, "a", 2, &GENESIS, &d));
            assert_ne!(l, chain_link(s, "a", 1, &l, &d));
            assert_ne!(l, chain_link(s, "a", 1, &GENESIS, &[8u8; 32]));
        }
        let d = [7u8; 32];
        let l = chain_link(Suite::Sm, "a", 1, &GENESIS, &d);
        assert_ne!(l, chain_link(Suite::Intl, "a", 1, &GENESIS, &d));
        assert_eq!(parse_link(&hex(&l)), Some(l));
        assert_eq!(parse_link("zz"), None);
    }

    #[test]
    fn a_checkpoint_verifies_only_for_its_device_and_contents() {
        for s in [Suite::Intl, Suite::Sm] {
            checkpoint_verifies_only_for_its_device_and_contents(s);
        }
    }

    fn checkpoint_verifies_only_for_its_device_and_contents(suite: Suite) {
        let id = DeviceIdentity::new("dev-1".into(), SigningKey::generate_for(suite).unwrap());
        let cp = DeviceCheckpoint::sign(&id, 5, &[1u8; 32], Timestamp(1_000));
        assert!(cp.verify("dev-1", id.public()));
        assert!(!cp.verify("dev-2", id.public()));
        let mut later = cp.clone();
        later.seq = 6;
        assert!(!later.verify("dev-1", id.public()));
    }
}
