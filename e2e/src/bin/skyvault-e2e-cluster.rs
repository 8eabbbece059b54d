//! Starts the e2e control plane (etcd, kube-apiserver with RBAC,
//! kube-controller-manager's garbage collector) on loopback and keeps it
//! running until Ctrl-C/SIGTERM. Prints the admin kubeconfig path, so the e2e
//! tests (with `SKYVAULT_E2E_USE_EXISTING_CLUSTER=1`), kubectl or a manually
//! started operator can use it.
//!
//! `--node`: a real one-node cluster instead (kubelet, containerd, CNI,
//! kube-proxy, kube-scheduler, CoreDNS; every controller; the SkyVault image
//! built from this checkout's binaries and loaded), see `skyvault_e2e::node`.
//! Needs root. Tear-down removes every trace; so does the next start after a
//! crash.

use anyhow::Result;
use skyvault_e2e::node::{NodeCluster, NodeOptions};
use skyvault_e2e::{ControlPlane, ControlPlaneOptions};

async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {}
        ["--node"] => {
            let node = NodeCluster::start(NodeOptions::from_harness()?).await?;
            println!("export KUBECONFIG={}", node.admin_kubeconfig().display());
            println!(
                "# one-node cluster: API server {}, node {} ({}); images: {}",
                node.control_plane().server(),
                skyvault_e2e::node::NODE_NAME,
                skyvault_e2e::node::NODE_IP,
                node.images().skyvault
            );
            println!(
                "# state and logs in {}; Ctrl-C stops it and removes everything",
                node.run_dir().display()
            );
            wait_for_signal().await?;
            drop(node);
            return Ok(());
        }
        _ => anyhow::bail!("usage: skyvault-e2e-cluster [--node]"),
    }
    let cp = ControlPlane::start(ControlPlaneOptions {
        garbage_collector: true,
        ..Default::default()
    })
    .await?;
    println!("export KUBECONFIG={}", cp.admin_kubeconfig().display());
    println!(
        "# API server {} (state in {}); Ctrl-C stops it",
        cp.server(),
        cp.dir().display()
    );
    wait_for_signal().await?;
    drop(cp);
    Ok(())
}
