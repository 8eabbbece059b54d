//! Starts the e2e control plane (etcd, kube-apiserver with RBAC,
//! kube-controller-manager's garbage collector) on loopback and keeps it
//! running until Ctrl-C/SIGTERM. Prints the admin kubeconfig path, so the e2e
//! tests (with `SKYVAULT_E2E_USE_EXISTING_CLUSTER=1`), kubectl or a manually
//! started operator can use it.

use anyhow::Result;
use skyvault_e2e::{ControlPlane, ControlPlaneOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cp = ControlPlane::start(ControlPlaneOptions {
        garbage_collector: true,
    })
    .await?;
    println!("export KUBECONFIG={}", cp.admin_kubeconfig().display());
    println!(
        "# API server {} (state in {}); Ctrl-C stops it",
        cp.server(),
        cp.dir().display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(cp);
    Ok(())
}
