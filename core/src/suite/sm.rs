//! The ShangMi primitives, over RustCrypto's `sm2`, `sm3` and `sm4` crates.
//!
//! - **SM2 signatures** (GB/T 32918.2): SM3 over `Z_A || M` with the distinguishing ID
//!   [`DEFAULT_ID`] unless the trust root names another; encoded raw `r || s` (64 bytes), the
//!   form GmSSL's and sm-crypto's verifiers take by default. Signing and verifying are
//!   `sm2::dsa` (constant-time scalar arithmetic from `crypto-bigint`; the nonce `k` comes
//!   from the OS's CSPRNG).
//! - **SM2 public-key encryption** (GB/T 32918.4), `C1 || C3 || C2` with `C1` an uncompressed
//!   point (`04 || x || y`): composed here from the same curve arithmetic and SM3, because the
//!   `sm2` crate's own encryption is only in its pre-release; checked against GB/T 32918.5's
//!   example and against GmSSL and sm-crypto in CI. `C3` is compared in constant time, and
//!   a failure says nothing about which step failed.
//! - **SM3** and **HMAC-SM3** (`sm3`, `hmac`), **HKDF** over HMAC-SM3 (`hkdf`, RFC 5869).
//! - **SM4-GCM** (RFC 8998): the `aes-gcm` crate's GCM over the `sm4` block cipher, a 96-bit
//!   nonce and a 128-bit tag. `sm4` is a table-based software cipher: unlike AES-NI it is not
//!   constant-time against a co-resident cache attacker (noted in docs/SECURITY.md).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use hmac::{Hmac, Mac};
use sm2::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use sm2::{AffinePoint, EncodedPoint, NonZeroScalar, ProjectivePoint, PublicKey};
use sm3::{Digest, Sm3};
use zeroize::Zeroizing;

/// The distinguishing ID GB/T 35276 names as the default.
pub const DEFAULT_ID: &str = "1234567812345678";

/// SM2 signature length (raw `r || s`).
pub const SIGNATURE_LEN: usize = 64;
/// SM2 public key length (uncompressed SEC1: `04 || x || y`).
pub const PUBLIC_KEY_LEN: usize = 65;

/// Why an SM operation failed (never which internal step, for decryption).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmError {
    /// A key that is not a valid SM2 key.
    #[error("not a valid SM2 key: {0}")]
    Key(&'static str),
    /// A signature that does not parse.
    #[error("not an SM2 signature (64 bytes r || s)")]
    Signature,
    /// Decryption failed (malformed, wrong key, or altered).
    #[error("SM2 or SM4 decryption failed")]
    Decrypt,
    /// The system's random source failed.
    #[error("the system random source failed")]
    Random,
}

/// SM3 of `data`.
pub fn sm3(data: &[u8]) -> [u8; 32] {
    Sm3::digest(data).into()
}

/// HMAC-SM3 of `data` under `key` (HMAC takes a key of any length: `None` is unreachable,
/// and is never replaced by a tag under some other key).
pub fn hmac_sm3(key: &[u8], data: &[u8]) -> Option<[u8; 32]> {
    let mut mac = <Hmac<Sm3> as Mac>::new_from_slice(key).ok()?;
    mac.update(data);
    Some(mac.finalize().into_bytes().into())
}

/// Checks an HMAC-SM3 tag in constant time.
pub fn hmac_sm3_verify(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    let Ok(mut mac) = <Hmac<Sm3> as Mac>::new_from_slice(key) else {
        return false;
    };
    mac.update(data);
    mac.verify_slice(tag).is_ok()
}

/// HKDF (RFC 5869) over HMAC-SM3: `out.len()` bytes (at most 255 × 32).
pub fn hkdf_sm3(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), SmError> {
    hkdf::Hkdf::<Sm3>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|_| SmError::Key("HKDF output too long"))
}

/// An SM2 private key (zeroized on drop by the `sm2` crate).
pub struct Sm2SecretKey {
    secret: sm2::SecretKey,
}

impl std::fmt::Debug for Sm2SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm2SecretKey(..)")
    }
}

impl Sm2SecretKey {
    /// A fresh key from the OS's CSPRNG.
    pub fn generate() -> Self {
        Self {
            secret: sm2::SecretKey::random(&mut rand_core::OsRng),
        }
    }

