//! A real one-node Kubernetes cluster on this machine: the harness's control
//! plane (bound to an in-machine bridge instead of loopback, every default
//! controller on) plus kube-scheduler, containerd + runc, a kubelet, CNI
//! (bridge + host-local), kube-proxy (iptables) and CoreDNS, with images built
//! here and imported into containerd (no registry).
//!
//! Addresses live on bridge `sv-e2e0` only: pods in 10.213.0.0/24 (the bridge
//! is 10.213.0.1, which is also where the API server, the kubelet and the
//! services tests run "outside the cluster" listen), Services in
//! 10.213.1.0/24 (routed onto the bridge). Pods get no default route and an
//! iptables chain drops anything crossing between the bridge and another
//! interface, so nothing leaves the machine. See docs/decisions/0003-e2e-node.md.
//!
//! One node per machine at a time (the bridge, the cgroup root and kube-proxy's
//! chains are global): [`NodeCluster::start`] takes a lock. Tear-down (drop,
//! [`NodeCluster::shutdown`], or the next start after a crash) removes pods,
//! mounts, network namespaces, iptables rules, cgroups and processes:
//! `e2e/node/node.sh check` proves it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use crate::controlplane::{ControlPlane, ControlPlaneOptions, NodeControlPlane};
use crate::manifests::{apply_manifests, parse_yaml_documents};
use crate::process::{ManagedProcess, free_port, random_hex};
use crate::tools::{Tool, repo_root, tool_paths};
use crate::wait::wait_for;

/// The bridge's address: API server, kubelet, and host services for pods.
pub const NODE_IP: &str = "10.213.0.1";
pub const POD_CIDR: &str = "10.213.0.0/24";
pub const SERVICE_CIDR: &str = "10.213.1.0/24";
/// ClusterIP of `kube-system/kube-dns`.
pub const DNS_IP: &str = "10.213.1.10";
pub const NODE_NAME: &str = "skyvault-e2e-node";
const BRIDGE: &str = "sv-e2e0";
const STATE_BASE: &str = "/var/lib/skyvault-e2e";
const LOCK_FILE: &str = "/run/skyvault-e2e-node.lock";
/// Image repository the node's own images are recorded under (never pulled).
pub const IMAGE_REGISTRY: &str = "skyvault.local";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(240);

/// Images imported into the node's containerd.
#[derive(Clone, Debug)]
pub struct NodeImages {
    /// `skyvault.local/skyvault:e2e-<hash>`: both binaries, like the Dockerfile's image.
    pub skyvault: String,
    pub coredns: String,
    pub pause: String,
}

#[derive(Debug)]
pub struct NodeCluster {
    control_plane: ControlPlane,
    run_dir: PathBuf,
    containerd_sock: PathBuf,
    images: NodeImages,
    crictl: PathBuf,
    kube_proxy_bin: PathBuf,
    // Stopped in reverse order of start by `shutdown`.
    containerd: ManagedProcess,
    kubelet: ManagedProcess,
    scheduler: ManagedProcess,
    proxy: ManagedProcess,
    lock: Mutex<Option<File>>,
}

fn node_script() -> PathBuf {
    repo_root().join("e2e/node/node.sh")
}

fn run_checked(what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn node_sh(args: &[&str]) -> Result<String> {
    run_checked(
        &format!("node.sh {}", args.join(" ")),
        Command::new("bash").arg(node_script()).args(args),
    )
}

/// Takes the machine-wide node lock (blocking): one node at a time.
fn take_lock() -> Result<File> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .with_context(|| format!("open {LOCK_FILE}"))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!("flock {LOCK_FILE}: {}", std::io::Error::last_os_error());
    }
    Ok(f)
}

/// The binaries and the image inputs for a node's `skyvault` image.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub skyvault_bin: PathBuf,
    pub operator_bin: PathBuf,
}

impl NodeOptions {
    /// The harness's `skyvault` and `skyvault-operator` (built if needed).
    pub fn from_harness() -> Result<Self> {
        Ok(Self {
            skyvault_bin: crate::services::skyvault_binary()?,
            operator_bin: crate::operator::operator_binary()?,
        })
    }
}

