#!/usr/bin/env bash
# Prints the path of s3s-fs 0.14.1 (crates.io), an S3 HTTP server keeping
# objects as files, building it once into ~/.cache/skyvault/tools (~3 min).
# The benchmarks use it instead of moto, whose ranged GETs copy the whole
# object (a 4 KiB range of a 64 MiB object: 38 ms, of a small one: 5 ms).
set -euo pipefail
ROOT=$HOME/.cache/skyvault/tools/s3s-fs-0.14.1
if [[ ! -x $ROOT/bin/s3s-fs ]]; then
    echo "==> installing s3s-fs 0.14.1 (crates.io; once, into $ROOT)" >&2
    cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$ROOT" >&2
fi
echo "$ROOT/bin/s3s-fs"
