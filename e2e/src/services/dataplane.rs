//! A data plane made of real `skyvault` role processes on a real PostgreSQL
//! and S3 server: what the multi-process tests start.

use super::{PostgresServer, S3Server, skyvault_binary};
use crate::process::{ManagedProcess, free_port, http_get, https_get};
use crate::wait_for;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tonic::transport::Channel;

/// The backing services, plus a directory for the roles' logs.
pub struct Deps {
    pub pg: PostgresServer,
    pub s3: S3Server,
    dir: tempfile::TempDir,
}

/// One `skyvault <role>` process and its listeners.
pub struct RoleProcess {
    pub process: ManagedProcess,
    pub grpc: String,
    pub http: String,
    /// The CA verifying the HTTP listener when the role serves TLS (its
    /// `SKYVAULT_TLS_CA_FILE`: the tests' roles share one CA).
    pub https_ca: Option<PathBuf>,
}

impl Deps {
    pub fn start() -> Deps {
        Self::start_with(PostgresServer::start().unwrap())
    }

    /// With a PostgreSQL server started by the caller (e.g. with TLS).
    pub fn start_with(pg: PostgresServer) -> Deps {
        let s3 = S3Server::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        Deps { pg, s3, dir }
    }

    /// `skyvault ARGS` configured for these services.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(skyvault_binary().unwrap());
        cmd.args(args)
            .env("SKYVAULT_METADATA_URL", self.pg.url())
            .env("SKYVAULT_OBJECT_STORE_URL", self.s3.url("data"))
            .env("RUST_LOG", "info");
        for (k, v) in self.s3.env() {
            cmd.env(k, v);
        }
        cmd
    }

    /// A directory for the test's own files (certificates, tokens), removed with `self`.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn migrate(&self) {
        let out = self.command(&["migrate"]).output().unwrap();
        assert!(
            out.status.success(),
            "skyvault migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("migrated"));
    }

    /// Starts `skyvault ROLE` on free ports with extra environment `env`.
    pub fn spawn(&self, role: &str, name: &str, env: &[(&str, &str)]) -> RoleProcess {
        let grpc = format!("127.0.0.1:{}", free_port().unwrap());
        let http = format!("127.0.0.1:{}", free_port().unwrap());
        let mut cmd = self.command(&[role]);
        cmd.env("SKYVAULT_GRPC_ADDR", &grpc)
            .env("SKYVAULT_HTTP_ADDR", &http)
            .env("SKYVAULT_BATCH_MAX_AGE_MS", "2")
            .envs(env.iter().copied());
        let log = self.dir.path().join(format!("{name}.log"));
        let var = |k: &str| env.iter().find(|(name, _)| *name == k).map(|(_, v)| *v);
        let https_ca = var("SKYVAULT_TLS_CERT_FILE")
            .and(var("SKYVAULT_TLS_CA_FILE"))
            .map(PathBuf::from);
        RoleProcess {
            process: ManagedProcess::spawn(name, cmd, &log).unwrap(),
            grpc,
            http,
            https_ca,
        }
    }
}

impl RoleProcess {
    /// Waits until `/readyz` answers 200 (the process must stay up meanwhile).
    pub async fn ready(&self) {
        wait_for(
            &format!("{} /readyz", self.process.name()),
            Duration::from_secs(60),
            || async {
                self.process.ensure_running()?;
                match self.get("/readyz").await?.0 {
                    200 => Ok(()),
                    s => anyhow::bail!("HTTP {s}"),
                }
            },
        )
        .await
        .unwrap();
    }

    /// `GET path` on the HTTP listener, over TLS when the role serves it.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let port = self.http.rsplit_once(':').unwrap().1.parse()?;
        match &self.https_ca {
            Some(ca) => https_get(port, path, ca).await,
            None => http_get(port, path).await,
        }
    }

    pub async fn channel(&self) -> Channel {
        skyvault::cli::connect(&self.grpc).await.unwrap()
    }

    /// Waits (30 s at most) until this index has applied every flush of the
    /// WAL tier: its in-memory tier is empty, so reads go to files.
    pub async fn wait_wal_tier_drained(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.metric("skyvault_index_memtable_keys", "").await > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{}: the WAL tier was never drained",
                self.process.name()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Sum of every sample of `metric` whose labels contain `labels`
    /// (e.g. `peer="127.0.0.1:1234"`; empty matches all).
    pub async fn metric(&self, metric: &str, labels: &str) -> u64 {
        let (code, body) = self.get("/metrics").await.unwrap();
        assert_eq!(code, 200, "{} /metrics", self.process.name());
        body.lines()
            .filter(|l| {
                l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} "))
            })
            .filter(|l| l.contains(labels))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap() as u64)
            .sum()
    }
}