impl NodeCluster {
    /// Brings the node up (builds and caches the tools on first use) and
    /// waits until the Node is Ready and cluster DNS answers.
    pub async fn start(options: NodeOptions) -> Result<Self> {
        let started = Instant::now();
        let lock = tokio::task::spawn_blocking(take_lock).await??;
        tokio::task::spawn_blocking(|| -> Result<()> {
            node_sh(&["install"])?;
            node_sh(&["sweep"])?;
            Ok(())
        })
        .await??;
        let tools = [
            Tool::Kubelet,
            Tool::KubeScheduler,
            Tool::KubeProxy,
            Tool::Coredns,
            Tool::Crictl,
            Tool::Pause,
        ];
        let paths = tokio::task::spawn_blocking(move || tool_paths(&tools)).await??;
        let [
            kubelet_bin,
            scheduler_bin,
            proxy_bin,
            coredns_bin,
            crictl,
            pause_bin,
        ] = <[PathBuf; 6]>::try_from(paths).expect("six paths");

        std::fs::create_dir_all(STATE_BASE)?;
        let run_dir = PathBuf::from(STATE_BASE).join(format!(
            "node-{}-{}",
            std::process::id(),
            random_hex(4)
        ));
        for sub in [
            "logs",
            "images",
            "cni/net.d",
            "cni/ipam",
            "certs.d",
            "kubelet",
            "pod-logs",
        ] {
            std::fs::create_dir_all(run_dir.join(sub))?;
        }
        // From here on a failure must undo what was set up.
        let mut guard = SetupGuard {
            run_dir: Some(run_dir.clone()),
            processes: Vec::new(),
        };
        node_sh(&["net-up", &run_dir.display().to_string()])?;

        let control_plane = ControlPlane::start(ControlPlaneOptions {
            garbage_collector: true,
            node: Some(NodeControlPlane {
                address: NODE_IP.into(),
                service_cidr: SERVICE_CIDR.into(),
            }),
        })
        .await?;
        let kubeconfig = control_plane.admin_kubeconfig().to_path_buf();
        eprintln!(
            "e2e node: control plane up after {:.1}s",
            started.elapsed().as_secs_f64()
        );

        // Images, built before containerd starts (the pause image must be there
        // before the first sandbox).
        let images = {
            let run_dir = run_dir.clone();
            tokio::task::spawn_blocking(move || {
                build_images(&run_dir, &options, &pause_bin, &coredns_bin)
            })
            .await??
        };

        let sock = run_dir.join("containerd.sock");
        write_containerd_config(&run_dir, &images.pause)?;
        write_cni_config(&run_dir)?;
        let containerd = ManagedProcess::spawn(
            "containerd",
            {
                let mut c = Command::new("containerd");
                c.arg("--config").arg(run_dir.join("containerd.toml"));
                c
            },
            &run_dir.join("logs/containerd.log"),
        )?;
        guard.processes.push(containerd.pid());
        wait_for("containerd to answer", STARTUP_TIMEOUT, || async {
            containerd.ensure_running()?;
            run_checked(
                "ctr version",
                Command::new("ctr").arg("-a").arg(&sock).arg("version"),
            )
            .map(|_| ())
        })
        .await?;
        for name in ["pause", "coredns", "skyvault"] {
            let tar = run_dir.join(format!("images/{name}.tar"));
            run_checked(
                &format!("ctr images import {}", tar.display()),
                Command::new("ctr")
                    .arg("-a")
                    .arg(&sock)
                    .args(["-n", "k8s.io", "images", "import"])
                    .arg(&tar),
            )?;
        }

        let kubelet = start_kubelet(&kubelet_bin, &run_dir, &kubeconfig, &sock)?;
        guard.processes.push(kubelet.pid());
        let scheduler = start_scheduler(&scheduler_bin, &run_dir, &kubeconfig)?;
        guard.processes.push(scheduler.pid());
        let proxy = start_kube_proxy(&proxy_bin, &run_dir, &kubeconfig)?;
        guard.processes.push(proxy.pid());

        let client = crate::kubeconfig::client_from_file(&kubeconfig).await?;
        let nodes: Api<Node> = Api::all(client.clone());
        wait_for("the node to be Ready", STARTUP_TIMEOUT, || async {
            kubelet
                .ensure_running()
                .map_err(|e| anyhow::anyhow!("{e:#}\n{}", kubelet.log_tail(40)))?;
            let n = nodes.get(NODE_NAME).await?;
            let ready = n
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .into_iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                Ok(())
            } else {
                bail!("node not Ready yet")
            }
        })
        .await?;
        eprintln!(
            "e2e node: node Ready after {:.1}s",
            started.elapsed().as_secs_f64()
        );

