#!/usr/bin/env bash
# Memory of the index and cache roles under load, per cache size: what the operator's
# memory sizing (operator/src/memory.rs) is derived from. For each capacity in
# ROLE_MEMORY_CAPACITIES_MIB (default "32 128 512") it starts a batcher, an index and a
# cache replica (release build, SQLite + local directory: no network store in the way),
# preloads a key space larger than the biggest cache while compacting it, then runs point
# reads (through the cache replica) and scans (through the index's own cache) at 64 clients and
# prints each role's peak RSS (VmHWM), RSS at the end and cache bytes per capacity.
# Results: target/bench/role-memory.md; recorded in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/skyvault}
CAPS=${ROLE_MEMORY_CAPACITIES_MIB:-128 512 1024}
KEYS=${ROLE_MEMORY_KEYS:-600000}
VALUE=${ROLE_MEMORY_VALUE_BYTES:-2048}
DURATION=${ROLE_MEMORY_DURATION:-60s}
OUT=target/bench
mkdir -p "$OUT"
PIDS=() DATA=''
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; wait "$p" 2> /dev/null || true; done
    [[ -z $DATA ]] || rm -rf "$DATA"
}
trap cleanup EXIT

wait_ready() {
    for _ in $(seq 300); do curl -sf "http://$1/readyz" > /dev/null && return 0; sleep 0.1; done
    echo "no /readyz on $1" >&2
    exit 1
}
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
metric() { curl -sf "http://$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $2} END {printf "%.0f", s / 1048576}'; }

{
    echo "| cache MiB | index peak / end RSS MiB | index cache MiB | cache peak / end RSS MiB | cache-tier cache MiB | read keys/s, errors |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
} > "$OUT/role-memory.md"

for cap_mib in $CAPS; do
    cap=$((cap_mib * 1048576))
    DATA=$(mktemp -d)
    common=(--metadata-url "sqlite://$DATA/meta.db" --object-store-url "file://$DATA/objects")
    mkdir -p "$DATA/objects"
    "$BIN" migrate --metadata-url "sqlite://$DATA/meta.db" > /dev/null
    "$BIN" cache --grpc-addr 127.0.0.1:50271 --http-addr 127.0.0.1:9271 \
        --object-store-url "file://$DATA/objects" --cache-capacity-bytes "$cap" 2> "$OUT/role-memory-cache.log" &
    PIDS+=($!) && cache_pid=$!
    "$BIN" batcher --grpc-addr 127.0.0.1:50272 --http-addr 127.0.0.1:9272 "${common[@]}" \
        2> "$OUT/role-memory-batcher.log" &
    PIDS+=($!)
    "$BIN" index --grpc-addr 127.0.0.1:50273 --http-addr 127.0.0.1:9273 "${common[@]}" \
        --cache-capacity-bytes "$cap" --cache-peers 127.0.0.1:50271 2> "$OUT/role-memory-index.log" &
    PIDS+=($!) && index_pid=$!
    wait_ready 127.0.0.1:9271 && wait_ready 127.0.0.1:9272 && wait_ready 127.0.0.1:9273
    addrs=(--batcher-addr 127.0.0.1:50272 --index-addr 127.0.0.1:50273)
    # Compaction Jobs as the operator would run them, back to back, so level 0 stays small
    # while the bench preloads the key space and reads it back (values checked).
    (while [[ ! -e $DATA/stop ]]; do
        rc=0
        "$BIN" compact "${common[@]}" >> "$OUT/role-memory-compact.log" 2>&1 || rc=$?
        [[ $rc == 0 ]] || sleep 1
    done) &
    compactor=$!
    "$BIN" bench "${addrs[@]}" --workload read --keys "$KEYS" --value-size "$VALUE" \
        --duration "$DURATION" --json > "$OUT/role-memory-read-$cap_mib.json"
    "$BIN" bench "${addrs[@]}" --workload scan --no-preload --keys "$KEYS" --value-size "$VALUE" \
        --batch-size 100 --duration "$DURATION" --json > "$OUT/role-memory-scan-$cap_mib.json"
    touch "$DATA/stop"
    wait "$compactor"
    line="| $cap_mib | $(($(kib "$index_pid" VmHWM) / 1024)) / $(($(kib "$index_pid" VmRSS) / 1024)) |"
    line+=" $(metric 127.0.0.1:9273 skyvault_cache_bytes) |"
    line+=" $(($(kib "$cache_pid" VmHWM) / 1024)) / $(($(kib "$cache_pid" VmRSS) / 1024)) |"
    line+=" $(metric 127.0.0.1:9271 skyvault_cache_bytes) |"
    line+=" $(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(round(r["keys_per_s"]), sum(r["errors"].values()))' "$OUT/role-memory-read-$cap_mib.json") |"
    echo "$line" | tee -a "$OUT/role-memory.md"
    cleanup
    PIDS=() DATA=''
done
cat "$OUT/role-memory.md"
