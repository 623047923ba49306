//! `baomi audit`: an independent check of the office's ledger, by an auditor who trusts
//! nothing the office says but its log key (pinned) and what the phones signed.
//!
//! 1. The checkpoint's signature verifies under the pinned log key.
//! 2. The log is consistent with the last checkpoint this auditor verified (no rollback, no
//!    fork: a consistency proof checks against both roots).
//! 3. The leaves hash to the checkpoint's root.
//! 4. Every device's chain, from the leaves alone: each record's link follows the previous
//!    one; each device checkpoint is the device's signature (under the key of its enrolment
//!    leaf) over its records' link; every seq up to the newest checkpoint is there.
//! 5. What the office shows is in the log: every stored violation row is a logged record with
//!    the same bytes and rules, and every logged record is still a row.
//!
//! Findings name the device and seq (or the checkpoint); the state advances only past a
//! consistent log, and a witness cosigns only such a checkpoint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tlog_tiles::checkpoint::Checkpoint;
use tlog_tiles::tlog::{self, Hash, HashReader};

use super::{Leaf, LeafPage, ProofAnswer, RecordPage, SeenPage, log::decode};
use baomi_core::bundle::keys::{PublicKey, hex};
use baomi_core::suite::Suite;
use baomi_core::sync::ledger::{self as chain, DeviceCheckpoint};

/// What the auditor needs from an office (a live server over HTTP, or in process).
pub trait Source {
    /// The newest signed checkpoint (note text).
    fn checkpoint(&self) -> Result<String, String>;
    /// Leaves from `start`.
    fn leaves(&self, start: u64, limit: u64) -> Result<LeafPage, String>;
    /// Consistency proof between two sizes.
    fn consistency(&self, from: u64, to: u64) -> Result<ProofAnswer, String>;
    /// Stored violations after `(device, seq)`.
    fn records(&self, after_device: &str, after_seq: i64) -> Result<RecordPage, String>;
    /// The officers' audit log as the office shows it, newest first, before `seq`.
    fn audit_log(&self, before: Option<i64>) -> Result<Vec<AuditEntry>, String>;
    /// The log checkpoints the phones report carrying, by device after `after_device`.
    fn seen(&self, after_device: &str) -> Result<SeenPage, String>;
}

use crate::console::officers::AuditEntry;

/// What an auditor keeps between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AuditState {
    /// The newest checkpoint verified (note text), if any.
    pub note: Option<String>,
    /// Its size.
    pub size: u64,
}

