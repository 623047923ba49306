//! SM4's S-box as a boolean circuit of 125 gates, so that a byte's substitution is computed,
//! not looked up: no memory access depends on a secret, and one run computes up to 64
//! S-boxes, one per bit of a `u64` (bitsliced: one per block), or 8 (SWAR: one per byte of
//! two words packed in a `u64`).
//!
//! SM4's S-box is affine-equivalent to AES's: `S(x) = A·I(A·x ⊕ C) ⊕ C`, with `I` the inverse
//! in GF(2^8) modulo `x^8+x^7+x^6+x^5+x^4+x^2+1` and `C = 0xD3` (GB/T 32907's construction).
//! Mapping that field onto AES's by an isomorphism gives `S(x) = A_out·B(A_in·x ⊕ c_in) ⊕ C`,
//! where `B` is Boyar, Peralta and Calik's 113-gate circuit of AES's S-box without its
//! constant (<http://www.cs.yale.edu/homes/peralta/CircuitStuff/SLP_AES_113.txt>, the one
//! RustCrypto's `aes` fixslice uses) and `A_in`, `A_out` are 8×8 bit matrices. The circuit
//! below computes `S(x ⊕ IN) ⊕ OUT`: the constants are the caller's (the cipher folds them
//! into its round keys), `A_in` is merged into `B`'s linear top layer and `A_out` into its
//! bottom one (their XORs found again by Paar's greedy search), and of the eight
//! isomorphisms the cheapest is used. `circuit.py` beside this file derives it, writes this
//! function's body and checks it for all 256 bytes; the unit test `the_circuit_is_the_s_box`
//! checks it again.

/// What a lane's byte `x` gives: `S(x ⊕ IN) ⊕ OUT`, the S-box with its constants moved to
/// the callers (the cipher folds them into its round keys).
pub(super) const IN: u8 = 0x75;
/// See [`IN`].
pub(super) const OUT: u8 = 0xD3;

