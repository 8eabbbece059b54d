#!/usr/bin/env bash
# Host-side setup and tear-down of the e2e one-node cluster (e2e/src/node.rs
# starts the processes; this script does what needs the host's network,
# mounts and cgroups). Everything it creates is named so it can be found and
# removed again, also after a crash:
#   bridge   sv-e2e0 with 10.213.0.1/24 (pods 10.213.0.0/24; Services
#            10.213.1.0/24 routed onto the bridge, never off the machine)
#   iptables chain SKYVAULT-E2E in mangle FORWARD: drops whatever would cross between
#            the bridge and any other interface (pods reach only this machine)
#   iptables KUBE-* chains of kube-proxy and of kube-router's network policy
#            controller (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*), and its ipsets
#            KUBE-SRC-*/KUBE-DST-* (NetworkPolicy enforcement; bridged pod-to-pod
#            traffic reaches them through br_netfilter: bridge-nf-call-iptables=1)
#   cgroups  /skyvault-e2e in every v1 hierarchy (kubelet's cgroupRoot)
#   state    /var/lib/skyvault-e2e/node-<pid>-<rand> (containerd, kubelet,
#            network namespaces, CNI state, logs)
#
# usage: node.sh install            install the Debian packages the node needs
#        node.sh net-up RUN_DIR     create bridge, route, sysctls, guard chain
#        node.sh down RUN_DIR       remove everything of that run (idempotent)
#        node.sh sweep              `down` every run whose owner process is gone
#        node.sh check              exit 1 and name what is left over, if anything
set -euo pipefail

BRIDGE=sv-e2e0
GATEWAY=10.213.0.1
POD_CIDR=10.213.0.0/24
SERVICE_CIDR=10.213.1.0/24
CHAIN=SKYVAULT-E2E
CGROUP=skyvault-e2e
STATE_BASE=/var/lib/skyvault-e2e

log() { echo "node.sh: $*" >&2; }

install() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v ipset >/dev/null || missing+=(ipset)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v gcc >/dev/null || missing+=(gcc libc6-dev)
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

sysctl_set() { # RUN_DIR KEY VALUE: remember the old value once, then set
  local f="/proc/sys/${2//.//}"
  [[ -e "$f" ]] || return 0
  grep -q "^$2=" "$1/sysctl.saved" 2>/dev/null || echo "$2=$(cat "$f")" >>"$1/sysctl.saved"
  echo "$3" >"$f"
}

net_up() { # RUN_DIR
  local run="$1"
  mkdir -p "$run"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$GATEWAY/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE"
  sysctl_set "$run" net.ipv4.ip_forward 1
  # Bridged pod-to-pod packets must traverse iptables: kube-proxy's Service rules and
  # kube-router's NetworkPolicy chains are there (br_netfilter; built in on some kernels).
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null || true
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
    log "warning: no br_netfilter: pod-to-pod traffic bypasses iptables (NetworkPolicies not enforced)"
  sysctl_set "$run" net.bridge.bridge-nf-call-iptables 1
  # In the mangle table: it is traversed before filter, where kube-proxy
  # puts its own FORWARD rules first.
  iptables -w -t mangle -N "$CHAIN" 2>/dev/null || iptables -w -t mangle -F "$CHAIN"
  iptables -w -t mangle -A "$CHAIN" -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -w -t mangle -A "$CHAIN" ! -i "$BRIDGE" -o "$BRIDGE" -j DROP
  iptables -w -t mangle -C FORWARD -j "$CHAIN" 2>/dev/null || iptables -w -t mangle -I FORWARD 1 -j "$CHAIN"
  # kubelet's cgroupRoot must exist in every hierarchy; a new cpuset cgroup
  # starts with no CPUs or memory nodes, so copy the parent's.
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -e "$h/cgroup.procs" ]] || continue
    mkdir -p "$h$CGROUP"
    if [[ -e "$h/cpuset.cpus" ]]; then
      cat "$h/cpuset.cpus" >"$h$CGROUP/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h$CGROUP/cpuset.mems"
    fi
  done
}

