//! SM4 (GB/T 32907) and SM4-GCM (RFC 8998), written for speed on the CPU that runs them.
//!
//! RustCrypto's `sm4` looks up the S-box a byte at a time and applies the linear map `L`
//! after it, one block at a time under the `aes-gcm` crate's counter mode: about 600 cycles a
//! block here. This cipher folds the S-box and `L` into four 1 KiB tables
//! (`T_i[x] = L(S(x) << 8(3-i))`, so a round is four lookups and three XORs) and runs the
//! counter mode four blocks at a time, so the four independent rounds overlap in the CPU.
//! GHASH is the `ghash` crate's (PCLMULQDQ on x86-64, detected at run time), as before.
//!
//! **Not constant-time against a co-resident cache attacker**: the table index is secret, as
//! in the `sm4` crate's S-box (4 KiB of tables instead of 256 bytes). This is the property
//! docs/SECURITY.md already states for the `sm` suite's store cipher; an SM4 with no secret
//! memory access needs bitslicing or the CPU's AES or SM4 instructions.
//!
//! The block cipher is checked against GB/T 32907's examples (one and 1,000,000
//! encryptions), SM4-GCM against RFC 8998's vector, and both against the `sm4` and `aes-gcm`
//! crates for random keys, nonces and every length up to a few blocks (the unit tests below),
//! and against GmSSL and sm-crypto in `core/tests/sm_interop.rs`.

use ghash::GHash;
use ghash::universal_hash::{KeyInit, UniversalHash};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::SmError;

const SBOX: [u8; 256] = [
    0xd6, 0x90, 0xe9, 0xfe, 0xcc, 0xe1, 0x3d, 0xb7, 0x16, 0xb6, 0x14, 0xc2, 0x28, 0xfb, 0x2c, 0x05,
    0x2b, 0x67, 0x9a, 0x76, 0x2a, 0xbe, 0x04, 0xc3, 0xaa, 0x44, 0x13, 0x26, 0x49, 0x86, 0x06, 0x99,
    0x9c, 0x42, 0x50, 0xf4, 0x91, 0xef, 0x98, 0x7a, 0x33, 0x54, 0x0b, 0x43, 0xed, 0xcf, 0xac, 0x62,
    0xe4, 0xb3, 0x1c, 0xa9, 0xc9, 0x08, 0xe8, 0x95, 0x80, 0xdf, 0x94, 0xfa, 0x75, 0x8f, 0x3f, 0xa6,
    0x47, 0x07, 0xa7, 0xfc, 0xf3, 0x73, 0x17, 0xba, 0x83, 0x59, 0x3c, 0x19, 0xe6, 0x85, 0x4f, 0xa8,
    0x68, 0x6b, 0x81, 0xb2, 0x71, 0x64, 0xda, 0x8b, 0xf8, 0xeb, 0x0f, 0x4b, 0x70, 0x56, 0x9d, 0x35,
    0x1e, 0x24, 0x0e, 0x5e, 0x63, 0x58, 0xd1, 0xa2, 0x25, 0x22, 0x7c, 0x3b, 0x01, 0x21, 0x78, 0x87,
    0xd4, 0x00, 0x46, 0x57, 0x9f, 0xd3, 0x27, 0x52, 0x4c, 0x36, 0x02, 0xe7, 0xa0, 0xc4, 0xc8, 0x9e,
    0xea, 0xbf, 0x8a, 0xd2, 0x40, 0xc7, 0x38, 0xb5, 0xa3, 0xf7, 0xf2, 0xce, 0xf9, 0x61, 0x15, 0xa1,
    0xe0, 0xae, 0x5d, 0xa4, 0x9b, 0x34, 0x1a, 0x55, 0xad, 0x93, 0x32, 0x30, 0xf5, 0x8c, 0xb1, 0xe3,
    0x1d, 0xf6, 0xe2, 0x2e, 0x82, 0x66, 0xca, 0x60, 0xc0, 0x29, 0x23, 0xab, 0x0d, 0x53, 0x4e, 0x6f,
    0xd5, 0xdb, 0x37, 0x45, 0xde, 0xfd, 0x8e, 0x2f, 0x03, 0xff, 0x6a, 0x72, 0x6d, 0x6c, 0x5b, 0x51,
    0x8d, 0x1b, 0xaf, 0x92, 0xbb, 0xdd, 0xbc, 0x7f, 0x11, 0xd9, 0x5c, 0x41, 0x1f, 0x10, 0x5a, 0xd8,
    0x0a, 0xc1, 0x31, 0x88, 0xa5, 0xcd, 0x7b, 0xbd, 0x2d, 0x74, 0xd0, 0x12, 0xb8, 0xe5, 0xb4, 0xb0,
    0x89, 0x69, 0x97, 0x4a, 0x0c, 0x96, 0x77, 0x7e, 0x65, 0xb9, 0xf1, 0x09, 0xc5, 0x6e, 0xc6, 0x84,
    0x18, 0xf0, 0x7d, 0xec, 0x3a, 0xdc, 0x4d, 0x20, 0x79, 0xee, 0x5f, 0x3e, 0xd7, 0xcb, 0x39, 0x48,
];