/// One thing wrong, named precisely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// The checkpoint is not signed by the pinned log key.
    #[error("the checkpoint is not signed by the log key: {reason}")]
    BadCheckpointSignature {
        /// Why.
        reason: String,
    },
    /// The log is smaller than one this auditor verified: a restored or rolled-back database.
    #[error("rollback: the log has {now} leaves, but this auditor verified {seen}")]
    Rollback {
        /// Size verified before.
        seen: u64,
        /// Size served now.
        now: u64,
    },
    /// The log is not an extension of the one this auditor verified: a forked history.
    #[error(
        "fork: the checkpoint of size {now} is not consistent with the verified one of size {seen}"
    )]
    Fork {
        /// Size verified before.
        seen: u64,
        /// Size served now.
        now: u64,
    },
    /// The leaves served do not hash to the signed root.
    #[error("the {size} leaves served do not hash to the checkpoint's root")]
    LeavesDoNotMatchRoot {
        /// Checkpoint size.
        size: u64,
    },
    /// A leaf that does not parse.
    #[error("leaf {index} is malformed")]
    MalformedLeaf {
        /// Its index.
        index: u64,
    },
    /// Records of a device the log never enrolled.
    #[error("device {device}: records but no enrolment in the log")]
    UnknownDevice {
        /// Device.
        device: String,
    },
    /// A record whose link does not follow the previous one.
    #[error("device {device} seq {seq}: the chain is broken (its link does not follow)")]
    ChainBroken {
        /// Device.
        device: String,
        /// Seq.
        seq: u64,
    },
    /// A device checkpoint that is not the device's signature, or not over its records.
    #[error("device {device} checkpoint at seq {seq}: {reason}")]
    BadDeviceCheckpoint {
        /// Device.
        device: String,
        /// Seq.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// A seq the device signed for but the log does not hold: a dropped batch.
    #[error(
        "device {device} seq {seq}: missing from the log, below the device's checkpoint at {checkpoint}"
    )]
    MissingRecord {
        /// Device.
        device: String,
        /// First missing seq.
        seq: u64,
        /// The device checkpoint that proves it existed.
        checkpoint: u64,
    },
    /// A logged record no longer among the office's violations.
    #[error("device {device} seq {seq}: deleted from the office's records")]
    RowDeleted {
        /// Device.
        device: String,
        /// Seq.
        seq: u64,
    },
    /// Every logged record of a device is gone from the office's records.
    #[error("device {device}: all {count} records deleted from the office's records")]
    DeviceRowsDeleted {
        /// Device.
        device: String,
        /// How many.
        count: u64,
    },
    /// A row whose stored record is not the logged one.
    #[error("device {device} seq {seq}: the stored record was edited")]
    RowEdited {
        /// Device.
        device: String,
        /// Seq.
        seq: u64,
    },
    /// A row holding another logged record of the device: rows swapped or reordered.
    #[error("device {device} seq {seq}: holds the record logged as seq {holds}")]
    RowsSwapped {
        /// Device.
        device: String,
        /// Seq.
        seq: u64,
        /// Whose record it holds.
        holds: u64,
    },
    /// A row whose rules column (what the console lists) disagrees with its record.
    #[error("device {device} seq {seq}: the rules shown ({shown}) are not the record's")]
    RulesEdited {
        /// Device.
        device: String,
        /// Seq.
        seq: u64,
        /// What the row says.
        shown: String,
    },
    /// A purge of records younger than the minimum retention: a deletion by another name.
    #[error("a purge at {at} of records received before {before} is under the minimum retention")]
    PurgeTooRecent {
        /// The purge's cutoff (ms).
        before: i64,
        /// When it ran (ms).
        at: i64,
    },
    /// An audit-log entry in the ledger that the office no longer shows.
    #[error(
        "audit log: the entry of {at} ({officer}: {action}) was deleted from the office's audit log"
    )]
    AuditEntryDeleted {
        /// When (ms).
        at: i64,
        /// Who.
        officer: String,
        /// What.
        action: String,
    },
    /// An audit-log entry the office shows that the ledger does not hold (or holds otherwise).
    #[error("audit log: entry #{seq} ({officer}: {action}) is not in the log as shown")]
    AuditEntryNotInLog {
        /// Its position in the office's audit log.
        seq: i64,
        /// Who.
        officer: String,
        /// What.
        action: String,
    },
    /// A row the office shows that the log does not hold.
    #[error("device {device} seq {seq}: shown by the office but not in the log")]
    NotInLog {
        /// Device.
        device: String,
        /// Seq.
        seq: u64,
    },
    /// A phone carries a checkpoint of this log larger than the log now is: the office
    /// signed that size, then went back (a restored database), whatever this auditor saw.
    #[error(
        "rollback: device {device} carries the log's signed checkpoint of size {carried}, but the log has {now} leaves"
    )]
    CarriedRollback {
        /// The device that reported it.
        device: String,
        /// The size it carries.
        carried: u64,
        /// Size served now.
        now: u64,
    },
    /// A phone carries a checkpoint of this log whose root the log's leaves do not hash to:
    /// the office showed the phones another history than this auditor.
    #[error(
        "fork: device {device} carries the log's signed checkpoint of size {carried}, and this log's first {carried} leaves do not hash to its root"
    )]
    CarriedFork {
        /// The device that reported it.
        device: String,
        /// The size it carries.
        carried: u64,
    },
    /// A phone reports carrying a checkpoint the log key did not sign (a hostile phone, or
    /// an office that showed its phones a checkpoint of another key): proves nothing about
    /// the log, but someone lied.
    #[error("device {device} reports carrying a checkpoint not signed by the log key: {reason}")]
    CarriedUnsigned {
        /// The device that reported it.
        device: String,
        /// Why.
        reason: String,
    },
}

