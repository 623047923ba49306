//! SM4 on AVX-512 (F, BW, VL) and GFNI. A group of 16 blocks is four 512-bit registers, one
//! per word, after a byte swap and a 4×4 transpose of words in each 128-bit lane; a pass runs
//! up to five groups' rounds interleaved (the CPU overlaps one group's latency with the
//! others' work), and GCM's counter mode puts up to 8 left-over blocks in a group of 256-bit
//! registers (on CPUs that split 512-bit work in two, as AMD's Zen 4 does, half a group's
//! cost: 1 KiB and GCM's mask, 65 blocks, cost 4.5 groups, not 5).
//!
//! Where the time goes (docs/BENCHMARKS.md): a round is 11 instructions a group, and its two
//! GF(2^8) affines and four rotations share the CPU's shuffle ports, which bound the pass.
//!
//! The S-box: SM4's is `S(x) = A·I(A·x + C) + C`, `I` the inverse in GF(2^8) mod `0x1F5`.
//! With `φ` an isomorphism of that field onto AES's (mod `0x11B`, the field `GF2P8AFFINEINVQB`
//! inverts in), `S(x) = (A·φ⁻¹)·I_aes(φ·A·x + φ(C)) + C`: one `GF2P8AFFINEQB` by `φ·A`, then
//! one `GF2P8AFFINEINVQB` by `A·φ⁻¹`. `gfni.py` beside this crate's manifest derives the two
//! matrices from SM4's definition and checks them against the standard's S-box for every byte;
//! the tests below check the cipher against the `sm4` crate and the standard's examples.

use core::arch::x86_64::{
    __m256i, __m512i, _mm_set_epi8, _mm256_add_epi32, _mm256_gf2p8affine_epi64_epi8,
    _mm256_gf2p8affineinv_epi64_epi8, _mm256_rol_epi32, _mm256_set1_epi32, _mm256_set1_epi64x,
    _mm256_setr_epi32, _mm256_setzero_si256, _mm256_ternarylogic_epi32, _mm256_unpackhi_epi32,
    _mm256_unpackhi_epi64, _mm256_unpacklo_epi32, _mm256_unpacklo_epi64, _mm256_xor_si256,
    _mm512_add_epi32, _mm512_broadcast_i32x4, _mm512_castsi256_si512,
    _mm512_gf2p8affine_epi64_epi8, _mm512_gf2p8affineinv_epi64_epi8, _mm512_inserti64x4,
    _mm512_rol_epi32, _mm512_set1_epi32, _mm512_set1_epi64, _mm512_setr_epi32,
    _mm512_setzero_si512, _mm512_shuffle_epi8, _mm512_ternarylogic_epi32, _mm512_unpackhi_epi32,
    _mm512_unpackhi_epi64, _mm512_unpacklo_epi32, _mm512_unpacklo_epi64, _mm512_xor_si512,
};

use bytemuck::{must_cast, must_cast_mut};
use zeroize::Zeroize;

/// `φ·A` as `GF2P8AFFINEQB` takes a matrix: byte `7 - i` of the quadword is row `i` (`gfni.py`).
const IN_MATRIX: i64 = 0x4c28_7db9_1a22_505d;
/// `φ(C)`, added after `IN_MATRIX`.
const IN_CONSTANT: i32 = 0x3e;
/// `A·φ⁻¹`, applied to the inverse by `GF2P8AFFINEINVQB`.
const OUT_MATRIX: i64 = 0xf3ab_34a9_74a6_b589_u64 as i64;
/// `C`, SM4's constant, added last.
const OUT_CONSTANT: i32 = 0xd3;

/// SM4's 32 rounds on `G` groups, interleaved (so the CPU overlaps one group's latency with
/// the others' work). A macro, not a function: the state must stay in registers, and a
/// `#[target_feature]` function cannot be forced inline.
macro_rules! rounds {
    ($rk:expr, $x:expr) => {
        rounds!($rk, $x, [[_mm256_setzero_si256(); 4]; 0])
    };
    // With groups of 8 blocks on 256-bit registers (`round_narrow`) beside those of 16.
    ($rk:expr, $x:expr, $narrow:expr) => {
        for rk in $rk.as_chunks::<4>().0 {
            // Round `i` replaces word `i % 4`; the state's words rotate, not move.
            round_every_group!($x, $narrow, [0, 1, 2, 3], rk[0]);
            round_every_group!($x, $narrow, [1, 2, 3, 0], rk[1]);
            round_every_group!($x, $narrow, [2, 3, 0, 1], rk[2]);
            round_every_group!($x, $narrow, [3, 0, 1, 2], rk[3]);
        }
    };
}

