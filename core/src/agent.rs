//! The device-side facade: engine + store. What the FFI exposes and the CLI drives.
//!
//! - Trust root and policy bundles are verified by [`crate::bundle`] before anything is
//!   stored; the store keeps them sealed, so a restart reloads them without re-verifying
//!   signatures (the store's AEAD authenticates what the agent itself wrote).
//! - Every decision with `violation: true` is appended to the store before it is returned.
//! - The context is persisted whenever something durable changed (custody, zones checked in,
//!   inventory), not on every beacon sighting.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bundle::keys::SigningKey;
use crate::bundle::{BundleError, BundleHeader, Installed, TrustRoot, verify_bundle};
use crate::compile::{CompiledPolicy, Platform};
use crate::context::{Context, ContextSnapshot};
use crate::decision::{Decision, Verdict};
use crate::engine::{Engine, FailClosedReason};
use crate::event::{Event, EventKind};
use crate::level::Clearance;
use crate::policy::Policy;
use crate::policy::model::Severity;
use crate::posture::Posture;
use crate::store::{KeyProvider, PolicyRef, Store, StoreError, StoreOptions, ViolationRecord};
use crate::sync::custody::{CustodyAction, CustodyRecordDoc};
use crate::sync::identity::DeviceIdentity;
use crate::sync::schedule::SyncState;
use crate::time::Timestamp;

const STATE_TRUST: &str = "trust_root";
const STATE_POLICY: &str = "installed_policy";
const STATE_CONTEXT: &str = "context";
const STATE_IDENTITY: &str = "identity";
const STATE_SYNC: &str = "sync";

/// Id of the violation raised when the device has not synced for longer than the policy allows.
pub const SYNC_OVERDUE_RULE: &str = "baomi.sync_overdue";

/// Id of the violation raised when the store passes its size cap.
pub const STORE_FULL_RULE: &str = "baomi.store_full";

