//! `skyvault lsm-sim`'s flags and what is wrong with them together.

use super::keys::{KeyDist, parse_key_dist};
use super::model::EntrySize;
use crate::batcher::{DEFAULT_L0_STOP_FILES, DEFAULT_WAL_STOP_BYTES};
use crate::byte_size::Bytes;
use crate::compaction::{CompactionArgs, CompactionConfig, FlushLimits};
use std::path::PathBuf;

/// One compaction job's read + write rate: `e2e/bench-compaction.sh` read
/// 4,184 MiB and wrote 4,224 MiB in 22.4 s (docs/benchmarks.md, "Peak memory
/// of one compaction job").
pub const DEFAULT_JOB_BYTES_PER_SEC: u64 = 375 << 20;

#[derive(clap::Args, Clone, Debug)]
pub struct SimArgs {
    /// Live data the key space holds: keys = this ÷ (key + value size).
    /// Exclusive with --key-count.
    #[arg(long, value_parser = Bytes::range(1 << 20..=1 << 50))]
    pub data_bytes: Option<u64>,
    /// Distinct keys in the key space (instead of --data-bytes).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 44))]
    pub key_count: Option<u64>,
    /// Logical bytes written (default: twice the key space's bytes, so about
    /// half the writes overwrite with uniform keys).
    #[arg(long, value_parser = Bytes::range(1 << 20..=1 << 52))]
    pub write_bytes: Option<u64>,
    /// uniform, zipf (exponent 0.99), zipf:S or sequential.
    #[arg(long, default_value = "uniform", value_parser = parse_key_dist)]
    pub keys: KeyDist,
    #[arg(long, default_value = "16", value_parser = Bytes::range(1..=4096))]
    pub key_size: u64,
    #[arg(long, default_value = "4KiB", value_parser = Bytes::range(0..=1 << 20))]
    pub value_size: u64,
    /// Fraction of writes that are deletes (tombstones).
    #[arg(long, default_value_t = 0.0)]
    pub deletes: f64,
    /// Logical bytes written per second; without it the writer writes as
    /// fast as back-pressure lets it (the rate the job slots sustain).
    #[arg(long, value_parser = Bytes::range(1..=1 << 40))]
    pub write_rate: Option<u64>,
    /// Bytes of one group commit (one WAL-tier file).
    #[arg(long, default_value = "2MiB", value_parser = Bytes::range(4096..=1 << 30))]
    pub commit_bytes: u64,
    /// Concurrent compaction jobs (the operator's maxConcurrentJobs, or
    /// standalone's workers). The WAL flush runs beside them.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub job_slots: u64,
    /// Bytes a job reads plus writes per second.
    #[arg(long, default_value_t = DEFAULT_JOB_BYTES_PER_SEC, value_parser = Bytes::range(1 << 20..=1 << 40))]
    pub job_bytes_per_sec: u64,
    /// Seconds every job spends before it reads (a Kubernetes Job's start).
    #[arg(long, default_value_t = 0.0)]
    pub job_start_secs: f64,
    /// Who starts jobs: `operator` (as many as its `wanted_jobs` asks for,
    /// up to --job-slots) or `standalone` (every free slot whenever anything is due).
    #[arg(long, value_enum, default_value_t = Scheduler::Operator)]
    pub scheduler: Scheduler,
    /// After a job that found nothing to run, no job starts for this long
    /// (default: the operator's IDLE_HOLD, 30 s; standalone's workers wait 1 s).
    #[arg(long)]
    pub idle_hold_secs: Option<f64>,
    /// Writes wait while L0 holds this many files (--l0-stop-files).
    #[arg(long, default_value_t = DEFAULT_L0_STOP_FILES, value_parser = clap::value_parser!(u64).range(1..))]
    pub l0_stop_files: u64,
    /// Writes wait while the WAL tier holds this many bytes (--wal-stop-bytes).
    #[arg(long, default_value_t = DEFAULT_WAL_STOP_BYTES, value_parser = Bytes::range(1 << 20..=1 << 40))]
    pub wal_stop_bytes: u64,
    #[command(flatten)]
    pub compaction: CompactionArgs,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the debt over time to this CSV file (one row per --sample-secs).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Plot the debt over time into this PNG file (L0 files blue, pending
    /// bytes red, space amplification green; each on its own scale).
    #[arg(long)]
    pub png: Option<PathBuf>,
    #[arg(long, default_value_t = 60.0)]
    pub sample_secs: f64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheduler {
    Operator,
    Standalone,
}

/// Everything a run needs, checked.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub keys: KeyDist,
    pub key_count: f64,
    pub write_bytes: f64,
    pub size: EntrySize,
    pub deletes: f64,
    pub write_rate: Option<f64>,
    pub commit_bytes: f64,
    pub job_slots: usize,
    pub job_bytes_per_sec: f64,
    pub job_start_secs: f64,
    pub scheduler: Scheduler,
    pub idle_hold_secs: f64,
    pub l0_stop_files: u64,
    pub wal_stop_bytes: u64,
    pub compaction: CompactionConfig,
    pub flush: FlushLimits,
    pub sample_secs: f64,
}

impl SimArgs {
    /// The run's configuration, or which flags do not go together.
    pub fn config(&self) -> Result<SimConfig, String> {
        let entry = self.key_size + self.value_size;
        let key_count = match (self.data_bytes, self.key_count) {
            (Some(_), Some(_)) => {
                return Err("--data-bytes and --key-count both set the key space: give one".into());
            }
            (None, None) => {
                return Err("give the key space: --data-bytes (e.g. 1TiB) or --key-count".into());
            }
            (Some(b), None) => b / entry,
            (None, Some(n)) => n,
        };
        if key_count == 0 {
            return Err(format!(
                "--data-bytes is smaller than one entry (--key-size + --value-size = {entry} bytes)"
            ));
        }
        if !(0.0..1.0).contains(&self.deletes) {
            return Err(format!(
                "--deletes ({}) must be a fraction in [0, 1)",
                self.deletes
            ));
        }
        let idle_hold_secs = self.idle_hold_secs.unwrap_or(match self.scheduler {
            Scheduler::Operator => 30.0,
            Scheduler::Standalone => 1.0,
        });
        for (flag, v) in [
            ("--job-start-secs", self.job_start_secs),
            ("--idle-hold-secs", idle_hold_secs),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{flag} ({v}) must be a number of seconds >= 0"));
            }
        }
        if !(self.sample_secs.is_finite() && self.sample_secs > 0.0) {
            return Err(format!("--sample-secs ({}) must be > 0", self.sample_secs));
        }
        if self.commit_bytes < entry {
            return Err(format!(
                "--commit-bytes ({}) must hold one entry (--key-size + --value-size = {entry} bytes)",
                self.commit_bytes
            ));
        }
        let compaction = self.compaction.config()?;
        Ok(SimConfig {
            keys: self.keys,
            key_count: key_count as f64,
            write_bytes: self
                .write_bytes
                .map_or(2.0 * (key_count * entry) as f64, |b| b as f64),
            size: EntrySize {
                key: self.key_size,
                value: self.value_size,
            },
            deletes: self.deletes,
            write_rate: self.write_rate.map(|r| r as f64),
            commit_bytes: self.commit_bytes as f64,
            job_slots: self.job_slots as usize,
            job_bytes_per_sec: self.job_bytes_per_sec as f64,
            job_start_secs: self.job_start_secs,
            scheduler: self.scheduler,
            idle_hold_secs,
            l0_stop_files: self.l0_stop_files,
            wal_stop_bytes: self.wal_stop_bytes,
            flush: crate::wal_flush::DEFAULT_LIMITS,
            compaction,
            sample_secs: self.sample_secs,
        })
    }
}
