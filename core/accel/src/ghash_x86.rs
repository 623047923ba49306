//! GHASH on carry-less multiplies: PCLMULQDQ, eight blocks a reduction, or VPCLMULQDQ on
//! 512-bit registers, four blocks a multiply and up to 64 a reduction.
//!
//! GHASH is computed as POLYVAL (RFC 8452, Appendix A): `GHASH(H, X) =
//! ByteReverse(POLYVAL(mulX(ByteReverse(H)), ByteReverse(X1), ...))`, because POLYVAL's
//! little-endian field elements need no bit reflection. POLYVAL's product is `a·b·x⁻¹²⁸`
//! (Montgomery form), so `y ← (y + X)·H` over blocks `X1..Xn` unrolls to
//! `(y + X1)·Hⁿ + X2·Hⁿ⁻¹ + ... + Xn·H` with `Hᵏ` the same product's powers: the blocks'
//! carry-less products summed unreduced, then one reduction per group (the `polyval` crate
//! reduces after every block, which chains each block's latency to the next). A key keeps
//! `H .. H⁶⁴` (1 KiB, computed once per key, wiped on drop).
//! The multiplication and the reduction are the `polyval` crate's; the tests check GHASH
//! against the `ghash` crate at every length.

use core::arch::x86_64::{
    __m128i, __m512i, _mm_clmulepi64_si128, _mm_set_epi8, _mm_setzero_si128, _mm_shuffle_epi8,
    _mm_shuffle_epi32, _mm_slli_epi64, _mm_srli_epi64, _mm_unpacklo_epi64, _mm_xor_si128,
    _mm256_castsi256_si128, _mm256_extracti128_si256, _mm256_xor_si256, _mm512_broadcast_i32x4,
    _mm512_castsi512_si256, _mm512_clmulepi64_epi128, _mm512_extracti64x4_epi64,
    _mm512_setzero_si512, _mm512_shuffle_epi8, _mm512_shuffle_epi32, _mm512_ternarylogic_epi64,
    _mm512_xor_si512, _mm512_zextsi128_si512,
};

use bytemuck::must_cast;

/// Blocks summed per reduction on 128-bit registers.
const AGGREGATE: usize = 8;
/// Blocks summed per reduction on 512-bit registers, and so the powers of `H` a key keeps.
use crate::GHASH_POWERS as POWERS;

/// Proof that this CPU has PCLMULQDQ and SSSE3 (and whether it has VPCLMULQDQ with AVX-512F
/// and BW): made only by [`detect`].
#[derive(Clone, Copy)]
pub(crate) struct Clmul {
    wide: bool,
}

impl Clmul {
    /// The same CPU on 128-bit registers only (to test both ways on one CPU).
    #[cfg(test)]
    pub(crate) fn narrow(self) -> Self {
        Self { wide: false }
    }
}

pub(crate) fn detect() -> Option<Clmul> {
    let wide = std::arch::is_x86_feature_detected!("vpclmulqdq")
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw");
    (std::arch::is_x86_feature_detected!("pclmulqdq")
        && std::arch::is_x86_feature_detected!("ssse3"))
    .then_some(Clmul { wide })
}

/// `H⁶⁴, ..., H², H` (highest first) in POLYVAL's form, from GHASH's key `h`.
pub(crate) fn powers(_: Clmul, h: &[u8; 16]) -> [u128; POWERS] {
    // SAFETY: the function needs PCLMULQDQ and SSSE3 (SSE2 is x86-64's baseline), and a
    // `Clmul` exists only once `detect` has seen both on this CPU.
    #[allow(unsafe_code)]
    unsafe {
        powers_clmul(h)
    }
}

/// `GHASH_H(aad, ciphertext)` with its lengths block, `powers` from [`powers`].
pub(crate) fn ghash(
    cpu: Clmul,
    powers: &[u128; POWERS],
    aad: &[u8],
    ciphertext: &[u8],
) -> [u8; 16] {
    if cpu.wide {
        // SAFETY: `ghash_vclmul` needs VPCLMULQDQ, AVX-512F and BW besides what `powers`
        // needs, and `detect` saw all of them before it set `wide`.
        #[allow(unsafe_code)]
        unsafe {
            ghash_vclmul(powers, aad, ciphertext)
        }
    } else {
        // SAFETY: as in `powers`.
        #[allow(unsafe_code)]
        unsafe {
            ghash_clmul(powers, aad, ciphertext)
        }
    }
}

