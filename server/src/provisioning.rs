//! The Android provisioning payload (android/README.md, "provisioning a phone"): what the
//! console's enrolment page shows as a QR code for a factory-reset phone's setup wizard (tap
//! the welcome screen six times). The admin extras carry the office's trust root (out of band,
//! as the phone needs it), the server's URL and a fresh one-time enrolment token bound to the
//! holder; the rest names the device-policy controller and where its APK comes from.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use serde_json::json;

/// The DPC's admin receiver as the reference app names it.
pub const DEFAULT_COMPONENT: &str =
    "cn.gov.office.baomi/cn.baomi.agent.platform.BaomiAdminReceiver";

/// What the payload needs beyond the token and the trust root (`serve` options
/// `--provisioning-*`).
#[derive(Debug, Clone)]
pub struct Provisioning {
    /// The URL phones reach the server at (`https://`).
    pub server_url: Option<String>,
    /// `package/receiver` of the device-policy controller.
    pub component: String,
    /// Where the setup wizard downloads the DPC's APK.
    pub apk_url: Option<String>,
    /// Base64url SHA-256 of the APK's signing certificate.
    pub apk_checksum: Option<String>,
}

impl Default for Provisioning {
    fn default() -> Self {
        Self {
            server_url: None,
            component: DEFAULT_COMPONENT.into(),
            apk_url: None,
            apk_checksum: None,
        }
    }
}

impl Provisioning {
    /// The options still to set before a phone can be provisioned from the payload.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            (self.server_url.is_none(), "--provisioning-server-url"),
            (self.apk_url.is_none(), "--provisioning-apk-url"),
            (self.apk_checksum.is_none(), "--provisioning-apk-checksum"),
        ]
        .into_iter()
        .filter_map(|(missing, flag)| missing.then_some(flag))
        .collect()
    }

    /// The payload for one phone: `trust_root` is the trust root's envelope as published
    /// (re-written compact: its signatures cover the payload, not the envelope's spacing).
    pub fn payload(&self, trust_root: &str, token: &str) -> serde_json::Value {
        let root = serde_json::from_str::<serde_json::Value>(trust_root)
            .map_or_else(|_| trust_root.to_owned(), |v| v.to_string());
        json!({
            "android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME": self.component,
            "android.app.extra.PROVISIONING_DEVICE_ADMIN_PACKAGE_DOWNLOAD_LOCATION":
                self.apk_url.clone().unwrap_or_default(),
            "android.app.extra.PROVISIONING_DEVICE_ADMIN_SIGNATURE_CHECKSUM":
                self.apk_checksum.clone().unwrap_or_default(),
            "android.app.extra.PROVISIONING_SKIP_ENCRYPTION": false,
            "android.app.extra.PROVISIONING_ADMIN_EXTRAS_BUNDLE": {
                "cn.baomi.trust_root": root,
                "cn.baomi.server_url": self.server_url.clone().unwrap_or_default(),
                "cn.baomi.enrollment_token": token,
            }
        })
    }
}

/// `text` as a QR code in SVG (low error correction: the trust root makes the payload long,
/// and a screen is not a worn label). An error when it does not fit a QR code's 2,953 bytes.
pub fn qr_svg(text: &str) -> Result<String, String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).map_err(|e| {
        format!(
            "the provisioning payload ({} bytes) does not fit a QR code: {e}",
            text.len()
        )
    })?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(360, 360)
        .quiet_zone(true)
        .build())
}

/// The QR code's modules (`true` dark), row by row, with its width: for a reader in tests.
pub fn qr_modules(text: &str) -> Result<(usize, Vec<bool>), String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L)
        .map_err(|e| e.to_string())?;
    let width = code.width();
    let modules = code
        .to_colors()
        .into_iter()
        .map(|c| c == qrcode::Color::Dark)
        .collect();
    Ok((width, modules))
}
