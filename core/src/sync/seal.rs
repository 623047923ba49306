//! Upload batches sealed to the security office's upload key, so a relay between the phone
//! and the compliance server (an MDM proxy, a TLS-terminating gateway) reads nothing.
//!
//! Construction under the `intl` suite (an ECIES in the style of HPKE base mode): a fresh
//! X25519 key per batch, `HKDF-SHA256(salt = "baomi-upload-v1", ikm = shared secret, info =
//! ephemeral || recipient)` to a one-time AES-256-GCM key, nonce zero (the key is never
//! reused), associated data binding the batch to its device and seq range. The device side
//! uses ring; ring cannot hold a static X25519 private key, so the office side
//! (`baomi-server`) opens batches with `x25519-dalek`, computing the same KDF.
//!
//! Under the `sm` suite (issue 24): a fresh random 16-byte SM4 key per batch, sealed to the
//! office's SM2 upload key by SM2 public-key encryption (GB/T 32918.4, `C1 || C3 || C2`, whose
//! `C1` is the per-batch ephemeral point); the batch under that key in SM4-GCM (RFC 8998),
//! nonce zero (the key is never reused), the same associated data. The box's `ephemeral`
//! field then carries the whole SM2 ciphertext of the SM4 key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{EphemeralPrivateKey, UnparsedPublicKey, X25519, agree_ephemeral};
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};

/// HKDF salt.
pub const SALT: &[u8] = b"baomi-upload-v1";

/// The office's upload key a box is sealed to: the suite of the trust root that names it.
#[derive(Debug, Clone)]
pub enum Recipient {
    /// A 32-byte X25519 public key (`intl`).
    X25519([u8; 32]),
    /// An SM2 public key (`sm`).
    Sm2(crate::suite::sm::Sm2PublicKey),
}

impl Recipient {
    /// The suite of the key, so of everything sealed and proven to it.
    pub fn suite(&self) -> crate::suite::Suite {
        match self {
            Self::X25519(_) => crate::suite::Suite::Intl,
            Self::Sm2(_) => crate::suite::Suite::Sm,
        }
    }
}

/// Length of the one-time SM4 key of an `sm` box.
pub const SM4_KEY_LEN: usize = 16;

/// The longest SM2 ciphertext of that key: `C1` (65 bytes, uncompressed) `|| C3` (32)
/// `|| C2` (16).
pub const MAX_SM2_WRAPPED: usize = 65 + 32 + SM4_KEY_LEN;

/// A sealed batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedBox {
    /// Base64 ephemeral X25519 public key (`intl`), or the SM2 ciphertext `C1 || C3 || C2`
    /// of the one-time SM4 key (`sm`).
    pub ephemeral: String,
    /// Base64 ciphertext with its GCM tag.
    pub ciphertext: String,
}

