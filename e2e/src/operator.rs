//! Running the real `skyvault-operator` binary against a test cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{ManagedProcess, free_port, http_get};
use crate::tools::repo_root;
use crate::wait::wait_for;

/// The cargo target directory this test binary was built into
/// (`<target>/debug/deps/<test>` → `<target>`).
fn target_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        let d = PathBuf::from(d);
        return Ok(if d.is_absolute() {
            d
        } else {
            repo_root().join(d)
        });
    }
    // target/<profile>/deps/<test exe>, or target/<profile>/<harness binary>.
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable without a directory")?;
    let profile_dir = if dir.ends_with("deps") {
        dir.parent()
    } else {
        Some(dir)
    };
    profile_dir
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("cannot derive the target dir from the test binary's path")
}

/// Path of the operator binary: `$SKYVAULT_OPERATOR_BIN`, or built with
/// `cargo build -p skyvault-operator` into this test's target dir (once per
/// process; cargo's own lock serialises concurrent test binaries).
pub fn operator_binary() -> Result<PathBuf> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    if let Some(p) = std::env::var_os("SKYVAULT_OPERATOR_BIN") {
        return Ok(PathBuf::from(p));
    }
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.as_ref() {
        return Ok(p.clone());
    }
    let target = target_dir()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "e2e: building skyvault-operator (cargo build -p skyvault-operator --target-dir {})",
        target.display()
    );
    let status = Command::new(cargo)
        .args([
            "build",
            "-p",
            "skyvault-operator",
            "--bin",
            "skyvault-operator",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .status()
        .context("run cargo build -p skyvault-operator")?;
    if !status.success() {
        bail!("cargo build -p skyvault-operator failed: {status}");
    }
    let bin = target.join("debug/skyvault-operator");
    if !bin.exists() {
        bail!("{} missing after the build", bin.display());
    }
    *built = Some(bin.clone());
    Ok(bin)
}

/// How to run one operator instance.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// Kubeconfig the operator authenticates with (normally the chart's
    /// ServiceAccount, see [`crate::cluster::TestCluster::service_account_kubeconfig`]).
    pub kubeconfig: PathBuf,
    /// Watch only this namespace (tests share one API server).
    pub watch_namespace: Option<String>,
    pub leader_election: bool,
    pub lease_namespace: Option<String>,
    pub lease_name: Option<String>,
    pub lease_duration_secs: u64,
    pub identity: String,
    /// Where the log goes.
    pub log_path: PathBuf,
    /// More `run` flags (e.g. `--lsm-url-template=...`).
    pub extra_args: Vec<String>,
}

/// A running operator process (stopped on drop).
#[derive(Debug)]
pub struct Operator {
    process: ManagedProcess,
    metrics_port: u16,
    identity: String,
}

impl Operator {
    pub fn start(options: &OperatorOptions) -> Result<Self> {
        let bin = operator_binary()?;
        let metrics_port = free_port()?;
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
            .arg(format!("--leader-election={}", options.leader_election))
            .arg(format!(
                "--lease-duration-secs={}",
                options.lease_duration_secs
            ))
            .arg(format!("--identity={}", options.identity))
            .arg("--log-format=text")
            .env("KUBECONFIG", &options.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("SKYVAULT_E2E_OPERATOR_LOG")
                    .unwrap_or_else(|_| "info,skyvault_operator=debug".into()),
            )
            .env("NO_COLOR", "1")
            .env_remove("POD_NAME")
            .env_remove("SKYVAULT_OPERATOR_NAMESPACE");
        if let Some(ns) = &options.watch_namespace {
            cmd.arg(format!("--namespace={ns}"));
        }
        if let Some(ns) = &options.lease_namespace {
            cmd.arg(format!("--lease-namespace={ns}"));
        }
        if let Some(name) = &options.lease_name {
            cmd.arg(format!("--lease-name={name}"));
        }
        cmd.args(&options.extra_args);
        let process = ManagedProcess::spawn(
            &format!("skyvault-operator[{}]", options.identity),
            cmd,
            &options.log_path,
        )?;
        Ok(Self {
            process,
            metrics_port,
            identity: options.identity.clone(),
        })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn process(&self) -> &ManagedProcess {
        &self.process
    }

    /// Waits until `/healthz` answers.
    pub async fn wait_healthy(&self) -> Result<()> {
        wait_for(
            &format!("operator {} /healthz", self.identity),
            Duration::from_secs(60),
            || async {
                self.process.ensure_running()?;
                let (code, _) = http_get(self.metrics_port, "/healthz").await?;
                if code != 200 {
                    bail!("/healthz answered {code}");
                }
                Ok(())
            },
        )
        .await
    }

    /// The Prometheus text from `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        self.process.ensure_running()?;
        let (code, body) = http_get(self.metrics_port, "/metrics").await?;
        if code != 200 {
            bail!("/metrics answered {code}");
        }
        Ok(body)
    }

    /// The sum of the samples of `name` whose labels contain every
    /// `key="value"` in `labels` (0 when there are none).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(metric_value(&text, name, labels).unwrap_or(0.0))
    }

    /// SIGKILL: no graceful Lease release.
    pub fn kill(&self) {
        self.process.kill();
    }

    /// SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&self) {
        self.process.stop(Duration::from_secs(15));
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

/// Sum of the samples of `name` matching `labels` in Prometheus text format
/// (`None` when there is no such sample).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, r)) => (m, r.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
            if !all {
                return None;
            }
            value.parse().ok()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
