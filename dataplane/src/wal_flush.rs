//! The WAL tier's flush (docs/decisions/0008-wal-tier.md): every batcher
//! process (and `skyvault standalone`) watches the WAL tier's size and,
//! once it is due, merges its oldest group commits into one L0 file.
//!
//! It runs where writes are accepted, not as a Kubernetes Job: the flush is
//! part of the write path (a tier that is never flushed stops writes at
//! `--wal-stop-bytes`), so it must run whenever batchers run and never wait
//! on the operator's holds. Several batchers may try at once; the job's
//! claim on the WAL sequences lets one of them do it and the others find the
//! inputs claimed. Each flush is an ordinary job (`compaction::flush`):
//! claimed, merged by streaming, swapped in one transaction, so a crash at
//! any step leaves either the WAL files or the L0 file, never neither.

use crate::compaction::{self, CompactionConfig, FlushLimits, Outcome};
use crate::meta::DynMeta;
use crate::objstore::DynStore;
use crate::sstable::WriterOptions;
use crate::write_stall::TierWatch;
use std::time::Duration;

/// Default [`FlushLimits`]: flush at 64 MiB or 2,048 commits (RocksDB's and
/// SlateDB's default memtable size; an index restart reads at most a few
/// thousand small objects back), at most 128 MiB or 4,096 files per job.
pub const DEFAULT_LIMITS: FlushLimits = FlushLimits {
    flush_bytes: 64 << 20,
    flush_files: 2048,
    max_files: 4096,
    max_bytes: 128 << 20,
};

#[derive(Clone, Debug)]
pub struct WalFlushConfig {
    pub limits: FlushLimits,
    /// L0 files are cut at about this size (as compaction outputs).
    pub target_file_bytes: u64,
    pub writer: WriterOptions,
}

impl Default for WalFlushConfig {
    fn default() -> Self {
        WalFlushConfig {
            limits: DEFAULT_LIMITS,
            target_file_bytes: CompactionConfig::default().target_file_bytes,
            writer: WriterOptions::default(),
        }
    }
}

/// Longest pause after a failed flush.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Flushes whenever the WAL tier is due, while `alive()`.
pub async fn run(
    store: DynStore,
    meta: DynMeta,
    mut tiers: TierWatch,
    config: WalFlushConfig,
    alive: impl Fn() -> bool,
) {
    let compaction = CompactionConfig {
        target_file_bytes: config.target_file_bytes,
        writer: config.writer.clone(),
        ..Default::default()
    };
    let mut backoff = Duration::from_secs(1);
    while alive() {
        let counts = tiers.get();
        if config.limits.due(counts.wal_files, counts.wal_bytes) {
            match compaction::flush(&store, &meta, &compaction, &config.limits, false).await {
                Ok(s) if s.outcome == Outcome::Compacted => {
                    tracing::info!(
                        inputs = s.inputs.len(),
                        outputs = s.outputs.len(),
                        bytes_in = s.bytes_in,
                        bytes_out = s.bytes_out,
                        duration_ms = s.duration_ms,
                        "flushed the WAL tier into L0"
                    );
                    backoff = Duration::from_secs(1);
                    // The counts lag the database: look again at once (the
                    // job reads the manifest itself, and finds nothing if
                    // nothing is due).
                    continue;
                }
                // Nothing due on a fresh look, or another batcher holds it.
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "flushing the WAL tier failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tiers.changed(Duration::from_secs(1)).await;
    }
}
