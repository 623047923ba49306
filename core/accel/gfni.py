import sys, re
from pathlib import Path
sys.path.insert(0, "/work/main/core/src/suite/sm/sm4")
import circuit as c
src = Path("/work/main/core/src/suite/sm/sm4.rs").read_text()
table = src[src.index("const SBOX"):]
sbox = [int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", table[: table.index("];")])]
def qword(rows):
    return sum(rows[i] << (8 * (7 - i)) for i in range(8))
def gf_affine(q, x, b):
    return sum(((bin(((q >> (8*(7-i))) & 0xff) & x).count("1") & 1) ^ (b >> i & 1)) << i for i in range(8))
inv = [c.ginv(z, c.AES_P) for z in range(256)]
for beta in range(2, 256):
    powers = [1]
    for _ in range(8):
        powers.append(c.gmul(powers[-1], beta, c.AES_P))
    if c._xor(powers[i] for i in range(9) if c.P >> i & 1):
        continue
    phi = lambda x, pw=powers: c._xor(pw[i] for i in range(8) if x >> i & 1)
    phi_inv = c.inverse_of(phi)
    m1 = c.rows_of(lambda x: phi(c.apply(c.A, x)))
    c1 = phi(c.C)
    m2 = c.rows_of(lambda y: c.apply(c.A, phi_inv(y)))
    q1, q2 = qword(m1), qword(m2)
    ok = all(gf_affine(q2, inv[gf_affine(q1, x, c1)], c.C) == sbox[x] for x in range(256))
    print(f"beta={beta:#04x} M1={q1:#018x} c1={c1:#04x} M2={q2:#018x} c2={c.C:#04x} ok={ok}")
    break
