//! Key hierarchy. A random 256-bit data key is generated on first open and stored only wrapped
//! by a [`KeyProvider`]: the platform's keystore (Android Keystore AES-GCM key, iOS Keychain /
//! Secure Enclave). HKDF-SHA256 derives from it a sealing key (AES-256-GCM) and a MAC key
//! (HMAC-SHA256), so one secret never serves two algorithms. Under the `sm` suite (issue 24)
//! HKDF over HMAC-SM3 derives an SM4-GCM key (RFC 8998) and an HMAC-SM3 key instead.
//!
//! Rotating the provider's key re-wraps the data key; records are not re-encrypted.

use std::path::{Path, PathBuf};

use ring::aead::{self, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// What only the platform has: a key that wraps the store's data key.
pub trait KeyProvider: Send + Sync {
    /// Stable id of the wrapping key (e.g. `android-keystore:baomi-kek-1`), recorded next to
    /// the wrapped key.
    fn key_id(&self) -> String;
    /// Wraps a data key.
    fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, KeyProviderError>;
    /// Unwraps a data key wrapped by [`KeyProvider::wrap`].
    fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>, KeyProviderError>;
}

/// A key provider's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProviderError {
    /// The keystore cannot be used now (locked, missing hardware, I/O).
    #[error("key provider unavailable: {0}")]
    Unavailable(String),
    /// The wrapped key does not open under this provider's key.
    #[error("wrapped key rejected")]
    Rejected,
}

/// Keys derived from the data key.
pub(crate) struct StoreKeys {
    pub data_key: Zeroizing<[u8; 32]>,
    pub suite: Suite,
    pub seal: Aead,
    pub mac: Mac,
}

use crate::suite::Suite;
use crate::suite::sm::Sm4Gcm;

/// The store's AEAD: AES-256-GCM (`intl`) or SM4-GCM (`sm`); both a 96-bit nonce and a
/// 128-bit tag, so records, chain links and state rows have one layout under either suite.
pub(crate) enum Aead {
    Aes(Box<LessSafeKey>),
    Sm4(Box<Sm4Gcm>),
}

/// The store's MAC: HMAC-SHA256 (`intl`, ring's precomputed key) or HMAC-SM3 (`sm`).
pub(crate) enum Mac {
    Sha256(hmac::Key),
    Sm3(Zeroizing<[u8; 32]>),
}

impl Mac {
    /// The tag of `msg` (32 bytes under either suite; all zero, which verifies nowhere, if
    /// HMAC-SM3 could not be keyed, which cannot happen for a 32-byte key).
    pub fn sign(&self, msg: &[u8]) -> [u8; 32] {
        match self {
            Self::Sha256(k) => {
                let mut out = [0u8; 32];
                out.copy_from_slice(hmac::sign(k, msg).as_ref());
                out
            }
            Self::Sm3(k) => crate::suite::sm::hmac_sm3(k.as_slice(), msg).unwrap_or([0; 32]),
        }
    }

    /// Constant-time check of [`Mac::sign`].
    pub fn verify(&self, msg: &[u8], tag: &[u8]) -> bool {
        match self {
            Self::Sha256(k) => hmac::verify(k, msg, tag).is_ok(),
            Self::Sm3(k) => crate::suite::sm::hmac_sm3_verify(k.as_slice(), msg, tag),
        }
    }
}

impl StoreKeys {
    /// HKDF of the suite (HKDF-SHA256 or HKDF-SM3), salt `baomi-store-v1`, over the data key:
    /// the sealing key (`seal`: 32 bytes for AES-256-GCM, 16 for SM4-GCM) and the MAC key
    /// (`mac`: 32 bytes).
    pub fn derive(suite: Suite, data_key: Zeroizing<[u8; 32]>) -> Option<Self> {
        const SALT: &[u8] = b"baomi-store-v1";
        let mut seal_bytes = Zeroizing::new([0u8; 32]);
        let seal_len = match suite {
            Suite::Intl => 32,
            Suite::Sm => 16,
        };
        let seal_bytes = seal_bytes.get_mut(..seal_len)?;
        suite.hkdf(SALT, data_key.as_slice(), b"seal", seal_bytes)?;
        let mut mac_bytes = Zeroizing::new([0u8; 32]);
        suite.hkdf(SALT, data_key.as_slice(), b"mac", mac_bytes.as_mut_slice())?;
        let (seal, mac) = match suite {
            Suite::Intl => (
                Aead::Aes(Box::new(LessSafeKey::new(
                    UnboundKey::new(&AES_256_GCM, seal_bytes).ok()?,
                ))),
                Mac::Sha256(hmac::Key::new(hmac::HMAC_SHA256, mac_bytes.as_slice())),
            ),
            Suite::Sm => (
                Aead::Sm4(Box::new(Sm4Gcm::new(seal_bytes).ok()?)),
                Mac::Sm3(mac_bytes),
            ),
        };
        Some(Self {
            data_key,
            suite,
            seal,
            mac,
        })
    }

