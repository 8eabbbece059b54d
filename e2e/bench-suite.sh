#!/usr/bin/env bash
# The fixed benchmark suite (`just bench`): starts `skyvault standalone` on a
# fresh directory, runs every workload with `skyvault bench`, and writes
# target/bench/results.{jsonl,md} with object-store requests per 1M operations
# (from the server's /metrics) and the server's peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
GRPC=127.0.0.1:${BENCH_GRPC_PORT:-50161}
HTTP=127.0.0.1:${BENCH_HTTP_PORT:-9161}
OUT=target/bench
BIN=target/release/skyvault

cargo build --release -p skyvault
mkdir -p "$OUT"
DATA=$(mktemp -d)
"$BIN" standalone --data-dir "$DATA" --grpc-addr "$GRPC" --http-addr "$HTTP" 2> "$OUT/server.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do curl -sf "http://$HTTP/readyz" > /dev/null && break; sleep 0.1; done
curl -sf "http://$HTTP/readyz" > /dev/null || { echo "server did not become ready; see $OUT/server.log"; exit 1; }

objstore_requests() {
    curl -sf "http://$HTTP/metrics" | awk '/^skyvault_objstore_requests_total/ {s += $2} END {print s + 0}'
}
peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$SERVER/status"; }

: > "$OUT/results.jsonl"
{
    echo "| workload | req/s | keys/s | p50 ms | p99 ms | p99.9 ms | errors | store req / 1M ops | peak RSS MiB |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
} > "$OUT/results.md"

run() {
    local name=$1; shift
    local before after
    before=$(objstore_requests)
    "$BIN" bench --addr "$GRPC" --duration "$DURATION" --warmup "$WARMUP" --json "$@" > "$OUT/$name.json"
    after=$(objstore_requests)
    python3 - "$OUT/$name.json" "$name" "$((after - before))" "$(peak_rss_kib)" >> "$OUT/results.md" <<'PY'
import json, sys
path, name, store_requests, rss_kib = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = json.load(open(path))
ops = max(r["requests"], 1)
l = r["latency_ms"]
errors = sum(r["errors"].values())
print(f"| {name} | {r['requests_per_s']:,.0f} | {r['keys_per_s']:,.0f} | {l['p50']:.2f} | {l['p99']:.2f} | "
      f"{l['p99.9']:.2f} | {errors} | {store_requests * 1e6 / ops:,.0f} | {rss_kib / 1024:.0f} |")
PY
    cat "$OUT/$name.json" >> "$OUT/results.jsonl"
}

run floor-health --workload health
run write-batch10 --workload write
run write-batch1 --workload write --batch-size 1
run read-warm --workload read
# Cold: a key space far larger than what the warm run touched, read once.
run read-cold --workload read --keys 1000000 --distribution uniform
run mixed-50-50 --workload mixed:0.5 --no-preload
run scan --workload scan --no-preload
cat "$OUT/results.md"
