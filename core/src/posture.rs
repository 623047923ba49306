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

/// The messengers a managed phone blocks before its first policy arrives, by Android package
/// and iOS bundle id: 微信 (WeChat), 企业微信 (WeCom), QQ, 钉钉 (DingTalk), 微博 (Weibo).
pub const MESSENGERS_BEFORE_POLICY: [&str; 9] = [
    "com.alibaba.android.rimet",
    "com.laiwang.DingTalk",
    "com.sina.weibo",
    "com.tencent.mm",
    "com.tencent.mobileqq",
    "com.tencent.mqq",
    "com.tencent.wework",
    "com.tencent.ww",
    "com.tencent.xin",
];

impl Posture {
    /// The most permissive posture: a phone that is not managed (no trust root).
    pub fn open() -> Self {
        Self::default()
    }

    /// A managed phone before its first policy (trust root installed, no bundle yet): camera
    /// and screen capture off, the common messengers blocked, as Android's provisioning holds
    /// the user until the device-policy app reports compliance (issue 23).
    pub fn before_policy() -> Self {
        Self {
            camera_disabled: true,
            screen_capture_disabled: true,
            blocked_packages: MESSENGERS_BEFORE_POLICY
                .iter()
                .map(|p| Arc::from(*p))
                .collect(),
        }
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

/// How the posture is enforced on this device: who applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// The agent is the device-owner DPC of a fully managed phone: it applies everything.
    DeviceOwner,
    /// Profile owner of a company-owned work profile: camera and capture through the parent
    /// profile instance; apps on the personal side cannot be suspended one by one.
    ProfileOwnerOrgOwned,
    /// Profile owner on a personal device: reaches the work profile only; cannot enforce.
    ProfileOwnerPersonal,
    /// A plain device admin: cannot disable the camera since Android 10; cannot enforce.
    DeviceAdmin,
    /// No admin role at all: cannot enforce.
    Unmanaged,
    /// The device's MDM applies the posture (iOS, or an EMM that owns the Android device);
    /// the server's MDM connector turns it into commands.
    Mdm,
}

impl Enforcement {
    /// Whether the platform itself can carry out a posture in this mode.
    pub fn can_enforce(self) -> bool {
        matches!(
            self,
            Self::DeviceOwner | Self::ProfileOwnerOrgOwned | Self::Mdm
        )
    }
}

/// What became of one setting on the device (like Android Management API's
/// `nonComplianceDetails`, per setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingState {
    /// Applied as desired.
    Applied,
    /// A banned app that is not installed: satisfied; it is suspended the moment it appears.
    NotInstalled,
    /// The platform call failed (recorded as a tamper violation too).
    Failed,
    /// This enforcement mode cannot apply it.
    Unsupported,
    /// Left to the MDM (see [`Enforcement::Mdm`]).
    ByMdm,
}

impl SettingState {
    /// Whether the device is compliant with this setting.
    pub fn compliant(self) -> bool {
        matches!(self, Self::Applied | Self::NotInstalled)
    }
}

/// One setting of the desired posture and what the platform did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliedSetting {
    /// `camera_disabled`, `screen_capture_disabled`, `package:<name>` (a banned app) or
    /// `hardening:<restriction>`.
    pub setting: String,
    /// The desired value (true: disabled / suspended / restricted).
    pub desired: bool,
    /// What the platform did.
    pub state: SettingState,
    /// The platform's words when it failed or cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The platform's report of what it applied, sent to the server at check-in so the officer
/// sees applied against desired, setting by setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliedPosture {
    /// Who applies the posture here.
    pub enforcement: Enforcement,
    /// Setting by setting.
    pub settings: Vec<AppliedSetting>,
}

/// At most this many settings are kept from a report (a phone with hundreds of banned apps
/// installed is not a real case; an endless report is an attack on the store and the server).
pub const MAX_APPLIED_SETTINGS: usize = 256;
/// Names and details longer than this are cut.
pub const MAX_APPLIED_TEXT: usize = 200;

impl AppliedPosture {
    /// Bounded to [`MAX_APPLIED_SETTINGS`] settings of [`MAX_APPLIED_TEXT`] characters.
    pub fn bounded(mut self) -> Self {
        self.settings.truncate(MAX_APPLIED_SETTINGS);
        for s in &mut self.settings {
            cut(&mut s.setting);
            if let Some(d) = &mut s.detail {
                cut(d);
            }
        }
        self
    }

    /// Whether every setting is compliant and the mode can enforce.
    pub fn compliant(&self) -> bool {
        self.enforcement.can_enforce()
            && self
                .settings
                .iter()
                .all(|s| s.state.compliant() || s.state == SettingState::ByMdm)
    }
}

fn cut(s: &mut String) {
    if let Some((i, _)) = s.char_indices().nth(MAX_APPLIED_TEXT) {
        s.truncate(i);
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

    #[test]
    fn an_applied_report_is_bounded() {
        let long = "字".repeat(500);
        let report = AppliedPosture {
            enforcement: Enforcement::DeviceOwner,
            settings: (0..1000)
                .map(|i| AppliedSetting {
                    setting: format!("package:{i}{long}"),
                    desired: true,
                    state: SettingState::NotInstalled,
                    detail: Some(long.clone()),
                })
                .collect(),
        }
        .bounded();
        assert_eq!(report.settings.len(), MAX_APPLIED_SETTINGS);
        assert!(
            report
                .settings
                .iter()
                .all(|s| s.setting.chars().count() == MAX_APPLIED_TEXT)
        );
        assert!(report.compliant());
    }
}
