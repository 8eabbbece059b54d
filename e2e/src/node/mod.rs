//! A real one-node Kubernetes cluster on this machine: the harness's control
//! plane (bound to an in-machine bridge instead of loopback, every default
//! controller on) plus kube-scheduler, containerd + runc, a kubelet, CNI
//! (bridge + host-local), kube-proxy (iptables), kube-router's network policy
//! controller (NetworkPolicies are enforced, as on a CNI that implements them) and
//! CoreDNS, with images built here and imported into containerd (no registry).
//!
//! Addresses live on bridge `sv-e2e0` only: pods in 10.213.0.0/24 (the bridge
//! is 10.213.0.1, which is also where the API server, the kubelet and the
//! services tests run "outside the cluster" listen), Services in
//! 10.213.1.0/24 (routed onto the bridge). Pods get no default route and an
//! iptables chain drops anything crossing between the bridge and another
//! interface, so nothing leaves the machine. See docs/decisions/0004-e2e-node.md.
//!
//! One node per machine at a time (the bridge, the cgroup root, kube-proxy's and
//! kube-router's chains and kube-router's ipsets are global): [`NodeCluster::start`] takes a lock. Tear-down (drop,
//! [`NodeCluster::shutdown`], or the next start after a crash) removes pods,
//! mounts, network namespaces, iptables rules, ipsets, cgroups and processes:
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
use crate::process::{ManagedProcess, random_hex};
use crate::tools::{Tool, repo_root, tool_paths};
use crate::wait::wait_for;

mod components;
mod coredns;
mod expose;
mod images;

use components::{
    kube_router_hooked, start_kube_proxy, start_kube_router, start_kubelet, start_scheduler,
    write_cni_config, write_containerd_config,
};
use coredns::deploy_coredns;
pub use expose::{Forwarder, expose_on, expose_to_pods};
use images::build_images;

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
    kube_router: ManagedProcess,
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
            Tool::KubeRouter,
            Tool::Coredns,
            Tool::Crictl,
            Tool::Pause,
        ];
        let paths = tokio::task::spawn_blocking(move || tool_paths(&tools)).await??;
        let [
            kubelet_bin,
            scheduler_bin,
            proxy_bin,
            kube_router_bin,
            coredns_bin,
            crictl,
            pause_bin,
        ] = <[PathBuf; 7]>::try_from(paths).expect("seven paths");

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
            kubelet.ensure_running()?;
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
        // NetworkPolicy enforcement (it reads the Node object, so after the kubelet
        // registered it); hooked before any pod of the tests starts.
        let kube_router = start_kube_router(&kube_router_bin, &run_dir, &kubeconfig)?;
        guard.processes.push(kube_router.pid());

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
        wait_for(
            "kube-router to hook the FORWARD chain",
            STARTUP_TIMEOUT,
            || async {
                kube_router.ensure_running()?;
                if kube_router_hooked()? {
                    Ok(())
                } else {
                    bail!("no jump to KUBE-ROUTER-FORWARD yet")
                }
            },
        )
        .await?;
        eprintln!(
            "e2e node: NetworkPolicy enforcement (kube-router) up after {:.1}s",
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
            kube_router,
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
            &self.kube_router,
        ] {
            p.ensure_running()?;
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
        // Its chains and ipsets go with `node.sh down`.
        self.kube_router.stop(Duration::from_secs(5));
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
