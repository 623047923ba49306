//! The security office's side: enrolment tokens, publishing, and what the officer reads.

use baomi_core::posture::{AppliedPosture, AppliedSetting, Enforcement};
use serde::Serialize;

use crate::api::{ApiError, Server, token_hash};
use crate::db::Value;
use crate::fleet::PhoneState;

/// Issues a one-time enrolment token valid for `hours`; only its hash is stored.
pub fn new_token(server: &Server, hours: i64) -> Result<String, ApiError> {
    new_token_for(server, hours, None)
}

/// Like [`new_token`], bound to the holder the phone is issued to: the fleet listing shows the
/// enrolled device under that holder until a signed bundle assigns it (the device itself runs
/// closed until then).
pub fn new_token_for(
    server: &Server,
    hours: i64,
    holder: Option<&str>,
) -> Result<String, ApiError> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut raw = [0u8; 20];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| ApiError::internal("random source failed"))?;
    let token = format!("bme1-{}", baomi_core::bundle::keys::hex(&raw));
    let now = server.now();
    let hash = token_hash(&token);
    server.db().tx(|c| {
        c.execute(
            "INSERT INTO tokens (token_hash, created_at, expires_at, holder) VALUES ($1, $2, $3, $4)",
            &[
                hash.clone().into(),
                now.0.into(),
                now.plus_seconds(hours.saturating_mul(3600)).0.into(),
                holder.map(str::to_owned).into(),
            ],
        )?;
        Ok(())
    })?;
    Ok(token)
}

/// An enrolment token as the administrator sees it (never the token itself: only its hash is
/// stored).
#[derive(Debug, Clone, Serialize)]
pub struct TokenRow {
    /// The first 12 hex digits of the token's hash: what `token revoke` takes.
    pub id: String,
    /// Issued (RFC 3339).
    pub created: String,
    /// Expires (RFC 3339).
    pub expires: String,
    /// The intended holder, if named.
    pub holder: Option<String>,
    /// `unused`, `used by DEVICE`, `expired` or `revoked`.
    pub state: String,
}

/// Every enrolment token, newest first.
pub fn tokens(server: &Server) -> Result<Vec<TokenRow>, ApiError> {
    let now = server.now().0;
    let rows = server.db().tx(|c| {
        Ok(c.query(
            "SELECT token_hash, created_at, expires_at, holder, used_by, revoked_at FROM tokens ORDER BY created_at DESC",
            &[],
        )?)
    })?;
    let when = |ms: i64| baomi_core::time::Timestamp(ms).to_rfc3339();
    Ok(rows
        .iter()
        .map(|r| {
            let v = |i: usize| r.get(i).and_then(|v| v.text()).map(str::to_owned);
            let n = |i: usize| r.get(i).and_then(crate::db::Value::int);
            let expires = n(2).unwrap_or(0);
            let state = match (n(5), v(4)) {
                (Some(_), _) => "revoked".to_owned(),
                (None, Some(d)) => format!("used by {d}"),
                (None, None) if expires < now => "expired".to_owned(),
                (None, None) => "unused".to_owned(),
            };
            TokenRow {
                id: v(0).unwrap_or_default().chars().take(12).collect(),
                created: when(n(1).unwrap_or(0)),
                expires: when(expires),
                holder: v(3),
                state,
            }
        })
        .collect())
}

/// Revokes the unused token whose id (hash prefix, at least 8 hex digits) is `id`: it can no
/// longer enrol a phone. Refused when the prefix names none or several.
pub fn revoke_token(server: &Server, id: &str) -> Result<(), ApiError> {
    if id.len() < 8 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request(
            "a token id is at least 8 hex digits (see `token list`)",
        ));
    }
    let now = server.now().0;
    server.db().tx(|c| {
        let n = c.execute(
            "UPDATE tokens SET revoked_at = $1, expires_at = $1 - 1 WHERE token_hash LIKE $2 AND used_by IS NULL AND revoked_at IS NULL",
            &[now.into(), format!("{}%", id.to_ascii_lowercase()).into()],
        )?;
        match n {
            1 => Ok(()),
            0 => Err(ApiError::new_pub(
                404,
                "not_found",
                format!("no unused token {id}"),
            )),
            _ => Err(ApiError::conflict(format!(
                "{id} names {n} tokens: give more digits"
            ))),
        }
    })
}

/// One device as the officer sees it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    /// Id.
    pub device_id: String,
    /// Platform.
    pub platform: String,
    /// Enrolled at (ms).
    pub enrolled_at: i64,
    /// Last check-in (ms).
    pub last_check_in: Option<i64>,
    /// Installed policy `id@version`.
    pub policy: Option<String>,
    /// Posture JSON as reported.
    pub posture: Option<serde_json::Value>,
    /// Why it fails closed, if it does.
    pub fail_closed: Option<String>,
    /// Records received.
    pub acked_through: i64,
    /// Newest record the device reported.
    pub head_seq: i64,
    /// Device clock minus server clock at the last check-in.
    pub clock_skew_ms: Option<i64>,
    /// Something the officer must look at (chain head or store generation went back).
    pub alert: Option<String>,
    /// The store's commit generation at the last check-in.
    pub generation: i64,
    /// Holder per the newest published bundle.
    pub holder: Option<String>,
    /// Holder the enrolment token was issued for.
    pub enrolled_for: Option<String>,
    /// Enrolled but in no published bundle's `holders`: the phone runs closed.
    pub unassigned: bool,
    /// Who applies the posture on the phone (device owner, MDM, ...), as it last reported.
    pub enforcement: Option<Enforcement>,
    /// What the phone applied, setting by setting, as it last reported.
    pub applied: Option<Vec<AppliedSetting>>,
    /// Every setting applied (or satisfied) in a mode that can enforce; `None` before the
    /// phone's first report.
    pub applied_ok: Option<bool>,
    /// Where it stands ([`PhoneState`], defined once for every page and the API).
    pub state: PhoneState,
    /// `state` is compliant: the current policy installed, its posture applied, no alert.
    pub compliant: bool,
    /// When the office retired it (ms): it syncs no more; its records are kept.
    pub retired_at: Option<i64>,
}

