//! Configuration and start of the node's components: containerd (CRI, no pulls), CNI
//! (bridge + host-local, no default route), kubelet, kube-scheduler, kube-proxy and
//! kube-router's network policy controller (NetworkPolicy enforcement).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use super::{BRIDGE, DNS_IP, IMAGE_REGISTRY, NODE_IP, NODE_NAME, POD_CIDR, SERVICE_CIDR};
use crate::process::{ManagedProcess, free_port};

pub(super) fn write_containerd_config(run_dir: &Path, pause_image: &str) -> Result<()> {
    let d = run_dir.display();
    // Pulls never leave the machine: every registry the node could name is
    // redirected to a closed loopback port (pods use pull policy Never or
    // IfNotPresent with images imported here).
    for host in [
        IMAGE_REGISTRY,
        "docker.io",
        "registry.k8s.io",
        "ghcr.io",
        "quay.io",
    ] {
        let dir = run_dir.join("certs.d").join(host);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("hosts.toml"),
            "server = \"http://127.0.0.1:1\"\n[host.\"http://127.0.0.1:1\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        )?;
    }
    let config = format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  netns_mounts_under_state_dir = true
  enable_selinux = false
  # This machine withholds CAP_SYS_RESOURCE: no process may lower its OOM
  # score below containerd's own, and runc fails if the spec asks it to.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{d}/certs.d"
"#
    );
    std::fs::write(run_dir.join("containerd.toml"), config)?;
    Ok(())
}

pub(super) fn write_cni_config(run_dir: &Path) -> Result<()> {
    // No default route in pods: they reach the bridge's subnet (pods, this
    // machine's 10.213.0.1) and the Service range, nothing else.
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "skyvault-e2e",
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": POD_CIDR, "gateway": NODE_IP }]],
                "routes": [{ "dst": SERVICE_CIDR }],
                "dataDir": run_dir.join("cni/ipam"),
            },
        }],
    });
    std::fs::write(
        run_dir.join("cni/net.d/10-skyvault-e2e.conflist"),
        serde_json::to_vec_pretty(&conf)?,
    )?;
    Ok(())
}

pub(super) fn start_kubelet(
    bin: &Path,
    run_dir: &Path,
    kubeconfig: &Path,
    sock: &Path,
) -> Result<ManagedProcess> {
    let d = run_dir.display();
    // Pods with dnsPolicy Default get this: no upstream resolver (nothing
    // leaves the machine), only the cluster's names through CoreDNS.
    std::fs::write(
        run_dir.join("resolv.conf"),
        format!("nameserver {DNS_IP}\n"),
    )?;
    let config = format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
# The API server reaches the kubelet (logs, exec) anonymously on the bridge
# address only: a test node.
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://{sock}
cgroupDriver: cgroupfs
cgroupRoot: /skyvault-e2e
# This machine mounts cgroup v1; Kubernetes >= 1.35 refuses it unless told.
failCgroupV1: false
failSwapOn: false
clusterDNS: [{DNS_IP}]
clusterDomain: cluster.local
resolvConf: {d}/resolv.conf
podLogsDir: {d}/pod-logs
# Images cannot be pulled here: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
serializeImagePulls: false
protectKernelDefaults: false
maxPods: 60
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
"#,
        port = free_port()?,
        healthz = free_port()?,
        sock = sock.display(),
    );
    std::fs::write(run_dir.join("kubelet.yaml"), config)?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config={}/kubelet.yaml", d))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--root-dir={d}/kubelet"))
        .arg(format!("--cert-dir={d}/kubelet/pki"))
        .arg(format!("--hostname-override={NODE_NAME}"))
        .arg(format!("--node-ip={NODE_IP}"))
        .arg("--v=1");
    ManagedProcess::spawn("kubelet", cmd, &run_dir.join("logs/kubelet.log"))
}

pub(super) fn start_scheduler(
    bin: &Path,
    run_dir: &Path,
    kubeconfig: &Path,
) -> Result<ManagedProcess> {
    let kc = kubeconfig.display();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--kubeconfig={kc}"))
        .arg(format!("--authentication-kubeconfig={kc}"))
        .arg(format!("--authorization-kubeconfig={kc}"))
        .arg("--leader-elect=false")
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={}", free_port()?))
        .arg(format!("--cert-dir={}/scheduler-certs", run_dir.display()))
        .arg("--v=1");
    ManagedProcess::spawn(
        "kube-scheduler",
        cmd,
        &run_dir.join("logs/kube-scheduler.log"),
    )
}

pub(super) fn start_kube_proxy(
    bin: &Path,
    run_dir: &Path,
    kubeconfig: &Path,
) -> Result<ManagedProcess> {
    let config = format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kc}
mode: iptables
clusterCIDR: {POD_CIDR}
hostnameOverride: {NODE_NAME}
healthzBindAddress: 127.0.0.1:{healthz}
metricsBindAddress: 127.0.0.1:{metrics}
nodePortAddresses: ["{NODE_IP}/32"]
# Leave the machine's conntrack table size alone.
conntrack:
  maxPerCore: 0
iptables:
  localhostNodePorts: false
"#,
        kc = kubeconfig.display(),
        healthz = free_port()?,
        metrics = free_port()?,
    );
    std::fs::write(run_dir.join("kube-proxy.yaml"), config)?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--config={}/kube-proxy.yaml", run_dir.display()))
        .arg("--v=1");
    ManagedProcess::spawn("kube-proxy", cmd, &run_dir.join("logs/kube-proxy.log"))
}

/// NetworkPolicy enforcement: kube-router's network policy controller alone (no
/// routing, no service proxy: the bridge CNI and kube-proxy do those). It keeps
/// per-pod chains in the filter table (KUBE-ROUTER-FORWARD/INPUT/OUTPUT) and ipsets of
/// the pods each policy selects; bridged pod-to-pod packets reach FORWARD through
/// br_netfilter (`node.sh net-up` sets bridge-nf-call-iptables). A pod that a policy
/// selects takes only what the policy allows (rejected otherwise); traffic from this
/// machine (kubelet probes, the tests' clients) is always allowed.
pub(super) fn start_kube_router(
    bin: &Path,
    run_dir: &Path,
    kubeconfig: &Path,
) -> Result<ManagedProcess> {
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--run-firewall=true")
        .arg("--run-router=false")
        .arg("--run-service-proxy=false")
        .arg("--run-loadbalancer=false")
        .arg(format!("--hostname-override={NODE_NAME}"))
        .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
        .arg("--enable-ipv6=false")
        .arg("--health-port=0")
        .arg("--metrics-port=0");
    ManagedProcess::spawn("kube-router", cmd, &run_dir.join("logs/kube-router.log"))
}

/// Whether kube-router's controller has hooked the filter table's FORWARD chain.
pub(super) fn kube_router_hooked() -> Result<bool> {
    let out = Command::new("iptables")
        .args(["-w", "-t", "filter", "-S", "FORWARD"])
        .stdin(Stdio::null())
        .output()
        .context("run iptables -S FORWARD")?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("-j KUBE-ROUTER-FORWARD"))
}
