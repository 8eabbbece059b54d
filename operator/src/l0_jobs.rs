//! How many level-0 compaction Jobs can do work at once, from what the index reports on
//! `GET /lsm` (the L0 file sizes, newest first, and L0's output level).
//!
//! The data plane's picker (`dataplane/src/compaction/picker.rs`, `l0_picks`) is the one
//! implementation of which L0 files a job takes; each Job claims the first of its picks no
//! running Job holds. Run as consecutive Jobs run it, it allows at most two L0 Jobs: the
//! oldest files into the output level, and beside it a merge of the newest run of small
//! files into one L0 file (intra-L0, decision 0003) — or the other way round while merging
//! into the output level is expensive. This module only counts them, so that the operator
//! neither leaves the second pick idle nor starts Jobs that can only exit 3 (nothing to
//! pick) or 4 (inputs claimed); `l0_jobs_tests.rs` checks the count against the real picker
//! on random trees, so a change of the picker's rules fails there until this follows.

use crate::crd::CompactionSpec;
use crate::debt::LsmDebt;

/// L0 files one job takes at most (`CompactionConfig::max_l0_files`).
const MAX_L0_FILES: usize = 256;
/// The data plane's default `--max-input-bytes`.
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 1 << 30;

/// The job bounds the count depends on, as the Jobs get them from the SkyVault
/// (`CompactionConfig::limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L0Bounds {
    /// L0 files below this size may be merged among themselves (`targetFileBytes / 4`).
    pub small_l0_bytes: u64,
    /// Bytes of L0 one job reads at most (`maxInputBytes`).
    pub max_input_bytes: u64,
    /// L0 is due at this many files (`l0TriggerFiles`); an intra-L0 merge takes at least
    /// this many.
    pub trigger_files: u64,
    /// `levelSizeRatio`.
    pub ratio: u64,
}

impl L0Bounds {
    pub fn of(c: &CompactionSpec) -> L0Bounds {
        let positive = |v: i64| u64::try_from(v).unwrap_or(0);
        L0Bounds {
            small_l0_bytes: positive(c.target_file_bytes) / 4,
            max_input_bytes: c.max_input_bytes.map_or(DEFAULT_MAX_INPUT_BYTES, positive),
            trigger_files: positive(c.l0_trigger_files.into()).max(1),
            ratio: positive(c.level_size_ratio.into()).max(2),
        }
    }
}

/// L0 Jobs that can do work at once, counting running ones; `None` when the index does not
/// report the L0 files (a data plane older than these fields). Meaningful only while L0 is
/// due. `held`: while compaction Jobs run, how many L0 files there were when the newest of
/// them was created — they hold at most those (the oldest), and a Job started now can
/// merge only a run of small files newer than all of them.
pub fn l0_jobs(debt: &LsmDebt, b: &L0Bounds, held: Option<u64>) -> Option<usize> {
    let out = debt.l0_output_level?;
    let sizes = &debt.l0_file_bytes;
    let files = usize::try_from(debt.l0_files)
        .unwrap_or(usize::MAX)
        .max(sizes.len());
    if files == 0 {
        return Some(0);
    }
    if let Some(held) = held {
        let held = usize::try_from(held).unwrap_or(usize::MAX);
        let newer = &sizes[..files.saturating_sub(held).min(sizes.len())];
        return Some(1 + usize::from(intra_l0_run(newer, b) > 0));
    }
    let out_bytes = debt
        .levels
        .iter()
        .find(|l| l.level == out)
        .map_or(0, |l| l.bytes);
    // Merging L0 into the output level would rewrite mostly output-level bytes: the
    // picker then waits for a run of small files, unless L0 holds twice its trigger.
    let expensive = out_bytes > debt.l0_bytes.saturating_mul(b.ratio);
    let many = files as u64 >= 2 * b.trigger_files;
    if expensive {
        let run = intra_l0_run(sizes, b);
        if run > 0 {
            // The run first; the older files go down beside it only when L0 holds many.
            return Some(1 + usize::from(many && files > run));
        }
        if !many {
            return Some(0);
        }
    }
    // The oldest files go down; a run of small files newer than all of them merges beside.
    let newer = if files > sizes.len() {
        // The oldest files are not listed: the job going down takes those first.
        sizes.as_slice()
    } else {
        &sizes[..files - down_files(sizes, b)]
    };
    Some(1 + usize::from(intra_l0_run(newer, b) > 0))
}

/// How many of the oldest L0 files (of `newest_first`) a job into the output level takes:
/// up to [`MAX_L0_FILES`] and `max_input_bytes` of L0, one at least.
fn down_files(newest_first: &[u64], b: &L0Bounds) -> usize {
    let mut bytes = 0u64;
    let fit = newest_first
        .iter()
        .rev()
        .take(MAX_L0_FILES)
        .take_while(|&&size| {
            bytes = bytes.saturating_add(size);
            bytes <= b.max_input_bytes
        })
        .count();
    fit.max(1).min(newest_first.len())
}

/// Files of the newest run of small L0 files one intra-L0 merge takes, 0 when that is
/// fewer than the trigger: the run grows while the bytes rewritten per file removed do
/// not rise and the total stays within four small files' worth (and the budget).
fn intra_l0_run(newest_first: &[u64], b: &L0Bounds) -> usize {
    let small: Vec<u64> = newest_first
        .iter()
        .copied()
        .take_while(|&size| size < b.small_l0_bytes)
        .take(MAX_L0_FILES)
        .collect();
    let Some((&first, rest)) = small.split_first() else {
        return 0;
    };
    let cap = b.small_l0_bytes.saturating_mul(4).min(b.max_input_bytes);
    let (mut bytes, mut take) = (first, 1u64);
    for &size in rest {
        let next = bytes + size;
        let not_dearer = take == 1 || next * (take - 1) <= bytes * take;
        if next > cap || !not_dearer {
            break;
        }
        bytes = next;
        take += 1;
    }
    let min = b.trigger_files.max(2);
    if take >= min {
        usize::try_from(take).unwrap_or(usize::MAX)
    } else {
        0
    }
}

#[cfg(test)]
#[path = "l0_jobs_tests.rs"]
mod tests;