    /// From its 32 big-endian bytes (`d` in `[1, n-2]`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SmError> {
        let secret = sm2::SecretKey::from_slice(bytes)
            .map_err(|_| SmError::Key("a private key is 32 bytes in [1, n-2]"))?;
        Ok(Self { secret })
    }

    /// Its 32 bytes (zeroized when dropped).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.secret.to_bytes().to_vec())
    }

    /// The public key.
    pub fn public(&self) -> Sm2PublicKey {
        Sm2PublicKey {
            key: self.secret.public_key(),
        }
    }

    /// Signs `msg` with distinguishing ID `id`: raw `r || s`.
    pub fn sign(&self, id: &str, msg: &[u8]) -> Result<[u8; SIGNATURE_LEN], SmError> {
        use sm2::dsa::signature::RandomizedSigner;
        let key = sm2::dsa::SigningKey::new(id, &self.secret)
            .map_err(|_| SmError::Key("the distinguishing ID is too long"))?;
        let sig: sm2::dsa::Signature = key
            .try_sign_with_rng(&mut rand_core::OsRng, msg)
            .map_err(|_| SmError::Random)?;
        Ok(sig.to_bytes())
    }

    /// Opens `C1 || C3 || C2` (GB/T 32918.4) sealed to this key; `C1` with or without its
    /// `04` prefix (GmSSL and sm-crypto write it without).
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, SmError> {
        // With the prefix first; without it, `x` may itself begin with 04: try both.
        if ciphertext.first() == Some(&0x04) && ciphertext.len() > 65 + 32 {
            let (c1, rest) = ciphertext.split_at(65);
            if let Ok(m) = self.decrypt_parts(c1, rest) {
                return Ok(m);
            }
        }
        if ciphertext.len() > 64 + 32 {
            let (xy, rest) = ciphertext.split_at(64);
            return self.decrypt_parts(&[&[0x04], xy].concat(), rest);
        }
        Err(SmError::Decrypt)
    }

    fn decrypt_parts(&self, c1: &[u8], rest: &[u8]) -> Result<Zeroizing<Vec<u8>>, SmError> {
        let (c3, c2) = rest.split_at(32);
        let point = EncodedPoint::from_bytes(c1).map_err(|_| SmError::Decrypt)?;
        let c1: Option<AffinePoint> = AffinePoint::from_encoded_point(&point).into();
        let c1 = c1.ok_or(SmError::Decrypt)?;
        // h = 1 on this curve: S = [h]C1 is the point itself, not the identity.
        let shared = (ProjectivePoint::from(c1) * *self.secret.to_nonzero_scalar()).to_affine();
        let (x2, y2) = coordinates(&shared).ok_or(SmError::Decrypt)?;
        let t = kdf(&x2, &y2, c2.len());
        if c2.is_empty() || t.iter().all(|b| *b == 0) {
            return Err(SmError::Decrypt);
        }
        let m: Zeroizing<Vec<u8>> =
            Zeroizing::new(c2.iter().zip(t.iter()).map(|(c, k)| c ^ k).collect());
        let u = c3_of(&x2, &m, &y2);
        if !constant_time_eq(&u, c3) {
            return Err(SmError::Decrypt);
        }
        Ok(m)
    }
}

/// An SM2 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct Sm2PublicKey {
    key: PublicKey,
}

impl std::fmt::Debug for Sm2PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sm2PublicKey({})",
            crate::bundle::keys::hex(&self.to_bytes())
        )
    }
}

