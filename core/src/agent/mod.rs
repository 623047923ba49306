//! The device-side facade: engine + store, and the sync stages ([`sync`]) that drive it.
//! What the FFI exposes and the CLI drives.
//!
//! - The trust root and the installed bundle are kept as their signed envelopes (sealed) and
//!   re-verified at every start: the store's AEAD proves the agent wrote them, the signatures
//!   prove the office signed them under the root in force. After a trust-root rotation the
//!   installed bundle is re-verified under the new root; if its signers are no longer trusted
//!   it runs fail-closed and the rollback floor resets (TUF 5.3.11), so neither a bundle signed
//!   with stolen keys nor its fast-forwarded version survives the rotation.
//! - Every decision with `violation: true` is appended to the store before it is returned.
//! - Time never runs backwards for the agent ([`clock`]): a reading more than a tolerance below
//!   the highest time seen is recorded (`baomi.clock`) and evaluated as the high-water time.
//! - The context is persisted whenever something durable changed (custody, zones checked in,
//!   inventory), not on every beacon sighting.

pub mod clock;
pub mod intake;
pub mod sync;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::bundle::keys::{SigningKey, hex};
use crate::bundle::{
    BundleError, BundleHeader, Installed, TrustRoot, VerifiedBundle, read_unverified,
    verify_bundle, verify_signed,
};
use crate::compile::{CompiledPolicy, Platform};
use crate::context::{Context, ContextSnapshot, CustodySource};
use crate::decision::{Decision, Verdict};
use crate::engine::{Engine, FailClosedReason};
use crate::event::{Event, EventKind};
use crate::level::Clearance;
use crate::policy::Policy;
use crate::policy::model::Severity;
use crate::posture::{AppliedPosture, Posture};
use crate::rules;
use crate::store::{
    ChainError, KeyProvider, PolicyRef, Store, StoreError, StoreOptions, StoredViolation,
    ViolationRecord,
};
use crate::sync::assignment::AssignmentRecordDoc;
use crate::sync::custody::{CustodyAction, CustodyRecordDoc};
use crate::sync::identity::DeviceIdentity;
use crate::sync::protocol::{ChainState, PolicyState};
use crate::sync::schedule::SyncState;
use crate::time::Timestamp;

pub use clock::{CLOCK_TOLERANCE_MS, TimeGuard};
pub use intake::{IntakeItem, IntakeOutcome};
pub use sync::{SyncError, SyncReport, enroll, prepare_wait, send_wait, sync_now, wait_for_change};

const STATE_TRUST: &str = "trust_root";
const STATE_ROOTS: &str = "trust_root_history";

/// Roots the agent remembers besides the one in force: the out-of-band anchor (the first)
/// and the newest ones, so managed configuration can recover a chain a thief forked.
pub const ROOT_HISTORY: usize = 32;
const STATE_POLICY: &str = "installed_bundle";
const STATE_CONTEXT: &str = "context";
const STATE_IDENTITY: &str = "identity";
const STATE_SYNC: &str = "sync";
const STATE_CLOCK: &str = "clock";

/// Id of the violation raised when the device has not synced for longer than the policy allows.
pub const SYNC_OVERDUE_RULE: &str = rules::SYNC_OVERDUE;

/// Id of the violation raised when the store passes its size cap.
pub const STORE_FULL_RULE: &str = rules::STORE_FULL;

/// Errors of the agent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgentError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bundle or trust root was refused.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A bundle arrived, or enrolment or sync was asked for, before any trust root was
    /// provisioned out of band (managed configuration, provisioning extras, the CLI's
    /// `--trust`). The network never provides the first root.
    #[error(
        "no trust root is installed: provision one out of band (managed configuration or --trust) first"
    )]
    NoTrustRoot,
    /// An event arrived before any policy was installed.
    #[error("no policy is installed")]
    NoPolicy,
    /// A time outside what the agent accepts, from the platform's clock, an event or the
    /// fast path: refused before anything is decided or sealed with it.
    #[error(transparent)]
    TimeOutOfRange(#[from] crate::time::TimeRangeError),
    /// Stored state that does not parse (written by this agent, so a bug or a downgrade).
    #[error("stored `{name}` does not parse: {reason}")]
    BadState {
        /// State name.
        name: &'static str,
        /// Parser message.
        reason: String,
    },
}

/// What is installed: the bundle's header and digest, and whether the trust root in force
/// still vouches for its signers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledBundle {
    /// Header.
    pub header: BundleHeader,
    /// Hex SHA-256 of the signed payload.
    pub digest: String,
    /// Signed by a threshold of the current trust root's office keys.
    pub trusted: bool,
}

/// What became of a personnel assignment record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentOutcome {
    /// Kept as the device's assignment (in force now or later).
    Applied {
        /// Whether the holder in force changed with it.
        holder_changed: bool,
    },
    /// The device already holds this record or a newer one: a replay changes nothing.
    Superseded,
    /// For another device: not applied.
    NotApplicable,
}

/// What became of a registry custody record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustodyOutcome {
    /// Applied to the context.
    Applied,
    /// Seen before (same `record_id`): a replay changes nothing.
    Duplicate,
    /// Older than what the device already knows of that document (a return for a sign-out it
    /// does not follow, a sign-out before a later return): ignored.
    Superseded,
    /// For another holder, or this device has no holder yet: not applied, and the feed's
    /// cursor must not move past it.
    NotApplicable,
}

