//! Managed configuration intake: what an MDM pushes (a trust root and a policy bundle, both
//! signed envelopes) installed in one call, whatever the MDM re-delivers.
//!
//! An MDM delivers its whole configuration again on every change, and the copy it holds can be
//! older than what sync has since installed. So each item is classified first and verified
//! only when it could change something:
//!
//! 1. absent or empty: nothing to do;
//! 2. byte-for-byte what is installed: `AlreadyInstalled`;
//! 3. claims a version below the installed one: `Older`, skipped (the MDM lags behind sync);
//! 4. otherwise verified and installed exactly as sync would (rotation rules, signatures,
//!    rollback, expiry); a refusal is `Refused` and is recorded as a tamper violation, because
//!    a configuration channel delivering something that fails verification is what a relay or
//!    a compromised console looks like. The same version with other bytes is refused too.
//!
//! The trust root goes first, so a bundle signed under a root delivered alongside it verifies.
//! Nothing here decides for the platform which refusals are harmless.

use crate::bundle::{TrustRoot, read_unverified};
use crate::time::Timestamp;

use super::{Agent, AgentError};

/// What became of one item of managed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeItem {
    /// The configuration does not hold it.
    Absent,
    /// The same bytes are installed.
    AlreadyInstalled {
        /// Installed version.
        version: u64,
    },
    /// An older version than the installed one: skipped.
    Older {
        /// Claimed version of the copy delivered.
        offered: u64,
        /// Installed version.
        installed: u64,
    },
    /// Verified and installed.
    Installed {
        /// New version.
        version: u64,
    },
    /// Refused; recorded as a tamper violation when a policy is in force.
    Refused {
        /// Why, as the verifier said it.
        reason: String,
        /// Whether a violation was recorded (no policy yet means nothing can be recorded).
        recorded: bool,
    },
}

/// The outcome of [`Agent::apply_managed_config`], item by item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeOutcome {
    /// The trust root item.
    pub trust_root: IntakeItem,
    /// The policy bundle item.
    pub bundle: IntakeItem,
}

impl IntakeOutcome {
    /// Whether anything was installed (the platform re-applies the posture then).
    pub fn changed(&self) -> bool {
        matches!(self.trust_root, IntakeItem::Installed { .. })
            || matches!(self.bundle, IntakeItem::Installed { .. })
    }
}

impl Agent {
    /// Installs what managed configuration holds (see the module docs). Errors only when the
    /// store fails; every refusal is in the outcome.
    pub fn apply_managed_config(
        &mut self,
        trust_root: Option<&[u8]>,
        bundle: Option<&[u8]>,
        now: Timestamp,
    ) -> Result<IntakeOutcome, AgentError> {
        let trust_root = match trust_root.filter(|b| !b.iter().all(u8::is_ascii_whitespace)) {
            None => IntakeItem::Absent,
            Some(bytes) => {
                let item = self.intake_trust_root(bytes, now);
                self.settle("trust_root", item, now)?
            }
        };
        let bundle = match bundle.filter(|b| !b.iter().all(u8::is_ascii_whitespace)) {
            None => IntakeItem::Absent,
            Some(bytes) => {
                let item = self.intake_bundle(bytes, now);
                self.settle("policy_bundle", item, now)?
            }
        };
        Ok(IntakeOutcome { trust_root, bundle })
    }

    fn intake_trust_root(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<IntakeItem, AgentError> {
        let Some(current) = self.trust.as_ref() else {
            let version = self.provision_trust_root(bytes, now)?;
            return Ok(IntakeItem::Installed { version });
        };
        let installed = current.version();
        if current.envelope_bytes() == bytes {
            return Ok(IntakeItem::AlreadyInstalled { version: installed });
        }
        let offered = TrustRoot::claimed_version(bytes)?;
        let rotation = if offered > installed {
            match self.rotate_trust_root(bytes, now) {
                Ok(version) => return Ok(IntakeItem::Installed { version }),
                Err(AgentError::Bundle(e)) => Some(e),
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        // Step 5: a rotation of an earlier root this device trusted, other than the one it
        // then installed at that version: the chain forked there.
        let history = self.root_history()?;
        // Parsed once, each with its place in the history.
        let roots: Vec<(usize, TrustRoot)> = history
            .iter()
            .enumerate()
            .filter_map(|(i, b)| TrustRoot::from_stored(b).ok().map(|r| (i, r)))
            .collect();
        let fork = roots
            .iter()
            .enumerate()
            .find_map(|(i, (_, prev))| prev.rotate(bytes).ok().map(|next| (i, next)));
        match fork {
            Some((i, next)) => {
                let taken = |r: Option<&(usize, TrustRoot)>| {
                    r.is_some_and(|(_, t)| t.digest() == next.digest())
                };
                if taken(roots.get(i + 1)) || taken(roots.last()) {
                    return Ok(IntakeItem::Older { offered, installed });
                }
                let version = next.version();
                let prev_index = roots.get(i).map_or(i, |(h, _)| *h);
                self.replace_trust_root(next, history, prev_index, now)?;
                let reason = format!(
                    "trust root v{installed} replaced by the office's v{version} from managed configuration: the installed chain forked from it after v{}",
                    version - 1
                );
                log::error!("{reason}");
                let at = self.acting_time(now);
                self.record_agent_violation(
                    at,
                    "trust_root_replaced",
                    crate::rules::TRUST_ROOT_REPLACED,
                    reason,
                )?;
                Ok(IntakeItem::Installed { version })
            }
            None if offered < installed => Ok(IntakeItem::Older { offered, installed }),
            None => Err(AgentError::Bundle(rotation.unwrap_or(
                crate::bundle::BundleError::TrustRootVersion { installed, offered },
            ))),
        }
    }

    fn intake_bundle(&mut self, bytes: &[u8], now: Timestamp) -> Result<IntakeItem, AgentError> {
        let offered = read_unverified(bytes)?;
        // An untrusted bundle (its signers left with a rotation) is no floor: the office's
        // next bundle installs whatever version it is.
        if let Some(i) = self.installed().filter(|i| i.trusted) {
            let installed = i.header.version;
            if offered.header.version == installed && offered.digest == i.digest {
                return Ok(IntakeItem::AlreadyInstalled { version: installed });
            }
            if offered.header.version < installed {
                return Ok(IntakeItem::Older {
                    offered: offered.header.version,
                    installed,
                });
            }
        }
        let header = self.install_bundle(bytes, now)?;
        Ok(IntakeItem::Installed {
            version: header.version,
        })
    }

    /// Turns a refusal into an outcome and a tamper record; passes store failures up.
    fn settle(
        &mut self,
        what: &str,
        item: Result<IntakeItem, AgentError>,
        now: Timestamp,
    ) -> Result<IntakeItem, AgentError> {
        let reason = match item {
            Ok(item) => return Ok(item),
            Err(AgentError::Bundle(e)) => e.to_string(),
            Err(AgentError::NoTrustRoot) => AgentError::NoTrustRoot.to_string(),
            Err(e) => return Err(e),
        };
        let recorded = if self.engine().is_some() {
            self.report_tamper(&format!("managed_config_refused:{what}: {reason}"), now)?;
            true
        } else {
            false
        };
        Ok(IntakeItem::Refused { reason, recorded })
    }
}
