#!/usr/bin/env python3
"""Writes the body of `sbox` in circuit.rs, checked against SM4's S-box for all 256 bytes.

SM4 (GB/T 32907): S(x) = A.I(A.x + C) + C, I the inverse in GF(2^8) mod 0x1F5, C = 0xD3.
AES: S_aes(z) = M.inv(z) + 0x63 (inv mod 0x11B); B(z) = S_aes(z) + 0x63 is Boyar, Peralta and
Calik's 113-gate circuit (GATES: a linear top layer, 32 ANDs and XORs in the middle making
z0..z17, a linear bottom layer; input u0 and output s0 are the top bits).
With phi an isomorphism of SM4's field onto AES's (x^i -> beta^i, beta a root of 0x1F5 there):
    S(x) = A_out.B(A_in.x + c_in) + 0xD3,  A_in = phi.A,  c_in = phi(C),  A_out = A.phi^-1.M^-1
The circuit computes S'(x) = S(x + IN) + 0xD3 with IN = A_in^-1.c_in, leaving both constants
to the caller. A_in is merged into the top layer and A_out into the bottom one, each layer's
XORs found again by Paar's greedy common-pair search; of the eight roots beta, the one with the
fewest gates is written.  Usage: python3 circuit.py  (prints the body; IN and OUT to stderr)
"""
import itertools
import re
import sys
from pathlib import Path

GATES = """
y14 = u3 ^ u5
y13 = u0 ^ u6
y12 = y13 ^ y14
t1 = u4 ^ y12
y15 = t1 ^ u5
t2 = y12 & y15
y6 = y15 ^ u7
y20 = t1 ^ u1
y9 = u0 ^ u3
y11 = y20 ^ y9
t12 = y9 & y11
y7 = u7 ^ y11
y8 = u0 ^ u5
t0 = u1 ^ u2
y10 = y15 ^ t0
y17 = y10 ^ y11
t13 = y14 & y17
t14 = t13 ^ t12
y19 = y10 ^ y8
t15 = y8 & y10
t16 = t15 ^ t12
y16 = t0 ^ y11
y21 = y13 ^ y16
t7 = y13 & y16
y18 = u0 ^ y16
y1 = t0 ^ u7
y4 = y1 ^ u3
t5 = y4 & u7
t6 = t5 ^ t2
t18 = t6 ^ t16
t22 = t18 ^ y19
y2 = y1 ^ u0
t10 = y2 & y7
t11 = t10 ^ t7
t20 = t11 ^ t16
t24 = t20 ^ y18
y5 = y1 ^ u6
t8 = y5 & y1
t9 = t8 ^ t7
t19 = t9 ^ t14
t23 = t19 ^ y21
y3 = y5 ^ y8
t3 = y3 & y6
t4 = t3 ^ t2
t17 = t4 ^ y20
t21 = t17 ^ t14
t26 = t21 & t23
t27 = t24 ^ t26
t31 = t22 ^ t26
t25 = t21 ^ t22
t28 = t25 & t27
t29 = t28 ^ t22
z14 = t29 & y2
z5 = t29 & y7
t30 = t23 ^ t24
t32 = t31 & t30
t33 = t32 ^ t24
t35 = t27 ^ t33
t36 = t24 & t35
t38 = t27 ^ t36
t39 = t29 & t38
t40 = t25 ^ t39
t43 = t29 ^ t40
z3 = t43 & y16
tc12 = z3 ^ z5
z12 = t43 & y13
z13 = t40 & y5
z4 = t40 & y1
tc6 = z3 ^ z4
t34 = t23 ^ t33
t37 = t36 ^ t34
t41 = t40 ^ t37
z8 = t41 & y10
z17 = t41 & y8
t44 = t33 ^ t37
z0 = t44 & y15
z9 = t44 & y12
z10 = t37 & y3
z1 = t37 & y6
tc5 = z1 ^ z0
tc11 = tc6 ^ tc5
z11 = t33 & y4
t42 = t29 ^ t33
t45 = t42 ^ t41
z7 = t45 & y17
tc8 = z7 ^ tc6
z16 = t45 & y14
z6 = t42 & y11
tc16 = z6 ^ tc8
z15 = t42 & y9
tc20 = z15 ^ tc16
tc1 = z15 ^ z16
tc2 = z10 ^ tc1
tc21 = tc2 ^ z11
tc3 = z9 ^ tc2
s0 = tc3 ^ tc16
s3 = tc3 ^ tc11
s1 = s3 ^ tc16
tc13 = z13 ^ tc1
z2 = t33 & u7
tc4 = z0 ^ z2
tc7 = z12 ^ tc4
tc9 = z8 ^ tc7
tc10 = tc8 ^ tc9
tc17 = z14 ^ tc10
s5 = tc21 ^ tc17
tc26 = tc17 ^ tc20
s2 = tc26 ^ z17
tc14 = tc4 ^ tc12
tc18 = tc13 ^ tc14
s6 = tc10 ^ tc18
s7 = z12 ^ tc18
s4 = tc14 ^ s3
"""

A = [0xA7, 0x4F, 0x9E, 0x3D, 0x7A, 0xF4, 0xE9, 0xD3]  # SM4's A: row i is bit i's inputs
C, P, AES_P = 0xD3, 0x1F5, 0x11B
M = [(0xF1 << i | 0xF1 >> (8 - i)) & 0xFF for i in range(8)]  # AES's affine map


def gmul(a, b, p):
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a & 0x100:
            a ^= p
    return r


def ginv(a, p):
    return next((b for b in range(1, 256) if gmul(a, b, p) == 1), 0)


def apply(rows, x):
    return sum((bin(rows[i] & x).count("1") & 1) << i for i in range(8))


