set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# The whole test suite (what CI runs).
test *ARGS:
    bash e2e/run-tests.sh {{ARGS}}

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Run the store on the embedded default in ./skyvault-data.
dev:
    cargo run --release -p skyvault -- standalone --data-dir ./skyvault-data

# Format micro-benchmark (criterion).
bench:
    cargo bench -p skyvault --bench sstable
