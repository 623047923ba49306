#!/usr/bin/env bash
# Regenerates the committed Kotlin and Swift bindings from the host-built library, with the
# workspace's pinned uniffi-bindgen (library mode). `--check` fails when the committed files
# differ from freshly generated ones (CI runs it).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --quiet --locked -p baomi-ffi
lib=target/debug/libbaomi_ffi.so
[ -f "$lib" ] || lib=target/debug/libbaomi_ffi.dylib
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo run --quiet --locked -p uniffi-bindgen -- generate --library "$lib" --language kotlin --no-format --out-dir "$out/kotlin" >/dev/null
cargo run --quiet --locked -p uniffi-bindgen -- generate --library "$lib" --language swift --no-format --out-dir "$out/swift" >/dev/null
kotlin_dst=android/baomi/src/main/kotlin/cn/baomi/core
swift_dst=ios/Sources
pairs=(
  "$out/kotlin/cn/baomi/core/baomi_ffi.kt:$kotlin_dst/baomi_ffi.kt"
  "$out/swift/BaomiCore.swift:$swift_dst/BaomiCore/BaomiCore.swift"
  "$out/swift/BaomiCoreFFI.h:$swift_dst/BaomiCoreFFI/include/BaomiCoreFFI.h"
  "$out/swift/BaomiCoreFFI.modulemap:$swift_dst/BaomiCoreFFI/include/module.modulemap"
)
status=0
for p in "${pairs[@]}"; do
  src=${p%%:*}; dst=${p##*:}
  if [ "${1:-}" = "--check" ]; then
    if ! diff -q "$src" "$dst" >/dev/null 2>&1; then
      echo "stale bindings: $dst differs from freshly generated ($0 to update)" >&2
      status=1
    fi
  else
    mkdir -p "$(dirname "$dst")"
    cp "$src" "$dst"
    echo "wrote $dst"
  fi
done
exit $status
