#!/usr/bin/env bash
# Regenerates Sources/LicenseWire/Generated/*.pb.swift from Protos/ with Debian's protoc and a
# protoc-gen-swift built from the swift-protobuf version that Package.swift pins.
#
#   Tools/generate-protos.sh           regenerate in place
#   Tools/generate-protos.sh --check   fail (exit 1) when the committed code is stale
set -euo pipefail
cd "$(dirname "$0")/.."

command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 2; }

# The swift-protobuf checkout SwiftPM resolved for this package (same version as the runtime).
swift package resolve >/dev/null
src=.build/checkouts/swift-protobuf
[ -d "$src" ] || { echo "swift-protobuf checkout missing at $src" >&2; exit 2; }
scratch=.build-protoc-gen-swift
swift build -c release --package-path "$src" --scratch-path "$scratch" --product protoc-gen-swift >&2
plugin="$scratch/release/protoc-gen-swift"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protoc --plugin=protoc-gen-swift="$plugin" \
  --swift_opt=Visibility=Public --swift_opt=FileNaming=DropPath \
  --swift_out="$out" -I Protos Protos/coditect/license/v1/license.proto

dest=Sources/LicenseWire/Generated
if [ "${1:-}" = "--check" ]; then
  if ! diff -ru "$dest" "$out"; then
    echo "generated protobuf code is stale: run Tools/generate-protos.sh and commit" >&2
    exit 1
  fi
  echo "generated protobuf code is up to date"
else
  mkdir -p "$dest"
  rm -f "$dest"/*.pb.swift
  cp "$out"/*.pb.swift "$dest"/
  echo "wrote $(ls "$dest")"
fi
