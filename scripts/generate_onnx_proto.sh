#!/usr/bin/env bash
# Regenerates Sources/PARTONNX/Generated/onnx.pb.swift, the Swift types of ONNX's protobuf
# messages (ModelProto, GraphProto, NodeProto, TensorProto, ...), from onnx.proto.
#
# Usage: scripts/generate_onnx_proto.sh ONNX_PROTO PROTOC_GEN_SWIFT
#   ONNX_PROTO        onnx.proto of an ONNX release (the `onnx` Python package ships it as
#                     onnx/onnx.proto: `pip download onnx`, or `python -c "import onnx, os;
#                     print(os.path.dirname(onnx.__file__))"` once it is installed)
#   PROTOC_GEN_SWIFT  swift-protobuf's protoc plugin, of the version in Package.swift (in a
#                     checkout of apple/swift-protobuf: swift build -c release --product protoc-gen-swift)
# Needs protoc (Debian: apt-get install protobuf-compiler).
set -euo pipefail

if [ "$#" -ne 2 ]; then
    sed -n '2,13p' "$0" >&2
    exit 64
fi
proto=$1
plugin=$2
[ -f "$proto" ] || { echo "error: $proto: no such file" >&2; exit 1; }
[ -x "$plugin" ] || { echo "error: $plugin: not an executable" >&2; exit 1; }
command -v protoc >/dev/null || { echo "error: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/Sources/PARTONNX/Generated"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# protoc names the output after the file: copy it as onnx.proto whatever it was called.
cp "$proto" "$work/onnx.proto"
mkdir -p "$out"
# Public types, for the module's users to read a model's graph.
protoc --plugin=protoc-gen-swift="$plugin" --proto_path="$work" --swift_opt=Visibility=Public \
    --swift_out="$work" "$work/onnx.proto"
mv "$work/onnx.pb.swift" "$out/onnx.pb.swift"
echo "wrote $out/onnx.pb.swift"
