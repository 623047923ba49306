//! Request authentication: one-time enrolment, and the signature, time window and nonce of
//! every later request.

use super::*;

impl Server {
    pub(super) fn enroll(&self, body: &[u8]) -> Reply {
        let req: EnrollRequest = parse(body)?;
        if req.protocol != PROTOCOL_VERSION {
            return Err(ApiError::bad_request(format!(
                "protocol {} not supported (server speaks {PROTOCOL_VERSION})",
                req.protocol
            )));
        }
        // Ids travel in URL paths, headers and logs: restricted at enrolment so every page
        // that names a device reaches it (a space, `#` or `?` made its console page
        // unreachable; a non-ASCII id enrolled but could never sync).
        if !valid_device_id(&req.device_id) {
            return Err(ApiError::bad_request(
                "device id must be 1-128 of A-Z, a-z, 0-9, '.', '_', '-'",
            ));
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
            // Claim the token first, in one conditional UPDATE: of two enrolments racing with
            // one token, exactly one touches the row (PostgreSQL re-checks `used_by IS NULL`
            // after the first commits; SQLite serialises writers).
            let claimed = c.execute(
                "UPDATE tokens SET used_by = $1 WHERE token_hash = $2 AND used_by IS NULL AND expires_at >= $3",
                &[
                    req.device_id.clone().into(),
                    token_hash.clone().into(),
                    now.0.into(),
                ],
            )?;
            let rows = c.query(
                "SELECT expires_at, used_by, holder FROM tokens WHERE token_hash = $1",
                &[token_hash.clone().into()],
            )?;
            let row = rows
                .first()
                .ok_or_else(|| ApiError::unauthorized("unknown enrolment token"))?;
            if claimed != 1 {
                return Err(if int(row, 0) < now.0 {
                    ApiError::unauthorized("enrolment token expired")
                } else {
                    ApiError::unauthorized("enrolment token already used")
                });
            }
            let exists = c.query(
                "SELECT 1 FROM devices WHERE device_id = $1",
                &[req.device_id.clone().into()],
            )?;
            if !exists.is_empty() {
                // Rolled back with the claim: the token stays usable.
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
            // The key its checkpoints verify under, in the ledger from the start: replacing
            // `devices.public_key` later cannot make forged checkpoints pass an audit.
            crate::ledger::log::enqueue(
                c,
                &[crate::ledger::Leaf::Device {
                    device: req.device_id.clone(),
                    public_key: req.public_key.clone(),
                    at: now.0,
                }],
            )?;
            Ok(())
        })?;
        log::info!("enrolled device {}", req.device_id);
        json(&EnrollResponse {
            device_id: req.device_id,
            server_time: now,
        })
    }

