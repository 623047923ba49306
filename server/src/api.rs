//! The endpoints, as plain functions over the database: the HTTP layer only moves bytes.

use baomi_core::bundle::keys::{PublicKey, hex_digest};
use baomi_core::bundle::{Installed, TrustRoot, verify_bundle};
use baomi_core::sync::custody::verify_custody_record;
use baomi_core::sync::identity::{
    AuthError, HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, REQUEST_WINDOW_MS,
    RequestAuth, enroll_message, verify_request,
};
use baomi_core::sync::protocol::{
    CheckIn, CheckInResponse, CustodyFeedEntry, DownloadRequest, DownloadResponse, EnrollRequest,
    EnrollResponse, ErrorBody, Finish, MAX_BATCH_RECORDS, PROTOCOL_VERSION, PolicyState, Upload,
    UploadResponse, UploadedRecord, path,
};
use baomi_core::sync::seal::batch_aad;
use baomi_core::time::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::db::{Conn, Db, DbError, Value};
use crate::upload_key::UploadKey;

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

fn text(row: &[Value], i: usize) -> Option<String> {
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
        })
    }

    /// The database (for the admin commands).
    pub fn db(&self) -> &Db {
        &self.db
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
                let dev = self.authenticate(p, headers, body)?;
                self.check_in(&dev, parse(body)?)
            }
            path::UPLOAD => {
                let dev = self.authenticate(p, headers, body)?;
                self.upload(&dev, parse(body)?)
            }
            path::DOWNLOAD => {
                let dev = self.authenticate(p, headers, body)?;
                self.download(&dev, parse(body)?)
            }
            path::FINISH => {
                let dev = self.authenticate(p, headers, body)?;
                self.finish(&dev, parse(body)?)
            }
            path::REGISTRY_CUSTODY => {
                let n = self.accept_custody(body)?;
                json(&serde_json::json!({ "cursor": n }))
            }
            _ => Err(ApiError::new(404, "not_found", format!("no endpoint {p}"))),
        }
    }

    fn enroll(&self, body: &[u8]) -> Reply {
        let req: EnrollRequest = parse(body)?;
        if req.protocol != PROTOCOL_VERSION {
            return Err(ApiError::bad_request(format!(
                "protocol {} not supported (server speaks {PROTOCOL_VERSION})",
                req.protocol
            )));
        }
        if req.device_id.is_empty() || req.device_id.len() > 128 {
            return Err(ApiError::bad_request("device id must be 1-128 characters"));
        }
        let key = PublicKey::from_base64(&req.public_key)
            .map_err(|e| ApiError::bad_request(format!("public key: {e}")))?;
        let proof = base64_decode(&req.proof)?;
        if !key.verify(&enroll_message(&req.token, &req.device_id), &proof) {
            return Err(ApiError::unauthorized("enrolment proof does not verify"));
        }
        let now = self.now();
        let token_hash = token_hash(&req.token);
        self.db.tx(|c| {
            let rows = c.query(
                "SELECT expires_at, used_by FROM tokens WHERE token_hash = $1",
                &[token_hash.clone().into()],
            )?;
            let row = rows
                .first()
                .ok_or_else(|| ApiError::unauthorized("unknown enrolment token"))?;
            if text(row, 1).is_some() {
                return Err(ApiError::unauthorized("enrolment token already used"));
            }
            if int(row, 0) < now.0 {
                return Err(ApiError::unauthorized("enrolment token expired"));
            }
            let exists = c.query(
                "SELECT 1 FROM devices WHERE device_id = $1",
                &[req.device_id.clone().into()],
            )?;
            if !exists.is_empty() {
                return Err(ApiError::conflict(format!(
                    "device `{}` is already enrolled",
                    req.device_id
                )));
            }
            c.execute(
                "INSERT INTO devices (device_id, public_key, platform, agent_version, enrolled_at) VALUES ($1, $2, $3, $4, $5)",
                &[
                    req.device_id.clone().into(),
                    req.public_key.clone().into(),
                    req.platform.clone().into(),
                    req.agent_version.clone().into(),
                    now.0.into(),
                ],
            )?;
            c.execute(
                "UPDATE tokens SET used_by = $1 WHERE token_hash = $2",
                &[req.device_id.clone().into(), token_hash.clone().into()],
            )?;
            Ok(())
        })?;
        log::info!("enrolled device {}", req.device_id);
        json(&EnrollResponse {
            device_id: req.device_id,
            server_time: now,
        })
    }

    /// Checks the signature headers; returns the device id.
    fn authenticate(
        &self,
        p: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<String, ApiError> {
        let h = |name: &'static str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .ok_or(AuthError::Unsigned(name))
        };
        let auth = RequestAuth {
            device_id: h(HEADER_DEVICE)?,
            timestamp: Timestamp(
                h(HEADER_TIMESTAMP)?
                    .parse()
                    .map_err(|_| AuthError::Unsigned("timestamp is not a number"))?,
            ),
            nonce: h(HEADER_NONCE)?,
            signature: h(HEADER_SIGNATURE)?,
        };
        let now = self.now();
        self.db.tx(|c| {
            let rows = c.query(
                "SELECT public_key FROM devices WHERE device_id = $1",
                &[auth.device_id.clone().into()],
            )?;
            let key = rows
                .first()
                .and_then(|r| text(r, 0))
                .ok_or_else(|| AuthError::UnknownDevice(auth.device_id.clone()))?;
            let key = PublicKey::from_base64(&key)
                .map_err(|_| ApiError::internal("stored device key is damaged"))?;
            verify_request(&key, "POST", p, body, &auth, now)?;
            // Inside the window the nonce catches a replay; outside it the timestamp does.
            let fresh = c.execute(
                "INSERT INTO nonces (device_id, nonce, seen_at) VALUES ($1, $2, $3) ON CONFLICT (device_id, nonce) DO NOTHING",
                &[auth.device_id.clone().into(), auth.nonce.clone().into(), now.0.into()],
            )?;
            if fresh == 0 {
                return Err(AuthError::Replayed.into());
            }
            c.execute(
                "DELETE FROM nonces WHERE device_id = $1 AND seen_at < $2",
                &[auth.device_id.clone().into(), (now.0 - 2 * REQUEST_WINDOW_MS).into()],
            )?;
            Ok(())
        })?;
        Ok(auth.device_id)
    }

    fn same_device(signer: &str, claimed: &str) -> Result<(), ApiError> {
        if signer == claimed {
            Ok(())
        } else {
            Err(AuthError::ForeignDevice {
                signer: signer.into(),
                claimed: claimed.into(),
            }
            .into())
        }
    }

    fn check_in(&self, dev: &str, req: CheckIn) -> Reply {
        Self::same_device(dev, &req.device_id)?;
        let now = self.now();
        let posture = serde_json::to_string(&req.posture).unwrap_or_default();
        let resp = self.db.tx(|c| {
            let row = c.query(
                "SELECT acked_through, head_seq FROM devices WHERE device_id = $1",
                &[dev.into()],
            )?;
            let acked = row.first().map_or(0, |r| int(r, 0));
            // A head below what the server already holds: the device's store was rolled back
            // or truncated. Keep the alert for the officer.
            let alert = (seq_i64(req.chain.head_seq)? < acked).then(|| {
                format!(
                    "chain head {} is below the {acked} records already received: store rolled back or replaced",
                    req.chain.head_seq
                )
            });
            c.execute(
                "UPDATE devices SET last_check_in = $1, agent_version = $2, head_seq = $3, head_tag = $4, policy_id = $5, policy_version = $6, policy_digest = $7, posture = $8, fail_closed = $9, clock_skew_ms = $10, alert = COALESCE($11, alert) WHERE device_id = $12",
                &[
                    now.0.into(),
                    req.agent_version.clone().into(),
                    seq_i64(req.chain.head_seq)?.into(),
                    req.chain.head_tag.clone().into(),
                    req.policy.as_ref().map(|p| p.id.clone()).into(),
                    req.policy.as_ref().map(|p| p.version as i64).into(),
                    req.policy.as_ref().map(|p| p.digest.clone()).into(),
                    posture.clone().into(),
                    req.fail_closed.clone().into(),
                    (req.device_time.0 - now.0).into(),
                    alert.into(),
                    dev.into(),
                ],
            )?;
            let bundle = latest_bundle(c)?.filter(|b| {
                req.policy
                    .as_ref()
                    .is_none_or(|p| p.version < b.version || p.id != b.id)
            });
            let trust_root_version = u(c
                .query("SELECT COALESCE(MAX(version), 0) FROM trust_roots", &[])?
                .first()
                .map_or(0, |r| int(r, 0)));
            let pending = match holder_of(c, dev)? {
                Some(h) => !c
                    .query(
                        "SELECT cursor FROM custody WHERE holder = $1 AND cursor > $2 LIMIT 1",
                        &[h.into(), seq_i64(req.custody_cursor)?.into()],
                    )?
                    .is_empty(),
                None => false,
            };
            Ok(CheckInResponse {
                server_time: now,
                acked_through: u(acked),
                bundle,
                trust_root_version,
                custody_pending: pending,
            })
        })?;
        json(&resp)
    }

    fn upload(&self, dev: &str, req: Upload) -> Reply {
        Self::same_device(dev, &req.device_id)?;
        let key = self.upload_key.as_ref().ok_or_else(|| {
            ApiError::new(
                503,
                "no_upload_key",
                "this server was started without --upload-key",
            )
        })?;
        if req.first_seq == 0
            || req.last_seq < req.first_seq
            || req.last_seq - req.first_seq >= MAX_BATCH_RECORDS as u64
        {
            return Err(ApiError::bad_request(format!(
                "batch {}..={} must be 1 to {MAX_BATCH_RECORDS} records starting at 1 or later",
                req.first_seq, req.last_seq
            )));
        }
        let plain = zeroize::Zeroizing::new(
            key.open(&batch_aad(dev, req.first_seq, req.last_seq), &req.sealed)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        );
        let records: Vec<UploadedRecord> = parse(&plain)?;
        let contiguous = records.iter().zip(req.first_seq..).all(|(r, s)| r.seq == s)
            && records.len() as u64 == req.last_seq - req.first_seq + 1;
        if !contiguous {
            return Err(ApiError::bad_request(
                "batch records do not match its seq range",
            ));
        }
        let now = self.now();
        let acked = self.db.tx(|c| {
            for r in &records {
                let rec = serde_json::to_string(&r.record).map_err(|e| ApiError::internal(e.to_string()))?;
                // Re-sent batches hit the primary key and change nothing: exactly once.
                c.execute(
                    "INSERT INTO violations (device_id, seq, received_at, at, rules, record) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, seq) DO NOTHING",
                    &[
                        dev.into(),
                        seq_i64(r.seq)?.into(),
                        now.0.into(),
                        r.record.event.at.0.into(),
                        r.record.rules.join(",").into(),
                        rec.into(),
                    ],
                )?;
            }
            let mut acked = c
                .query("SELECT acked_through FROM devices WHERE device_id = $1", &[dev.into()])?
                .first()
                .map_or(0, |r| int(r, 0));
            loop {
                let next = c.query(
                    "SELECT seq FROM violations WHERE device_id = $1 AND seq > $2 ORDER BY seq LIMIT 1000",
                    &[dev.into(), acked.into()],
                )?;
                let before = acked;
                for r in &next {
                    if int(r, 0) == acked + 1 {
                        acked += 1;
                    } else {
                        break;
                    }
                }
                if acked == before || next.len() < 1000 {
                    break;
                }
            }
            c.execute(
                "UPDATE devices SET acked_through = $1 WHERE device_id = $2",
                &[acked.into(), dev.into()],
            )?;
            Ok(acked)
        })?;
        json(&UploadResponse {
            acked_through: u(acked),
        })
    }

    fn download(&self, dev: &str, req: DownloadRequest) -> Reply {
        Self::same_device(dev, &req.device_id)?;
        let resp = self.db.tx(|c| {
            let trust_roots = c
                .query(
                    "SELECT envelope FROM trust_roots WHERE version > $1 ORDER BY version",
                    &[seq_i64(req.trust_root_version)?.into()],
                )?
                .iter()
                .filter_map(|r| text(r, 0))
                .collect();
            let bundle = c
                .query(
                    "SELECT envelope FROM bundles WHERE version > $1 ORDER BY version DESC LIMIT 1",
                    &[seq_i64(req.policy_version)?.into()],
                )?
                .first()
                .and_then(|r| text(r, 0));
            let custody = match holder_of(c, dev)? {
                Some(h) => c
                    .query(
                        "SELECT cursor, envelope FROM custody WHERE holder = $1 AND cursor > $2 ORDER BY cursor LIMIT $3",
                        &[h.into(), seq_i64(req.custody_after)?.into(), MAX_CUSTODY_PER_DOWNLOAD.into()],
                    )?
                    .iter()
                    .map(|r| CustodyFeedEntry {
                        cursor: u(int(r, 0)),
                        envelope: text(r, 1).unwrap_or_default(),
                    })
                    .collect(),
                None => Vec::new(),
            };
            Ok(DownloadResponse {
                trust_roots,
                bundle,
                custody,
            })
        })?;
        json(&resp)
    }

    fn finish(&self, dev: &str, req: Finish) -> Reply {
        Self::same_device(dev, &req.device_id)?;
        let posture = serde_json::to_string(&req.posture).unwrap_or_default();
        self.db.tx(|c| {
            c.execute(
                "UPDATE devices SET posture = $1, policy_id = $2, policy_version = $3, policy_digest = $4, head_seq = $5, head_tag = $6, custody_cursor = $7 WHERE device_id = $8",
                &[
                    posture.clone().into(),
                    req.policy.as_ref().map(|p| p.id.clone()).into(),
                    req.policy.as_ref().map(|p| p.version as i64).into(),
                    req.policy.as_ref().map(|p| p.digest.clone()).into(),
                    seq_i64(req.chain.head_seq)?.into(),
                    req.chain.head_tag.clone().into(),
                    seq_i64(req.custody_cursor)?.into(),
                    dev.into(),
                ],
            )?;
            Ok(())
        })?;
        json(&serde_json::json!({}))
    }

    /// The newest trust root, verified (the server checks what it serves).
    pub fn trust_root(&self) -> Result<Option<TrustRoot>, ApiError> {
        let rows = self
            .db
            .tx(|c| Ok(c.query("SELECT envelope FROM trust_roots ORDER BY version", &[])?))?;
        let mut root: Option<TrustRoot> = None;
        for r in rows {
            let bytes = text(&r, 0).unwrap_or_default();
            root = Some(
                match &root {
                    None => TrustRoot::from_self_signed(bytes.as_bytes()),
                    Some(cur) => cur.rotate(bytes.as_bytes()),
                }
                .map_err(|e| ApiError::internal(format!("stored trust root: {e}")))?,
            );
        }
        Ok(root)
    }

    /// Verifies and publishes a bundle (the CLI's `bundle publish`).
    pub fn publish_bundle(&self, bytes: &[u8]) -> Result<PolicyState, ApiError> {
        let trust = self
            .trust_root()?
            .ok_or_else(|| ApiError::conflict("publish a trust root first"))?;
        let now = self.now();
        let latest = self.db.tx(|c| latest_bundle(c))?;
        let installed = Installed {
            policy_id: latest.as_ref().map(|l| l.id.clone()),
            version: latest.as_ref().map_or(0, |l| l.version),
        };
        let v = verify_bundle(bytes, &trust, &installed, now)
            .map_err(|e| ApiError::bad_request(format!("bundle refused: {e}")))?;
        let holders = serde_json::to_string(&v.policy.holders).unwrap_or_default();
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::bad_request("bundle is not UTF-8"))?;
        let state = PolicyState {
            id: v.header.policy_id.clone(),
            version: v.header.version,
            digest: v.digest.clone(),
        };
        self.db.tx(|c| {
            c.execute(
                "INSERT INTO bundles (version, policy_id, digest, envelope, holders, published_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    seq_i64(state.version)?.into(),
                    state.id.clone().into(),
                    state.digest.clone().into(),
                    text.clone().into(),
                    holders.clone().into(),
                    now.0.into(),
                ],
            )?;
            // The device -> holder index the check-ins read, replaced with the bundle in the
            // same transaction. The first assignment naming a device wins, as on the device
            // (`Policy::holder_for_device`).
            c.execute("DELETE FROM device_holders", &[])?;
            for h in &v.policy.holders {
                for d in &h.devices {
                    c.execute(
                        "INSERT INTO device_holders (device_id, holder) VALUES ($1, $2) ON CONFLICT (device_id) DO NOTHING",
                        &[d.clone().into(), h.holder.clone().into()],
                    )?;
                }
            }
            Ok(())
        })?;
        Ok(state)
    }

    /// Publishes the first trust root or a rotation (verified against the current one).
    pub fn publish_trust_root(&self, bytes: &[u8]) -> Result<u64, ApiError> {
        let next = match self.trust_root()? {
            None => TrustRoot::from_self_signed(bytes),
            Some(cur) => cur.rotate(bytes),
        }
        .map_err(|e| ApiError::bad_request(format!("trust root refused: {e}")))?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::bad_request("trust root is not UTF-8"))?;
        let now = self.now();
        self.db.tx(|c| {
            c.execute(
                "INSERT INTO trust_roots (version, envelope, published_at) VALUES ($1, $2, $3)",
                &[
                    seq_i64(next.version())?.into(),
                    text.clone().into(),
                    now.0.into(),
                ],
            )?;
            Ok(())
        })?;
        Ok(next.version())
    }

    /// Verifies a registry custody record and appends it to the feed (`POST
    /// /v1/registry/custody`, `baomi-server custody post`); returns its cursor.
    /// Posting the same record twice is idempotent.
    pub fn accept_custody(&self, bytes: &[u8]) -> Result<u64, ApiError> {
        let trust = self
            .trust_root()?
            .ok_or_else(|| ApiError::conflict("publish a trust root first"))?;
        let doc = verify_custody_record(bytes, &trust)
            .map_err(|e| ApiError::unauthorized(format!("custody record refused: {e}")))?;
        let text =
            String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::bad_request("not UTF-8"))?;
        let now = self.now();
        let cursor = self.db.tx(|c| {
            c.execute(
                "INSERT INTO custody (record_id, holder, envelope, received_at) VALUES ($1, $2, $3, $4) ON CONFLICT (record_id) DO NOTHING",
                &[doc.record_id.clone().into(), doc.holder.clone().into(), text.clone().into(), now.0.into()],
            )?;
            Ok(c.query("SELECT cursor FROM custody WHERE record_id = $1", &[doc.record_id.clone().into()])?
                .first()
                .map_or(0, |r| int(r, 0)))
        })?;
        Ok(u(cursor))
    }
}

fn latest_bundle(c: &mut dyn Conn) -> Result<Option<PolicyState>, ApiError> {
    Ok(c.query(
        "SELECT policy_id, version, digest FROM bundles ORDER BY version DESC LIMIT 1",
        &[],
    )?
    .first()
    .map(|r| PolicyState {
        id: text(r, 0).unwrap_or_default(),
        version: u(int(r, 1)),
        digest: text(r, 2).unwrap_or_default(),
    }))
}

/// The holder a device is issued to, per the newest published bundle (indexed at publish
/// time, so a check-in never parses the fleet's assignment list).
fn holder_of(c: &mut dyn Conn, dev: &str) -> Result<Option<String>, ApiError> {
    Ok(c.query(
        "SELECT holder FROM device_holders WHERE device_id = $1",
        &[dev.into()],
    )?
    .first()
    .and_then(|r| text(r, 0)))
}

/// Tokens are stored hashed: a leaked database enrols nobody.
pub fn token_hash(token: &str) -> String {
    hex_digest(token.as_bytes())
}

fn base64_decode(s: &str) -> Result<Vec<u8>, ApiError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|_| ApiError::bad_request("not base64"))
}
