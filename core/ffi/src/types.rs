//! Records, enums and errors that cross the FFI boundary.

use baomi_core::agent::AgentError;
use baomi_core::agent::SyncError;
use baomi_core::agent::{IntakeItem, IntakeOutcome};
use baomi_core::decision::{Decision, Verdict};
use baomi_core::posture::{
    AppliedPosture, AppliedSetting, Enforcement, Posture, PostureDiff, SettingState,
};

/// Every failure, with a message a support engineer can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum BaomiError {
    /// The encrypted store could not be opened or written (wrong key, corrupt, full disk).
    #[error("violation store: {reason}")]
    Store {
        /// What failed.
        reason: String,
    },
    /// The hash chain is broken: records were edited, deleted or reordered.
    #[error("violation log integrity: {reason}")]
    Integrity {
        /// The first broken link.
        reason: String,
    },
    /// A bundle or trust root was refused (signature, threshold, rollback, expiry, policy).
    #[error("refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// No trust root yet: provision it from managed configuration first.
    #[error("no trust root is installed: provision one from managed configuration")]
    NoTrustRoot,
    /// No policy yet.
    #[error("no policy is installed yet: install a bundle or sync")]
    NoPolicy,
    /// An event that does not parse.
    #[error("bad event: {reason}")]
    BadEvent {
        /// Parser message with the field.
        reason: String,
    },
    /// The network failed; the sync is retried with backoff and nothing was lost.
    #[error("offline: {reason}")]
    Offline {
        /// Transport message.
        reason: String,
    },
    /// The server refused or answered nonsense; nothing was deleted.
    #[error("sync: {reason}")]
    Sync {
        /// Stage and reason.
        reason: String,
    },
    /// A value from the platform the core refuses: a time outside 1970..9999, text that is
    /// not UTF-8 (from a caller that bypassed the generated encoders).
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What was wrong.
        reason: String,
    },
    /// A platform callback (key store, HTTP client, clock) failed or threw.
    #[error("platform: {reason}")]
    Platform {
        /// What the platform said.
        reason: String,
    },
}

/// Checks text the platform passed in before the core parses or stores it. uniffi lifts
/// strings without checking their bytes, so a caller that bypasses the generated encoders
/// could hand in invalid UTF-8, which would be sealed and break every later read.
pub(crate) fn text(s: String, what: &str) -> Result<String, BaomiError> {
    String::from_utf8(s.into_bytes()).map_err(|_| BaomiError::InvalidInput {
        reason: format!("{what} is not UTF-8"),
    })
}

impl From<uniffi::UnexpectedUniFFICallbackError> for BaomiError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        BaomiError::Platform { reason: e.reason }
    }
}

impl From<AgentError> for BaomiError {
    fn from(e: AgentError) -> Self {
        use baomi_core::store::StoreError;
        match e {
            AgentError::Store(StoreError::Integrity(c)) => BaomiError::Integrity {
                reason: c.to_string(),
            },
            AgentError::Store(s) => BaomiError::Store {
                reason: s.to_string(),
            },
            AgentError::Bundle(b) => BaomiError::Refused {
                reason: b.to_string(),
            },
            AgentError::NoTrustRoot => BaomiError::NoTrustRoot,
            AgentError::NoPolicy => BaomiError::NoPolicy,
            AgentError::TimeOutOfRange(t) => BaomiError::InvalidInput {
                reason: t.to_string(),
            },
            other @ AgentError::BadState { .. } => BaomiError::Store {
                reason: other.to_string(),
            },
        }
    }
}

impl From<SyncError> for BaomiError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Transport(t) => BaomiError::Offline { reason: t.0 },
            SyncError::Agent(a) => a.into(),
            SyncError::Rejected(b) => BaomiError::Refused {
                reason: b.to_string(),
            },
            other => BaomiError::Sync {
                reason: other.to_string(),
            },
        }
    }
}

/// Which app ids the policy is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum PlatformKind {
    /// Package names.
    Android,
    /// Bundle ids.
    Ios,
}

impl From<PlatformKind> for baomi_core::Platform {
    fn from(p: PlatformKind) -> Self {
        match p {
            PlatformKind::Android => baomi_core::Platform::Android,
            PlatformKind::Ios => baomi_core::Platform::Ios,
        }
    }
}

/// The desired device posture.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PostureState {
    /// Camera off.
    pub camera_disabled: bool,
    /// Screen capture off.
    pub screen_capture_disabled: bool,
    /// Packages to suspend, sorted.
    pub blocked_packages: Vec<String>,
}

