//! Write stalls: when compaction falls behind, writers wait instead of piling
//! up L0 files without bound (every L0 file adds to every point read's cost).
//! As RocksDB's `level0_stop_writes_trigger`: once L0 holds `stop_files`
//! files, a write waits until compaction brings it below, at most `max_wait`,
//! then fails RESOURCE_EXHAUSTED ("retry with backoff"). The L0 count comes
//! from the metadata database (polled), so it holds for any number of
//! batchers and for compaction running anywhere.

use crate::batcher::WriteError;
use crate::meta::DynMeta;
use crate::metrics::metrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the L0 count is read from the database.
const POLL: Duration = Duration::from_millis(250);
/// How often a stalled write looks again.
const RECHECK: Duration = Duration::from_millis(20);

#[derive(Clone, Debug)]
pub struct WriteStall {
    stop_files: u64,
    max_wait: Duration,
    l0_files: Arc<AtomicU64>,
}

impl WriteStall {
    /// Starts polling `meta` for the L0 count; `stop_files = 0` disables stalls.
    pub fn start(meta: DynMeta, stop_files: u64, max_wait: Duration) -> Option<WriteStall> {
        if stop_files == 0 {
            return None;
        }
        let l0_files = Arc::new(AtomicU64::new(0));
        let weak = Arc::downgrade(&l0_files);
        tokio::spawn(async move {
            loop {
                let Some(l0) = weak.upgrade() else { return };
                match meta.l0_file_count().await {
                    Ok(n) => l0.store(n, Ordering::Relaxed),
                    // Keep the last count: the write path reports the database itself.
                    Err(e) => tracing::debug!(error = %e, "reading the L0 file count"),
                }
                drop(l0);
                tokio::time::sleep(POLL).await;
            }
        });
        Some(WriteStall {
            stop_files,
            max_wait,
            l0_files,
        })
    }

    /// Waits while L0 is at or over its bound; fails after `max_wait`.
    pub async fn admit(&self) -> Result<(), WriteError> {
        let started = Instant::now();
        let mut counted = false;
        loop {
            let l0 = self.l0_files.load(Ordering::Relaxed);
            if l0 < self.stop_files {
                return Ok(());
            }
            if !counted {
                metrics().batch_stalled.inc();
                counted = true;
            }
            if started.elapsed() >= self.max_wait {
                return Err(WriteError::Stalled {
                    l0_files: l0,
                    limit: self.stop_files,
                });
            }
            tokio::time::sleep(RECHECK).await;
        }
    }
}
