//! SM4 (GB/T 32907) and SM4-GCM (RFC 8998), in constant time.
//!
//! The S-box is computed by a boolean circuit ([`circuit`]), never looked up, so no memory
//! access and no branch depends on the key or the data (a table-driven SM4, as RustCrypto's
//! `sm4` and this module's earlier version, leaks its table indexes to a cache-timing
//! attacker sharing the CPU). Blocks are encrypted two ways, chosen by their count alone:
//! - **bitsliced**, 64 blocks per pass: bit `b` of word `w` of every block in one `u64`, so a
//!   round is the circuit four times on 8 planes each and `L` as XORs of planes (a rotation
//!   renames them); blocks go in and out by a 64×64 bit transpose. A pass costs the same for
//!   1 block as for 64.
//! - **SWAR**, two blocks at a time, for up to [`SWAR_MAX`] blocks: the circuit on the eight
//!   bytes of two words packed in a `u64`, each round.
//!
//! - **on CPU instructions**, where the CPU has AVX-512 and GFNI: [`baomi_accel`], up to 80
//!   blocks a pass, the S-box two GF(2^8) affine instructions; SM4-GCM's counter mode there
//!   keeps the key stream in registers, and GHASH runs on carry-less multiplies, up to 64
//!   blocks a reduction. The portable ways above serve every other CPU (phones' ARM cores
//!   included) and are tested on this one too.
//!
//! The S-box's constants are folded into the round keys ([`round_key_offset`]). SM4-GCM's
//! counter mode encrypts the tag's mask `E_K(nonce || 1)` in its first pass, so a message of
//! up to 63 blocks is one pass, and in portable Rust checks the tag before any of the message
//! is decrypted; on CPU instructions it decrypts first and wipes the buffer if the check
//! fails (a failed open leaves ciphertext or zeros, never plaintext, either way).
//! GHASH is `core/accel`'s where the CPU has carry-less multiplies, else the `ghash` crate's
//! (constant-time software).
//!
//! Cost (docs/BENCHMARKS.md, "SM4 in constant time" and "SM4-GCM on CPU instructions"): a
//! bitsliced pass takes less than the old table version took for 64 blocks (0.86x), a lone
//! block about five times its one; on CPU instructions 1 KiB of SM4-GCM takes about 0.14x
//! what the portable code does, 2.0-2.4x AES-256-GCM on AES-NI.
//!
//! The block cipher is checked against GB/T 32907's examples (one and 1,000,000
//! encryptions), SM4-GCM against RFC 8998's vector, and both against the `sm4` and `aes-gcm`
//! crates for random keys, nonces, every count of blocks around both ways' edges and every
//! length up to a few passes (the unit tests below), and against GmSSL and sm-crypto in
//! `core/tests/sm_interop.rs`.

use ghash::GHash;
use ghash::universal_hash::{KeyInit, UniversalHash};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::SmError;

mod circuit;

/// The S-box as GB/T 32907 tabulates it: what the circuit is checked against (`circuit.py`
/// and the tests), never indexed by the cipher.
#[cfg(test)]
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

/// The key schedule's linear map `L'`.
const fn l_key(b: u32) -> u32 {
    b ^ b.rotate_left(13) ^ b.rotate_left(23)
}

/// `τ'(a) = τ(a ⊕ IN) ⊕ OUT` (the S-box on each byte, its constants left to the caller) of
/// two words at once, by the circuit on the eight bytes of a `u64` (SWAR: lane `k` is bit
/// `8k` of each of the circuit's words).
#[inline(always)]
fn tau2(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) | u64::from(b) << 32;
    let s = circuit::sbox([p, p >> 1, p >> 2, p >> 3, p >> 4, p >> 5, p >> 6, p >> 7]);
    const LANES: u64 = 0x0101_0101_0101_0101;
    let out = (s[0] & LANES)
        | (s[1] & LANES) << 1
        | (s[2] & LANES) << 2
        | (s[3] & LANES) << 3
        | (s[4] & LANES) << 4
        | (s[5] & LANES) << 5
        | (s[6] & LANES) << 6
        | (s[7] & LANES) << 7;
    (out as u32, (out >> 32) as u32)
}

