//! Compaction: merges the oldest WAL files and the runs they overlap into new
//! non-overlapping runs, and swaps inputs for outputs in one metadata
//! transaction (invariant 6: no read changes).
//!
//! Levels: WAL files are level 0 (overlapping, newest first); runs are
//! level 1 (non-overlapping, one sorted run). A compaction always takes a
//! *prefix* of the WAL files by sequence (oldest first), so every WAL file
//! left behind is newer than every output, and the outputs take the highest
//! input sequence. Because the inputs include every run overlapping their key
//! range and no older WAL file remains, nothing older than an output can hold
//! one of its keys, so tombstones are dropped.
//!
//! Two compactions never run at once: a lease in the metadata database
//! (renewed while the job runs, expiring if its holder dies).

use crate::meta::{DynMeta, FileKind, FileRecord, MetaError, NewFile};
use crate::metrics::metrics;
use crate::objstore::{DynStore, StoreError};
use crate::sstable::{Entry, FormatError, Table, Value, Writer, WriterOptions};
use bytes::Bytes;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

pub const LEASE_NAME: &str = "compaction";

#[derive(Clone, Debug)]
pub struct CompactionConfig {
    /// Outputs are cut once they reach about this size.
    pub target_file_bytes: u64,
    /// WAL bytes taken per compaction (at least one file is always taken).
    pub max_input_bytes: u64,
    /// How long the lease lasts without renewal.
    pub lease_ttl: Duration,
    pub dry_run: bool,
    pub writer: WriterOptions,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            target_file_bytes: 64 << 20,
            max_input_bytes: 1 << 30,
            lease_ttl: Duration::from_secs(600),
            dry_run: false,
            writer: WriterOptions::default(),
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
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Compacted,
    #[default]
    NothingToDo,
    LeaseHeld,
    DryRun,
}

/// What one run did; printed as JSON by `skyvault compact`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CompactionSummary {
    pub outcome: Outcome,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub entries_in: u64,
    pub entries_out: u64,
    /// Overwritten values and tombstones that no longer need to exist.
    pub entries_dropped: u64,
    pub duration_ms: u64,
}

/// The files one compaction reads, newest first.
fn plan(live: &[FileRecord], max_input_bytes: u64) -> Vec<FileRecord> {
    let mut wals: Vec<&FileRecord> = live.iter().filter(|f| f.kind == FileKind::Wal).collect();
    wals.sort_by_key(|f| (f.seq, f.id));
    let mut inputs: Vec<FileRecord> = Vec::new();
    let mut bytes = 0;
    for wal in wals {
        if !inputs.is_empty() && bytes + wal.size_bytes > max_input_bytes {
            break;
        }
        bytes += wal.size_bytes;
        inputs.push(wal.clone());
    }
    let Some(lo) = inputs.iter().map(|f| &f.min_key).min().cloned() else {
        return inputs;
    };
    let hi = inputs
        .iter()
        .map(|f| &f.max_key)
        .max()
        .cloned()
        .unwrap_or_default();
    inputs.extend(
        live.iter()
            .filter(|f| f.kind == FileKind::Run && f.max_key >= lo && f.min_key <= hi)
            .cloned(),
    );
    inputs.sort_by_key(|f| Reverse((f.seq, f.id)));
    inputs
}

pub async fn compact(
    store: &DynStore,
    meta: &DynMeta,
    config: &CompactionConfig,
) -> Result<CompactionSummary, CompactionError> {
    let started = Instant::now();
    let holder = format!("{:016x}", rand::random::<u64>());
    if !config.dry_run
        && !meta
            .try_lease(LEASE_NAME, &holder, config.lease_ttl)
            .await?
    {
        return Ok(CompactionSummary {
            outcome: Outcome::LeaseHeld,
            ..Default::default()
        });
    }
    let result = run(store, meta, config, &holder).await;
    if !config.dry_run
        && let Err(e) = meta.release_lease(LEASE_NAME, &holder).await
    {
        tracing::warn!(error = %e, "releasing the compaction lease; it expires by itself");
    }
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics()
        .jobs
        .with_label_values(&["compaction", outcome])
        .inc();
    let mut summary = result?;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    let m = metrics();
    m.job_bytes
        .with_label_values(&["compaction", "read"])
        .inc_by(summary.bytes_in);
    m.job_bytes
        .with_label_values(&["compaction", "written"])
        .inc_by(summary.bytes_out);
    m.job_duration
        .with_label_values(&["compaction"])
        .observe(started.elapsed().as_secs_f64());
    Ok(summary)
}