/// One round of [`rounds!`] on every group, 16 blocks and 8: word `$a` becomes
/// `x[$a] ^ T(x[$b] ^ x[$c] ^ x[$d] ^ rk)`.
macro_rules! round_every_group {
    ($x:expr, $narrow:expr, [$a:literal, $b:literal, $c:literal, $d:literal], $rk:expr) => {
        for x in $x.iter_mut() {
            x[$a] = round(x[$a], x[$b], x[$c], x[$d], $rk);
        }
        for x in $narrow.iter_mut() {
            x[$a] = round_narrow(x[$a], x[$b], x[$c], x[$d], $rk);
        }
    };
}

/// Whether this CPU has what [`encrypt_blocks_avx512`] is compiled for (std caches the answer).
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("gfni")
}

/// [`encrypt_blocks_avx512`] if the CPU has its instructions, else `false` with `blocks`
/// untouched.
pub(crate) fn encrypt_blocks(rk: &[u32; 32], blocks: &mut [[u8; 16]]) -> bool {
    if !available() {
        return false;
    }
    // SAFETY: the function's only requirement is that the CPU has the features it is
    // compiled with (`avx512f`, `avx512bw`, `avx512vl`, `gfni`, and what they imply), and
    // `available()` has just seen all four.
    #[allow(unsafe_code)]
    unsafe {
        encrypt_blocks_avx512(rk, blocks);
    }
    true
}

/// [`gcm_ctr_avx512`] if the CPU has its instructions, else `false` with nothing touched.
pub(crate) fn gcm_ctr(
    rk: &[u32; 32],
    nonce: &[u8; 12],
    mask: &mut [u8; 16],
    data: &mut [u8],
) -> bool {
    if !available() {
        return false;
    }
    // SAFETY: as in `encrypt_blocks`.
    #[allow(unsafe_code)]
    unsafe {
        gcm_ctr_avx512(rk, nonce, mask, data);
    }
    true
}

/// Blocks in a pass: up to five groups of 16 side by side (their 20 registers of state and
/// the round's temporaries fit AVX-512's 32), so that 1 KiB and GCM's mask block (65 blocks)
/// are one pass.
const PASS_MAX: usize = 80;

/// How many blocks the next pass takes of `remaining`: 64 while more than a pass is left,
/// then all of it.
fn pass_len(remaining: usize) -> usize {
    if remaining > PASS_MAX { 64 } else { remaining }
}

/// A pass's working copy: 16-byte aligned so that it zeroizes 16 bytes a write.
type Window = [[u128; 4]; PASS_MAX / 4];

#[target_feature(enable = "avx512f,avx512bw,avx512vl,gfni")]
fn encrypt_blocks_avx512(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
    let mut window: Window = [[0; 4]; PASS_MAX / 4];
    let mut rest = blocks;
    while !rest.is_empty() {
        let (pass, later) = rest.split_at_mut(pass_len(rest.len()));
        rest = later;
        if pass.len() % 16 == 0 {
            // Whole groups: in place.
            if let Ok(rows) = bytemuck::try_cast_slice_mut::<[u8; 16], [u8; 64]>(pass) {
                encrypt_rows(rk, rows);
                continue;
            }
        }
        let rows: &mut [[u8; 64]; PASS_MAX / 4] = must_cast_mut(&mut window);
        let rows = &mut rows[..pass.len().div_ceil(4)];
        let n = pass.len() * 16;
        rows.as_flattened_mut()[..n].copy_from_slice(pass.as_flattened());
        encrypt_rows(rk, rows);
        pass.as_flattened_mut()
            .copy_from_slice(&rows.as_flattened()[..n]);
    }
    window.as_flattened_mut().zeroize();
}

