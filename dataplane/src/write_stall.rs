//! Write stalls: back-pressure from real debt, never from the commit rate.
//!
//! Group commits land in the WAL tier, read from memory and flushed into L0
//! in bulk (docs/decisions/0008-wal-tier.md), so ordinary commits never
//! reach a file-count trigger. Two things do hurt, and each has a bound:
//! - **L0 files** (every point read consults each one whose range holds the
//!   key), as RocksDB's `level0_slowdown_writes_trigger` and
//!   `level0_stop_writes_trigger`: from `slowdown_files` on, the batcher
//!   spaces its flushes ([`WriteStall::flush_gap`], growing to
//!   [`MAX_FLUSH_GAP`] at twice the trigger) so batches grow; at
//!   `stop_files` a write waits;
//! - **WAL bytes** (what every index holds in memory): at `wal_stop_bytes`
//!   (the flush into L0 fell behind) a write waits.
//!
//! A waiting write waits at most `max_wait`, then fails RESOURCE_EXHAUSTED
//! ("retry with backoff"). The counts come from the metadata database
//! (polled), so they hold for any number of batchers and for compaction
//! running anywhere; the same poll tells the WAL flush when it is due.

use crate::batcher::WriteError;
use crate::meta::{DynMeta, TierCounts};
use crate::metrics::metrics;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the counts are read from the database.
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
    pub wal_stop_bytes: u64,
}

/// The WAL tier and L0 as last read from the database, shared by the write
/// stall and the WAL flush (which wakes on every change).
#[derive(Clone)]
pub struct TierWatch {
    counts: watch::Receiver<TierCounts>,
}

impl TierWatch {
    /// Polls `meta` every 250 ms until every `TierWatch` is dropped.
    pub fn start(meta: DynMeta) -> TierWatch {
        let (tx, rx) = watch::channel(TierCounts::default());
        tokio::spawn(async move {
            loop {
                match meta.tier_counts().await {
                    Ok(n) => {
                        tx.send_if_modified(|c| std::mem::replace(c, n) != n);
                    }
                    // Keep the last counts: the write path reports the database itself.
                    Err(e) => tracing::debug!(error = %e, "reading the WAL and L0 counts"),
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        });
        TierWatch { counts: rx }
    }

    pub fn get(&self) -> TierCounts {
        *self.counts.borrow()
    }

    /// Waits for the next change of the counts (or `timeout`).
    pub async fn changed(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.counts.changed()).await;
    }
}

#[derive(Clone)]
pub struct WriteStall {
    limits: StallLimits,
    max_wait: Duration,
    tiers: TierWatch,
}

impl WriteStall {
    /// `None` when every limit is 0.
    pub fn new(tiers: TierWatch, limits: StallLimits, max_wait: Duration) -> Option<WriteStall> {
        (limits != StallLimits::default()).then(|| WriteStall {
            limits,
            max_wait,
            tiers,
        })
    }

    /// The least time between the starts of two flushes now: zero below the
    /// slowdown trigger, then growing linearly to [`MAX_FLUSH_GAP`] at twice it.
    pub fn flush_gap(&self) -> Duration {
        flush_gap(self.limits.slowdown_files, self.tiers.get().l0_files)
    }

    /// Waits while L0 or the WAL tier is at or over its bound; fails after `max_wait`.
    pub async fn admit(&self) -> Result<(), WriteError> {
        let started = Instant::now();
        let mut counted = false;
        loop {
            let Some(cause) = over(&self.limits, &self.tiers.get()) else {
                return Ok(());
            };
            if !counted {
                metrics().batch_stalled.inc();
                counted = true;
            }
            if started.elapsed() >= self.max_wait {
                return Err(WriteError::Stalled(cause));
            }
            tokio::time::sleep(RECHECK).await;
        }
    }
}

/// What holds writes back, if anything.
fn over(limits: &StallLimits, counts: &TierCounts) -> Option<String> {
    if limits.stop_files > 0 && counts.l0_files >= limits.stop_files {
        return Some(format!(
            "L0 holds {} files (limit {}, --l0-stop-files) and compaction is behind",
            counts.l0_files, limits.stop_files
        ));
    }
    if limits.wal_stop_bytes > 0 && counts.wal_bytes >= limits.wal_stop_bytes {
        return Some(format!(
            "the WAL tier holds {} bytes not yet flushed into L0 (limit {}, --wal-stop-bytes)",
            counts.wal_bytes, limits.wal_stop_bytes
        ));
    }
    None
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

    #[test]
    fn writes_stop_at_either_bound_and_say_which() {
        let limits = StallLimits {
            slowdown_files: 20,
            stop_files: 36,
            wal_stop_bytes: 1000,
        };
        let counts = |l0_files, wal_bytes| TierCounts {
            wal_files: 1_000_000,
            wal_bytes,
            l0_files,
        };
        assert_eq!(
            over(&limits, &counts(35, 999)),
            None,
            "a million commits are no debt"
        );
        assert!(
            over(&limits, &counts(36, 0))
                .unwrap()
                .contains("--l0-stop-files")
        );
        assert!(
            over(&limits, &counts(0, 1000))
                .unwrap()
                .contains("--wal-stop-bytes")
        );
        assert_eq!(
            over(&StallLimits::default(), &counts(1000, 1 << 40)),
            None,
            "off"
        );
    }
}
