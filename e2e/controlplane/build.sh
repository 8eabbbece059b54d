#!/usr/bin/env bash
# Builds the control-plane binaries the e2e tests need from pinned Go modules
# (no prebuilt binaries can be downloaded) and caches them outside the repo,
# keyed by version. Idempotent: a binary already in the cache is not rebuilt.
# Two processes running this at once serialise on a lock file.
#
# usage: e2e/controlplane/build.sh [TOOL...]
#   TOOL: kube-apiserver kube-controller-manager etcd helm (the default set), or
#         the one-node cluster's: kube-scheduler kube-proxy kubelet coredns
#         crictl pause kube-router (or `node` for all of those)
# prints one line per tool: NAME=PATH
#
# env: SKYVAULT_TOOLS_DIR   cache directory (default ~/.cache/skyvault/tools)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools_dir="${SKYVAULT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/skyvault/tools}"
mkdir -p "$tools_dir"

# The version of a module as pinned in one of our go.mod files.
pinned() { # DIR MODULE
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$here/$1/go.mod"
}

kube_version="$(pinned kubernetes k8s.io/kubernetes)"
etcd_version="$(pinned etcd go.etcd.io/etcd/server/v3)"
helm_version="$(pinned helm helm.sh/helm/v3)"
# The node's kubelet is 1.35: the last release that supports containerd 1.x,
# which is what Debian ships (docs/decisions/0003-e2e-node.md).
kubelet_version="$(pinned ../node/kubelet k8s.io/kubernetes)"
coredns_version="$(pinned ../node/coredns github.com/coredns/coredns)"
crictl_version="$(pinned ../node/crictl sigs.k8s.io/cri-tools)"
# The node's NetworkPolicy enforcement: kube-router's network policy controller
# (iptables + ipsets; the nftables/nfqueue implementations need nft_queue, which
# kernels without CONFIG_NFT_QUEUE lack).
kube_router_version="$(pinned ../node/kube-router github.com/cloudnativelabs/kube-router/v2)"
pause_version="$(sha256sum "$here/../node/pause/pause.c" | cut -c1-12)"
for v in "$kube_version" "$etcd_version" "$helm_version" "$kubelet_version" "$coredns_version" "$crictl_version" "$kube_router_version"; do
  [[ -n "$v" ]] || { echo "build.sh: cannot read a pinned version from go.mod" >&2; exit 1; }
done

path_of() {
  case "$1" in
    kube-apiserver | kube-controller-manager | kube-scheduler | kube-proxy) echo "$tools_dir/$1-$kube_version" ;;
    kubelet) echo "$tools_dir/kubelet-$kubelet_version" ;;
    coredns) echo "$tools_dir/coredns-$coredns_version" ;;
    crictl) echo "$tools_dir/crictl-$crictl_version" ;;
    kube-router) echo "$tools_dir/kube-router-$kube_router_version" ;;
    pause) echo "$tools_dir/pause-$pause_version" ;;
    etcd) echo "$tools_dir/etcd-$etcd_version" ;;
    helm) echo "$tools_dir/helm-$helm_version" ;;
    *) echo "build.sh: unknown tool '$1'" >&2; exit 2 ;;
  esac
}

# -mod=readonly: build exactly what go.mod/go.sum pin; never edit them here.
export GOFLAGS="-buildvcs=false -mod=readonly -trimpath"
export CGO_ENABLED="${CGO_ENABLED:-0}"

build() { # TOOL OUT
  local tool="$1" out="$2" tmp dir pkg ldflags
  tmp="$(mktemp -d "$tools_dir/.build-$tool.XXXXXX")"
  case "$tool" in
    kube-apiserver | kube-controller-manager | kube-scheduler | kube-proxy)
      dir=kubernetes pkg="k8s.io/kubernetes/cmd/$tool"
      local p=k8s.io/component-base/version minor="${kube_version#v1.}"
      minor="${minor%%.*}"
      ldflags="-s -w -X $p.gitVersion=$kube_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
      ;;
    kubelet)
      dir=../node/kubelet pkg="k8s.io/kubernetes/cmd/kubelet"
      local p=k8s.io/component-base/version minor="${kubelet_version#v1.}"
      minor="${minor%%.*}"
      ldflags="-s -w -X $p.gitVersion=$kubelet_version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
      ;;
    coredns)
      dir=../node/coredns pkg=github.com/coredns/coredns ldflags="-s -w"
      ;;
    crictl)
      dir=../node/crictl pkg=sigs.k8s.io/cri-tools/cmd/crictl
      ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$crictl_version"
      ;;
    kube-router)
      dir=../node/kube-router pkg=github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
      ldflags="-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$kube_router_version"
      ;;
    pause)
      echo "build.sh: building pause (static C)" >&2
      command -v gcc >/dev/null || { apt-get update -qq && apt-get install -y -qq gcc libc6-dev; }
      gcc -static -Os -s -o "$tmp/pause" "$here/../node/pause/pause.c"
      mv -f "$tmp/pause" "$out"
      rmdir "$tmp"
      return
      ;;
    etcd)
      dir=etcd pkg=. ldflags="-s -w"
      ;;
    helm)
      dir=helm pkg=helm.sh/helm/v3/cmd/helm
      ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
      ;;
  esac
  echo "build.sh: building $tool (this takes a while the first time)" >&2
  local start=$SECONDS
  (cd "$here/$dir" && go build -ldflags "$ldflags" -o "$tmp/$tool" "$pkg")
  mv -f "$tmp/$tool" "$out"
  rmdir "$tmp"
  echo "build.sh: built $out in $((SECONDS - start))s" >&2
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(kube-apiserver kube-controller-manager etcd helm)
expanded=()
for t in "${tools[@]}"; do
  if [[ "$t" == node ]]; then
    expanded+=(kube-scheduler kube-proxy kubelet coredns crictl pause kube-router)
  else
    expanded+=("$t")
  fi
done
tools=("${expanded[@]}")

missing=()
for t in "${tools[@]}"; do
  [[ -x "$(path_of "$t")" ]] || missing+=("$t")
done

if [[ ${#missing[@]} -gt 0 ]]; then
  exec 9>"$tools_dir/.build.lock"
  flock 9
  for t in "${missing[@]}"; do
    out="$(path_of "$t")"
    # Another process may have built it while we waited for the lock.
    [[ -x "$out" ]] || build "$t" "$out"
  done
  flock -u 9
fi

for t in "${tools[@]}"; do
  echo "$t=$(path_of "$t")"
done