/// The agent at a glance (status screens, `baomi agent status`, the FFI).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentStatus {
    /// Device id.
    pub device_id: String,
    /// Holder the signed policy assigns this device to.
    pub holder: Option<String>,
    /// Installed policy id.
    pub policy_id: Option<String>,
    /// Installed bundle version.
    pub policy_version: Option<u64>,
    /// Whether the installed bundle is signed under the trust root in force.
    pub policy_trusted: Option<bool>,
    /// Trust root version.
    pub trust_root_version: Option<u64>,
    /// The trust root's cryptographic suite (`intl` or `sm`).
    pub suite: Option<crate::suite::Suite>,
    /// The suite the store seals and MACs under (the root's, unless the store recorded
    /// before a migration).
    pub store_suite: crate::suite::Suite,
    /// Why the device fails closed now, if it does.
    pub fail_closed: Option<String>,
    /// Desired posture.
    pub posture: Posture,
    /// When the posture may change without an event.
    pub next_deadline: Option<Timestamp>,
    /// When the next sync is due.
    pub next_sync_due: Option<Timestamp>,
    /// Last successful sync.
    pub last_sync: Option<Timestamp>,
    /// Newest acknowledged seq.
    pub acked_through: u64,
    /// Newest seq.
    pub head_seq: u64,
    /// Records not yet acknowledged.
    pub unacknowledged: u64,
    /// The store's commit generation.
    pub generation: u64,
    /// Highest time the agent has seen.
    pub high_water: Option<Timestamp>,
}

/// The agent.
pub struct Agent {
    store: Store,
    platform: Platform,
    trust: Option<TrustRoot>,
    installed: Option<InstalledBundle>,
    engine: Option<Engine>,
    store_full_reported: bool,
    sync: SyncState,
    clock: TimeGuard,
    /// The holder and clearance in force (a personnel assignment in force, else the bundle's
    /// `holders`), as last settled.
    assigned: Option<(String, Clearance)>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("store", &self.store)
            .field("installed", &self.installed)
            .finish_non_exhaustive()
    }
}

fn bad_state(name: &'static str) -> impl Fn(serde_json::Error) -> AgentError {
    move |e| AgentError::BadState {
        name,
        reason: e.to_string(),
    }
}

impl Agent {
    /// Opens the agent's store in `dir`, re-verifies what was installed, and reloads it.
    ///
    /// Refused with [`AgentError::Store`] when sealed state does not match the store's head
    /// (rows rolled back, deleted or moved): the agent never runs state it cannot vouch for.
    pub fn open(
        dir: &Path,
        keys: &dyn KeyProvider,
        opts: StoreOptions,
        platform: Platform,
        now: Timestamp,
    ) -> Result<Agent, AgentError> {
        let now = Timestamp::checked(now.0)?;
        let store = Store::open(dir, keys, opts)?;
        let trust = match store.get_state(STATE_TRUST)? {
            Some(b) => Some(TrustRoot::from_stored(&b)?),
            None => None,
        };
        let sync = match store.get_state(STATE_SYNC)? {
            Some(raw) => serde_json::from_slice(&raw).map_err(bad_state(STATE_SYNC))?,
            None => SyncState::default(),
        };
        let clock = match store.get_state(STATE_CLOCK)? {
            Some(raw) => TimeGuard::restore(&raw).map_err(bad_state(STATE_CLOCK))?,
            None => TimeGuard::default(),
        };
        let mut agent = Agent {
            store,
            platform,
            trust,
            installed: None,
            engine: None,
            store_full_reported: false,
            sync,
            clock,
            assigned: None,
        };
        let now = agent.clock.effective(now);
        if let Some(envelope) = agent.store.get_state(STATE_POLICY)? {
            let trust = agent.trust.as_ref().ok_or(AgentError::NoTrustRoot)?;
            let (v, trusted) = match verify_signed(&envelope, trust) {
                Ok(v) => (v, true),
                // Signed by keys a later rotation dropped: run it closed until replaced.
                Err(_) => (read_unverified(&envelope)?, false),
            };
            let ctx = match agent.store.get_state(STATE_CONTEXT)? {
                Some(c) => Some(
                    serde_json::from_slice::<ContextSnapshot>(&c)
                        .map_err(bad_state(STATE_CONTEXT))?,
                ),
                None => None,
            };
            agent.activate(v, trusted, ctx, now)?;
        } else {
            agent.assigned = agent.assignment_at(None, now);
        }
        // A tail cut off, a row deleted or inserted since the last run: keep what reads, name
        // what does not, tell the office, and run closed until it has the report.
        if let Some(damage) = agent.store.damage().cloned() {
            agent.repair_store(&damage, now)?;
        }
        Ok(agent)
    }

    /// Whether a damage report is waiting for the office's acknowledgement.
    fn damage_pending(&self) -> bool {
        self.sync
            .damage_seq
            .is_some_and(|d| d > self.store.acked_through())
    }

    /// Salvages the unacknowledged records after damage `why`: every record that still
    /// authenticates is kept (sealed anew as one chain after the anchor), the lost seqs are
    /// named in a `baomi.store_damaged` record that goes to the office with the next sync,
    /// and the device runs closed until the office has acknowledged that record.
    pub fn repair_store(&mut self, why: &ChainError, now: Timestamp) -> Result<(), AgentError> {
        let salvage = self.store.salvage()?;
        let reason = format!(
            "the violation store was damaged ({why}): {} record(s) could not be read ({}); {} kept",
            salvage.lost_count(),
            if salvage.lost.is_empty() {
                "none".to_owned()
            } else {
                salvage.lost_ranges()
            },
            salvage.records.len()
        );
        log::error!("{reason}");
        let anchor = self.store.anchor();
        self.rewrite_after(anchor, salvage.records, now, "store_damaged", reason)
    }

