//! Starts the e2e control plane (etcd, kube-apiserver with RBAC,
//! kube-controller-manager's garbage collector) on loopback and keeps it
//! running until Ctrl-C/SIGTERM. Prints the admin kubeconfig path, so the e2e
//! tests (with `SKYVAULT_E2E_USE_EXISTING_CLUSTER=1`), kubectl or a manually
//! started operator can use it.
//!
//! `--node`: a real one-node cluster instead (kubelet, containerd, CNI,
//! kube-proxy, kube-scheduler, CoreDNS; every controller; the SkyVault image
//! built from this checkout's binaries and loaded), see `skyvault_e2e::node`.
//! It also runs a PostgreSQL and an S3 server on the machine, reachable from
//! pods (for `just k8s-dev`), and prints the environment the journey test needs
//! to run against this node as an existing cluster. Needs root. Tear-down
//! removes every trace; so does the next start after a crash.

use anyhow::{Context, Result};
use skyvault_e2e::node::{self, NodeCluster, NodeOptions};
use skyvault_e2e::services::postgres::PostgresServer;
use skyvault_e2e::services::s3::S3Server;
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
            // The same image under a second tag, for the journey's rolling change when it
            // runs against this node as an existing cluster.
            let image = node.images().skyvault.clone();
            let roll_image = format!("{image}-b");
            node.tag_image(&image, &roll_image)?;
            // A database and an S3 server outside the cluster, reachable from pods on the
            // bridge address, for `just k8s-dev` (charts/scripts/k8s.sh reads dev.env).
            let pg = PostgresServer::start()?;
            let s3 = S3Server::start()?;
            let (pg_port, _pg_fwd) = node::expose_to_pods(pg.port()).await?;
            let s3_port: u16 = s3
                .endpoint()
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .context("S3 port")?;
            let (s3_fwd_port, _s3_fwd) = node::expose_to_pods(s3_port).await?;
            let dev_env = node.run_dir().join("dev.env");
            std::fs::write(
                &dev_env,
                format!(
                    "SKYVAULT_DEV_DATABASE_URL=postgres://skyvault@{ip}:{pg_port}/skyvault\n\
                     SKYVAULT_DEV_S3_ENDPOINT=http://{ip}:{s3_fwd_port}\n\
                     SKYVAULT_DEV_S3_BUCKET={bucket}\n\
                     SKYVAULT_DEV_CONTAINERD={sock}\n",
                    ip = node::NODE_IP,
                    bucket = s3.bucket(),
                    sock = node.run_dir().join("containerd.sock").display(),
                ),
            )?;
            println!("export KUBECONFIG={}", node.admin_kubeconfig().display());
            println!("export SKYVAULT_E2E_NODE_DIR={}", node.run_dir().display());
            println!("export SKYVAULT_E2E_IMAGE={image} SKYVAULT_E2E_ROLL_IMAGE={roll_image}");
            println!(
                "# one-node cluster: API server {}, node {} ({}); PostgreSQL and S3 for pods \
                 in {}",
                node.control_plane().server(),
                node::NODE_NAME,
                node::NODE_IP,
                dev_env.display()
            );
            println!(
                "# the journey on it: SKYVAULT_E2E_USE_EXISTING_CLUSTER=1 cargo test -p \
                 skyvault-e2e --test node_journey; a dev store: just k8s-dev"
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
