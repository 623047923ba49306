//! The device state the core wants. The platform compares it with what it applied last and
//! applies only the difference ([`PostureDiff`]); the core never assumes it was applied.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Full desired device state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posture {
    /// Camera off (Android `setCameraDisabled`, iOS `allowCamera = false` via the MDM).
    pub camera_disabled: bool,
    /// Screenshots and screen recording off.
    pub screen_capture_disabled: bool,
    /// Apps to suspend / hide, sorted. Shared with the compiled policy's package table, so a
    /// posture change does not allocate a string per blocked app.
    pub blocked_packages: Vec<Arc<str>>,
}

/// What to change to get from one posture to another.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PostureDiff {
    /// New camera setting, if it changes.
    pub camera_disabled: Option<bool>,
    /// New screen-capture setting, if it changes.
    pub screen_capture_disabled: Option<bool>,
    /// Packages to block now, sorted.
    pub block: Vec<String>,
    /// Packages to unblock now, sorted.
    pub unblock: Vec<String>,
}

impl Posture {
    /// The most permissive posture: what a device has before any policy.
    pub fn open() -> Self {
        Self::default()
    }

    /// The changes that turn `self` (applied) into `target` (desired).
    pub fn diff_to(&self, target: &Posture) -> PostureDiff {
        let changed = |a: bool, b: bool| (a != b).then_some(b);
        // Both lists are sorted: a merge walk keeps this linear.
        let (mut block, mut unblock) = (Vec::new(), Vec::new());
        let (mut old, mut new) = (
            self.blocked_packages.iter().peekable(),
            target.blocked_packages.iter().peekable(),
        );
        loop {
            match (old.peek(), new.peek()) {
                (Some(o), Some(n)) if o == n => {
                    old.next();
                    new.next();
                }
                (Some(o), Some(n)) if o < n => unblock.extend(old.next().map(|s| s.to_string())),
                (Some(_), Some(_)) | (None, Some(_)) => {
                    block.extend(new.next().map(|s| s.to_string()));
                }
                (Some(_), None) => unblock.extend(old.next().map(|s| s.to_string())),
                (None, None) => break,
            }
        }
        PostureDiff {
            camera_disabled: changed(self.camera_disabled, target.camera_disabled),
            screen_capture_disabled: changed(
                self.screen_capture_disabled,
                target.screen_capture_disabled,
            ),
            block,
            unblock,
        }
    }
}

impl PostureDiff {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.camera_disabled.is_none()
            && self.screen_capture_disabled.is_none()
            && self.block.is_empty()
            && self.unblock.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cam: bool, pkgs: &[&str]) -> Posture {
        Posture {
            camera_disabled: cam,
            screen_capture_disabled: false,
            blocked_packages: pkgs.iter().map(|s| Arc::from(*s)).collect(),
        }
    }

    #[test]
    fn diff_lists_only_changes() {
        let d = p(false, &["a.a", "c.c", "d.d"]).diff_to(&p(true, &["b.b", "c.c", "e.e"]));
        assert_eq!(d.camera_disabled, Some(true));
        assert_eq!(d.screen_capture_disabled, None);
        assert_eq!(d.block, vec!["b.b", "e.e"]);
        assert_eq!(d.unblock, vec!["a.a", "d.d"]);
        assert!(p(true, &["x.y"]).diff_to(&p(true, &["x.y"])).is_empty());
    }
}