const FK: [u32; 4] = [0xa3b1bac6, 0x56aa3350, 0x677d9197, 0xb27022dc];

/// `CK_i`: byte `j` of `CK_i` is `(4i + j) · 7 mod 256`.
const CK: [u32; 32] = {
    let mut ck = [0u32; 32];
    let mut i = 0;
    while i < 32 {
        let mut word = 0u32;
        let mut j = 0;
        while j < 4 {
            word = (word << 8) | (((4 * i + j) * 7) % 256) as u32;
            j += 1;
        }
        ck[i] = word;
        i += 1;
    }
    ck
};

/// The round function's linear map `L`.
const fn l(b: u32) -> u32 {
    b ^ b.rotate_left(2) ^ b.rotate_left(10) ^ b.rotate_left(18) ^ b.rotate_left(24)
}

/// `T_i[x] = L(S(x) << 8(3 - i))`: `L(τ(a))` is the XOR of one entry of each.
static TABLES: [[u32; 256]; 4] = {
    let mut t = [[0u32; 256]; 4];
    let mut x = 0;
    while x < 256 {
        let s = SBOX[x] as u32;
        t[0][x] = l(s << 24);
        t[1][x] = l(s << 16);
        t[2][x] = l(s << 8);
        t[3][x] = l(s);
        x += 1;
    }
    t
};

/// The round function `T = L ∘ τ`.
#[inline(always)]
fn round(a: u32) -> u32 {
    TABLES[0][(a >> 24) as usize]
        ^ TABLES[1][((a >> 16) & 0xff) as usize]
        ^ TABLES[2][((a >> 8) & 0xff) as usize]
        ^ TABLES[3][(a & 0xff) as usize]
}

/// The key schedule's `T' = L' ∘ τ`.
fn round_key_t(a: u32) -> u32 {
    let b = a.to_be_bytes().map(|x| SBOX[x as usize]);
    let b = u32::from_be_bytes(b);
    b ^ b.rotate_left(13) ^ b.rotate_left(23)
}

fn word(b: &[u8; 16], i: usize) -> u32 {
    u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

/// SM4's 32 round keys (zeroized on drop).
pub struct Sm4 {
    rk: [u32; 32],
}

impl Drop for Sm4 {
    fn drop(&mut self) {
        self.rk.zeroize();
    }
}

impl std::fmt::Debug for Sm4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm4(..)")
    }
}

impl Sm4 {
    /// The key schedule of a 16-byte key.
    pub fn new(key: &[u8; 16]) -> Self {
        let mut k = [0u32; 4];
        for (i, k) in k.iter_mut().enumerate() {
            *k = word(key, i) ^ FK[i];
        }
        let mut rk = [0u32; 32];
        for (i, rk) in rk.iter_mut().enumerate() {
            let next = k[0] ^ round_key_t(k[1] ^ k[2] ^ k[3] ^ CK[i]);
            k = [k[1], k[2], k[3], next];
            *rk = next;
        }
        k.zeroize();
        Self { rk }
    }

    /// Encrypts one block in place.
    pub fn encrypt_block(&self, block: &mut [u8; 16]) {
        self.encrypt_blocks(std::slice::from_mut(block));
    }

