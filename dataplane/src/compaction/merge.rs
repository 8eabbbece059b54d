//! The streaming k-way merge: one cursor per input (newest first), a heap of
//! their heads, the newest entry per key kept, outputs written as it goes.
//!
//! A tombstone is kept unless no file on a level below the output level may
//! hold its key (nothing older is left to shadow); merges into L0 keep every
//! tombstone. Overwritten values are
//! always dropped: every older version of a key in the inputs is older than
//! the kept one, and files outside the inputs on the input levels do not
//! hold the key (the pick took every overlapping file).

use super::input::InputCursor;
use super::output::Outputs;
use super::picker::Pick;
use super::{CompactionConfig, CompactionError};
use crate::lsm::Levels;
use crate::objstore::DynStore;
use crate::sstable::{Entry, Value};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Inputs opened at once (each open is a few ranged GETs).
const OPEN_CONCURRENCY: usize = 16;

/// What a merge wrote.
#[derive(Debug, Default)]
pub struct Merged {
    pub outputs: Vec<crate::meta::NewFile>,
    pub entries_in: u64,
    pub entries_out: u64,
    pub tombstones_dropped: u64,
}

/// Merges `pick`'s inputs into new files on its output level. `levels` is
/// the snapshot the pick was verified against (for the tombstone rule);
/// `lost` is set when the job's claim lapsed: the merge stops there.
pub async fn merge(
    store: &DynStore,
    job: &str,
    config: &CompactionConfig,
    pick: &Pick,
    levels: &Levels,
    lost: &Arc<AtomicBool>,
) -> Result<Merged, CompactionError> {
    let seqs = (
        pick.inputs.iter().map(|f| f.seq).min().unwrap_or(0),
        pick.inputs.iter().map(|f| f.seq).max().unwrap_or(0),
    );
    let mut outputs = Outputs::new(store, job, config, pick.output_level, seqs);
    let result = run(store, pick, levels, lost, &mut outputs).await;
    match result {
        Ok((entries_in, tombstones_dropped)) => Ok(Merged {
            entries_out: outputs.entries,
            outputs: std::mem::take(&mut outputs.done),
            entries_in,
            tombstones_dropped,
        }),
        Err(e) => {
            outputs.abort().await;
            Err(e)
        }
    }
}

async fn run(
    store: &DynStore,
    pick: &Pick,
    levels: &Levels,
    lost: &AtomicBool,
    outputs: &mut Outputs<'_>,
) -> Result<(u64, u64), CompactionError> {
    // Opening reads each input's footer and meta region: a few round trips
    // per file, and an L0 pick may have hundreds of small files.
    let mut cursors: Vec<InputCursor> = futures::stream::iter(pick.inputs.clone())
        .map(|file| {
            let store = store.clone();
            async move { InputCursor::open(&store, &file).await }
        })
        .buffered(OPEN_CONCURRENCY)
        .try_collect()
        .await?;
    // The heap orders (key, rank): equal keys come out newest (lowest rank) first.
    let mut heads: Vec<Option<Entry>> = Vec::with_capacity(cursors.len());
    let mut heap = BinaryHeap::new();
    for (rank, cursor) in cursors.iter_mut().enumerate() {
        let head = cursor.next().await?;
        if let Some(entry) = &head {
            heap.push(Reverse((entry.key.clone(), rank)));
        }
        heads.push(head);
    }
    let (mut entries_in, mut tombstones_dropped) = (0u64, 0u64);
    let mut last_key: Option<Bytes> = None;
    while let Some(Reverse((key, rank))) = heap.pop() {
        let entry = heads[rank].take().expect("every heap item has a head");
        entries_in += 1;
        if let Some(next) = cursors[rank].next().await? {
            heap.push(Reverse((next.key.clone(), rank)));
            heads[rank] = Some(next);
        }
        if last_key.as_ref() == Some(&key) {
            continue;
        }
        last_key = Some(key);
        if entries_in % 4096 == 0 && lost.load(Ordering::Relaxed) {
            return Err(CompactionError::ClaimLost);
        }
        // Into L0 (intra-L0) older L0 files may hold the key: keep every tombstone.
        if let Value::Delete = entry.value
            && pick.output_level > 0
            && !levels.deeper_may_hold(pick.output_level, &entry.key)
        {
            tombstones_dropped += 1;
            continue;
        }
        outputs.add(&entry).await?;
    }
    outputs.cut().await?;
    Ok((entries_in, tombstones_dropped))
}