#[target_feature(enable = "pclmulqdq,ssse3")]
fn powers_clmul(h: &[u8; 16]) -> [u128; POWERS] {
    // mulX_POLYVAL(ByteReverse(H)): a shift left by one, reduced by x¹²⁸ + x¹²⁷ + x¹²⁶ +
    // x¹²¹ + 1, without a branch on H.
    let h = u128::from_be_bytes(*h);
    let h = h << 1 ^ (0u128.wrapping_sub(h >> 127) & (0xc2 << 120 | 1));
    let h1 = must_cast::<u128, __m128i>(h);
    let mut powers = [h; POWERS];
    let mut power = h1;
    for p in powers.iter_mut().skip(1) {
        let (lo, mid, hi) = product(power, h1);
        power = reduce(lo, mid, hi);
        *p = must_cast::<__m128i, u128>(power);
    }
    powers.reverse();
    powers
}

#[target_feature(enable = "pclmulqdq,ssse3")]
fn ghash_clmul(powers: &[u128; POWERS], aad: &[u8], ciphertext: &[u8]) -> [u8; 16] {
    let h = narrow_powers(powers);
    let mut y = _mm_setzero_si128();
    for blocks in GcmInput::new(aad, ciphertext).segments() {
        for group in blocks.chunks(AGGREGATE) {
            y = aggregate(&h, y, group);
        }
    }
    must_cast::<__m128i, u128>(y).to_be_bytes()
}

/// As [`ghash_clmul`] on 512-bit registers, four blocks a carry-less multiply, and one
/// reduction per chunk of up to [`POWERS`] blocks of the stream AAD, ciphertext, lengths:
/// block `i` of a chunk of `m` is multiplied by `H^(m - i)` (the first after `y` is added),
/// the products summed unreduced. One function with its sums in locals, so that they stay in
/// registers.
#[target_feature(enable = "pclmulqdq,ssse3,vpclmulqdq,avx512f,avx512bw")]
fn ghash_vclmul(powers: &[u128; POWERS], aad: &[u8], ciphertext: &[u8]) -> [u8; 16] {
    let reverse = _mm512_broadcast_i32x4(reverse_bytes());
    let input = GcmInput::new(aad, ciphertext);
    let stream = input.segments();
    let mut y = _mm_setzero_si128();
    // Blocks of the stream not yet in a finished chunk; this chunk's size and blocks summed.
    let mut left: usize = stream.iter().map(|blocks| blocks.len()).sum();
    let (mut chunk, mut done) = (0, 0);
    let (mut lo, mut mid, mut hi) = (
        _mm512_setzero_si512(),
        _mm512_setzero_si512(),
        _mm512_setzero_si512(),
    );
    for mut blocks in stream {
        while let Some(first) = blocks.first() {
            if done == 0 {
                chunk = left.min(POWERS);
            }
            // This block's power, H^e, is powers[POWERS - e].
            let e = chunk - done;
            let add = if done == 0 { y } else { _mm_setzero_si128() };
            // Four blocks at once while four are left in the slice and in the chunk.
            let four_powers = powers.get(POWERS - e..).and_then(|p| p.first_chunk::<4>());
            let step = match (blocks.first_chunk::<4>(), four_powers) {
                (Some(four), Some(p)) if e >= 4 => {
                    let x =
                        _mm512_shuffle_epi8(must_cast::<[[u8; 16]; 4], __m512i>(*four), reverse);
                    let x = _mm512_xor_si512(x, _mm512_zextsi128_si512(add));
                    let p = must_cast::<[u128; 4], __m512i>(*p);
                    // Karatsuba: three carry-less multiplies, the middle one of the halves'
                    // sums (`mid` sums those; the reduction adds `lo` and `hi`).
                    let xs = _mm512_xor_si512(x, _mm512_shuffle_epi32::<0x4e>(x));
                    let ps = _mm512_xor_si512(p, _mm512_shuffle_epi32::<0x4e>(p));
                    lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128::<0x00>(x, p));
                    mid = _mm512_xor_si512(mid, _mm512_clmulepi64_epi128::<0x00>(xs, ps));
                    hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128::<0x11>(x, p));
                    4
                }
                _ => {
                    let x = _mm_xor_si128(byte_reversed(*first), add);
                    let (l, m, h) = product(x, must_cast::<u128, __m128i>(powers[POWERS - e]));
                    lo = _mm512_xor_si512(lo, _mm512_zextsi128_si512(l));
                    // As Karatsuba's middle product, which the reduction completes.
                    let m = _mm_xor_si128(m, _mm_xor_si128(l, h));
                    mid = _mm512_xor_si512(mid, _mm512_zextsi128_si512(m));
                    hi = _mm512_xor_si512(hi, _mm512_zextsi128_si512(h));
                    1
                }
            };
            blocks = &blocks[step..];
            done += step;
            if done == chunk {
                let m = _mm512_ternarylogic_epi64::<0x96>(mid, lo, hi);
                y = reduce(fold(lo), fold(m), fold(hi));
                lo = _mm512_setzero_si512();
                mid = _mm512_setzero_si512();
                hi = _mm512_setzero_si512();
                left -= chunk;
                done = 0;
            }
        }
    }
    must_cast::<__m128i, u128>(y).to_be_bytes()
}

