//! Write stalls: when compaction falls behind, writers slow down and then
//! wait instead of piling up L0 files without bound (every L0 file adds to
//! every point read's cost). As RocksDB's `level0_slowdown_writes_trigger` and
//! `level0_stop_writes_trigger`:
//! - from `slowdown_files` L0 files on, the batcher spaces its flushes
//!   ([`WriteStall::flush_gap`], growing to [`MAX_FLUSH_GAP`] at twice the
//!   trigger). Nothing fails: batches just grow, and each group commit adds
//!   one L0 file less often, which is what lets compaction catch up;
//! - at `stop_files` a write waits until compaction brings L0 below, at most
//!   `max_wait`, then fails RESOURCE_EXHAUSTED ("retry with backoff").
//!
//! The L0 count comes from the metadata database (polled), so it holds for
//! any number of batchers and for compaction running anywhere.

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
/// The longest gap between two flushes' starts while slowed down.
pub const MAX_FLUSH_GAP: Duration = Duration::from_millis(100);

/// When writers slow down and stop (0 = never).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StallLimits {
    pub slowdown_files: u64,
    pub stop_files: u64,
}

#[derive(Clone, Debug)]
pub struct WriteStall {
    limits: StallLimits,
    max_wait: Duration,
    l0_files: Arc<AtomicU64>,
}

impl WriteStall {
    /// Starts polling `meta` for the L0 count; `None` when both limits are 0.
    pub fn start(meta: DynMeta, limits: StallLimits, max_wait: Duration) -> Option<WriteStall> {
        if limits == StallLimits::default() {
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
            limits,
            max_wait,
            l0_files,
        })
    }

    /// The least time between the starts of two flushes now: zero below the
    /// slowdown trigger, then growing linearly to [`MAX_FLUSH_GAP`] at twice it.
    pub fn flush_gap(&self) -> Duration {
        flush_gap(
            self.limits.slowdown_files,
            self.l0_files.load(Ordering::Relaxed),
        )
    }

    /// Waits while L0 is at or over its bound; fails after `max_wait`.
    pub async fn admit(&self) -> Result<(), WriteError> {
        let started = Instant::now();
        let mut counted = false;
        let stop = self.limits.stop_files;
        loop {
            let l0 = self.l0_files.load(Ordering::Relaxed);
            if stop == 0 || l0 < stop {
                return Ok(());
            }
            if !counted {
                metrics().batch_stalled.inc();
                counted = true;
            }
            if started.elapsed() >= self.max_wait {
                return Err(WriteError::Stalled {
                    l0_files: l0,
                    limit: stop,
                });
            }
            tokio::time::sleep(RECHECK).await;
        }
    }
}

fn flush_gap(slowdown_files: u64, l0_files: u64) -> Duration {
    if slowdown_files == 0 || l0_files < slowdown_files {
        return Duration::ZERO;
    }
    let over = (l0_files - slowdown_files + 1).min(slowdown_files);
    MAX_FLUSH_GAP.mul_f64(over as f64 / slowdown_files as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_space_out_from_the_slowdown_trigger_up_to_the_max_gap() {
        assert_eq!(flush_gap(0, 1_000), Duration::ZERO, "off");
        assert_eq!(flush_gap(32, 31), Duration::ZERO);
        assert!(flush_gap(32, 32) > Duration::ZERO);
        assert!(flush_gap(32, 40) < flush_gap(32, 50));
        assert_eq!(flush_gap(32, 63), MAX_FLUSH_GAP);
        assert_eq!(flush_gap(32, 10_000), MAX_FLUSH_GAP);
    }
}