        deploy_coredns(&client, &images.coredns).await?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "kube-system");
        wait_for("CoreDNS to be available", STARTUP_TIMEOUT, || async {
            let d = deployments.get("coredns").await?;
            let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
            if ready >= 1 {
                Ok(())
            } else {
                bail!("coredns ready replicas {ready}")
            }
        })
        .await?;
        eprintln!(
            "e2e node: cluster DNS up after {:.1}s",
            started.elapsed().as_secs_f64()
        );

        guard.run_dir = None;
        guard.processes.clear();
        Ok(Self {
            control_plane,
            containerd_sock: sock,
            run_dir,
            images,
            crictl,
            kube_proxy_bin: proxy_bin,
            containerd,
            kubelet,
            scheduler,
            proxy,
            lock: Mutex::new(Some(lock)),
        })
    }

    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    pub fn admin_kubeconfig(&self) -> &Path {
        self.control_plane.admin_kubeconfig()
    }

    pub fn images(&self) -> &NodeImages {
        &self.images
    }

    /// The directory with this node's state and logs.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Errors (with the log's tail) if any node component has exited.
    pub fn ensure_running(&self) -> Result<()> {
        self.control_plane.ensure_running()?;
        for p in [
            &self.containerd,
            &self.kubelet,
            &self.scheduler,
            &self.proxy,
        ] {
            p.ensure_running()
                .map_err(|e| anyhow::anyhow!("{e:#}\n{}", p.log_tail(30)))?;
        }
        Ok(())
    }

    /// Records `source` under a second name in containerd (a "new image tag"
    /// with the same content, for rolling-update tests).
    pub fn tag_image(&self, source: &str, target: &str) -> Result<()> {
        run_checked(
            "ctr images tag",
            Command::new("ctr")
                .arg("-a")
                .arg(&self.containerd_sock)
                .args(["-n", "k8s.io", "images", "tag", "--force", source, target]),
        )?;
        Ok(())
    }

    /// Runs crictl against this node's containerd.
    pub fn crictl(&self, args: &[&str]) -> Result<String> {
        run_checked(
            &format!("crictl {}", args.join(" ")),
            Command::new(&self.crictl)
                .arg("--runtime-endpoint")
                .arg(format!("unix://{}", self.containerd_sock.display()))
                .arg("--timeout=30s")
                .args(args),
        )
    }

    /// Stops everything and removes every trace (idempotent).
    pub fn shutdown(&self) {
        let Some(lock) = self.lock.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        // No new pods, then remove every sandbox through the runtime (stops the
        // containers, runs CNI DEL, unmounts the network namespace).
        self.kubelet.stop(Duration::from_secs(10));
        self.scheduler.stop(Duration::from_secs(5));
        if self.containerd.ensure_running().is_ok()
            && let Err(e) = self.crictl(&["rmp", "--force", "--all"])
        {
            eprintln!("e2e node: crictl rmp: {e:#}");
        }
        self.proxy.stop(Duration::from_secs(5));
        let _ = Command::new(&self.kube_proxy_bin)
            .args(["--cleanup", "--proxy-mode=iptables"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.containerd.stop(Duration::from_secs(10));
        self.control_plane.shutdown();
        if let Err(e) = node_sh(&["down", &self.run_dir.display().to_string()]) {
            eprintln!("e2e node: {e:#}");
        }
        drop(lock);
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Undoes a half-done start.
struct SetupGuard {
    run_dir: Option<PathBuf>,
    processes: Vec<u32>,
}

impl Drop for SetupGuard {
    fn drop(&mut self) {
        let Some(run_dir) = self.run_dir.take() else {
            return;
        };
        for pid in self.processes.iter().rev() {
            // SAFETY: plain kill(2) of a child we started.
            unsafe {
                libc::kill(*pid as i32, libc::SIGKILL);
            }
        }
        if let Err(e) = node_sh(&["down", &run_dir.display().to_string()]) {
            eprintln!("e2e node: cleanup after failed start: {e:#}");
        }
    }
}

fn sha256_prefix(files: &[&Path]) -> Result<String> {
    let out = run_checked(
        "sha256sum",
        Command::new("sha256sum").args(files.iter().map(|f| f.as_os_str())),
    )?;
    let all: String = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let out = run_checked(
        "sha256sum",
        Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {all} | sha256sum")),
    )?;
    Ok(out[..12].to_string())
}

fn build_images(
    run_dir: &Path,
    options: &NodeOptions,
    pause_bin: &Path,
    coredns_bin: &Path,
) -> Result<NodeImages> {
    let script = repo_root().join("e2e/node/images.sh");
    let tag = sha256_prefix(&[&options.skyvault_bin, &options.operator_bin])?;
    let images = NodeImages {
        skyvault: format!("{IMAGE_REGISTRY}/skyvault:e2e-{tag}"),
        coredns: format!("{IMAGE_REGISTRY}/coredns:e2e"),
        pause: format!("{IMAGE_REGISTRY}/pause:e2e"),
    };
    let build = |name: &str, reference: &str, inputs: &[&Path]| -> Result<()> {
        run_checked(
            &format!("images.sh {name}"),
            Command::new("bash")
                .arg(&script)
                .arg(name)
                .arg(run_dir.join(format!("images/{name}.tar")))
                .arg(reference)
                .args(inputs.iter().map(|p| p.as_os_str())),
        )?;
        Ok(())
    };
    build("pause", &images.pause, &[pause_bin])?;
    build("coredns", &images.coredns, &[coredns_bin])?;
    build(
        "skyvault",
        &images.skyvault,
        &[&options.skyvault_bin, &options.operator_bin],
    )?;
    Ok(images)
}

fn write_containerd_config(run_dir: &Path, pause_image: &str) -> Result<()> {
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

fn write_cni_config(run_dir: &Path) -> Result<()> {
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

fn start_kubelet(
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

fn start_scheduler(bin: &Path, run_dir: &Path, kubeconfig: &Path) -> Result<ManagedProcess> {
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

fn start_kube_proxy(bin: &Path, run_dir: &Path, kubeconfig: &Path) -> Result<ManagedProcess> {
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

/// CoreDNS answering for cluster.local only (no `forward`: names outside the
/// cluster are not resolved, so no query leaves the machine).
async fn deploy_coredns(client: &kube::Client, image: &str) -> Result<()> {
    let yaml = format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: coredns, namespace: kube-system}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: "system:coredns"}}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: "system:coredns"}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}}
subjects: [{{kind: ServiceAccount, name: coredns, namespace: kube-system}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: coredns, namespace: kube-system}}
data:
  Corefile: |
    .:1053 {{
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {{
            pods insecure
        }}
        cache 5
    }}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: coredns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{k8s-app: kube-dns}}}}
  template:
    metadata: {{labels: {{k8s-app: kube-dns}}}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      securityContext: {{runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}}
      containers:
      - name: coredns
        image: "{image}"
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {{name: dns, containerPort: 1053, protocol: UDP}}
        - {{name: dns-tcp, containerPort: 1053, protocol: TCP}}
        readinessProbe:
          httpGet: {{path: /ready, port: 8181}}
          periodSeconds: 2
        livenessProbe:
          httpGet: {{path: /health, port: 8080}}
        securityContext: {{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {{drop: [ALL]}}}}
        volumeMounts: [{{name: config, mountPath: /etc/coredns}}]
      volumes:
      - name: config
        configMap: {{name: coredns}}
---
apiVersion: v1
kind: Service
metadata: {{name: kube-dns, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}
spec:
  clusterIP: {DNS_IP}
  selector: {{k8s-app: kube-dns}}
  ports:
  - {{name: dns, port: 53, targetPort: 1053, protocol: UDP}}
  - {{name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}}
"#
    );
    let docs = parse_yaml_documents(&yaml)?;
    apply_manifests(client, &docs, "kube-system").await?;
    Ok(())
}

