//! Signing keys of the security office, the document registry and the personnel office, in
//! either suite (issue 24): Ed25519 (`intl`) or SM2 with SM3 (`sm`, raw `r || s` signatures,
//! the distinguishing ID the trust root names or GB/T 35276's default).
//!
//! A key id is the hex SHA-256 of the raw Ed25519 key, or the hex SM3 of the SM2 key's 65
//! uncompressed bytes, computed here and never taken from a file, so a trust root cannot
//! claim a key under someone else's id.

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
    key: Verifying,
}

#[derive(Clone, PartialEq, Eq)]
enum Verifying {
    Ed25519([u8; 32]),
    Sm2(Box<crate::suite::sm::Sm2PublicKey>),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.keyid)
    }
}

/// Errors reading key material (messages never contain key bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 32 bytes (Ed25519) or 65 bytes (an SM2 point) of base64.
    #[error("public key is not 32 bytes (Ed25519) or 65 bytes (SM2, 04 || x || y) of base64")]
    BadPublicKey,
    /// Not a PKCS#8 Ed25519 document, or not an SM2 private key.
    #[error("private key is not a PKCS#8 Ed25519 key or a 32-byte SM2 key")]
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
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Hex SHA-256 of `bytes`.
pub fn hex_digest(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

impl PublicKey {
    /// From raw bytes: 32 are an Ed25519 key, 65 (`04 || x || y`) an SM2 key.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, KeyError> {
        if raw.len() == crate::suite::sm::PUBLIC_KEY_LEN {
            let key = crate::suite::sm::Sm2PublicKey::from_bytes(raw)
                .map_err(|_| KeyError::BadPublicKey)?;
            let keyid = KeyId(hex(&crate::suite::sm::sm3(raw)));
            return Ok(Self {
                keyid,
                key: Verifying::Sm2(Box::new(key)),
            });
        }
        let bytes: [u8; 32] = raw.try_into().map_err(|_| KeyError::BadPublicKey)?;
        let keyid = KeyId(hex(
            ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()
        ));
        Ok(Self {
            keyid,
            key: Verifying::Ed25519(bytes),
        })
    }

    /// From base64 of the raw bytes.
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let raw = B64.decode(s.trim()).map_err(|_| KeyError::BadPublicKey)?;
        Self::from_bytes(&raw)
    }

    /// Base64 of the raw key.
    pub fn to_base64(&self) -> String {
        B64.encode(self.raw())
    }

    /// Raw key (32 bytes Ed25519, 65 bytes SM2).
    pub fn raw(&self) -> Vec<u8> {
        match &self.key {
            Verifying::Ed25519(b) => b.to_vec(),
            Verifying::Sm2(k) => k.to_bytes(),
        }
    }

    /// The suite the key belongs to.
    pub fn suite(&self) -> crate::suite::Suite {
        match &self.key {
            Verifying::Ed25519(_) => crate::suite::Suite::Intl,
            Verifying::Sm2(_) => crate::suite::Suite::Sm,
        }
    }

    /// The key's id.
    pub fn keyid(&self) -> &KeyId {
        &self.keyid
    }

    /// Whether `sig` is this key's signature over `msg` (SM2: under the default
    /// distinguishing ID).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.verify_with_id(crate::suite::sm::DEFAULT_ID, msg, sig)
    }

    /// [`PublicKey::verify`] with an SM2 distinguishing ID (ignored for Ed25519).
    pub fn verify_with_id(&self, sm2_id: &str, msg: &[u8], sig: &[u8]) -> bool {
        match &self.key {
            Verifying::Ed25519(bytes) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, bytes)
                    .verify(msg, sig)
                    .is_ok()
            }
            Verifying::Sm2(k) => k.verify(sm2_id, msg, sig),
        }
    }

    /// The public key file form.
    pub fn to_file(&self) -> PublicKeyFile {
        PublicKeyFile {
            kind: match self.suite() {
                crate::suite::Suite::Intl => PUBLIC_KIND,
                crate::suite::Suite::Sm => SM2_PUBLIC_KIND,
            }
            .into(),
            keyid: self.keyid.clone(),
            public_key: self.to_base64(),
        }
    }

    /// Reads a public key file, checking its key id.
    pub fn from_file(f: &PublicKeyFile) -> Result<Self, KeyError> {
        if f.kind != PUBLIC_KIND && f.kind != SM2_PUBLIC_KIND {
            return Err(KeyError::BadFile(format!(
                "expected `{PUBLIC_KIND}` or `{SM2_PUBLIC_KIND}`, found `{}`",
                f.kind
            )));
        }
        let key = Self::from_base64(&f.public_key)?;
        let declared = if f.kind == SM2_PUBLIC_KIND {
            crate::suite::Suite::Sm
        } else {
            crate::suite::Suite::Intl
        };
        if key.suite() != declared {
            return Err(KeyError::BadFile(format!(
                "a `{}` file holding a key of the {} suite",
                f.kind,
                key.suite()
            )));
        }
        if key.keyid != f.keyid {
            return Err(KeyError::BadFile("key id does not match the key".into()));
        }
        Ok(key)
    }
}

