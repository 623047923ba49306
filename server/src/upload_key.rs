//! The office's upload key: devices seal violation batches and session keys to its public
//! half (named in the signed trust root); only the server holding the secret half opens them.
//! X25519 under the `intl` suite, SM2 under `sm` (issue 24, [`baomi_core::sync::seal`]).

use std::path::Path;

use baomi_core::suite::Suite;
use baomi_core::suite::sm::Sm2SecretKey;
use baomi_core::sync::seal::{
    Recipient, SealError, SealedBox, ephemeral_of, open_sm2, open_with_shared,
};
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

enum Secret {
    /// Zeroised on drop (x25519-dalek's `zeroize` feature).
    X25519 {
        secret: StaticSecret,
        public: PublicKey,
    },
    /// Zeroised on drop (the `sm2` crate's secret key).
    Sm2(Box<Sm2SecretKey>),
}

/// The secret half; never printed. It may hold the office's previous key as well, to open
/// what phones still seal to it while a rotation reaches them (a suite migration, issue 24,
/// or a new upload key).
pub struct UploadKey {
    secret: Secret,
    previous: Option<Box<UploadKey>>,
}

impl std::fmt::Debug for UploadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UploadKey({} {})", self.suite(), self.public_base64())
    }
}

impl UploadKey {
    /// A fresh X25519 key (`intl`) from the OS random source.
    pub fn generate() -> Result<Self, String> {
        Self::generate_for(Suite::Intl)
    }

    /// A fresh key of `suite` from the OS random source.
    pub fn generate_for(suite: Suite) -> Result<Self, String> {
        if suite == Suite::Sm {
            return Ok(Self {
                secret: Secret::Sm2(Box::new(Sm2SecretKey::generate())),
                previous: None,
            });
        }
        use ring::rand::{SecureRandom, SystemRandom};
        let mut raw = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(raw.as_mut_slice())
            .map_err(|_| "random source failed".to_owned())?;
        let secret = StaticSecret::from(*raw);
        let public = PublicKey::from(&secret);
        Ok(Self {
            secret: Secret::X25519 { secret, public },
            previous: None,
        })
    }