    /// Checks the signature headers (key, signature, time window); returns the device id and
    /// the request time, which the state-changing stages claim as the device's replay counter
    /// ([`claim_request`]) inside their own transaction: no write of its own. A request that
    /// carries no batch has a plain signature.
    pub(super) fn authenticate(
        &self,
        p: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(String, i64), ApiError> {
        match self.authenticate_batch(p, headers, body)? {
            (dev, at, None) => Ok((dev, at)),
            (_, _, Some(_)) => Err(ApiError::bad_request(format!(
                "{HEADER_CHECKPOINT}: only a request that carries a batch has a checkpoint"
            ))),
        }
    }

    /// [`Server::authenticate`] of a request that may carry a batch: also returns the device
    /// checkpoint its signature is (verified), when it is one.
    pub(super) fn authenticate_batch(
        &self,
        p: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(String, i64, Option<DeviceCheckpoint>), ApiError> {
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let h = |name: &'static str| find(name).ok_or(AuthError::Unsigned(name));
        let auth = RequestAuth {
            device_id: h(HEADER_DEVICE)?,
            timestamp: Timestamp(
                h(HEADER_TIMESTAMP)?
                    .parse()
                    .map_err(|_| AuthError::Unsigned("timestamp is not a number"))?,
            ),
            nonce: h(HEADER_NONCE)?,
            signature: h(HEADER_SIGNATURE)?,
            checkpoint: find(HEADER_CHECKPOINT),
        };
        let now = self.now();
        let key = self.device_key(&auth.device_id)?;
        // Outside any transaction: the signature check never holds the database.
        let checkpoint = verify_request(&key, "POST", p, body, &auth, now)?;
        Ok((auth.device_id, auth.timestamp.0, checkpoint))
    }

    /// The device's enrolled key, from the cache or (once) the database.
    pub(super) fn device_key(&self, device_id: &str) -> Result<PublicKey, ApiError> {
        const MAX_CACHED: usize = 1 << 20;
        if let Some(k) = self
            .device_keys
            .lock()
            .ok()
            .and_then(|m| m.get(device_id).cloned())
        {
            return Ok(k);
        }
        let stored = self.db.tx(|c| {
            Ok(c.query(
                "SELECT public_key FROM devices WHERE device_id = $1",
                &[device_id.into()],
            )?
            .first()
            .and_then(|r| text(r, 0)))
        })?;
        let stored = stored.ok_or_else(|| AuthError::UnknownDevice(device_id.to_owned()))?;
        let key = PublicKey::from_base64(&stored)
            .map_err(|_| ApiError::internal("stored device key is damaged"))?;
        if let Ok(mut m) = self.device_keys.lock() {
            if m.len() >= MAX_CACHED {
                m.clear();
            }
            m.insert(device_id.to_owned(), key.clone());
        }
        Ok(key)
    }

    pub(super) fn same_device(signer: &str, claimed: &str) -> Result<(), ApiError> {
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
}

/// Tokens are stored hashed: a leaked database enrols nobody.
pub fn token_hash(token: &str) -> String {
    hex_digest(token.as_bytes())
}

pub(super) fn base64_decode(s: &str) -> Result<Vec<u8>, ApiError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|_| ApiError::bad_request("not base64"))
}

/// What the stages read of the device row, returned by [`claim_request`].
#[derive(Debug, Default)]
pub(super) struct DeviceRow {
    pub(super) acked_through: i64,
    pub(super) acked_tag: String,
    /// The public link of the acknowledged record (where the next batch's chain continues).
    pub(super) acked_link: String,
    /// The office retired the device (`baomi-server device retire`).
    pub(super) retired: bool,
    pub(super) head_seq: i64,
    pub(super) head_tag: String,
    pub(super) generation: i64,
    /// The open sync's session key (base64), between check-in and finish.
    pub(super) session_key: Option<zeroize::Zeroizing<String>>,
    /// The posture last reported (JSON), before this request.
    pub(super) posture: Option<String>,
    /// The day (ms / 86,400,000) the received counts below are for.
    pub(super) quota_day: i64,
    /// Records received from the device that day.
    pub(super) quota_records: i64,
    /// Bytes of records received from the device that day.
    pub(super) quota_bytes: i64,
    /// Who holds the phone now: the published assignment, or the person its enrolment token
    /// was issued for (what a stored record's holder is).
    pub(super) holder: Option<String>,
    /// The size of the largest log checkpoint the phone reported carrying.
    pub(super) log_seen_size: Option<i64>,
}

/// Replay protection without a write of its own: a device's signed request times strictly
/// increase (the client makes them so), and each state-changing request moves the device
/// row's `last_request_ms` forward in the transaction that does its work. A request at or
/// before the last one claimed is a replay; outside the time window the timestamp check
/// refuses it first. Correct across any number of server processes: the row is the state.
/// Returns the row as the stages need it (one round trip for the claim and the read).
pub(super) fn claim_request(c: &mut dyn Conn, dev: &str, at: i64) -> Result<DeviceRow, ApiError> {
    let rows = c.query(&CLAIM_SQL, &[at.into(), dev.into()])?;
    let row = rows
        .first()
        .map(|r| device_row(r))
        .ok_or_else(|| ApiError::from(AuthError::Replayed))?;
    // A retired device learns it from its proven check-in; its other stages are refused
    // (the caller's transaction rolls the claim back).
    if row.retired {
        return Err(ApiError::new_pub(
            410,
            "retired",
            "the office retired this device: it no longer syncs",
        ));
    }
    Ok(row)
}

/// [`claim_request`] for a check-in: also reads what waits for the device, in the same round
/// trip.
pub(super) fn claim_check_in(
    c: &mut dyn Conn,
    dev: &str,
    at: i64,
    custody_after: u64,
) -> Result<(DeviceRow, Waiting), ApiError> {
    let rows = c.query(
        &CLAIM_CHECK_IN_SQL,
        &[at.into(), dev.into(), seq_i64(custody_after)?.into()],
    )?;
    let row = rows.first().ok_or(AuthError::Replayed)?;
    Ok((device_row(row), waiting_from(row, DEVICE_ROW_COLUMNS)))
}

/// The statements, built once (every request runs one of them).
static CLAIM_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{CLAIM} {CLAIM_RETURNING}"));
static CLAIM_CHECK_IN_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("{CLAIM} {CLAIM_RETURNING}, {}", waiting_columns("$2", "$3"))
});

const CLAIM: &str =
    "UPDATE devices SET last_request_ms = $1 WHERE device_id = $2 AND last_request_ms < $1";
const CLAIM_RETURNING: &str = "RETURNING acked_through, acked_tag, head_seq, head_tag, generation, session_key, posture, quota_day, quota_records, quota_bytes, acked_link, retired_at, COALESCE((SELECT holder FROM device_holders WHERE device_id = $2), enrolled_for), log_seen_size";
/// The columns of [`CLAIM_RETURNING`], read by [`device_row`]; what waits follows them.
const DEVICE_ROW_COLUMNS: usize = 14;

fn device_row(row: &[Value]) -> DeviceRow {
    DeviceRow {
        acked_through: int(row, 0),
        acked_tag: text(row, 1).unwrap_or_default(),
        head_seq: int(row, 2),
        head_tag: text(row, 3).unwrap_or_default(),
        generation: int(row, 4),
        session_key: text(row, 5).map(zeroize::Zeroizing::new),
        posture: text(row, 6),
        quota_day: int(row, 7),
        quota_records: int(row, 8),
        quota_bytes: int(row, 9),
        acked_link: text(row, 10).unwrap_or_default(),
        retired: row.get(11).and_then(Value::int).is_some(),
        holder: text(row, 12),
        log_seen_size: row.get(13).and_then(Value::int),
    }
}

/// What a device id may be: 1-128 of `A-Za-z0-9._-`.
pub fn valid_device_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}