/// GCM's counter mode: `encrypt_blocks`'s passes over the counter blocks of `mask || data`
/// (counters from 1), each key stream row (four blocks) XORed straight from the registers into
/// the stream, so the key stream is never in memory.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,gfni")]
fn gcm_ctr_avx512(rk: &[u32; 32], nonce: &[u8; 12], mask: &mut [u8; 16], data: &mut [u8]) {
    let nonce = [0, 1, 2].map(|i| {
        u32::from_be_bytes([
            nonce[4 * i],
            nonce[4 * i + 1],
            nonce[4 * i + 2],
            nonce[4 * i + 3],
        ])
    });
    let mut stream = Stream { mask, data };
    let total = 1 + stream.data.len().div_ceil(16);
    let mut done = 0;
    while done < total {
        let blocks = pass_len(total - done);
        // `done` is a multiple of 64 blocks here, so of four: a row.
        let (row, counter) = (done / 4, 1u32.wrapping_add(done as u32));
        // Groups of 16 blocks, and up to 8 left over in a group of 8 (half the work: a pass
        // of 1 KiB and the mask, 65 blocks, is four groups of 16 and one of 8, not five).
        let ks = (rk, nonce, counter, &mut stream, row);
        let groups = match blocks % 16 {
            0 => (blocks / 16, 0),
            1..=8 => (blocks / 16, 1),
            _ => (blocks / 16 + 1, 0),
        };
        match groups {
            (0, _) => xor_key_stream::<0, 1>(ks),
            (1, 0) => xor_key_stream::<1, 0>(ks),
            (1, _) => xor_key_stream::<1, 1>(ks),
            (2, 0) => xor_key_stream::<2, 0>(ks),
            (2, _) => xor_key_stream::<2, 1>(ks),
            (3, 0) => xor_key_stream::<3, 0>(ks),
            (3, _) => xor_key_stream::<3, 1>(ks),
            (4, 0) => xor_key_stream::<4, 0>(ks),
            (4, _) => xor_key_stream::<4, 1>(ks),
            _ => xor_key_stream::<5, 0>(ks),
        }
        done += blocks;
    }
}

/// What GCM's counter mode XORs: the tag's mask, then the data, in rows of 64 bytes.
struct Stream<'a> {
    mask: &'a mut [u8; 16],
    data: &'a mut [u8],
}

impl Stream<'_> {
    /// XORs `key` into row `r` (bytes `64 r .. 64 r + 64` of `mask || data`), as much of it as
    /// there is. Whole rows of the data go straight to and from a register; the first row (it
    /// holds the mask) and a last partial one through a copy wiped after.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn xor_row(&mut self, r: usize, key: __m512i) {
        let xor =
            |row: [u8; 64]| must_cast::<__m512i, [u8; 64]>(_mm512_xor_si512(must_cast(row), key));
        if r > 0 {
            let start = 64 * r - 16;
            if let Some(row) = self.data.get_mut(start..start + 64) {
                if let Ok(row) = <&mut [u8; 64]>::try_from(row) {
                    *row = xor(*row);
                }
                return;
            }
        }
        let mut copy = [0u128; 4];
        let bytes: &mut [u8; 64] = must_cast_mut(&mut copy);
        if r == 0 {
            let n = self.data.len().min(48);
            bytes[..16].copy_from_slice(self.mask);
            bytes[16..16 + n].copy_from_slice(&self.data[..n]);
            *bytes = xor(*bytes);
            self.mask.copy_from_slice(&bytes[..16]);
            self.data[..n].copy_from_slice(&bytes[16..16 + n]);
        } else if let Some(tail) = self.data.get_mut(64 * r - 16..) {
            let n = tail.len().min(64);
            bytes[..n].copy_from_slice(&tail[..n]);
            *bytes = xor(*bytes);
            tail[..n].copy_from_slice(&bytes[..n]);
        }
        copy.zeroize();
    }
}