impl Finding {
    /// Whether the log itself is untrustworthy (the state does not advance, no cosignature).
    pub fn is_log_level(&self) -> bool {
        matches!(
            self,
            Finding::BadCheckpointSignature { .. }
                | Finding::Rollback { .. }
                | Finding::Fork { .. }
                | Finding::LeavesDoNotMatchRoot { .. }
                | Finding::CarriedRollback { .. }
                | Finding::CarriedFork { .. }
        )
    }
}

/// One device's chain as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeviceChain {
    /// Records logged.
    pub records: u64,
    /// The newest seq the device signed a checkpoint for.
    pub checkpoint: u64,
    /// Every record through the checkpoint is logged, linked and shown.
    pub complete: bool,
    /// Rows the office shows past the newest logged record: received after the checkpoint
    /// (the next audit finds them in the log, or reports them).
    #[serde(default)]
    pub pending: u64,
}

/// What one audit found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// The checkpoint audited: its size.
    pub size: u64,
    /// Its root (base64).
    pub root: String,
    /// Per device.
    pub devices: BTreeMap<String, DeviceChain>,
    /// Everything wrong (empty: the ledger verified).
    pub findings: Vec<Finding>,
    /// The checkpoint audited, as served (note text; cosigned only when consistent).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl AuditReport {
    /// No findings.
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Parses a signed note's checkpoint body without verifying it.
pub fn parse_note_checkpoint(note: &str) -> Result<Checkpoint, String> {
    let body = note
        .split_once("\n\n")
        .map(|(b, _)| format!("{b}\n"))
        .ok_or_else(|| "not a signed note".to_owned())?;
    Checkpoint::from_bytes(body.as_bytes()).map_err(|e| e.to_string())
}

/// Verifies a note with the pinned verifier key and returns its checkpoint.
pub fn verify_note(note: &str, verifier_key: &str) -> Result<Checkpoint, String> {
    let verifier = signed_note::StandardVerifier::new(verifier_key.trim())
        .map_err(|e| format!("not a verifier key: {e}"))?;
    let list = signed_note::VerifierList::new(vec![Box::new(verifier)]);
    let parsed = signed_note::Note::from_bytes(note.as_bytes()).map_err(|e| e.to_string())?;
    let (verified, _) = parsed.verify(&list).map_err(|e| e.to_string())?;
    if verified.is_empty() {
        return Err("no signature by the log key".into());
    }
    Checkpoint::from_bytes(parsed.text()).map_err(|e| e.to_string())
}

/// In-memory stored hashes, appended in leaf order.
#[derive(Default)]
struct Memory(Vec<Hash>);

