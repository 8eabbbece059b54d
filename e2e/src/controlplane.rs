//! A real Kubernetes control plane on loopback: etcd + kube-apiserver, and
//! optionally kube-controller-manager running only the garbage collector.
//!
//! No kubelet, scheduler or workload controllers run, so nothing creates Pods
//! and StatefulSet/Job status stays whatever the tests write (envtest does the
//! same). Everything lives in one temporary directory that is removed when the
//! [`ControlPlane`] is dropped or [`ControlPlane::shutdown`] is called.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::kubeconfig;
use crate::process::{ManagedProcess, free_port, http_get, random_hex};
use crate::tools::{Tool, tool_paths};

/// The user in `system:masters` that the admin kubeconfig authenticates as.
pub const ADMIN_USER: &str = "skyvault-e2e-admin";
/// The issuer of ServiceAccount tokens minted by this control plane.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// How long a process may take to become ready on a loaded 2-core machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);
/// Attempts at starting a component when a picked port was taken meanwhile.
const START_ATTEMPTS: usize = 3;

#[derive(Clone, Debug, Default)]
pub struct ControlPlaneOptions {
    /// Also run kube-controller-manager with only the garbage collector, so
    /// owner references actually delete children.
    pub garbage_collector: bool,
    /// For a cluster with a node (see [`crate::node`]): the API server binds
    /// and advertises this (bridge) address instead of 127.0.0.1, keeps the
    /// `kubernetes` Service's endpoints, and kube-controller-manager runs
    /// every default controller (workloads, endpoints, namespaces, the root CA
    /// publisher) rather than only the garbage collector.
    pub node: Option<NodeControlPlane>,
}

/// What a control plane for a real node needs to differ in.
#[derive(Clone, Debug)]
pub struct NodeControlPlane {
    /// Address the API server binds and advertises (reachable from pods).
    pub address: String,
    /// `--service-cluster-ip-range`.
    pub service_cidr: String,
}

#[derive(Debug)]
pub struct ControlPlane {
    dir: Mutex<Option<tempfile::TempDir>>,
    dir_path: PathBuf,
    etcd: ManagedProcess,
    apiserver: ManagedProcess,
    controller_manager: Option<ManagedProcess>,
    server: String,
    admin_kubeconfig: PathBuf,
    cluster: kube::config::Cluster,
}

/// Names of our temp dirs: `skyvault-e2e-<pid>-<random>`.
const DIR_PREFIX: &str = "skyvault-e2e-";

/// Removes temp dirs left by test processes that died without cleaning up
/// (SIGKILL, Ctrl-C). Their children died with them (PDEATHSIG).
fn sweep_stale_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the pid exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh temp dir for one control plane (or other harness state).
pub fn new_temp_dir() -> Result<tempfile::TempDir> {
    let base = std::env::temp_dir();
    sweep_stale_dirs(&base);
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir_in(&base)
        .context("create temp dir")
}

