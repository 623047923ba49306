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
sim=target/ios-sim-universal/release
mkdir -p "$sim"
lipo -create target/aarch64-apple-ios-sim/release/libbaomi_ffi.a target/x86_64-apple-ios/release/libbaomi_ffi.a \
     -output "$sim/libbaomi_ffi.a"
headers=ios/Sources/BaomiCoreFFI/include
rm -rf ios/BaomiCoreFFI.xcframework
xcodebuild -create-xcframework \
  -library target/aarch64-apple-ios/release/libbaomi_ffi.a -headers "$headers" \
  -library "$sim/libbaomi_ffi.a" -headers "$headers" \
  -output ios/BaomiCoreFFI.xcframework
