//! The ShangMi suite on CPU instructions (x86-64): SM4 and SM4-GCM's counter mode on AVX-512
//! and GFNI (`src/sm4_x86.rs`), GHASH on PCLMULQDQ or VPCLMULQDQ (`src/ghash_x86.rs`).
//!
//! `baomi-core` is `forbid(unsafe_code)`, and calling code compiled for instructions that not
//! every CPU has takes an `unsafe` call after the CPU has been asked. Those calls live here,
//! five of them, each with its proof; everything else in this crate is safe Rust on
//! `core::arch`'s intrinsics, which are safe inside functions compiled for their features, and
//! `bytemuck`'s size-checked casts between byte blocks and registers.
//!
//! Where there is no such path (another CPU, another architecture, a phone's ARM core), the
//! functions return `false` and touch nothing, and the caller uses its portable code.
#![deny(unsafe_code)]

#[cfg(target_arch = "x86_64")]
mod ghash_x86;
#[cfg(target_arch = "x86_64")]
mod sm4_x86;

use zeroize::Zeroize;

/// Whether [`sm4_encrypt_blocks`] runs on this CPU (x86-64 with AVX-512F, BW and VL, and GFNI).
pub fn sm4_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        sm4_x86::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Encrypts `blocks` in place with SM4 under the 32 round keys `rk` (GB/T 32907's `rk_i`, as
/// the key schedule makes them), up to 80 blocks a pass, if this CPU has the instructions; returns
/// `false` and leaves `blocks` unchanged otherwise.
///
/// Constant time: the S-box is two GF(2^8) affine instructions (`GF2P8AFFINEQB`,
/// `GF2P8AFFINEINVQB`), no table is read and no branch depends on the key or the data.
pub fn sm4_encrypt_blocks(rk: &[u32; 32], blocks: &mut [[u8; 16]]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        sm4_x86::encrypt_blocks(rk, blocks)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (rk, blocks);
        false
    }
}

/// SM4-GCM's counter mode (NIST SP 800-38D with a 96-bit nonce) on CPU instructions: XORs
/// `E_K(nonce || 1)` (the tag's mask) into `mask` and `E_K(nonce || 2), E_K(nonce || 3), ...`
/// into `data`, in passes of up to 80 blocks whose key stream stays in registers. Returns
/// `false` and touches nothing where the CPU lacks the instructions of
/// [`sm4_encrypt_blocks`]. The 32-bit counter wraps as GCM's `inc32` does; GCM's length bound
/// (2³² - 2 blocks) is the caller's.
pub fn sm4_gcm_ctr(rk: &[u32; 32], nonce: &[u8; 12], mask: &mut [u8; 16], data: &mut [u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        sm4_x86::gcm_ctr(rk, nonce, mask, data)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (rk, nonce, mask, data);
        false
    }
}

/// Powers of `H` a [`GhashKey`] keeps, and so the blocks GHASH sums per reduction on 512-bit
/// registers (four a register): a record of up to 1 KiB, its AAD and lengths are one or two
/// reductions.
const GHASH_POWERS: usize = 64;

/// GHASH (GCM's MAC, NIST SP 800-38D) under one key `H`, on carry-less multiplication
/// instructions: made only where the CPU has them. Holds `H`'s first 64 powers
/// (zeroized on drop).
pub struct GhashKey {
    #[cfg(target_arch = "x86_64")]
    cpu: ghash_x86::Clmul,
    #[cfg(not(target_arch = "x86_64"))]
    cpu: std::convert::Infallible,
    powers: [u128; GHASH_POWERS],
}

impl Drop for GhashKey {
    fn drop(&mut self) {
        self.powers.zeroize();
    }
}

impl std::fmt::Debug for GhashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GhashKey(..)")
    }
}

impl GhashKey {
    /// GHASH under `h` (`E_K(0¹²⁸)` in GCM), or `None` where the CPU has no PCLMULQDQ.
    pub fn new(h: &[u8; 16]) -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            let cpu = ghash_x86::detect()?;
            Some(Self {
                cpu,
                powers: ghash_x86::powers(cpu, h),
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = h;
            None
        }
    }

