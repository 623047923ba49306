//! SM2 signature verification's `[s]G + [t]P`, in variable time: everything it touches (the
//! signature, the public key, the message's digest) is public, so it may take shortcuts the
//! signing path may not.
//!
//! The `sm2` crate computes each multiplication on its own with constant-time 4-bit windows
//! over complete projective formulas (about 11 field multiplications a doubling) and then
//! inverts `Z`. Here:
//! - **Jacobian coordinates** with the SM2 curve's `a = -3`: a doubling is 3 multiplications
//!   and 5 squarings (`dbl-2001-b`), a mixed addition 7 and 4 (`madd-2007-bl`), a full
//!   addition 11 and 5 (`add-2007-bl`), the exceptional cases (identity, equal or opposite
//!   points) taken by branches.
//! - **One pass for both products** (Straus-Shamir): the 256 doublings are shared, `t` is
//!   recoded in width-5 NAF over `P, 3P, ..., 15P` (built per call), `s` in width-8 NAF over
//!   the generator's odd multiples `G, 3G, ..., 127G` in affine form (built once per process).
//! - **No inversion**: `R = (e + x1) mod n` equals `r` when `x1 ≡ r - e (mod n)`, and
//!   `x1 = X / Z^2` is one of `r - e` and `r - e + n` (below `p`), so the check is
//!   `c · Z^2 = X` for those candidates `c`.
//! - **The field**: Montgomery multiplication for SM2's prime. `p ≡ -1 (mod 2^64)`, so each
//!   reduction step's multiplier is the low limb itself, and multiplying it by `p` is shifts
//!   and subtractions: 16 word products a multiplication, 10 a squaring.
//!
//! Checked in the tests against the crate's arithmetic on random and edge inputs, and by the
//! callers' tests against `sm2::dsa`'s verifier both ways.

use std::sync::OnceLock;

use sm2::elliptic_curve::group::Group;
use sm2::elliptic_curve::point::BatchNormalize;
use sm2::{AffinePoint, ProjectivePoint, Scalar};

/// A field element in Montgomery form (`a · 2^256 mod p`), little-endian limbs, always
/// fully reduced (below `p`), so equal elements have equal limbs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fe([u64; 4]);

/// SM2's prime `p = 2^256 - 2^224 - 2^96 + 2^64 - 1`.
const P: [u64; 4] = [
    0xffff_ffff_ffff_ffff,
    0xffff_ffff_0000_0000,
    0xffff_ffff_ffff_ffff,
    0xffff_fffe_ffff_ffff,
];
/// The group order `n`.
const N: [u64; 4] = [
    0x53bb_f409_39d5_4123,
    0x7203_df6b_21c6_052b,
    0xffff_ffff_ffff_ffff,
    0xffff_fffe_ffff_ffff,
];
/// `2^512 mod p`: multiplying by it enters Montgomery form.
const R2: [u64; 4] = [
    0x0000_0002_0000_0003,
    0x0000_0002_ffff_ffff,
    0x0000_0001_0000_0001,
    0x0000_0004_0000_0002,
];

/// `1` in Montgomery form (`2^256 mod p`).
const R1: [u64; 4] = [
    0x0000_0000_0000_0001,
    0x0000_0000_ffff_ffff,
    0x0000_0000_0000_0000,
    0x0000_0001_0000_0000,
];

/// `a - b` over `L` limbs, and whether it borrowed.
fn sub_limbs<const L: usize>(a: &[u64; L], b: &[u64; L]) -> ([u64; L], bool) {
    let mut out = [0u64; L];
    let mut borrow = false;
    for i in 0..L {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        out[i] = d;
        borrow = b1 | b2;
    }
    (out, borrow)
}

/// `a + b` over `L` limbs, and whether it carried.
fn add_limbs<const L: usize>(a: &[u64; L], b: &[u64; L]) -> ([u64; L], bool) {
    let mut out = [0u64; L];
    let mut carry = false;
    for i in 0..L {
        let (s, c1) = a[i].overflowing_add(b[i]);
        let (s, c2) = s.overflowing_add(u64::from(carry));
        out[i] = s;
        carry = c1 | c2;
    }
    (out, carry)
}