    /// Continues the chain past what the office proved it holds (`office_seq` with
    /// `office_tag`), after a restore of an older copy made this store reuse seqs the office
    /// already has: every record not acknowledged is renumbered after it (nothing recorded
    /// since the restore is lost; the office may get a record twice, never none), with a
    /// `baomi.store_damaged` record that says so.
    pub fn continue_past(
        &mut self,
        office_seq: u64,
        office_tag: [u8; 16],
        now: Timestamp,
    ) -> Result<(), AgentError> {
        let salvage = self.store.salvage()?;
        let (acked, head) = (self.store.acked_through(), self.store.head().seq);
        let reason = format!(
            "the office holds records through seq {office_seq} that this store does not have (restored from an older copy): records {}..={head} renumbered from {}",
            acked + 1,
            office_seq + 1
        );
        log::error!("{reason}");
        let anchor = crate::store::Link {
            seq: office_seq,
            tag: office_tag,
        };
        self.rewrite_after(anchor, salvage.records, now, "store_restored", reason)
    }

    fn rewrite_after(
        &mut self,
        anchor: crate::store::Link,
        mut records: Vec<ViolationRecord>,
        now: Timestamp,
        kind: &str,
        reason: String,
    ) -> Result<(), AgentError> {
        let now = self.clock.effective(now);
        records.push(self.agent_record(now, kind, rules::STORE_DAMAGED, reason));
        let seqs = self.store.rewrite(anchor, &records)?;
        let last = seqs.last().copied();
        self.update_sync(|s| s.damage_seq = last)?;
        if let Some(e) = &mut self.engine {
            e.set_store_damaged(true, now);
        }
        Ok(())
    }

    fn activate(
        &mut self,
        v: VerifiedBundle,
        trusted: bool,
        snapshot: Option<ContextSnapshot>,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        let assigned = self.assignment_at(Some(&v.policy), now);
        let clearance = assigned.as_ref().map_or(Clearance::None, |a| a.1);
        let compiled = Arc::new(CompiledPolicy::from_valid(v.policy, self.platform));
        let mut engine = match (self.engine.take(), snapshot) {
            (Some(mut e), _) => {
                e.replace_policy(compiled, now);
                e
            }
            (None, Some(s)) => {
                Engine::with_context(compiled.clone(), Context::restore(&compiled, s), now)
            }
            (None, None) => Engine::new(compiled, clearance, now),
        };
        // The signed assignment always wins over whatever the context remembered.
        engine.set_clearance(clearance, now);
        engine.set_unassigned(assigned.is_none(), now);
        self.assigned = assigned;
        engine.set_untrusted(!trusted, now);
        engine.set_store_damaged(self.damage_pending(), now);
        // A signed `issued_at` raises the mark, but never past what verification allowed
        // (a bundle "issued" in 9999 must not make the office's next bundle look expired).
        self.clock.raise(
            v.header
                .issued_at
                .min(now.plus_millis(crate::bundle::MAX_ISSUED_AHEAD_MS)),
        );
        self.installed = Some(InstalledBundle {
            header: v.header,
            digest: v.digest,
            trusted,
        });
        self.engine = Some(engine);
        self.refresh_deadlines(now);
        Ok(())
    }

    /// Expiry (bundle or trust root, whichever is first) and the sync deadline into the engine.
    fn refresh_deadlines(&mut self, now: Timestamp) {
        let bundle_expiry = self.installed.as_ref().map(|i| i.header.expires_at);
        let root_expiry = self.trust.as_ref().and_then(TrustRoot::expires_at);
        let expiry = [bundle_expiry, root_expiry].into_iter().flatten().min();
        let due = self.installed_policy().and_then(|p| self.sync.due_by(p));
        if let Some(e) = &mut self.engine {
            e.set_policy_expiry(expiry);
            e.set_sync_due_by(due);
            e.tick(now);
        }
    }