    /// Reads a key file (either suite).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        );
        let f: KeyFile = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not an upload key file: {e}", path.display()))?;
        let KeyFile { kind, secret, .. } = f;
        let secret = Zeroizing::new(secret);
        let raw: Zeroizing<Vec<u8>> = Zeroizing::new(
            B64.decode(secret.as_bytes())
                .map_err(|_| format!("{}: secret is not base64", path.display()))?,
        );
        if kind == SM2_KIND {
            let k =
                Sm2SecretKey::from_bytes(&raw).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(Self {
                secret: Secret::Sm2(Box::new(k)),
                previous: None,
            });
        }
        if kind != KIND {
            return Err(format!("{}: not an upload key file", path.display()));
        }
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| format!("{}: secret must be 32 bytes", path.display()))?;
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Ok(Self {
            secret: Secret::X25519 { secret, public },
            previous: None,
        })
    }

    /// Keeps `previous` to open what phones still seal to it (`serve --previous-upload-key`):
    /// phones move to the new key when the rotated trust root naming it reaches them, which
    /// their first sync after the rotation downloads under the old one.
    pub fn with_previous(mut self, previous: UploadKey) -> Self {
        self.previous = Some(Box::new(previous));
        self
    }

    /// The suite the key belongs to: the suite of the trust root that names it.
    pub fn suite(&self) -> Suite {
        match self.secret {
            Secret::X25519 { .. } => Suite::Intl,
            Secret::Sm2(_) => Suite::Sm,
        }
    }

    /// The key file text (holds the secret: write it with mode 0600 and drop it).
    pub fn to_file(&self) -> Zeroizing<String> {
        let (kind, secret) = match &self.secret {
            Secret::X25519 { secret, .. } => (KIND, Zeroizing::new(B64.encode(secret.to_bytes()))),
            Secret::Sm2(k) => (
                SM2_KIND,
                Zeroizing::new(B64.encode(k.to_bytes().as_slice())),
            ),
        };
        let f = KeyFile {
            kind: kind.into(),
            secret: secret.to_string(),
            public_key: self.public_base64(),
        };
        let text = Zeroizing::new(serde_json::to_string_pretty(&f).unwrap_or_default());
        drop(Zeroizing::new(f.secret));
        text
    }

    /// Base64 public half (X25519: 32 bytes; SM2: `04 || x || y`), for `baomi trust new
    /// --upload-key`.
    pub fn public_base64(&self) -> String {
        match &self.secret {
            Secret::X25519 { public, .. } => B64.encode(public.as_bytes()),
            Secret::Sm2(k) => B64.encode(k.public().to_bytes()),
        }
    }

    /// Whether this key, or the previous one it keeps, is the one whose public half is
    /// `public` (base64, as a trust root names it).
    pub fn holds(&self, public: &str) -> bool {
        self.public_base64() == public.trim()
            || self.previous.as_deref().is_some_and(|p| p.holds(public))
    }

    /// The public half as a phone seals to it (what the trust root naming it decodes to).
    pub fn recipient(&self) -> Recipient {
        match &self.secret {
            Secret::X25519 { public, .. } => Recipient::X25519(*public.as_bytes()),
            Secret::Sm2(k) => Recipient::Sm2(k.public()),
        }
    }

    /// Opens a batch or a session key: with this key or the previous one, whichever the box
    /// was sealed to. Returns the suite it was sealed under (its proofs follow it).
    pub fn open(&self, aad: &[u8], sealed: &SealedBox) -> Result<(Suite, Vec<u8>), SealError> {
        // An X25519 box's ephemeral is 32 bytes; an SM2 one carries the whole C1 || C3 || C2.
        let shape = if ephemeral_of(sealed).is_ok() {
            Suite::Intl
        } else {
            Suite::Sm
        };
        let mut last = SealError("the box is sealed to an upload key of another suite");
        for key in std::iter::once(self).chain(self.previous.as_deref()) {
            if key.suite() != shape {
                continue;
            }
            match key.open_one(aad, sealed) {
                Ok(plain) => return Ok((shape, plain)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn open_one(&self, aad: &[u8], sealed: &SealedBox) -> Result<Vec<u8>, SealError> {
        match &self.secret {
            Secret::X25519 { secret, public } => {
                let eph = PublicKey::from(ephemeral_of(sealed)?);
                let shared = secret.diffie_hellman(&eph);
                if !shared.was_contributory() {
                    return Err(SealError("ephemeral key is a low-order point"));
                }
                open_with_shared(shared.as_bytes(), public.as_bytes(), aad, sealed)
            }
            Secret::Sm2(k) => open_sm2(k, aad, sealed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baomi_core::sync::seal::{batch_aad, seal};

    #[test]
    fn a_batch_sealed_on_the_device_opens_only_with_the_office_key_and_its_binding() {
        for suite in [Suite::Intl, Suite::Sm] {
            opens_only_with_the_office_key_and_its_binding(suite);
        }
    }

    #[test]
    fn a_box_of_one_suite_does_not_open_under_a_key_of_the_other() {
        let (intl, sm) = (
            UploadKey::generate_for(Suite::Intl).unwrap(),
            UploadKey::generate_for(Suite::Sm).unwrap(),
        );
        let aad = batch_aad("dev-1", 1, 3);
        let b = seal(&sm.recipient(), &aad, b"x").unwrap();
        assert!(intl.open(&aad, &b).is_err());
        let b = seal(&intl.recipient(), &aad, b"x").unwrap();
        assert!(sm.open(&aad, &b).is_err());
    }

    #[test]
    fn during_a_migration_the_server_opens_boxes_of_the_new_key_and_the_previous_one() {
        let old = UploadKey::generate_for(Suite::Intl).unwrap();
        let new = UploadKey::generate_for(Suite::Sm).unwrap();
        let aad = batch_aad("dev-1", 1, 3);
        let to_old = seal(&old.recipient(), &aad, b"old").unwrap();
        let to_new = seal(&new.recipient(), &aad, b"new").unwrap();
        let other = UploadKey::generate_for(Suite::Intl).unwrap();
        let to_other = seal(&other.recipient(), &aad, b"other").unwrap();
        let both = new.with_previous(old);
        assert_eq!(both.suite(), Suite::Sm);
        assert_eq!(
            both.open(&aad, &to_old).unwrap(),
            (Suite::Intl, b"old".to_vec())
        );
        assert_eq!(
            both.open(&aad, &to_new).unwrap(),
            (Suite::Sm, b"new".to_vec())
        );
        assert!(both.open(&aad, &to_other).is_err());
        // A rotation within one suite: both keys are tried.
        let a = UploadKey::generate_for(Suite::Intl).unwrap();
        let b = UploadKey::generate_for(Suite::Intl).unwrap();
        let to_a = seal(&a.recipient(), &aad, b"a").unwrap();
        assert_eq!(b.with_previous(a).open(&aad, &to_a).unwrap().1, b"a");
    }

    fn opens_only_with_the_office_key_and_its_binding(suite: Suite) {
        let k = UploadKey::generate_for(suite).unwrap();
        let aad = batch_aad("dev-1", 1, 3);
        let b = seal(&k.recipient(), &aad, b"[records]").unwrap();
        assert_eq!(k.open(&aad, &b).unwrap(), (suite, b"[records]".to_vec()));
        assert!(k.open(&batch_aad("dev-2", 1, 3), &b).is_err());
        assert!(k.open(&batch_aad("dev-1", 1, 4), &b).is_err());
        assert!(
            UploadKey::generate_for(suite)
                .unwrap()
                .open(&aad, &b)
                .is_err()
        );
        // A box whose wrapped key and ciphertext come from two batches opens under neither.
        let other = seal(&k.recipient(), &aad, b"[other!!]").unwrap();
        let spliced = SealedBox {
            ephemeral: other.ephemeral.clone(),
            ciphertext: b.ciphertext.clone(),
        };
        assert!(k.open(&aad, &spliced).is_err());
        if suite == Suite::Sm {
            // A wrapped key longer than an SM2 ciphertext of a 16-byte key: refused before
            // any SM2 or SM3 work.
            let mut long = b.clone();
            let mut raw = B64.decode(&long.ephemeral).unwrap();
            raw.extend_from_slice(&[0u8; 1 << 16]);
            long.ephemeral = B64.encode(&raw);
            assert!(k.open(&aad, &long).unwrap_err().0.contains("longer"));
        }
        let reloaded = {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("k");
            std::fs::write(&p, k.to_file().as_bytes()).unwrap();
            UploadKey::load(&p).unwrap()
        };
        assert_eq!(reloaded.open(&aad, &b).unwrap().1, b"[records]");
    }
}
