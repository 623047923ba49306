//! `BaomiAgent`: the uniffi object over `baomi_core::agent::Agent`.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use baomi_core::agent::Agent;
use baomi_core::agent::{enroll, prepare_wait, send_wait, sync_now};
use baomi_core::event::Event;
use baomi_core::posture::Posture;
use baomi_core::store::StoreOptions;
use baomi_core::time::Timestamp;

use crate::platform::{Clock, HttpClient, HttpTransportAdapter, KeyStore, KeyStoreProvider};
use crate::types::{
    AgentStatus, AppliedSettingInfo, BaomiError, BundleInfo, ChainReport, DecisionInfo,
    EnforcementMode, ManagedConfigOutcome, PlatformKind, PostureChange, PostureState, SyncOutcome,
    ViolationEntry, text,
};

/// The device agent: one per store directory.
#[derive(uniffi::Object)]
pub struct BaomiAgent {
    inner: Mutex<Agent>,
    clock: Arc<dyn Clock>,
    platform: PlatformKind,
}

impl std::fmt::Debug for BaomiAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaomiAgent").finish_non_exhaustive()
    }
}

impl BaomiAgent {
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Agent>, BaomiError> {
        self.inner.lock().map_err(|_| BaomiError::Store {
            reason: "agent lock poisoned by an earlier failure; reopen the agent".into(),
        })
    }

    fn now(&self) -> Result<Timestamp, BaomiError> {
        let ms = self.clock.now_ms()?;
        Timestamp::checked(ms).map_err(|e| BaomiError::InvalidInput {
            reason: format!("the platform clock: {e}"),
        })
    }

    /// Decides a parsed event (shared by the uniffi and JNI paths).
    pub(crate) fn decide(&self, event: &Event) -> Result<baomi_core::Decision, BaomiError> {
        Ok(self.lock()?.handle(event)?)
    }
}