impl HashReader for Memory {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|i| {
                usize::try_from(*i)
                    .ok()
                    .and_then(|i| self.0.get(i).copied())
                    .ok_or(tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Runs steps 1-5 against `source` with the pinned `verifier_key`, from `state`; returns the
/// report and the state to keep (advanced only past a consistent log).
pub fn audit(
    source: &dyn Source,
    verifier_key: &str,
    state: &AuditState,
) -> Result<(AuditReport, AuditState), String> {
    audit_with_carried(source, verifier_key, state, &[])
}

/// [`audit`], also checking log checkpoints taken from phones directly (`(name, note)`: an
/// inquiry reads a seized phone's with `baomi agent status`), beside those the office says
/// its phones reported.
pub fn audit_with_carried(
    source: &dyn Source,
    verifier_key: &str,
    state: &AuditState,
    from_phones: &[(String, String)],
) -> Result<(AuditReport, AuditState), String> {
    let mut findings = Vec::new();
    // 0. what the phones carry, read before the checkpoint: an honest office signed each of
    // those notes before the checkpoint it serves next.
    let mut carried = carried_checkpoints(source)?;
    carried.extend_from_slice(from_phones);
    // 1. signature
    let note = source.checkpoint()?;
    let cp = match verify_note(&note, verifier_key) {
        Ok(cp) => cp,
        Err(reason) => {
            findings.push(Finding::BadCheckpointSignature { reason });
            let report = AuditReport {
                size: 0,
                root: String::new(),
                devices: BTreeMap::new(),
                findings,
                note,
            };
            return Ok((report, state.clone()));
        }
    };
    let (size, root) = (cp.size(), *cp.hash());
    // 2. consistency with what this auditor verified
    if let Some(prev) = &state.note {
        let old = verify_note(prev, verifier_key)?;
        if size < old.size() {
            findings.push(Finding::Rollback {
                seen: old.size(),
                now: size,
            });
        } else {
            let proof = decode(&source.consistency(old.size(), size)?.hashes)?;
            let ok = if old.size() == 0 {
                true
            } else if old.size() == size {
                *old.hash() == root
            } else {
                tlog::check_tree(&proof, size, root, old.size(), *old.hash()).is_ok()
            };
            if !ok {
                findings.push(Finding::Fork {
                    seen: old.size(),
                    now: size,
                });
            }
        }
    }
    // 3. the leaves hash to the root
    let mut memory = Memory::default();
    let mut leaves: Vec<(u64, String)> = Vec::new();
    let mut next = 0u64;
    while next < size {
        let page = source.leaves(next, 1000)?;
        if page.leaves.is_empty() {
            break;
        }
        for (n, data) in page.leaves {
            if n != next {
                return Err(format!("leaf {n} served where {next} was asked"));
            }
            let stored =
                tlog::stored_hashes(n, data.as_bytes(), &memory).map_err(|e| e.to_string())?;
            memory.0.extend(stored);
            leaves.push((n, data));
            next += 1;
        }
    }
    let computed = if next == size {
        root_at(size, &memory).map_err(|e| e.to_string())?
    } else {
        Hash([0; 32])
    };
    if computed != root {
        findings.push(Finding::LeavesDoNotMatchRoot { size });
    } else {
        // 3b. every checkpoint a phone carries is a prefix of this log
        findings.extend(check_carried(&carried, verifier_key, size, &memory));
    }
    // 4. chains
    let mut keys: BTreeMap<String, Option<PublicKey>> = BTreeMap::new();
    let mut records: BTreeMap<String, BTreeMap<u64, (String, String)>> = BTreeMap::new();
    let mut checkpoints: BTreeMap<String, Vec<DeviceCheckpoint>> = BTreeMap::new();
    let mut received: BTreeMap<(String, u64), i64> = BTreeMap::new();
    // Audit-log entries in the ledger: (at, officer, action, detail) -> how many.
    let mut logged_audit: BTreeMap<(i64, String, String, String), u64> = BTreeMap::new();
    let mut purged_before = i64::MIN;
    for (index, data) in &leaves {
        match Leaf::parse(data.as_bytes()) {
            Ok(Leaf::Device {
                device, public_key, ..
            }) => {
                keys.insert(device, PublicKey::from_base64(&public_key).ok());
            }
            Ok(Leaf::Record {
                device,
                seq,
                link,
                digest,
                received_at,
            }) => {
                received.insert((device.clone(), seq), received_at);
                records
                    .entry(device)
                    .or_default()
                    .insert(seq, (link, digest));
            }
            Ok(Leaf::Audit {
                at,
                officer,
                action,
                detail,
            }) => {
                *logged_audit
                    .entry((at, officer, action, detail))
                    .or_default() += 1;
            }
            Ok(Leaf::Purge { before, at, .. }) => {
                if before > at - super::MIN_RETENTION_MS {
                    findings.push(Finding::PurgeTooRecent { before, at });
                } else {
                    purged_before = purged_before.max(before);
                }
            }
            Ok(Leaf::Checkpoint {
                device,
                seq,
                link,
                at,
                signature,
                binding,
            }) => checkpoints
                .entry(device)
                .or_default()
                .push(DeviceCheckpoint {
                    seq,
                    link,
                    at,
                    signature,
                    binding,
                }),
            Ok(_) => {}
            Err(_) => findings.push(Finding::MalformedLeaf { index: *index }),
        }
    }
    let mut devices: BTreeMap<String, DeviceChain> = BTreeMap::new();
    let names: std::collections::BTreeSet<String> =
        records.keys().chain(checkpoints.keys()).cloned().collect();
    for device in names {
        let mut chain_ok = true;
        let Some(Some(key)) = keys.get(&device) else {
            findings.push(Finding::UnknownDevice {
                device: device.clone(),
            });
            continue;
        };
        let recs = records.get(&device).cloned().unwrap_or_default();
        // Links: each follows the previous record's, or restarts from genesis (a restored
        // phone store); a restart cannot hide an edit, as the device's checkpoint covering
        // the record would no longer match.
        let mut prev: Option<(u64, [u8; 32])> = None;
        for (seq, (link, digest)) in &recs {
            let Some(d) = chain::parse_link(digest) else {
                chain_ok = false;
                findings.push(Finding::ChainBroken {
                    device: device.clone(),
                    seq: *seq,
                });
                continue;
            };
            // After a gap (a restore, a dropped batch) a record starts a segment: the gap is
            // named below, from the device's checkpoints, and the segment is checked against
            // them like any other.
            let follows = match prev {
                Some((p, l)) if p + 1 == *seq => {
                    chain::link_matches_any_suite(&device, *seq, &l, &d, link)
                        || chain::link_matches_any_suite(&device, *seq, &chain::GENESIS, &d, link)
                }
                Some(_) => true,
                None if *seq == 1 => {
                    chain::link_matches_any_suite(&device, *seq, &chain::GENESIS, &d, link)
                }
                None => true,
            };
            if !follows {
                chain_ok = false;
                findings.push(Finding::ChainBroken {
                    device: device.clone(),
                    seq: *seq,
                });
            }
            prev = chain::parse_link(link).map(|l| (*seq, l));
        }
        let mut newest = 0;
        for cp in checkpoints
            .get(&device)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let bad = |reason: &str| Finding::BadDeviceCheckpoint {
                device: device.clone(),
                seq: cp.seq,
                reason: reason.into(),
            };
            if !cp.verify(&device, key) {
                chain_ok = false;
                findings.push(bad("not signed by the device's enrolled key"));
                continue;
            }
            match recs.get(&cp.seq) {
                Some((link, _)) if *link == cp.link => {}
                Some(_) => {
                    chain_ok = false;
                    findings.push(bad("the device signed another chain than the log holds"));
                }
                None => {}
            }
            newest = newest.max(cp.seq);
        }
        // Completeness: every seq the device signed for is logged.
        if let Some(first_missing) = (1..=newest).find(|s| !recs.contains_key(s)) {
            chain_ok = false;
            findings.push(Finding::MissingRecord {
                device: device.clone(),
                seq: first_missing,
                checkpoint: newest,
            });
        }
        devices.insert(
            device,
            DeviceChain {
                records: recs.len() as u64,
                checkpoint: newest,
                complete: chain_ok,
                pending: 0,
            },
        );
    }
    // 5. what the office shows
    let mut shown: BTreeMap<String, BTreeMap<u64, (String, String)>> = BTreeMap::new();
    let mut unlinked: std::collections::BTreeSet<(String, u64)> = Default::default();
    let (mut after_device, mut after_seq) = (String::new(), 0i64);
    loop {
        let page = source.records(&after_device, after_seq)?;
        let Some(last) = page.records.last() else {
            break;
        };
        (after_device, after_seq) = (
            last.device.clone(),
            i64::try_from(last.seq).unwrap_or(i64::MAX),
        );
        for r in page.records {
            if r.link.is_empty() {
                unlinked.insert((r.device.clone(), r.seq));
            }
            shown
                .entry(r.device)
                .or_default()
                .insert(r.seq, (r.rules, r.record));
        }
    }
    let purged = |device: &str, seq: u64| {
        received
            .get(&(device.to_owned(), seq))
            .is_some_and(|r| *r < purged_before)
    };
    for (device, recs) in &records {
        let rows = shown.get(device);
        let kept = recs.keys().filter(|s| !purged(device, **s)).count() as u64;
        if kept == 0 {
            continue;
        }
        if rows.is_none_or(BTreeMap::is_empty) {
            findings.push(Finding::DeviceRowsDeleted {
                device: device.clone(),
                count: kept,
            });
            mark_incomplete(&mut devices, device);
            continue;
        }
        let by_digest: BTreeMap<&str, u64> =
            recs.iter().map(|(s, (_, d))| (d.as_str(), *s)).collect();
        for (seq, (_, digest)) in recs {
            let finding = match rows.and_then(|r| r.get(seq)) {
                None if purged(device, *seq) => None,
                None => Some(Finding::RowDeleted {
                    device: device.clone(),
                    seq: *seq,
                }),
                Some((rules, record)) => {
                    if !chain::digest_matches_any_suite(record.as_bytes(), digest) {
                        let holds = [Suite::Intl, Suite::Sm].into_iter().find_map(|s| {
                            by_digest
                                .get(hex(&chain::record_digest(s, record.as_bytes())).as_str())
                                .copied()
                        });
                        Some(match holds {
                            Some(holds) => Finding::RowsSwapped {
                                device: device.clone(),
                                seq: *seq,
                                holds,
                            },
                            None => Finding::RowEdited {
                                device: device.clone(),
                                seq: *seq,
                            },
                        })
                    } else if record_rules(record).as_deref() != Some(rules.as_str()) {
                        Some(Finding::RulesEdited {
                            device: device.clone(),
                            seq: *seq,
                            shown: rules.clone(),
                        })
                    } else {
                        None
                    }
                }
            };
            if let Some(f) = finding {
                findings.push(f);
                mark_incomplete(&mut devices, device);
            }
        }
    }
    for (device, rows) in &shown {
        let newest = records
            .get(device)
            .and_then(|r| r.keys().next_back().copied())
            .unwrap_or(0);
        for seq in rows.keys() {
            if *seq > newest && !unlinked.contains(&(device.clone(), *seq)) {
                // Received after this checkpoint was signed: in the next one.
                if let Some(d) = devices.get_mut(device) {
                    d.pending += 1;
                }
                continue;
            }
            if !records.get(device).is_some_and(|r| r.contains_key(seq)) {
                findings.push(Finding::NotInLog {
                    device: device.clone(),
                    seq: *seq,
                });
                mark_incomplete(&mut devices, device);
            }
        }
    }
    // The audit log the office shows, against the ledger's entries. Entries after the newest
    // logged one were written after this checkpoint (this audit's own login among them).
    let newest_logged = logged_audit.keys().map(|k| k.0).max().unwrap_or(i64::MIN);
    let mut before = None;
    let mut unmatched = logged_audit.clone();
    loop {
        let page = source.audit_log(before)?;
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        for e in &page {
            if e.at > newest_logged {
                continue;
            }
            let key = (e.at, e.officer.clone(), e.action.clone(), e.detail.clone());
            match unmatched.get_mut(&key) {
                Some(n) if *n > 0 => *n -= 1,
                _ => findings.push(Finding::AuditEntryNotInLog {
                    seq: e.seq,
                    officer: e.officer.clone(),
                    action: e.action.clone(),
                }),
            }
        }
    }
    for ((at, officer, action, _), n) in unmatched {
        for _ in 0..n {
            findings.push(Finding::AuditEntryDeleted {
                at,
                officer: officer.clone(),
                action: action.clone(),
            });
        }
    }
    let consistent = !findings.iter().any(Finding::is_log_level);
    let new_state = if consistent {
        AuditState {
            note: Some(note.clone()),
            size,
        }
    } else {
        state.clone()
    };
    let root = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(root.0)
    };
    Ok((
        AuditReport {
            size,
            root,
            devices,
            findings,
            note,
        },
        new_state,
    ))
}

/// Every checkpoint the phones report carrying (device, note), page by page.
fn carried_checkpoints(source: &dyn Source) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = source.seen(&after)?;
        let Some(last) = page.devices.last() else {
            break;
        };
        if last.device <= after {
            return Err("the office's list of carried checkpoints does not advance".into());
        }
        after.clone_from(&last.device);
        out.extend(page.devices.into_iter().map(|s| (s.device, s.note)));
    }
    Ok(out)
}

