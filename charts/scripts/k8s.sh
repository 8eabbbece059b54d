#!/usr/bin/env bash
# Dev workflow on a local cluster (kind or minikube) in the current kubectl context, or on
# the e2e one-node cluster of this repository (`skyvault-e2e-cluster --node`, which exports
# SKYVAULT_E2E_NODE_DIR; it also runs the PostgreSQL and S3 server the store uses there,
# since nothing can be pulled: the image is built from the release binaries by
# e2e/node/images.sh and imported into the node's containerd).
#
#   k8s.sh dev     build the image, load it, install operator + dev store, wait for Ready
#   k8s.sh stress  port-forward the dev store and run `skyvault bench` against it
#   k8s.sh reset   uninstall the dev store and the operator (the CRD is kept)
#
# env: SKYVAULT_DEV_NS (skyvault-dev), SKYVAULT_OPERATOR_NS (skyvault-system),
#      SKYVAULT_IMAGE (skyvault:dev), SKYVAULT_DEV_NAME (dev),
#      BENCH_ARGS (extra `skyvault bench` flags, default "--duration 30s --workload mixed:0.5")
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dev_ns="${SKYVAULT_DEV_NS:-skyvault-dev}"
op_ns="${SKYVAULT_OPERATOR_NS:-skyvault-system}"
image="${SKYVAULT_IMAGE:-skyvault:dev}"
name="${SKYVAULT_DEV_NAME:-dev}"

need() { command -v "$1" >/dev/null || { echo "k8s.sh: $1 is required" >&2; exit 1; }; }

# The e2e node's state directory when the current context is that node, else empty.
node_dir() {
  local d="${SKYVAULT_E2E_NODE_DIR:-}"
  if [[ -z "$d" ]]; then
    # One node per machine: the live one, if the current context talks to its API server.
    local server
    server="$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null || true)"
    [[ "$server" == https://10.213.0.1:* ]] || return 0
    d="$(ls -d /var/lib/skyvault-e2e/node-*/ 2>/dev/null | head -1)"
  fi
  [[ -n "$d" && -f "$d/dev.env" ]] && echo "${d%/}"
  return 0
}

# On the e2e node: the image from the release binaries, imported into its containerd, tagged
# by content (so a rebuilt binary rolls the pods). Sets $image.
node_image() { # NODE_DIR
  (cd "$root" && cargo build --release -p skyvault --bin skyvault &&
    cargo build --release -p skyvault-operator --bin skyvault-operator)
  local target="${CARGO_TARGET_DIR:-$root/target}"
  local bins=("$target/release/skyvault" "$target/release/skyvault-operator") tar
  image="skyvault.local/skyvault:dev-$(cat "${bins[@]}" | sha256sum | cut -c1-12)"
  tar="$(mktemp "${TMPDIR:-/tmp}/skyvault-dev-image.XXXXXX")"
  bash "$root/e2e/node/images.sh" skyvault "$tar" "$image" "${bins[@]}" >/dev/null
  ctr -a "$1/containerd.sock" -n k8s.io images import "$tar" >/dev/null
  rm -f "$tar"
  echo "k8s.sh: imported $image into the e2e node"
}

load_image() {
  local ctx
  ctx="$(kubectl config current-context)"
  case "$ctx" in
    kind-*) need kind; kind load docker-image "$image" --name "${ctx#kind-}" ;;
    minikube) need minikube; minikube image load "$image" ;;
    *) echo "k8s.sh: context '$ctx' is neither kind nor minikube: make $image pullable yourself" >&2 ;;
  esac
}

dev() {
  need kubectl
  local helm node extra=()
  helm="$("$root/charts/scripts/ensure-helm.sh")"
  node="$(node_dir)"
  if [[ -n "$node" ]]; then
    node_image "$node"
    # shellcheck disable=SC1091 # written by skyvault-e2e-cluster --node
    source "$node/dev.env"
    extra=(--set "external.databaseUrl=$SKYVAULT_DEV_DATABASE_URL"
      --set "external.s3Endpoint=$SKYVAULT_DEV_S3_ENDPOINT"
      --set "s3.bucket=$SKYVAULT_DEV_S3_BUCKET")
  else
    need docker
    docker build -t "$image" "$root"
    load_image
  fi
  # Helm installs crds/ only on first install and never upgrades it: apply it every time.
  kubectl apply --server-side --force-conflicts -f "$root/crds/skyvault.io_skyvaults.yaml"
  "$helm" upgrade --install skyvault-operator "$root/charts/skyvault-operator" \
    --namespace "$op_ns" --create-namespace \
    --set image.repository="${image%:*}" --set image.tag="${image##*:}" --wait --timeout 5m
  "$helm" upgrade --install "$name" "$root/charts/skyvault-dev" \
    --namespace "$dev_ns" --create-namespace \
    --set skyvault.name="$name" --set skyvault.image="$image" "${extra[@]}"
  kubectl -n "$dev_ns" wait "skyvault/$name" --for=condition=Ready --timeout=10m
  kubectl -n "$dev_ns" get skyvault,statefulsets,pods,jobs
}

# Port-forward a Service in the background; echo the local port once it accepts.
forward() { # SERVICE LOCAL_PORT
  kubectl -n "$dev_ns" port-forward "svc/$1" "$2:50051" >/dev/null 2>&1 &
  forwards+=("$!")
  for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "k8s.sh: port-forward to $1 did not come up" >&2
  return 1
}

stress() {
  need kubectl
  forwards=()
  trap 'kill "${forwards[@]}" 2>/dev/null || true' EXIT
  forward "$name-batcher" 15051
  forward "$name-index" 15052
  # shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
  cargo run --release -p skyvault --manifest-path "$root/Cargo.toml" -- bench \
    --batcher-addr 127.0.0.1:15051 --index-addr 127.0.0.1:15052 \
    ${BENCH_ARGS:---duration 30s --workload mixed:0.5}
}

reset() {
  need kubectl
  local helm
  helm="$("$root/charts/scripts/ensure-helm.sh")"
  "$helm" uninstall "$name" --namespace "$dev_ns" --ignore-not-found --wait
  "$helm" uninstall skyvault-operator --namespace "$op_ns" --ignore-not-found --wait
  kubectl delete namespace "$dev_ns" --ignore-not-found
  echo "kept the CRD (deleting it deletes every SkyVault): kubectl delete crd skyvaults.skyvault.io"
}

case "${1:-}" in
  dev) dev ;;
  stress) stress ;;
  reset) reset ;;
  *) echo "usage: $0 dev|stress|reset" >&2; exit 2 ;;
esac
