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