/// A byte in each byte of a word.
const fn bytes(b: u8) -> u32 {
    b as u32 * 0x0101_0101
}

/// `τ`, the S-box on each byte of a word.
fn tau(a: u32) -> u32 {
    tau2(a ^ bytes(circuit::IN), 0).0 ^ bytes(circuit::OUT)
}

/// What round `i`'s key is XORed with, so that the rounds can run on `τ'`. The round's input
/// needs `⊕ IN` in each byte. Its S-box output is off by `OUT` in each byte, so the word it
/// makes is off by `K = L(OUT in each byte)`, and so is every word that round's input reads
/// from: word `j` (the key's four counting as 0-3) is off by `K` when `j / 4` is odd (each
/// word is the one four before it, XORed with a round's output: `K ⊕ K` cancels), and round
/// `i` reads words `i + 1`, `i + 2` and `i + 3`. The output words (32 to 35) are off by
/// nothing.
const fn round_key_offset(i: usize) -> u32 {
    let k = l(bytes(circuit::OUT));
    let mut off = bytes(circuit::IN);
    let mut j = i + 1;
    while j <= i + 3 {
        // Word j (counting the key's four as 0-3) was made by round j - 4.
        if j >= 4 && (j / 4) % 2 == 1 {
            off ^= k;
        }
        j += 1;
    }
    off
}

