//! The stateful front of the core: one compiled policy, the device context, and the cached
//! activation. It owns no I/O; the agent (store, sync, FFI) wraps it.

use std::borrow::Cow;
use std::sync::Arc;

use crate::compile::CompiledPolicy;
use crate::context::{Context, CustodySource};
use crate::decision::Decision;
use crate::eval::{Activation, activate, decide};
use crate::event::{Event, EventKind};
use crate::level::Clearance;
use crate::posture::Posture;
use crate::time::Timestamp;

/// Why the fail-closed posture is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailClosedReason {
    /// The installed bundle's `expires_at` has passed (a frozen policy is not trusted).
    PolicyExpired,
    /// No successful sync for longer than the policy's `max_offline_s`.
    SyncOverdue,
    /// The violation store is over its size cap: evidence is kept, the device closes down
    /// until sync drains it.
    StoreFull,
    /// The signed policy assigns this device to no holder: it runs closed until the office
    /// assigns it (a phone nobody is accountable for runs nothing open).
    Unassigned,
    /// A trust-root rotation left the installed bundle's signers untrusted: it runs closed
    /// until a bundle signed under the new root arrives.
    PolicyUntrusted,
    /// The violation store was found damaged (or restored): it runs closed until the office
    /// has the record that reports it.
    StoreDamaged,
}

impl FailClosedReason {
    /// Short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PolicyExpired => "policy expired",
            Self::SyncOverdue => "sync overdue",
            Self::StoreFull => "violation store full",
            Self::Unassigned => "device assigned to no holder",
            Self::PolicyUntrusted => "installed policy no longer signed by the trust root",
            Self::StoreDamaged => {
                "violation store damaged: waiting for the office to receive the report"
            }
        }
    }
}

/// Policy + context + cached activation.
#[derive(Debug)]
pub struct Engine {
    policy: Arc<CompiledPolicy>,
    ctx: Context,
    act: Activation,
    policy_expires_at: Option<Timestamp>,
    sync_due_by: Option<Timestamp>,
    store_full: bool,
    unassigned: bool,
    untrusted: bool,
    store_damaged: bool,
}

impl Engine {
    /// A fresh context under `policy` for a holder of `clearance`, evaluated at `now`.
    pub fn new(policy: Arc<CompiledPolicy>, clearance: Clearance, now: Timestamp) -> Self {
        let ctx = Context::new(&policy, clearance);
        Self::with_context(policy, ctx, now)
    }

