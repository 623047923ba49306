//! The long-poll (`POST /v1/wait`): is anything newer waiting for this device? The HTTP layer
//! holds the request open and asks again whenever the fleet's change counter moves.

use super::*;
use baomi_core::sync::protocol::{WaitRequest, WaitResponse};

/// An authenticated wait: whose, signed when, asking what, and whether something waits now.
#[derive(Debug)]
pub struct WaitCheck {
    /// The device.
    pub device: String,
    /// The request's signed time.
    pub at: i64,
    /// The request.
    pub req: WaitRequest,
    /// Something is waiting already.
    pub pending: bool,
}

impl Server {
    /// Authenticates a wait and answers whether something is already waiting.
    pub fn wait_check(
        &self,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<WaitCheck, ApiError> {
        // Read-only in the database: a replayed wait learns only "something changed". The
        // HTTP layer holds one open wait per device, the newest by request time (`at`), so a
        // captured wait replayed on thousands of connections holds one of them.
        let (dev, at) = self.authenticate(path::WAIT, headers, body)?;
        let req: WaitRequest = parse(body)?;
        Self::same_device(&dev, &req.device_id)?;
        let pending = self.pending_for(&dev, &req)?;
        Ok(WaitCheck {
            device: dev,
            at,
            req,
            pending,
        })
    }

    /// Whether a trust root, a bundle or a custody record newer than what the device reports
    /// is waiting for it.
    pub fn pending_for(&self, dev: &str, req: &WaitRequest) -> Result<bool, ApiError> {
        let w = self.db.tx(|c| waiting_for(c, dev, req.custody_after))?;
        Ok(w.trust_root_version > req.trust_root_version
            || w.bundle.is_some_and(|b| b.version > req.policy_version)
            || w.custody_pending)
    }

    /// A number that grows whenever anything a device may wait for is added (custody records,
    /// bundles, trust roots): one cheap query per server process per poll, whichever process
    /// the change came through.
    pub fn change_counter(&self) -> Result<i64, ApiError> {
        self.db.tx(|c| {
            Ok(c.query(
                "SELECT (SELECT COALESCE(MAX(cursor), 0) FROM custody) + (SELECT COALESCE(MAX(version), 0) FROM bundles) + (SELECT COALESCE(MAX(version), 0) FROM trust_roots)",
                &[],
            )?
            .first()
            .map_or(0, |r| int(r, 0)))
        })
    }

    /// The answer body.
    pub fn wait_answer(changed: bool) -> Reply {
        json(&WaitResponse { changed })
    }
}
