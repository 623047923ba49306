//! Typed queries shared by the stages.

use super::*;

pub(super) fn latest_bundle(c: &mut dyn Conn) -> Result<Option<PolicyState>, ApiError> {
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
pub(super) fn holder_of(c: &mut dyn Conn, dev: &str) -> Result<Option<String>, ApiError> {
    Ok(c.query(
        "SELECT holder FROM device_holders WHERE device_id = $1",
        &[dev.into()],
    )?
    .first()
    .and_then(|r| text(r, 0)))
}

/// What waits for a device: the newest bundle, the newest trust root's version, and whether
/// custody records for its holder (or assignment records for it) wait after the device's
/// cursor.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    pub(super) bundle: Option<PolicyState>,
    pub(super) trust_root_version: u64,
    pub(super) custody_pending: bool,
}

/// The five columns [`Waiting`] reads, as SQL expressions over parameters named `dev` and
/// `after` (the custody cursor): a query of their own, or a claim's RETURNING.
pub(super) fn waiting_columns(dev: &str, after: &str) -> String {
    format!(
        "(SELECT policy_id FROM bundles ORDER BY version DESC LIMIT 1), \
         (SELECT version FROM bundles ORDER BY version DESC LIMIT 1), \
         (SELECT digest FROM bundles ORDER BY version DESC LIMIT 1), \
         (SELECT COALESCE(MAX(version), 0) FROM trust_roots), \
         CASE WHEN EXISTS (SELECT 1 FROM custody WHERE holder = (SELECT holder FROM device_holders WHERE device_id = {dev}) AND device_id IS NULL AND cursor > {after}) \
         OR EXISTS (SELECT 1 FROM custody WHERE device_id = {dev} AND cursor > {after}) THEN 1 ELSE 0 END"
    )
}

/// The long-poll's question, built once.
static WAITING_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {}", waiting_columns("$1", "$2")));

/// [`Waiting`] from the five columns at `at` of `row`.
pub(super) fn waiting_from(row: &[Value], at: usize) -> Waiting {
    Waiting {
        bundle: text(row, at).map(|id| PolicyState {
            id,
            version: u(int(row, at + 1)),
            digest: text(row, at + 2).unwrap_or_default(),
        }),
        trust_root_version: u(int(row, at + 3)),
        custody_pending: int(row, at + 4) == 1,
    }
}

/// What waits for a device, in one round trip.
pub(super) fn waiting_for(
    c: &mut dyn Conn,
    dev: &str,
    custody_after: u64,
) -> Result<Waiting, ApiError> {
    let rows = c.query(&WAITING_SQL, &[dev.into(), seq_i64(custody_after)?.into()])?;
    Ok(rows.first().map(|r| waiting_from(r, 0)).unwrap_or_default())
}

/// The device row's new values, collected by the stages of one request and written in one
/// UPDATE (a stage that runs later overrides a column an earlier one set).
#[derive(Debug, Default)]
pub(super) struct DeviceUpdate {
    sets: Vec<(&'static str, bool, Value)>,
}

impl DeviceUpdate {
    /// `column = value`.
    pub(super) fn set(&mut self, column: &'static str, value: impl Into<Value>) {
        self.put(column, false, value.into());
    }

    /// `column = COALESCE(value, column)`: NULL keeps what the row has.
    pub(super) fn set_unless_null(&mut self, column: &'static str, value: impl Into<Value>) {
        self.put(column, true, value.into());
    }

    fn put(&mut self, column: &'static str, keep_on_null: bool, value: Value) {
        self.sets.retain(|(c, _, _)| *c != column);
        self.sets.push((column, keep_on_null, value));
    }

    /// Writes the row (nothing to write: no statement), as the transaction's last write: on
    /// PostgreSQL it goes with the commit, one round trip for both ([`Conn::execute_last`]).
    pub(super) fn write(self, c: &mut dyn Conn, dev: &str) -> Result<(), ApiError> {
        if let Some((sql, params)) = self.statement(dev) {
            c.execute_last(&sql, &params)?;
        }
        Ok(())
    }