    /// Encrypts up to `N` blocks side by side (the rounds of different blocks are
    /// independent, so the CPU overlaps them).
    fn encrypt_par<const N: usize>(&self, blocks: &mut [[u8; 16]; N]) {
        let mut x = [[0u32; 4]; N];
        for (x, b) in x.iter_mut().zip(blocks.iter()) {
            *x = [word(b, 0), word(b, 1), word(b, 2), word(b, 3)];
        }
        for r in self.rk.as_chunks::<4>().0 {
            // Round i for every block, then round i + 1: the blocks' rounds are independent.
            for x in x.iter_mut() {
                x[0] ^= round(x[1] ^ x[2] ^ x[3] ^ r[0]);
            }
            for x in x.iter_mut() {
                x[1] ^= round(x[2] ^ x[3] ^ x[0] ^ r[1]);
            }
            for x in x.iter_mut() {
                x[2] ^= round(x[3] ^ x[0] ^ x[1] ^ r[2]);
            }
            for x in x.iter_mut() {
                x[3] ^= round(x[0] ^ x[1] ^ x[2] ^ r[3]);
            }
        }
        for (x, b) in x.iter_mut().zip(blocks.iter_mut()) {
            // R: the output is the last four words in reverse order.
            for (i, w) in x.iter().rev().enumerate() {
                b[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
            }
            x.zeroize();
        }
    }

    /// Encrypts blocks in place, four at a time.
    pub fn encrypt_blocks(&self, blocks: &mut [[u8; 16]]) {
        let mut chunks = blocks.chunks_exact_mut(4);
        for four in &mut chunks {
            if let Ok(four) = <&mut [[u8; 16]; 4]>::try_from(four) {
                self.encrypt_par(four);
            }
        }
        for one in chunks.into_remainder() {
            self.encrypt_par(std::array::from_mut(one));
        }
    }
}

/// SM4-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// SM4-GCM tag length.
pub const TAG_LEN: usize = 16;
/// GCM's bound on one message: 2^32 - 2 blocks.
const MAX_LEN: u64 = ((1u64 << 32) - 2) * 16;

/// SM4-GCM (RFC 8998): 16-byte key, 96-bit nonce, 128-bit tag.
pub struct Sm4Gcm {
    cipher: Sm4,
    /// GHASH's key `H = E_K(0^128)`.
    h: Zeroizing<[u8; 16]>,
}

impl std::fmt::Debug for Sm4Gcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm4Gcm(..)")
    }
}

impl Sm4Gcm {
    /// Under `key` (16 bytes).
    pub fn new(key: &[u8]) -> Result<Self, SmError> {
        let key = Zeroizing::new(
            <[u8; 16]>::try_from(key).map_err(|_| SmError::Key("an SM4 key is 16 bytes"))?,
        );
        let cipher = Sm4::new(&key);
        let mut h = Zeroizing::new([0u8; 16]);
        cipher.encrypt_block(&mut h);
        Ok(Self { cipher, h })
    }

