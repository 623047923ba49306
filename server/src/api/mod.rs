//! The endpoints, as plain functions over the database: the HTTP layer only moves bytes.
//!
//! - this module: the router ([`Server::handle`]), errors, the server's state.
//! - `auth`: enrolment, request signatures and replay protection.
//! - `check_in`, `upload`, `download`, `finish`: one module per sync stage; `sync`: stages
//!   1, 2 and 4 in one request when nothing waits for the device.
//! - `office`: publishing (bundles and trust roots signed offline), registry custody.
//! - `queries`: typed queries the stages share.
//! - `wait`: the long-poll's question (is anything newer waiting?) and the change counter.

mod auth;
mod check_in;
mod download;
mod finish;
mod ledger;
mod office;
mod queries;
mod sync;
mod upload;
mod wait;
pub use wait::WaitCheck;

pub use auth::token_hash;
use auth::{DeviceRow, claim_check_in, claim_request};
use queries::{
    DeviceUpdate, Waiting, holder_of, latest_bundle, waiting_columns, waiting_for, waiting_from,
};

use baomi_core::bundle::keys::{PublicKey, hex_digest};
use baomi_core::bundle::{Installed, TrustRoot, read_unverified, verify_bundle};
use baomi_core::policy::ValidPolicy;
use baomi_core::sync::assignment::{
    AssignmentRecordDoc, read_verified_assignment_record, verify_assignment_record,
};
use baomi_core::sync::custody::verify_custody_record;
use baomi_core::sync::identity::{
    AuthError, HEADER_CHECKPOINT, HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    RequestAuth, enroll_message, verify_request,
};
use baomi_core::sync::ledger::DeviceCheckpoint;
use baomi_core::sync::proof::{Answer, ProofKey, session_aad};
use baomi_core::sync::protocol::{
    ChainState, CheckIn, CheckInResponse, CustodyFeedEntry, DownloadRequest, DownloadResponse,
    EnrollRequest, EnrollResponse, ErrorBody, Finish, FinishResponse, MAX_BATCH_RECORDS,
    PROTOCOL_VERSION, PolicyState, SyncRequest, SyncResponse, Upload, UploadBatch, UploadResponse,
    UploadedRecord, path,
};
use baomi_core::sync::seal::batch_aad;
use baomi_core::time::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::db::{Conn, Db, DbError, Value};
use crate::upload_key::UploadKey;

/// NanoMDM's webhook: the devices' answers to MDM commands (HMAC-signed, not device-signed).
pub const MDM_EVENTS: &str = "/v1/mdm/nanomdm";

/// Most custody records one download carries.
pub const MAX_CUSTODY_PER_DOWNLOAD: i64 = 500;

/// An error answer: status, code, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(400, "bad_request", m)
    }
    /// 401.
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", m)
    }
    /// 403.
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(403, "forbidden", m)
    }
    /// Any status (for modules outside the router).
    pub fn new_pub(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(status, code, message)
    }
    /// 409.
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(409, "conflict", m)
    }
    /// 500.
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(500, "internal", m)
    }
    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&ErrorBody {
            error: self.code.into(),
            message: self.message.clone(),
        })
        .unwrap_or_default()
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        log::error!("{e}");
        ApiError::internal("storage failed; nothing was acknowledged")
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::ForeignDevice { .. } => ApiError::forbidden(e.to_string()),
            AuthError::Replayed => ApiError::new(401, "replayed", e.to_string()),
            AuthError::Stale { .. } => ApiError::new(401, "stale", e.to_string()),
            _ => ApiError::unauthorized(e.to_string()),
        }
    }
}

/// What a handler returns.
pub type Reply = Result<Vec<u8>, ApiError>;

