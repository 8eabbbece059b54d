#!/usr/bin/env bash
# The fixed benchmark suite (`just bench`). Runs every workload with
# `skyvault bench` against two deployments, one after the other:
#   standalone   `skyvault standalone` on a fresh directory (SQLite + local files)
#   distributed  PostgreSQL + an S3 HTTP server with separate batcher, index
#                and cache processes (started by the e2e harness, bin
#                skyvault-e2e-dataplane); the server is s3s-fs (BENCH_S3=moto for
#                moto, whose ranged GETs cost the whole object: see
#                e2e/install-s3s-fs.sh)
# and writes target/bench/results.{jsonl,md} with object-store requests per 1M
# operations (from the servers' /metrics) and peak RSS (VmHWM).
# Standalone compacts by itself (as soon as the LSM's debt says a level is due)
# and counts those requests; the distributed roles do not compact (on
# Kubernetes the operator starts `skyvault compact` Jobs from the index's debt),
# so the suite runs `skyvault compact` until nothing is due before each
# distributed workload (e2e/bench-sustained.sh drives it continuously instead).
# Knobs: BENCH_MODES=standalone|distributed|all (default all), BENCH_DURATION,
# BENCH_WARMUP, BENCH_GRPC_PORT/BENCH_HTTP_PORT (standalone), BENCH_COMPACT=0
# (distributed without the compaction between workloads), BENCH_S3=s3s-fs|moto,
# BENCH_STORE_MODELS (default "bare s3-standard"): each deployment runs once
# per entry, "bare" as it is and any other entry as the object-store latency
# model's spec (SKYVAULT_STORE_LATENCY, dataplane/src/objstore/latency.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
MODES=${BENCH_MODES:-all}
COMPACT=${BENCH_COMPACT:-1}
S3_SERVER=${BENCH_S3:-s3s-fs}
STORE_MODELS=${BENCH_STORE_MODELS:-bare s3-standard}
GRPC=127.0.0.1:${BENCH_GRPC_PORT:-50161}
HTTP=127.0.0.1:${BENCH_HTTP_PORT:-9161}
OUT=target/bench
BIN=${CARGO_TARGET_DIR:-target}/release/skyvault
case "$MODES" in
    standalone | distributed | all) ;;
    *) echo "BENCH_MODES must be standalone, distributed or all (got $MODES)"; exit 2 ;;
esac
want() { [[ $MODES == all || $MODES == "$1" ]]; }

SERVER='' HARNESS='' DATA=''
cleanup() {
    for pid in $SERVER $HARNESS; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    [[ -z $DATA ]] || rm -rf "$DATA"
}
trap cleanup EXIT

cargo build --release -p skyvault
mkdir -p "$OUT"
: > "$OUT/results.jsonl"
: > "$OUT/results.md"
: > "$OUT/compact.log"

# What the current mode measures: its name, the bench endpoint flags, the
# servers' HTTP addresses (summed for store requests) and PIDs (one RSS each).
MODE='' ADDR_ARGS=() HTTPS='' PIDS=''

objstore_requests() {
    local h
    for h in $HTTPS; do curl -sf "http://$h/metrics"; done |
        awk '/^skyvault_objstore_requests_total/ {s += $2} END {print s + 0}'
}
peak_rss_kib() {
    local p
    for p in $PIDS; do awk '/VmHWM/ {print $2}' "/proc/$p/status"; done | paste -sd/
}

table_header() {
    {
        [[ ! -s $OUT/results.md ]] || echo
        echo "$1"
        echo
        echo "| workload | req/s | keys/s | p50 ms | p99 ms | p99.9 ms | errors | store req / 1M ops | $2 |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
    } >> "$OUT/results.md"
}

# One bounded job per `skyvault compact`: repeat while it did work (exit 0);
# 3 (nothing due) and 4 (inputs held by another job) end the loop, anything else fails.
compact_until_done() {
    local rc
    while true; do
        rc=0
        "$BIN" compact >> "$OUT/compact.log" 2>&1 || rc=$?
        [[ $rc == 0 ]] || break
    done
    [[ $rc == 3 || $rc == 4 ]] || { echo "skyvault compact failed ($rc); see $OUT/compact.log"; exit 1; }
}