/// Limbs of a big-endian 32-byte integer.
fn limbs(bytes: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (i, chunk) in bytes.rchunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        out[i] = u64::from_be_bytes(word);
    }
    out
}

/// Whether `a < m`.
fn below(a: &[u64; 4], m: &[u64; 4]) -> bool {
    sub_limbs(a, m).1
}

impl Fe {
    const ZERO: Fe = Fe([0; 4]);

    /// From an integer below `p` (`None` otherwise).
    fn from_limbs(a: [u64; 4]) -> Option<Fe> {
        below(&a, &P).then(|| Fe(a).mul(&Fe(R2)))
    }

    fn from_bytes(bytes: &[u8; 32]) -> Option<Fe> {
        Fe::from_limbs(limbs(bytes))
    }

    fn is_zero(&self) -> bool {
        self.0 == [0; 4]
    }

    /// `a + b mod p`.
    fn add(&self, b: &Fe) -> Fe {
        let (s, carry) = add_limbs(&self.0, &b.0);
        let (d, borrow) = sub_limbs(&s, &P);
        // The sum is below 2p: subtract p when it is at least p (it carried, or did not borrow).
        if carry || !borrow { Fe(d) } else { Fe(s) }
    }

    /// `a - b mod p`.
    fn sub(&self, b: &Fe) -> Fe {
        let (d, borrow) = sub_limbs(&self.0, &b.0);
        if borrow {
            Fe(add_limbs(&d, &P).0)
        } else {
            Fe(d)
        }
    }

    fn double(&self) -> Fe {
        self.add(self)
    }

    fn neg(&self) -> Fe {
        Fe::ZERO.sub(self)
    }

    /// Montgomery product `a · b / 2^256 mod p`: the 512-bit product, then [`Fe::reduce`].
    fn mul(&self, b: &Fe) -> Fe {
        let (a, b) = (&self.0, &b.0);
        let mut t = [0u64; 8];
        for i in 0..4 {
            let mut carry = 0u64;
            for j in 0..4 {
                let uv =
                    u128::from(t[i + j]) + u128::from(a[j]) * u128::from(b[i]) + u128::from(carry);
                t[i + j] = uv as u64;
                carry = (uv >> 64) as u64;
            }
            t[i + 4] = carry;
        }
        Fe::reduce(t)
    }

    /// `a^2`, with each cross product computed once and doubled.
    fn square(&self) -> Fe {
        let a = &self.0;
        let mut t = [0u64; 8];
        for i in 0..3 {
            let mut carry = 0u64;
            for j in i + 1..4 {
                let uv =
                    u128::from(t[i + j]) + u128::from(a[i]) * u128::from(a[j]) + u128::from(carry);
                t[i + j] = uv as u64;
                carry = (uv >> 64) as u64;
            }
            t[i + 4] = carry;
        }
        // Double the cross products, then add the squares on the diagonal.
        let mut top = 0u64;
        for limb in t.iter_mut() {
            let next = *limb >> 63;
            *limb = (*limb << 1) | top;
            top = next;
        }
        let mut carry = 0u128;
        for i in 0..4 {
            let sq = u128::from(a[i]) * u128::from(a[i]);
            let lo = u128::from(t[2 * i]) + (sq & u128::from(u64::MAX)) + carry;
            t[2 * i] = lo as u64;
            let hi = u128::from(t[2 * i + 1]) + (sq >> 64) + (lo >> 64);
            t[2 * i + 1] = hi as u64;
            carry = hi >> 64;
        }
        Fe::reduce(t)
    }

