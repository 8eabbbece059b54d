#!/usr/bin/env bash
# Generates the Python gRPC stubs from the repository's proto/ into ./gen
# (or the directory given as $1). Needs grpcio-tools (requirements.txt).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/gen}"
python="${PYTHON:-python3}"
mkdir -p "$out"
"$python" -m grpc_tools.protoc -I "$here/../../proto" \
    --python_out="$out" --grpc_python_out="$out" \
    batcher/v1/batcher.proto index/v1/index.proto
echo "generated into $out"
