//! The endpoints, as plain functions over the database: the HTTP layer only moves bytes.

use baomi_core::bundle::keys::{PublicKey, hex_digest};
use baomi_core::bundle::{Installed, TrustRoot, verify_bundle};
use baomi_core::sync::custody::verify_custody_record;
use baomi_core::sync::identity::{
    AuthError, HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, REQUEST_WINDOW_MS,
    RequestAuth, enroll_message, verify_request,
};
use baomi_core::sync::proof::{Answer, ProofKey, session_aad};
use baomi_core::sync::protocol::{
    CheckIn, CheckInResponse, CustodyFeedEntry, DownloadRequest, DownloadResponse, EnrollRequest,
    EnrollResponse, ErrorBody, Finish, FinishResponse, MAX_BATCH_RECORDS, PROTOCOL_VERSION,
    PolicyState, Upload, UploadBatch, UploadResponse, path,
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
                self.check_in(&dev, parse(body)?, body)
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
                self.finish(&dev, parse(body)?, body)
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
                "SELECT expires_at, used_by, holder FROM tokens WHERE token_hash = $1",
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
                "INSERT INTO devices (device_id, public_key, platform, agent_version, enrolled_at, enrolled_for) VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    req.device_id.clone().into(),
                    req.public_key.clone().into(),
                    req.platform.clone().into(),
                    req.agent_version.clone().into(),
                    now.0.into(),
                    text(row, 2).into(),
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

    fn upload_key(&self) -> Result<&UploadKey, ApiError> {
        self.upload_key.as_ref().ok_or_else(|| {
            ApiError::new(
                503,
                "no_upload_key",
                "this server was started without --upload-key: it cannot prove its answers",
            )
        })
    }

    fn check_in(&self, dev: &str, req: CheckIn, body: &[u8]) -> Reply {
        Self::same_device(dev, &req.device_id)?;
        if req.protocol != PROTOCOL_VERSION {
            return Err(ApiError::bad_request(format!(
                "protocol {} not supported (server speaks {PROTOCOL_VERSION})",
                req.protocol
            )));
        }
        let session_raw = zeroize::Zeroizing::new(
            self.upload_key()?
                .open(&session_aad(dev), &req.session)
                .map_err(|e| ApiError::bad_request(format!("session key: {e}")))?,
        );
        let session = ProofKey::from_bytes(&session_raw)
            .ok_or_else(|| ApiError::bad_request("session key must be 32 bytes"))?;
        let session_b64 = zeroize::Zeroizing::new({
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(session_raw.as_slice())
        });
        let now = self.now();
        let posture = serde_json::to_string(&req.posture).unwrap_or_default();
        let mut resp = self.db.tx(|c| {
            let row = c.query(
                "SELECT acked_through, acked_tag, head_seq, head_tag, generation FROM devices WHERE device_id = $1",
                &[dev.into()],
            )?;
            let row = row.first().cloned().unwrap_or_default();
            let acked = int(&row, 0);
            let alert = chain_alert(&req, acked, int(&row, 2), &text(&row, 3).unwrap_or_default(), int(&row, 4))?;
            if let Some(a) = &alert {
                log::warn!("device {dev}: {a}");
            }
            c.execute(
                "UPDATE devices SET last_check_in = $1, agent_version = $2, head_seq = $3, head_tag = $4, policy_id = $5, policy_version = $6, policy_digest = $7, posture = $8, fail_closed = $9, clock_skew_ms = $10, alert = COALESCE($11, alert), generation = $12, session_key = $13 WHERE device_id = $14",
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
                    seq_i64(req.chain.generation)?.into(),
                    session_b64.to_string().into(),
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
                acked_tag: text(&row, 1).unwrap_or_default(),
                bundle,
                trust_root_version,
                custody_pending: pending,
                proof: String::new(),
            })
        })?;
        resp.proof = session.prove(Answer::CheckIn, dev, body, &resp.proof_bytes());
        json(&resp)
    }

    fn upload(&self, dev: &str, req: Upload) -> Reply {
        Self::same_device(dev, &req.device_id)?;
        let key = self.upload_key()?;
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
        let batch: UploadBatch = parse(&plain)?;
        let receipt_key = ProofKey::from_base64(&batch.receipt_key)
            .ok_or_else(|| ApiError::bad_request("receipt key must be 32 bytes of base64"))?;
        let records = batch.records;
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
                    "INSERT INTO violations (device_id, seq, received_at, at, rules, record, tag) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (device_id, seq) DO NOTHING",
                    &[
                        dev.into(),
                        seq_i64(r.seq)?.into(),
                        now.0.into(),
                        r.record.event.at.0.into(),
                        r.record.rules.join(",").into(),
                        rec.into(),
                        r.tag.clone().into(),
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
            let acked_tag = c
                .query(
                    "SELECT tag FROM violations WHERE device_id = $1 AND seq = $2",
                    &[dev.into(), acked.into()],
                )?
                .first()
                .and_then(|r| text(r, 0))
                .unwrap_or_default();
            c.execute(
                "UPDATE devices SET acked_through = $1, acked_tag = $2 WHERE device_id = $3",
                &[acked.into(), acked_tag.into(), dev.into()],
            )?;
            Ok(acked)
        })?;
        // Committed: only now does the receipt exist, so a device deletes only stored records.
        let last_tag = records.last().map(|r| r.tag.as_str()).unwrap_or_default();
        json(&UploadResponse {
            acked_through: u(acked),
            receipt: receipt_key.receipt(dev, req.first_seq, req.last_seq, last_tag),
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

    fn finish(&self, dev: &str, req: Finish, body: &[u8]) -> Reply {
        Self::same_device(dev, &req.device_id)?;
        let posture = serde_json::to_string(&req.posture).unwrap_or_default();
        let session = self.db.tx(|c| {
            let session = c
                .query(
                    "SELECT session_key FROM devices WHERE device_id = $1",
                    &[dev.into()],
                )?
                .first()
                .and_then(|r| text(r, 0))
                .map(zeroize::Zeroizing::new);
            c.execute(
                "UPDATE devices SET posture = $1, policy_id = $2, policy_version = $3, policy_digest = $4, head_seq = $5, head_tag = $6, custody_cursor = $7, generation = $8, session_key = NULL WHERE device_id = $9",
                &[
                    posture.clone().into(),
                    req.policy.as_ref().map(|p| p.id.clone()).into(),
                    req.policy.as_ref().map(|p| p.version as i64).into(),
                    req.policy.as_ref().map(|p| p.digest.clone()).into(),
                    seq_i64(req.chain.head_seq)?.into(),
                    req.chain.head_tag.clone().into(),
                    seq_i64(req.custody_cursor)?.into(),
                    seq_i64(req.chain.generation)?.into(),
                    dev.into(),
                ],
            )?;
            Ok(session)
        })?;
        let stored =
            session.ok_or_else(|| ApiError::conflict("finish without a check-in in this sync"))?;
        let key = ProofKey::from_base64(&stored)
            .ok_or_else(|| ApiError::internal("stored session key is damaged"))?;
        json(&FinishResponse {
            proof: key.prove(Answer::Finish, dev, body, b""),
        })
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

/// Compares what a device reports of its store with what it reported before: a head below the
/// records already received or than reported, the same head seq with another tag, or a
/// generation that went back means the store was restored from an older copy or replaced.
fn chain_alert(
    req: &CheckIn,
    acked: i64,
    head_seq: i64,
    head_tag: &str,
    generation: i64,
) -> Result<Option<String>, ApiError> {
    let seq = seq_i64(req.chain.head_seq)?;
    let gen_now = seq_i64(req.chain.generation)?;
    Ok(if seq < acked {
        Some(format!(
            "chain head {seq} is below the {acked} records already received: store rolled back or replaced"
        ))
    } else if seq < head_seq {
        Some(format!(
            "chain head {seq} is below the {head_seq} reported before: store rolled back"
        ))
    } else if seq == head_seq && seq > 0 && !head_tag.is_empty() && head_tag != req.chain.head_tag {
        Some(format!(
            "chain head {seq} has another tag than reported before: store rolled back and rewritten"
        ))
    } else if gen_now < generation {
        Some(format!(
            "store generation {gen_now} is below the {generation} reported before: store restored from an older copy"
        ))
    } else {
        None
    })
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