async fn run(
    store: &DynStore,
    meta: &DynMeta,
    config: &CompactionConfig,
    holder: &str,
) -> Result<CompactionSummary, CompactionError> {
    let inputs = plan(&meta.live_files().await?, config.max_input_bytes);
    let mut summary = CompactionSummary {
        inputs: inputs.iter().map(|f| f.object.clone()).collect(),
        bytes_in: inputs.iter().map(|f| f.size_bytes).sum(),
        entries_in: inputs.iter().map(|f| f.entry_count).sum(),
        ..Default::default()
    };
    if inputs.is_empty() {
        return Ok(summary);
    }
    if config.dry_run {
        summary.outcome = Outcome::DryRun;
        return Ok(summary);
    }
    let mut tables = Vec::with_capacity(inputs.len());
    for file in &inputs {
        let data = store.get(&file.object).await?;
        let table = Table::from_bytes(data).map_err(|source| CompactionError::Corrupt {
            object: file.object.clone(),
            source,
        })?;
        tables.push(table);
    }
    // Renew before the long part, so the lease cannot lapse mid-merge.
    if !meta.try_lease(LEASE_NAME, holder, config.lease_ttl).await? {
        return Err(MetaError::Conflict("compaction lease lost".into()).into());
    }
    let min_seq = inputs.iter().map(|f| f.seq).min().unwrap_or(0);
    let max_seq = inputs.iter().map(|f| f.seq).max().unwrap_or(0);
    let (files, entries_out) = {
        let (inputs, config) = (inputs.clone(), config.clone());
        tokio::task::spawn_blocking(move || merge(&inputs, &tables, &config, min_seq, max_seq))
            .await
            .map_err(|e| MetaError::Conflict(format!("merge task failed: {e}")))??
    };
    let mut outputs = Vec::with_capacity(files.len());
    for (data, new_file) in files {
        store.put(&new_file.object, data).await?;
        summary.bytes_out += new_file.size_bytes;
        outputs.push(new_file);
    }
    crash_point("after_outputs");
    let ids: Vec<i64> = inputs.iter().map(|f| f.id).collect();
    summary.outputs = outputs.iter().map(|f| f.object.clone()).collect();
    meta.swap(&ids, outputs, max_seq).await?;
    crash_point("after_swap");
    summary.outcome = Outcome::Compacted;
    summary.entries_out = entries_out;
    summary.entries_dropped = summary.entries_in - entries_out;
    Ok(summary)
}

/// Test hook: `SKYVAULT_COMPACT_CRASH_AT=<stage>` aborts the process there,
/// so crash tests can stop a real `skyvault compact` at each stage.
fn crash_point(stage: &str) {
    if std::env::var("SKYVAULT_COMPACT_CRASH_AT").as_deref() == Ok(stage) {
        eprintln!("SKYVAULT_COMPACT_CRASH_AT={stage}: aborting");
        std::process::abort();
    }
}

type Output = (Bytes, NewFile);

/// K-way merge of the inputs (newest first): per key the newest entry wins;
/// tombstones are dropped (see the module docs for why that is safe).
fn merge(
    inputs: &[FileRecord],
    tables: &[Table],
    config: &CompactionConfig,
    min_seq: u64,
    max_seq: u64,
) -> Result<(Vec<Output>, u64), CompactionError> {
    let corrupt = |i: usize| {
        let object = inputs[i].object.clone();
        move |source| CompactionError::Corrupt { object, source }
    };
    let mut iters: Vec<_> = tables.iter().map(|t| t.iter()).collect();
    // The heap orders (key, rank): equal keys come out newest first.
    let mut heads: Vec<Option<Entry>> = vec![None; iters.len()];
    let mut heap = BinaryHeap::new();
    let mut advance = |rank: usize, heads: &mut Vec<Option<Entry>>, heap: &mut BinaryHeap<_>| {
        let next = iters[rank].next().transpose().map_err(corrupt(rank))?;
        if let Some(entry) = next {
            heap.push(Reverse((entry.key.clone(), rank)));
            heads[rank] = Some(entry);
        }
        Ok::<(), CompactionError>(())
    };
    for rank in 0..tables.len() {
        advance(rank, &mut heads, &mut heap)?;
    }
    let mut out = OutputSet::new(config, min_seq, max_seq);
    let mut last_key: Option<Bytes> = None;
    while let Some(Reverse((key, rank))) = heap.pop() {
        let entry = heads[rank].take().expect("every heap item has a head");
        advance(rank, &mut heads, &mut heap)?;
        if last_key.as_ref() == Some(&key) {
            continue;
        }
        last_key = Some(key);
        if let Value::Put(_) = entry.value {
            out.add(&entry).map_err(corrupt(rank))?;
        }
    }
    out.finish().map_err(corrupt(0))
}

