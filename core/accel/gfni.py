#!/usr/bin/env python3
"""Prints the GF2P8AFFINEQB / GF2P8AFFINEINVQB matrices of src/sm4_x86.rs, checked against
SM4's S-box for all 256 bytes.

SM4: S(x) = A.I(A.x + C) + C, I the inverse in GF(2^8) mod 0x1F5, C = 0xD3. GF2P8AFFINEINVQB
inverts in AES's field (mod 0x11B); with phi an isomorphism of SM4's field onto AES's
(x^i -> beta^i, beta a root of 0x1F5 there), S(x) = (A.phi^-1).I_aes(phi.A.x + phi(C)) + C:
IN_MATRIX = phi.A with IN_CONSTANT = phi(C), OUT_MATRIX = A.phi^-1 with OUT_CONSTANT = C.
The field arithmetic, SM4's A and the standard's S-box (read from core/src/suite/sm/sm4.rs)
are circuit.py's. Usage: python3 core/accel/gfni.py
"""
import re
import sys
from pathlib import Path

SM4_DIR = Path(__file__).resolve().parent.parent / "src" / "suite" / "sm"
sys.path.insert(0, str(SM4_DIR / "sm4"))
import circuit as c  # noqa: E402


def qword(rows):
    """A matrix as GF2P8AFFINEQB takes it: byte 7 - i of the quadword is row i."""
    return sum(rows[i] << (8 * (7 - i)) for i in range(8))


def gf_affine(q, x, b):
    """GF2P8AFFINEQB on one byte: bit i is parity(byte 7 - i of q AND x) XOR bit i of b."""
    return sum(((bin((q >> (8 * (7 - i))) & 0xFF & x).count("1") & 1) ^ (b >> i & 1)) << i for i in range(8))


def main():
    src = (SM4_DIR / "sm4.rs").read_text()
    table = src[src.index("const SBOX") :]
    sbox = [int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", table[: table.index("];")])]
    assert len(sbox) == 256
    inv = [c.ginv(z, c.AES_P) for z in range(256)]
    # The first root beta of SM4's polynomial in AES's field (0x23): the one src/sm4_x86.rs uses.
    for beta in range(2, 256):
        powers = [1]
        for _ in range(8):
            powers.append(c.gmul(powers[-1], beta, c.AES_P))
        if c._xor(powers[i] for i in range(9) if c.P >> i & 1):
            continue
        phi = lambda x, pw=powers: c._xor(pw[i] for i in range(8) if x >> i & 1)  # noqa: E731
        phi_inv = c.inverse_of(phi)
        q_in = qword(c.rows_of(lambda x: phi(c.apply(c.A, x))))
        c_in = phi(c.C)
        q_out = qword(c.rows_of(lambda y: c.apply(c.A, phi_inv(y))))
        assert all(gf_affine(q_out, inv[gf_affine(q_in, x, c_in)], c.C) == sbox[x] for x in range(256))
        print(f"beta = {beta:#04x}")
        print(f"IN_MATRIX = {q_in:#018x}, IN_CONSTANT = {c_in:#04x}")
        print(f"OUT_MATRIX = {q_out:#018x}, OUT_CONSTANT = {c.C:#04x}")
        return


if __name__ == "__main__":
    main()