/// The server's state: its database, its upload key, its clock.
pub struct Server {
    db: Db,
    upload_key: Option<UploadKey>,
    clock: fn() -> Timestamp,
    /// Enrolled devices' public keys, read once: a device's key never changes after
    /// enrolment, so a cache is correct in any number of processes (no revocation yet; when it
    /// comes, it must clear this).
    device_keys: std::sync::Mutex<std::collections::HashMap<String, PublicKey>>,
    /// The MDM connector, when this server drives one (`crate::mdm`).
    mdm: Option<crate::mdm::MdmConfig>,
    /// The newest published policy, parsed once per version ([`Server::newest_policy`]).
    newest_policy: std::sync::Mutex<Option<(i64, std::sync::Arc<ValidPolicy>)>>,
    /// Digests of published roots and bundles by version (published ones never change).
    published: std::sync::Mutex<std::collections::HashMap<(Published, u64), String>>,
    /// The office's log key: signs the evidence ledger's checkpoints (`crate::ledger`).
    log_key: Option<crate::ledger::LogKey>,
    /// One sequencer at a time in this process.
    ledger_lock: std::sync::Mutex<()>,
    /// The log's newest checkpoint this process signed or read (note text): every proven
    /// check-in answer carries it to the phone, which reports the largest back.
    log_note: std::sync::RwLock<Option<String>>,
    /// The console's default language and the office's time zone.
    locale: crate::console::i18n::Locale,
    /// Where alerts are delivered (`crate::notify`).
    channels: crate::notify::Channels,
    /// The Android provisioning QR code's settings (`crate::provisioning`).
    provisioning: crate::provisioning::Provisioning,
}

/// What a device reports that the office may or may not have published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Published {
    Root,
    Bundle,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

fn json<T: Serialize>(v: &T) -> Reply {
    serde_json::to_vec(v).map_err(|e| ApiError::internal(e.to_string()))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("malformed body: {e}")))
}

fn seq_i64(v: u64) -> Result<i64, ApiError> {
    i64::try_from(v).map_err(|_| ApiError::bad_request("sequence number out of range"))
}

fn int(row: &[Value], i: usize) -> i64 {
    row.get(i).and_then(Value::int).unwrap_or(0)
}

