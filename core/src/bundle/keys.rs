//! Ed25519 keys of the security office and the document registry.
//!
//! A key id is the hex SHA-256 of the raw public key, computed here and never taken from a
//! file, so a trust root cannot claim a key under someone else's id.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Hex SHA-256 of a raw Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A verifying key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    keyid: KeyId,
    bytes: [u8; 32],
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.keyid)
    }
}

/// Errors reading key material (messages never contain key bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 32 bytes of base64.
    #[error("public key is not 32 bytes of base64")]
    BadPublicKey,
    /// Not a PKCS#8 Ed25519 document.
    #[error("private key is not a PKCS#8 Ed25519 key")]
    BadPrivateKey,
    /// A key file of another kind, or whose key id does not match its key.
    #[error("key file: {0}")]
    BadFile(String),
    /// The system's random source failed.
    #[error("system random source failed")]
    Random,
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Hex SHA-256 of `bytes`.
pub fn hex_digest(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

impl PublicKey {
    /// From raw 32 bytes.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, KeyError> {
        let bytes: [u8; 32] = raw.try_into().map_err(|_| KeyError::BadPublicKey)?;
        let keyid = KeyId(hex(
            ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()
        ));
        Ok(Self { keyid, bytes })
    }

    /// From base64 of the raw 32 bytes.
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let raw = B64.decode(s.trim()).map_err(|_| KeyError::BadPublicKey)?;
        Self::from_bytes(&raw)
    }

    /// Base64 of the raw key.
    pub fn to_base64(&self) -> String {
        B64.encode(self.bytes)
    }

    /// Raw key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The key's id.
    pub fn keyid(&self) -> &KeyId {
        &self.keyid
    }

    /// Whether `sig` is this key's signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.bytes)
            .verify(msg, sig)
            .is_ok()
    }

    /// The public key file form.
    pub fn to_file(&self) -> PublicKeyFile {
        PublicKeyFile {
            kind: PUBLIC_KIND.into(),
            keyid: self.keyid.clone(),
            public_key: self.to_base64(),
        }
    }

    /// Reads a public key file, checking its key id.
    pub fn from_file(f: &PublicKeyFile) -> Result<Self, KeyError> {
        if f.kind != PUBLIC_KIND {
            return Err(KeyError::BadFile(format!(
                "expected `{PUBLIC_KIND}`, found `{}`",
                f.kind
            )));
        }
        let key = Self::from_base64(&f.public_key)?;
        if key.keyid != f.keyid {
            return Err(KeyError::BadFile("key id does not match the key".into()));
        }
        Ok(key)
    }
}

/// A signing key. Its PKCS#8 bytes are zeroised on drop and never printed.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public.keyid)
    }
}

const PRIVATE_KIND: &str = "baomi-ed25519-private-key";
const PUBLIC_KIND: &str = "baomi-ed25519-public-key";

/// On-disk private key (keep it offline, mode 0600).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateKeyFile {
    /// Always `baomi-ed25519-private-key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Id of the matching public key.
    pub keyid: KeyId,
    /// Base64 PKCS#8.
    pub pkcs8: String,
}

/// On-disk public key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyFile {
    /// Always `baomi-ed25519-public-key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Key id.
    pub keyid: KeyId,
    /// Base64 raw key.
    pub public_key: String,
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self, KeyError> {
        let doc =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// From PKCS#8 bytes.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::BadPrivateKey)?;
        let public = PublicKey::from_bytes(pair.public_key().as_ref())?;
        Ok(Self {
            pair,
            pkcs8: Zeroizing::new(pkcs8.to_vec()),
            public,
        })
    }

    /// The verifying half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }

    /// The private key file form. The returned value holds the secret: write it and drop it.
    pub fn to_file(&self) -> Zeroizing<String> {
        let f = PrivateKeyFile {
            kind: PRIVATE_KIND.into(),
            keyid: self.public.keyid.clone(),
            pkcs8: B64.encode(self.pkcs8.as_slice()),
        };
        Zeroizing::new(serde_json::to_string_pretty(&f).unwrap_or_default())
    }

    /// Reads a private key file.
    pub fn from_file_json(text: &str) -> Result<Self, KeyError> {
        let f: PrivateKeyFile = serde_json::from_str(text).map_err(|e| {
            KeyError::BadFile(format!("not a private key file ({})", e.classify_name()))
        })?;
        if f.kind != PRIVATE_KIND {
            return Err(KeyError::BadFile(format!(
                "expected `{PRIVATE_KIND}`, found `{}`",
                f.kind
            )));
        }
        let pkcs8 = Zeroizing::new(
            B64.decode(f.pkcs8.as_bytes())
                .map_err(|_| KeyError::BadPrivateKey)?,
        );
        let key = Self::from_pkcs8(&pkcs8)?;
        if key.public.keyid != f.keyid {
            return Err(KeyError::BadFile("key id does not match the key".into()));
        }
        Ok(key)
    }
}

/// serde_json error categories without the input echoed back (it may hold key bytes).
trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "io error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected fields",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_keyids_are_checked() {
        let k = SigningKey::generate().unwrap();
        let text = k.to_file();
        let back = SigningKey::from_file_json(&text).unwrap();
        assert_eq!(back.public(), k.public());
        let sig = k.sign(b"hello");
        assert!(back.public().verify(b"hello", &sig));
        assert!(!back.public().verify(b"hellO", &sig));

        let mut pf = k.public().to_file();
        assert_eq!(PublicKey::from_file(&pf).unwrap(), *k.public());
        pf.keyid = KeyId("00".repeat(32));
        assert!(matches!(
            PublicKey::from_file(&pf),
            Err(KeyError::BadFile(_))
        ));
        // Debug output never carries key material.
        assert!(!format!("{k:?}").contains(&B64.encode(k.pkcs8.as_slice())));
    }
}