impl ControlPlane {
    /// Builds (first run only) and starts etcd and kube-apiserver, waits until
    /// `/readyz` answers `ok`, and writes an admin kubeconfig.
    pub async fn start(options: ControlPlaneOptions) -> Result<Self> {
        let mut tools = vec![Tool::Etcd, Tool::KubeApiserver];
        if options.garbage_collector || options.node.is_some() {
            tools.push(Tool::KubeControllerManager);
        }
        let paths = tokio::task::spawn_blocking(move || tool_paths(&tools)).await??;
        let (etcd_bin, apiserver_bin) = (&paths[0], &paths[1]);

        let dir = new_temp_dir()?;
        let d = dir.path().to_path_buf();
        for sub in [
            "etcd",
            "apiserver-certs",
            "controller-manager-certs",
            "logs",
        ] {
            std::fs::create_dir_all(d.join(sub))?;
        }

        // ServiceAccount token signing key (also the verification key).
        let sa_key = d.join("sa.key");
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&sa_key)
            .output()
            .context(
                "run openssl to generate the ServiceAccount signing key (is openssl installed?)",
            )?;
        if !out.status.success() {
            bail!(
                "openssl genpkey failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        // Static token for the admin identity.
        let admin_token = random_hex(24);
        kubeconfig::write_private(
            &d.join("tokens.csv"),
            format!("{admin_token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n").as_bytes(),
        )?;

        let (etcd, etcd_url) = start_etcd(etcd_bin, &d).await?;
        let (apiserver, server, cluster, admin_kubeconfig) = start_apiserver(
            apiserver_bin,
            &d,
            &etcd_url,
            &admin_token,
            &sa_key,
            options.node.as_ref(),
        )
        .await?;

        let controller_manager = if options.garbage_collector || options.node.is_some() {
            Some(start_controller_manager(
                &paths[2],
                &d,
                &admin_kubeconfig,
                options.node.is_some().then_some(sa_key.as_path()),
            )?)
        } else {
            None
        };

        Ok(Self {
            dir: Mutex::new(Some(dir)),
            dir_path: d,
            etcd,
            apiserver,
            controller_manager,
            server,
            admin_kubeconfig,
            cluster,
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Kubeconfig of a `system:masters` user.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The kubeconfig cluster entry (server and CA).
    pub fn cluster(&self) -> &kube::config::Cluster {
        &self.cluster
    }

    /// The directory holding all state of this control plane.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    pub fn has_garbage_collector(&self) -> bool {
        self.controller_manager.is_some()
    }

    /// Errors if any component has exited.
    pub fn ensure_running(&self) -> Result<()> {
        self.etcd.ensure_running()?;
        self.apiserver.ensure_running()?;
        if let Some(kcm) = &self.controller_manager {
            kcm.ensure_running()?;
        }
        Ok(())
    }

    /// The kube-apiserver process (for its log).
    pub fn apiserver(&self) -> &ManagedProcess {
        &self.apiserver
    }

    /// Stops every component and removes the temp dir (unless
    /// `SKYVAULT_E2E_KEEP=1`). Idempotent; safe to call from an exit handler.
    pub fn shutdown(&self) {
        if let Some(kcm) = &self.controller_manager {
            kcm.stop(Duration::from_secs(10));
        }
        self.apiserver.stop(Duration::from_secs(15));
        self.etcd.stop(Duration::from_secs(10));
        let dir = self.dir.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(dir) = dir {
            if std::env::var("SKYVAULT_E2E_KEEP").as_deref() == Ok("1") {
                let kept = dir.keep();
                eprintln!("e2e: kept control-plane state in {}", kept.display());
            } else {
                let _ = dir.close();
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn start_etcd(bin: &Path, d: &Path) -> Result<(ManagedProcess, String)> {
    let mut last_err = None;
    for attempt in 0..START_ATTEMPTS {
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let data_dir = d.join("etcd");
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut cmd = Command::new(bin);
        cmd.arg("--name=default")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .arg("--unsafe-no-fsync=true")
            .arg("--log-level=warn");
        let proc = ManagedProcess::spawn("etcd", cmd, &d.join(format!("logs/etcd-{attempt}.log")))?;
        match wait_etcd_healthy(&proc, client_port).await {
            Ok(()) => return Ok((proc, client_url)),
            Err(e) => {
                proc.kill();
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap().context("etcd did not become healthy"))
}

async fn wait_etcd_healthy(proc: &ManagedProcess, port: u16) -> Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        proc.ensure_running()?;
        if let Ok((200, body)) = http_get(port, "/health").await
            && body.contains("\"health\":\"true\"")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "etcd not healthy after {STARTUP_TIMEOUT:?}:\n{}",
                proc.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_apiserver(
    bin: &Path,
    d: &Path,
    etcd_url: &str,
    admin_token: &str,
    sa_key: &Path,
    node: Option<&NodeControlPlane>,
) -> Result<(ManagedProcess, String, kube::config::Cluster, PathBuf)> {
    let cert_dir = d.join("apiserver-certs");
    let host = node.map_or("127.0.0.1", |n| n.address.as_str());
    let mut last_err = None;
    for attempt in 0..START_ATTEMPTS {
        let port = free_port()?;
        let _ = std::fs::remove_file(cert_dir.join("apiserver.crt"));
        let _ = std::fs::remove_file(cert_dir.join("apiserver.key"));
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--etcd-servers={etcd_url}"))
            .arg(format!("--cert-dir={}", cert_dir.display()))
            .arg(format!("--secure-port={port}"))
            .arg(format!("--bind-address={host}"))
            .arg(format!("--advertise-address={host}"));
        match node {
            // Pods reach the API server through the `kubernetes` Service.
            // It reaches the kubelet (logs, exec, port-forward) on the node's address: the
            // node's name resolves nowhere (CoreDNS answers for cluster.local only).
            Some(n) => cmd
                .arg(format!("--service-cluster-ip-range={}", n.service_cidr))
                .arg("--kubelet-preferred-address-types=InternalIP,Hostname"),
            // The endpoint reconciler refuses a loopback address; nothing here
            // needs endpoints for the `kubernetes` Service.
            None => cmd
                .arg("--endpoint-reconciler-type=none")
                .arg("--service-cluster-ip-range=10.0.0.0/24"),
        };
        cmd.arg("--authorization-mode=RBAC")
            .arg(format!(
                "--token-auth-file={}",
                d.join("tokens.csv").display()
            ))
            .arg(format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"))
            .arg(format!("--service-account-key-file={}", sa_key.display()))
            .arg(format!(
                "--service-account-signing-key-file={}",
                sa_key.display()
            ))
            .arg("--allow-privileged=true")
            .arg("--v=1");
        let proc = ManagedProcess::spawn(
            "kube-apiserver",
            cmd,
            &d.join(format!("logs/kube-apiserver-{attempt}.log")),
        )?;
        let server = format!("https://{host}:{port}");
        match wait_apiserver_ready(&proc, &server, &cert_dir, d, admin_token).await {
            Ok((cluster, kubeconfig)) => return Ok((proc, server, cluster, kubeconfig)),
            Err(e) => {
                proc.kill();
                last_err = Some(e);
            }
        }
    }
    Err(last_err
        .unwrap()
        .context("kube-apiserver did not become ready"))
}

async fn wait_apiserver_ready(
    proc: &ManagedProcess,
    server: &str,
    cert_dir: &Path,
    d: &Path,
    admin_token: &str,
) -> Result<(kube::config::Cluster, PathBuf)> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let cert = cert_dir.join("apiserver.crt");
    // The self-signed serving certificate appears early during startup.
    while !cert.exists() {
        proc.ensure_running()?;
        if Instant::now() > deadline {
            bail!(
                "kube-apiserver wrote no serving certificate:\n{}",
                proc.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cluster = kube::config::Cluster {
        server: Some(server.to_owned()),
        certificate_authority: Some(cert.display().to_string()),
        ..Default::default()
    };
    let path = d.join("admin.kubeconfig");
    let kc = kubeconfig::write_token_kubeconfig(&path, &cluster, ADMIN_USER, admin_token, None)?;
    let client = kubeconfig::client_from_kubeconfig(kc).await?;
    let mut last;
    loop {
        proc.ensure_running()?;
        let req = http::Request::get("/readyz").body(Vec::new())?;
        match client.request_text(req).await {
            Ok(body) if body.trim() == "ok" => return Ok((cluster, path)),
            Ok(body) => last = body,
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            bail!(
                "kube-apiserver not ready after {STARTUP_TIMEOUT:?} (last answer: {last}):\n{}",
                proc.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `node_sa_key`: run every default controller (a node's cluster), with the
/// ServiceAccount key and the API server's (self-signed) certificate as the
/// root CA that the `kube-root-ca.crt` ConfigMaps publish to pods.
fn start_controller_manager(
    bin: &Path,
    d: &Path,
    kubeconfig: &Path,
    node_sa_key: Option<&Path>,
) -> Result<ManagedProcess> {
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()));
    match node_sa_key {
        Some(key) => cmd
            // The serving certificate is self-signed without the CA bit, so
            // publishing it as a ClusterTrustBundle fails (forever, noisily).
            .arg("--controllers=*,-kube-apiserver-serving-clustertrustbundle-publisher-controller")
            .arg(format!(
                "--service-account-private-key-file={}",
                key.display()
            ))
            .arg(format!(
                "--root-ca-file={}",
                d.join("apiserver-certs/apiserver.crt").display()
            )),
        None => cmd.arg("--controllers=garbagecollector"),
    };
    cmd.arg("--leader-elect=false")
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={}", free_port()?))
        .arg(format!(
            "--cert-dir={}",
            d.join("controller-manager-certs").display()
        ))
        .arg("--v=1");
    ManagedProcess::spawn(
        "kube-controller-manager",
        cmd,
        &d.join("logs/kube-controller-manager.log"),
    )
}
