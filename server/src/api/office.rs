//! The security office's operations: publishing trust roots and bundles (signed offline), and
//! accepting the registry's custody records.

use super::*;

impl Server {
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
            crate::ledger::log::enqueue(
                c,
                &[crate::ledger::Leaf::Bundle {
                    version: state.version,
                    digest: hex_digest(text.as_bytes()),
                }],
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
            // A personnel assignment in force wins over the bundle's list, as on the device.
            overlay_assignments(c, None, now)?;
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
            crate::ledger::log::enqueue(
                c,
                &[crate::ledger::Leaf::TrustRoot {
                    version: next.version(),
                    digest: hex_digest(text.as_bytes()),
                }],
            )?;
            Ok(())
        })?;
        Ok(next.version())
    }

    /// Verifies a personnel assignment record and appends it to the feed the device reads
    /// custody from (`POST /v1/office/assignments`, `baomi-server assignment post`); returns
    /// its cursor. The device -> holder index follows the newest record in force, so the
    /// holder's custody records reach the phone from its next sync. Idempotent.
    pub fn accept_assignment(&self, bytes: &[u8]) -> Result<(u64, AssignmentRecordDoc), ApiError> {
        let trust = self
            .trust_root()?
            .ok_or_else(|| ApiError::conflict("publish a trust root first"))?;
        let doc = verify_assignment_record(bytes, &trust)
            .map_err(|e| ApiError::unauthorized(format!("assignment record refused: {e}")))?;
        let envelope =
            String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::bad_request("not UTF-8"))?;
        let now = self.now();
        let cursor = self.db.tx(|c| {
            let taken = c.query(
                "SELECT envelope FROM custody WHERE record_id = $1",
                &[doc.record_id.clone().into()],
            )?;
            if taken.first().and_then(|r| text(r, 0)).is_some_and(|t| t != envelope) {
                return Err(ApiError::conflict(format!(
                    "record id {} is already stored with other content",
                    doc.record_id
                )));
            }
            let (new, cursor) = append_to_feed(
                c,
                &doc.record_id,
                "INSERT INTO custody (record_id, holder, envelope, received_at, document, classification, action, at, device_id) VALUES ($1, $2, $3, $4, '', $5, 'assign', $6, $7) ON CONFLICT (record_id) DO NOTHING RETURNING cursor",
                &[doc.record_id.clone().into(), doc.holder.clone().into(), envelope.clone().into(), now.0.into(),
                  doc.clearance.as_str().to_owned().into(), doc.valid_from.0.into(), doc.device.clone().into()],
                crate::ledger::Leaf::Assignment {
                    record_id: doc.record_id.clone(),
                    digest: hex_digest(envelope.as_bytes()),
                },
            )?;
            if new {
                overlay_assignments(c, Some(&doc.device), now)?;
            }
            Ok(cursor)
        })?;
        Ok((u(cursor), doc))
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
        let (level, action) = crate::schema::custody_names(&doc);
        let text =
            String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::bad_request("not UTF-8"))?;
        let now = self.now();
        let cursor = self.db.tx(|c| {
            let (_, cursor) = append_to_feed(
                c,
                &doc.record_id,
                "INSERT INTO custody (record_id, holder, envelope, received_at, document, classification, action, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (record_id) DO NOTHING RETURNING cursor",
                &[doc.record_id.clone().into(), doc.holder.clone().into(), text.clone().into(), now.0.into(),
                  doc.document.clone().into(), level.clone().into(), action.clone().into(), doc.at.0.into()],
                crate::ledger::Leaf::Custody {
                    record_id: doc.record_id.clone(),
                    digest: hex_digest(text.as_bytes()),
                },
            )?;
            Ok(cursor)
        })?;
        // Custody does not wait for the phone: MDM-enforced devices get the command now. The
        // record is in the feed whatever happens here; a failed hand-over is retried.
        if let Err(e) = self.mdm_on_custody(&doc.holder) {
            log::warn!("mdm after custody {}: {}", doc.record_id, e.message);
        }
        Ok(u(cursor))
    }
}

/// Appends one signed record to the feed phones read (custody and assignment records share
/// it): `insert` (`ON CONFLICT (record_id) DO NOTHING RETURNING cursor`) with `params`, its
/// ledger leaf queued only when it is new. Returns whether it was new, and its cursor.
fn append_to_feed(
    c: &mut dyn Conn,
    record_id: &str,
    insert: &str,
    params: &[Value],
    leaf: crate::ledger::Leaf,
) -> Result<(bool, i64), ApiError> {
    let new = !c.query(insert, params)?.is_empty();
    if new {
        crate::ledger::log::enqueue(c, &[leaf])?;
    }
    let cursor = c
        .query(
            "SELECT cursor FROM custody WHERE record_id = $1",
            &[record_id.into()],
        )?
        .first()
        .map_or(0, |r| int(r, 0));
    Ok((new, cursor))
}

/// Points the device -> holder index at the newest assignment record in force at `now` for
/// `device` (every assigned device when `None`); a device whose newest record is not in force
/// keeps what the bundle says.
fn overlay_assignments(
    c: &mut dyn Conn,
    device: Option<&str>,
    now: Timestamp,
) -> Result<(), ApiError> {
    let rows = match device {
        Some(d) => c.query(
            "SELECT envelope FROM custody WHERE device_id = $1 AND action = 'assign' ORDER BY cursor",
            &[d.into()],
        )?,
        None => c.query(
            "SELECT envelope FROM custody WHERE device_id IS NOT NULL AND action = 'assign' ORDER BY cursor",
            &[],
        )?,
    };
    let mut newest: std::collections::BTreeMap<String, AssignmentRecordDoc> =
        std::collections::BTreeMap::new();
    for r in rows {
        let Some(doc) =
            text(&r, 0).and_then(|e| read_verified_assignment_record(e.as_bytes()).ok())
        else {
            continue;
        };
        if newest.get(&doc.device).is_none_or(|n| doc.supersedes(n)) {
            newest.insert(doc.device.clone(), doc);
        }
    }
    for doc in newest.values().filter(|d| d.in_force(now)) {
        c.execute(
            "INSERT INTO device_holders (device_id, holder) VALUES ($1, $2) ON CONFLICT (device_id) DO UPDATE SET holder = excluded.holder",
            &[doc.device.clone().into(), doc.holder.clone().into()],
        )?;
    }
    Ok(())
}