/// A signing key. Its secret bytes are zeroised on drop and never printed.
pub struct SigningKey {
    key: Signing,
    public: PublicKey,
}

enum Signing {
    Ed25519 {
        pair: Ed25519KeyPair,
        pkcs8: Zeroizing<Vec<u8>>,
    },
    Sm2(crate::suite::sm::Sm2SecretKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public.keyid)
    }
}

const PRIVATE_KIND: &str = "baomi-ed25519-private-key";
const PUBLIC_KIND: &str = "baomi-ed25519-public-key";
const SM2_PRIVATE_KIND: &str = "baomi-sm2-private-key";
const SM2_PUBLIC_KIND: &str = "baomi-sm2-public-key";

/// On-disk private key (keep it offline, mode 0600).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivateKeyFile {
    /// `baomi-ed25519-private-key` or `baomi-sm2-private-key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Id of the matching public key.
    pub keyid: KeyId,
    /// Base64 PKCS#8 (Ed25519).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pkcs8: String,
    /// Base64 of the 32-byte secret scalar (SM2).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
}

/// On-disk public key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyFile {
    /// `baomi-ed25519-public-key` or `baomi-sm2-public-key`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Key id.
    pub keyid: KeyId,
    /// Base64 raw key.
    pub public_key: String,
}

impl SigningKey {
    /// A new random Ed25519 key.
    pub fn generate() -> Result<Self, KeyError> {
        Self::generate_for(crate::suite::Suite::Intl)
    }

