//! Upload batches sealed to the security office's upload key, so a relay between the phone
//! and the compliance server (an MDM proxy, a TLS-terminating gateway) reads nothing.
//!
//! Construction (an ECIES in the style of HPKE base mode): a fresh X25519 key per batch,
//! `HKDF-SHA256(salt = "baomi-upload-v1", ikm = shared secret, info = ephemeral || recipient)`
//! to a one-time AES-256-GCM key, nonce zero (the key is never reused), associated data
//! binding the batch to its device and seq range. The device side uses ring; ring cannot hold
//! a static X25519 private key, so the office side (`baomi-server`) opens batches with
//! `x25519-dalek`, computing the same KDF.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{EphemeralPrivateKey, UnparsedPublicKey, X25519, agree_ephemeral};
use ring::hkdf;
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};

/// HKDF salt.
pub const SALT: &[u8] = b"baomi-upload-v1";

/// A sealed batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedBox {
    /// Base64 ephemeral X25519 public key.
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

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// The one-time key both sides derive.
pub fn derive_key(shared: &[u8], ephemeral: &[u8], recipient: &[u8]) -> Option<[u8; 32]> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(shared);
    let info = [ephemeral, recipient];
    let mut out = [0u8; 32];
    prk.expand(&info, Len32).ok()?.fill(&mut out).ok()?;
    Some(out)
}

/// Seals `plaintext` to `recipient` (32-byte X25519 public key).
pub fn seal(recipient: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<SealedBox, SealError> {
    if recipient.len() != 32 {
        return Err(SealError("upload key must be 32 bytes"));
    }
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
    let eph = B64
        .decode(sealed.ephemeral.as_bytes())
        .map_err(|_| SealError("ephemeral key is not base64"))?;
    let mut buf = B64
        .decode(sealed.ciphertext.as_bytes())
        .map_err(|_| SealError("ciphertext is not base64"))?;
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