run() {
    local name=$1; shift
    local before after
    if [[ $MODE == distributed && $COMPACT == 1 ]]; then
        compact_until_done
    fi
    before=$(objstore_requests)
    "$BIN" bench "${ADDR_ARGS[@]}" --duration "$DURATION" --warmup "$WARMUP" --json "$@" > "$OUT/$MODE-$name.json"
    after=$(objstore_requests)
    python3 - "$OUT/$MODE-$name.json" "$MODE" "$name" "$((after - before))" "$(peak_rss_kib)" \
        "$OUT/results.md" "$OUT/results.jsonl" <<'PY'
import json, sys
path, mode, name, store_requests, rss, md, jsonl = sys.argv[1:]
store_requests = int(store_requests)
rss_mib = "/".join(f"{int(k) / 1024:.0f}" for k in rss.split("/"))
r = json.load(open(path))
ops = max(r["requests"], 1)
l = r["latency_ms"]
errors = sum(r["errors"].values())
errors_text = f"{errors} ({', '.join(f'{c}: {n}' for c, n in r['errors'].items())})" if errors else "0"
with open(md, "a") as f:
    print(f"| {name} | {r['requests_per_s']:,.0f} | {r['keys_per_s']:,.0f} | {l['p50']:.2f} | {l['p99']:.2f} | "
          f"{l['p99.9']:.2f} | {errors_text} | {store_requests * 1e6 / ops:,.0f} | {rss_mib} |", file=f)
with open(jsonl, "a") as f:
    print(json.dumps({"mode": mode, "name": name, **r, "objstore_requests": store_requests,
                      "peak_rss_kib": [int(k) for k in rss.split("/")]}), file=f)
PY
}

suite() {
    run floor-health --workload health
    run write-batch10 --workload write
    run write-batch1 --workload write --batch-size 1
    run read-warm --workload read
    # Cold: a key space far larger than what the warm run touched, read once.
    run read-cold --workload read --keys 1000000 --distribution uniform
    run mixed-50-50 --workload mixed:0.5 --no-preload
    run scan --workload scan --no-preload
}

# Exports the latency model for the servers started next ("bare": none).
use_model() {
    if [[ $1 == bare ]]; then
        unset SKYVAULT_STORE_LATENCY SKYVAULT_BENCHMARK
        MODEL_NOTE=''
    else
        export SKYVAULT_STORE_LATENCY=$1 SKYVAULT_BENCHMARK=1
        MODEL_NOTE="; object store under the latency model $1"
    fi
}

standalone_suite() {
    DATA=$(mktemp -d)
    "$BIN" standalone --data-dir "$DATA" --grpc-addr "$GRPC" --http-addr "$HTTP" 2> "$OUT/server.log" &
    SERVER=$!
    for _ in $(seq 100); do curl -sf "http://$HTTP/readyz" > /dev/null && break; sleep 0.1; done
    curl -sf "http://$HTTP/readyz" > /dev/null || { echo "server did not become ready; see $OUT/server.log"; exit 1; }
    MODE=standalone$1 ADDR_ARGS=(--addr "$GRPC") HTTPS=$HTTP PIDS=$SERVER
    table_header "standalone: one process, local directory + SQLite$MODEL_NOTE" "peak RSS MiB"
    suite
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=''
    rm -rf "$DATA"; DATA=''
}

distributed_suite() {
    [[ $S3_SERVER != s3s-fs ]] || bash e2e/install-s3s-fs.sh > /dev/null
    cargo build -p skyvault-e2e --bin skyvault-e2e-dataplane
    SKYVAULT_TEST_S3=$S3_SERVER SKYVAULT_BIN=$BIN "${CARGO_TARGET_DIR:-target}/debug/skyvault-e2e-dataplane" \
        > "$OUT/dataplane.env" 2> "$OUT/dataplane.log" &
    HARNESS=$!
    # The harness prints the READY line once PostgreSQL, moto and every role answer /readyz.
    for _ in $(seq 1200); do
        grep -q '^export SKYVAULT_BENCH_READY=1$' "$OUT/dataplane.env" && break
        kill -0 "$HARNESS" 2> /dev/null || break
        sleep 0.1
    done
    grep -q '^export SKYVAULT_BENCH_READY=1$' "$OUT/dataplane.env" ||
        { echo "distributed data plane did not become ready; see $OUT/dataplane.log"; tail -20 "$OUT/dataplane.log"; exit 1; }
    # shellcheck source=/dev/null
    . "$OUT/dataplane.env"
    MODE=distributed$1
    ADDR_ARGS=(--batcher-addr "$SKYVAULT_BENCH_BATCHER" --index-addr "$SKYVAULT_BENCH_INDEX")
    HTTPS=$SKYVAULT_BENCH_HTTP PIDS=$SKYVAULT_BENCH_PIDS
    compacted=', `skyvault compact` before each workload (not counted)'
    [[ $COMPACT == 1 ]] || compacted=', no compaction'
    table_header "distributed: PostgreSQL + $S3_SERVER S3, 1 batcher, 1 index (reads through the cache), 1 cache$compacted; health: the index; store req: all three roles$MODEL_NOTE" \
        "peak RSS MiB (b/i/c)"
    suite
    kill "$HARNESS"; wait "$HARNESS" 2>/dev/null || true; HARNESS=''
}

for model in $STORE_MODELS; do
    use_model "$model"
    tag=''
    [[ $model == bare ]] || tag="+$model"
    if want standalone; then standalone_suite "$tag"; fi
    if want distributed; then distributed_suite "$tag"; fi
done
cat "$OUT/results.md"