    /// Montgomery reduction `t / 2^256 mod p` of a product `t < p^2`, without multiplying:
    /// `-p^-1 ≡ 1 (mod 2^64)`, so each step's multiplier is the low limb `m` itself, and
    /// `(t + m p) / 2^64` adds `m (p + 1) / 2^64 = m (2^192 - 2^160 - 2^32 + 1)` above it,
    /// which is shifts and subtractions.
    #[inline(always)]
    fn reduce(mut t: [u64; 8]) -> Fe {
        // The carry out of step i's top limb, added in step i + 1 (whose top limb is above it).
        let mut pending = 0u128;
        for i in 0..4 {
            let m = t[i];
            let (lo, hi) = (m << 32, m >> 32);
            // d = [m, 0, 0, m] - [lo, hi, lo, hi] (little-endian limbs; never negative).
            let (d0, b0) = m.overflowing_sub(lo);
            let (d1, b1) = 0u64.overflowing_sub(hi);
            let (d1, b1b) = d1.overflowing_sub(u64::from(b0));
            let (d2, b2) = 0u64.overflowing_sub(lo);
            let (d2, b2b) = d2.overflowing_sub(u64::from(b1 | b1b));
            let d3 = m.wrapping_sub(hi).wrapping_sub(u64::from(b2 | b2b));
            let s = u128::from(t[i + 1]) + u128::from(d0);
            t[i + 1] = s as u64;
            let s = u128::from(t[i + 2]) + u128::from(d1) + (s >> 64);
            t[i + 2] = s as u64;
            let s = u128::from(t[i + 3]) + u128::from(d2) + (s >> 64);
            t[i + 3] = s as u64;
            let s = u128::from(t[i + 4]) + u128::from(d3) + (s >> 64) + pending;
            t[i + 4] = s as u64;
            pending = s >> 64;
        }
        // Below 2p: one conditional subtraction.
        let r = [t[4], t[5], t[6], t[7]];
        let (d, borrow) = sub_limbs(&r, &P);
        if pending != 0 || !borrow {
            Fe(d)
        } else {
            Fe(r)
        }
    }
}

/// A point in Jacobian coordinates `(X / Z^2, Y / Z^3)`; `Z = 0` is the identity.
#[derive(Clone, Copy, Debug)]
struct Jacobian {
    x: Fe,
    y: Fe,
    z: Fe,
}

/// An affine point (never the identity).
#[derive(Clone, Copy, Debug)]
struct Affine {
    x: Fe,
    y: Fe,
}

impl Affine {
    /// From the crate's point (`None` for the identity).
    fn from_crate(p: &AffinePoint) -> Option<Affine> {
        let (x, y) = super::coordinates(p)?;
        Some(Affine {
            x: Fe::from_bytes(&x)?,
            y: Fe::from_bytes(&y)?,
        })
    }

    fn neg(&self) -> Affine {
        Affine {
            x: self.x,
            y: self.y.neg(),
        }
    }
}

impl Jacobian {
    const IDENTITY: Jacobian = Jacobian {
        x: Fe::ZERO,
        y: Fe::ZERO,
        z: Fe::ZERO,
    };

    fn is_identity(&self) -> bool {
        self.z.is_zero()
    }

    fn from_affine(p: &Affine) -> Jacobian {
        Jacobian {
            x: p.x,
            y: p.y,
            z: Fe(R1),
        }
    }

    fn neg(&self) -> Jacobian {
        Jacobian {
            x: self.x,
            y: self.y.neg(),
            z: self.z,
        }
    }

    /// `2P` (`dbl-2001-b`, `a = -3`). The curve has no point of order two, so `Y = 0` is
    /// only the identity's, which this maps to itself (`Z3 = 0`).
    fn double(&self) -> Jacobian {
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(&gamma);
        let t = self.x.sub(&delta).mul(&self.x.add(&delta));
        let alpha = t.double().add(&t);
        let beta4 = beta.double().double();
        let x3 = alpha.square().sub(&beta4.double());
        let z3 = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let gamma2 = gamma.square();
        let y3 = alpha
            .mul(&beta4.sub(&x3))
            .sub(&gamma2.double().double().double());
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// `P + Q` for affine `Q` (`madd-2007-bl`).
    fn add_affine(&self, q: &Affine) -> Jacobian {
        if self.is_identity() {
            return Jacobian::from_affine(q);
        }
        let z1z1 = self.z.square();
        let u2 = q.x.mul(&z1z1);
        let s2 = q.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&self.x);
        let r = s2.sub(&self.y).double();
        if h.is_zero() {
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::IDENTITY
            };
        }
        let hh = h.square();
        let i = hh.double().double();
        let j = h.mul(&i);
        let v = self.x.mul(&i);
        let x3 = r.square().sub(&j).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&self.y.mul(&j).double());
        let z3 = self.z.add(&h).square().sub(&z1z1).sub(&hh);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// `P + Q` (`add-2007-bl`).
    fn add(&self, q: &Jacobian) -> Jacobian {
        if self.is_identity() {
            return *q;
        }
        if q.is_identity() {
            return *self;
        }
        let z1z1 = self.z.square();
        let z2z2 = q.z.square();
        let u1 = self.x.mul(&z2z2);
        let u2 = q.x.mul(&z1z1);
        let s1 = self.y.mul(&q.z).mul(&z2z2);
        let s2 = q.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&u1);
        let r = s2.sub(&s1).double();
        if h.is_zero() {
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::IDENTITY
            };
        }
        let i = h.double().square();
        let j = h.mul(&i);
        let v = u1.mul(&i);
        let x3 = r.square().sub(&j).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&s1.mul(&j).double());
        let z3 = self.z.add(&q.z).square().sub(&z1z1).sub(&z2z2).mul(&h);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }
}