/// Accumulates merged entries into output files of about the target size.
struct OutputSet {
    config: CompactionConfig,
    min_seq: u64,
    max_seq: u64,
    writer: Option<(Writer, Bytes, Bytes)>,
    done: Vec<Output>,
    entries: u64,
}

impl OutputSet {
    fn new(config: &CompactionConfig, min_seq: u64, max_seq: u64) -> Self {
        OutputSet {
            config: config.clone(),
            min_seq,
            max_seq,
            writer: None,
            done: Vec::new(),
            entries: 0,
        }
    }

    fn add(&mut self, entry: &Entry) -> Result<(), FormatError> {
        let (writer, _first, last) = self.writer.get_or_insert_with(|| {
            (
                Writer::new(self.config.writer.clone()),
                entry.key.clone(),
                entry.key.clone(),
            )
        });
        writer.add(&entry.key, &entry.value)?;
        *last = entry.key.clone();
        self.entries += 1;
        if writer.estimated_size() as u64 >= self.config.target_file_bytes {
            self.cut()?;
        }
        Ok(())
    }

    fn cut(&mut self) -> Result<(), FormatError> {
        let Some((writer, first, last)) = self.writer.take() else {
            return Ok(());
        };
        let count = writer.entry_count();
        let data = writer.finish(self.min_seq, self.max_seq)?;
        let file = NewFile {
            object: format!(
                "run/{:013}-{:016x}.sst",
                crate::meta::now_ms(),
                rand::random::<u64>()
            ),
            kind: FileKind::Run,
            level: 1,
            min_key: first.to_vec(),
            max_key: last.to_vec(),
            entry_count: count,
            size_bytes: data.len() as u64,
        };
        self.done.push((data, file));
        Ok(())
    }

    fn finish(mut self) -> Result<(Vec<Output>, u64), FormatError> {
        self.cut()?;
        Ok((self.done, self.entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: i64, kind: FileKind, seq: u64, lo: &str, hi: &str, size: u64) -> FileRecord {
        FileRecord {
            id,
            object: format!("{}/{id}.sst", kind.as_str()),
            kind,
            level: u32::from(kind == FileKind::Run),
            seq,
            min_key: lo.into(),
            max_key: hi.into(),
            entry_count: 1,
            size_bytes: size,
            added_version: seq,
            removed_version: None,
            created_at_ms: 0,
            removed_at_ms: None,
        }
    }

    #[test]
    fn plan_takes_oldest_wals_and_overlapping_runs() {
        let live = vec![
            file(1, FileKind::Run, 3, "a", "c", 10),
            file(2, FileKind::Run, 3, "x", "z", 10),
            file(4, FileKind::Wal, 4, "b", "d", 10),
            file(5, FileKind::Wal, 5, "m", "n", 10),
            file(6, FileKind::Wal, 6, "x", "y", 10),
        ];
        let ids: Vec<i64> = plan(&live, 20).iter().map(|f| f.id).collect();
        assert_eq!(
            ids,
            vec![5, 4, 1],
            "oldest WAL prefix within budget, then overlapping runs"
        );
        let ids: Vec<i64> = plan(&live, 1).iter().map(|f| f.id).collect();
        assert_eq!(ids, vec![4, 1], "at least one WAL even over budget");
        assert!(plan(&live[..2], 100).is_empty(), "no WAL, nothing to do");
    }
}
