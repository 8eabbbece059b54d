#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine: installs the
# test runner if missing, builds the workspace once and runs every test
# (unit, data-plane integration, operator, and the end-to-end tests, whose
# harness builds and caches the Kubernetes control plane it needs).
set -euo pipefail
cd "$(dirname "$0")/.."

NEXTEST_VERSION=0.9.151
export PATH="$HOME/.cargo/bin:$PATH"

if ! cargo nextest --version 2>/dev/null | grep -q "$NEXTEST_VERSION"; then
    echo "==> installing cargo-nextest $NEXTEST_VERSION (once; cached in ~/.cargo/bin)"
    cargo install cargo-nextest --version "$NEXTEST_VERSION" --locked \
        --no-default-features --features default-no-update
fi

# Real services the data-plane tests start on loopback: PostgreSQL (Debian's
# binaries) and an S3 server (moto). Installed here when missing.
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "==> installing PostgreSQL (Debian package)"
    apt-get update -qq && apt-get install -y -qq postgresql
fi
# The Python example client's test (e2e/tests/python_client.rs) builds a
# virtualenv from PyPI once (cached in ~/.cache/skyvault/tools): it needs the
# venv module, a separate package on Debian.
if command -v python3 >/dev/null && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "==> installing python3-venv (Debian package)"
    apt-get update -qq && apt-get install -y -qq python3-venv
fi
if ! command -v moto_server >/dev/null; then
    echo "==> installing moto_server (PyPI)"
    python3 -m pip install --quiet 'moto[server]'
fi

echo "==> formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

echo "==> Helm charts (lint + render; builds helm from the Go module proxy once)"
bash charts/scripts/test-charts.sh

echo "==> Kubernetes for the e2e tests (etcd, kube-apiserver, kube-controller-manager, helm, and the"
echo "    one-node cluster's kubelet, kube-scheduler, kube-proxy, kube-router, CoreDNS, crictl, pause from pinned"
echo "    Go modules; built once, cached in \${SKYVAULT_TOOLS_DIR:-~/.cache/skyvault/tools}); containerd,"
echo "    runc and the CNI plugins from Debian"
bash e2e/controlplane/build.sh kube-apiserver kube-controller-manager etcd helm node
bash e2e/node/node.sh install
# Whatever happens to the tests, no node state outlives the run (a crashed
# test process leaves its run dir; its pid is gone by now).
trap 'bash e2e/node/node.sh sweep || true' EXIT

echo "==> tests"
# The end-to-end tests start these binaries as real processes. Built one
# package at a time, exactly as the harness would, so its own check is a no-op
# (building both together unifies features differently and rebuilds).
cargo build -p skyvault --bin skyvault
# The crash campaign (e2e/tests/chaos.rs) mounts data directories on this.
cargo build -p skyvault-lazyfs --bin skyvault-lazyfs
cargo build -p skyvault-operator --bin skyvault-operator
cargo nextest run --workspace --no-fail-fast "$@"