/// The key stream `E_K(nonce || counter), E_K(nonce || counter + 1), ...` for `G` groups of
/// 16 blocks and `N` (0 or 1) of 8 after them, XORed into `stream`'s rows from `row` on (rows
/// past its end are dropped).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,gfni")]
fn xor_key_stream<const G: usize, const N: usize>(
    (rk, nonce, counter, stream, row): (&[u32; 32], [u32; 3], u32, &mut Stream<'_>, usize),
) {
    // After the transpose, element `e` of a group's registers is block `4 (e % 4) + e / 4`.
    let lanes = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let mut x = [[_mm512_setzero_si512(); 4]; G];
    for (g, x) in x.iter_mut().enumerate() {
        let first = counter.wrapping_add(16 * g as u32);
        *x = [
            _mm512_set1_epi32(nonce[0] as i32),
            _mm512_set1_epi32(nonce[1] as i32),
            _mm512_set1_epi32(nonce[2] as i32),
            _mm512_add_epi32(_mm512_set1_epi32(first as i32), lanes),
        ];
    }
    // A group of 8: element `e` is block `2 (e % 4) + e / 4`.
    let narrow_lanes = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    let first = counter.wrapping_add(16 * G as u32);
    let mut narrow = [[
        _mm256_set1_epi32(nonce[0] as i32),
        _mm256_set1_epi32(nonce[1] as i32),
        _mm256_set1_epi32(nonce[2] as i32),
        _mm256_add_epi32(_mm256_set1_epi32(first as i32), narrow_lanes),
    ]; N];
    rounds!(rk, x, narrow);
    let rows = (16 + stream.data.len()).div_ceil(64);
    let keys = x
        .iter()
        .flat_map(|x| output(x))
        .chain(narrow.iter().flat_map(|x| output_narrow(x)));
    for (r, key) in (row..rows).zip(keys) {
        stream.xor_row(r, key);
    }
}

/// Reverses the bytes of each 32-bit word (SM4's words are big-endian).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn swap_bytes(x: __m512i) -> __m512i {
    let swap = _mm512_broadcast_i32x4(_mm_set_epi8(
        12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
    ));
    _mm512_shuffle_epi8(x, swap)
}

/// Up to 20 rows (80 blocks) in place, as [`encrypt`] with as many groups as they need.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,gfni")]
fn encrypt_rows(rk: &[u32; 32], rows: &mut [[u8; 64]]) {
    match rows.len().div_ceil(4) {
        1 => encrypt::<1>(rk, rows),
        2 => encrypt::<2>(rk, rows),
        3 => encrypt::<3>(rk, rows),
        4 => encrypt::<4>(rk, rows),
        _ => encrypt::<5>(rk, rows),
    }
}

/// `G` groups of 16 blocks (`rows`: four blocks a row, up to `4 G` rows; rows past the end
/// are not read or written) encrypted in place.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,gfni")]
fn encrypt<const G: usize>(rk: &[u32; 32], rows: &mut [[u8; 64]]) {
    let mut x = [[_mm512_setzero_si512(); 4]; G];
    for (x, group) in x.iter_mut().zip(rows.chunks(4)) {
        let mut r = [_mm512_setzero_si512(); 4];
        for (r, row) in r.iter_mut().zip(group) {
            *r = swap_bytes(must_cast::<[u8; 64], __m512i>(*row));
        }
        let (a, b, c, d) = transpose(r[0], r[1], r[2], r[3]);
        *x = [a, b, c, d];
    }
    rounds!(rk, x);
    for (x, group) in x.iter().zip(rows.chunks_mut(4)) {
        for (row, r) in group.iter_mut().zip(output(x)) {
            *row = must_cast::<__m512i, [u8; 64]>(r);
        }
    }
}

/// A group's output as four rows of four blocks: `R` (the words X35, X34, X33, X32, that is
/// `x[3], x[2], x[1], x[0]`), the transpose (its own inverse) and the byte swap.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn output(x: &[__m512i; 4]) -> [__m512i; 4] {
    let (r0, r1, r2, r3) = transpose(x[3], x[2], x[1], x[0]);
    [
        swap_bytes(r0),
        swap_bytes(r1),
        swap_bytes(r2),
        swap_bytes(r3),
    ]
}