    /// Provisions the trust root out of band (managed configuration, provisioning extras,
    /// the CLI's `--trust`): the first one, or a rotation. Offering the root already installed
    /// again is a no-op (managed configuration re-delivers it on every change).
    pub fn provision_trust_root(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<u64, AgentError> {
        match &self.trust {
            Some(current) if current.envelope_bytes() == bytes => Ok(current.version()),
            Some(_) => self.rotate_trust_root(bytes, now),
            None => {
                let root = TrustRoot::from_self_signed(bytes)?;
                root.check_current(now)?;
                // The platform opened the store before the root arrived: a store that has
                // never recorded moves to the root's suite (an `sm` office's phone seals under
                // SM4-GCM and HMAC-SM3 from its first record); one that has keeps its own.
                if self.store.suite() != root.suite() && self.store.never_recorded() {
                    self.store.adopt_suite(root.suite())?;
                }
                self.put_root(&root, Vec::new())?;
                let v = root.version();
                self.trust = Some(root);
                self.refresh_deadlines(now);
                Ok(v)
            }
        }
    }

    /// Rotates to the next trust root (from sync or managed configuration): it must follow the
    /// installed one (version + 1, both thresholds). The installed bundle is then re-verified
    /// under the new root; if its signers are gone it runs closed and the rollback floor
    /// resets.
    pub fn rotate_trust_root(&mut self, bytes: &[u8], now: Timestamp) -> Result<u64, AgentError> {
        let current = self.trust.as_ref().ok_or(AgentError::NoTrustRoot)?;
        let next = current.rotate(bytes)?;
        next.check_current(now)?;
        let history = self.root_history()?;
        self.put_root(&next, history)?;
        let v = next.version();
        self.trust = Some(next);
        self.reverify_installed(now)?;
        self.refresh_deadlines(now);
        Ok(v)
    }

    /// The roots installed so far (oldest first; the first is the out-of-band anchor).
    pub fn root_history(&self) -> Result<Vec<Vec<u8>>, AgentError> {
        Ok(match self.store.get_state(STATE_ROOTS)? {
            Some(raw) => serde_json::from_slice::<Vec<String>>(&raw)
                .map_err(bad_state(STATE_ROOTS))?
                .into_iter()
                .map(String::into_bytes)
                .collect(),
            // Stores from before the history: the root in force is all there is.
            None => self
                .trust
                .iter()
                .map(|t| t.envelope_bytes().to_vec())
                .collect(),
        })
    }

    /// The history as it is to be stored with `root` in force: kept to the anchor and the
    /// newest [`ROOT_HISTORY`] - 1.
    fn history_with(mut history: Vec<Vec<u8>>, root: &TrustRoot) -> Vec<u8> {
        history.push(root.envelope_bytes().to_vec());
        if history.len() > ROOT_HISTORY {
            let cut = history.len() - (ROOT_HISTORY - 1);
            history.drain(1..cut);
        }
        let texts: Vec<String> = history
            .into_iter()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect();
        serde_json::to_vec(&texts).unwrap_or_default()
    }

    /// Writes `root` as the root in force, and `history` (with it appended) in one commit.
    fn put_root(&mut self, root: &TrustRoot, history: Vec<Vec<u8>>) -> Result<(), AgentError> {
        let h = Self::history_with(history, root);
        self.store
            .put_states(&[(STATE_TRUST, root.envelope_bytes()), (STATE_ROOTS, &h)])?;
        Ok(())
    }

    /// Replaces the installed trust root with one delivered out of band (managed
    /// configuration) that is not its rotation but a rotation of an earlier root this device
    /// trusted (`prev`, its index in the history): the device's chain forked there. The
    /// installed bundle is then re-verified under it (see [`intake`](self::intake) step 5).
    /// Never called with anything from the network.
    pub(crate) fn replace_trust_root(
        &mut self,
        root: TrustRoot,
        mut history: Vec<Vec<u8>>,
        prev: usize,
        now: Timestamp,
    ) -> Result<u64, AgentError> {
        let now = self.clock.effective(Timestamp::checked(now.0)?);
        root.check_current(now)?;
        history.truncate(prev + 1);
        self.put_root(&root, history)?;
        let v = root.version();
        self.trust = Some(root);
        self.reverify_installed(now)?;
        self.refresh_deadlines(now);
        Ok(v)
    }

    fn reverify_installed(&mut self, now: Timestamp) -> Result<(), AgentError> {
        let (Some(trust), Some(installed)) = (&self.trust, &mut self.installed) else {
            return Ok(());
        };
        let Some(envelope) = self.store.get_state(STATE_POLICY)? else {
            return Ok(());
        };
        installed.trusted = verify_signed(&envelope, trust).is_ok();
        if !installed.trusted {
            log::warn!(
                "installed bundle {}@{} is not signed under trust root {}: running fail-closed",
                installed.header.policy_id,
                installed.header.version,
                trust.version()
            );
        }
        let untrusted = !installed.trusted;
        if let Some(e) = &mut self.engine {
            e.set_untrusted(untrusted, now);
        }
        Ok(())
    }

    /// The rollback floor: what a new bundle must be newer than. Reset when the installed
    /// bundle's signers are no longer trusted.
    fn floor(&self) -> Installed {
        match &self.installed {
            Some(i) if i.trusted => Installed {
                policy_id: Some(i.header.policy_id.clone()),
                version: i.header.version,
            },
            _ => Installed::default(),
        }
    }

    /// Verifies and installs a policy bundle (from managed configuration or sync).
    pub fn install_bundle(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<BundleHeader, AgentError> {
        let trust = self.trust.as_ref().ok_or(AgentError::NoTrustRoot)?;
        let now = self.clock.effective(Timestamp::checked(now.0)?);
        let v = verify_bundle(bytes, trust, &self.floor(), now)?;
        let header = v.header.clone();
        // Persist before use: a crash after this point restarts under the new policy.
        self.store.put_state(STATE_POLICY, bytes)?;
        self.activate(v, true, None, now)?;
        self.persist(&[STATE_CONTEXT])?;
        Ok(header)
    }

    /// Decides an event; records it if it is a violation. Time-only changes up to the event
    /// (see [`Agent::tick`]) are settled first. A clock reading far below the highest time
    /// seen is recorded and the event is decided at that time instead.
    pub fn handle(&mut self, event: &Event) -> Result<Decision, AgentError> {
        if self.engine.is_none() {
            return Err(AgentError::NoPolicy);
        }
        let at = self.observe_time(event.at)?;
        let shifted;
        let event = if at == event.at {
            event
        } else {
            shifted = Event {
                at,
                kind: event.kind.clone(),
            };
            &shifted
        };
        // Whatever time alone changed (a sync deadline passed) is settled, and recorded,
        // before the event: every caller gets it without ticking first.
        self.tick(at)?;
        let engine = self.engine.as_mut().ok_or(AgentError::NoPolicy)?;
        let decision = engine.handle(event);
        if decision.violation {
            let record = ViolationRecord::new(event, &decision, self.policy_ref());
            if let Err(e) = self.store.append(&record) {
                if matches!(e, StoreError::Full | StoreError::WriteFailed(_)) {
                    // The disk is full: nothing was written and nothing is deleted. The device
                    // fails closed (the posture says so at once) until a write succeeds again.
                    if let Some(engine) = self.engine.as_mut() {
                        engine.set_store_full(true, at);
                    }
                }
                return Err(e.into());
            }
            self.check_capacity(at)?;
        }
        // The context when it changed durably; the clock's mark whenever it moved enough.
        let names: &[&'static str] = if durable_context_change(&event.kind) {
            &[STATE_CONTEXT]
        } else {
            &[]
        };
        self.persist(names)?;
        Ok(decision)
    }

    /// Runs a platform clock reading through the high-water guard: returns the time to act
    /// at, and records `baomi.clock` once per set-back.
    pub fn observe_time(&mut self, reading: Timestamp) -> Result<Timestamp, AgentError> {
        let reading = Timestamp::checked(reading.0)?;
        let seen = self.clock.observe(reading);
        if let Some(high_water) = seen.first_set_back {
            self.record_agent_violation(
                seen.effective,
                "clock_set_back",
                rules::CLOCK,
                format!(
                    "device clock reads {} but {} was already seen: acting as at the later time",
                    reading.to_rfc3339(),
                    high_water.to_rfc3339()
                ),
            )?;
        }
        Ok(seen.effective)
    }

    fn policy_ref(&self) -> Option<PolicyRef> {
        self.installed.as_ref().map(|i| PolicyRef {
            id: i.header.policy_id.clone(),
            version: i.header.version,
        })
    }

    /// Over the cap: keep every record, record `baomi.store_full` once, and close down.
    fn check_capacity(&mut self, at: Timestamp) -> Result<(), AgentError> {
        let mut full = self.store.over_cap()?;
        if full {
            // Copies of what the office already holds go before anything else.
            self.store.drop_delivered()?;
            full = self.store.over_cap()?;
        }
        if let Some(e) = &mut self.engine {
            e.set_store_full(full, at);
        }
        if full && !self.store_full_reported {
            self.store_full_reported = true;
            self.record_agent_violation(
                at,
                "store_full",
                rules::STORE_FULL,
                "violation store over its size cap: nothing is deleted; the device fails closed until sync drains it".into(),
            )?;
        } else if !full {
            self.store_full_reported = false;
        }
        Ok(())
    }

    /// Writes the named pieces of state (and the clock's high-water, if it moved) in one
    /// sealed commit.
    fn persist(&mut self, names: &[&'static str]) -> Result<(), AgentError> {
        let mut items: Vec<(&str, Vec<u8>)> = Vec::with_capacity(names.len() + 1);
        for name in names {
            let value = match *name {
                STATE_CONTEXT => match &self.engine {
                    Some(e) => serde_json::to_vec(&e.context().snapshot())
                        .map_err(bad_state(STATE_CONTEXT))?,
                    None => continue,
                },
                STATE_SYNC => serde_json::to_vec(&self.sync).map_err(bad_state(STATE_SYNC))?,
                _ => continue,
            };
            items.push((name, value));
        }
        if self.clock.needs_persist() {
            items.push((STATE_CLOCK, self.clock.to_bytes()));
        }
        if items.is_empty() {
            return Ok(());
        }
        let refs: Vec<(&str, &[u8])> = items.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        self.store.put_states(&refs)?;
        if items.iter().any(|(n, _)| *n == STATE_CLOCK) {
            self.clock.persisted();
        }
        Ok(())
    }

    /// Keeps the platform's report of what it applied (see [`AppliedPosture`]) for the next
    /// check-in; written only when it changed.
    pub fn report_applied(&mut self, report: AppliedPosture) -> Result<(), AgentError> {
        let report = report.bounded();
        if self.sync.applied.as_ref() == Some(&report) {
            return Ok(());
        }
        self.sync.applied = Some(report);
        self.persist(&[STATE_SYNC])
    }

    /// Re-derives the posture when time alone changed it (beacon timeout, expiry, sync
    /// deadline) and records the sync-overdue violation once per lapse. Returns the new posture
    /// if it changed.
    pub fn tick(&mut self, now: Timestamp) -> Result<Option<Posture>, AgentError> {
        let now = self.clock.effective(Timestamp::checked(now.0)?);
        let before = self.engine.as_ref().map(|e| e.posture().clone());
        // Only an assignment record changes the holder by time alone (the bundle's `holders`
        // are settled when it is installed): no record, nothing to recompute on a tick.
        if self.sync.assignment.is_some()
            && self.assigned != self.assignment_at(self.installed_policy(), now)
            && self.settle_assignment(now)
        {
            self.persist(&[STATE_CONTEXT, STATE_SYNC])?;
        }
        let Some(engine) = self.engine.as_mut() else {
            return Ok(None);
        };
        let ticked = engine.tick(now).map(|p| (*p).clone());
        let changed = ticked.or_else(|| {
            let after = engine.posture();
            before
                .filter(|b| !Arc::ptr_eq(b, after))
                .map(|_| (**after).clone())
        });
        let overdue = engine.fail_closed_reason(now) == Some(FailClosedReason::SyncOverdue);
        if overdue && !self.sync.overdue_reported {
            let last = self
                .sync
                .last_success
                .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
            self.record_agent_violation(
                now,
                "sync_overdue",
                rules::SYNC_OVERDUE,
                format!("no successful sync since {last}: the device fails closed until it syncs"),
            )?;
            self.update_sync(|s| s.overdue_reported = true)?;
        }
        Ok(changed)
    }

    /// Records a violation the agent itself detected (sync overdue, clock tampering, a
    /// refused bundle or custody record), with the posture in force.
    pub fn record_agent_violation(
        &mut self,
        at: Timestamp,
        kind: &str,
        rule: &str,
        reason: String,
    ) -> Result<u64, AgentError> {
        let record = self.agent_record(at, kind, rule, reason);
        Ok(self.store.append(&record)?)
    }

    fn agent_record(
        &self,
        at: Timestamp,
        kind: &str,
        rule: &str,
        reason: String,
    ) -> ViolationRecord {
        ViolationRecord {
            event: Event {
                at,
                kind: EventKind::Tamper { kind: kind.into() },
            },
            verdict: Verdict::Deny,
            rules: vec![rule.into()],
            severity: Some(Severity::High),
            reason,
            posture: self.posture(),
            policy: self.policy_ref(),
        }
    }

    /// Decides a tamper report the platform or the agent itself raises (an enforcement call
    /// that failed, a configuration refused): the tamper rule records it. `kind` is cut to 200
    /// characters (it carries platform text).
    pub fn report_tamper(&mut self, kind: &str, at: Timestamp) -> Result<Decision, AgentError> {
        let event = Event {
            at,
            kind: EventKind::Tamper {
                kind: kind.chars().take(200).collect(),
            },
        };
        self.handle(&event)
    }

    /// The suite of the trust root in force (`intl` before one is provisioned): what the
    /// device's identity key, its public chain and its sync follow.
    pub fn suite(&self) -> crate::suite::Suite {
        self.trust_root().map(|t| t.suite()).unwrap_or_default()
    }

    /// The device's sync identity, created (and stored sealed) on first use in the suite of
    /// the trust root then in force.
    pub fn identity(&mut self) -> Result<DeviceIdentity, AgentError> {
        let bad = |reason: String| AgentError::BadState {
            name: STATE_IDENTITY,
            reason,
        };
        let key = match self.store.get_state(STATE_IDENTITY)? {
            Some(raw) => {
                let text = std::str::from_utf8(&raw).map_err(|e| bad(e.to_string()))?;
                SigningKey::from_file_json(text).map_err(|e| bad(e.to_string()))?
            }
            None => {
                let key = SigningKey::generate_for(self.suite()).map_err(|e| bad(e.to_string()))?;
                self.store
                    .put_state(STATE_IDENTITY, key.to_file().as_bytes())?;
                key
            }
        };
        Ok(DeviceIdentity::new(self.store.device_id().to_owned(), key))
    }

    /// Sync bookkeeping.
    pub fn sync_state(&self) -> &SyncState {
        &self.sync
    }

    /// Changes the sync bookkeeping in one sealed write and moves the sync deadline.
    pub fn update_sync(&mut self, f: impl FnOnce(&mut SyncState)) -> Result<(), AgentError> {
        let before = self.sync.clone();
        f(&mut self.sync);
        if self.sync == before {
            return Ok(());
        }
        self.persist(&[STATE_SYNC])?;
        let due = self.installed_policy().and_then(|p| self.sync.due_by(p));
        if let Some(e) = &mut self.engine {
            e.set_sync_due_by(due);
        }
        Ok(())
    }

    /// A monotonic clock reading from the platform (boot id, uptime including sleep): counts
    /// time offline so a clock set back while the phone sat unused cannot hold an expiry or a
    /// sync deadline off. Call it with every tick and at start.
    pub fn observe_uptime(&mut self, boot: &str, uptime_ms: i64) -> Result<(), AgentError> {
        if uptime_ms < 0 {
            return Err(crate::time::TimeRangeError { ms: uptime_ms }.into());
        }
        // The boot id is platform text that is stored: bounded.
        let boot: String = boot.chars().take(64).collect();
        self.clock.uptime(&boot, uptime_ms);
        self.persist(&[])
    }

    /// The time the agent acts at for a platform reading: the reading, or the high-water mark
    /// if that is later.
    pub fn acting_time(&self, reading: Timestamp) -> Timestamp {
        self.clock.effective(reading)
    }

    /// The office's proven time (from a check-in answer whose proof verified): raises the
    /// high-water mark, or brings back a mark that ran ahead of it. Returns the time to act at.
    pub fn settle_time(&mut self, server: Timestamp, reading: Timestamp) -> Timestamp {
        if let Some(old) = self.clock.settle(server) {
            log::warn!(
                "clock high-water {} was ahead of the office's {}: settled to the office's time",
                old.to_rfc3339(),
                server.to_rfc3339()
            );
        }
        self.clock.effective(reading)
    }

    /// Deletes records through `through` on the office's word. `tag_hex` must be the chain
    /// tag of this device's record at `through`: the device deletes only records it actually
    /// sent. Returns whether anything was deleted.
    pub fn acknowledge(&mut self, through: u64, tag_hex: &str) -> Result<bool, AgentError> {
        self.acknowledge_linked(through, tag_hex, None)
    }

    /// [`Agent::acknowledge`] with the public links of the batch the caller sealed (its first
    /// seq, then each record's link, oldest first): kept with the acknowledgement and with each
    /// record's copy. Without them, or when they do not cover exactly the records after the
    /// acknowledged ones, they are computed from the records still in the store.
    pub fn acknowledge_linked(
        &mut self,
        through: u64,
        tag_hex: &str,
        sealed: Option<(u64, &[[u8; 32]])>,
    ) -> Result<bool, AgentError> {
        let acked = self.store.acked_through();
        if through <= acked {
            return Ok(false);
        }
        let tag = self.store.tag_at(through)?;
        if tag.map(|t| hex(&t)).as_deref() != Some(tag_hex) {
            return Err(StoreError::Integrity(ChainError::Unauthentic { seq: through }).into());
        }
        // Every acknowledged record's public link (kept with its copy, for an office restored
        // from an older backup): the sealed batch's when it covers exactly these records (no
        // second decryption of what was just sealed), else walked from the store; the batch's
        // link of `through` wins if the walk fails.
        let covering = sealed
            .filter(|(first, l)| *first == acked + 1 && l.len() as u64 == through - acked)
            .map(|(_, l)| l.to_vec());
        let links = match covering {
            Some(l) => l,
            None => self.ledger_links(through).unwrap_or_default(),
        };
        let link = sealed
            .and_then(|(_, l)| l.last().copied())
            .or_else(|| links.last().copied());
        self.store.acknowledge_linked(through, link, &links)?;
        if self.sync.damage_seq.is_some() && !self.damage_pending() {
            // The office has the damage report: the store is whole again.
            self.update_sync(|s| s.damage_seq = None)?;
            if let Some(e) = &mut self.engine {
                // No new time: re-derived at the time of the activation in force.
                let at = e.activation().at;
                e.set_store_damaged(false, at);
            }
        }
        Ok(true)
    }

    /// The public chain's link of the last acknowledged record: where the next upload's chain
    /// continues ([`crate::sync::ledger`]).
    pub fn ledger_prev(&self) -> [u8; 32] {
        self.store
            .ledger_link()
            .unwrap_or(crate::sync::ledger::GENESIS)
    }

    /// The public links of the records after the acknowledged ones through `through`, oldest
    /// first, from the records still in the store (`None` if one of them does not read: the
    /// chain then continues from genesis after it).
    fn ledger_links(&self, through: u64) -> Option<Vec<[u8; 32]>> {
        use crate::sync::ledger;
        let after = self.store.acked_through();
        let n = usize::try_from(through.checked_sub(after)?).ok()?;
        let records = self.store.records_after(after, n).ok()?;
        let device = self.store.device_id().to_owned();
        let mut link = self.ledger_prev();
        let suite = self.suite();
        let mut last = after;
        let mut links = Vec::with_capacity(records.len());
        for r in &records {
            if r.seq != last + 1 {
                return None;
            }
            link = ledger::link_of(suite, &device, r.seq, &link, &r.record);
            links.push(link);
            last = r.seq;
        }
        (last == through).then_some(links)
    }

    /// The office proved it holds this phone's chain only through `office_seq` (ending in
    /// `office_tag`), below what it acknowledged before: it was restored from an older backup.
    /// The acknowledged records it lost are put back from the store's kept copies and go out
    /// with the next upload. Returns how many, or `None` if they are no longer kept (or do not
    /// join the office's record).
    pub fn resend_to_restored_office(
        &mut self,
        office_seq: u64,
        office_tag: [u8; 16],
    ) -> Result<Option<u64>, AgentError> {
        let before = self.store.acked_through();
        let n = self.store.reinstate(office_seq, office_tag)?;
        match n {
            Some(n) => log::warn!(
                "the office holds this phone's records only through {office_seq} after acknowledging {before}: {n} records sent again"
            ),
            None => log::error!(
                "the office holds this phone's records only through {office_seq} after acknowledging {before}; records {}..={before} are no longer kept here",
                office_seq + 1
            ),
        }
        Ok(n)
    }

    /// Unacknowledged records after the anchor, oldest first, at most `limit`. A record that
    /// does not read (deleted, edited, swapped in the file) is damage: the store is repaired
    /// ([`Agent::repair_store`]) and the read runs again, so a damaged row never stops the
    /// rest of the evidence from reaching the office.
    pub fn unacknowledged(
        &mut self,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<StoredViolation>, AgentError> {
        match self.store.records_after(self.store.acked_through(), limit) {
            Err(StoreError::Integrity(e)) => {
                self.repair_store(&e, now)?;
                Ok(self
                    .store
                    .records_after(self.store.acked_through(), limit)?)
            }
            other => Ok(other?),
        }
    }

    /// The chain as check-in and finish report it.
    pub fn chain_state(&self) -> ChainState {
        let head = self.store.head();
        ChainState {
            acked_through: self.store.acked_through(),
            head_seq: head.seq,
            head_tag: head.tag_hex(),
            generation: self.store.generation(),
        }
    }

    /// The installed bundle as the server sees it (none while untrusted: the server then
    /// offers its newest).
    pub fn policy_state(&self) -> Option<PolicyState> {
        self.installed
            .as_ref()
            .filter(|i| i.trusted)
            .map(|i| PolicyState {
                id: i.header.policy_id.clone(),
                version: i.header.version,
                digest: i.digest.clone(),
            })
    }

    fn installed_policy(&self) -> Option<&Policy> {
        self.engine.as_ref().map(|e| &*e.policy().source)
    }

    /// The trust root, once provisioned.
    pub fn trust_root(&self) -> Option<&TrustRoot> {
        self.trust.as_ref()
    }

    /// The holder this device is issued to: a personnel assignment record in force, else the
    /// installed policy's `holders`.
    pub fn holder(&self) -> Option<String> {
        self.assigned.as_ref().map(|(h, _)| h.clone())
    }

    /// The holder and clearance at `now` under `policy`: the device's assignment record while
    /// it is in force, else the policy's `holders` entry for this device.
    fn assignment_at(
        &self,
        policy: Option<&Policy>,
        now: Timestamp,
    ) -> Option<(String, Clearance)> {
        if let Some(a) = self.sync.assignment.as_ref().filter(|a| a.in_force(now)) {
            return Some((a.holder.clone(), a.clearance));
        }
        policy
            .and_then(|p| p.holder_for_device(self.store.device_id()))
            .map(|h| (h.holder.clone(), h.clearance))
    }

    /// Brings the holder and clearance in force up to `now` (an assignment record began or
    /// ended, or arrived). When the holder changes, custody the registry recorded for the
    /// previous holder ends on this phone and the custody feed is read again from its start
    /// (the office routes it by holder, so the new holder's earlier sign-outs were never sent
    /// here). Returns whether the holder changed: the caller persists the context and sync
    /// state then.
    fn settle_assignment(&mut self, now: Timestamp) -> bool {
        let policy = self.engine.as_ref().map(|e| e.policy().source.clone());
        let next = self.assignment_at(policy.as_deref(), now);
        let holder_changed = next.as_ref().map(|a| &a.0) != self.assigned.as_ref().map(|a| &a.0);
        if let Some(e) = &mut self.engine {
            e.set_clearance(next.as_ref().map_or(Clearance::None, |a| a.1), now);
            e.set_unassigned(next.is_none(), now);
            if holder_changed && self.assigned.is_some() {
                let ctx = e.context_mut();
                let previous: Vec<String> = ctx
                    .custody()
                    .iter()
                    .filter(|(_, r)| r.source == CustodySource::Registry)
                    .map(|(d, _)| d.clone())
                    .collect();
                for d in &previous {
                    ctx.registry_custody_ended(d);
                }
                e.refresh(now);
            }
        }
        self.assigned = next;
        if holder_changed {
            self.sync.custody_cursor = 0;
        }
        holder_changed
    }

    /// Applies a verified personnel assignment record: kept if it is for this device and newer
    /// than the one held; the holder and clearance follow it while it is in force.
    pub fn apply_assignment(
        &mut self,
        doc: &AssignmentRecordDoc,
        now: Timestamp,
    ) -> Result<AssignmentOutcome, AgentError> {
        if doc.device != self.store.device_id() {
            return Ok(AssignmentOutcome::NotApplicable);
        }
        if self
            .sync
            .assignment
            .as_ref()
            .is_some_and(|held| !doc.supersedes(held))
        {
            return Ok(AssignmentOutcome::Superseded);
        }
        let now = self.clock.effective(now);
        self.sync.assignment = Some(doc.clone());
        let holder_changed = self.settle_assignment(now);
        // One sealed commit for the record and what it changed.
        if holder_changed {
            self.persist(&[STATE_CONTEXT, STATE_SYNC])?;
        } else {
            self.persist(&[STATE_SYNC])?;
        }
        Ok(AssignmentOutcome::Applied { holder_changed })
    }

    /// When the assignment in force changes next by time alone (a record's start or end).
    fn assignment_deadline(&self, now: Timestamp) -> Option<Timestamp> {
        self.sync
            .assignment
            .as_ref()
            .and_then(|a| a.next_change(now))
    }

    /// Applies a verified registry custody record: a sign-out starts custody, only a signed
    /// return that follows it ends it; a record seen before changes nothing; a record for
    /// another holder (or while this device has none) is not applied.
    pub fn apply_registry_custody(
        &mut self,
        doc: &CustodyRecordDoc,
        now: Timestamp,
    ) -> Result<CustodyOutcome, AgentError> {
        if self.holder().as_deref() != Some(doc.holder.as_str()) {
            return Ok(CustodyOutcome::NotApplicable);
        }
        if self.sync.custody_seen(&doc.record_id) {
            return Ok(CustodyOutcome::Duplicate);
        }
        let now = self.clock.effective(now);
        let engine = self.engine.as_mut().ok_or(AgentError::NoPolicy)?;
        let ctx = engine.context_mut();
        let outcome = match doc.action {
            CustodyAction::SignOut => {
                if self.sync.returned_after(&doc.document, doc.at) {
                    CustodyOutcome::Superseded
                } else {
                    ctx.registry_custody_started(&doc.document, doc.classification, doc.at);
                    CustodyOutcome::Applied
                }
            }
            CustodyAction::Return => match ctx.custody().get(&doc.document) {
                Some(r) if r.since <= doc.at => {
                    let registry = r.source == CustodySource::Registry;
                    ctx.registry_custody_ended(&doc.document);
                    if !registry {
                        log::info!("registry return ended custody scanned on the device");
                    }
                    CustodyOutcome::Applied
                }
                _ => CustodyOutcome::Superseded,
            },
        };
        engine.refresh(now);
        let (record_id, document, action, at) = (
            doc.record_id.clone(),
            doc.document.clone(),
            doc.action,
            doc.at,
        );
        self.sync.remember_custody(record_id, &document, action, at);
        self.persist(&[STATE_CONTEXT, STATE_SYNC])?;
        Ok(outcome)
    }

    /// The desired posture: the policy's; before the first policy, fail-closed on a managed phone
    /// (a trust root) and open on one not yet managed.
    pub fn posture(&self) -> Posture {
        match (&self.engine, self.trust_root()) {
            (Some(e), _) => (**e.posture()).clone(),
            // Managed (a trust root) but no policy yet: fail-closed until the first bundle.
            (None, Some(_)) => Posture::before_policy(),
            (None, None) => Posture::open(),
        }
    }

    /// The installed bundle.
    pub fn installed(&self) -> Option<&InstalledBundle> {
        self.installed.as_ref()
    }

    /// The engine, once a policy is installed.
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }

    /// The store (read-only: records, verification).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The agent at a glance.
    pub fn status(&self, now: Timestamp) -> AgentStatus {
        let now = self.clock.effective(now);
        AgentStatus {
            device_id: self.store.device_id().to_owned(),
            holder: self.holder(),
            policy_id: self.installed.as_ref().map(|i| i.header.policy_id.clone()),
            policy_version: self.installed.as_ref().map(|i| i.header.version),
            policy_trusted: self.installed.as_ref().map(|i| i.trusted),
            trust_root_version: self.trust.as_ref().map(TrustRoot::version),
            suite: self.trust.as_ref().map(TrustRoot::suite),
            store_suite: self.store.suite(),
            fail_closed: self
                .engine
                .as_ref()
                .and_then(|e| e.fail_closed_reason(now))
                .map(|r| r.as_str().to_owned()),
            posture: self.posture(),
            next_deadline: [
                self.engine.as_ref().and_then(Engine::next_deadline),
                self.assignment_deadline(now),
            ]
            .into_iter()
            .flatten()
            .min(),
            next_sync_due: self.sync.next_due,
            last_sync: self.sync.last_success,
            acked_through: self.store.acked_through(),
            head_seq: self.store.head().seq,
            unacknowledged: self.store.unacked_count(),
            generation: self.store.generation(),
            high_water: self.clock.high_water(),
        }
    }
}

/// Events whose effect on the context must survive a restart.
fn durable_context_change(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::AppInventory { .. }
            | EventKind::AppInstalled { .. }
            | EventKind::AppRemoved { .. }
            | EventKind::CustodyStarted { .. }
            | EventKind::CustodyEnded { .. }
            | EventKind::NfcTag { .. }
            | EventKind::WifiConnected { .. }
            | EventKind::WifiDisconnected {}
            | EventKind::Location { .. }
    )
}
