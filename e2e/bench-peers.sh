#!/usr/bin/env bash
# A peer comparison (`just bench-peers`): the same closed-loop workloads against
# SlateDB 0.18 embedded in e2e/peer-bench (object_store LocalFileSystem with
# fsync on, WAL flush interval BENCH_FLUSH_INTERVAL_MS, every write awaited
# durable) and against `skyvault standalone` (a fresh temp dir per run, server
# defaults) driven by `skyvault bench`. Runs are interleaved: for each workload,
# RUNS times SlateDB then SkyVault. Writes median-of-RUNS tables with the ratio
# SkyVault/SlateDB to target/bench/peers.md, every run to target/bench/peers.jsonl.
#
# Workloads (16-byte keys from a 100,000-key space, uniform, BENCH_VALUE_SIZE-byte
# values, default 1 KiB; one key per durable write):
#   floor-health-64/1   SkyVault's gRPC floor (`skyvault bench --workload health`)
#   write-64, write-1   durable single-key writes at 64 / 1 closed-loop clients
#   read-64             warm single-key gets at 64 (key space loaded first)
#   read-batch10-64     SkyVault BatchGet of 10 keys vs SlateDB single gets (keys/s);
#                       also SlateDB issuing 10 concurrent gets per operation
# Knobs: BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_RUNS (3), BENCH_VALUE_SIZE
# (1024), BENCH_CONCURRENCY (64), BENCH_FLUSH_INTERVAL_MS (1), BENCH_GRPC_PORT /
# BENCH_HTTP_PORT (50271 / 9271), BENCH_NICE (run the builds under nice -n N),
# CARGO_TARGET_DIR (where both binaries are built and looked for).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
RUNS=${BENCH_RUNS:-3}
VALUE_SIZE=${BENCH_VALUE_SIZE:-1024}
CONCURRENCY=${BENCH_CONCURRENCY:-64}
FLUSH_MS=${BENCH_FLUSH_INTERVAL_MS:-1}
GRPC=127.0.0.1:${BENCH_GRPC_PORT:-50271}
HTTP=127.0.0.1:${BENCH_HTTP_PORT:-9271}
NICE=()
[[ -z ${BENCH_NICE:-} ]] || NICE=(nice -n "$BENCH_NICE")
OUT=target/bench
BIN=${CARGO_TARGET_DIR:-target}/release/skyvault
PEER_TARGET=${CARGO_TARGET_DIR:-target/peer-bench}
PEER=$PEER_TARGET/release/skyvault-peer-bench

SERVER='' DATA='' TMP=''
stop_server() {
    if [[ -n $SERVER ]]; then
        kill "$SERVER" 2> /dev/null || true
        wait "$SERVER" 2> /dev/null || true
        SERVER=''
    fi
    if [[ -n $DATA ]]; then rm -rf "$DATA"; DATA=''; fi
}
cleanup() {
    stop_server
    [[ -z $TMP ]] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"${NICE[@]}" cargo build --release -p skyvault --bin skyvault
CARGO_TARGET_DIR=$PEER_TARGET "${NICE[@]}" cargo build --release --manifest-path e2e/peer-bench/Cargo.toml

mkdir -p "$OUT"
TMP=$(mktemp -d -t skyvault-bench-peers.XXXXXX)
: > "$OUT/peers.jsonl"
: > "$OUT/peers-server.log"
COMMON=(--duration "$DURATION" --warmup "$WARMUP" --value-size "$VALUE_SIZE")

start_server() {
    DATA=$(mktemp -d -p "$TMP" skyvault.XXXXXX)
    "$BIN" standalone --data-dir "$DATA" --grpc-addr "$GRPC" --http-addr "$HTTP" 2>> "$OUT/peers-server.log" &
    SERVER=$!
    for _ in $(seq 100); do curl -sf "http://$HTTP/readyz" > /dev/null && return; sleep 0.1; done
    echo "skyvault standalone did not become ready; see $OUT/peers-server.log"
    exit 1
}

# record NAME SYSTEM RUN FILE: one report (a JSON line) into peers.jsonl, tagged.
record() {
    python3 - "$@" "$OUT/peers.jsonl" "$VALUE_SIZE" "$WARMUP" <<'PY'
import json, sys
name, system, run, path, jsonl, value_size, warmup = sys.argv[1:]
r = json.loads(open(path).read().strip().splitlines()[-1])
r.setdefault("system", system)
r.setdefault("value_size", int(value_size))
r.setdefault("warmup", warmup)
with open(jsonl, "a") as f:
    print(json.dumps({"kind": "run", "name": name, "run": int(run), **r}), file=f)
l = r["latency_ms"]
errors = sum(r["errors"].values())
print(f"  {system:9} {name:18} run {run}: {r['requests_per_s']:>9,.0f} req/s {r['keys_per_s']:>9,.0f} keys/s "
      f"p50 {l['p50']:.2f} p99 {l['p99']:.2f} p99.9 {l['p99.9']:.2f} ms errors {errors}", file=sys.stderr)
PY
}

# skyvault NAME RUN CLIENTS ARGS...: a fresh standalone server, one `skyvault bench`.
skyvault() {
    local name=$1 run=$2 clients=$3; shift 3
    start_server
    "$BIN" bench --addr "$GRPC" --json --concurrency "$clients" "${COMMON[@]}" "$@" > "$TMP/out.json"
    stop_server
    record "$name" skyvault "$run" "$TMP/out.json"
}

# slatedb NAME RUN CLIENTS ARGS...: one peer-bench process on a fresh directory.
slatedb() {
    local name=$1 run=$2 clients=$3 dir; shift 3
    dir=$(mktemp -d -p "$TMP" slatedb.XXXXXX)
    "$PEER" --data-dir "$dir" --flush-interval-ms "$FLUSH_MS" --json --concurrency "$clients" "${COMMON[@]}" "$@" \
        > "$TMP/out.json"
    rm -rf "$dir"
    record "$name" slatedb "$run" "$TMP/out.json"
}

echo "bench-peers: $RUNS runs per workload, $DURATION after $WARMUP warm-up, ${VALUE_SIZE}-byte values" >&2
for run in $(seq "$RUNS"); do
    skyvault floor-health-$CONCURRENCY "$run" "$CONCURRENCY" --workload health
    skyvault floor-health-1 "$run" 1 --workload health
done
for run in $(seq "$RUNS"); do
    slatedb write-$CONCURRENCY "$run" "$CONCURRENCY" --workload write --batch-size 1
    skyvault write-$CONCURRENCY "$run" "$CONCURRENCY" --workload write --batch-size 1
done
for run in $(seq "$RUNS"); do
    slatedb write-1 "$run" 1 --workload write --batch-size 1
    skyvault write-1 "$run" 1 --workload write --batch-size 1
done
for run in $(seq "$RUNS"); do
    slatedb read-$CONCURRENCY "$run" "$CONCURRENCY" --workload read --batch-size 1
    skyvault read-$CONCURRENCY "$run" "$CONCURRENCY" --workload read --batch-size 1
done
for run in $(seq "$RUNS"); do
    slatedb read-batch10-$CONCURRENCY "$run" "$CONCURRENCY" --workload read --batch-size 10
    skyvault read-batch10-$CONCURRENCY "$run" "$CONCURRENCY" --workload read --batch-size 10
done

python3 - "$OUT/peers.jsonl" "$OUT/peers.md" "$DURATION" "$WARMUP" "$RUNS" "$VALUE_SIZE" "$FLUSH_MS" "$CONCURRENCY" <<'PY'
import json, statistics, sys
jsonl, md, duration, warmup, runs, value_size, flush_ms, conc = sys.argv[1:]
rows = [json.loads(l) for l in open(jsonl) if l.strip()]

def group(name, system):
    return [r for r in rows if r.get("kind") == "run" and r["name"] == name and r["system"] == system]

def summary(name, system):
    rs = group(name, system)
    if not rs:
        return None
    med = lambda f: statistics.median(f(r) for r in rs)
    return {
        "kind": "median", "name": name, "system": system, "runs": len(rs),
        "requests_per_s": med(lambda r: r["requests_per_s"]),
        "keys_per_s": med(lambda r: r["keys_per_s"]),
        "keys_per_s_min": min(r["keys_per_s"] for r in rs),
        "keys_per_s_max": max(r["keys_per_s"] for r in rs),
        "latency_ms": {p: med(lambda r: r["latency_ms"][p]) for p in ("p50", "p99", "p99.9")},
        "errors": sum(sum(r["errors"].values()) for r in rs),
    }

def num(v):
    return f"{v:,.0f}"

def lat(s):
    l = s["latency_ms"]
    return f"{l['p50']:.2f} / {l['p99']:.2f} / {l['p99.9']:.2f}"

def spread(s):
    return f"{num(s['keys_per_s_min'])}–{num(s['keys_per_s_max'])}"

medians = []
floor = {}
for c in (conc, "1"):
    s = summary(f"floor-health-{c}", "skyvault")
    if s:
        medians.append(s)
        floor[c] = s

# (row label, SlateDB run name, SkyVault run name, clients)
comparisons = [
    (f"durable writes, 1 key each, {conc} clients", f"write-{conc}", f"write-{conc}", conc),
    ("durable writes, 1 key each, 1 client", "write-1", "write-1", "1"),
    (f"warm reads, 1 key per op, {conc} clients", f"read-{conc}", f"read-{conc}", conc),
    (f"warm reads: SkyVault BatchGet of 10 vs SlateDB single gets, {conc} clients",
     f"read-{conc}", f"read-batch10-{conc}", conc),
    (f"warm reads: SkyVault BatchGet of 10 vs SlateDB 10 concurrent gets per op, {conc} clients",
     f"read-batch10-{conc}", f"read-batch10-{conc}", conc),
]
lines = []
p = lambda s="": lines.append(s)
p(f"# Peer comparison: SkyVault standalone vs SlateDB 0.18 (medians of {runs} runs)")
p()
p(f"{duration} measured after {warmup} warm-up per run; 16-byte keys, {int(value_size):,}-byte values, "
  "100,000-key space, uniform. SlateDB: embedded (no RPC), object_store LocalFileSystem with fsync on, "
  f"WAL flush interval {flush_ms} ms, every write awaited durable (WriteHandle::await_durable), "
  "moka block cache, preloaded keys flushed to L0 before reads. SkyVault: `skyvault standalone` "
  "(server defaults) on a fresh temp dir per run, `skyvault bench` over gRPC on loopback. "
  "Both on the same machine, one after the other.")
p()
p("| workload | SlateDB keys/s | SkyVault keys/s | SkyVault / SlateDB | SlateDB p50 / p99 / p99.9 ms "
  "| SkyVault p50 / p99 / p99.9 ms | SlateDB / floor | SkyVault / floor | errors (SlateDB/SkyVault) |")
p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for label, slate_name, sky_name, clients in comparisons:
    a, b = summary(slate_name, "slatedb"), summary(sky_name, "skyvault")
    if not a or not b:
        continue
    f = floor.get(clients)
    fr = lambda s: f"{s['keys_per_s'] / f['requests_per_s']:.2f}" if f else "–"
    ratio = b["keys_per_s"] / a["keys_per_s"] if a["keys_per_s"] else float("nan")
    p(f"| {label} | {num(a['keys_per_s'])} | {num(b['keys_per_s'])} | **{ratio:.2f}** | {lat(a)} | {lat(b)} "
      f"| {fr(a)} | {fr(b)} | {a['errors']}/{b['errors']} |")
    for s in (a, b):
        if s not in medians:
            medians.append(s)
p()
p("Floor: SkyVault's gRPC health check on the same server build (what one RPC costs here); "
  "“/ floor” is keys/s over the floor's requests/s at the same client count.")
p()
p("| floor | req/s | p50 / p99 / p99.9 ms |")
p("| --- | ---: | ---: |")
for c, s in floor.items():
    p(f"| health, {c} client{'s' if c != '1' else ''} | {num(s['requests_per_s'])} | {lat(s)} |")
p()
p(f"Spread of keys/s over the {runs} runs (min–max):")
p()
p("| run | SlateDB | SkyVault |")
p("| --- | ---: | ---: |")
for name in (f"write-{conc}", "write-1", f"read-{conc}", f"read-batch10-{conc}"):
    a, b = summary(name, "slatedb"), summary(name, "skyvault")
    p(f"| {name} | {spread(a) if a else '–'} | {spread(b) if b else '–'} |")
open(md, "w").write("\n".join(lines) + "\n")
with open(jsonl, "a") as out:
    for s in medians:
        print(json.dumps(s), file=out)
PY
cat "$OUT/peers.md"
