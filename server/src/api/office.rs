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
            let new = c.query(
                "INSERT INTO custody (record_id, holder, envelope, received_at, document, classification, action, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (record_id) DO NOTHING RETURNING cursor",
                &[doc.record_id.clone().into(), doc.holder.clone().into(), text.clone().into(), now.0.into(),
                  doc.document.clone().into(), level.clone().into(), action.clone().into(), doc.at.0.into()],
            )?;
            if !new.is_empty() {
                crate::ledger::log::enqueue(
                    c,
                    &[crate::ledger::Leaf::Custody {
                        record_id: doc.record_id.clone(),
                        digest: hex_digest(text.as_bytes()),
                    }],
                )?;
            }
            Ok(c.query("SELECT cursor FROM custody WHERE record_id = $1", &[doc.record_id.clone().into()])?
                .first()
                .map_or(0, |r| int(r, 0)))
        })?;
        // Custody does not wait for the phone: MDM-enforced devices get the command now. The
        // record is in the feed whatever happens here; a failed hand-over is retried.
        if let Err(e) = self.mdm_on_custody(&doc.holder) {
            log::warn!("mdm after custody {}: {}", doc.record_id, e.message);
        }
        Ok(u(cursor))
    }
}
