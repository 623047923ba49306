//! The office's X25519 upload key: devices seal violation batches to its public half (named in
//! the signed trust root); only the server holding the secret half opens them.

use std::path::Path;

use baomi_core::sync::seal::{SealError, SealedBox, ephemeral_of, open_with_shared};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

const KIND: &str = "baomi-x25519-upload-key";
/// The file type of an SM2 upload key (`upload-key new --suite sm`).
pub const SM2_KIND: &str = "baomi-sm2-upload-key";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    secret: String,
    public_key: String,
}

/// The secret half. Zeroised on drop (x25519-dalek's `zeroize` feature); never printed.
pub struct UploadKey {
    secret: StaticSecret,
    public: PublicKey,
}

impl std::fmt::Debug for UploadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UploadKey({})", self.public_base64())
    }
}

impl UploadKey {
    /// A fresh key from the OS random source.
    pub fn generate() -> Result<Self, String> {
        use ring::rand::{SecureRandom, SystemRandom};
        let mut raw = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(raw.as_mut_slice())
            .map_err(|_| "random source failed".to_owned())?;
        let secret = StaticSecret::from(*raw);
        let public = PublicKey::from(&secret);
        Ok(Self { secret, public })
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        );
        let f: KeyFile = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not an upload key file: {e}", path.display()))?;
        if f.kind == SM2_KIND {
            return Err(format!(
                "{}: an SM2 upload key (sm suite): opening SM2-sealed batches is not built yet, so phones of an sm trust root cannot sync (docs/shangmi.md)",
                path.display()
            ));
        }
        if f.kind != KIND {
            return Err(format!("{}: not an upload key file", path.display()));
        }
        let raw: Zeroizing<Vec<u8>> = Zeroizing::new(
            B64.decode(f.secret.as_bytes())
                .map_err(|_| format!("{}: secret is not base64", path.display()))?,
        );
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| format!("{}: secret must be 32 bytes", path.display()))?;
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Ok(Self { secret, public })
    }

    /// The key file text (holds the secret: write it with mode 0600 and drop it).
    pub fn to_file(&self) -> Zeroizing<String> {
        let f = KeyFile {
            kind: KIND.into(),
            secret: B64.encode(self.secret.to_bytes()),
            public_key: self.public_base64(),
        };
        Zeroizing::new(serde_json::to_string_pretty(&f).unwrap_or_default())
    }

    /// Base64 public half, for `baomi trust new --upload-key`.
    pub fn public_base64(&self) -> String {
        B64.encode(self.public.as_bytes())
    }

    /// Opens a batch.
    pub fn open(&self, aad: &[u8], sealed: &SealedBox) -> Result<Vec<u8>, SealError> {
        let eph = PublicKey::from(ephemeral_of(sealed)?);
        let shared = self.secret.diffie_hellman(&eph);
        if !shared.was_contributory() {
            return Err(SealError("ephemeral key is a low-order point"));
        }
        open_with_shared(shared.as_bytes(), self.public.as_bytes(), aad, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baomi_core::sync::seal::{batch_aad, seal};

    #[test]
    fn a_batch_sealed_on_the_device_opens_only_with_the_office_key_and_its_binding() {
        let k = UploadKey::generate().unwrap();
        let aad = batch_aad("dev-1", 1, 3);
        let b = seal(k.public.as_bytes(), &aad, b"[records]").unwrap();
        assert_eq!(k.open(&aad, &b).unwrap(), b"[records]");
        assert!(k.open(&batch_aad("dev-2", 1, 3), &b).is_err());
        assert!(k.open(&batch_aad("dev-1", 1, 4), &b).is_err());
        assert!(UploadKey::generate().unwrap().open(&aad, &b).is_err());
        let reloaded = {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("k");
            std::fs::write(&p, k.to_file().as_bytes()).unwrap();
            UploadKey::load(&p).unwrap()
        };
        assert_eq!(reloaded.open(&aad, &b).unwrap(), b"[records]");
    }
}
