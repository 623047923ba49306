#!/usr/bin/env python3
"""What each dependency adds to the shipped library: sums symbol sizes (`nm -S`) of the
release cdylib by crate (the first path segment of a demangled Rust symbol; C symbols by
their library's prefix). `cargo bloat` refuses crates that are also `staticlib`, hence this.

    cargo build --release -p baomi-ffi && cargo build --profile mobile -p baomi-ffi
    python3 docs/size-report.py

The per-crate table comes from the `release` build (it keeps symbols); the shipped size is
the `mobile` profile's (opt-level "s", stripped).
"""
import collections
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIB = ROOT / "target" / "release" / "libbaomi_ffi.so"
MOBILE = ROOT / "target" / "mobile" / "libbaomi_ffi.so"

C_PREFIXES = [
    ("sqlite3", "sqlite3 (C, bundled by rusqlite)"),
    ("ring_core_", "ring (C and assembly)"),
    ("GFp", "ring (C and assembly)"),
]


def crate_of(sym):
    for prefix, name in C_PREFIXES:
        if sym.startswith(prefix):
            return name
    s = sym
    # <impl Trait for Type>::method, <Type as Trait>::method: take the type's crate.
    s = s.lstrip("<&*").replace("dyn ", "").replace("mut ", "").replace("const ", "")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", s)
    if m:
        name = m.group(1)
        return {"std": "std", "core": "std", "alloc": "std"}.get(name, name)
    if sym.startswith("uniffi_") or sym.startswith("ffi_baomi"):
        return "baomi_ffi (uniffi scaffolding)"
    if sym.startswith("Java_") or sym == "JNI_OnLoad":
        return "baomi_ffi (JNI)"
    return "other (C runtime, unnamed)"


def main():
    if not LIB.is_file():
        sys.exit(f"{LIB} missing: cargo build --release -p baomi-ffi")
    out = subprocess.run(["nm", "-S", "--size-sort", "-C", str(LIB)], capture_output=True, text=True, check=True).stdout
    sizes = collections.Counter()
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[2].lower() in "tdrbvw":
            sizes[crate_of(parts[3])] += int(parts[1], 16)
    with tempfile.TemporaryDirectory() as d:
        stripped = pathlib.Path(d) / "lib.so"
        shutil.copy(LIB, stripped)
        subprocess.run(["strip", str(stripped)], check=True)
        total = stripped.stat().st_size
    named = sum(sizes.values())
    if MOBILE.is_file():
        m = MOBILE.stat().st_size
        print(f"shipped (profile mobile, opt-level s, stripped): {m / 1e6:.2f} MB ({m} bytes)")
    print(f"release, stripped: {total / 1e6:.2f} MB ({total} bytes); symbols account for {named / 1e6:.2f} MB")
    print("| crate | bytes | share of symbol bytes |")
    print("|---|---|---|")
    for name, n in sizes.most_common(15):
        print(f"| {name} | {n:,} | {100 * n / named:.1f}% |")


if __name__ == "__main__":
    main()
