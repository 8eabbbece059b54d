#!/usr/bin/env bash
# The LSM simulator's table (issue 23 item 3): `skyvault lsm-sim` for each
# size in BENCH_SIM_SIZES (default "100GiB 1TiB") x uniform/zipf/sequential
# keys x without/with 10 % deletes, defaults otherwise. One markdown row per
# run on stdout; each run's JSON and debt CSV in target/bench/lsm-sim/.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${BENCH_SIM_SIZES:-100GiB 1TiB}
OUT=target/bench/lsm-sim
# BENCH_SIM_BIN: an already built binary (skips the build).
BIN=${BENCH_SIM_BIN:-${CARGO_TARGET_DIR:-target}/release/skyvault}
[[ -n ${BENCH_SIM_BIN:-} ]] || cargo build --release -p skyvault >&2
mkdir -p "$OUT"
echo "| data | keys | deletes | WA (shape: typical / worst) | SA settled (peak while writing) | max / p99 L0 files | max job input (own level) | L0 files per L0 job | jobs/h | idle starts (nothing / claimed) | writes waited at L0 stop | write rate | simulated | run took |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for size in $SIZES; do
    for keys in uniform zipf sequential; do
        for deletes in 0 0.1; do
            name="$size-$keys-$deletes"
            "$BIN" lsm-sim --data-bytes "$size" --keys "$keys" --deletes "$deletes" \
                --csv "$OUT/$name.csv" --png "$OUT/$name.png" --json > "$OUT/$name.json"
            python3 - "$OUT/$name.json" "$size" "$keys" "$deletes" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
size, keys, deletes = sys.argv[2:]
gib = 2**30
s = r["write_amplification_shape"]
print(f"| {size} | {keys} | {float(deletes):.0%} | {r['write_amplification']:.1f} ({s['typical']:.1f} / {s['worst']:.0f}) "
      f"| {r['space_amplification']:.3f} ({r['peak_space_amplification']:.2f}) | {r['max_l0_files']} / {r['p99_l0_files']} "
      f"| {r['max_job_input_bytes']/gib:.2f} GiB ({r['max_job_own_level_bytes']/gib:.2f}) | {r['l0_files_per_l0_job']:.1f} "
      f"| {r['jobs_per_hour']:,.0f} | {r['idle_job_starts']} ({r['idle_nothing_picked']} / {r['idle_inputs_claimed']}) "
      f"| {r['write_wait_l0_seconds']/max(r['simulated_seconds'],1):.0%} | {r['write_rate_bytes_per_sec']/2**20:.1f} MiB/s "
      f"| {r['simulated_seconds']/3600:.1f} h | {r['wall_seconds']:.0f} s |")
PY
        done
    done
done
