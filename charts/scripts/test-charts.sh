#!/usr/bin/env bash
# Lints both charts and renders them with default and non-default values, checking what
# each rendering must (and must not) contain. Needs helm (built by ensure-helm.sh if absent).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
helm="$("$root/charts/scripts/ensure-helm.sh")"
op="$root/charts/skyvault-operator"
dev="$root/charts/skyvault-dev"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
passes=0
failures=0

pass() { echo "ok   $1"; passes=$((passes + 1)); }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }
expect() { # FILE PATTERN WHAT
  if grep -qE -- "$2" "$1"; then pass "$3"; else fail "$3 (no /$2/ in $(basename "$1"))"; fi
}
reject() { # FILE PATTERN WHAT
  if grep -qE -- "$2" "$1"; then fail "$3 (/$2/ in $(basename "$1"))"; else pass "$3"; fi
}

"$helm" lint "$op" "$dev"
diff -q "$root/crds/skyvault.io_skyvaults.yaml" "$op/crds/skyvault.io_skyvaults.yaml"

"$helm" template skyvault-operator "$op" --namespace skyvault-system > "$out/op-default.yaml"
f="$out/op-default.yaml"
expect "$f" '^kind: ClusterRole$' "default: ClusterRole"
expect "$f" '^kind: ClusterRoleBinding$' "default: ClusterRoleBinding"
expect "$f" 'resources: \["leases"\]' "default: leader-election Role"
expect "$f" 'value: "true"' "default: leader election on"
expect "$f" 'image: "skyvault:0.1.0"' "default: image from appVersion"
expect "$f" 'readOnlyRootFilesystem: true' "default: read-only root filesystem"
expect "$f" 'name: skyvault-operator-metrics' "default: metrics Service"
reject "$f" '^kind: PodDisruptionBudget$' "default: no PDB for one replica"
reject "$f" '^kind: ServiceMonitor$' "default: no ServiceMonitor"
# get (referenced Secrets), create (the operator's own Secrets: internal token, issued
# CA and certificate) and update (renewing that certificate): never list or watch, so the
# operator cannot read Secrets it was not pointed at by name.
if grep -A1 'resources: \["secrets"\]' "$f" | grep -q 'verbs: \["get", "create", "update"\]$'; then
  pass "default: Secrets are get, create and update only"
else
  fail "default: Secrets are get, create and update only"
fi

"$helm" template ops "$op" --namespace ops \
  --set replicaCount=2,watchNamespace=team-a,leaderElection.enabled=false \
  --set metrics.serviceMonitor.enabled=true,image.repository=registry.example/skyvault,image.tag=1.2.3 \
  --set logFormat=text,serviceAccount.name=custom-sa > "$out/op-custom.yaml"
f="$out/op-custom.yaml"
expect "$f" '^kind: Role$' "custom: namespaced Role"
reject "$f" '^kind: ClusterRole$' "custom: no ClusterRole"
expect "$f" 'namespace: team-a' "custom: Role in the watched namespace"
expect "$f" 'value: "team-a"' "custom: SKYVAULT_OPERATOR_NAMESPACE"
reject "$f" 'resources: \["leases"\]' "custom: no Lease RBAC without election"
expect "$f" '^kind: PodDisruptionBudget$' "custom: PDB for two replicas"
expect "$f" '^kind: ServiceMonitor$' "custom: ServiceMonitor"
expect "$f" 'replicas: 2' "custom: two replicas"
expect "$f" 'image: "registry.example/skyvault:1.2.3"' "custom: image"
expect "$f" 'name: custom-sa' "custom: ServiceAccount name"

"$helm" template dev "$dev" --namespace skyvault-dev > "$out/dev-default.yaml"
f="$out/dev-default.yaml"
expect "$f" '^kind: SkyVault$' "dev: SkyVault"
expect "$f" 'endpoint: "http://dev-s3:5000"' "dev: S3 endpoint"
expect "$f" 'cacheCapacityBytes: 67108864$' "dev: integer capacity"
expect "$f" 'postgres://skyvault:skyvault-dev@dev-postgres:5432/skyvault' "dev: database URL"

"$helm" template demo "$dev" --namespace demo \
  --set skyvault.name=demo,skyvault.replicas.cache=3,skyvault.cacheCapacityBytes=1073741824 > "$out/dev-custom.yaml"
f="$out/dev-custom.yaml"
expect "$f" '^  name: demo$' "dev custom: name"
expect "$f" 'cacheCapacityBytes: 1073741824$' "dev custom: capacity not in float notation"
expect "$f" 'replicas: 3' "dev custom: cache replicas"

"$helm" template ext "$dev" --namespace ext \
  --set external.databaseUrl=postgres://u@10.213.0.1:5432/db,external.s3Endpoint=http://10.213.0.1:9000 > "$out/dev-external.yaml"
f="$out/dev-external.yaml"
expect "$f" 'url: "postgres://u@10.213.0.1:5432/db"' "dev external: database URL"
expect "$f" 'endpoint: "http://10.213.0.1:9000"' "dev external: S3 endpoint"
reject "$f" '^kind: (Deployment|Job)$' "dev external: no in-cluster PostgreSQL or S3"

echo "charts: $passes passed, $failures failed"
[[ $failures -eq 0 ]]