impl From<&Posture> for PostureState {
    fn from(p: &Posture) -> Self {
        Self {
            camera_disabled: p.camera_disabled,
            screen_capture_disabled: p.screen_capture_disabled,
            blocked_packages: p.blocked_packages.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl From<&PostureState> for Posture {
    fn from(p: &PostureState) -> Self {
        Posture {
            camera_disabled: p.camera_disabled,
            screen_capture_disabled: p.screen_capture_disabled,
            blocked_packages: p
                .blocked_packages
                .iter()
                .map(|s| s.as_str().into())
                .collect(),
        }
    }
}

/// What the platform must change to go from the applied posture to the desired one.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PostureChange {
    /// New camera state, if it changes.
    pub camera_disabled: Option<bool>,
    /// New screen capture state, if it changes.
    pub screen_capture_disabled: Option<bool>,
    /// Packages to suspend now.
    pub block: Vec<String>,
    /// Packages to release now.
    pub unblock: Vec<String>,
}

impl From<PostureDiff> for PostureChange {
    fn from(d: PostureDiff) -> Self {
        Self {
            camera_disabled: d.camera_disabled,
            screen_capture_disabled: d.screen_capture_disabled,
            block: d.block,
            unblock: d.unblock,
        }
    }
}

/// Allow, deny, warn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum VerdictKind {
    /// Nothing forbids it.
    Allow,
    /// Forbidden; the platform blocks it where it can.
    Deny,
    /// Allowed but recorded (monitor rules).
    Warn,
}

impl From<Verdict> for VerdictKind {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Allow => VerdictKind::Allow,
            Verdict::Deny => VerdictKind::Deny,
            Verdict::Warn => VerdictKind::Warn,
        }
    }
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DecisionInfo {
    /// Event time (ms since the epoch).
    pub at_ms: i64,
    /// Event type.
    pub event_type: String,
    /// Verdict.
    pub verdict: VerdictKind,
    /// Recorded in the violation log.
    pub violation: bool,
    /// Matched rule ids.
    pub rules: Vec<String>,
    /// Highest severity (`low`..`critical`).
    pub severity: Option<String>,
    /// Why, for the user and the officer.
    pub reason: String,
    /// Desired posture after the event.
    pub posture: PostureState,
    /// Whether it changed with this event.
    pub posture_changed: bool,
}

impl From<&Decision> for DecisionInfo {
    fn from(d: &Decision) -> Self {
        Self {
            at_ms: d.at.0,
            event_type: d.event_type.to_owned(),
            verdict: d.verdict.into(),
            violation: d.violation,
            rules: d.rules.iter().map(|r| r.to_string()).collect(),
            severity: d.severity.map(|s| s.as_str().to_owned()),
            reason: d.reason.to_string(),
            posture: (&*d.posture).into(),
            posture_changed: d.posture_changed,
        }
    }
}

/// An installed bundle.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct BundleInfo {
    /// Policy id.
    pub policy_id: String,
    /// Version.
    pub version: u64,
    /// Expiry (ms).
    pub expires_at_ms: i64,
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncOutcome {
    /// Records acknowledged in this sync.
    pub uploaded: u64,
    /// Newest acknowledged seq.
    pub acked_through: u64,
    /// Bundle version installed, if any.
    pub bundle_installed: Option<u64>,
    /// Custody records applied.
    pub custody_applied: u32,
    /// Device minus server clock.
    pub clock_skew_ms: i64,
    /// Posture after the sync.
    pub posture: PostureState,
    /// When to sync next (ms).
    pub next_due_ms: Option<i64>,
}

/// The agent at a glance.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AgentStatus {
    /// Device id records are bound to.
    pub device_id: String,
    /// Installed policy id.
    pub policy_id: Option<String>,
    /// Installed bundle version.
    pub policy_version: Option<u64>,
    /// Trust root version.
    pub trust_root_version: Option<u64>,
    /// Why the device fails closed, if it does.
    pub fail_closed: Option<String>,
    /// When to call `tick` without an event (ms).
    pub next_deadline_ms: Option<i64>,
    /// When to sync next (ms).
    pub next_sync_due_ms: Option<i64>,
    /// Newest acknowledged seq.
    pub acked_through: u64,
    /// Newest seq.
    pub head_seq: u64,
    /// The trust root's cryptographic suite (`intl` or `sm`), once one is installed.
    pub suite: Option<String>,
    /// The suite the store seals and MACs under (`intl` or `sm`).
    pub store_suite: String,
}

/// One decrypted violation.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ViolationEntry {
    /// Seq.
    pub seq: u64,
    /// The record as JSON (event, verdict, rules, reason, posture, policy).
    pub json: String,
}

/// What `verify_log` walked.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ChainReport {
    /// Records present and authentic.
    pub records: u64,
    /// Acknowledged and deleted through.
    pub acked_through: u64,
    /// Newest seq.
    pub head: u64,
}

