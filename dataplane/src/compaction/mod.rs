//! Compaction: one bounded job per call, in four separate pieces:
//!
//! 1. **pick** (`picker`): from the levels and their scores (`crate::lsm`),
//!    candidate pieces of work — oldest L0 files into the base level, one Li
//!    file into Li+1, or a trivial move — each with a byte bound that does not
//!    depend on the dataset's size;
//! 2. **claim** (`claim`): the first candidate whose key ranges no running
//!    job holds is claimed in the metadata database and renewed while the job
//!    runs; the pick is then re-checked on a fresh snapshot;
//! 3. **merge** (`merge`, `input`, `output`): inputs streamed block by block,
//!    outputs cut at the target size and uploaded as they complete;
//! 4. **install**: inputs swapped for outputs (or files moved) in one
//!    metadata transaction that also checks and drops the claim.
//!
//! Invariant 6 (no read changes): see `merge` for which entries may be
//! dropped and docs/decisions/0003-level-layout-and-claims.md for why the
//! newest-first read order (L0 by sequence, then L1, L2, ...) holds across
//! jobs.

mod args;
mod claim;
mod deletion;
mod input;
mod merge;
mod output;
pub mod picker;

use crate::cache::ReadError;
use crate::lsm::{Levels, LsmConfig};
use crate::meta::{ClaimRange, DynMeta, MetaError, Swap};
use crate::metrics::metrics;
use crate::objstore::{DynStore, StoreError};
use crate::sstable::{FormatError, WriterOptions};
use claim::Claim;
pub use picker::FlushLimits;
use picker::{Pick, PickKind, PickLimits};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use args::{CompactionArgs, LsmArgs};
pub use input::CHUNK_BYTES;
pub use output::{job_of_output, output_name};

#[derive(Clone, Debug)]
pub struct CompactionConfig {
    pub lsm: LsmConfig,
    /// Outputs are cut once they reach about this size.
    pub target_file_bytes: u64,
    /// Input bytes per job (at least one file is always taken).
    pub max_input_bytes: u64,
    /// L0 files per job.
    pub max_l0_files: usize,
    /// L0 files smaller than this are merged among themselves (intra-L0)
    /// while the base level is much larger than L0 (default: a quarter of
    /// `target_file_bytes`).
    pub small_l0_bytes: Option<u64>,
    /// How long a claim lasts without renewal (renewed every third of it).
    pub claim_ttl: Duration,
    pub dry_run: bool,
    pub writer: WriterOptions,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            lsm: LsmConfig::default(),
            target_file_bytes: 64 << 20,
            max_input_bytes: 1 << 30,
            max_l0_files: 256,
            small_l0_bytes: None,
            claim_ttl: Duration::from_secs(60),
            dry_run: false,
            writer: WriterOptions::default(),
        }
    }
}

impl CompactionConfig {
    /// The picker's bounds of one job (`skyvault lsm-sim` drives the picker with them too).
    pub fn limits(&self) -> PickLimits {
        PickLimits {
            max_input_bytes: self.max_input_bytes,
            max_l0_files: self.max_l0_files,
            small_l0_bytes: self.small_l0_bytes.unwrap_or(self.target_file_bytes / 4),
            min_intra_l0_files: self.lsm.l0_trigger_files as usize,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("input {object:?} is corrupt: {source}")]
    Corrupt {
        object: String,
        #[source]
        source: FormatError,
    },
    #[error("input {object:?} is unreadable: {message}")]
    Unreadable { object: String, message: String },
    #[error("the job's claim on its inputs lapsed; nothing was swapped")]
    ClaimLost,
    #[error("a compaction task failed: {0}")]
    Task(String),
}

impl CompactionError {
    fn read(object: &str, e: ReadError) -> Self {
        match e {
            ReadError::Store(e) => CompactionError::Store(e),
            ReadError::Corrupt { object, source } => CompactionError::Corrupt { object, source },
            other => CompactionError::Unreadable {
                object: object.into(),
                message: other.to_string(),
            },
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Inputs merged into new files and swapped in.
    Compacted,
    /// Files moved down a level without a rewrite.
    TrivialMove,
    /// No level is due.
    #[default]
    NothingToDo,
    /// Work is due, but other running jobs hold every candidate's inputs.
    InputsClaimed,
    DryRun,
}

impl Outcome {
    /// `skyvault compact`'s exit status: 0 did work, 3 nothing to do, 4 inputs
    /// held by other jobs (1 is an error; see docs/operations.md).
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Compacted | Outcome::TrivialMove | Outcome::DryRun => 0,
            Outcome::NothingToDo => 3,
            Outcome::InputsClaimed => 4,
        }
    }
}

/// What one job did; printed as JSON by `skyvault compact`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CompactionSummary {
    pub outcome: Outcome,
    pub job: String,
    pub level_in: Option<u32>,
    pub level_out: Option<u32>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Bytes read (0 for a trivial move).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Bytes read per input level.
    pub bytes_in_by_level: BTreeMap<u32, u64>,
    /// Bytes of files moved without a rewrite.
    pub bytes_moved: u64,
    pub entries_in: u64,
    pub entries_out: u64,
    /// Overwritten values and tombstones that no longer need to exist.
    pub entries_dropped: u64,
    pub tombstones_dropped: u64,
    pub duration_ms: u64,
    /// The process's peak resident memory (VmHWM) when the job ended.
    pub peak_rss_bytes: u64,
}