/// The root of the log's first `n` leaves, from their stored hashes in `memory`.
fn root_at(n: u64, memory: &Memory) -> Result<Hash, tlog::Error> {
    if n == 0 {
        Ok(tlog::EMPTY_HASH)
    } else {
        tlog::tree_hash(n, memory)
    }
}

/// What one carried note says against the log.
#[derive(Clone)]
enum Carried {
    /// A prefix of the log.
    Consistent,
    /// Not signed by the log key: why.
    Unsigned(String),
    /// Signed, and larger than the log: its size.
    Ahead(u64),
    /// Signed, and not the log's root at its size: its size.
    Fork(u64),
}

/// Judges one note against the log of `size` leaves whose stored hashes are in `memory`
/// (already checked against the signed root): signed by the log key, no larger than the log,
/// and the root of the log's first leaves of its size.
fn judge_carried(note: &str, verifier_key: &str, size: u64, memory: &Memory) -> Carried {
    let cp = match verify_note(note, verifier_key) {
        Ok(cp) => cp,
        Err(reason) => return Carried::Unsigned(reason),
    };
    let n = cp.size();
    if n > size {
        Carried::Ahead(n)
    } else if root_at(n, memory).ok() != Some(*cp.hash()) {
        Carried::Fork(n)
    } else {
        Carried::Consistent
    }
}