/// Makes a service that listens on loopback reachable from pods: a TCP
/// forwarder on `NODE_IP` (a free port) to `127.0.0.1:target_port`, running
/// until the returned handle is dropped. This is how the tests give pods a
/// database and an S3 server "outside the cluster".
pub async fn expose_to_pods(target_port: u16) -> Result<(u16, Forwarder)> {
    let listener = tokio::net::TcpListener::bind((NODE_IP, 0))
        .await
        .with_context(|| format!("listen on {NODE_IP}"))?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                {
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok((port, Forwarder(task)))
}

/// Stops its forwarder when dropped.
#[derive(Debug)]
pub struct Forwarder(tokio::task::JoinHandle<()>);

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `node.sh check`: Ok when nothing of any node run is left on the machine.
pub fn check_no_leftovers() -> Result<()> {
    node_sh(&["check"]).map(|_| ())
}

/// Pods of a namespace (for diagnostics).
pub async fn describe_pods(client: &kube::Client, namespace: &str) -> String {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    match pods.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .map(|p| {
                let s = p.status.clone().unwrap_or_default();
                let containers: Vec<String> = s
                    .container_statuses
                    .unwrap_or_default()
                    .iter()
                    .map(|c| {
                        format!(
                            "{} ready={} restarts={} state={}",
                            c.name,
                            c.ready,
                            c.restart_count,
                            serde_json::to_string(&c.state).unwrap_or_default()
                        )
                    })
                    .collect();
                format!(
                    "{} phase={} {}",
                    p.metadata.name.clone().unwrap_or_default(),
                    s.phase.unwrap_or_default(),
                    containers.join("; ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("list pods: {e}"),
    }
}
