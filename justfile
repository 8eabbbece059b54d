set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# The whole test suite (what CI runs).
test *ARGS:
    bash e2e/run-tests.sh {{ARGS}}

# Kubernetes end-to-end tests: real etcd + kube-apiserver (built from pinned Go modules on
# first use, cached in ~/.cache/skyvault/tools) and the real operator. Against your own
# cluster instead: SKYVAULT_E2E_USE_EXISTING_CLUSTER=1 KUBECONFIG=... just e2e
e2e *ARGS:
    bash e2e/controlplane/build.sh
    cargo build -p skyvault --bin skyvault
    cargo build -p skyvault-operator --bin skyvault-operator
    cargo test -p skyvault-e2e --test controlplane --test crd --test chart --test operator {{ARGS}}

# The user journey on a real one-node cluster built here (kubelet, containerd, CNI, kube-proxy,
# CoreDNS; root needed): helm install, a SkyVault under load through pod deaths and a rolling
# change, compaction/purge Jobs, delete. Builds and caches what it needs.
e2e-node *ARGS:
    bash e2e/controlplane/build.sh kube-apiserver kube-controller-manager etcd helm node
    bash e2e/node/node.sh install
    cargo build -p skyvault --bin skyvault
    cargo build -p skyvault-operator --bin skyvault-operator
    cargo test -p skyvault-e2e --test node_journey {{ARGS}} -- --nocapture

# The same journey in existing-cluster mode (port-forwards, namespaced operator, clean-up),
# against a node started by skyvault-e2e-cluster --node used as the existing cluster.
e2e-node-existing *ARGS:
    bash e2e/node/journey-existing.sh {{ARGS}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# The crash campaign (root and /dev/fuse needed): writes with recorded acks while roles are
# killed -9 and lose power (lazyfs), standalone then distributed (PostgreSQL + moto S3);
# ends with `... acked=N lost=0 wrong=0 ...`. CHAOS_SECONDS (default 60) bounds it, CHAOS_FAULTS
# the number of faults, CHAOS_MODE=standalone|distributed|both. Figures: docs/reliability.md.
chaos:
    cargo build -p skyvault --bin skyvault
    cargo build -p skyvault-lazyfs --bin skyvault-lazyfs
    cargo build -p skyvault-e2e --bin skyvault-chaos
    cargo run -q -p skyvault-e2e --bin skyvault-chaos

# Run the store on the embedded default in ./skyvault-data.
dev:
    cargo run --release -p skyvault -- standalone --data-dir ./skyvault-data

# The benchmark suite: every workload against `skyvault standalone`, then against a distributed
# data plane (PostgreSQL + moto S3, separate batcher, index and cache processes); results in
# target/bench/results.md. BENCH_MODES=standalone|distributed, BENCH_DURATION, BENCH_WARMUP.
bench:
    bash e2e/bench-suite.sh

# What TLS, tokens and mTLS cost on the gRPC path (standalone, release build); results in
# target/bench/security.md.
bench-security:
    cargo build --release -p skyvault --bin skyvault
    bash e2e/bench-security.sh

# A batcher's memory with its write queue full (object store frozen), per queue budget and
# request shape (release build, moto S3); results in target/bench/batcher-memory.md.
bench-batcher-memory:
    cargo build --release -p skyvault --bin skyvault
    bash e2e/bench-batcher-memory.sh

# Format micro-benchmark (criterion).
bench-format:
    cargo bench -p skyvault --bench sstable

# Regenerate the CRD YAML (crds/ and the operator chart's copy) from the operator's types.
crds:
    cargo run -q -p skyvault-operator -- crd > crds/skyvault.io_skyvaults.yaml
    cp crds/skyvault.io_skyvaults.yaml charts/skyvault-operator/crds/skyvault.io_skyvaults.yaml

# A one-node cluster on this machine (root) for kubectl, k8s-dev and k8s-stress, with a
# PostgreSQL and an S3 server for its pods; prints the exports to eval; Ctrl-C removes it all.
k8s-node:
    bash e2e/controlplane/build.sh kube-apiserver kube-controller-manager etcd helm node
    bash e2e/node/node.sh install
    cargo build -p skyvault --bin skyvault
    cargo build -p skyvault-operator --bin skyvault-operator
    cargo run -p skyvault-e2e --bin skyvault-e2e-cluster -- --node

# Build the image, load it into kind/minikube (or import it into the k8s-node cluster), install
# the operator and a dev store, wait for Ready.
k8s-dev:
    bash charts/scripts/k8s.sh dev

# Port-forward the dev store and run the load generator (BENCH_ARGS="--duration 1m ...").
k8s-stress:
    bash charts/scripts/k8s.sh stress

# Uninstall the dev store and the operator (keeps the CRD).
k8s-reset:
    bash charts/scripts/k8s.sh reset

# SkyVault standalone side by side with SlateDB 0.18 embedded (e2e/peer-bench: local files with
# fsync, 1 ms WAL flush, every write awaited durable): durable writes at 64 and 1 clients, warm
# reads (single keys; SkyVault BatchGet-10) and the gRPC floor, medians of 3 runs with the ratio
# SkyVault/SlateDB in target/bench/peers.md. BENCH_DURATION, BENCH_WARMUP, BENCH_RUNS, BENCH_VALUE_SIZE.
bench-peers:
    bash e2e/bench-peers.sh