    /// A new random key of `suite`.
    pub fn generate_for(suite: crate::suite::Suite) -> Result<Self, KeyError> {
        match suite {
            crate::suite::Suite::Intl => {
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| KeyError::Random)?;
                Self::from_pkcs8(doc.as_ref())
            }
            crate::suite::Suite::Sm => Self::from_sm2(crate::suite::sm::Sm2SecretKey::generate()),
        }
    }

    fn from_sm2(secret: crate::suite::sm::Sm2SecretKey) -> Result<Self, KeyError> {
        let public = PublicKey::from_bytes(&secret.public().to_bytes())?;
        Ok(Self {
            key: Signing::Sm2(secret),
            public,
        })
    }

    /// From PKCS#8 bytes (Ed25519).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::BadPrivateKey)?;
        let public = PublicKey::from_bytes(pair.public_key().as_ref())?;
        Ok(Self {
            key: Signing::Ed25519 {
                pair,
                pkcs8: Zeroizing::new(pkcs8.to_vec()),
            },
            public,
        })
    }

    /// The verifying half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The suite the key belongs to.
    pub fn suite(&self) -> crate::suite::Suite {
        self.public.suite()
    }

    /// Signs `msg` (SM2: under the default distinguishing ID).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.sign_with_id(crate::suite::sm::DEFAULT_ID, msg)
    }

    /// Signs `msg`; an SM2 key under distinguishing ID `sm2_id` (empty when the system's
    /// random source fails: the signature then verifies nowhere).
    pub fn sign_with_id(&self, sm2_id: &str, msg: &[u8]) -> Vec<u8> {
        match &self.key {
            Signing::Ed25519 { pair, .. } => pair.sign(msg).as_ref().to_vec(),
            Signing::Sm2(k) => k.sign(sm2_id, msg).map(|s| s.to_vec()).unwrap_or_default(),
        }
    }

    /// The private key file form. The returned value holds the secret: write it and drop it.
    pub fn to_file(&self) -> Zeroizing<String> {
        let f = match &self.key {
            Signing::Ed25519 { pkcs8, .. } => PrivateKeyFile {
                kind: PRIVATE_KIND.into(),
                keyid: self.public.keyid.clone(),
                pkcs8: B64.encode(pkcs8.as_slice()),
                secret: String::new(),
            },
            Signing::Sm2(k) => PrivateKeyFile {
                kind: SM2_PRIVATE_KIND.into(),
                keyid: self.public.keyid.clone(),
                pkcs8: String::new(),
                secret: B64.encode(k.to_bytes().as_slice()),
            },
        };
        let text = Zeroizing::new(serde_json::to_string_pretty(&f).unwrap_or_default());
        let PrivateKeyFile { pkcs8, secret, .. } = f;
        drop((Zeroizing::new(pkcs8), Zeroizing::new(secret)));
        text
    }

    /// Reads a private key file.
    pub fn from_file_json(text: &str) -> Result<Self, KeyError> {
        let f: PrivateKeyFile = serde_json::from_str(text).map_err(|e| {
            KeyError::BadFile(format!("not a private key file ({})", e.classify_name()))
        })?;
        let key = match f.kind.as_str() {
            PRIVATE_KIND => {
                let pkcs8 = Zeroizing::new(
                    B64.decode(f.pkcs8.as_bytes())
                        .map_err(|_| KeyError::BadPrivateKey)?,
                );
                Self::from_pkcs8(&pkcs8)?
            }
            SM2_PRIVATE_KIND => {
                let secret = Zeroizing::new(
                    B64.decode(f.secret.as_bytes())
                        .map_err(|_| KeyError::BadPrivateKey)?,
                );
                Self::from_sm2(
                    crate::suite::sm::Sm2SecretKey::from_bytes(&secret)
                        .map_err(|_| KeyError::BadPrivateKey)?,
                )?
            }
            other => {
                return Err(KeyError::BadFile(format!(
                    "expected `{PRIVATE_KIND}` or `{SM2_PRIVATE_KIND}`, found `{other}`"
                )));
            }
        };
        drop((Zeroizing::new(f.pkcs8), Zeroizing::new(f.secret)));
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
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff, 0x5a]), "000fa0ff5a");
        let all: Vec<u8> = (0..=255).collect();
        let expected: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&all), expected);
    }

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
        assert!(!format!("{k:?}").contains(&k.to_file()[..20]));
    }

    #[test]
    fn sm2_key_files_round_trip_and_sign() {
        let k = SigningKey::generate_for(crate::suite::Suite::Sm).unwrap();
        assert_eq!(k.suite(), crate::suite::Suite::Sm);
        let back = SigningKey::from_file_json(&k.to_file()).unwrap();
        assert_eq!(back.public(), k.public());
        let sig = k.sign(b"hello");
        assert!(back.public().verify(b"hello", &sig));
        assert!(!back.public().verify_with_id("another id", b"hello", &sig));
        let pf = k.public().to_file();
        assert_eq!(pf.kind, SM2_PUBLIC_KIND);
        assert_eq!(PublicKey::from_file(&pf).unwrap(), *k.public());
        // An SM2 key in an Ed25519 file is refused.
        let mut wrong = pf.clone();
        wrong.kind = PUBLIC_KIND.into();
        assert!(PublicKey::from_file(&wrong).is_err());
    }
}