    /// Resumes with a restored context.
    pub fn with_context(policy: Arc<CompiledPolicy>, ctx: Context, now: Timestamp) -> Self {
        let act = activate(&policy, &ctx, now, false, None);
        Self {
            policy,
            ctx,
            act,
            policy_expires_at: None,
            sync_due_by: None,
            store_full: false,
            unassigned: false,
            untrusted: false,
            store_damaged: false,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Arc<CompiledPolicy> {
        &self.policy
    }

    /// The context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Mutable context, for the agent's registry feed. Call [`Engine::refresh`] afterwards.
    pub fn context_mut(&mut self) -> &mut Context {
        &mut self.ctx
    }

    /// The current desired posture.
    pub fn posture(&self) -> &Arc<Posture> {
        &self.act.posture
    }

    /// The current activation.
    pub fn activation(&self) -> &Activation {
        &self.act
    }

    /// When the posture may change without an event (beacon timeout, time window, expiry,
    /// sync deadline): the platform schedules a wake-up and calls [`Engine::tick`].
    pub fn next_deadline(&self) -> Option<Timestamp> {
        [
            self.act.valid_until,
            self.policy_expires_at,
            self.sync_due_by,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sets when the installed bundle expires.
    pub fn set_policy_expiry(&mut self, at: Option<Timestamp>) {
        self.policy_expires_at = at;
    }

    /// Sets the time by which a successful sync must happen.
    pub fn set_sync_due_by(&mut self, at: Option<Timestamp>) {
        self.sync_due_by = at;
    }

    /// Marks the violation store full (or drained) and re-derives the posture at `now`.
    pub fn set_store_full(&mut self, full: bool, now: Timestamp) -> bool {
        self.store_full = full;
        self.recompute(now, false)
    }

    /// Marks the device as assigned to no holder in the signed policy (or assigned again).
    pub fn set_unassigned(&mut self, unassigned: bool, now: Timestamp) -> bool {
        self.unassigned = unassigned;
        self.recompute(now, false)
    }

    /// Marks the policy as no longer signed by the trust root (or trusted again).
    pub fn set_untrusted(&mut self, untrusted: bool, now: Timestamp) -> bool {
        self.untrusted = untrusted;
        self.recompute(now, false)
    }

    /// Marks the violation store as damaged until the office holds the report (or clears it).
    pub fn set_store_damaged(&mut self, damaged: bool, now: Timestamp) -> bool {
        self.store_damaged = damaged;
        self.recompute(now, false)
    }

    /// Why the fail-closed posture applies at `now`, if it does.
    pub fn fail_closed_reason(&self, now: Timestamp) -> Option<FailClosedReason> {
        if self.untrusted {
            Some(FailClosedReason::PolicyUntrusted)
        } else if self.store_damaged {
            Some(FailClosedReason::StoreDamaged)
        } else if self.unassigned {
            Some(FailClosedReason::Unassigned)
        } else if self.store_full {
            Some(FailClosedReason::StoreFull)
        } else if self.policy_expires_at.is_some_and(|e| now >= e) {
            Some(FailClosedReason::PolicyExpired)
        } else if self.sync_due_by.is_some_and(|d| now >= d) {
            Some(FailClosedReason::SyncOverdue)
        } else {
            None
        }
    }

    /// Replaces the policy (a newer verified bundle), keeping the context.
    pub fn replace_policy(&mut self, policy: Arc<CompiledPolicy>, now: Timestamp) -> bool {
        self.ctx.rebind(&policy);
        self.policy = policy;
        self.recompute(now, true)
    }

    /// Sets the holder's clearance (from a signed source only).
    pub fn set_clearance(&mut self, c: Clearance, now: Timestamp) -> bool {
        let changed = self.ctx.set_clearance(c).rules_input;
        self.recompute(now, changed)
    }

    /// Re-derives the posture at `now` after a context change made through
    /// [`Engine::context_mut`]. Returns whether the posture changed.
    pub fn refresh(&mut self, now: Timestamp) -> bool {
        self.recompute(now, true)
    }

    /// Re-derives the posture if time alone has changed it. Returns the new posture if so.
    pub fn tick(&mut self, now: Timestamp) -> Option<Arc<Posture>> {
        self.recompute(now, false).then(|| self.act.posture.clone())
    }

    fn recompute(&mut self, now: Timestamp, inputs_changed: bool) -> bool {
        let fail_closed = self.fail_closed_reason(now).is_some();
        let expired = self.act.valid_until.is_some_and(|t| now >= t);
        // Time went back (the office's proven clock settled a mark that ran ahead): the cached
        // activation and its deadline were derived for a later time and say nothing now.
        let went_back = now < self.act.at;
        if !(inputs_changed || expired || went_back || fail_closed != self.act.fail_closed) {
            return false;
        }
        let act = activate(&self.policy, &self.ctx, now, fail_closed, Some(&self.act));
        let changed = !Arc::ptr_eq(&act.posture, &self.act.posture);
        self.act = act;
        changed
    }

    /// Applies an event and decides it.
    pub fn handle(&mut self, event: &Event) -> Decision {
        let change = self.ctx.apply(&self.policy, event);
        if let Some(w) = change.wake_by {
            // Cheaper than re-deriving: an early wake re-derives and finds the true deadline.
            self.act.valid_until = Some(self.act.valid_until.map_or(w, |v| v.min(w)));
        }
        let posture_changed = self.recompute(event.at, change.rules_input);
        let mut d = decide(&self.policy, &self.ctx, &self.act, event);
        d.posture_changed = posture_changed;
        if d.verdict == crate::decision::Verdict::Allow
            && let Some(r) = self.context_reason(event, posture_changed)
        {
            d.reason = r;
        }
        d
    }

    /// Explains an allowed event that moved the context; static text on the hot path.
    fn context_reason(&self, event: &Event, posture_changed: bool) -> Option<Cow<'static, str>> {
        let fc = self
            .fail_closed_reason(event.at)
            .map(|r| format!("; fail-closed: {}", r.as_str()));
        let fc = fc.unwrap_or_default();
        match &event.kind {
            EventKind::CustodyStarted { document, classification } => {
                Some(format!("custody of `{document}` ({classification}) started{fc}").into())
            }
            EventKind::CustodyEnded { document } => Some(match self.ctx.custody().get(document) {
                Some(r) if r.source == CustodySource::Registry => {
                    format!("custody of `{document}` is on the registry's record: only a signed return ends it").into()
                }
                _ => format!("custody of `{document}` ended{fc}").into(),
            }),
            EventKind::BeaconSeen { .. }
            | EventKind::Location { .. }
            | EventKind::WifiConnected { .. }
            | EventKind::WifiDisconnected {}
            | EventKind::NfcTag { .. }
                if posture_changed =>
            {
                let zones = self.ctx.zone_ids_present(event.at);
                Some(if zones.is_empty() {
                    format!("left all secure zones{fc}").into()
                } else {
                    format!("inside secure zone {}{fc}", zones.join(", ")).into()
                })
            }
            _ if posture_changed && !fc.is_empty() => Some(fc.trim_start_matches("; ").to_owned().into()),
            _ => None,
        }
    }
}