/// Runs one bounded compaction job (see the module docs).
pub async fn compact(
    store: &DynStore,
    meta: &DynMeta,
    config: &CompactionConfig,
) -> Result<CompactionSummary, CompactionError> {
    let limits = config.limits();
    let pick = |levels: &Levels, held: &[ClaimRange]| {
        picker::candidates(levels, &config.lsm, &limits, held)
    };
    job(store, meta, config, "compaction", &pick).await
}

/// Runs one flush of the WAL tier into L0 if it is due (or `force`), as a
/// job like any other: claimed, merged, swapped in one transaction
/// (docs/decisions/0008-wal-tier.md).
pub async fn flush(
    store: &DynStore,
    meta: &DynMeta,
    config: &CompactionConfig,
    limits: &FlushLimits,
    force: bool,
) -> Result<CompactionSummary, CompactionError> {
    let pick = |levels: &Levels, held: &[ClaimRange]| {
        picker::flush_pick(levels, limits, held, force)
            .into_iter()
            .collect()
    };
    job(store, meta, config, "flush", &pick).await
}

/// The candidates a job may run, best first, given the live claims.
type Picker<'a> = dyn Fn(&Levels, &[ClaimRange]) -> Vec<Pick> + Send + Sync + 'a;

async fn job(
    store: &DynStore,
    meta: &DynMeta,
    config: &CompactionConfig,
    kind: &str,
    pick: &Picker<'_>,
) -> Result<CompactionSummary, CompactionError> {
    let started = Instant::now();
    let job = format!("{:016x}", rand::random::<u64>());
    let result = run(store, meta, config, &job, pick).await;
    let m = metrics();
    let label = match &result {
        Ok(s) if matches!(s.outcome, Outcome::Compacted | Outcome::TrivialMove) => "ok",
        Ok(_) => "idle",
        Err(_) => "error",
    };
    m.jobs.with_label_values(&[kind, label]).inc();
    let mut summary = result?;
    summary.job = job;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    summary.peak_rss_bytes = peak_rss_bytes();
    // Only work that was done counts (a claimed or dry-run pick reports what it would read).
    if label == "ok" {
        m.job_bytes
            .with_label_values(&[kind, "read"])
            .inc_by(summary.bytes_in);
        m.job_bytes
            .with_label_values(&[kind, "written"])
            .inc_by(summary.bytes_out);
    }
    m.job_duration
        .with_label_values(&[kind])
        .observe(started.elapsed().as_secs_f64());
    Ok(summary)
}

/// Attempts at claiming a pick that still holds on a fresh snapshot.
const ATTEMPTS: usize = 3;

async fn run(
    store: &DynStore,
    meta: &DynMeta,
    config: &CompactionConfig,
    job: &str,
    pick: &Picker<'_>,
) -> Result<CompactionSummary, CompactionError> {
    let mut claimed = CompactionSummary {
        outcome: Outcome::InputsClaimed,
        ..Default::default()
    };
    for _ in 0..ATTEMPTS {
        let levels = Levels::new(meta.live_files().await?);
        let unhindered = pick(&levels, &[]);
        let Some(first) = unhindered.first() else {
            return Ok(CompactionSummary::default());
        };
        if config.dry_run {
            return Ok(planned(first, Outcome::DryRun));
        }
        // Around the ranges running jobs hold (L0 picks differ; the claim
        // below still decides).
        let held = meta.live_claims().await?;
        let picks = pick(&levels, &held);
        let Some((pick, claim)) = claim_first(meta, job, &picks, config.claim_ttl).await? else {
            // A job that started beside us took them: look again knowing its claims.
            claimed = planned(first, Outcome::InputsClaimed);
            continue;
        };
        // Nobody else can change our ranges now; re-check against the manifest as it is.
        let fresh = Levels::new(meta.live_files().await?);
        match pick.refreshed(&fresh) {
            Some(now) if now.ids() == pick.ids() => {
                return execute(store, meta, config, &pick, claim, &fresh).await;
            }
            _ => claim.release().await,
        }
    }
    // Other jobs hold the inputs, or the manifest kept changing under the picks.
    Ok(claimed)
}