/// A group of 8's output as two rows of four blocks, as [`output`] makes them.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn output_narrow(x: &[__m256i; 4]) -> [__m512i; 2] {
    let t0 = _mm256_unpacklo_epi32(x[3], x[2]);
    let t1 = _mm256_unpackhi_epi32(x[3], x[2]);
    let t2 = _mm256_unpacklo_epi32(x[1], x[0]);
    let t3 = _mm256_unpackhi_epi32(x[1], x[0]);
    // Blocks 0-1, 2-3, 4-5, 6-7.
    let r = [
        _mm256_unpacklo_epi64(t0, t2),
        _mm256_unpackhi_epi64(t0, t2),
        _mm256_unpacklo_epi64(t1, t3),
        _mm256_unpackhi_epi64(t1, t3),
    ];
    [
        swap_bytes(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(r[0]), r[1])),
        swap_bytes(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(r[2]), r[3])),
    ]
}

/// In every 128-bit lane, the 4×4 transpose of 32-bit words across four registers.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose(
    r0: __m512i,
    r1: __m512i,
    r2: __m512i,
    r3: __m512i,
) -> (__m512i, __m512i, __m512i, __m512i) {
    let t0 = _mm512_unpacklo_epi32(r0, r1);
    let t1 = _mm512_unpackhi_epi32(r0, r1);
    let t2 = _mm512_unpacklo_epi32(r2, r3);
    let t3 = _mm512_unpackhi_epi32(r2, r3);
    (
        _mm512_unpacklo_epi64(t0, t2),
        _mm512_unpackhi_epi64(t0, t2),
        _mm512_unpacklo_epi64(t1, t3),
        _mm512_unpackhi_epi64(t1, t3),
    )
}

/// One round on 16 blocks: `x0 ^ L(S(x1 ^ x2 ^ x3 ^ rk))`, `L(s) = s ^ s<<<2 ^ s<<<10 ^
/// s<<<18 ^ s<<<24`.
#[inline]
#[target_feature(enable = "avx512f,gfni")]
fn round(x0: __m512i, x1: __m512i, x2: __m512i, x3: __m512i, rk: u32) -> __m512i {
    // 0x96: the three-input XOR. `x3` is the previous round's output: it joins last, so
    // that one XOR, not two, stands between it and this round's S-box.
    let t = _mm512_ternarylogic_epi32::<0x96>(x1, x2, _mm512_set1_epi32(rk as i32));
    let t = _mm512_xor_si512(t, x3);
    let t = _mm512_gf2p8affine_epi64_epi8::<IN_CONSTANT>(t, _mm512_set1_epi64(IN_MATRIX));
    let s = _mm512_gf2p8affineinv_epi64_epi8::<OUT_CONSTANT>(t, _mm512_set1_epi64(OUT_MATRIX));
    // `L` as a tree two deep after the rotations (`x0` is ready long before `s`).
    let a =
        _mm512_ternarylogic_epi32::<0x96>(s, _mm512_rol_epi32::<2>(s), _mm512_rol_epi32::<10>(s));
    let b =
        _mm512_ternarylogic_epi32::<0x96>(x0, _mm512_rol_epi32::<18>(s), _mm512_rol_epi32::<24>(s));
    _mm512_xor_si512(a, b)
}

/// [`round`] on a group of 8 blocks in 256-bit registers.
#[inline]
#[target_feature(enable = "avx512f,avx512vl,gfni")]
fn round_narrow(x0: __m256i, x1: __m256i, x2: __m256i, x3: __m256i, rk: u32) -> __m256i {
    let t = _mm256_ternarylogic_epi32::<0x96>(x1, x2, _mm256_set1_epi32(rk as i32));
    let t = _mm256_xor_si256(t, x3);
    let t = _mm256_gf2p8affine_epi64_epi8::<IN_CONSTANT>(t, _mm256_set1_epi64x(IN_MATRIX));
    let s = _mm256_gf2p8affineinv_epi64_epi8::<OUT_CONSTANT>(t, _mm256_set1_epi64x(OUT_MATRIX));
    let a =
        _mm256_ternarylogic_epi32::<0x96>(s, _mm256_rol_epi32::<2>(s), _mm256_rol_epi32::<10>(s));
    let b =
        _mm256_ternarylogic_epi32::<0x96>(x0, _mm256_rol_epi32::<18>(s), _mm256_rol_epi32::<24>(s));
    _mm256_xor_si256(a, b)
}
