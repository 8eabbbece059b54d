//! `skyvault standalone` whose data directory (SQLite metadata and the local
//! object store) is a lazyfs mount: faults are `kill -9` (the page cache
//! survives) and power loss (it does not: every write not fsynced is gone).

use super::{Rng, Summary, Target};
use crate::process::{ManagedProcess, free_port};
use crate::services::http_get_status;
use anyhow::{Context, Result};
use skyvault_lazyfs::Mount;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct Standalone {
    skyvault: PathBuf,
    mount: Mount,
    grpc: String,
    http: String,
    log: PathBuf,
    process: Option<ManagedProcess>,
}

impl Standalone {
    pub fn start(bin_dir: &Path, root: &Path) -> Result<Standalone> {
        std::fs::create_dir_all(root)?;
        let mount = Mount::start(
            &bin_dir.join("skyvault-lazyfs"),
            &root.join("backing"),
            &root.join("data"),
        )
        .context("mounting lazyfs (needs root and /dev/fuse)")?;
        let mut target = Standalone {
            skyvault: bin_dir.join("skyvault"),
            mount,
            grpc: format!("127.0.0.1:{}", free_port()?),
            http: format!("127.0.0.1:{}", free_port()?),
            log: root.join("standalone.log"),
            process: None,
        };
        target.spawn()?;
        Ok(target)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.skyvault);
        cmd.arg("standalone")
            .arg("--data-dir")
            .arg(&self.mount.mountpoint)
            .args(["--grpc-addr", &self.grpc, "--http-addr", &self.http])
            // Compaction and purge run all the time, so kills land in them too.
            .args([
                "--maintenance-interval-secs",
                "1",
                "--purge-grace-secs",
                "60",
            ])
            .env("SKYVAULT_BATCH_MAX_AGE_MS", "2")
            // The WAL tier flushes every few commits, so kills land in flushes.
            .env(
                "SKYVAULT_WAL_FLUSH_FILES",
                super::distributed::CHAOS_WAL_FLUSH_FILES,
            )
            .env("RUST_LOG", "info");
        self.process = Some(ManagedProcess::spawn("standalone", cmd, &self.log)?);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }
}

impl Target for Standalone {
    fn batcher(&self) -> String {
        self.grpc.clone()
    }

    fn index(&self) -> String {
        self.grpc.clone()
    }

    async fn strike(&mut self, rng: &mut Rng, summary: &mut Summary) -> Result<()> {
        self.kill();
        if rng.next_u64().is_multiple_of(2) {
            summary.kills += 1;
        } else {
            // The machine loses power: the process and every unsynced write.
            self.mount.restart().context("lazyfs power loss")?;
            summary.power_losses += 1;
        }
        self.spawn()
    }

    async fn settle(&mut self) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let process = self.process.as_ref().context("standalone not started")?;
            process.ensure_running()?;
            if http_get_status(&self.http, "/readyz").ok() == Some(200) {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "standalone not ready after 120 s; log:\n{}",
                process.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
