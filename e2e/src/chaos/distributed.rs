//! The distributed data plane on a real PostgreSQL and S3 server: a batcher,
//! a cache replica and an index reading through it, each its own process on a
//! fixed address; compaction and purge jobs (`skyvault compact` / `purge`)
//! with object-store faults injected. Faults: `kill -9` of a role (restarted
//! at once), a job killed at a random moment (one in three with a PostgreSQL
//! outage while it runs), a PostgreSQL outage.

use super::{Rng, Summary, Target};
use crate::process::{ManagedProcess, free_port};
use crate::services::dataplane::Deps;
use crate::services::http_get_status;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Probability of an object-store fault per request in the jobs.
const JOB_FAULT_RATE: &str = "0.02";
const ROLES: [&str; 3] = ["batcher", "cache", "index"];
/// Group commits per WAL flush in the campaign (production: 2,048).
pub const CHAOS_WAL_FLUSH_FILES: &str = "8";

struct Role {
    name: &'static str,
    grpc: String,
    http: String,
    process: Option<ManagedProcess>,
}

pub struct Distributed {
    deps: Deps,
    root: PathBuf,
    roles: Vec<Role>,
    jobs: u64,
}

impl Distributed {
    pub fn start(bin_dir: &Path, root: &Path) -> Result<Distributed> {
        std::fs::create_dir_all(root)?;
        // The roles run `skyvault_binary()`: the caller points SKYVAULT_BIN
        // at `bin_dir` when it is not the test executable's own.
        let _ = bin_dir;
        let deps = Deps::start();
        deps.migrate();
        let mut roles = Vec::new();
        for name in ROLES {
            roles.push(Role {
                name,
                grpc: format!("127.0.0.1:{}", free_port()?),
                http: format!("127.0.0.1:{}", free_port()?),
                process: None,
            });
        }
        let mut target = Distributed {
            deps,
            root: root.to_path_buf(),
            roles,
            jobs: 0,
        };
        for i in 0..target.roles.len() {
            target.spawn(i)?;
        }
        Ok(target)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let cache = self.roles[1].grpc.clone();
        let role = &mut self.roles[i];
        let mut cmd = self.deps.command(&[role.name]);
        cmd.env("SKYVAULT_GRPC_ADDR", &role.grpc)
            .env("SKYVAULT_HTTP_ADDR", &role.http)
            .env("SKYVAULT_BATCH_MAX_AGE_MS", "2")
            // The WAL tier flushes every few commits, so kills land in flushes.
            .env("SKYVAULT_WAL_FLUSH_FILES", CHAOS_WAL_FLUSH_FILES);
        if role.name == "index" {
            cmd.env("SKYVAULT_CACHE_PEERS", &cache);
        }
        let log = self.root.join(format!("{}.log", role.name));
        role.process = Some(ManagedProcess::spawn(role.name, cmd, &log)?);
        Ok(())
    }

    /// Runs a job with faults injected and kills it after `after` unless it
    /// finished first. With `db_outage`, PostgreSQL is down for that stretch
    /// in the middle of the job. Says whether the job was killed and whether
    /// the outage happened.
    async fn job(
        &mut self,
        args: &[&str],
        after: Duration,
        db_outage: Option<Duration>,
    ) -> Result<(bool, bool)> {
        self.jobs += 1;
        let mut cmd = self.deps.command(args);
        cmd.env(skyvault::objstore::FAULTS_ENV, JOB_FAULT_RATE);
        let log = self.root.join(format!("job-{}-{}.log", args[0], self.jobs));
        let job = ManagedProcess::spawn(args[0], cmd, &log)?;
        let started = std::time::Instant::now();
        let mut outage = db_outage.map(|d| (started + after / 3, d));
        let killed = loop {
            if job.exit_status().is_some() {
                break false;
            }
            if started.elapsed() >= after {
                job.kill();
                break true;
            }
            if let Some((at, length)) = outage
                && std::time::Instant::now() >= at
            {
                self.deps.pg.stop();
                tokio::time::sleep(length).await;
                self.deps.pg.restart().context("restarting PostgreSQL")?;
                outage = None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // An outage still pending when the job ended did not happen.
        Ok((killed, db_outage.is_some() && outage.is_none()))
    }
}

impl Target for Distributed {
    fn batcher(&self) -> String {
        self.roles[0].grpc.clone()
    }

    fn index(&self) -> String {
        self.roles[2].grpc.clone()
    }

    async fn strike(&mut self, rng: &mut Rng, summary: &mut Summary) -> Result<()> {
        match rng.next_u64() % 10 {
            // kill -9 of a role, restarted at once on its address.
            n @ 0..=4 => {
                let i = (n % 3) as usize;
                if let Some(process) = self.roles[i].process.take() {
                    process.kill();
                }
                self.spawn(i)?;
                summary.kills += 1;
            }
            n @ 5..=8 => {
                let args: &[&str] = if n <= 6 {
                    &["compact"]
                } else {
                    &["purge", "--grace-secs", "60"]
                };
                let after = Duration::from_millis(rng.between(50, 3000));
                // One job in three loses its database for a while.
                let outage = rng
                    .next_u64()
                    .is_multiple_of(3)
                    .then(|| Duration::from_millis(rng.between(200, 1500)));
                let (killed, outage) = self.job(args, after, outage).await?;
                summary.db_outages += outage as u64;
                if killed {
                    summary.job_kills += 1;
                    summary.kills += 1;
                }
            }
            _ => {
                self.deps.pg.stop();
                tokio::time::sleep(Duration::from_millis(rng.between(200, 3000))).await;
                self.deps.pg.restart().context("restarting PostgreSQL")?;
                summary.db_outages += 1;
            }
        }
        Ok(())
    }

    async fn settle(&mut self) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        for role in &self.roles {
            loop {
                let process = role.process.as_ref().context("role not started")?;
                process.ensure_running()?;
                if http_get_status(&role.http, "/readyz").ok() == Some(200) {
                    break;
                }
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "{} not ready after 120 s; log:\n{}",
                    role.name,
                    process.log_tail(30)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }
}