/// An HTTP header.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HttpHeader {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HttpReply {
    /// Status.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

/// Who applies the posture on this device (see `baomi_core::posture::Enforcement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum EnforcementMode {
    /// Device-owner DPC of a fully managed phone.
    DeviceOwner,
    /// Profile owner of a company-owned work profile (camera and capture via the parent).
    ProfileOwnerOrgOwned,
    /// Profile owner on a personal device: cannot enforce.
    ProfileOwnerPersonal,
    /// Plain device admin: cannot enforce.
    DeviceAdmin,
    /// No admin role: cannot enforce.
    Unmanaged,
    /// The MDM applies the posture (iOS; an EMM that owns the device).
    Mdm,
}

/// What became of one setting (see `baomi_core::posture::SettingState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SettingOutcome {
    /// Applied.
    Applied,
    /// A banned app that is not installed: satisfied.
    NotInstalled,
    /// The platform call failed.
    Failed,
    /// This mode cannot apply it.
    Unsupported,
    /// Left to the MDM.
    ByMdm,
}

/// One setting and what the platform did with it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AppliedSettingInfo {
    /// `camera_disabled`, `screen_capture_disabled`, `package:<name>`, `hardening:<name>`.
    pub setting: String,
    /// Desired value (true: disabled / suspended / restricted).
    pub desired: bool,
    /// Outcome.
    pub state: SettingOutcome,
    /// The platform's words when it failed or cannot.
    pub detail: Option<String>,
}

impl From<AppliedSettingInfo> for AppliedSetting {
    fn from(s: AppliedSettingInfo) -> Self {
        AppliedSetting {
            setting: s.setting,
            desired: s.desired,
            state: match s.state {
                SettingOutcome::Applied => SettingState::Applied,
                SettingOutcome::NotInstalled => SettingState::NotInstalled,
                SettingOutcome::Failed => SettingState::Failed,
                SettingOutcome::Unsupported => SettingState::Unsupported,
                SettingOutcome::ByMdm => SettingState::ByMdm,
            },
            detail: s.detail,
        }
    }
}

/// Builds the core's report from the platform's.
pub(crate) fn applied_posture(
    mode: EnforcementMode,
    settings: Vec<AppliedSettingInfo>,
) -> AppliedPosture {
    AppliedPosture {
        enforcement: match mode {
            EnforcementMode::DeviceOwner => Enforcement::DeviceOwner,
            EnforcementMode::ProfileOwnerOrgOwned => Enforcement::ProfileOwnerOrgOwned,
            EnforcementMode::ProfileOwnerPersonal => Enforcement::ProfileOwnerPersonal,
            EnforcementMode::DeviceAdmin => Enforcement::DeviceAdmin,
            EnforcementMode::Unmanaged => Enforcement::Unmanaged,
            EnforcementMode::Mdm => Enforcement::Mdm,
        },
        settings: settings.into_iter().map(AppliedSetting::from).collect(),
    }
}

/// What became of one item of managed configuration.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum IntakeResult {
    /// Not in the configuration.
    Absent,
    /// The same bytes are installed.
    AlreadyInstalled {
        /// Version.
        version: u64,
    },
    /// Older than the installed one: skipped.
    Older {
        /// Claimed version delivered.
        offered: u64,
        /// Installed version.
        installed: u64,
    },
    /// Verified and installed.
    Installed {
        /// New version.
        version: u64,
    },
    /// Refused (and recorded as a tamper violation when a policy is in force).
    Refused {
        /// Why.
        reason: String,
        /// Whether a violation was recorded.
        recorded: bool,
    },
}

impl From<IntakeItem> for IntakeResult {
    fn from(i: IntakeItem) -> Self {
        match i {
            IntakeItem::Absent => Self::Absent,
            IntakeItem::AlreadyInstalled { version } => Self::AlreadyInstalled { version },
            IntakeItem::Older { offered, installed } => Self::Older { offered, installed },
            IntakeItem::Installed { version } => Self::Installed { version },
            IntakeItem::Refused { reason, recorded } => Self::Refused { reason, recorded },
        }
    }
}

/// The outcome of `apply_managed_config`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ManagedConfigOutcome {
    /// The trust root item.
    pub trust_root: IntakeResult,
    /// The policy bundle item.
    pub bundle: IntakeResult,
    /// Whether anything was installed (re-apply the posture).
    pub changed: bool,
}

impl From<IntakeOutcome> for ManagedConfigOutcome {
    fn from(o: IntakeOutcome) -> Self {
        Self {
            changed: o.changed(),
            trust_root: o.trust_root.into(),
            bundle: o.bundle.into(),
        }
    }
}