/// Width-`w` NAF of a scalar below `2^256` (big-endian bytes): digit `i` weighs `2^i`, and
/// every non-zero digit is odd with `|d| < 2^(w-1)` and followed by at least `w - 1` zeros.
fn wnaf(bytes: &[u8; 32], w: u32) -> [i8; 257] {
    let mut k = [0u64; 5];
    k[..4].copy_from_slice(&limbs(bytes));
    let mut digits = [0i8; 257];
    let window = 1i64 << w;
    let mut i = 0;
    while k != [0; 5] && i < digits.len() {
        if k[0] & 1 == 1 {
            let mut d = (k[0] & (window as u64 - 1)) as i64;
            if d >= window / 2 {
                d -= window;
            }
            digits[i] = d as i8;
            // k -= d: clears the low w bits' digit, so the next w - 1 digits are zero.
            let mut delta = [0u64; 5];
            delta[0] = d.unsigned_abs();
            k = if d > 0 {
                sub_limbs(&k, &delta).0
            } else {
                add_limbs(&k, &delta).0
            };
        }
        for j in 0..4 {
            k[j] = (k[j] >> 1) | (k[j + 1] << 63);
        }
        k[4] >>= 1;
        i += 1;
    }
    digits
}

/// Width of the generator's NAF: its table holds `G, 3G, ..., 127G`.
const G_WIDTH: u32 = 8;
const G_ENTRIES: usize = 1 << (G_WIDTH - 2);
/// Width of the public key's NAF: `P, 3P, ..., 15P`, built per call.
const P_WIDTH: u32 = 5;

fn generator_table() -> &'static [Affine] {
    static TABLE: OnceLock<Vec<Affine>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let g = ProjectivePoint::GENERATOR;
        let g2 = g.double();
        let mut m = g;
        let odd: [ProjectivePoint; G_ENTRIES] = std::array::from_fn(|_| {
            let this = m;
            m += g2;
            this
        });
        ProjectivePoint::batch_normalize(&odd)
            .iter()
            // The odd multiples below the order are never the identity.
            .filter_map(Affine::from_crate)
            .collect()
    })
}

/// `[s]G + [t]P` in Jacobian coordinates (`None` if `P` is the identity, which no parsed
/// public key is).
fn double_mul(s: &Scalar, t: &Scalar, p: &AffinePoint) -> Option<Jacobian> {
    let g_table = generator_table();
    let p = Jacobian::from_affine(&Affine::from_crate(p)?);
    let p2 = p.double();
    let mut p_table = [p; 1 << (P_WIDTH - 2)];
    for i in 1..p_table.len() {
        p_table[i] = p_table[i - 1].add(&p2);
    }
    let ds = wnaf(&s.to_bytes().into(), G_WIDTH);
    let dt = wnaf(&t.to_bytes().into(), P_WIDTH);
    let mut acc = Jacobian::IDENTITY;
    for i in (0..ds.len()).rev() {
        if !acc.is_identity() {
            acc = acc.double();
        }
        let d = ds[i];
        if d != 0 {
            let q = g_table.get(usize::from(d.unsigned_abs() / 2))?;
            acc = acc.add_affine(&if d > 0 { *q } else { q.neg() });
        }
        let d = dt[i];
        if d != 0 {
            let q = p_table.get(usize::from(d.unsigned_abs() / 2))?;
            acc = acc.add(&if d > 0 { *q } else { q.neg() });
        }
    }
    Some(acc)
}