/// `S(x ⊕ IN) ⊕ OUT` on each of 64 lanes: bit `j` of `x[i]` is bit `i` (0 the least
/// significant) of lane `j`'s byte, and so for the result. (The packed callers use only
/// some lanes.)
#[inline(always)]
#[allow(
    clippy::many_single_char_names,
    reason = "a generated straight-line program"
)]
pub(super) fn sbox(x: [u64; 8]) -> [u64; 8] {
    let l8 = x[2] ^ x[4];
    let l9 = x[0] ^ x[3];
    let l10 = x[1] ^ x[7];
    let l11 = x[5] ^ l8;
    let l12 = x[1] ^ l9;
    let l13 = x[2] ^ x[6];
    let l14 = x[4] ^ l10;
    let l15 = x[7] ^ l8;
    let l16 = x[5] ^ l12;
    let l17 = x[6] ^ l9;
    let l18 = x[6] ^ l11;
    let l19 = x[0] ^ x[6];
    let l20 = x[0] ^ l15;
    let l21 = x[1] ^ l13;
    let l22 = x[2] ^ x[7];
    let l23 = x[3] ^ x[5];
    let l24 = x[3] ^ l10;
    let l25 = x[3] ^ l11;
    let l26 = x[5] ^ l14;
    let l27 = x[7] ^ l18;
    let l28 = x[7] ^ l23;
    let l29 = l8 ^ l12;
    let l30 = l9 ^ l10;
    let l31 = l9 ^ l11;
    let l32 = l9 ^ l14;
    let l33 = l10 ^ l11;
    let l34 = l10 ^ l18;
    let l35 = l11 ^ l12;
    let l36 = l13 ^ l16;
    let l37 = l14 ^ l19;
    let l38 = l15 ^ l17;
    let l39 = l17 ^ l26;
    let u7 = l38;
    let y1 = l13;
    let y10 = l36;
    let y11 = l32;
    let y12 = l33;
    let y13 = l31;
    let y14 = l30;
    let y15 = l34;
    let y16 = x[1];
    let y17 = l27;
    let y18 = l37;
    let y19 = l39;
    let y2 = l20;
    let y20 = l22;
    let y21 = l35;
    let y3 = l25;
    let y4 = l24;
    let y5 = l28;
    let y6 = l16;
    let y7 = l21;
    let y8 = l15;
    let y9 = l29;
    let t2 = y12 & y15;
    let t12 = y9 & y11;
    let t13 = y14 & y17;
    let t14 = t13 ^ t12;
    let t15 = y8 & y10;
    let t16 = t15 ^ t12;
    let t7 = y13 & y16;
    let t5 = y4 & u7;
    let t6 = t5 ^ t2;
    let t18 = t6 ^ t16;
    let t22 = t18 ^ y19;
    let t10 = y2 & y7;
    let t11 = t10 ^ t7;
    let t20 = t11 ^ t16;
    let t24 = t20 ^ y18;
    let t8 = y5 & y1;
    let t9 = t8 ^ t7;
    let t19 = t9 ^ t14;
    let t23 = t19 ^ y21;
    let t3 = y3 & y6;
    let t4 = t3 ^ t2;
    let t17 = t4 ^ y20;
    let t21 = t17 ^ t14;
    let t26 = t21 & t23;
    let t27 = t24 ^ t26;
    let t31 = t22 ^ t26;
    let t25 = t21 ^ t22;
    let t28 = t25 & t27;
    let t29 = t28 ^ t22;
    let z14 = t29 & y2;
    let z5 = t29 & y7;
    let t30 = t23 ^ t24;
    let t32 = t31 & t30;
    let t33 = t32 ^ t24;
    let t35 = t27 ^ t33;
    let t36 = t24 & t35;
    let t38 = t27 ^ t36;
    let t39 = t29 & t38;
    let t40 = t25 ^ t39;
    let t43 = t29 ^ t40;
    let z3 = t43 & y16;
    let z12 = t43 & y13;
    let z13 = t40 & y5;
    let z4 = t40 & y1;
    let t34 = t23 ^ t33;
    let t37 = t36 ^ t34;
    let t41 = t40 ^ t37;
    let z8 = t41 & y10;
    let z17 = t41 & y8;
    let t44 = t33 ^ t37;
    let z0 = t44 & y15;
    let z9 = t44 & y12;
    let z10 = t37 & y3;
    let z1 = t37 & y6;
    let z11 = t33 & y4;
    let t42 = t29 ^ t33;
    let t45 = t42 ^ t41;
    let z7 = t45 & y17;
    let z16 = t45 & y14;
    let z6 = t42 & y11;
    let z15 = t42 & y9;
    let z2 = t33 & u7;
    let m18 = z0 ^ z6;
    let m19 = z1 ^ z9;
    let m20 = z4 ^ z5;
    let m21 = z10 ^ m19;
    let m22 = z13 ^ z15;
    let m23 = z8 ^ m18;
    let m24 = z14 ^ z17;
    let m25 = z16 ^ m20;
    let m26 = m21 ^ m24;
    let m27 = z2 ^ m22;
    let m28 = z7 ^ m18;
    let m29 = m23 ^ m25;
    let m30 = m26 ^ m28;
    let m31 = z1 ^ z12;
    let m32 = z2 ^ m23;
    let m33 = z3 ^ z4;
    let m34 = z6 ^ z7;
    let m35 = z11 ^ z14;
    let m36 = z12 ^ z16;
    let m37 = z15 ^ m21;
    let m38 = m19 ^ m25;
    let m39 = m20 ^ m26;
    let m40 = m22 ^ m29;
    let m41 = m22 ^ m30;
    let m42 = m27 ^ m35;
    let m43 = m27 ^ m39;
    let m44 = m29 ^ m37;
    let m45 = m30 ^ m36;
    let m46 = m31 ^ m40;
    let m47 = m33 ^ m34;
    let m48 = m38 ^ m42;
    [m45, m43, m46, m32, m41, m44, m48, m47]
}