/// GHASH's input as GCM lays it out: the AAD and the ciphertext, each padded with zeros to
/// whole blocks, then the block of their lengths in bits. Whole blocks stay where they are;
/// the two padded last blocks and the lengths are held here.
struct GcmInput<'a> {
    aad: (&'a [[u8; 16]], [[u8; 16]; 1], usize),
    ciphertext: (&'a [[u8; 16]], [[u8; 16]; 1], usize),
    lengths: [[u8; 16]; 1],
}

impl<'a> GcmInput<'a> {
    fn new(aad: &'a [u8], ciphertext: &'a [u8]) -> Self {
        // Whole blocks, the last partial one padded, and whether there is one.
        let padded = |data: &'a [u8]| {
            let (blocks, tail) = data.as_chunks::<16>();
            let mut last = [0u8; 16];
            last[..tail.len()].copy_from_slice(tail);
            (blocks, [last], usize::from(!tail.is_empty()))
        };
        let mut lengths = [0u8; 16];
        lengths[..8].copy_from_slice(&((aad.len() as u64).wrapping_mul(8)).to_be_bytes());
        lengths[8..].copy_from_slice(&((ciphertext.len() as u64).wrapping_mul(8)).to_be_bytes());
        Self {
            aad: padded(aad),
            ciphertext: padded(ciphertext),
            lengths: [lengths],
        }
    }

    /// The blocks in GHASH's order, in five runs.
    fn segments(&self) -> [&[[u8; 16]]; 5] {
        [
            self.aad.0,
            &self.aad.1[..self.aad.2],
            self.ciphertext.0,
            &self.ciphertext.1[..self.ciphertext.2],
            &self.lengths,
        ]
    }
}

/// `H .. H⁸` as 128-bit registers.
#[inline]
#[target_feature(enable = "sse2")]
fn narrow_powers(powers: &[u128; POWERS]) -> [__m128i; AGGREGATE] {
    std::array::from_fn(|i| must_cast::<u128, __m128i>(powers[POWERS - 1 - i]))
}

/// The XOR of a 512-bit register's four 128-bit lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn fold(x: __m512i) -> __m128i {
    let x = _mm256_xor_si256(_mm512_castsi512_si256(x), _mm512_extracti64x4_epi64::<1>(x));
    _mm_xor_si128(_mm256_castsi256_si128(x), _mm256_extracti128_si256::<1>(x))
}

