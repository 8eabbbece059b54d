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
    # A test runner does not need a release build's link-time optimisation:
    # opt-level 1 with parallel codegen installs in a fraction of the time.
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
        CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=false \
        CARGO_PROFILE_RELEASE_STRIP=true \
        cargo install cargo-nextest --version "$NEXTEST_VERSION" --locked \
        --no-default-features --features default-no-update
fi

# Build artifacts live outside the clone (registry crates do not depend on the
# checkout's path), so a second clone or a CI run on a machine that ran the
# suite before compiles only the workspace's own crates. Override with
# CARGO_TARGET_DIR; the harness finds the binaries next to the test executables.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/skyvault/target}"

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

echo "==> formatting"
cargo fmt --all --check

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

echo "==> lints and build (clippy as the workspace's compiler wrapper: one compilation"
echo "    of the workspace lints it, builds every binary and every test)"
# `cargo clippy` is `cargo check` with clippy-driver wrapping rustc for the
# workspace's crates; wrapping a real build instead lints the same code and
# shares one set of dependency artifacts with the tests (clippy, two debug
# builds and the test build used to compile the dependencies four ways).
if ! command -v clippy-driver >/dev/null; then
    rustup component add clippy
fi
RUSTC_WORKSPACE_WRAPPER="$(command -v clippy-driver)"
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# Every package and target at once: the binaries the end-to-end tests start
# (skyvault, skyvault-operator, skyvault-lazyfs for the crash campaign) are
# built with the same features as the tests, so nothing compiles twice.
cargo build --workspace --all-targets
export SKYVAULT_OPERATOR_BIN="$CARGO_TARGET_DIR/debug/skyvault-operator"

echo "==> tests"
cargo nextest run --workspace --no-fail-fast "$@"