/// Column `i` as text (also for the modules beside the router: mdm).
pub(crate) fn text(row: &[Value], i: usize) -> Option<String> {
    row.get(i).and_then(Value::text).map(str::to_owned)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Server {
    /// A server over `db` (schema created if missing).
    pub fn new(
        db: Db,
        upload_key: Option<UploadKey>,
        clock: fn() -> Timestamp,
    ) -> Result<Self, ApiError> {
        let kind = db.kind();
        db.tx(|c| crate::schema::init(c, kind).map_err(ApiError::from))?;
        Ok(Self {
            db,
            upload_key,
            clock,
            device_keys: std::sync::Mutex::new(std::collections::HashMap::new()),
            mdm: None,
            newest_policy: std::sync::Mutex::new(None),
            published: std::sync::Mutex::new(std::collections::HashMap::new()),
            log_key: None,
            ledger_lock: std::sync::Mutex::new(()),
            log_note: std::sync::RwLock::new(None),
            locale: Default::default(),
            channels: Default::default(),
            provisioning: Default::default(),
        })
    }

    /// What the console's Android provisioning QR code needs besides a token and the root.
    pub fn with_provisioning(mut self, p: crate::provisioning::Provisioning) -> Self {
        self.provisioning = p;
        self
    }

    /// See [`Server::with_provisioning`].
    pub fn provisioning(&self) -> &crate::provisioning::Provisioning {
        &self.provisioning
    }

    /// Delivers alerts and critical violations to these channels (`crate::notify`).
    pub fn with_channels(mut self, channels: crate::notify::Channels) -> Self {
        self.channels = channels;
        self
    }

    /// See [`Server::with_channels`].
    pub fn channels(&self) -> &crate::notify::Channels {
        &self.channels
    }

    /// The console's language and time zone (default: zh-CN, Asia/Shanghai).
    pub fn with_locale(mut self, locale: crate::console::i18n::Locale) -> Self {
        self.locale = locale;
        self
    }

    /// See [`Server::with_locale`].
    pub fn locale(&self) -> &crate::console::i18n::Locale {
        &self.locale
    }

    /// Signs the evidence ledger's checkpoints with `key`.
    pub fn with_log_key(mut self, key: crate::ledger::LogKey) -> Self {
        self.log_key = Some(key);
        self
    }

    /// Drives an MDM: posture changes of linked devices become its commands.
    pub fn with_mdm(mut self, mdm: crate::mdm::MdmConfig) -> Self {
        self.mdm = Some(mdm);
        self
    }

    /// Whether the server can serve: the database answers and its schema is the one this
    /// build writes (`GET /readyz`). The error says what is wrong.
    pub fn readiness(&self) -> Result<(), ApiError> {
        let found = self
            .db
            .tx(|c| {
                Ok(c.query(
                    "SELECT value FROM server_meta WHERE name = 'schema_version'",
                    &[],
                )?
                .first()
                .and_then(|r| text(r, 0)))
            })
            .map_err(|_| ApiError::new(503, "not_ready", "the database does not answer"))?;
        let want = crate::schema::VERSION.to_string();
        if found.as_deref() != Some(want.as_str()) {
            return Err(ApiError::new(
                503,
                "not_ready",
                format!("database schema {found:?}, this server writes {want}"),
            ));
        }
        Ok(())
    }

    /// The MDM connector, if this server drives one.
    pub fn mdm_config(&self) -> Option<&crate::mdm::MdmConfig> {
        self.mdm.as_ref()
    }

    /// The database (for the admin commands).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A mixed configuration refused at start (issue 24): the trust root the office published
    /// names an upload key (of its suite) that is neither `--upload-key` nor
    /// `--previous-upload-key`, so no phone's sync could be opened or proven.
    pub fn check_upload_key(&self) -> Result<(), String> {
        let (Some(root), Some(key)) = (self.trust_root().map_err(|e| e.message)?, &self.upload_key)
        else {
            return Ok(());
        };
        match root.doc().upload_key.as_deref() {
            Some(named) if !key.holds(named) => Err(format!(
                "the published trust root (v{}, {} suite) names upload key {named}, but --upload-key is a {} key {} and no --previous-upload-key is that one: phones of that root could not sync",
                root.version(),
                root.suite(),
                key.suite(),
                key.public_base64()
            )),
            _ => Ok(()),
        }
    }

    /// The office's upload key: check-in opens session keys with it, upload opens batches.
    fn upload_key(&self) -> Result<&UploadKey, ApiError> {
        self.upload_key.as_ref().ok_or_else(|| {
            ApiError::new(
                503,
                "no_upload_key",
                "this server was started without --upload-key: it cannot prove its answers",
            )
        })
    }

    /// Current server time.
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// Routes one request.
    pub fn handle(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Reply {
        let p = url.split('?').next().unwrap_or(url);
        if method != "POST" {
            return Err(ApiError::new(
                405,
                "method_not_allowed",
                "every endpoint takes POST",
            ));
        }
        match p {
            path::ENROLL => self.enroll(body),
            path::CHECK_IN => {
                let (dev, at) = self.authenticate(p, headers, body)?;
                self.check_in(&dev, at, parse(body)?, body)
            }
            path::UPLOAD => {
                let (dev, at, checkpoint) = self.authenticate_batch(p, headers, body)?;
                self.upload(&dev, at, parse(body)?, checkpoint)
            }
            path::DOWNLOAD => {
                let (dev, at) = self.authenticate(p, headers, body)?;
                self.download(&dev, at, parse(body)?, body)
            }
            path::FINISH => {
                let (dev, at) = self.authenticate(p, headers, body)?;
                self.finish(&dev, at, parse(body)?, body)
            }
            path::SYNC => {
                let (dev, at, checkpoint) = self.authenticate_batch(p, headers, body)?;
                self.sync(&dev, at, parse(body)?, body, checkpoint)
            }
            // Served here without holding (the HTTP layer holds waits open; see `http`).
            path::WAIT => {
                let pending = self.wait_check(headers, body)?.pending;
                Self::wait_answer(pending)
            }
            MDM_EVENTS => {
                self.mdm_event(headers, body)?;
                json(&serde_json::json!({ "ok": true }))
            }
            path::REGISTRY_CUSTODY => {
                let n = self.accept_custody(body)?;
                json(&serde_json::json!({ "cursor": n }))
            }
            _ => Err(ApiError::new(404, "not_found", format!("no endpoint {p}"))),
        }
    }
}