/// Errors of the agent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgentError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bundle or trust root was refused.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A bundle arrived before any trust root was provisioned.
    #[error("no trust root is installed: provision one before installing policies")]
    NoTrustRoot,
    /// An event arrived before any policy was installed.
    #[error("no policy is installed")]
    NoPolicy,
    /// Stored state that does not parse (written by this agent, so a bug or a downgrade).
    #[error("stored `{name}` does not parse: {reason}")]
    BadState {
        /// State name.
        name: &'static str,
        /// Parser message.
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
struct InstalledPolicy {
    header: BundleHeader,
    digest: String,
    policy: Policy,
}

/// The agent.
pub struct Agent {
    store: Store,
    platform: Platform,
    trust: Option<TrustRoot>,
    installed: Option<(BundleHeader, String)>,
    engine: Option<Engine>,
    store_full_reported: bool,
    sync: SyncState,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("store", &self.store)
            .field("installed", &self.installed)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Opens the agent's store in `dir` and reloads what was installed.
    pub fn open(
        dir: &Path,
        keys: &dyn KeyProvider,
        opts: StoreOptions,
        platform: Platform,
        now: Timestamp,
    ) -> Result<Agent, AgentError> {
        let store = Store::open(dir, keys, opts)?;
        let trust = match store.get_state(STATE_TRUST)? {
            Some(b) => Some(TrustRoot::from_stored(&b)?),
            None => None,
        };
        let mut agent = Agent {
            store,
            platform,
            trust,
            installed: None,
            engine: None,
            store_full_reported: false,
            sync: SyncState::default(),
        };
        if let Some(raw) = agent.store.get_state(STATE_SYNC)? {
            agent.sync = serde_json::from_slice(&raw).map_err(|e| AgentError::BadState {
                name: STATE_SYNC,
                reason: e.to_string(),
            })?;
        }
        if let Some(raw) = agent.store.get_state(STATE_POLICY)? {
            let ip: InstalledPolicy =
                serde_json::from_slice(&raw).map_err(|e| AgentError::BadState {
                    name: STATE_POLICY,
                    reason: e.to_string(),
                })?;
            let ctx = match agent.store.get_state(STATE_CONTEXT)? {
                Some(c) => Some(serde_json::from_slice::<ContextSnapshot>(&c).map_err(|e| {
                    AgentError::BadState {
                        name: STATE_CONTEXT,
                        reason: e.to_string(),
                    }
                })?),
                None => None,
            };
            agent.activate(ip, ctx, now)?;
        }
        Ok(agent)
    }

    fn activate(
        &mut self,
        ip: InstalledPolicy,
        snapshot: Option<ContextSnapshot>,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        let clearance = self.clearance_from(&ip.policy);
        let compiled = Arc::new(
            CompiledPolicy::compile(ip.policy, self.platform)
                .map_err(BundleError::InvalidPolicy)?,
        );
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
        engine.set_policy_expiry((ip.header.version > 0).then_some(ip.header.expires_at));
        engine.set_sync_due_by(self.sync.due_by(&engine.policy().source));
        self.installed = Some((ip.header, ip.digest));
        self.engine = Some(engine);
        Ok(())
    }

    fn clearance_from(&self, policy: &Policy) -> Clearance {
        policy
            .holder_for_device(self.store.device_id())
            .map_or(Clearance::None, |h| h.clearance)
    }

    /// Provisions the first trust root, or rotates to the next one.
    pub fn install_trust_root(&mut self, bytes: &[u8]) -> Result<u64, AgentError> {
        let next = match &self.trust {
            None => TrustRoot::from_self_signed(bytes)?,
            Some(current) => current.rotate(bytes)?,
        };
        self.store.put_state(STATE_TRUST, next.envelope_bytes())?;
        let v = next.version();
        self.trust = Some(next);
        Ok(v)
    }

    /// Verifies and installs a policy bundle (from managed configuration or sync).
    pub fn install_bundle(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<BundleHeader, AgentError> {
        let trust = self.trust.as_ref().ok_or(AgentError::NoTrustRoot)?;
        let installed = Installed {
            policy_id: self.installed.as_ref().map(|(h, _)| h.policy_id.clone()),
            version: self.installed.as_ref().map_or(0, |(h, _)| h.version),
        };
        let v = verify_bundle(bytes, trust, &installed, now)?;
        let ip = InstalledPolicy {
            header: v.header.clone(),
            digest: v.digest,
            policy: v.policy,
        };
        // Persist before use: a crash after this point restarts under the new policy.
        let json = serde_json::to_vec(&ip).map_err(|e| AgentError::BadState {
            name: STATE_POLICY,
            reason: e.to_string(),
        })?;
        self.store.put_state(STATE_POLICY, &json)?;
        self.activate(ip, None, now)?;
        self.persist_context()?;
        Ok(v.header)
    }

    /// Runs an unsigned authoring policy: for `baomi simulate` on a workstation only. The
    /// policy is not persisted and no holder assignment is needed (pass the clearance).
    pub fn run_unsigned_policy_for_simulation(
        &mut self,
        policy: Policy,
        clearance: Clearance,
        now: Timestamp,
    ) -> Result<(), AgentError> {
        let header = BundleHeader {
            policy_id: policy.policy_id.clone(),
            version: 0,
            issued_at: now,
            expires_at: now,
        };
        self.activate(
            InstalledPolicy {
                header,
                digest: String::new(),
                policy,
            },
            None,
            now,
        )?;
        self.override_clearance_for_simulation(clearance, now);
        Ok(())
    }

    /// Sets the clearance without a signed assignment: simulation only.
    pub fn override_clearance_for_simulation(&mut self, clearance: Clearance, now: Timestamp) {
        if let Some(e) = &mut self.engine {
            e.set_clearance(clearance, now);
        }
    }

    /// Decides an event; records it if it is a violation. Time-only changes up to the event
    /// (see [`Agent::tick`]) are settled first.
    pub fn handle(&mut self, event: &Event) -> Result<Decision, AgentError> {
        if self.engine.is_none() {
            return Err(AgentError::NoPolicy);
        }
        // Whatever time alone changed (a sync deadline passed) is settled, and recorded,
        // before the event: every caller gets it without ticking first.
        self.tick(event.at)?;
        let engine = self.engine.as_mut().ok_or(AgentError::NoPolicy)?;
        let decision = engine.handle(event);
        let policy = self.installed.as_ref().map(|(h, _)| PolicyRef {
            id: h.policy_id.clone(),
            version: h.version,
        });
        if decision.violation {
            self.store
                .append(&ViolationRecord::new(event, &decision, policy))?;
            self.check_capacity(event.at)?;
        }
        if durable_context_change(&event.kind) {
            self.persist_context()?;
        }
        Ok(decision)
    }

    /// Over the cap: keep every record, record `baomi.store_full` once, and close down.
    fn check_capacity(&mut self, at: Timestamp) -> Result<(), AgentError> {
        let full = self.store.over_cap()?;
        if let Some(e) = &mut self.engine {
            e.set_store_full(full, at);
        }
        if full && !self.store_full_reported {
            self.store_full_reported = true;
            self.record_agent_violation(
                at,
                "store_full",
                STORE_FULL_RULE,
                "violation store over its size cap: nothing is deleted; the device fails closed until sync drains it".into(),
            )?;
        } else if !full {
            self.store_full_reported = false;
        }
        Ok(())
    }

    fn persist_context(&mut self) -> Result<(), AgentError> {
        if let Some(e) = &self.engine {
            let snap =
                serde_json::to_vec(&e.context().snapshot()).map_err(|e| AgentError::BadState {
                    name: STATE_CONTEXT,
                    reason: e.to_string(),
                })?;
            self.store.put_state(STATE_CONTEXT, &snap)?;
        }
        Ok(())
    }

    /// Re-derives the posture when time alone changed it (beacon timeout, expiry, sync
    /// deadline) and records the sync-overdue violation once per lapse. Returns the new posture
    /// if it changed.
    pub fn tick(&mut self, now: Timestamp) -> Result<Option<Posture>, AgentError> {
        let Some(engine) = self.engine.as_mut() else {
            return Ok(None);
        };
        let changed = engine.tick(now).map(|p| (*p).clone());
        let overdue = engine.fail_closed_reason(now) == Some(FailClosedReason::SyncOverdue);
        if overdue && !self.sync.overdue_reported {
            let last = self
                .sync
                .last_success
                .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339());
            self.record_agent_violation(
                now,
                "sync_overdue",
                SYNC_OVERDUE_RULE,
                format!("no successful sync since {last}: the device fails closed until it syncs"),
            )?;
            self.sync.overdue_reported = true;
            self.save_sync_state()?;
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
        let policy = self.installed.as_ref().map(|(h, _)| PolicyRef {
            id: h.policy_id.clone(),
            version: h.version,
        });
        let record = ViolationRecord {
            event: Event {
                at,
                kind: EventKind::Tamper { kind: kind.into() },
            },
            verdict: Verdict::Deny,
            rules: vec![rule.into()],
            severity: Some(Severity::High),
            reason,
            posture: self.posture(),
            policy,
        };
        Ok(self.store.append(&record)?)
    }

    /// The device's sync identity, created (and stored sealed) on first use.
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
                let key = SigningKey::generate().map_err(|e| bad(e.to_string()))?;
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

    /// Replaces the sync bookkeeping, persists it and moves the sync deadline.
    pub fn set_sync_state(&mut self, state: SyncState) -> Result<(), AgentError> {
        self.sync = state;
        self.save_sync_state()?;
        let due = self.installed_policy().and_then(|p| self.sync.due_by(p));
        if let Some(e) = &mut self.engine {
            e.set_sync_due_by(due);
        }
        Ok(())
    }

    fn save_sync_state(&mut self) -> Result<(), AgentError> {
        let json = serde_json::to_vec(&self.sync).map_err(|e| AgentError::BadState {
            name: STATE_SYNC,
            reason: e.to_string(),
        })?;
        self.store.put_state(STATE_SYNC, &json)?;
        Ok(())
    }

    fn installed_policy(&self) -> Option<&Policy> {
        self.engine.as_ref().map(|e| &*e.policy().source)
    }

    /// The trust root, once provisioned.
    pub fn trust_root(&self) -> Option<&TrustRoot> {
        self.trust.as_ref()
    }

    /// The holder this device is issued to, per the installed policy.
    pub fn holder(&self) -> Option<String> {
        self.installed_policy()
            .and_then(|p| p.holder_for_device(self.store.device_id()))
            .map(|h| h.holder.clone())
    }

    /// Applies a verified registry custody record (sign-out starts custody, only a signed
    /// return ends it). Records for another holder are ignored. Returns whether it applied.
    pub fn apply_registry_custody(
        &mut self,
        doc: &CustodyRecordDoc,
        now: Timestamp,
    ) -> Result<bool, AgentError> {
        if self.holder().as_deref() != Some(doc.holder.as_str()) {
            return Ok(false);
        }
        let engine = self.engine.as_mut().ok_or(AgentError::NoPolicy)?;
        let ctx = engine.context_mut();
        match doc.action {
            CustodyAction::SignOut => {
                ctx.registry_custody_started(&doc.document, doc.classification, doc.at);
            }
            CustodyAction::Return => {
                ctx.registry_custody_ended(&doc.document);
            }
        }
        engine.refresh(now);
        self.persist_context()?;
        Ok(true)
    }

    /// The desired posture (open when no policy is installed yet).
    pub fn posture(&self) -> Posture {
        self.engine
            .as_ref()
            .map_or_else(Posture::open, |e| (**e.posture()).clone())
    }

    /// The installed bundle's header and digest.
    pub fn installed(&self) -> Option<&(BundleHeader, String)> {
        self.installed.as_ref()
    }

    /// The engine, once a policy is installed.
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.as_ref()
    }

    /// The engine, mutably (sync applies deadlines and the custody feed through it).
    pub fn engine_mut(&mut self) -> Option<&mut Engine> {
        self.engine.as_mut()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, mutably (sync acknowledges through it).
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
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
