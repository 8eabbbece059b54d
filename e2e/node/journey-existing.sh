#!/usr/bin/env bash
# The node journey in existing-cluster mode, against this repository's own one-node
# cluster: starts `skyvault-e2e-cluster --node`, runs e2e/tests/node_journey.rs with
# SKYVAULT_E2E_USE_EXISTING_CLUSTER=1 and the environment the cluster prints (the clients go
# through port-forwards, the operator is namespaced, everything is removed afterwards), then
# stops the cluster and checks that nothing of it is left. Root needed; extra arguments go to
# `cargo test`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

cargo build -p skyvault --bin skyvault
cargo build -p skyvault-operator --bin skyvault-operator
cargo build -p skyvault-e2e --bin skyvault-e2e-cluster
out="$(mktemp "${TMPDIR:-/tmp}/skyvault-e2e-cluster.XXXXXX")"
"${CARGO_TARGET_DIR:-target}/debug/skyvault-e2e-cluster" --node >"$out" &
cluster=$!
stop() {
  kill -TERM "$cluster" 2>/dev/null || true
  wait "$cluster" 2>/dev/null || true
  rm -f "$out"
}
trap stop EXIT
for _ in $(seq 1 120); do
  grep -q '^# state and logs' "$out" && break
  kill -0 "$cluster" 2>/dev/null || { echo "journey-existing.sh: the cluster did not start" >&2; exit 1; }
  sleep 2
done
grep -q '^# state and logs' "$out" || { echo "journey-existing.sh: the cluster did not start in 4 min" >&2; exit 1; }
eval "$(grep '^export ' "$out")"
SKYVAULT_E2E_USE_EXISTING_CLUSTER=1 cargo test -p skyvault-e2e --test node_journey "$@" -- --nocapture
stop
trap - EXIT
bash e2e/node/node.sh check
echo "journey-existing.sh: the journey passed on the node as an existing cluster; nothing left over"
