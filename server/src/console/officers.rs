//! Officers: accounts (argon2id password hashes), sessions (a random token, stored hashed; a
//! CSRF token per session), failed-login limits, and the append-only audit log. All of it in
//! the database, so several server processes agree.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use ring::rand::SecureRandom;
use serde::Serialize;

use crate::api::{ApiError, Server};
use crate::db::Value;

/// What an officer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything; changes nothing.
    Auditor,
    /// Also issues enrolment tokens, publishes bundles and trust roots, posts custody.
    Admin,
}

impl Role {
    /// From its name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "auditor" => Some(Role::Auditor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
    /// Its name (`admin`, `auditor`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// A logged-in officer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Officer {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The session's CSRF token (forms must carry it).
    pub csrf: String,
}

/// Failed logins allowed per name in [`FAILURE_WINDOW_MS`] before logins are refused.
pub const MAX_FAILURES: usize = 5;
/// Failed logins allowed per name from all addresses together in the window.
pub const MAX_NAME_FAILURES: usize = 50;
/// Most audit entries one page (API or console) carries.
pub const MAX_AUDIT_PAGE: i64 = 500;
/// The window failed logins are counted in.
pub const FAILURE_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Longest officer name, in bytes, anything anonymous may send.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest password anything anonymous may send (argon2 over megabytes is a cost of its own).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A fixed argon2id hash that unknown names are checked against (its password is random and
/// thrown away): the same work as for a real officer.
fn dummy_hash() -> Option<PasswordHash<'static>> {
    static HASH: std::sync::LazyLock<Option<String>> = std::sync::LazyLock::new(|| {
        let salt = SaltString::encode_b64(b"baomi-dummy-salt").ok()?;
        let secret = random_token(24).ok()?;
        Argon2::default()
            .hash_password(secret.as_bytes(), &salt)
            .ok()
            .map(|h| h.to_string())
    });
    HASH.as_deref().and_then(|h| PasswordHash::new(h).ok())
}

/// How long a session lasts.
pub const SESSION_MS: i64 = 8 * 3600 * 1000;

/// Who acts when the server's CLI is run: `cli:USER@HOST`, for the audit log.
pub fn local_operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("cli:{user}@{host}")
}