def rows_of(f):
    cols = [f(1 << j) for j in range(8)]
    return [sum((cols[j] >> i & 1) << j for j in range(8)) for i in range(8)]


def inverse_of(f):
    t = {f(x): x for x in range(256)}
    assert len(t) == 256
    return lambda y: t[y]


GATE_LIST = [(g[0], g[2], g[3], g[4]) for g in (line.split() for line in GATES.strip().split("\n"))]


def bp(z):
    env = {f"u{k}": z >> (7 - k) & 1 for k in range(8)}
    for d, a, op, c in GATE_LIST:
        env[d] = env[a] & env[c] if op == "&" else env[a] ^ env[c]
    return sum(env[f"s{7 - i}"] << i for i in range(8))


def paar(targets, n):
    """XORs of two signals each, from signals 0..n-1, until every target (a bit mask over
    them) is one signal: (program [(new, a, b)], the signal of each target)."""
    rows = [{i for i in range(n) if t >> i & 1} for t in targets]
    program = []
    while True:
        counts = {}
        for r in rows:
            for pair in itertools.combinations(sorted(r), 2):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return program, [next(iter(r)) for r in rows]
        (a, b), _ = max(counts.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
        program.append((n, a, b))
        for r in rows:
            if a in r and b in r:
                r -= {a, b}
                r.add(n)
        n += 1


def circuit(a_in, a_out):
    top = {f"u{k}": a_in[7 - k] for k in range(8)}  # each signal as a mask over x's bits
    for d, a, op, c in GATE_LIST:
        if op == "^" and a in top and c in top:
            top[d] = top[a] ^ top[c]
    zs = sorted((d for d, *_ in GATE_LIST if d.startswith("z")), key=lambda z: int(z[1:]))
    bottom = {z: 1 << i for i, z in enumerate(zs)}  # as masks over z0..z17
    for d, a, op, c in GATE_LIST:
        if op == "^" and a in bottom and c in bottom:
            bottom[d] = bottom[a] ^ bottom[c]
    middle = [g for g in GATE_LIST if g[0] not in top and (g[0] not in bottom or g[0] in zs)]
    inputs = sorted({s for _, a, _, c in middle for s in (a, c) if s in top})
    top_program, top_signals = paar([top[s] for s in inputs], 8)
    outputs = [0] * 8
    for i, r in enumerate(a_out):
        for j in range(8):
            if r >> j & 1:
                outputs[i] ^= bottom[f"s{7 - j}"]
    bottom_program, output_signals = paar(outputs, len(zs))
    lines = []
    x = lambda i: f"x[{i}]" if i < 8 else f"l{i}"
    lines += [f"    let l{n} = {x(a)} ^ {x(b)};" for n, a, b in top_program]
    lines += [f"    let {s} = {x(i)};" for s, i in zip(inputs, top_signals)]
    lines += [f"    let {d} = {a} {op} {c};" for d, a, op, c in middle]
    z = lambda i: zs[i] if i < len(zs) else f"m{i}"
    lines += [f"    let m{n} = {z(a)} ^ {z(b)};" for n, a, b in bottom_program]
    lines.append("    [" + ", ".join(z(i) for i in output_signals) + "]")
    gates = len(top_program) + len(middle) + len(bottom_program)
    return gates, lines


def run(lines, x):
    env = {f"x[{i}]": x >> i & 1 for i in range(8)}
    outputs = []
    for line in lines:
        m = re.match(r"\s*let (\w+) = ([\w\[\]]+)(?: ([&^]) ([\w\[\]]+))?;", line)
        if m:
            d, a, op, c = m.groups()
            env[d] = env[a] if not op else env[a] & env[c] if op == "&" else env[a] ^ env[c]
        else:
            outputs = [env[s] for s in line.strip(" []").split(", ")]
    return sum(o << i for i, o in enumerate(outputs))


def main():
    src = (Path(__file__).parent.parent / "sm4.rs").read_text()
    table = src[src.index("const SBOX") :]
    sbox = [int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", table[: table.index("];")])]
    assert len(sbox) == 256
    assert all(apply(A, ginv(apply(A, x) ^ C, P)) ^ C == sbox[x] for x in range(256))
    assert all(bp(z) == apply(M, ginv(z, AES_P)) for z in range(256)), "B is AES's S-box"
    m_inv = inverse_of(lambda z: apply(M, z))
    best = None
    for beta in range(2, 256):
        powers = [1]
        for _ in range(8):
            powers.append(gmul(powers[-1], beta, AES_P))
        if _xor(powers[i] for i in range(9) if P >> i & 1):  # beta is not a root of P
            continue
        phi = lambda x, pw=powers: _xor(pw[i] for i in range(8) if x >> i & 1)
        phi_inv = inverse_of(phi)
        a_in = rows_of(lambda x: phi(apply(A, x)))
        a_out = rows_of(lambda y: apply(A, phi_inv(m_inv(y))))
        assert all(apply(a_out, bp(apply(a_in, x) ^ phi(C))) ^ C == sbox[x] for x in range(256))
        shift = inverse_of(lambda x: apply(a_in, x))(phi(C))
        gates, lines = circuit(a_in, a_out)
        assert all(run(lines, x) == sbox[x ^ shift] ^ C for x in range(256)), beta
        if best is None or gates < best[0]:
            best = (gates, lines, shift)
    gates, lines, shift = best
    print(f"{gates} gates; IN = {shift:#04x}, OUT = {C:#04x}", file=sys.stderr)
    print("\n".join(lines))


def _xor(values):
    r = 0
    for v in values:
        r ^= v
    return r


if __name__ == "__main__":
    main()
