#!/usr/bin/env bash
# Write and space amplification of the leveled LSM (issue 11), standalone:
# writes BENCH_AMP_GIB (default 10) GiB of logical data — uniformly random
# keys from a space of BENCH_AMP_KEYS (default 2,000,000) and incompressible
# 4 KiB values, batch 10, 64 clients — then waits until the LSM's debt is
# paid (GET /lsm says nothing is due) and reports
#   write amplification = bytes the process wrote to the object store
#                         (flushes + compaction outputs) / logical bytes
#   space amplification = live bytes in the LSM / bytes of the distinct live
#                         entries (expected distinct keys K(1 - e^(-n/K)))
# and the bytes per level. Output: target/bench/amplification.json.
set -euo pipefail
cd "$(dirname "$0")/.."
GIB=${BENCH_AMP_GIB:-10}
KEYS=${BENCH_AMP_KEYS:-2000000}
VALUE=4096 KEY=16
OUT=target/bench
BIN=${CARGO_TARGET_DIR:-target}/release/skyvault
GRPC=127.0.0.1:50181 HTTP=127.0.0.1:9181
SERVER='' DATA=''
cleanup() {
    [[ -z $SERVER ]] || { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
    [[ -z $DATA ]] || rm -rf "$DATA"
}
trap cleanup EXIT
cargo build --release -p skyvault
mkdir -p "$OUT"
DATA=$(mktemp -d)
"$BIN" standalone --data-dir "$DATA" --grpc-addr "$GRPC" --http-addr "$HTTP" \
    --maintenance-interval-secs 30 --purge-grace-secs 60 2> "$OUT/amplification-server.log" &
SERVER=$!
for _ in $(seq 100); do curl -sf "http://$HTTP/readyz" > /dev/null && break; sleep 0.1; done

# Requests needed for GIB of keys+values at 10 pairs per request.
REQUESTS=$(( GIB * 1024 * 1024 * 1024 / (10 * (KEY + VALUE)) ))
echo "==> writing $GIB GiB ($REQUESTS requests of 10 x $VALUE-byte values)"
written=0 round=0
while (( written < REQUESTS )); do
    round=$((round + 1))
    "$BIN" bench --addr "$GRPC" --workload write --value-size "$VALUE" --key-size "$KEY" --keys "$KEYS" \
        --batch-size 10 --concurrency 64 --duration 30s --warmup 0s --json > "$OUT/amplification-write-$round.json"
    written=$((written + $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['requests'])" "$OUT/amplification-write-$round.json")))
    echo "  $written / $REQUESTS requests; L0 files: $(curl -sf "http://$HTTP/lsm" | python3 -c 'import json,sys; print(json.load(sys.stdin)["l0_files"])')"
done
echo "==> waiting for compaction to pay its debt"
started=$(date +%s)
until curl -sf "http://$HTTP/lsm" | python3 -c 'import json,sys; sys.exit(0 if not json.load(sys.stdin)["needs_compaction"] else 1)'; do
    sleep 5
done
settle=$(( $(date +%s) - started ))
curl -sf "http://$HTTP/lsm" > "$OUT/amplification-lsm.json"
curl -sf "http://$HTTP/metrics" > "$OUT/amplification-metrics.txt"
python3 - "$OUT" "$written" "$KEYS" "$KEY" "$VALUE" "$settle" <<'PY'
import json, math, sys, pathlib
out, requests, keys, ksize, vsize, settle = pathlib.Path(sys.argv[1]), *map(int, sys.argv[2:])
pairs = requests * 10
logical = pairs * (ksize + vsize)
metrics = {}
for line in open(out / "amplification-metrics.txt"):
    if line.startswith("skyvault_objstore_bytes_total") or line.startswith("skyvault_job_bytes_total"):
        name, value = line.rsplit(" ", 1)
        metrics[name] = float(value)
store_out = sum(v for k, v in metrics.items() if k.startswith("skyvault_objstore_bytes_total") and 'direction="out"' in k)
compaction_out = sum(v for k, v in metrics.items() if 'job="compaction"' in k and 'direction="written"' in k)
compaction_in = sum(v for k, v in metrics.items() if 'job="compaction"' in k and 'direction="read"' in k)
lsm = json.load(open(out / "amplification-lsm.json"))
live_bytes = sum(l["bytes"] for l in lsm["levels"])
distinct = keys * (1 - math.exp(-pairs / keys))
result = {
    "logical_gib": logical / 2**30, "pairs_written": pairs, "distinct_keys_expected": round(distinct),
    "store_bytes_written_gib": store_out / 2**30, "compaction_written_gib": compaction_out / 2**30,
    "compaction_read_gib": compaction_in / 2**30,
    "write_amplification": store_out / logical,
    "space_amplification": live_bytes / (distinct * (ksize + vsize)),
    "last_level_ratio": live_bytes / max(lsm["levels"][-1]["bytes"], 1),
    "settle_seconds": settle,
    "levels": {l["level"]: {"files": l["files"], "mib": round(l["bytes"] / 2**20, 1), "target_mib": round(l["target_bytes"] / 2**20, 1)} for l in lsm["levels"] if l["bytes"] or l["target_bytes"]},
}
(out / "amplification.json").write_text(json.dumps(result, indent=2))
print(json.dumps(result, indent=2))
PY