/// How many devices are enrolled.
pub fn devices_count(server: &Server) -> Result<i64, ApiError> {
    Ok(server
        .db()
        .tx(|c| Ok(c.query("SELECT COUNT(*) FROM devices", &[])?))?
        .first()
        .and_then(|r| r.first().and_then(Value::int))
        .unwrap_or(0))
}

/// The fleet.
pub fn devices(server: &Server) -> Result<Vec<DeviceRow>, ApiError> {
    devices_matching(server, None)
}

/// [`devices`], or only the one named (a device page reads one row, not the fleet).
pub fn devices_matching(server: &Server, only: Option<&str>) -> Result<Vec<DeviceRow>, ApiError> {
    let select = device_select(server.now().0);
    let rows = server.db().tx(|c| {
        Ok(match only {
            Some(id) => c.query(&format!("{select} WHERE d.device_id = $1"), &[id.into()])?,
            None => c.query(&format!("{select} ORDER BY d.device_id"), &[])?,
        })
    })?;
    Ok(rows.iter().map(|r| device_row(r)).collect())
}

/// The SELECT of [`device_row`]'s columns over `devices d` joined with its assignment `h`, at
/// `now` (for the state).
pub fn device_select(now: i64) -> String {
    format!(
        "SELECT d.device_id, d.platform, d.enrolled_at, d.last_check_in, d.policy_id, d.policy_version, d.posture, d.fail_closed, d.acked_through, d.head_seq, d.clock_skew_ms, d.alert, d.generation, h.holder, d.enrolled_for, d.applied, d.retired_at, d.applied_ok, {} AS state FROM devices d LEFT JOIN device_holders h ON h.device_id = d.device_id",
        crate::fleet::state_sql(now)
    )
}

/// A row of [`device_select`].
pub fn device_row(r: &[Value]) -> DeviceRow {
    let t = |i: usize| r.get(i).and_then(Value::text).map(str::to_owned);
    let n = |i: usize| r.get(i).and_then(Value::int);
    let applied: Option<AppliedPosture> = t(15).and_then(|a| serde_json::from_str(&a).ok());
    let state = t(18)
        .and_then(|s| PhoneState::parse(&s))
        .unwrap_or(PhoneState::NoReport);
    DeviceRow {
        device_id: t(0).unwrap_or_default(),
        platform: t(1).unwrap_or_default(),
        enrolled_at: n(2).unwrap_or(0),
        last_check_in: n(3),
        policy: t(4).map(|id| format!("{id}@{}", n(5).unwrap_or(0))),
        posture: t(6).and_then(|p| serde_json::from_str(&p).ok()),
        fail_closed: t(7),
        acked_through: n(8).unwrap_or(0),
        head_seq: n(9).unwrap_or(0),
        clock_skew_ms: n(10),
        alert: t(11),
        generation: n(12).unwrap_or(0),
        unassigned: t(13).is_none(),
        holder: t(13),
        enrolled_for: t(14),
        enforcement: applied.as_ref().map(|a| a.enforcement),
        applied: applied.map(|a| a.settings),
        retired_at: n(16),
        applied_ok: n(17).map(|v| v != 0),
        compliant: state == PhoneState::Compliant,
        state,
    }
}

impl DeviceRow {
    /// Who has the phone, as every page shows it: the holder of the published assignment,
    /// else the person its enrolment token was issued for (`None`: nobody known).
    pub fn holder_name(&self) -> Option<&str> {
        self.holder.as_deref().or(self.enrolled_for.as_deref())
    }
}

/// Retires a device: its next check-in tells it (proven) to stop syncing, its other requests
/// are refused (410 `retired`); its records stay. Idempotent for an already retired device.
pub fn retire_device(server: &Server, device: &str) -> Result<(), ApiError> {
    let now = server.now().0;
    server.db().tx(|c| {
        let n = c.execute(
            "UPDATE devices SET retired_at = COALESCE(retired_at, $1) WHERE device_id = $2",
            &[now.into(), device.into()],
        )?;
        if n == 0 {
            return Err(ApiError::new_pub(
                404,
                "not_found",
                format!("no enrolled device {device}"),
            ));
        }
        Ok(())
    })
}

/// Received violations, oldest first, optionally for one device.
pub fn violations(
    server: &Server,
    device: Option<&str>,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let rows = server.db().tx(|c| {
        Ok(match device {
            Some(d) => c.query(
                "SELECT device_id, seq, received_at, record FROM violations WHERE device_id = $1 ORDER BY seq",
                &[d.into()],
            )?,
            None => c.query(
                "SELECT device_id, seq, received_at, record FROM violations ORDER BY device_id, seq",
                &[],
            )?,
        })
    })?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let record: serde_json::Value = r
                .get(3)
                .and_then(Value::text)
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or(serde_json::Value::Null);
            serde_json::json!({
                "device_id": r.first().and_then(Value::text),
                "seq": r.get(1).and_then(Value::int),
                "received_at": r.get(2).and_then(Value::int),
                "record": record,
            })
        })
        .collect())
}
