//! The ShangMi primitives: SM2 and SM3 over RustCrypto's `sm2` and `sm3` crates, SM4 written here.
//!
//! - **SM2 signatures** (GB/T 32918.2): SM3 over `Z_A || M` with the distinguishing ID
//!   [`DEFAULT_ID`] unless the trust root names another; encoded raw `r || s` (64 bytes), the
//!   form GmSSL's and sm-crypto's verifiers take by default. Signing and verifying are
//!   GB/T 32918.2's steps written here over the `sm2` crate's curve and scalar arithmetic
//!   (fiat-crypto field, complete formulas, constant-time), with `[k]G` from a
//!   precomputed table (`sm::comb`) instead of the crate's generic multiplication, and
//!   `(1 + d)^-1` computed once per key instead of once per signature. Verification, whose
//!   inputs are all public, computes `[s]G + [t]P` in variable time in one pass over
//!   Jacobian coordinates and its own Montgomery field (`sm::vartime`). The nonce `k` is
//!   RFC 6979's HMAC-DRBG over SM3 fed with 32 bytes from the OS's CSPRNG (hedged: a failing
//!   random source does not repeat `k`), as `sm2::dsa` does. The `sm2::dsa` verifier is kept
//!   in the tests as the reference both ways.
//! - **SM2 public-key encryption** (GB/T 32918.4), `C1 || C3 || C2` with `C1` an uncompressed
//!   point (`04 || x || y`): composed here from the same curve arithmetic and SM3, because the
//!   `sm2` crate's own encryption is only in its pre-release; checked against GB/T 32918.5's
//!   example and against GmSSL and sm-crypto in CI. `C3` is compared in constant time, and
//!   a failure says nothing about which step failed.
//! - **SM3** and **HMAC-SM3** (`sm3`, `hmac`), **HKDF** over HMAC-SM3 (`hkdf`, RFC 5869).
//! - **SM4-GCM** (RFC 8998): SM4 and its counter mode in `sm::sm4`, constant-time (the S-box
//!   a boolean circuit, bitsliced 64 blocks a pass or packed two blocks at a time; checked
//!   against the `sm4` and `aes-gcm` crates), GHASH from the `ghash` crate, a 96-bit nonce
//!   and a 128-bit tag.

use hmac::{Hmac, Mac};
use sm2::elliptic_curve::ff::PrimeField;
use sm2::elliptic_curve::ops::Reduce;
use sm2::elliptic_curve::point::{AffineCoordinates, BatchNormalize};
use sm2::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use sm2::{AffinePoint, EncodedPoint, NonZeroScalar, ProjectivePoint, PublicKey, Scalar, U256};
use sm3::{Digest, Sm3};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

mod comb;
mod sm4;
mod vartime;

pub use self::sm4::{NONCE_LEN as SM4_GCM_NONCE_LEN, Sm4, Sm4Gcm, TAG_LEN as SM4_GCM_TAG_LEN};

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

/// An SM2 private key (zeroized on drop: `d` by the `sm2` crate, `(1 + d)^-1` here).
pub struct Sm2SecretKey {
    secret: sm2::SecretKey,
    /// `[d]G`, computed once.
    public: PublicKey,
    /// `(1 + d)^-1 mod n`, which every signature multiplies by.
    d_plus_1_inv: Zeroizing<Scalar>,
}

impl std::fmt::Debug for Sm2SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm2SecretKey(..)")
    }
}

impl Sm2SecretKey {
    /// A fresh key from the OS's CSPRNG.
    pub fn generate() -> Self {
        loop {
            // d = n - 1 (probability 2^-256) has no (1 + d)^-1: draw again.
            if let Ok(key) = Self::from_secret(sm2::SecretKey::random(&mut rand_core::OsRng)) {
                return key;
            }
        }
    }