/// `(y + X1)·Hⁿ + X2·Hⁿ⁻¹ + ... + Xn·H` for `n ≤ AGGREGATE` blocks, reduced once.
#[inline]
#[target_feature(enable = "pclmulqdq,ssse3")]
fn aggregate(h: &[__m128i; AGGREGATE], y: __m128i, blocks: &[[u8; 16]]) -> __m128i {
    let (mut lo, mut mid, mut hi) = (
        _mm_setzero_si128(),
        _mm_setzero_si128(),
        _mm_setzero_si128(),
    );
    let mut y = y;
    for (block, power) in blocks.iter().zip(h[..blocks.len()].iter().rev()) {
        let x = _mm_xor_si128(byte_reversed(*block), y);
        y = _mm_setzero_si128();
        let (l, m, g) = product(x, *power);
        lo = _mm_xor_si128(lo, l);
        mid = _mm_xor_si128(mid, m);
        hi = _mm_xor_si128(hi, g);
    }
    reduce(lo, mid, hi)
}

/// A block as POLYVAL's field element: its bytes reversed.
#[inline]
#[target_feature(enable = "ssse3")]
fn byte_reversed(block: [u8; 16]) -> __m128i {
    _mm_shuffle_epi8(must_cast::<[u8; 16], __m128i>(block), reverse_bytes())
}

/// The `pshufb` pattern that reverses a block's 16 bytes.
#[inline]
#[target_feature(enable = "sse2")]
fn reverse_bytes() -> __m128i {
    _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
}

/// The 256-bit carry-less product of `a` and `b` as its low, middle and high 128-bit parts
/// (`lo + mid·x⁶⁴ + hi·x¹²⁸`), schoolbook.
#[inline]
#[target_feature(enable = "pclmulqdq,ssse3")]
fn product(a: __m128i, b: __m128i) -> (__m128i, __m128i, __m128i) {
    (
        _mm_clmulepi64_si128::<0x00>(a, b),
        _mm_xor_si128(
            _mm_clmulepi64_si128::<0x01>(a, b),
            _mm_clmulepi64_si128::<0x10>(a, b),
        ),
        _mm_clmulepi64_si128::<0x11>(a, b),
    )
}

/// The `polyval` crate's Montgomery reduction of `lo + mid·x⁶⁴ + hi·x¹²⁸`: that times
/// `x⁻¹²⁸` modulo POLYVAL's polynomial.
#[inline]
#[target_feature(enable = "pclmulqdq,ssse3")]
fn reduce(lo: __m128i, mid: __m128i, hi: __m128i) -> __m128i {
    let v0 = lo;
    let v1 = _mm_xor_si128(_mm_shuffle_epi32::<0x0e>(lo), mid);
    let v2 = _mm_xor_si128(hi, _mm_shuffle_epi32::<0x0e>(mid));
    let v3 = _mm_shuffle_epi32::<0x0e>(hi);
    // Each 64-bit word folded into the two above it, twice: v0 into v1 and v2, then v1 into
    // v2 and v3.
    let (v2, v1) = fold_word(v0, v2, v1);
    let (v3, v2) = fold_word(v1, v3, v2);
    _mm_unpacklo_epi64(v2, v3)
}

/// One step of the reduction: `w` times the polynomial's low terms, added into the next two
/// words up (`high` gets `w` and its right shifts, `low` its left shifts).
#[inline]
#[target_feature(enable = "sse2")]
fn fold_word(w: __m128i, high: __m128i, low: __m128i) -> (__m128i, __m128i) {
    let high = xor4(high, w, _mm_srli_epi64::<1>(w), _mm_srli_epi64::<2>(w));
    let high = _mm_xor_si128(high, _mm_srli_epi64::<7>(w));
    let low = xor4(
        low,
        _mm_slli_epi64::<63>(w),
        _mm_slli_epi64::<62>(w),
        _mm_slli_epi64::<57>(w),
    );
    (high, low)
}

#[inline]
#[target_feature(enable = "sse2")]
fn xor4(a: __m128i, b: __m128i, c: __m128i, d: __m128i) -> __m128i {
    _mm_xor_si128(_mm_xor_si128(a, b), _mm_xor_si128(c, d))
}
