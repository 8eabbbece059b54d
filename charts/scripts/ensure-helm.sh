#!/usr/bin/env bash
# Prints the path of a helm binary, building it from the Go module proxy when
# none is on PATH. Pinned so every machine renders the chart with the same helm.
# The binary is cached outside the repository (HELM_CACHE_DIR).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE_DIR="${HELM_CACHE_DIR:-$HOME/.cache/skyvault/bin}"
cached="$CACHE_DIR/helm-$HELM_VERSION"

if [[ -z "${SKYVAULT_FORCE_PINNED_HELM:-}" ]] && command -v helm >/dev/null 2>&1; then
  command -v helm
  exit 0
fi
if [[ -x "$cached" ]]; then
  echo "$cached"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "ensure-helm: no helm on PATH and no Go toolchain to build $HELM_VERSION" >&2
  exit 1
fi

mkdir -p "$CACHE_DIR"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "ensure-helm: building helm $HELM_VERSION with go install (one-off, a few minutes)" >&2
GOBIN="$tmp" GOFLAGS="-trimpath" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
mv "$tmp/helm" "$cached"
echo "$cached"
