//! When to sync: the policy's interval after a success, exponential backoff with jitter after
//! a failure, and the deadline after which the device fails closed.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::policy::Policy;
use crate::sync::custody::CustodyAction;
use crate::time::Timestamp;

/// First retry delay after a failure.
pub const BACKOFF_BASE_S: i64 = 30;

/// Sync bookkeeping, kept sealed in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Base URL of the compliance server (set at enrolment).
    #[serde(default)]
    pub server: Option<String>,
    /// The platform's last report of what it applied, sent at the next check-in.
    #[serde(default)]
    pub applied: Option<crate::posture::AppliedPosture>,
    /// When the device enrolled.
    #[serde(default)]
    pub enrolled_at: Option<Timestamp>,
    /// Last sync that completed all four stages.
    #[serde(default)]
    pub last_success: Option<Timestamp>,
    /// Failures since then.
    #[serde(default)]
    pub failures: u32,
    /// When the platform should run the next sync.
    #[serde(default)]
    pub next_due: Option<Timestamp>,
    /// Custody feed position applied.
    #[serde(default)]
    pub custody_cursor: u64,
    /// Whether the current overdue lapse was recorded.
    #[serde(default)]
    pub overdue_reported: bool,
    /// Whether the current clock skew was recorded.
    #[serde(default)]
    pub skew_reported: bool,
    /// Registry record ids applied lately (newest last, at most [`CUSTODY_MEMORY`]): a
    /// re-posted record changes nothing.
    #[serde(default)]
    pub custody_seen: VecDeque<String>,
    /// Latest signed return per document (at most [`CUSTODY_MEMORY`]): an older sign-out
    /// replayed after it does not start custody again.
    #[serde(default)]
    pub custody_returned: BTreeMap<String, Timestamp>,
    /// Seq of the record that reported damage to the store (or a restore): the device runs
    /// closed until the office has acknowledged it.
    #[serde(default)]
    pub damage_seq: Option<u64>,
    /// Whether the current run of withheld deliveries was recorded.
    #[serde(default)]
    pub withheld_reported: bool,
    /// The office retired this device (a proven check-in said so): no more syncs.
    #[serde(default)]
    pub retired: bool,
    /// The newest personnel assignment record for this device (verified when applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<crate::sync::assignment::AssignmentRecordDoc>,
    /// The office log's checkpoint with the most leaves this phone was shown in a proven
    /// check-in answer (a signed note, [`crate::sync::ledger::log_note_size`]): reported at
    /// every check-in, so an office that restores an older log or shows the auditor another
    /// history is contradicted by its own signature, carried on its phones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_checkpoint: Option<String>,
}

/// How many custody record ids and returned documents the device remembers.
pub const CUSTODY_MEMORY: usize = 1024;

impl SyncState {
    /// The time by which a sync must succeed under `policy` (none before enrolment: a device
    /// that was never enrolled has nowhere to sync to, and the policy's expiry still applies).
    pub fn due_by(&self, policy: &Policy) -> Option<Timestamp> {
        let since = self.last_success.or(self.enrolled_at)?;
        Some(since.plus_seconds(i64::from(policy.sync.max_offline_s)))
    }

    /// Whether the registry record `record_id` was applied before.
    pub fn custody_seen(&self, record_id: &str) -> bool {
        self.custody_seen.iter().any(|r| r == record_id)
    }

    /// Whether `document` was returned at or after `at`.
    pub fn returned_after(&self, document: &str, at: Timestamp) -> bool {
        self.custody_returned
            .get(document)
            .is_some_and(|r| *r >= at)
    }