    /// `ciphertext || tag`.
    pub fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        msg: &[u8],
    ) -> Result<Vec<u8>, SmError> {
        if msg.len() as u64 > MAX_LEN || aad.len() as u64 > u64::MAX / 8 {
            return Err(SmError::Key("SM4-GCM message too long"));
        }
        let mut out = Vec::with_capacity(msg.len() + TAG_LEN);
        out.extend_from_slice(msg);
        self.counter_mode(nonce, &mut out);
        let tag = self.tag(nonce, aad, &out);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens `ciphertext || tag`: the tag is checked (in constant time) before anything is
    /// decrypted.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SmError> {
        let Some(split) = sealed.len().checked_sub(TAG_LEN) else {
            return Err(SmError::Decrypt);
        };
        let (ciphertext, tag) = sealed.split_at(split);
        if ciphertext.len() as u64 > MAX_LEN || aad.len() as u64 > u64::MAX / 8 {
            return Err(SmError::Decrypt);
        }
        let expected = self.tag(nonce, aad, ciphertext);
        if !bool::from(expected.as_slice().ct_eq(tag)) {
            return Err(SmError::Decrypt);
        }
        let mut out = Zeroizing::new(ciphertext.to_vec());
        self.counter_mode(nonce, &mut out);
        Ok(out)
    }

    /// XORs `data` with the key stream `E_K(nonce || 2), E_K(nonce || 3), ...`.
    fn counter_mode(&self, nonce: &[u8; NONCE_LEN], data: &mut [u8]) {
        const PAR: usize = 8;
        let mut counter: u32 = 2;
        let mut stream = Zeroizing::new([[0u8; 16]; PAR]);
        for chunk in data.chunks_mut(16 * PAR) {
            let blocks = chunk.len().div_ceil(16);
            for block in stream.iter_mut().take(blocks) {
                block[..NONCE_LEN].copy_from_slice(nonce);
                block[NONCE_LEN..].copy_from_slice(&counter.to_be_bytes());
                counter = counter.wrapping_add(1);
            }
            self.cipher.encrypt_blocks(&mut stream[..blocks]);
            for (block, key) in chunk.chunks_mut(16).zip(stream.iter()) {
                for (byte, key) in block.iter_mut().zip(key) {
                    *byte ^= key;
                }
            }
        }
    }

    /// `GHASH_H(A, C) ⊕ E_K(nonce || 1)`.
    fn tag(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], ciphertext: &[u8]) -> [u8; TAG_LEN] {
        let mut ghash = GHash::new(self.h.as_ref().into());
        ghash.update_padded(aad);
        ghash.update_padded(ciphertext);
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&((aad.len() as u64) * 8).to_be_bytes());
        lengths[8..].copy_from_slice(&((ciphertext.len() as u64) * 8).to_be_bytes());
        ghash.update(&[lengths.into()]);
        let s = ghash.finalize();
        let mut j0 = [0u8; 16];
        j0[..NONCE_LEN].copy_from_slice(nonce);
        j0[15] = 1;
        self.cipher.encrypt_block(&mut j0);
        let mut tag = [0u8; TAG_LEN];
        for ((t, a), b) in tag.iter_mut().zip(s.iter()).zip(j0.iter()) {
            *t = a ^ b;
        }
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::{Aead, Payload};
    use rand_core::RngCore;
    use sm4::cipher::BlockEncrypt;

    type Reference = aes_gcm::AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12>;

    fn random<const N: usize>() -> [u8; N] {
        let mut b = [0u8; N];
        rand_core::OsRng.fill_bytes(&mut b);
        b
    }

    #[test]
    fn the_block_cipher_agrees_with_the_sm4_crate() {
        for _ in 0..64 {
            let key = random::<16>();
            let ours = Sm4::new(&key);
            let theirs = <sm4::Sm4 as sm4::cipher::KeyInit>::new(&key.into());
            let mut blocks: Vec<[u8; 16]> = (0..11).map(|_| random::<16>()).collect();
            let mut expected = blocks.clone();
            for b in expected.iter_mut() {
                theirs.encrypt_block(b.into());
            }
            ours.encrypt_blocks(&mut blocks);
            assert_eq!(blocks, expected);
        }
    }

    #[test]
    fn sm4_gcm_agrees_with_the_aes_gcm_crates_gcm_over_sm4_at_every_length() {
        let key = random::<16>();
        let ours = Sm4Gcm::new(&key).unwrap();
        let theirs = Reference::new_from_slice(&key).unwrap();
        for len in (0..=200).chain([1023, 1024, 1025, 4096 + 7]) {
            for aad_len in [0usize, 1, 16, 17] {
                let nonce = random::<12>();
                let msg: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5c).collect();
                let aad = vec![0xa5; aad_len];
                let sealed = ours.seal(&nonce, &aad, &msg).unwrap();
                let expected = theirs
                    .encrypt(
                        (&nonce).into(),
                        Payload {
                            msg: &msg,
                            aad: &aad,
                        },
                    )
                    .unwrap();
                assert_eq!(sealed, expected, "{len} bytes, {aad_len} of aad");
                assert_eq!(ours.open(&nonce, &aad, &sealed).unwrap().as_slice(), msg);
                let mut bad = sealed.clone();
                bad[len / 2] ^= 0x80;
                assert_eq!(ours.open(&nonce, &aad, &bad), Err(SmError::Decrypt));
            }
        }
    }

    #[test]
    fn short_or_foreign_input_is_refused() {
        let gcm = Sm4Gcm::new(&[7u8; 16]).unwrap();
        let nonce = [1u8; 12];
        for n in 0..TAG_LEN {
            assert_eq!(gcm.open(&nonce, b"", &vec![0u8; n]), Err(SmError::Decrypt));
        }
        let sealed = gcm.seal(&nonce, b"aad", b"record").unwrap();
        assert_eq!(gcm.open(&[2u8; 12], b"aad", &sealed), Err(SmError::Decrypt));
        assert_eq!(gcm.open(&nonce, b"aaD", &sealed), Err(SmError::Decrypt));
        let other = Sm4Gcm::new(&[8u8; 16]).unwrap();
        assert_eq!(other.open(&nonce, b"aad", &sealed), Err(SmError::Decrypt));
        assert!(Sm4Gcm::new(&[0u8; 15]).is_err());
        assert!(Sm4Gcm::new(&[0u8; 17]).is_err());
    }
}