/// Random bytes, base64url.
pub fn random_token(bytes: usize) -> Result<String, ApiError> {
    let mut b = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ApiError::internal("no randomness"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn sha256_hex(s: &str) -> String {
    baomi_core::bundle::keys::hex_digest(s.as_bytes())
}

/// Constant-time equality of two secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// An officer's name as stored and compared: Unicode NFC, so the same name typed on two
/// keyboards (composed or decomposed) is one officer.
pub fn officer_name(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.trim().nfc().collect()
}

impl Server {
    /// Creates (or re-keys) an officer. The password is hashed with argon2id (memory-hard).
    pub fn officer_add(&self, name: &str, role: Role, password: &str) -> Result<(), ApiError> {
        let name = &officer_name(name);
        if name.is_empty()
            || name.chars().count() > 64
            || name.len() > MAX_NAME_BYTES
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || "._-·".contains(c))
        {
            return Err(ApiError::bad_request(
                "officer names are 1-64 letters or digits of any script (陈静, chen.jing), '.', '_', '-', '·'",
            ));
        }
        if password.chars().count() < 12 {
            return Err(ApiError::bad_request(
                "passwords are at least 12 characters",
            ));
        }
        let salt = SaltString::encode_b64(random_token(16)?.as_bytes())
            .map_err(|e| ApiError::internal(format!("salt: {e}")))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| ApiError::internal(format!("argon2: {e}")))?
            .to_string();
        let now = self.now();
        self.db().tx(|c| {
            c.execute(
                "INSERT INTO officers (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET role = $2, password_hash = $3, disabled_at = NULL",
                &[name.into(), role.as_str().into(), hash.clone().into(), now.0.into()],
            )?;
            // A new password ends every session opened with the old one (a reset after a
            // leak must lock out whoever had it), and clears the failed-login count.
            c.execute("DELETE FROM officer_sessions WHERE officer = $1", &[name.into()])?;
            // Every address's count for this name, and the name's own.
            c.execute(
                "DELETE FROM login_attempts WHERE substr(name, length(name) - length($1)) = $2",
                &[name.into(), format!("|{name}").into()],
            )?;
            Ok(())
        })?;
        // The local operator acted (the CLI is the only caller), not the officer created.
        self.audit(
            &local_operator(),
            "officer_add",
            &format!("{name}: role {}", role.as_str()),
        )
    }

    /// An officer's role, if the officer exists.
    pub fn officer_role(&self, name: &str) -> Result<Option<Role>, ApiError> {
        let name = officer_name(name);
        let row = self.db().tx(|c| {
            Ok(
                c.query("SELECT role FROM officers WHERE name = $1", &[name.into()])?
                    .first()
                    .cloned(),
            )
        })?;
        Ok(row
            .and_then(|r| r.first().and_then(Value::text).map(str::to_owned))
            .and_then(|t| Role::parse(&t)))
    }

    /// Checks a password and opens a session; returns its token (cookie or bearer) and the
    /// officer. After [`MAX_FAILURES`] failures in [`FAILURE_WINDOW_MS`], refused with 429
    /// before the password is even looked at.
    pub fn officer_login(&self, name: &str, password: &str) -> Result<(String, Officer), ApiError> {
        self.officer_login_from(name, password, None)
    }

    /// [`Server::officer_login`] from the address `peer`: failures are counted per address and
    /// name ([`MAX_FAILURES`] in the window, then 429 for that address only, so a stranger
    /// cannot lock the officer out from elsewhere), and per name across all addresses
    /// ([`MAX_NAME_FAILURES`], the backstop against many addresses; its first trip is
    /// audited). The local CLI (`officer add`) clears both.
    pub fn officer_login_from(
        &self,
        name: &str,
        password: &str,
        peer: Option<&str>,
    ) -> Result<(String, Officer), ApiError> {
        let name = &officer_name(name);
        // Anything longer than a name can be is refused before it is written anywhere (a 2 MiB
        // name used to go into the failure table and the audit log).
        if name.is_empty() || name.len() > MAX_NAME_BYTES || password.len() > MAX_PASSWORD_BYTES {
            return Err(ApiError::unauthorized("wrong name or password"));
        }
        let now = self.now();
        // Check and count in one statement (an upsert takes the row's lock on both engines):
        // every attempt counts before argon2 runs, so concurrent guesses cannot all slip in
        // under the limit as they did when the count was read before and written after.
        let peer_key = format!("{}|{name}", peer.unwrap_or("local"));
        let name_key = format!("*|{name}");
        let (attempts, name_attempts, row) = self.db().tx(|c| {
            let window_open = now.0 - FAILURE_WINDOW_MS;
            let mut count = |key: &str| -> Result<i64, ApiError> {
                Ok(c.query(
                    "INSERT INTO login_attempts (name, window_start, count) VALUES ($1, $2, 1)
                     ON CONFLICT (name) DO UPDATE SET
                       count = CASE WHEN login_attempts.window_start > $3 THEN login_attempts.count + 1 ELSE 1 END,
                       window_start = CASE WHEN login_attempts.window_start > $3 THEN login_attempts.window_start ELSE $2 END
                     RETURNING count",
                    &[key.into(), now.0.into(), window_open.into()],
                )?
                .first()
                .and_then(|r| r.first().and_then(Value::int))
                .unwrap_or(i64::MAX))
            };
            let n = count(&peer_key)?;
            let all = count(&name_key)?;
            // Attempts outside the window count for nothing: forgotten, so guessing names
            // cannot grow the table without bound.
            c.execute(
                "DELETE FROM login_attempts WHERE window_start <= $1",
                &[window_open.into()],
            )?;
            let row = c
                .query(
                    "SELECT role, password_hash FROM officers WHERE name = $1 AND disabled_at IS NULL",
                    &[name.into()],
                )?
                .first()
                .cloned();
            Ok((n, all, row))
        })?;
        if name_attempts == MAX_NAME_FAILURES as i64 + 1 {
            // Many addresses at once: the officer is told through the audit log.
            let _ = self.audit(
                name,
                "login_throttled",
                &format!("{MAX_NAME_FAILURES} failed logins from several addresses in 15 minutes"),
            );
        }
        if attempts > MAX_FAILURES as i64 || name_attempts > MAX_NAME_FAILURES as i64 {
            return Err(ApiError::new_pub(
                429,
                "too_many_failures",
                format!(
                    "too many failed logins for {name}: wait 15 minutes (or reset the password with `baomi-server officer add` on the server)"
                ),
            ));
        }
        // Argon2 runs whether or not the name exists (against a fixed hash for an unknown
        // one), so the answer's timing does not tell which officer names exist.
        let stored = row
            .as_ref()
            .and_then(|r| r.get(1).and_then(Value::text))
            .and_then(|h| PasswordHash::new(h).ok());
        let dummy = dummy_hash();
        let checked = stored.as_ref().or(dummy.as_ref());
        let verified = checked.is_some_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), h)
                .is_ok()
        });
        let ok = verified && stored.is_some();
        let role = row
            .as_ref()
            .and_then(|r| r.first().and_then(Value::text))
            .and_then(Role::parse);
        let (true, Some(role)) = (ok, role) else {
            let _ = self.audit(name, "login_failed", "");
            return Err(ApiError::unauthorized("wrong name or password"));
        };
        let token = random_token(32)?;
        let csrf = random_token(24)?;
        self.db().tx(|c| {
            c.execute("DELETE FROM login_attempts WHERE name = $1", &[peer_key.clone().into()])?;
            c.execute("DELETE FROM officer_sessions WHERE expires_at < $1", &[now.0.into()])?;
            c.execute(
                "INSERT INTO officer_sessions (token_hash, officer, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                &[sha256_hex(&token).into(), name.into(), csrf.clone().into(), now.0.into(), (now.0 + SESSION_MS).into()],
            )?;
            Ok(())
        })?;
        self.audit(name, "login", "")?;
        Ok((
            token,
            Officer {
                name: name.to_owned(),
                role,
                csrf,
            },
        ))
    }

    /// The officer a session token belongs to, if it is live.
    pub fn officer_session(&self, token: &str) -> Result<Option<Officer>, ApiError> {
        let now = self.now();
        let row = self.db().tx(|c| {
            Ok(c.query(
                "SELECT s.officer, o.role, s.csrf FROM officer_sessions s JOIN officers o ON o.name = s.officer WHERE s.token_hash = $1 AND s.expires_at > $2 AND o.disabled_at IS NULL",
                &[sha256_hex(token).into(), now.0.into()],
            )?
            .first()
            .cloned())
        })?;
        Ok(row.and_then(|r| {
            Some(Officer {
                name: r.first()?.text()?.to_owned(),
                role: Role::parse(r.get(1)?.text()?)?,
                csrf: r.get(2)?.text()?.to_owned(),
            })
        }))
    }

    /// Disables an officer: every session ends now and no login succeeds until `officer add`
    /// sets a new password. Recorded in the audit log under `by`.
    pub fn officer_disable(&self, name: &str, by: &str) -> Result<(), ApiError> {
        let name = &officer_name(name);
        let now = self.now();
        let found = self.db().tx(|c| {
            let n = c.execute(
                "UPDATE officers SET disabled_at = $2 WHERE name = $1",
                &[name.into(), now.0.into()],
            )?;
            c.execute(
                "DELETE FROM officer_sessions WHERE officer = $1",
                &[name.into()],
            )?;
            Ok(n)
        })?;
        if found == 0 {
            return Err(ApiError::new_pub(
                404,
                "not_found",
                format!("no officer {name}"),
            ));
        }
        self.audit(by, "officer_disable", name)
    }

    /// Ends a session.
    pub fn officer_logout(&self, token: &str) -> Result<(), ApiError> {
        self.db().tx(|c| {
            c.execute(
                "DELETE FROM officer_sessions WHERE token_hash = $1",
                &[sha256_hex(token).into()],
            )?;
            Ok(())
        })
    }

    /// Appends to the audit log (never updated or deleted by the server).
    pub fn audit(&self, officer: &str, action: &str, detail: &str) -> Result<(), ApiError> {
        let now = self.now();
        let detail: String = detail.chars().take(500).collect();
        self.db().tx(|c| {
            c.execute(
                "INSERT INTO audit (at, officer, action, detail) VALUES ($1, $2, $3, $4)",
                &[
                    now.0.into(),
                    officer.into(),
                    action.into(),
                    detail.clone().into(),
                ],
            )?;
            crate::ledger::log::enqueue(
                c,
                &[crate::ledger::Leaf::Audit {
                    at: now.0,
                    officer: officer.to_owned(),
                    action: action.to_owned(),
                    detail: detail.clone(),
                }],
            )?;
            Ok(())
        })
    }

    /// The audit log, newest first.
    pub fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, ApiError> {
        self.audit_page(limit, None)
    }

    /// A page of the audit log, newest first: at most `limit` (capped at
    /// [`MAX_AUDIT_PAGE`]) entries before `before` (a `seq`; the newest when `None`). Keyset
    /// paging: the page after is `before` = the last `seq` shown.
    pub fn audit_page(&self, limit: i64, before: Option<i64>) -> Result<Vec<AuditEntry>, ApiError> {
        let limit = limit.clamp(1, MAX_AUDIT_PAGE);
        let before = before.unwrap_or(i64::MAX);
        let rows = self.db().tx(|c| {
            Ok(c.query(
                "SELECT seq, at, officer, action, detail FROM audit WHERE seq < $2 ORDER BY seq DESC LIMIT $1",
                &[limit.into(), before.into()],
            )?)
        })?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                seq: r.first().and_then(Value::int).unwrap_or(0),
                at: r.get(1).and_then(Value::int).unwrap_or(0),
                officer: r
                    .get(2)
                    .and_then(Value::text)
                    .unwrap_or_default()
                    .to_owned(),
                action: r
                    .get(3)
                    .and_then(Value::text)
                    .unwrap_or_default()
                    .to_owned(),
                detail: r
                    .get(4)
                    .and_then(Value::text)
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect())
    }
}

/// One audit entry.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AuditEntry {
    /// Position.
    pub seq: i64,
    /// When (ms).
    pub at: i64,
    /// Who.
    pub officer: String,
    /// What.
    pub action: String,
    /// Details.
    pub detail: String,
}
