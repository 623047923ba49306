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