#[uniffi::export]
impl BaomiAgent {
    /// Opens (or creates) the agent's encrypted store in `dir`; the data key is wrapped by
    /// `key_store`.
    #[uniffi::constructor]
    pub fn open(
        dir: String,
        key_store: Arc<dyn KeyStore>,
        platform: PlatformKind,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, BaomiError> {
        let dir = text(dir, "the store directory")?;
        let now = Timestamp::checked(clock.now_ms()?).map_err(|e| BaomiError::InvalidInput {
            reason: format!("the platform clock: {e}"),
        })?;
        let agent = Agent::open(
            Path::new(&dir),
            &KeyStoreProvider(key_store),
            StoreOptions::default(),
            platform.into(),
            now,
        )?;
        Ok(Arc::new(Self {
            inner: Mutex::new(agent),
            clock,
            platform,
        }))
    }

    /// Provisions the trust root out of band (managed configuration, provisioning extras) or
    /// rotates to the next one; the root already installed is a no-op. Returns its version.
    pub fn install_trust_root(&self, envelope: Vec<u8>) -> Result<u64, BaomiError> {
        let now = self.now()?;
        Ok(self.lock()?.provision_trust_root(&envelope, now)?)
    }

    /// Installs what managed configuration holds, whatever the MDM re-delivers: the installed
    /// root or bundle is skipped, an older copy is skipped, a newer one is verified and
    /// installed, a refusal is recorded as a violation. Pass the raw values (`None` or empty
    /// when absent). Throws only when the store fails.
    pub fn apply_managed_config(
        &self,
        trust_root: Option<Vec<u8>>,
        bundle: Option<Vec<u8>>,
    ) -> Result<ManagedConfigOutcome, BaomiError> {
        let now = self.now()?;
        let outcome =
            self.lock()?
                .apply_managed_config(trust_root.as_deref(), bundle.as_deref(), now)?;
        Ok(outcome.into())
    }

    /// The platform's report of what it applied, setting by setting, and in which mode; sent
    /// to the server at the next check-in so the officer sees applied against desired.
    pub fn report_applied(
        &self,
        mode: EnforcementMode,
        settings: Vec<AppliedSettingInfo>,
    ) -> Result<(), BaomiError> {
        let settings = settings
            .into_iter()
            .map(|s| {
                Ok(AppliedSettingInfo {
                    setting: text(s.setting, "a setting name")?,
                    detail: s
                        .detail
                        .map(|d| text(d, "a setting's detail"))
                        .transpose()?,
                    ..s
                })
            })
            .collect::<Result<Vec<_>, BaomiError>>()?;
        Ok(self
            .lock()?
            .report_applied(crate::types::applied_posture(mode, settings))?)
    }

    /// Verifies and installs a signed policy bundle (managed configuration or sync).
    pub fn install_bundle(&self, envelope: Vec<u8>) -> Result<BundleInfo, BaomiError> {
        let now = self.now()?;
        let h = self.lock()?.install_bundle(&envelope, now)?;
        Ok(BundleInfo {
            policy_id: h.policy_id,
            version: h.version,
            expires_at_ms: h.expires_at.0,
        })
    }

    /// Decides one event given as a JSON object (`{"at": ..., "type": ..., ...}`).
    pub fn handle_event_json(&self, json: String) -> Result<DecisionInfo, BaomiError> {
        let json = text(json, "the event")?;
        let event = Event::from_json_line(1, &json).map_err(|e| BaomiError::BadEvent {
            reason: e.to_string(),
        })?;
        Ok((&self.decide(&event)?).into())
    }

    /// Reports that applying the posture failed (not device owner, package missing, API
    /// refused): recorded as a tamper violation so the officer sees an unenforced phone.
    pub fn report_enforcement_failure(
        &self,
        action: String,
        detail: String,
    ) -> Result<DecisionInfo, BaomiError> {
        let (action, detail) = (text(action, "the action")?, text(detail, "the detail")?);
        let now = self.now()?;
        let d = self
            .lock()?
            .report_tamper(&format!("enforcement_failed:{action}: {detail}"), now)?;
        Ok((&d).into())
    }

    /// The desired posture now.
    pub fn posture(&self) -> Result<PostureState, BaomiError> {
        Ok((&self.lock()?.posture()).into())
    }

    /// A monotonic clock reading: `boot_id` names this boot (Android `Settings.Global.BOOT_COUNT`,
    /// iOS `kern.boottime`), `uptime_ms` counts from it including sleep (Android
    /// `SystemClock.elapsedRealtime()`, iOS `mach_continuous_time`). Lets the core count time
    /// offline whatever the wall clock says; call it at start and with every tick.
    pub fn observe_uptime(&self, boot_id: String, uptime_ms: i64) -> Result<(), BaomiError> {
        let boot_id = text(boot_id, "the boot id")?;
        Ok(self.lock()?.observe_uptime(&boot_id, uptime_ms)?)
    }

    /// Re-derives the posture when time alone changed it; returns it if it changed.
    pub fn tick(&self) -> Result<Option<PostureState>, BaomiError> {
        let now = self.now()?;
        let mut agent = self.lock()?;
        // A tick is a clock reading too: a clock set back between events is seen here.
        let now = agent.observe_time(now)?;
        Ok(agent.tick(now)?.as_ref().map(PostureState::from))
    }

    /// Enrols with the compliance server using a one-time token; returns the device id.
    pub fn enroll(
        &self,
        server: String,
        token: String,
        http: Arc<dyn HttpClient>,
    ) -> Result<String, BaomiError> {
        let (server, token) = (text(server, "the server URL")?, text(token, "the token")?);
        let now = self.now()?;
        let mut agent = self.lock()?;
        let r = enroll(
            &mut agent,
            &HttpTransportAdapter(http),
            &server,
            &token,
            self.platform.into(),
            now,
        )?;
        Ok(r.device_id)
    }

    /// Runs check-in, upload, download and finish.
    pub fn sync_now(&self, http: Arc<dyn HttpClient>) -> Result<SyncOutcome, BaomiError> {
        let now = self.now()?;
        let mut agent = self.lock()?;
        let r = sync_now(&mut agent, &HttpTransportAdapter(http), now)?;
        Ok(SyncOutcome {
            uploaded: r.uploaded,
            acked_through: r.acked_through,
            bundle_installed: r.bundle_installed,
            custody_applied: u32::try_from(r.custody_applied).unwrap_or(u32::MAX),
            clock_skew_ms: r.clock_skew_ms,
            posture: (&r.posture).into(),
            next_due_ms: r.next_due.map(|t| t.0),
        })
    }

    /// Holds the server's push channel open (`POST /v1/wait`) for up to `max_wait_ms` (the
    /// server caps it at 25 s) without holding the agent: events are decided meanwhile. Returns
    /// whether to run `sync_now` at once; call it again either way. The scheduled sync stays
    /// the fallback.
    pub fn wait_for_change(
        &self,
        http: Arc<dyn HttpClient>,
        max_wait_ms: u32,
    ) -> Result<bool, BaomiError> {
        let (identity, req) = prepare_wait(&mut *self.lock()?, max_wait_ms)?;
        let now = self.now()?;
        Ok(send_wait(
            &identity,
            &req,
            &HttpTransportAdapter(http),
            now,
        )?)
    }

    /// The agent at a glance (for the device-owner app's status screen and logs).
    pub fn status(&self) -> Result<AgentStatus, BaomiError> {
        let now = self.now()?;
        let s = self.lock()?.status(now);
        Ok(AgentStatus {
            device_id: s.device_id,
            policy_id: s.policy_id,
            policy_version: s.policy_version,
            trust_root_version: s.trust_root_version,
            fail_closed: s.fail_closed,
            next_deadline_ms: s.next_deadline.map(|t| t.0),
            next_sync_due_ms: s.next_sync_due.map(|t| t.0),
            acked_through: s.acked_through,
            head_seq: s.head_seq,
            suite: s.suite.map(|x| x.as_str().to_owned()),
            store_suite: s.store_suite.as_str().to_owned(),
        })
    }

    /// Decrypted violations after `after_seq` (not yet acknowledged by the server).
    pub fn violations(
        &self,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<ViolationEntry>, BaomiError> {
        let agent = self.lock()?;
        let records = agent
            .store()
            .records_after(after_seq, limit as usize)
            .map_err(baomi_core::agent::AgentError::from)?;
        Ok(records
            .into_iter()
            .map(|r| ViolationEntry {
                seq: r.seq,
                json: serde_json::to_string(&r.record).unwrap_or_default(),
            })
            .collect())
    }

    /// Walks the hash chain; `Integrity` names the first broken link.
    pub fn verify_log(&self) -> Result<ChainReport, BaomiError> {
        let agent = self.lock()?;
        let r = agent
            .store()
            .verify()
            .map_err(baomi_core::agent::AgentError::from)?;
        Ok(ChainReport {
            records: r.records,
            acked_through: r.acked_through,
            head: r.head,
        })
    }

    /// Unacknowledged violations as JSON lines (for a support export; stays on the device
    /// unless the user shares it through an allowed channel).
    pub fn export_violations_jsonl(&self) -> Result<String, BaomiError> {
        let mut out = String::new();
        for v in self.violations(0, u32::MAX)? {
            out.push_str(&format!("{{\"seq\":{},\"record\":{}}}\n", v.seq, v.json));
        }
        Ok(out)
    }

    /// The handle for the JNI fast path (`cn.baomi.agent.FastPath`): the same number each
    /// time for this agent, valid until `release_fast_path` or until the agent is destroyed
    /// (calls then answer -1; the handle never keeps the agent or its store open). 0 when
    /// the handle table is full.
    pub fn fast_path_handle(self: Arc<Self>) -> u64 {
        crate::jni_fast_path::register(&self)
    }

    /// Forgets a fast path handle.
    pub fn release_fast_path(&self, handle: u64) {
        crate::jni_fast_path::release(handle);
    }
}

/// The changes the platform must make to go from `applied` to `desired`.
#[uniffi::export]
pub fn posture_change(applied: PostureState, desired: PostureState) -> PostureChange {
    Posture::from(&applied)
        .diff_to(&Posture::from(&desired))
        .into()
}
