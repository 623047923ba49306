//! Configuration profiles and MDM commands generated from a posture: a Restrictions payload
//! (`com.apple.applicationaccess`) with camera and screen capture off and the banned bundle ids
//! (supervised devices), under one stable identifier so a `RemoveProfile` always matches the
//! profile installed, whatever version of it.

use baomi_core::bundle::keys::hex;
use baomi_core::posture::Posture;
use plist::{Dictionary, Value};
use ring::digest;

/// The profile's `PayloadIdentifier`: stable, so a re-install replaces it and a removal finds it.
pub const PROFILE_ID: &str = "cn.baomi.posture.restrictions";

/// The device state a posture asks the MDM for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Nothing restricted: no Baomi profile on the device.
    Open,
    /// The Restrictions profile with these bytes.
    Restricted(Vec<u8>),
}

impl Target {
    /// From the core's posture.
    pub fn of(p: &Posture) -> Result<Self, plist::Error> {
        if !p.camera_disabled && !p.screen_capture_disabled && p.blocked_packages.is_empty() {
            return Ok(Target::Open);
        }
        profile(p).map(Target::Restricted)
    }

    /// A short stable name of the state, to compare with what was last asked for.
    pub fn digest(&self) -> String {
        match self {
            Target::Open => "open".into(),
            Target::Restricted(bytes) => hex(digest::digest(&digest::SHA256, bytes).as_ref()),
        }
    }
}

/// Deterministic UUID-formatted id from a name (SHA-256 based; stable across runs).
fn stable_uuid(name: &str) -> String {
    let d = digest::digest(&digest::SHA256, name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    uuid_text(&b)
}

/// 16 bytes as an upper-case UUID string, as MDMs write them.
pub fn uuid_text(b: &[u8; 16]) -> String {
    let h = hex(b).to_uppercase();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn profile(p: &Posture) -> Result<Vec<u8>, plist::Error> {
    let mut restrictions = Dictionary::new();
    restrictions.insert("PayloadType".into(), "com.apple.applicationaccess".into());
    restrictions.insert("PayloadVersion".into(), 1.into());
    let inner_id = format!("{PROFILE_ID}.applicationaccess");
    restrictions.insert("PayloadUUID".into(), stable_uuid(&inner_id).into());
    restrictions.insert("PayloadIdentifier".into(), inner_id.into());
    restrictions.insert("allowCamera".into(), Value::Boolean(!p.camera_disabled));
    restrictions.insert(
        "allowScreenShot".into(),
        Value::Boolean(!p.screen_capture_disabled),
    );
    if !p.blocked_packages.is_empty() {
        // Supervised devices only (iOS 15+); ignored elsewhere, reported by the agent.
        restrictions.insert(
            "blockedAppBundleIDs".into(),
            Value::Array(
                p.blocked_packages
                    .iter()
                    .map(|b| Value::String(b.to_string()))
                    .collect(),
            ),
        );
    }
    let mut top = Dictionary::new();
    top.insert("PayloadType".into(), "Configuration".into());
    top.insert("PayloadVersion".into(), 1.into());
    top.insert("PayloadIdentifier".into(), PROFILE_ID.into());
    top.insert("PayloadUUID".into(), stable_uuid(PROFILE_ID).into());
    top.insert(
        "PayloadDisplayName".into(),
        "Baomi: classified-document measures".into(),
    );
    top.insert(
        "PayloadDescription".into(),
        "Camera and screen capture off while a classified document is in your custody or you are in a secure zone, set by the security office.".into(),
    );
    top.insert("PayloadOrganization".into(), "Security office".into());
    top.insert(
        "PayloadContent".into(),
        Value::Array(vec![Value::Dictionary(restrictions)]),
    );
    let mut out = Vec::new();
    plist::to_writer_xml(&mut out, &Value::Dictionary(top))?;
    Ok(out)
}

/// An `InstallProfile` (target restricted) or `RemoveProfile` (open) command plist.
pub fn command(uuid: &str, target: &Target) -> Result<Vec<u8>, plist::Error> {
    let mut cmd = Dictionary::new();
    match target {
        Target::Restricted(profile) => {
            cmd.insert("RequestType".into(), "InstallProfile".into());
            cmd.insert("Payload".into(), Value::Data(profile.clone()));
        }
        Target::Open => {
            cmd.insert("RequestType".into(), "RemoveProfile".into());
            cmd.insert("Identifier".into(), PROFILE_ID.into());
        }
    }
    let mut top = Dictionary::new();
    top.insert("CommandUUID".into(), uuid.into());
    top.insert("Command".into(), Value::Dictionary(cmd));
    let mut out = Vec::new();
    plist::to_writer_xml(&mut out, &Value::Dictionary(top))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn posture(camera: bool, apps: &[&str]) -> Posture {
        Posture {
            camera_disabled: camera,
            screen_capture_disabled: camera,
            blocked_packages: apps.iter().map(|a| Arc::from(*a)).collect(),
        }
    }

    #[test]
    fn a_restrictive_posture_is_a_valid_restrictions_profile_with_a_stable_identifier() {
        let Target::Restricted(bytes) = Target::of(&posture(true, &["com.tencent.xin"])).unwrap()
        else {
            panic!("restricted")
        };
        let v: Value = plist::from_bytes(&bytes).unwrap();
        let top = v.as_dictionary().unwrap();
        assert_eq!(top["PayloadType"].as_string(), Some("Configuration"));
        assert_eq!(top["PayloadIdentifier"].as_string(), Some(PROFILE_ID));
        let r = top["PayloadContent"].as_array().unwrap()[0]
            .as_dictionary()
            .unwrap();
        assert_eq!(r["allowCamera"].as_boolean(), Some(false));
        assert_eq!(r["allowScreenShot"].as_boolean(), Some(false));
        assert_eq!(
            r["blockedAppBundleIDs"].as_array().unwrap()[0].as_string(),
            Some("com.tencent.xin")
        );
        // Same posture, same bytes (so the digest says "already asked for").
        assert_eq!(
            Target::of(&posture(true, &["com.tencent.xin"]))
                .unwrap()
                .digest(),
            Target::Restricted(bytes).digest()
        );
        assert_eq!(Target::of(&posture(false, &[])).unwrap(), Target::Open);
    }

    #[test]
    fn commands_carry_the_profile_as_data_and_removal_names_the_same_identifier() {
        let t = Target::of(&posture(true, &[])).unwrap();
        let install: Value = plist::from_bytes(&command("U-1", &t).unwrap()).unwrap();
        let c = install.as_dictionary().unwrap()["Command"]
            .as_dictionary()
            .unwrap();
        assert_eq!(c["RequestType"].as_string(), Some("InstallProfile"));
        let Target::Restricted(p) = &t else { panic!() };
        assert_eq!(c["Payload"].as_data(), Some(p.as_slice()));
        let remove: Value = plist::from_bytes(&command("U-2", &Target::Open).unwrap()).unwrap();
        let c = remove.as_dictionary().unwrap()["Command"]
            .as_dictionary()
            .unwrap();
        assert_eq!(c["RequestType"].as_string(), Some("RemoveProfile"));
        assert_eq!(c["Identifier"].as_string(), Some(PROFILE_ID));
    }
}