/// GB/T 32918.2's B6 and B7 for `t = r + s` (not zero): whether `(e + x1) mod n = r` for
/// `(x1, y1) = [s]G + [t]P`.
pub(super) fn verify(e: &Scalar, r: &Scalar, s: &Scalar, t: &Scalar, p: &AffinePoint) -> bool {
    let Some(point) = double_mul(s, t, p) else {
        return false;
    };
    if point.is_identity() {
        return false;
    }
    // x1 = X / Z^2 is below p; x1 mod n = r - e mod n when x1 is c or c + n (if below p).
    let c = limbs(&(*r - e).to_bytes().into());
    let z2 = point.z.square();
    let matches =
        |candidate: [u64; 4]| Fe::from_limbs(candidate).is_some_and(|c| c.mul(&z2) == point.x);
    if matches(c) {
        return true;
    }
    let (c_plus_n, carry) = add_limbs(&c, &N);
    !carry && matches(c_plus_n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm2::elliptic_curve::Field;
    use sm2::elliptic_curve::point::AffineCoordinates;
    use sm2::elliptic_curve::rand_core::OsRng;

    /// Whether our Jacobian point is the crate's point.
    fn same(ours: &Jacobian, theirs: &ProjectivePoint) -> bool {
        let theirs = theirs.to_affine();
        match Affine::from_crate(&theirs) {
            None => ours.is_identity(),
            Some(a) => {
                let z2 = ours.z.square();
                !ours.is_identity() && a.x.mul(&z2) == ours.x && a.y.mul(&z2.mul(&ours.z)) == ours.y
            }
        }
    }

    fn fe_of(x: u64) -> Fe {
        Fe::from_limbs([x, 0, 0, 0]).unwrap_or(Fe::ZERO)
    }

    #[test]
    fn the_field_agrees_with_integer_arithmetic_at_its_edges() {
        let p_minus_1 = Fe::from_limbs([P[0] - 1, P[1], P[2], P[3]]).unwrap();
        // (p - 1)^2 = 1, (p - 1) + 1 = 0, 0 - 1 = p - 1.
        assert_eq!(p_minus_1.square(), fe_of(1));
        assert!(p_minus_1.add(&fe_of(1)).is_zero());
        assert_eq!(Fe::ZERO.sub(&fe_of(1)), p_minus_1);
        assert_eq!(fe_of(1).0, R1);
        assert_eq!(fe_of(6).mul(&fe_of(7)), fe_of(42));
        assert!(Fe::from_limbs(P).is_none());
        // Out of Montgomery form: multiplying by 1 gives the integer back.
        let back = |f: Fe| f.mul(&Fe([1, 0, 0, 0])).0;
        assert_eq!(back(p_minus_1), [P[0] - 1, P[1], P[2], P[3]]);
        assert_eq!(back(fe_of(12345)), [12345, 0, 0, 0]);
    }

    #[test]
    fn squaring_and_multiplication_agree_and_distribute_near_p_and_at_random() {
        use sm2::elliptic_curve::rand_core::RngCore;
        let mut values: Vec<Fe> = (0..64)
            .filter_map(|_| {
                let mut l = [0u64; 4];
                l.iter_mut().for_each(|x| *x = OsRng.next_u64());
                Fe::from_limbs(l)
            })
            .collect();
        // Near p and with long runs of ones: the reductions' carries.
        for k in 1..=8u64 {
            values.push(Fe::from_limbs([P[0] - k, P[1], P[2], P[3]]).unwrap());
            values.push(Fe::from_limbs([u64::MAX, u64::MAX, u64::MAX, k]).unwrap());
            values.push(Fe([P[0] - k, P[1], P[2], P[3]]));
        }
        for w in values.windows(3) {
            let (a, b, c) = (w[0], w[1], w[2]);
            assert_eq!(a.square(), a.mul(&a));
            assert_eq!(a.mul(&b), b.mul(&a));
            assert_eq!(a.mul(&b).mul(&c), a.mul(&b.mul(&c)));
            assert_eq!(a.mul(&b.add(&c)), a.mul(&b).add(&a.mul(&c)));
            assert_eq!(a.mul(&b.sub(&c)), a.mul(&b).sub(&a.mul(&c)));
            assert!(below(&a.mul(&b).0, &P) && below(&a.square().0, &P));
        }
    }

    #[test]
    fn the_field_agrees_with_the_curve_equation_on_random_points() {
        // y^2 = x^3 - 3x + b for points the crate made, through our multiplication.
        let b = Fe::from_bytes(&super::super::CURVE_B).unwrap();
        for _ in 0..200 {
            let k = Scalar::random(&mut OsRng);
            let a = Affine::from_crate(&(ProjectivePoint::GENERATOR * k).to_affine()).unwrap();
            let x3 = a.x.square().mul(&a.x);
            let rhs = x3.sub(&a.x.double().add(&a.x)).add(&b);
            assert_eq!(a.y.square(), rhs);
        }
    }

    #[test]
    fn naf_digits_recompose_the_scalar() {
        for w in [P_WIDTH, G_WIDTH] {
            for _ in 0..100 {
                let k = Scalar::random(&mut OsRng);
                let digits = wnaf(&k.to_bytes().into(), w);
                let mut sum = Scalar::ZERO;
                for d in digits.iter().rev() {
                    sum = sum.double();
                    let v = Scalar::from(u64::from(d.unsigned_abs()));
                    sum = if *d >= 0 { sum + v } else { sum - v };
                    assert!(*d == 0 || (d % 2 != 0 && i32::from(d.abs()) < 1 << (w - 1)));
                }
                assert_eq!(sum, k);
            }
        }
        assert_eq!(wnaf(&[0; 32], 5), [0; 257]);
    }

    #[test]
    fn the_double_multiplication_agrees_with_the_crates() {
        let mut cases: Vec<(Scalar, Scalar, ProjectivePoint)> = (0..100)
            .map(|_| {
                (
                    Scalar::random(&mut OsRng),
                    Scalar::random(&mut OsRng),
                    ProjectivePoint::GENERATOR * Scalar::random(&mut OsRng),
                )
            })
            .collect();
        // The exceptional paths: P = G (the generator's and the key's entries coincide),
        // P = -G, scalars 1 and n - 1, and s = -t with P = G (the sum is the identity).
        let g = ProjectivePoint::GENERATOR;
        let k = Scalar::random(&mut OsRng);
        cases.extend([
            (Scalar::ONE, Scalar::ONE, g),
            (Scalar::ONE, Scalar::ONE, -g),
            (-Scalar::ONE, Scalar::ONE, g),
            (k, -k, g),
            (k, k, g),
            (
                Scalar::from(3u64),
                Scalar::from(5u64),
                g * Scalar::from(2u64),
            ),
        ]);
        for (s, t, p) in cases {
            let ours = double_mul(&s, &t, &p.to_affine()).unwrap();
            assert!(same(&ours, &(g * s + p * t)), "s={s:?} t={t:?}");
        }
    }

    #[test]
    fn verification_recovers_x1_without_inverting_z() {
        // x1 = r - e (mod n) found as c Z^2 = X. (An x1 in [n, p), the second candidate,
        // has probability about 2^-128 and no known example.)
        for _ in 0..50 {
            let (s, t) = (Scalar::random(&mut OsRng), Scalar::random(&mut OsRng));
            let p = (ProjectivePoint::GENERATOR * Scalar::random(&mut OsRng)).to_affine();
            let x1 = (ProjectivePoint::GENERATOR * s + ProjectivePoint::from(p) * t)
                .to_affine()
                .x();
            let x1 = <Scalar as sm2::elliptic_curve::ops::Reduce<sm2::U256>>::reduce_bytes(&x1);
            let e = Scalar::random(&mut OsRng);
            assert!(verify(&e, &(e + x1), &s, &t, &p));
            assert!(!verify(&e, &(e + x1 + Scalar::ONE), &s, &t, &p));
        }
    }
}