fn word(b: &[u8; 16], i: usize) -> u32 {
    u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

/// Blocks up to which [`Sm4::encrypt_blocks`] computes two blocks at a time (SWAR) rather than
/// 64 side by side (bitsliced, whose cost does not depend on how many of its lanes are used).
const SWAR_MAX: usize = 8;

/// SM4's 32 round keys, each with the S-box's constants folded in, as words and as bit planes
/// (zeroized on drop).
pub struct Sm4 {
    /// GB/T 32907's round keys, for [`baomi_accel`]'s SM4 on CPU instructions.
    keys: [u32; 32],
    rk: [u32; 32],
    /// `planes[i][b]`: bit `b` of round key `i` in every lane (`0` or `!0`).
    planes: Box<[[u64; 32]; 32]>,
}

impl Drop for Sm4 {
    fn drop(&mut self) {
        self.keys.zeroize();
        self.rk.zeroize();
        self.planes.as_flattened_mut().zeroize();
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
        let mut keys = [0u32; 32];
        let mut rk = [0u32; 32];
        for (i, (keys, rk)) in keys.iter_mut().zip(rk.iter_mut()).enumerate() {
            let next = k[0] ^ l_key(tau(k[1] ^ k[2] ^ k[3] ^ CK[i]));
            k = [k[1], k[2], k[3], next];
            *keys = next;
            *rk = next ^ round_key_offset(i);
        }
        k.zeroize();
        let mut planes = Box::new([[0u64; 32]; 32]);
        for (planes, rk) in planes.iter_mut().zip(rk) {
            for (b, plane) in planes.iter_mut().enumerate() {
                *plane = 0u64.wrapping_sub(u64::from(rk >> b & 1));
            }
        }
        Self { keys, rk, planes }
    }

    /// Encrypts one block in place.
    pub fn encrypt_block(&self, block: &mut [u8; 16]) {
        self.encrypt_blocks(std::slice::from_mut(block));
    }

    /// Encrypts blocks in place: on the CPU's SM4-capable instructions where it has them
    /// ([`baomi_accel::sm4_encrypt_blocks`]: AVX-512 and GFNI, up to 80 blocks a pass), else
    /// [`Self::encrypt_blocks_portable`]. None of the ways reads memory at a secret address.
    pub fn encrypt_blocks(&self, blocks: &mut [[u8; 16]]) {
        if !baomi_accel::sm4_encrypt_blocks(&self.keys, blocks) {
            self.encrypt_blocks_portable(blocks);
        }
    }

    /// Encrypts blocks in place in portable Rust: 64 at a time bitsliced, a few two at a
    /// time. Which way depends only on how many blocks there are.
    pub fn encrypt_blocks_portable(&self, blocks: &mut [[u8; 16]]) {
        for chunk in blocks.chunks_mut(64) {
            if chunk.len() > SWAR_MAX {
                self.encrypt_sliced(chunk);
            } else {
                for pair in chunk.chunks_mut(2) {
                    self.encrypt_pair(pair);
                }
            }
        }
    }

    /// One or two blocks, their rounds' S-boxes by [`tau2`].
    fn encrypt_pair(&self, blocks: &mut [[u8; 16]]) {
        let mut x = [[0u32; 4]; 2];
        for (x, b) in x.iter_mut().zip(blocks.iter()) {
            *x = [word(b, 0), word(b, 1), word(b, 2), word(b, 3)];
        }
        for (i, rk) in self.rk.iter().enumerate() {
            let [a, b] = &mut x;
            let (sa, sb) = tau2(
                a[(i + 1) & 3] ^ a[(i + 2) & 3] ^ a[(i + 3) & 3] ^ rk,
                b[(i + 1) & 3] ^ b[(i + 2) & 3] ^ b[(i + 3) & 3] ^ rk,
            );
            a[i & 3] ^= l(sa);
            b[i & 3] ^= l(sb);
        }
        for (x, b) in x.iter_mut().zip(blocks.iter_mut()) {
            // R: the output is the last four words in reverse order.
            for (i, w) in x.iter().rev().enumerate() {
                b[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
            }
        }
        x.zeroize();
    }

    /// Up to 64 blocks bitsliced: `x[w][b]` holds bit `b` of word `w` of every block (lane
    /// `j` is block `j`), so a round is 32 + 32 XORs of planes, four S-box circuits, and `L`
    /// as XORs of planes (a rotation only renames them).
    fn encrypt_sliced(&self, blocks: &mut [[u8; 16]]) {
        let mut x = [[0u64; 32]; 4];
        let mut rows = [0u64; 64];
        for half in 0..2 {
            rows = [0; 64];
            for (row, b) in rows.iter_mut().zip(blocks.iter()) {
                *row = u64::from(word(b, 2 * half)) << 32 | u64::from(word(b, 2 * half + 1));
            }
            transpose(&mut rows);
            x[2 * half + 1].copy_from_slice(&rows[..32]);
            x[2 * half].copy_from_slice(&rows[32..]);
        }
        for rounds in self.planes.as_chunks::<4>().0 {
            let [a, b, c, d] = &mut x;
            sliced_round(a, b, c, d, &rounds[0]);
            sliced_round(b, c, d, a, &rounds[1]);
            sliced_round(c, d, a, b, &rounds[2]);
            sliced_round(d, a, b, c, &rounds[3]);
        }
        // R: the output words are x[3], x[2], x[1], x[0].
        for half in 0..2 {
            rows[..32].copy_from_slice(&x[2 - 2 * half]);
            rows[32..].copy_from_slice(&x[3 - 2 * half]);
            transpose(&mut rows);
            for (row, b) in rows.iter().zip(blocks.iter_mut()) {
                b[8 * half..8 * half + 8].copy_from_slice(&row.to_be_bytes());
            }
        }
        x.as_flattened_mut().zeroize();
        rows.zeroize();
    }
}

/// One bitsliced round: `x0 ^= L(τ(x1 ^ x2 ^ x3 ^ rk))`.
#[inline(always)]
fn sliced_round(
    x0: &mut [u64; 32],
    x1: &[u64; 32],
    x2: &[u64; 32],
    x3: &[u64; 32],
    rk: &[u64; 32],
) {
    let mut t = [0u64; 32];
    for b in 0..32 {
        t[b] = x1[b] ^ x2[b] ^ x3[b] ^ rk[b];
    }
    // The S-box's planes twice over, so that `L`'s rotations read without wrapping.
    let mut s = [0u64; 64];
    for (s, t) in s
        .as_chunks_mut::<8>()
        .0
        .iter_mut()
        .zip(t.as_chunks::<8>().0)
    {
        *s = circuit::sbox(*t);
    }
    s.copy_within(..32, 32);
    // Bit b of rotl(s, r) is bit (b - r) mod 32 of s: plane b + 32 - r of the doubled planes.
    for b in 0..32 {
        x0[b] ^= s[b] ^ s[b + 30] ^ s[b + 22] ^ s[b + 14] ^ s[b + 8];
    }
}

/// Transposes a 64×64 bit matrix in place (bit `c` of `a[r]` trades with bit `r` of `a[c]`):
/// each step swaps the off-diagonal blocks of every block of the step before.
fn transpose(a: &mut [u64; 64]) {
    swap_blocks::<32>(a, 0x0000_0000_FFFF_FFFF);
    swap_blocks::<16>(a, 0x0000_FFFF_0000_FFFF);
    swap_blocks::<8>(a, 0x00FF_00FF_00FF_00FF);
    swap_blocks::<4>(a, 0x0F0F_0F0F_0F0F_0F0F);
    swap_blocks::<2>(a, 0x3333_3333_3333_3333);
    swap_blocks::<1>(a, 0x5555_5555_5555_5555);
}

/// In every `2J × 2J` block, swaps the top right `J × J` block with the bottom left one.
#[inline(always)]
fn swap_blocks<const J: usize>(a: &mut [u64; 64], mask: u64) {
    for rows in a.chunks_exact_mut(2 * J) {
        let (top, bottom) = rows.split_at_mut(J);
        for (t, b) in top.iter_mut().zip(bottom) {
            let swap = (*t >> J ^ *b) & mask;
            *t ^= swap << J;
            *b ^= swap;
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
    /// GHASH on the CPU's carry-less multiply, up to 64 blocks a reduction, where it has one.
    fast_ghash: Option<baomi_accel::GhashKey>,
    /// Whether counter mode may use [`baomi_accel::sm4_gcm_ctr`] (always, but in tests of the
    /// portable way).
    fast_ctr: bool,
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
        let fast_ghash = baomi_accel::GhashKey::new(&h);
        Ok(Self {
            cipher,
            h,
            fast_ghash,
            fast_ctr: true,
        })
    }

    /// As [`Self::new`], in portable Rust only (to test both ways on one CPU).
    #[cfg(test)]
    fn new_portable(key: &[u8]) -> Result<Self, SmError> {
        let mut gcm = Self::new(key)?;
        gcm.fast_ghash = None;
        gcm.fast_ctr = false;
        Ok(gcm)
    }

    /// `ciphertext || tag`.
    pub fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        msg: &[u8],
    ) -> Result<Vec<u8>, SmError> {
        let mut out = Vec::with_capacity(msg.len() + TAG_LEN);
        out.extend_from_slice(msg);
        if let Err(e) = self.seal_in_place_append_tag(nonce, aad, &mut out) {
            out.zeroize();
            return Err(e);
        }
        Ok(out)
    }

    /// Seals `buf` in place: encrypts it and appends the tag (as ring's
    /// `seal_in_place_append_tag`). A message over GCM's bound is refused untouched.
    pub fn seal_in_place_append_tag(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), SmError> {
        if buf.len() as u64 > MAX_LEN || aad.len() as u64 > u64::MAX / 8 {
            return Err(SmError::Key("SM4-GCM message too long"));
        }
        let mut mask = Zeroizing::new([0u8; 16]);
        self.counter_mode(nonce, buf, |m| {
            *mask = *m;
            Ok(())
        })?;
        let tag = xor16(&self.ghash(aad, buf), &mask);
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Opens `ciphertext || tag` into a new buffer, wiped on drop.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SmError> {
        let mut out = Zeroizing::new(sealed.to_vec());
        let len = self.open_in_place(nonce, aad, &mut out)?.len();
        out.truncate(len);
        Ok(out)
    }

    /// Opens `ciphertext || tag` in place and returns the plaintext, the front of `buf` (as
    /// ring's `open_in_place`). The tag is checked in constant time; if it fails, `buf` holds
    /// its ciphertext (portable Rust checks before it decrypts) or zeros (on CPU
    /// instructions the key stream is XORed from registers first, then the result wiped),
    /// never plaintext.
    pub fn open_in_place<'a>(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], SmError> {
        let Some(split) = buf.len().checked_sub(TAG_LEN) else {
            return Err(SmError::Decrypt);
        };
        let (ciphertext, tag) = buf.split_at_mut(split);
        if ciphertext.len() as u64 > MAX_LEN || aad.len() as u64 > u64::MAX / 8 {
            return Err(SmError::Decrypt);
        }
        let s = self.ghash(aad, ciphertext);
        self.counter_mode(nonce, ciphertext, |mask| {
            let expected = xor16(&s, mask);
            if bool::from(expected.as_slice().ct_eq(tag)) {
                Ok(())
            } else {
                Err(SmError::Decrypt)
            }
        })?;
        Ok(ciphertext)
    }

    /// The key stream from counter 1: `check` gets the first block, `E_K(nonce || 1)` (the
    /// tag's mask), and `data` is XORed with the rest, `E_K(nonce || 2), E_K(nonce || 3), ...`.
    /// On CPU instructions ([`baomi_accel::sm4_gcm_ctr`]) in passes of up to 80 blocks, the
    /// key stream never in memory, and `data` zeroized if `check` fails. Else in passes of up
    /// to 64 blocks, `check` before any of `data` is touched; the mask rides in the first
    /// pass, so a message of up to 63 blocks costs one.
    fn counter_mode(
        &self,
        nonce: &[u8; NONCE_LEN],
        data: &mut [u8],
        check: impl FnOnce(&[u8; 16]) -> Result<(), SmError>,
    ) -> Result<(), SmError> {
        // On CPU instructions the key stream stays in registers, so the data is XORed before
        // the mask is checked: on a failed check it is wiped here, and `open` drops it.
        let mut mask = Zeroizing::new([0u8; 16]);
        if self.fast_ctr && baomi_accel::sm4_gcm_ctr(&self.cipher.keys, nonce, &mut mask, data) {
            return check(&mask).inspect_err(|_| data.zeroize());
        }
        const PASS: usize = 64;
        let mut stream = Zeroizing::new([[0u8; 16]; PASS]);
        let mut counter: u32 = 1;
        let mut check = Some(check);
        let mut rest = data;
        loop {
            let mask = usize::from(check.is_some());
            let blocks = (mask + rest.len().div_ceil(16)).min(PASS);
            for block in stream.iter_mut().take(blocks) {
                block[..NONCE_LEN].copy_from_slice(nonce);
                block[NONCE_LEN..].copy_from_slice(&counter.to_be_bytes());
                counter = counter.wrapping_add(1);
            }
            self.cipher.encrypt_blocks_portable(&mut stream[..blocks]);
            if let Some(check) = check.take() {
                check(&stream[0])?;
            }
            let (now, later) = rest.split_at_mut(((blocks - mask) * 16).min(rest.len()));
            for (chunk, key) in now.chunks_mut(16).zip(&stream[mask..blocks]) {
                for (byte, key) in chunk.iter_mut().zip(key) {
                    *byte ^= key;
                }
            }
            rest = later;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    /// `GHASH_H(A, C)`.
    fn ghash(&self, aad: &[u8], ciphertext: &[u8]) -> [u8; 16] {
        if let Some(key) = &self.fast_ghash {
            return key.ghash(aad, ciphertext);
        }
        let mut ghash = GHash::new(self.h.as_ref().into());
        ghash.update_padded(aad);
        ghash.update_padded(ciphertext);
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&((aad.len() as u64) * 8).to_be_bytes());
        lengths[8..].copy_from_slice(&((ciphertext.len() as u64) * 8).to_be_bytes());
        ghash.update(&[lengths.into()]);
        ghash.finalize().into()
    }
}

fn xor16(a: &[u8; 16], b: &[u8; 16]) -> [u8; 16] {
    std::array::from_fn(|i| a[i] ^ b[i])
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
    fn the_circuit_is_the_s_box() {
        let shifted = |y: u8| SBOX[(y ^ circuit::IN) as usize] ^ circuit::OUT;
        // Bitsliced: lane j of the u64 planes is byte 64c + j.
        for c in 0..4 {
            let bytes: Vec<u8> = (0..64).map(|j| (64 * c + j) as u8).collect();
            let planes: [u64; 8] = std::array::from_fn(|i| {
                (0..64).fold(0, |p, j| p | u64::from(bytes[j] >> i & 1) << j)
            });
            let s = circuit::sbox(planes);
            for (j, byte) in bytes.iter().enumerate() {
                let out = (0..8).fold(0u8, |o, i| o | ((s[i] >> j & 1) as u8) << i);
                assert_eq!(out, shifted(*byte), "S'({byte:#04x}) bitsliced");
            }
        }
        // SWAR: each byte of two words; and τ with its constants.
        let word = |v: u32, f: &dyn Fn(u8) -> u8| u32::from_be_bytes(v.to_be_bytes().map(f));
        for x in 0..=255u32 {
            let a = x * 0x0101_0101;
            let b = (x ^ 0x5a) << 24 | x << 8;
            assert_eq!(
                tau2(a, b),
                (word(a, &shifted), word(b, &shifted)),
                "τ'({a:#010x}, {b:#010x})"
            );
            let c = a ^ 0x0012_3400;
            assert_eq!(tau(c), word(c, &|y| SBOX[y as usize]), "τ({c:#010x})");
        }
    }

    #[test]
    fn the_transpose_is_a_transpose() {
        let a: [u64; 64] = std::array::from_fn(|_| u64::from_le_bytes(random::<8>()));
        let mut t = a;
        transpose(&mut t);
        for (r, row) in a.iter().enumerate() {
            for (c, column) in t.iter().enumerate() {
                assert_eq!(row >> c & 1, column >> r & 1, "({r}, {c})");
            }
        }
    }

    #[test]
    fn the_block_cipher_agrees_with_the_sm4_crate_at_every_count_of_blocks() {
        // Portable: two at a time up to SWAR_MAX, bitsliced above it, in passes of 64 and a
        // remainder either way. On CPU instructions (where this CPU has them): passes of 16.
        for n in (0..=SWAR_MAX + 2).chain(15..=17).chain([
            31,
            32,
            33,
            63,
            64,
            65,
            64 + SWAR_MAX,
            64 + SWAR_MAX + 1,
            130,
        ]) {
            let key = random::<16>();
            let ours = Sm4::new(&key);
            let theirs = <sm4::Sm4 as sm4::cipher::KeyInit>::new(&key.into());
            let mut blocks: Vec<[u8; 16]> = (0..n).map(|_| random::<16>()).collect();
            let mut expected = blocks.clone();
            for b in expected.iter_mut() {
                theirs.encrypt_block(b.into());
            }
            let mut portable = blocks.clone();
            ours.encrypt_blocks_portable(&mut portable);
            assert_eq!(portable, expected, "{n} blocks, portable");
            ours.encrypt_blocks(&mut blocks);
            assert_eq!(blocks, expected, "{n} blocks");
        }
    }

    #[test]
    fn sm4_gcm_agrees_with_the_aes_gcm_crates_gcm_over_sm4_at_every_length() {
        let key = random::<16>();
        let theirs = Reference::new_from_slice(&key).unwrap();
        // On CPU instructions where this CPU has them, and in portable Rust.
        for ours in [
            Sm4Gcm::new(&key).unwrap(),
            Sm4Gcm::new_portable(&key).unwrap(),
        ] {
            // Around the passes: up to 63 blocks and the mask in one, two at a time while the
            // message and the mask are at most SWAR_MAX blocks; groups of 16 and 8 and passes
            // of up to 80 on CPU instructions, up to 64 blocks a GHASH reduction.
            for len in (0..=200).chain([
                1007,
                1008,
                1009,
                1023,
                1024,
                1025,
                2031,
                2032,
                2033,
                4096 + 7,
            ]) {
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
                    // In place: a failed open leaves the ciphertext or zeros, never plaintext.
                    let mut in_place = bad.clone();
                    assert_eq!(
                        ours.open_in_place(&nonce, &aad, &mut in_place)
                            .map(|p| p.len()),
                        Err(SmError::Decrypt)
                    );
                    let body = &in_place[..len];
                    assert!(
                        body == &bad[..len] || body.iter().all(|b| *b == 0),
                        "{len} bytes: a failed open left something else"
                    );
                    let mut in_place = msg.clone();
                    ours.seal_in_place_append_tag(&nonce, &aad, &mut in_place)
                        .unwrap();
                    assert_eq!(in_place, expected);
                    let opened = ours.open_in_place(&nonce, &aad, &mut in_place).unwrap();
                    assert_eq!(opened, msg.as_slice());
                }
            }
        }
    }

    #[test]
    fn a_failed_open_leaves_no_plaintext_either_way() {
        // On CPU instructions the key stream is XORed before the tag is checked; portable
        // Rust checks first. Either way a failed open returns an error and leaves the
        // ciphertext or zeros, never plaintext: a flipped byte of the body or the tag, other
        // AAD, another nonce, another key.
        let key = random::<16>();
        let other = Sm4Gcm::new(&random::<16>()).unwrap();
        for gcm in [
            Sm4Gcm::new(&key).unwrap(),
            Sm4Gcm::new_portable(&key).unwrap(),
        ] {
            for len in [0usize, 1, 15, 16, 17, 1008, 1024, 1025, 5000] {
                let nonce = random::<12>();
                let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
                let sealed = gcm.seal(&nonce, b"aad", &msg).unwrap();
                let mut flipped_body = sealed.clone();
                flipped_body[len / 2] ^= 1;
                let mut flipped_tag = sealed.clone();
                flipped_tag[len] ^= 0x80;
                let attempts = [
                    (&gcm, nonce, &b"aad"[..], flipped_body),
                    (&gcm, nonce, b"aad", flipped_tag),
                    (&gcm, nonce, b"aad!", sealed.clone()),
                    (&gcm, random::<12>(), b"aad", sealed.clone()),
                    (&other, nonce, b"aad", sealed.clone()),
                ];
                for (i, (gcm, nonce, aad, attempt)) in attempts.into_iter().enumerate() {
                    let mut buf = attempt.clone();
                    let result = gcm.open_in_place(&nonce, aad, &mut buf).map(|p| p.len());
                    assert_eq!(result, Err(SmError::Decrypt), "{len} bytes, attempt {i}");
                    let body = &buf[..len];
                    assert!(
                        body == &attempt[..len] || body.iter().all(|b| *b == 0),
                        "{len} bytes, attempt {i}: the buffer holds something else"
                    );
                    assert!(
                        len == 0 || body != msg.as_slice(),
                        "{len} bytes: plaintext left"
                    );
                }
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
