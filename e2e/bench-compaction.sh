#!/usr/bin/env bash
# Compaction memory benchmark: one `skyvault compact` job (release build)
# merges SKYVAULT_COMPACTION_MEMORY_INPUT_MIB of L0 files (default 4096, in
# 32 MiB files of random 16-byte keys and incompressible 1 KiB values) and
# reports its own peak RSS; the test fails above 24 MiB + 1.5 MiB per input file.
# Results: the `compaction_memory` line of the output; see docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export SKYVAULT_COMPACTION_MEMORY_INPUT_MIB="${SKYVAULT_COMPACTION_MEMORY_INPUT_MIB:-4096}"
export SKYVAULT_COMPACTION_MEMORY_FILE_MIB="${SKYVAULT_COMPACTION_MEMORY_FILE_MIB:-32}"
cargo test --release -p skyvault --test compaction_memory -- --nocapture 2>&1 \
    | grep -E 'compaction_memory|compaction summary|test result|panicked'
