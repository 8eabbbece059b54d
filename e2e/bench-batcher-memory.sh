#!/usr/bin/env bash
# Memory of a batcher whose write queue is full: what the operator's batcher memory request
# (operator/src/statefulset.rs) and `--batch-queue-max-bytes` are checked against.
#
# For each queue budget in BATCHER_MEMORY_QUEUES_MIB (default "64 256") and each request
# shape (tiny: 10,000 entries of 16-byte keys and empty values; large: 1,000 entries of
# 4 KiB values) it starts a batcher (release build, SQLite metadata, moto S3 on loopback),
# writes for a few seconds so the flush path is warm, then freezes the object store
# (SIGSTOP: every PUT hangs, so nothing leaves the queue) and floods the batcher with
# BATCHER_MEMORY_CLIENTS (default 1024) writers. It prints the batcher's RSS before the
# flood, its peak RSS (VmHWM), the largest `skyvault_batcher_queued_bytes` seen and how the
# writes ended (most are RESOURCE_EXHAUSTED by design).
# Results: target/bench/batcher-memory.md; recorded in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/skyvault}
QUEUES=${BATCHER_MEMORY_QUEUES_MIB:-64 256}
CLIENTS=${BATCHER_MEMORY_CLIENTS:-1024}
FLOOD=${BATCHER_MEMORY_FLOOD:-10s}
MOTO=${MOTO:-$(command -v moto_server || true)}
[[ -x $BIN ]] || { echo "no $BIN: cargo build --release -p skyvault" >&2; exit 1; }
[[ -n $MOTO ]] || { echo "no moto_server: python3 -m pip install 'moto[server]'" >&2; exit 1; }
OUT=target/bench
mkdir -p "$OUT"
PIDS=() DATA=''
cleanup() {
    for p in "${PIDS[@]}"; do
        kill -CONT "$p" 2> /dev/null || true
        kill "$p" 2> /dev/null || true
        wait "$p" 2> /dev/null || true
    done
    [[ -z $DATA ]] || rm -rf "$DATA"
}
trap cleanup EXIT

wait_http() {
    for _ in $(seq 300); do curl -s -o /dev/null "http://$1" && return 0; sleep 0.1; done
    echo "nothing answers on $1" >&2
    exit 1
}
wait_ready() {
    for _ in $(seq 300); do curl -sf "http://$1/readyz" > /dev/null && return 0; sleep 0.1; done
    echo "no /readyz on $1" >&2
    exit 1
}
mib() { echo $(($(awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status") / 1024)); }
queued_mib() {
    curl -sf "http://$1/metrics" |
        awk '$1 == "skyvault_batcher_queued_bytes" {printf "%.0f", $2 / 1048576}'
}

{
    echo "| queue MiB | requests | RSS before MiB | peak RSS MiB | peak queued MiB (metric) | writes ok / refused / other |"
    echo "| ---: | --- | ---: | ---: | ---: | --- |"
} > "$OUT/batcher-memory.md"

run() { # queue_mib shape value_size batch_size
    local queue_mib=$1 shape=$2 value=$3 batch=$4
    DATA=$(mktemp -d)
    "$MOTO" -H 127.0.0.1 -p 50290 > "$DATA/moto.log" 2>&1 &
    PIDS+=($!) && local moto=$!
    wait_http 127.0.0.1:50290
    curl -sf -X PUT http://127.0.0.1:50290/bench > /dev/null
    "$BIN" migrate --metadata-url "sqlite://$DATA/meta.db" > /dev/null
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench SKYVAULT_S3_ENDPOINT=http://127.0.0.1:50290 \
        SKYVAULT_S3_PATH_STYLE=true SKYVAULT_S3_REGION=us-east-1 \
        "$BIN" batcher --grpc-addr 127.0.0.1:50291 --http-addr 127.0.0.1:9291 \
        --metadata-url "sqlite://$DATA/meta.db" --object-store-url s3://bench/ \
        --batch-queue-max-bytes $((queue_mib * 1048576)) 2> "$OUT/batcher-memory-batcher.log" &
    PIDS+=($!) && local batcher=$!
    wait_ready 127.0.0.1:9291
    local shape_args=(--key-size 16 --value-size "$value" --batch-size "$batch" --keys 1000000000)
    "$BIN" bench --batcher-addr 127.0.0.1:50291 --index-addr 127.0.0.1:50291 --workload write \
        "${shape_args[@]}" --concurrency 8 --warmup 0s --duration 3s --json > /dev/null
    local before
    before=$(mib "$batcher" VmRSS)
    kill -STOP "$moto"
    "$BIN" bench --batcher-addr 127.0.0.1:50291 --index-addr 127.0.0.1:50291 --workload write \
        "${shape_args[@]}" --concurrency "$CLIENTS" --warmup 0s --duration "$FLOOD" --json \
        > "$OUT/batcher-memory-$queue_mib-$shape.json" &
    local bench=$! peak_queued=0 q
    while kill -0 "$bench" 2> /dev/null; do
        q=$(queued_mib 127.0.0.1:9291 || echo 0)
        ((q > peak_queued)) && peak_queued=$q
        sleep 0.2
    done
    wait "$bench" || true
    local line="| $queue_mib | $shape | $before | $(mib "$batcher" VmHWM) | $peak_queued |"
    line+=" $(python3 -c 'import json, sys
r = json.load(open(sys.argv[1])); e = r["errors"]
refused = e.get("ResourceExhausted", 0)
print(r["requests"], "/", refused, "/", sum(e.values()) - refused, e)' "$OUT/batcher-memory-$queue_mib-$shape.json") |"
    echo "$line" | tee -a "$OUT/batcher-memory.md"
    cleanup
    PIDS=() DATA=''
}

for queue_mib in $QUEUES; do
    run "$queue_mib" "tiny: 10,000 x (16 B key, empty value)" 0 10000
    run "$queue_mib" "large: 1,000 x (16 B key, 4 KiB value)" 4096 1000
done
cat "$OUT/batcher-memory.md"