/// Checks each carried checkpoint ([`judge_carried`]), judging each distinct note once: a
/// fleet's phones mostly carry the same few checkpoints.
fn check_carried(
    carried: &[(String, String)],
    verifier_key: &str,
    size: u64,
    memory: &Memory,
) -> Vec<Finding> {
    let mut judged: std::collections::HashMap<&str, Carried> = std::collections::HashMap::new();
    let mut findings = Vec::new();
    for (device, note) in carried {
        let verdict = judged
            .entry(note.as_str())
            .or_insert_with(|| judge_carried(note, verifier_key, size, memory))
            .clone();
        let device = device.clone();
        findings.push(match verdict {
            Carried::Consistent => continue,
            Carried::Unsigned(reason) => Finding::CarriedUnsigned { device, reason },
            Carried::Ahead(carried) => Finding::CarriedRollback {
                device,
                carried,
                now: size,
            },
            Carried::Fork(carried) => Finding::CarriedFork { device, carried },
        });
    }
    findings
}

fn mark_incomplete(devices: &mut BTreeMap<String, DeviceChain>, device: &str) {
    if let Some(d) = devices.get_mut(device) {
        d.complete = false;
    }
}

/// The rules of a stored record, joined as the office's rules column holds them.
fn record_rules(record: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(record).ok()?;
    let rules = v.get("rules")?.as_array()?;
    Some(
        rules
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Adds the witness's signature to a checkpoint note it verified.
pub fn cosign(note: &str, witness_key: &str) -> Result<String, String> {
    let signer = signed_note::StandardSigner::new(witness_key.trim())
        .map_err(|e| format!("not a witness key: {e}"))?;
    let mut parsed = signed_note::Note::from_bytes(note.as_bytes()).map_err(|e| e.to_string())?;
    parsed.add_sigs(&[&signer]).map_err(|e| e.to_string())?;
    String::from_utf8(parsed.to_bytes()).map_err(|e| e.to_string())
}

/// A database read directly as a source (`baomi audit --db`: a backup copy, or the live
/// database read by the auditor): its newest signed checkpoint, never a new signature.
impl Source for crate::Server {
    fn checkpoint(&self) -> Result<String, String> {
        self.ledger_latest_checkpoint().map_err(|e| e.message)
    }
    fn leaves(&self, start: u64, limit: u64) -> Result<LeafPage, String> {
        self.ledger_leaves(start, limit).map_err(|e| e.message)
    }
    fn consistency(&self, from: u64, to: u64) -> Result<ProofAnswer, String> {
        self.ledger_consistency(from, to).map_err(|e| e.message)
    }
    fn records(&self, after_device: &str, after_seq: i64) -> Result<RecordPage, String> {
        self.ledger_records(after_device, after_seq, 1000)
            .map_err(|e| e.message)
    }
    fn audit_log(&self, before: Option<i64>) -> Result<Vec<AuditEntry>, String> {
        self.audit_page(500, before).map_err(|e| e.message)
    }
    fn seen(&self, after_device: &str) -> Result<SeenPage, String> {
        self.ledger_seen(after_device, 1000).map_err(|e| e.message)
    }
}

/// A live server's office API as a source (`baomi audit --server`), as an officer.
pub struct HttpSource {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl HttpSource {
    /// Logs in as `name` at `base` (`http://` only to loopback, as everywhere).
    pub fn login(
        base: &str,
        name: &str,
        password: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, String> {
        baomi_core::sync::check_server_url(base).map_err(|e| e.0)?;
        let agent = http_agent(ca_pem)?;
        let url = format!("{}/v1/office/login", base.trim_end_matches('/'));
        let mut resp = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(serde_json::json!({ "name": name, "password": password }).to_string())
            .map_err(|e| friendly(&url, &e))?;
        let v: serde_json::Value = serde_json::from_str(
            &resp
                .body_mut()
                .read_to_string()
                .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let token = v["token"]
            .as_str()
            .ok_or("login answered no token")?
            .to_owned();
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent,
        })
    }

    fn get(&self, path: &str) -> Result<String, String> {
        let url = format!("{}/v1/office/{path}", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .map_err(|e| friendly(&url, &e))?;
        resp.body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| e.to_string())
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        serde_json::from_str(&self.get(path)?).map_err(|e| format!("{path}: {e}"))
    }

    /// Evidence of one violation.
    pub fn evidence(&self, device: &str, seq: u64) -> Result<String, String> {
        self.get(&format!(
            "ledger/evidence?device={}&seq={seq}",
            form_urlencoded::byte_serialize(device.as_bytes()).collect::<String>()
        ))
    }

    /// Posts a witness's cosigned checkpoint and report.
    pub fn witness(&self, witness: &str, note: &str, report: &str) -> Result<(), String> {
        let url = format!("{}/v1/office/ledger/witness", self.base);
        self.agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(
                serde_json::json!({ "witness": witness, "note": note, "report": report })
                    .to_string(),
            )
            .map_err(|e| friendly(&url, &e))?;
        Ok(())
    }
}

fn http_agent(ca_pem: Option<&[u8]>) -> Result<ureq::Agent, String> {
    let mut config = ureq::Agent::config_builder().http_status_as_error(true);
    if let Some(pem) = ca_pem {
        let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(pem)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    Ok(config.build().new_agent())
}

fn friendly(url: &str, e: &ureq::Error) -> String {
    baomi_core::sync::explain(url, &e.to_string())
}

impl Source for HttpSource {
    fn checkpoint(&self) -> Result<String, String> {
        self.get("ledger/checkpoint")
    }
    fn leaves(&self, start: u64, limit: u64) -> Result<LeafPage, String> {
        self.get_json(&format!("ledger/leaves?start={start}&limit={limit}"))
    }
    fn consistency(&self, from: u64, to: u64) -> Result<ProofAnswer, String> {
        self.get_json(&format!("ledger/consistency?from={from}&to={to}"))
    }
    fn audit_log(&self, before: Option<i64>) -> Result<Vec<AuditEntry>, String> {
        self.get_json(&match before {
            Some(b) => format!("audit?limit=500&before={b}"),
            None => "audit?limit=500".into(),
        })
    }
    fn records(&self, after_device: &str, after_seq: i64) -> Result<RecordPage, String> {
        self.get_json(&format!(
            "ledger/records?after_device={}&after_seq={after_seq}&limit=1000",
            form_urlencoded::byte_serialize(after_device.as_bytes()).collect::<String>()
        ))
    }
    fn seen(&self, after_device: &str) -> Result<SeenPage, String> {
        self.get_json(&format!(
            "ledger/seen?after_device={}&limit=1000",
            form_urlencoded::byte_serialize(after_device.as_bytes()).collect::<String>()
        ))
    }
}