async fn claim_first(
    meta: &DynMeta,
    job: &str,
    picks: &[Pick],
    ttl: Duration,
) -> Result<Option<(Pick, Claim)>, CompactionError> {
    for pick in picks {
        if let Some(claim) = Claim::acquire(meta, job, &pick.claims, ttl).await? {
            return Ok(Some((pick.clone(), claim)));
        }
    }
    Ok(None)
}

fn planned(pick: &Pick, outcome: Outcome) -> CompactionSummary {
    let mut summary = CompactionSummary {
        outcome,
        level_in: Some(pick.input_level),
        level_out: Some(pick.output_level),
        inputs: pick.inputs.iter().map(|f| f.object.clone()).collect(),
        ..Default::default()
    };
    if pick.kind == PickKind::Move {
        summary.bytes_moved = pick.bytes();
        return summary;
    }
    summary.bytes_in = pick.bytes();
    for f in &pick.inputs {
        *summary.bytes_in_by_level.entry(f.level).or_default() += f.size_bytes;
    }
    summary
}

async fn execute(
    store: &DynStore,
    meta: &DynMeta,
    config: &CompactionConfig,
    pick: &Pick,
    claim: Claim,
    levels: &Levels,
) -> Result<CompactionSummary, CompactionError> {
    let result = install(store, meta, config, pick, &claim, levels).await;
    // After a swap the claim rows are gone already; this stops the renewals.
    claim.release().await;
    let summary = result?;
    crash_point("after_swap");
    Ok(summary)
}

async fn install(
    store: &DynStore,
    meta: &DynMeta,
    config: &CompactionConfig,
    pick: &Pick,
    claim: &Claim,
    levels: &Levels,
) -> Result<CompactionSummary, CompactionError> {
    let mut swap = Swap {
        claim: Some(claim.job.clone()),
        ..Default::default()
    };
    let mut summary;
    if pick.kind == PickKind::Move {
        summary = planned(pick, Outcome::TrivialMove);
        swap.moves = pick
            .inputs
            .iter()
            .map(|f| (f.id, pick.input_level, pick.output_level))
            .collect();
    } else {
        summary = planned(pick, Outcome::Compacted);
        let merged = merge::merge(store, &claim.job, config, pick, levels, &claim.lost).await?;
        summary.outputs = merged.outputs.iter().map(|f| f.object.clone()).collect();
        summary.bytes_out = merged.outputs.iter().map(|f| f.size_bytes).sum();
        summary.entries_in = merged.entries_in;
        summary.entries_out = merged.entries_out;
        summary.entries_dropped = merged.entries_in - merged.entries_out;
        summary.tombstones_dropped = merged.tombstones_dropped;
        swap.inputs = pick.ids();
        swap.outputs = merged.outputs;
        swap.seq = pick.inputs.iter().map(|f| f.seq).max().unwrap_or(0);
    }
    crash_point("before_swap");
    if claim.is_lost() {
        return Err(CompactionError::ClaimLost);
    }
    meta.swap(swap).await?;
    Ok(summary)
}

/// Test hook: `SKYVAULT_COMPACT_CRASH_AT=<stage>` aborts the process there,
/// so crash tests can stop a real `skyvault compact` at each stage:
/// `before_output_upload`, `after_output_upload`, `before_swap`, `after_swap`.
pub(crate) fn crash_point(stage: &str) {
    if std::env::var("SKYVAULT_COMPACT_CRASH_AT").as_deref() == Ok(stage) {
        eprintln!("SKYVAULT_COMPACT_CRASH_AT={stage}: aborting");
        std::process::abort();
    }
}

/// The process's peak resident set (Linux `VmHWM`), 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