    /// From its 32 big-endian bytes (`d` in `[1, n-2]`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SmError> {
        let secret = sm2::SecretKey::from_slice(bytes)
            .map_err(|_| SmError::Key("a private key is 32 bytes in [1, n-2]"))?;
        Self::from_secret(secret)
    }

    fn from_secret(secret: sm2::SecretKey) -> Result<Self, SmError> {
        let d = Zeroizing::new(*secret.to_nonzero_scalar());
        let d_plus_1_inv: Option<Scalar> = (*d + Scalar::ONE).invert().into();
        let d_plus_1_inv = Zeroizing::new(
            d_plus_1_inv.ok_or(SmError::Key("a private key is 32 bytes in [1, n-2]"))?,
        );
        let public = PublicKey::from_affine(comb::mul_generator(&d).to_affine())
            .map_err(|_| SmError::Key("a private key is 32 bytes in [1, n-2]"))?;
        Ok(Self {
            secret,
            public,
            d_plus_1_inv,
        })
    }

    /// Its 32 bytes (zeroized when dropped).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.secret.to_bytes().to_vec())
    }

    /// The public key.
    pub fn public(&self) -> Sm2PublicKey {
        Sm2PublicKey { key: self.public }
    }

    /// Signs `msg` with distinguishing ID `id`: raw `r || s` (GB/T 32918.2, A1-A7).
    pub fn sign(&self, id: &str, msg: &[u8]) -> Result<[u8; SIGNATURE_LEN], SmError> {
        use rand_core::RngCore;
        // A1, A2: e = SM3(Z_A || M).
        let e = message_scalar(id, &self.public, msg)?;
        let d = Zeroizing::new(*self.secret.to_nonzero_scalar());
        let n = sm2::elliptic_curve::FieldBytesEncoding::<sm2::Sm2>::encode_field_bytes(
            &<sm2::Sm2 as sm2::elliptic_curve::Curve>::ORDER,
        );
        // A5 and A6 send the signer back to A3 with probability ~2^-255 each time.
        for _ in 0..8 {
            // A3: k from RFC 6979's DRBG, hedged with fresh randomness.
            let mut fresh = Zeroizing::new([0u8; 32]);
            rand_core::OsRng
                .try_fill_bytes(fresh.as_mut_slice())
                .map_err(|_| SmError::Random)?;
            let k_bytes = Zeroizing::new(rfc6979::generate_k::<Sm3, _>(
                &d.to_repr(),
                &n,
                &e.to_bytes(),
                fresh.as_slice(),
            ));
            let k: Option<Scalar> = Scalar::from_repr(*k_bytes).into();
            let Some(k) = k.map(Zeroizing::new) else {
                continue;
            };
            // A4: (x1, y1) = [k]G.
            let x1 = comb::mul_generator(&k).to_affine().x();
            // A5: r = (e + x1) mod n; again if r = 0 or r + k = n.
            let r = e + <Scalar as Reduce<U256>>::reduce_bytes(&x1);
            if bool::from(r.is_zero() | (r + *k).is_zero()) {
                continue;
            }
            // A6: s = (1 + d)^-1 (k - r d) mod n; again if s = 0.
            let s = *self.d_plus_1_inv * (*k - r * *d);
            if bool::from(s.is_zero()) {
                continue;
            }
            let mut out = [0u8; SIGNATURE_LEN];
            out[..32].copy_from_slice(&r.to_bytes());
            out[32..].copy_from_slice(&s.to_bytes());
            return Ok(out);
        }
        Err(SmError::Random)
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
        if !bool::from(u.as_slice().ct_eq(c3)) {
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
    ///
    /// GB/T 32918.2's B1-B7, `[s]G + [t]P` in variable time (`sm::vartime`: every input is
    /// public).
    pub fn verify(&self, id: &str, msg: &[u8], sig: &[u8]) -> bool {
        // B1, B2: r and s in [1, n-1] (checked by the parse).
        let Ok(sig) = sm2::dsa::Signature::from_slice(sig) else {
            return false;
        };
        let (r, s) = sig.split_scalars();
        // B3, B4: e = SM3(Z_A || M).
        let Ok(e) = message_scalar(id, &self.key, msg) else {
            return false;
        };
        // B5: t = (r + s) mod n, not 0.
        let t = *r + *s;
        if bool::from(t.is_zero()) {
            return false;
        }
        // B6: (x1, y1) = [s]G + [t]P; B7: R = (e + x1) mod n equals r.
        vartime::verify(&e, &r, &s, &t, self.key.as_affine())
    }

    /// Seals `msg` to this key: `C1 || C3 || C2` (GB/T 32918.4), `C1` as `04 || x || y`.
    pub fn encrypt(&self, msg: &[u8]) -> Result<Vec<u8>, SmError> {
        if msg.is_empty() {
            return Err(SmError::Key("nothing to encrypt"));
        }
        // [k]P_B from the key's table (`sm::comb`: the office's key is sealed to every sync).
        let pb = comb::for_recipient(self.key.as_affine());
        // A1-A8: a fresh k until the key stream is not all zero (probability ~2^-256 per try).
        for _ in 0..16 {
            let k = NonZeroScalar::random(&mut rand_core::OsRng);
            // C1 = [k]G and S = [k]P_B, made affine with one field inversion for both.
            let [c1, shared] =
                <ProjectivePoint as BatchNormalize<[ProjectivePoint; 2]>>::batch_normalize(&[
                    comb::mul_generator(&k),
                    pb.mul(&k),
                ]);
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

/// GB/T 32918.2's `Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)`.
fn z_of(id: &str, public: &PublicKey) -> Result<[u8; 32], SmError> {
    // ENTL_A is the ID's length in bits, in two bytes.
    let entl = u16::try_from(id.len())
        .ok()
        .and_then(|n| n.checked_mul(8))
        .ok_or(SmError::Key("the distinguishing ID is too long"))?;
    let (x_a, y_a) =
        coordinates(public.as_affine()).ok_or(SmError::Key("a public key is not the identity"))?;
    let mut h = Sm3::new();
    h.update(entl.to_be_bytes());
    h.update(id.as_bytes());
    h.update(CURVE_A);
    h.update(CURVE_B);
    h.update(GENERATOR_X);
    h.update(GENERATOR_Y);
    h.update(x_a);
    h.update(y_a);
    Ok(h.finalize().into())
}

/// `e = SM3(Z_A || M) mod n`.
fn message_scalar(id: &str, public: &PublicKey, msg: &[u8]) -> Result<Scalar, SmError> {
    let z = z_of(id, public)?;
    let mut h = Sm3::new();
    h.update(z);
    h.update(msg);
    let digest: [u8; 32] = h.finalize().into();
    Ok(<Scalar as Reduce<U256>>::reduce_bytes(&digest.into()))
}

/// The curve's `a` and `b` (GB/T 32918.5), as `Z_A` hashes them.
const CURVE_A: [u8; 32] = [
    0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc,
];
const CURVE_B: [u8; 32] = [
    0x28, 0xe9, 0xfa, 0x9e, 0x9d, 0x9f, 0x5e, 0x34, 0x4d, 0x5a, 0x9e, 0x4b, 0xcf, 0x65, 0x09, 0xa7,
    0xf3, 0x97, 0x89, 0xf5, 0x15, 0xab, 0x8f, 0x92, 0xdd, 0xbc, 0xbd, 0x41, 0x4d, 0x94, 0x0e, 0x93,
];

/// The generator's coordinates (GB/T 32918.5), as `Z_A` hashes them.
const GENERATOR_X: [u8; 32] = [
    0x32, 0xc4, 0xae, 0x2c, 0x1f, 0x19, 0x81, 0x19, 0x5f, 0x99, 0x04, 0x46, 0x6a, 0x39, 0xc9, 0x94,
    0x8f, 0xe3, 0x0b, 0xbf, 0xf2, 0x66, 0x0b, 0xe1, 0x71, 0x5a, 0x45, 0x89, 0x33, 0x4c, 0x74, 0xc7,
];
const GENERATOR_Y: [u8; 32] = [
    0xbc, 0x37, 0x36, 0xa2, 0xf4, 0xf6, 0x77, 0x9c, 0x59, 0xbd, 0xce, 0xe3, 0x6b, 0x69, 0x21, 0x53,
    0xd0, 0xa9, 0x87, 0x7c, 0xc6, 0x2a, 0x47, 0x40, 0x02, 0xdf, 0x32, 0xe5, 0x21, 0x39, 0xf0, 0xa0,
];

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

#[cfg(test)]
mod tests {
    use super::*;
    use sm2::dsa::signature::{RandomizedSigner, Verifier};

    #[test]
    fn signatures_agree_with_the_sm2_crates_signer_and_verifier_both_ways() {
        for id in [DEFAULT_ID, "ALICE123@YAHOO.COM", ""] {
            for len in [0usize, 1, 64, 8192] {
                let key = Sm2SecretKey::generate();
                let msg = vec![0x5a; len];
                // Ours, checked by sm2::dsa.
                let ours = key.sign(id, &msg).unwrap();
                let reference = sm2::dsa::VerifyingKey::new(id, key.public).unwrap();
                let parsed = sm2::dsa::Signature::from_slice(&ours).unwrap();
                assert!(
                    reference.verify(&msg, &parsed).is_ok(),
                    "id {id:?}, {len} bytes"
                );
                // sm2::dsa's, checked by ours; and neither under another message or key.
                let signer = sm2::dsa::SigningKey::new(id, &key.secret).unwrap();
                let theirs: sm2::dsa::Signature = signer
                    .try_sign_with_rng(&mut rand_core::OsRng, &msg)
                    .unwrap();
                assert!(key.public().verify(id, &msg, &theirs.to_bytes()));
                assert!(!key.public().verify(id, b"another message", &ours));
                assert!(!Sm2SecretKey::generate().public().verify(id, &msg, &ours));
            }
        }
    }

    #[test]
    fn out_of_range_signature_scalars_are_refused() {
        let key = Sm2SecretKey::generate();
        let sig = key.sign(DEFAULT_ID, b"m").unwrap();
        let n: [u8; 32] = [
            0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0x72, 0x03, 0xdf, 0x6b, 0x21, 0xc6, 0x05, 0x2b, 0x53, 0xbb, 0xf4, 0x09,
            0x39, 0xd5, 0x41, 0x23,
        ];
        for (at, value) in [
            (0, [0u8; 32]),
            (32, [0u8; 32]),
            (0, n),
            (32, n),
            (0, [0xff; 32]),
        ] {
            let mut bad = sig;
            bad[at..at + 32].copy_from_slice(&value);
            assert!(!key.public().verify(DEFAULT_ID, b"m", &bad));
        }
        assert!(!key.public().verify(DEFAULT_ID, b"m", &sig[..63]));
        assert!(key.public().verify(DEFAULT_ID, b"m", &sig));
    }

    #[test]
    fn a_signature_with_any_bit_flipped_is_refused_as_the_sm2_crate_refuses_it() {
        let key = Sm2SecretKey::generate();
        let sig = key.sign(DEFAULT_ID, b"m").unwrap();
        let reference = sm2::dsa::VerifyingKey::new(DEFAULT_ID, key.public).unwrap();
        for bit in 0..sig.len() * 8 {
            let mut bad = sig;
            bad[bit / 8] ^= 1 << (bit % 8);
            let theirs = sm2::dsa::Signature::from_slice(&bad)
                .is_ok_and(|b| reference.verify(b"m", &b).is_ok());
            assert!(!key.public().verify(DEFAULT_ID, b"m", &bad), "bit {bit}");
            assert!(!theirs, "bit {bit}");
        }
        // s = n - r: t = r + s is zero (B5).
        let (r, _) = sm2::dsa::Signature::from_slice(&sig)
            .unwrap()
            .split_scalars();
        let mut t_zero = sig;
        t_zero[32..].copy_from_slice(&(-*r).to_bytes());
        assert!(!key.public().verify(DEFAULT_ID, b"m", &t_zero));
    }

    #[test]
    fn the_curve_constants_z_a_hashes_are_the_crates() {
        assert_eq!(
            coordinates(&AffinePoint::GENERATOR),
            Some((GENERATOR_X, GENERATOR_Y))
        );
        // a = p - 3.
        let mut a = [0xff; 32];
        a[3] = 0xfe;
        a[20..24].copy_from_slice(&[0; 4]);
        a[31] = 0xfc;
        assert_eq!(a, CURVE_A);
    }

    #[test]
    fn the_cached_public_key_is_the_private_keys() {
        let key = Sm2SecretKey::generate();
        let again = Sm2SecretKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(key.public(), again.public());
        assert_eq!(key.public.as_affine(), key.secret.public_key().as_affine());
    }
}