# Kill every process in our cgroup tree and remove the cgroups, deepest first.
cgroups_down() {
  local h dir pid
  for h in /sys/fs/cgroup/*/; do
    dir="$h$CGROUP"
    [[ -d "$dir" ]] || continue
    for _ in 1 2 3 4 5; do
      local any=0
      while read -r pid; do
        [[ -n "$pid" ]] || continue
        any=1
        kill -9 "$pid" 2>/dev/null || true
      done < <(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null)
      [[ $any == 0 ]] && break
      sleep 0.2
    done
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

down() { # RUN_DIR
  local run="$1" pid cmd m
  # Processes of this run that outlive their parent: containerd's shims (and
  # whatever else names the run dir on its command line).
  if [[ -d "$run" ]]; then
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
      [[ "$pid" == "$$" ]] && continue
      cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || continue
      [[ "$cmd" == *"$run"* && "$cmd" != *node.sh* ]] && kill -9 "$pid" 2>/dev/null || true
    done
  fi
  cgroups_down
  # Mounts under the run dir (overlay rootfs, secret tmpfs, pinned netns),
  # deepest first.
  if [[ -d "$run" ]]; then
    awk -v r="$run" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/self/mounts | sort -r |
      while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  fi
  # kubelet's links to container logs (its log directory is in the run dir).
  if [[ -d /var/log/containers && -n "$run" ]]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$run/*" -delete 2>/dev/null || true
  fi
  # The network.
  ip link del "$BRIDGE" 2>/dev/null || true
  ip route del "$SERVICE_CIDR" 2>/dev/null || true
  while iptables -w -t mangle -C FORWARD -j "$CHAIN" 2>/dev/null; do
    iptables -w -t mangle -D FORWARD -j "$CHAIN"
  done
  iptables -w -t mangle -F "$CHAIN" 2>/dev/null || true
  iptables -w -t mangle -X "$CHAIN" 2>/dev/null || true
  # kube-proxy's and kube-router's chains (kube-proxy's own --cleanup ran first
  # when it could; this catches a crash), then kube-router's ipsets (no rule
  # refers to them any more), and conntrack entries of pod/Service addresses.
  kube_proxy_chains_down
  kube_router_ipsets_down
  if command -v conntrack >/dev/null; then
    conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
    conntrack -D -d "$POD_CIDR" >/dev/null 2>&1 || true
    conntrack -D -d "$SERVICE_CIDR" >/dev/null 2>&1 || true
  fi
  if [[ -f "$run/sysctl.saved" ]]; then
    while IFS='=' read -r key value; do
      echo "$value" >"/proc/sys/${key//.//}" 2>/dev/null || true
    done <"$run/sysctl.saved"
  fi
  if [[ -d "$run" && "${SKYVAULT_E2E_KEEP:-}" != 1 ]]; then
    rm -rf "$run"
  fi
}

# Removes every KUBE-* chain (and the jumps to them) from the filter, nat and
# mangle tables.
kube_proxy_chains_down() {
  local t rule chain
  for t in filter nat mangle; do
    { iptables -w -t "$t" -S 2>/dev/null || true; } | { grep -E '^-A [A-Z-]+ .*-j KUBE-' || true; } |
      { grep -vE '^-A KUBE-' || true; } |
      while read -r rule; do
        # The rule as iptables printed it, quotes included: eval re-splits it.
        eval "iptables -w -t $t ${rule/-A/-D}" 2>/dev/null || true
      done
    for chain in $(iptables -w -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
      iptables -w -t "$t" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -w -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ { print $2 }'); do
      iptables -w -t "$t" -X "$chain" 2>/dev/null || true
    done
  done
}

# kube-router's network policy ipsets (and the temporary sets of a restore it
# did not finish).
kube_router_ipsets() {
  command -v ipset >/dev/null || return 0
  ipset list -n 2>/dev/null | grep -E '^(inet6:)?(TMP-)?KUBE-(SRC|DST)-' || true
}

kube_router_ipsets_down() {
  local set
  for set in $(kube_router_ipsets); do
    ipset destroy "$set" 2>/dev/null || true
  done
}

sweep() {
  local run pid
  [[ -d "$STATE_BASE" ]] || return 0
  for run in "$STATE_BASE"/node-*; do
    [[ -d "$run" ]] || continue
    pid="${run##*/node-}"
    pid="${pid%%-*}"
    if ! kill -0 "$pid" 2>/dev/null; then
      log "removing the leftovers of dead run $run"
      down "$run"
    fi
  done
}

check() {
  local bad=0
  ip link show "$BRIDGE" >/dev/null 2>&1 && { log "left over: bridge $BRIDGE"; bad=1; }
  iptables -w -t mangle -S 2>/dev/null | grep -q -- "$CHAIN" && { log "left over: iptables chain $CHAIN"; bad=1; }
  local t
  for t in filter nat mangle; do
    iptables -w -t "$t" -S 2>/dev/null | grep -q -- '-N KUBE-' && { log "left over: KUBE-* chains in $t"; bad=1; }
  done
  [[ -z "$(kube_router_ipsets)" ]] || { log "left over: kube-router ipsets"; bad=1; }
  grep -q " $STATE_BASE/" /proc/self/mounts && { log "left over: mounts under $STATE_BASE"; bad=1; }
  ls -d /sys/fs/cgroup/*/"$CGROUP" >/dev/null 2>&1 && { log "left over: cgroups $CGROUP"; bad=1; }
  ls -d "$STATE_BASE"/node-* >/dev/null 2>&1 && { log "left over: run dirs in $STATE_BASE"; bad=1; }
  return $bad
}

case "${1:-}" in
  install) install ;;
  net-up) net_up "$2" ;;
  down) down "$2" ;;
  sweep) sweep ;;
  check) check ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