impl Sm2PublicKey {
    /// From SEC1 bytes (uncompressed `04 || x || y`, or 64 bytes `x || y` as GmSSL writes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SmError> {
        let owned;
        let bytes = if bytes.len() == 64 {
            owned = [&[0x04], bytes].concat();
            owned.as_slice()
        } else {
            bytes
        };
        let key = PublicKey::from_sec1_bytes(bytes)
            .map_err(|_| SmError::Key("a public key is a point on the SM2 curve"))?;
        Ok(Self { key })
    }

    /// Uncompressed SEC1 bytes (65).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.key.to_encoded_point(false).as_bytes().to_vec()
    }

    /// Whether `sig` (raw `r || s`) signs `msg` under distinguishing ID `id`.
    pub fn verify(&self, id: &str, msg: &[u8], sig: &[u8]) -> bool {
        use sm2::dsa::signature::Verifier;
        let Ok(sig) = sm2::dsa::Signature::from_slice(sig) else {
            return false;
        };
        let Ok(key) = sm2::dsa::VerifyingKey::new(id, self.key) else {
            return false;
        };
        key.verify(msg, &sig).is_ok()
    }

    /// Seals `msg` to this key: `C1 || C3 || C2` (GB/T 32918.4), `C1` as `04 || x || y`.
    pub fn encrypt(&self, msg: &[u8]) -> Result<Vec<u8>, SmError> {
        if msg.is_empty() {
            return Err(SmError::Key("nothing to encrypt"));
        }
        let pb = ProjectivePoint::from(*self.key.as_affine());
        // A1-A8: a fresh k until the key stream is not all zero (probability ~2^-256 per try).
        for _ in 0..16 {
            let k = NonZeroScalar::random(&mut rand_core::OsRng);
            let c1 = (ProjectivePoint::GENERATOR * *k).to_affine();
            let shared = (pb * *k).to_affine();
            let Some((x2, y2)) = coordinates(&shared) else {
                continue;
            };
            let t = kdf(&x2, &y2, msg.len());
            if t.iter().all(|b| *b == 0) {
                continue;
            }
            let c2: Vec<u8> = msg.iter().zip(t.iter()).map(|(m, k)| m ^ k).collect();
            let c3 = c3_of(&x2, msg, &y2);
            let mut out = c1.to_encoded_point(false).as_bytes().to_vec();
            out.extend_from_slice(&c3);
            out.extend_from_slice(&c2);
            return Ok(out);
        }
        Err(SmError::Random)
    }
}

/// `x` and `y` of a point (`None` for the identity).
fn coordinates(p: &AffinePoint) -> Option<([u8; 32], [u8; 32])> {
    let e = p.to_encoded_point(false);
    let x: [u8; 32] = e.x()?.as_slice().try_into().ok()?;
    let y: [u8; 32] = e.y()?.as_slice().try_into().ok()?;
    Some((x, y))
}

/// GB/T 32918.4's key derivation: SM3(Z || ct) for ct = 1, 2, ... (32-bit big-endian).
fn kdf(x2: &[u8; 32], y2: &[u8; 32], len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + 32));
    let mut ct: u32 = 1;
    while out.len() < len {
        let mut h = Sm3::new();
        h.update(x2);
        h.update(y2);
        h.update(ct.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        ct = ct.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// `C3 = SM3(x2 || M || y2)`.
fn c3_of(x2: &[u8; 32], m: &[u8], y2: &[u8; 32]) -> [u8; 32] {
    let mut h = Sm3::new();
    h.update(x2);
    h.update(m);
    h.update(y2);
    h.finalize().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SM4-GCM (RFC 8998) with a 16-byte key.
pub struct Sm4Gcm {
    cipher: aes_gcm::AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12>,
}

impl std::fmt::Debug for Sm4Gcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm4Gcm(..)")
    }
}

/// SM4-GCM nonce length.
pub const SM4_GCM_NONCE_LEN: usize = 12;
/// SM4-GCM tag length.
pub const SM4_GCM_TAG_LEN: usize = 16;

impl Sm4Gcm {
    /// Under `key` (16 bytes).
    pub fn new(key: &[u8]) -> Result<Self, SmError> {
        let cipher =
            <aes_gcm::AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12> as KeyInit>::new_from_slice(key)
                .map_err(|_| SmError::Key("an SM4 key is 16 bytes"))?;
        Ok(Self { cipher })
    }

    /// `ciphertext || tag`.
    pub fn seal(
        &self,
        nonce: &[u8; SM4_GCM_NONCE_LEN],
        aad: &[u8],
        msg: &[u8],
    ) -> Result<Vec<u8>, SmError> {
        self.cipher
            .encrypt(nonce.into(), Payload { msg, aad })
            .map_err(|_| SmError::Key("SM4-GCM message too long"))
    }

    /// Opens `ciphertext || tag`.
    pub fn open(
        &self,
        nonce: &[u8; SM4_GCM_NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SmError> {
        self.cipher
            .decrypt(nonce.into(), Payload { msg: sealed, aad })
            .map(Zeroizing::new)
            .map_err(|_| SmError::Decrypt)
    }
}