    /// Remembers a registry record that was dealt with.
    pub fn remember_custody(
        &mut self,
        record_id: String,
        document: &str,
        action: CustodyAction,
        at: Timestamp,
    ) {
        self.custody_seen.push_back(record_id);
        while self.custody_seen.len() > CUSTODY_MEMORY {
            self.custody_seen.pop_front();
        }
        if action == CustodyAction::Return {
            let e = self
                .custody_returned
                .entry(document.to_owned())
                .or_insert(at);
            *e = (*e).max(at);
            while self.custody_returned.len() > CUSTODY_MEMORY {
                let oldest = self
                    .custody_returned
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(d, _)| d.clone());
                match oldest {
                    Some(d) => self.custody_returned.remove(&d),
                    None => break,
                };
            }
        }
    }

    /// Carries `note` if it is a log checkpoint larger than the one carried: a smaller one (a
    /// restored log) or another of the same size (a fork) never replaces what the office
    /// signed before. Returns whether it was taken.
    pub fn carry_log_checkpoint(&mut self, note: &str) -> bool {
        let Some(size) = crate::sync::ledger::log_note_size(note) else {
            return false;
        };
        let carried = self
            .log_checkpoint
            .as_deref()
            .and_then(crate::sync::ledger::log_note_size);
        if carried.is_some_and(|c| c >= size) {
            return false;
        }
        self.log_checkpoint = Some(note.to_owned());
        true
    }

    /// After a completed sync.
    pub fn succeeded(&mut self, now: Timestamp, interval_s: u32) {
        self.last_success = Some(now);
        self.failures = 0;
        self.overdue_reported = false;
        self.next_due = Some(now.plus_seconds(i64::from(interval_s)));
    }

    /// After a failed sync; `jitter` in [0, 1) comes from the caller's random source.
    pub fn failed(&mut self, now: Timestamp, interval_s: u32, jitter: f64) {
        self.failures = self.failures.saturating_add(1);
        let delay_ms = backoff_ms(self.failures, interval_s, jitter);
        self.next_due = Some(now.plus_millis(delay_ms));
    }
}

/// Delay before retry number `failures` (1-based): `min(interval, 30 s * 2^(failures-1))`,
/// then "equal jitter" (half fixed, half random) so a fleet that lost its server together does
/// not come back in lockstep.
pub fn backoff_ms(failures: u32, interval_s: u32, jitter: f64) -> i64 {
    let exp = failures.saturating_sub(1).min(20);
    let cap_ms = i64::from(interval_s.max(1)) * 1000;
    let raw_ms = (BACKOFF_BASE_S * 1000)
        .saturating_mul(1i64 << exp)
        .min(cap_ms);
    let jitter = jitter.clamp(0.0, 1.0);
    let half = raw_ms / 2;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_precision_loss,
        reason = "half is at most a day in ms, far inside f64's exact range"
    )]
    let random = (half as f64 * jitter) as i64;
    half + random
}

/// A uniform jitter in [0, 1) from the system's random source (0.5 if it fails).
pub fn random_jitter() -> f64 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 4];
    match SystemRandom::new().fill(&mut b) {
        Ok(()) => f64::from(u32::from_be_bytes(b)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_interval_and_keeps_half_fixed() {
        assert_eq!(backoff_ms(1, 900, 0.0), 15_000);
        assert_eq!(backoff_ms(1, 900, 0.999_999), 29_999);
        assert_eq!(backoff_ms(2, 900, 0.0), 30_000);
        assert_eq!(backoff_ms(3, 900, 0.0), 60_000);
        assert_eq!(backoff_ms(10, 900, 0.0), 450_000);
        assert_eq!(backoff_ms(u32::MAX, 900, 1.0), 900_000);
    }

    fn note(size: u64, root: char) -> String {
        format!(
            "office/log\n{size}\n{}A=\n\n\u{2014} office/log sig\n",
            root.to_string().repeat(42)
        )
    }

    #[test]
    fn the_phone_carries_the_largest_log_checkpoint_and_no_smaller_or_forked_one() {
        let mut s = SyncState::default();
        assert!(!s.carry_log_checkpoint("not a note"));
        assert!(s.carry_log_checkpoint(&note(5, 'A')));
        // A restored log (fewer leaves) and another history of the same size: kept as is.
        assert!(!s.carry_log_checkpoint(&note(4, 'B')));
        assert!(!s.carry_log_checkpoint(&note(5, 'C')));
        assert_eq!(s.log_checkpoint, Some(note(5, 'A')));
        assert!(s.carry_log_checkpoint(&note(9, 'D')));
        assert_eq!(s.log_checkpoint, Some(note(9, 'D')));
        // Kept across restarts (the state is serialised with the store's).
        let back: SyncState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back.log_checkpoint, Some(note(9, 'D')));
    }

    #[test]
    fn jitter_spreads_a_fleet() {
        let delays: std::collections::BTreeSet<i64> = (0..50)
            .map(|_| backoff_ms(4, 900, random_jitter()))
            .collect();
        assert!(delays.len() > 40, "{delays:?}");
        assert!(delays.iter().all(|d| (120_000..240_000).contains(d)));
    }
}