/// Sealing failed (bad recipient key, random source).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upload sealing failed: {0}")]
pub struct SealError(pub &'static str);

/// What the associated data binds.
pub fn batch_aad(device_id: &str, first_seq: u64, last_seq: u64) -> Vec<u8> {
    format!("baomi-upload-v1\n{device_id}\n{first_seq}\n{last_seq}").into_bytes()
}

/// The one-time key both sides derive: HKDF-SHA256 (salt [`SALT`], info ephemeral ||
/// recipient).
pub fn derive_key(shared: &[u8], ephemeral: &[u8], recipient: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    crate::suite::Suite::Intl.hkdf(SALT, shared, &[ephemeral, recipient].concat(), &mut out)?;
    Some(out)
}

/// Seals `plaintext` to the office's upload key.
pub fn seal(recipient: &Recipient, aad: &[u8], plaintext: &[u8]) -> Result<SealedBox, SealError> {
    match recipient {
        Recipient::X25519(k) => seal_x25519(k, aad, plaintext),
        Recipient::Sm2(k) => seal_sm2(k, aad, plaintext),
    }
}

fn seal_sm2(
    recipient: &crate::suite::sm::Sm2PublicKey,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<SealedBox, SealError> {
    let mut key = zeroize::Zeroizing::new([0u8; SM4_KEY_LEN]);
    ring::rand::SecureRandom::fill(&SystemRandom::new(), key.as_mut_slice())
        .map_err(|_| SealError("random"))?;
    let wrapped = recipient
        .encrypt(key.as_slice())
        .map_err(|_| SealError("SM2 encryption"))?;
    let gcm = crate::suite::sm::Sm4Gcm::new(key.as_slice()).map_err(|_| SealError("aead key"))?;
    let ciphertext = gcm
        .seal(&[0; 12], aad, plaintext)
        .map_err(|_| SealError("seal"))?;
    Ok(SealedBox {
        ephemeral: B64.encode(&wrapped),
        ciphertext: B64.encode(&ciphertext),
    })
}

/// A box's two fields, decoded: the ephemeral key (or SM2-wrapped key) and the ciphertext.
fn decoded(sealed: &SealedBox) -> Result<(Vec<u8>, Vec<u8>), SealError> {
    let first = B64
        .decode(sealed.ephemeral.as_bytes())
        .map_err(|_| SealError("ephemeral key is not base64"))?;
    let ciphertext = B64
        .decode(sealed.ciphertext.as_bytes())
        .map_err(|_| SealError("ciphertext is not base64"))?;
    Ok((first, ciphertext))
}

/// Opens an `sm` box with the office's SM2 private key.
pub fn open_sm2(
    secret: &crate::suite::sm::Sm2SecretKey,
    aad: &[u8],
    sealed: &SealedBox,
) -> Result<Vec<u8>, SealError> {
    let (wrapped, ciphertext) = decoded(sealed)?;
    // An SM2 ciphertext of the 16-byte key is C1 (65 bytes) || C3 (32) || C2 (16): a longer one
    // is refused before any work (SM2 decryption runs SM3 over as many bytes as C2 holds).
    if wrapped.len() > MAX_SM2_WRAPPED {
        return Err(SealError(
            "wrapped key is longer than an SM2 ciphertext of an SM4 key",
        ));
    }
    let refused = SealError("batch does not authenticate (wrong key, device or seq range)");
    let key = secret.decrypt(&wrapped).map_err(|_| refused.clone())?;
    if key.len() != SM4_KEY_LEN {
        return Err(refused);
    }
    let gcm = crate::suite::sm::Sm4Gcm::new(key.as_slice()).map_err(|_| refused.clone())?;
    let plain = gcm.open(&[0; 12], aad, &ciphertext).map_err(|_| refused)?;
    Ok(plain.to_vec())
}

fn seal_x25519(recipient: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<SealedBox, SealError> {
    let recipient = recipient.as_slice();
    let rng = SystemRandom::new();
    let eph = EphemeralPrivateKey::generate(&X25519, &rng).map_err(|_| SealError("random"))?;
    let eph_pub = eph
        .compute_public_key()
        .map_err(|_| SealError("public key"))?;
    let eph_pub = eph_pub.as_ref().to_vec();
    let key = agree_ephemeral(eph, &UnparsedPublicKey::new(&X25519, recipient), |shared| {
        derive_key(shared, &eph_pub, recipient)
    })
    .map_err(|_| SealError("key agreement"))?
    .ok_or(SealError("kdf"))?;
    let mut key = zeroize::Zeroizing::new(key);
    let sealing = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key.as_slice()).map_err(|_| SealError("aead key"))?,
    );
    zeroize::Zeroize::zeroize(&mut *key);
    let mut buf = plaintext.to_vec();
    sealing
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| SealError("seal"))?;
    Ok(SealedBox {
        ephemeral: B64.encode(&eph_pub),
        ciphertext: B64.encode(&buf),
    })
}

/// Opens a box given the shared secret the recipient computed from `ephemeral`.
pub fn open_with_shared(
    shared: &[u8],
    recipient: &[u8],
    aad: &[u8],
    sealed: &SealedBox,
) -> Result<Vec<u8>, SealError> {
    let (eph, mut buf) = decoded(sealed)?;
    let key = zeroize::Zeroizing::new(derive_key(shared, &eph, recipient).ok_or(SealError("kdf"))?);
    let opening = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key.as_slice()).map_err(|_| SealError("aead key"))?,
    );
    let n = opening
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| SealError("batch does not authenticate (wrong key, device or seq range)"))?
        .len();
    buf.truncate(n);
    Ok(buf)
}

/// The ephemeral public key of a box.
pub fn ephemeral_of(sealed: &SealedBox) -> Result<[u8; 32], SealError> {
    B64.decode(sealed.ephemeral.as_bytes())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(SealError("ephemeral key must be 32 bytes of base64"))
}