    /// `GHASH_H(A, C)` as GCM computes it: `aad` and `ciphertext` each padded with zeros to
    /// whole blocks, then the block of their lengths in bits. Constant time in the data.
    pub fn ghash(&self, aad: &[u8], ciphertext: &[u8]) -> [u8; 16] {
        #[cfg(target_arch = "x86_64")]
        {
            ghash_x86::ghash(self.cpu, &self.powers, aad, ciphertext)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (aad, ciphertext, &self.powers);
            match self.cpu {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm4::cipher::{BlockEncrypt, KeyInit};

    /// SM4's S-box from its definition, `A·I(A·x + C) + C` with `I` the inverse mod `0x1F5`
    /// (not from any table or matrix this crate uses).
    fn sbox(x: u8) -> u8 {
        const A: [u8; 8] = [0xA7, 0x4F, 0x9E, 0x3D, 0x7A, 0xF4, 0xE9, 0xD3];
        let affine =
            |x: u8| (0..8).fold(0u8, |r, i| r | (((A[i] & x).count_ones() & 1) as u8) << i) ^ 0xD3;
        let mul = |mut a: u16, mut b: u16| {
            let mut r = 0u16;
            while b != 0 {
                if b & 1 == 1 {
                    r ^= a;
                }
                b >>= 1;
                a <<= 1;
                if a & 0x100 != 0 {
                    a ^= 0x1F5;
                }
            }
            r
        };
        let y = u16::from(affine(x));
        let inv = (1..256u16).find(|&z| mul(y, z) == 1).unwrap_or(0);
        affine(inv as u8)
    }

    fn round_keys(key: &[u8; 16]) -> [u32; 32] {
        const FK: [u32; 4] = [0xa3b1bac6, 0x56aa3350, 0x677d9197, 0xb27022dc];
        let table: Vec<u8> = (0..=255).map(sbox).collect();
        let tau = |a: u32| u32::from_be_bytes(a.to_be_bytes().map(|b| table[usize::from(b)]));
        let mut k: [u32; 4] = std::array::from_fn(|i| {
            u32::from_be_bytes(key[4 * i..4 * i + 4].try_into().unwrap()) ^ FK[i]
        });
        std::array::from_fn(|i| {
            let ck = u32::from_be_bytes(std::array::from_fn(|j| ((4 * i + j) * 7 % 256) as u8));
            let b = tau(k[1] ^ k[2] ^ k[3] ^ ck);
            let next = k[0] ^ b ^ b.rotate_left(13) ^ b.rotate_left(23);
            k = [k[1], k[2], k[3], next];
            next
        })
    }

    /// A deterministic stream of bytes (xorshift), enough to vary keys and blocks.
    fn bytes<const N: usize>(seed: &mut u64) -> [u8; N] {
        std::array::from_fn(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed as u8
        })
    }

    fn skipped_without_sm4() -> bool {
        if !sm4_available() {
            eprintln!("skipped: this CPU has no AVX-512 + GFNI");
        }
        !sm4_available()
    }

    #[test]
    fn the_standards_example_and_its_million_encryptions() {
        if skipped_without_sm4() {
            return;
        }
        // GB/T 32907-2016, Appendix A.
        let key: [u8; 16] = *b"\x01\x23\x45\x67\x89\xab\xcd\xef\xfe\xdc\xba\x98\x76\x54\x32\x10";
        let rk = round_keys(&key);
        let mut block = [key];
        assert!(sm4_encrypt_blocks(&rk, &mut block));
        assert_eq!(
            block[0],
            *b"\x68\x1e\xdf\x34\xd2\x06\x96\x5e\x86\xb3\xe9\x4f\x53\x6e\x42\x46"
        );
        // Example 2: 1,000,000 encryptions of the same block, here 16 side by side at a time.
        let mut blocks = [key; 16];
        for _ in 0..1_000_000 {
            assert!(sm4_encrypt_blocks(&rk, &mut blocks));
        }
        assert!(blocks.iter().all(|b| *b == *b"\x59\x52\x98\xc7\xc6\xfd\x27\x1f\x04\x02\xf8\x04\xc3\x3d\x3f\x66"));
    }

    #[test]
    fn agrees_with_the_sm4_crate_at_every_count_of_blocks() {
        if skipped_without_sm4() {
            return;
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for n in (0..=50).chain([63, 64, 65, 127, 128, 129]) {
            let key = bytes::<16>(&mut seed);
            let blocks: Vec<[u8; 16]> = (0..n).map(|_| bytes::<16>(&mut seed)).collect();
            let mut ours = blocks.clone();
            assert!(sm4_encrypt_blocks(&round_keys(&key), &mut ours));
            let reference = sm4::Sm4::new(&key.into());
            for (i, (ours, mut block)) in ours.iter().zip(blocks).enumerate() {
                reference.encrypt_block((&mut block).into());
                assert_eq!(*ours, block, "{n} blocks, block {i}");
            }
        }
    }

    #[test]
    fn ghash_agrees_with_the_ghash_crate_at_every_length() {
        use ghash::universal_hash::{KeyInit as _, UniversalHash};
        let mut seed = 0x2545_f491_4f6c_dd1d;
        let h = bytes::<16>(&mut seed);
        let Some(wide) = GhashKey::new(&h) else {
            eprintln!("skipped: this CPU has no PCLMULQDQ");
            return;
        };
        let mut narrow = GhashKey::new(&h).unwrap();
        #[cfg(target_arch = "x86_64")]
        {
            narrow.cpu = narrow.cpu.narrow();
        }
        let data: Vec<u8> = (0..320).flat_map(|_| bytes::<16>(&mut seed)).collect();
        // Every length of AAD and message around the groups (8 blocks, 4 a register), the
        // chunks of 64 blocks a reduction and the padding.
        for aad in [0, 1, 15, 16, 17, 127, 128, 129, 200, 1009] {
            for len in (0..=300).chain([
                511, 512, 513, 640, 991, 992, 1007, 1008, 1009, 1024, 1025, 2047, 4100,
            ]) {
                let (a, c) = (&data[..aad], &data[data.len() - len..]);
                let mut theirs = ghash::GHash::new(&h.into());
                theirs.update_padded(a);
                theirs.update_padded(c);
                let mut lengths = [0u8; 16];
                lengths[..8].copy_from_slice(&(aad as u64 * 8).to_be_bytes());
                lengths[8..].copy_from_slice(&(len as u64 * 8).to_be_bytes());
                theirs.update(&[lengths.into()]);
                let theirs: [u8; 16] = theirs.finalize().into();
                assert_eq!(wide.ghash(a, c), theirs, "aad {aad}, message {len}");
                assert_eq!(
                    narrow.ghash(a, c),
                    theirs,
                    "aad {aad}, message {len}, narrow"
                );
            }
        }
        // Keys with H's top and bottom bits set and clear (mulX's reduction, both ways).
        for h in [[0u8; 16], [0xff; 16], [0x80; 16], [0x01; 16]] {
            let ours = GhashKey::new(&h).unwrap();
            let mut theirs = ghash::GHash::new(&h.into());
            theirs.update_padded(&data[..333]);
            let mut lengths = [0u8; 16];
            lengths[..8].copy_from_slice(&(333u64 * 8).to_be_bytes());
            theirs.update(&[lengths.into()]);
            let theirs: [u8; 16] = theirs.finalize().into();
            assert_eq!(ours.ghash(&data[..333], b""), theirs);
        }
    }

    #[test]
    fn gcm_counter_mode_agrees_with_the_sm4_crate_at_every_length() {
        if skipped_without_sm4() {
            return;
        }
        let mut seed = 0x853c_49e6_748f_ea9b;
        // Every length up to 81 blocks with the mask: every mix of groups of 16 and 8 in a
        // pass (1 KiB and the mask, 65 blocks, is four of 16 and one of 8); then passes of 64
        // and a last one of up to 80.
        for len in (0..=1300).chain([
            1007, 1008, 1009, 1024, 1025, 1264, 1265, 1280, 2048, 2304, 2305, 5000,
        ]) {
            let key = bytes::<16>(&mut seed);
            let nonce = bytes::<12>(&mut seed);
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let (mut mask, mut ours) = ([0x5a; 16], data.clone());
            assert!(sm4_gcm_ctr(&round_keys(&key), &nonce, &mut mask, &mut ours));
            let reference = sm4::Sm4::new(&key.into());
            let block = |counter: u32| {
                let mut b = [0u8; 16];
                b[..12].copy_from_slice(&nonce);
                b[12..].copy_from_slice(&counter.to_be_bytes());
                reference.encrypt_block((&mut b).into());
                b
            };
            let expected_mask: [u8; 16] = std::array::from_fn(|i| 0x5a ^ block(1)[i]);
            assert_eq!(mask, expected_mask, "{len} bytes: mask");
            for (i, (chunk, ours)) in data.chunks(16).zip(ours.chunks(16)).enumerate() {
                let stream = block(2 + i as u32);
                let expected: Vec<u8> = chunk.iter().zip(stream).map(|(d, k)| d ^ k).collect();
                assert_eq!(ours, expected.as_slice(), "{len} bytes: block {i}");
            }
        }
    }
}
