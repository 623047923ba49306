#!/usr/bin/env bash
# Builds ios/BaomiCoreFFI.xcframework from core/ffi (static library + the generated C header
# and module map). Needs macOS with Xcode; not run in CI (no Swift toolchain on Linux here).
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
for t in "${targets[@]}"; do
  rustup target add "$t" >/dev/null
  cargo build --release --locked -p baomi-ffi --target "$t"
done
# Hide everything but the uniffi entry points: the bundled SQLite (and every Rust symbol) would
# otherwise clash with, or be interposed by, the system libsqlite3 that other frameworks in the
# app link. `ld -r` pre-links each static library into one object whose other globals become
# private externs; the app then sees only `uniffi_*` / `ffi_baomi_ffi_*`.
hide() {  # $1 target, $2 arch
  local lib=target/$1/release/libbaomi_ffi.a out=target/$1/release/hidden
  mkdir -p "$out"
  xcrun ld -r -arch "$2" -all_load -exported_symbols_list ios/exported_symbols.txt -o "$out/baomi_ffi.o" "$lib"
  xcrun libtool -static -o "$out/libbaomi_ffi.a" "$out/baomi_ffi.o"
  if xcrun nm -gU "$out/libbaomi_ffi.a" | grep -q ' _sqlite3_'; then
    echo "sqlite3 symbols still exported from $1" >&2; exit 1
  fi
}
hide aarch64-apple-ios arm64
hide aarch64-apple-ios-sim arm64
hide x86_64-apple-ios x86_64
sim=target/ios-sim-universal/release
mkdir -p "$sim"
lipo -create target/aarch64-apple-ios-sim/release/hidden/libbaomi_ffi.a target/x86_64-apple-ios/release/hidden/libbaomi_ffi.a \
     -output "$sim/libbaomi_ffi.a"
headers=ios/Sources/BaomiCoreFFI/include
rm -rf ios/BaomiCoreFFI.xcframework
xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/release/hidden/libbaomi_ffi.a -headers "$headers" \
  -library "$sim/libbaomi_ffi.a" -headers "$headers" \
  -output ios/BaomiCoreFFI.xcframework