    fn statement(self, dev: &str) -> Option<(String, Vec<Value>)> {
        if self.sets.is_empty() {
            return None;
        }
        let mut sql = String::from("UPDATE devices SET ");
        let mut params = Vec::with_capacity(self.sets.len() + 1);
        for (i, (column, keep, value)) in self.sets.into_iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let n = i + 1;
            if keep {
                sql.push_str(&format!("{column} = COALESCE(${n}, {column})"));
            } else {
                sql.push_str(&format!("{column} = ${n}"));
            }
            params.push(value);
        }
        sql.push_str(&format!(" WHERE device_id = ${}", params.len() + 1));
        params.push(dev.into());
        Some((sql, params))
    }
}

impl Server {
    /// The newest published policy and its version, parsed once per version: published
    /// bundles never change, and a newer one published through any process shows in the table.
    pub(crate) fn newest_policy(
        &self,
        c: &mut dyn Conn,
    ) -> Result<Option<(i64, std::sync::Arc<ValidPolicy>)>, ApiError> {
        let Some(version) = c
            .query("SELECT MAX(version) FROM bundles", &[])?
            .first()
            .and_then(|r| r.first())
            .and_then(Value::int)
        else {
            return Ok(None);
        };
        let cached = self.newest_policy.lock().ok().and_then(|g| g.clone());
        if let Some((v, p)) = cached
            && v == version
        {
            return Ok(Some((v, p)));
        }
        let Some(envelope) = c
            .query(
                "SELECT envelope FROM bundles WHERE version = $1",
                &[version.into()],
            )?
            .first()
            .and_then(|r| text(r, 0))
        else {
            return Ok(None);
        };
        // Verified when it was published; read again here, not trusted from anywhere else.
        let policy = std::sync::Arc::new(
            read_unverified(envelope.as_bytes())
                .map_err(|e| ApiError::internal(format!("published bundle: {e}")))?
                .policy,
        );
        if let Ok(mut g) = self.newest_policy.lock() {
            *g = Some((version, policy.clone()));
        }
        Ok(Some((version, policy)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;
    use baomi_core::bundle::{SigningKey, sign_bundle};
    use baomi_core::level::Clearance;
    use baomi_core::policy::{HolderAssignment, Policy};

    const BASELINE: &str = include_str!("../../../policies/baseline.json");

    fn publish(s: &Server, version: u64, holder: &str) {
        let mut p = Policy::from_json(BASELINE.as_bytes()).unwrap();
        p.holders = vec![HolderAssignment {
            holder: holder.into(),
            clearance: Clearance::Important,
            devices: vec!["d".into()],
        }];
        let now = Timestamp::now();
        let key = SigningKey::generate().unwrap();
        let env = sign_bundle(&p, version, now, now.plus_seconds(86_400), &[&key])
            .unwrap()
            .to_json();
        s.db.tx(|c| {
            c.execute(
                "INSERT INTO bundles (version, policy_id, digest, envelope, holders, published_at) VALUES ($1, 'baseline', '', $2, '[]', 0)",
                &[(version as i64).into(), env.into()],
            )?;
            Ok(())
        })
        .unwrap();
    }

    fn newest(s: &Server) -> Option<(i64, String)> {
        s.db.tx(|c| s.newest_policy(c))
            .unwrap()
            .map(|(v, p)| (v, p.holder_for_device("d").unwrap().holder.clone()))
    }

    /// Parsed once per version; a newer version (from any process: it is in the table) is
    /// read at once.
    #[test]
    fn the_newest_policy_follows_the_published_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}", dir.path().join("q.db").display()), 1).unwrap();
        let s = Server::new(db, None, Timestamp::now).unwrap();
        assert_eq!(newest(&s), None);
        publish(&s, 1, "hong");
        assert_eq!(newest(&s), Some((1, "hong".into())));
        assert_eq!(newest(&s), Some((1, "hong".into())));
        publish(&s, 2, "ming");
        assert_eq!(newest(&s), Some((2, "ming".into())));
    }
}
