//! `skyvault-operator`: run the controller (default) or print the CRD.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::watch;
use tracing::info;

use skyvault_operator::controller::{self, Context};
use skyvault_operator::leader::{self, LeaseConfig};
use skyvault_operator::metrics::{self, Metrics};

/// Kubernetes operator for SkyVault.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controller (the default when no subcommand is given).
    Run(RunArgs),
    /// Print the SkyVault CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Address of the HTTP endpoint with /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "SKYVAULT_OPERATOR_METRICS_ADDR",
        default_value = skyvault_operator::metrics::DEFAULT_ADDR
    )]
    metrics_addr: SocketAddr,
    /// Elect a leader through a Lease so only one replica reconciles.
    #[arg(long, env = "SKYVAULT_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the Lease (default: the namespace of the kubeconfig context or the Pod).
    #[arg(long, env = "SKYVAULT_OPERATOR_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(
        long,
        env = "SKYVAULT_OPERATOR_LEASE_NAME",
        default_value = "skyvault-operator-leader"
    )]
    lease_name: String,
    /// Seconds a Lease stays valid without renewal.
    #[arg(
        long,
        env = "SKYVAULT_OPERATOR_LEASE_DURATION_SECS",
        default_value_t = 15
    )]
    lease_duration_secs: u64,
    /// This replica's identity in the Lease and in Events (default: POD_NAME, else hostname).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Watch SkyVaults in this namespace only (default: all namespaces).
    #[arg(long, env = "SKYVAULT_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Log line format.
    #[arg(long, env = "SKYVAULT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Where a SkyVault's compaction debt is read (`GET`, JSON); `{name}` and `{namespace}`
    /// are replaced. The default reaches the index Service's HTTP port in-cluster.
    #[arg(
        long,
        env = "SKYVAULT_OPERATOR_LSM_URL_TEMPLATE",
        default_value = skyvault_operator::naming::DEFAULT_LSM_URL_TEMPLATE
    )]
    lsm_url_template: String,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Json,
    Text,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", skyvault_operator::crd_output::crd_yaml());
            Ok(())
        }
        Some(Command::Run(args)) => run(args).await,
        None => run(cli.run).await,
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let client = Client::try_default()
        .await
        .context("no Kubernetes client config (KUBECONFIG or in-cluster)")?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let metrics = Arc::new(Metrics::new());
    let server = tokio::spawn(metrics::serve(args.metrics_addr, metrics.clone()));
    let reporter = Reporter {
        controller: "skyvault-operator".into(),
        instance: Some(identity.clone()),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
        lsm_url_template: args.lsm_url_template.clone(),
    });
    let shutdown = shutdown_signal();
    info!(namespace = args.namespace.as_deref().unwrap_or("<all>"), leader_election = args.leader_election, %identity, "starting skyvault-operator");
    let namespace = args.namespace.clone();
    let result = if args.leader_election {
        let cfg = LeaseConfig {
            namespace: args
                .lease_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string()),
            name: args.lease_name.clone(),
            identity,
            duration_secs: args.lease_duration_secs,
            grace_secs: (args.lease_duration_secs / 3).max(1),
        };
        leader::run_as_leader(client, cfg, metrics, shutdown, |stop| {
            controller::run(ctx.clone(), namespace.clone(), stop)
        })
        .await
    } else {
        metrics.leader.set(1);
        controller::run(ctx, namespace, leader::stop_signal(None, shutdown)).await;
        Ok(())
    };
    server.abort();
    result
}

/// POD_NAME is set by the chart; elsewhere the hostname plus pid is unique enough.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "skyvault-operator".into());
    format!("{host}-{}", std::process::id())
}

/// Turns true on SIGTERM or Ctrl-C.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        info!("shutdown requested");
        let _ = tx.send(true);
    });
    rx
}
