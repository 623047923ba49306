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

/// Whether custody records for the device's holder wait after `after`.
pub(super) fn custody_pending(c: &mut dyn Conn, dev: &str, after: u64) -> Result<bool, ApiError> {
    Ok(match holder_of(c, dev)? {
        Some(h) => !c
            .query(
                "SELECT cursor FROM custody WHERE holder = $1 AND cursor > $2 LIMIT 1",
                &[h.into(), seq_i64(after)?.into()],
            )?
            .is_empty(),
        None => false,
    })
}

/// The newest published trust root's version (0 before the first).
pub(super) fn latest_trust_root_version(c: &mut dyn Conn) -> Result<u64, ApiError> {
    Ok(u(c
        .query("SELECT COALESCE(MAX(version), 0) FROM trust_roots", &[])?
        .first()
        .map_or(0, |r| int(r, 0))))
}

/// What waits for a device, in one round trip: the newest bundle, the newest trust root's
/// version, and whether custody records for its holder wait after `custody_after`.
pub(super) fn waiting_for(
    c: &mut dyn Conn,
    dev: &str,
    custody_after: u64,
) -> Result<(Option<PolicyState>, u64, bool), ApiError> {
    let rows = c.query(
        "SELECT b.policy_id, b.version, b.digest, \
           (SELECT COALESCE(MAX(version), 0) FROM trust_roots), \
           CASE WHEN EXISTS (SELECT 1 FROM custody WHERE holder = (SELECT holder FROM device_holders WHERE device_id = $1) AND cursor > $2) THEN 1 ELSE 0 END \
         FROM (SELECT 1 AS one) o LEFT JOIN (SELECT policy_id, version, digest FROM bundles ORDER BY version DESC LIMIT 1) b ON 1 = 1",
        &[dev.into(), seq_i64(custody_after)?.into()],
    )?;
    let row = rows.first().cloned().unwrap_or_default();
    let bundle = text(&row, 0).map(|id| PolicyState {
        id,
        version: u(int(&row, 1)),
        digest: text(&row, 2).unwrap_or_default(),
    });
    Ok((bundle, u(int(&row, 3)), int(&row, 4) == 1))
}