    pub fn generate(suite: Suite) -> Option<Self> {
        let mut k = Zeroizing::new([0u8; 32]);
        SystemRandom::new().fill(k.as_mut_slice()).ok()?;
        Self::derive(suite, k)
    }
}

/// Host-only key provider: the wrapping key is a file next to nothing that protects it.
///
/// **Not for phones.** On a lost or rooted phone a file key protects nothing; phones use the
/// platform keystore. This provider exists for the CLI, the reference server's tests and CI.
pub struct HostFileKeyProvider {
    path: PathBuf,
    key: LessSafeKey,
    id: String,
}

const HOST_WRAP_AAD: &[u8] = b"baomi-host-wrap-v1";

impl HostFileKeyProvider {
    /// Opens the key file at `path`, creating it (mode 0600) with a random key if absent.
    pub fn open_or_create(path: &Path) -> Result<Self, KeyProviderError> {
        let unavailable =
            |e: std::io::Error| KeyProviderError::Unavailable(format!("{}: {e}", path.display()));
        let bytes: Zeroizing<Vec<u8>> = match std::fs::read(path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = Zeroizing::new(vec![0u8; 32]);
                SystemRandom::new()
                    .fill(k.as_mut_slice())
                    .map_err(|_| KeyProviderError::Unavailable("random source failed".into()))?;
                write_secret(path, &k).map_err(unavailable)?;
                k
            }
            Err(e) => return Err(unavailable(e)),
        };
        if bytes.len() != 32 {
            return Err(KeyProviderError::Unavailable(format!(
                "{}: not a 32-byte key",
                path.display()
            )));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| KeyProviderError::Unavailable("bad key".into()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let id = format!(
            "host-file:{}",
            crate::bundle::keys::hex(digest.as_ref().get(..8).unwrap_or_default())
        );
        Ok(Self {
            path: path.to_owned(),
            key: LessSafeKey::new(key),
            id,
        })
    }

    /// Where the key lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl KeyProvider for HostFileKeyProvider {
    fn key_id(&self) -> String {
        self.id.clone()
    }

    fn wrap(&self, data_key: &[u8]) -> Result<Vec<u8>, KeyProviderError> {
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyProviderError::Unavailable("random source failed".into()))?;
        let mut out = data_key.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(HOST_WRAP_AAD),
                &mut out,
            )
            .map_err(|_| KeyProviderError::Unavailable("seal failed".into()))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&out);
        Ok(wrapped)
    }

    fn unwrap(&self, wrapped: &[u8]) -> Result<Vec<u8>, KeyProviderError> {
        let (nonce, sealed) = wrapped
            .split_at_checked(12)
            .ok_or(KeyProviderError::Rejected)?;
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyProviderError::Rejected)?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(HOST_WRAP_AAD), &mut buf)
            .map_err(|_| KeyProviderError::Rejected)?;
        Ok(plain.to_vec())
    }
}

/// Length of an AES-GCM tag, which is also a chain link.
pub(crate) const TAG_LEN: usize = 16;

/// Opens a sealed blob (ciphertext || tag).
pub(crate) fn open(
    key: &Aead,
    nonce: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(sealed.to_vec());
    let n = match key {
        Aead::Aes(k) => {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            k.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?.len()
        }
        Aead::Sm4(k) => k
            .open_in_place(nonce.try_into().ok()?, aad, &mut buf)
            .ok()?
            .len(),
    };
    buf.truncate(n);
    Some(buf)
}

/// Seals `buf` in place (appends the tag).
pub(crate) fn seal(key: &Aead, nonce: [u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Option<()> {
    match key {
        Aead::Aes(k) => k
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
            .ok(),
        Aead::Sm4(k) => k.seal_in_place_append_tag(&nonce, aad, buf).ok(),
    }
}

pub(crate) use aead::NONCE_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_provider_round_trips_and_rejects_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let a = HostFileKeyProvider::open_or_create(&dir.path().join("a.kek")).unwrap();
        let b = HostFileKeyProvider::open_or_create(&dir.path().join("b.kek")).unwrap();
        let w = a.wrap(&[7u8; 32]).unwrap();
        assert_eq!(a.unwrap(&w).unwrap(), vec![7u8; 32]);
        assert_eq!(b.unwrap(&w), Err(KeyProviderError::Rejected));
        assert_eq!(a.unwrap(&w[..10]), Err(KeyProviderError::Rejected));
        // Reopening reads the same key.
        let a2 = HostFileKeyProvider::open_or_create(&dir.path().join("a.kek")).unwrap();
        assert_eq!(a2.key_id(), a.key_id());
        assert_eq!(a2.unwrap(&w).unwrap(), vec![7u8; 32]);
    }
}
