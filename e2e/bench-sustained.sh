#!/usr/bin/env bash
# Sustained load with compaction keeping up by itself (issue 11):
# BENCH_MINUTES (default 20) one-minute rounds, each running at once
#   writes: skyvault bench --workload write, batch 10, 64 clients
#   reads:  skyvault bench --workload read,  batch 10, 16 clients
# over a key space of BENCH_KEYS (default 1,000,000, written once first), while
# a sampler records the LSM's shape from GET /lsm every 5 s.
#   bash e2e/bench-sustained.sh standalone    one process; compaction in-process
#   bash e2e/bench-sustained.sh distributed   PostgreSQL + an S3 server (BENCH_S3:
#       moto, the default, slow; s3s-fs 0.14, fast), batcher/index/cache processes, and
#       a driver doing what the operator does: poll the index's /lsm and, while
#       needs_compaction, keep up to BENCH_COMPACT_JOBS `skyvault compact` jobs running.
# Output: target/bench/sustained-MODE.md (one row per minute) and the raw JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-standalone}
MINUTES=${BENCH_MINUTES:-20}
KEYS=${BENCH_KEYS:-1000000}
OUT=target/bench/sustained-$MODE
BIN=${CARGO_TARGET_DIR:-target}/release/skyvault
case "$MODE" in standalone | distributed) ;; *) echo "usage: $0 standalone|distributed"; exit 2 ;; esac

PIDS_TO_STOP='' DATA=''
cleanup() {
    for pid in $PIDS_TO_STOP; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    [[ -z $DATA ]] || rm -rf "$DATA"
}
trap cleanup EXIT

cargo build --release -p skyvault
rm -rf "$OUT" && mkdir -p "$OUT"

if [[ $MODE == standalone ]]; then
    DATA=$(mktemp -d)
    GRPC=127.0.0.1:50171 LSM_HTTP=127.0.0.1:9171
    "$BIN" standalone --data-dir "$DATA" --grpc-addr "$GRPC" --http-addr "$LSM_HTTP" 2> "$OUT/server.log" &
    PIDS_TO_STOP="$!"
    for _ in $(seq 100); do curl -sf "http://$LSM_HTTP/readyz" > /dev/null && break; sleep 0.1; done
    ADDR=(--addr "$GRPC")
else
    S3_SERVER=${BENCH_S3:-moto}
    [[ $S3_SERVER != s3s-fs ]] || bash e2e/install-s3s-fs.sh > /dev/null
    cargo build -p skyvault-e2e --bin skyvault-e2e-dataplane
    SKYVAULT_TEST_S3=$S3_SERVER SKYVAULT_BIN=$BIN "${CARGO_TARGET_DIR:-target}/debug/skyvault-e2e-dataplane" \
        > "$OUT/dataplane.env" 2> "$OUT/dataplane.log" &
    PIDS_TO_STOP="$!"
    for _ in $(seq 1200); do
        grep -q '^export SKYVAULT_BENCH_READY=1$' "$OUT/dataplane.env" && break
        sleep 0.1
    done
    grep -q '^export SKYVAULT_BENCH_READY=1$' "$OUT/dataplane.env" ||
        { echo "data plane did not start; see $OUT/dataplane.log"; tail -20 "$OUT/dataplane.log"; exit 1; }
    # shellcheck source=/dev/null
    . "$OUT/dataplane.env"
    ADDR=(--batcher-addr "$SKYVAULT_BENCH_BATCHER" --index-addr "$SKYVAULT_BENCH_INDEX")
    LSM_HTTP=$SKYVAULT_BENCH_INDEX_HTTP
    # The operator's loop, in shell: while the index reports debt, keep up to
    # BENCH_COMPACT_JOBS (default 2, as maxConcurrentJobs) jobs running, starting
    # one as soon as a slot frees (no pod start-up delay, unlike real Jobs).
    JOBS=${BENCH_COMPACT_JOBS:-2}
    (
        while true; do
            while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || true; done
            due=$(curl -sf "http://$LSM_HTTP/lsm" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["needs_compaction"]))' || echo 0)
            if [[ $due == 1 ]]; then
                "$BIN" compact >> "$OUT/compact.jsonl" 2>> "$OUT/compact.log" &
                sleep 0.2
            else
                sleep 1
            fi
        done
    ) &
    PIDS_TO_STOP="$! $PIDS_TO_STOP"
fi

# The shape of the tree every 5 s: time, L0 files, bytes per level.
(
    while true; do
        curl -sf "http://$LSM_HTTP/lsm" | python3 -c '
import json, sys, time
d = json.load(sys.stdin)
print(json.dumps({"t": time.time(), "l0_files": d["l0_files"], "score": d["score"],
                  "bytes": {l["level"]: l["bytes"] for l in d["levels"] if l["bytes"]}}))' || true
        sleep 5
    done
) >> "$OUT/lsm.jsonl" &
PIDS_TO_STOP="$! $PIDS_TO_STOP"

echo "==> writing the key space ($KEYS keys)"
"$BIN" bench "${ADDR[@]}" --workload read --keys "$KEYS" --duration 1s --warmup 0s --json > "$OUT/preload.json"

for minute in $(seq "$MINUTES"); do
    start=$(date +%s)
    "$BIN" bench "${ADDR[@]}" --workload write --concurrency 64 --batch-size 10 --keys "$KEYS" \
        --duration 60s --warmup 0s --json > "$OUT/write-$minute.json" &
    writer=$!
    "$BIN" bench "${ADDR[@]}" --workload read --no-preload --concurrency 16 --batch-size 10 \
        --keys "$KEYS" --duration 60s --warmup 0s --json > "$OUT/read-$minute.json"
    wait "$writer"
    echo "$minute $start $(date +%s)" >> "$OUT/minutes.txt"
    echo "minute $minute done"
done

python3 - "$OUT" "$MODE" <<'PY'
import json, sys, pathlib
out, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
samples = [json.loads(l) for l in open(out / "lsm.jsonl") if l.strip()]
rows = ["| minute | write req/s | write p99 ms | read req/s | read p50 ms | read p99 ms | errors | L0 files (max) | L0 files (end) | bytes per level (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |"]
for line in open(out / "minutes.txt"):
    m, start, end = map(int, line.split())
    w = json.load(open(out / f"write-{m}.json")); r = json.load(open(out / f"read-{m}.json"))
    inside = [s for s in samples if start <= s["t"] <= end] or [{"l0_files": -1, "bytes": {}}]
    errors = {**w["errors"], **{f"read {k}": v for k, v in r["errors"].items()}}
    levels = " ".join(f"L{l}:{b / 2**20:.0f}" for l, b in sorted(inside[-1]["bytes"].items(), key=lambda x: int(x[0])))
    rows.append(f"| {m} | {w['requests_per_s']:,.0f} | {w['latency_ms']['p99']:.1f} | {r['requests_per_s']:,.0f} | "
                f"{r['latency_ms']['p50']:.2f} | {r['latency_ms']['p99']:.1f} | {errors or 0} | "
                f"{max(s['l0_files'] for s in inside)} | {inside[-1]['l0_files']} | {levels} |")
(out.parent / f"sustained-{mode}.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY
