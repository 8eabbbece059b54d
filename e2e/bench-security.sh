#!/usr/bin/env bash
# What TLS and bearer tokens cost on the gRPC path: one standalone store (release build,
# local directory + SQLite) per configuration — plaintext and open, TLS, TLS + tokens,
# mTLS + tokens — each measured with `skyvault bench` on 10-key reads, the health floor
# and 10-key writes: throughput, latency, and the server's CPU time per request (steadier
# than throughput on a shared machine). Certificates come from openssl into a temporary
# directory.
# Results: target/bench/security.md; recorded in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/skyvault}
DURATION=${SECURITY_BENCH_DURATION:-10s}
CONCURRENCY=${SECURITY_BENCH_CONCURRENCY:-32}
OUT=target/bench
mkdir -p "$OUT"
DIR=$(mktemp -d)
PID=''
stop() {
    [[ -z $PID ]] || { kill "$PID" 2> /dev/null || true; wait "$PID" 2> /dev/null || true; }
    PID=''
}
trap 'stop; rm -rf "$DIR"' EXIT
[[ -x $BIN ]] || cargo build --release -p skyvault --bin skyvault

# A CA, and one certificate for localhost good for server and client use.
ssl() { openssl "$@" 2> /dev/null; }
ssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=bench-ca -keyout "$DIR/ca.key" -out "$DIR/ca.crt"
ssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$DIR/tls.key" -out "$DIR/tls.csr"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > "$DIR/ext"
ssl x509 -req -in "$DIR/tls.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial \
    -days 1 -extfile "$DIR/ext" -out "$DIR/tls.crt"
echo "write bench-token-0123456789abcdef" > "$DIR/tokens"
echo "bench-token-0123456789abcdef" > "$DIR/token"

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run NAME SERVER_FLAGS CLIENT_FLAGS: one store, three workloads, one table row each.
run() {
    local name=$1 server=$2 client=$3 grpc http scheme=http
    grpc=$(free_port) http=$(free_port)
    rm -rf "$DIR/data"
    # shellcheck disable=SC2086
    "$BIN" standalone --data-dir "$DIR/data" --grpc-addr "127.0.0.1:$grpc" \
        --http-addr "127.0.0.1:$http" $server > "$DIR/server.log" 2>&1 &
    PID=$!
    [[ $server == *tls-cert-file* ]] && scheme=https
    local ready=''
    for _ in $(seq 100); do
        curl -sf --cacert "$DIR/ca.crt" "$scheme://localhost:$http/readyz" > /dev/null && { ready=1; break; }
        sleep 0.1
    done
    [[ -n $ready ]] || { echo "$name: no /readyz within 10 s; see $DIR/server.log" >&2; cat "$DIR/server.log" >&2; exit 1; }
    # The writes cover the 10,000-key space many times over, so the reads need no preload
    # (whose CPU would count against them).
    for workload in write read health; do
        local before after extra=''
        [[ $workload == read ]] && extra=--no-preload
        before=$(cpu_ticks "$PID")
        # shellcheck disable=SC2086
        "$BIN" bench --addr "localhost:$grpc" --workload "$workload" --keys 10000 \
            --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup 0s --json $extra $client \
            > "$DIR/report.json"
        after=$(cpu_ticks "$PID")
        python3 - "$name" "$workload" "$DIR/report.json" $((after - before)) "$(getconf CLK_TCK)" \
            >> "$OUT/security.md" << 'EOF'
import json, sys
name, workload, path, ticks, hz = sys.argv[1:]
r = json.load(open(path))
lat = r.get("latency_ms", {})
# Server CPU per measured request.
cpu_us = int(ticks) / int(hz) * 1e6 / max(r["requests"], 1)
print(f"| {name} | {workload} | {r['requests_per_s']:,.0f} | {lat.get('p50', 0):.2f} | "
      f"{lat.get('p99', 0):.2f} | {cpu_us:.0f} | {sum(r['errors'].values())} |")
EOF
    done
    stop
}

{
    echo "| configuration | workload | req/s | p50 ms | p99 ms | server CPU µs/req | errors |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
} > "$OUT/security.md"
TLS="--tls-cert-file $DIR/tls.crt --tls-key-file $DIR/tls.key"
CA="--server-ca-file $DIR/ca.crt"
run "plaintext, open" "" ""
run "TLS" "$TLS" "$CA"
run "TLS + tokens" "$TLS --auth-tokens-file $DIR/tokens" "$CA --token-file $DIR/token"
run "mTLS + tokens" "$TLS --tls-client-ca-file $DIR/ca.crt --auth-tokens-file $DIR/tokens" \
    "$CA --token-file $DIR/token --client-cert-file $DIR/tls.crt --client-key-file $DIR/tls.key"
cat "$OUT/security.md"
