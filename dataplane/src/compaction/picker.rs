//! Picking: which bounded piece of work a compaction job does, from the
//! levels and their scores (`crate::lsm`). Pure functions, no I/O.
//!
//! - L0 → base level: the oldest L0 files (a prefix by sequence, so every L0
//!   file left behind is newer than every output) up to a byte budget, plus
//!   the base-level files they overlap. L0 claims are sequence ranges, not
//!   key ranges ([`l0_claim`]): L0 files overlap each other, and what must not
//!   interleave is their order.
//! - Li → Li+1: one Li file, preferring the least overlap below (RocksDB's
//!   `kMinOverlappingRatio`), plus the Li+1 files it overlaps.
//! - Trivial move: Li files with nothing overlapping on Li+1 change level
//!   without a rewrite.
//! - Intra-L0 (RocksDB's name): when the base level is more than `ratio`
//!   times larger than L0, merging L0 into it would rewrite mostly base-level
//!   bytes; instead the newest run of small L0 files (group commits are small)
//!   is merged into one L0 file, which keeps the L0 file count, and so read
//!   cost, bounded at a fraction of the rewrite. The same happens to the L0
//!   files newer than those an L0 job holds (RocksDB does it when L0 → base
//!   is busy): new flushes keep arriving while the base level is rewritten.
//!
//! - Deletion-triggered (RocksDB's `CompactOnDeletionCollector`): a file of
//!   L1 or deeper that is mostly tombstones ([`lsm::tombstone_heavy`]) goes down a
//!   level even when its level is within target, so deleted data stops
//!   taking space and slowing scans; on the last level such a file (written
//!   by a trivial move of an older version) is rewritten alone (`Cleanup`),
//!   which drops every tombstone. Files carrying tombstones never reach the
//!   last level by a trivial move: they are merged, which drops them.
//!
//! Every pick carries the claims that make it safe to run beside others
//! (docs/decisions/0003-level-layout-and-claims.md).

use super::deletion;
use crate::lsm::{self, LAST_LEVEL, Levels, LsmConfig};
use crate::meta::{ClaimRange, FileRecord};

/// Candidates per level tried when the best ones are claimed by other jobs.
pub(super) const CANDIDATES_PER_LEVEL: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PickKind {
    Merge,
    Move,
    /// The oldest WAL-tier files merged into L0 (see [`flush_pick`]).
    Flush,
    /// One last-level file rewritten in place to drop its tombstones.
    Cleanup,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pick {
    pub kind: PickKind,
    pub input_level: u32,
    pub output_level: u32,
    /// Newest first: L0 files by sequence, then input-level, then output-level files.
    pub inputs: Vec<FileRecord>,
    pub claims: Vec<ClaimRange>,
}

impl Pick {
    pub fn bytes(&self) -> u64 {
        self.inputs.iter().map(|f| f.size_bytes).sum()
    }

    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.inputs.iter().map(|f| f.id).collect();
        ids.sort_unstable();
        ids
    }

    /// The same pick recomputed on a newer snapshot: the files it starts from
    /// and everything they overlap. Differs from `self` when the manifest
    /// changed under it in a way that matters.
    pub fn refreshed(&self, levels: &Levels) -> Option<Pick> {
        let seeds: Vec<FileRecord> = self
            .inputs
            .iter()
            .filter(|f| f.level == self.input_level)
            .cloned()
            .collect();
        let live = match self.kind {
            PickKind::Flush => &levels.wal,
            _ => levels.files(self.input_level),
        };
        if !seeds.iter().all(|s| live.iter().any(|f| f == s)) {
            return None;
        }
        match self.kind {
            PickKind::Move => move_pick(levels, self.input_level, seeds),
            // Still the oldest live WAL files: flushes remove prefixes only,
            // and newer commits have higher sequences.
            PickKind::Flush => Some(flush(seeds)),
            // Nothing can come between the run's files: new flushes are newer,
            // and jobs holding older or newer L0 files hold disjoint sequences.
            PickKind::Merge if self.output_level == 0 => Some(intra_l0(seeds)),
            PickKind::Cleanup => seeds.into_iter().next().map(deletion::cleanup),
            PickKind::Merge => Some(merge_pick(
                levels,
                self.input_level,
                self.output_level,
                seeds,
            )),
        }
    }
}

/// Bounds of one job.
#[derive(Clone, Debug)]
pub struct PickLimits {
    /// Input bytes per job (at least one file is always taken).
    pub max_input_bytes: u64,
    /// L0 files per job (each is read with its own cursor).
    pub max_l0_files: usize,
    /// L0 files below this size are merged among themselves (intra-L0).
    pub small_l0_bytes: u64,
    /// Fewest small files an intra-L0 job merges.
    pub min_intra_l0_files: usize,
}

/// When and how much the WAL tier's flush merges into L0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushLimits {
    /// The flush is due once the WAL tier holds this many bytes…
    pub flush_bytes: u64,
    /// …or this many files (each is one GET when an index restarts).
    pub flush_files: usize,
    /// Bounds of one flush job's input (its memory is about its input).
    pub max_files: usize,
    pub max_bytes: u64,
}

impl FlushLimits {
    /// Whether the WAL tier described by `files` and `bytes` is due.
    pub fn due(&self, files: u64, bytes: u64) -> bool {
        files > 0 && (bytes >= self.flush_bytes || files >= self.flush_files as u64)
    }
}

/// The WAL tier's flush: its oldest files (a prefix by sequence, so every
/// WAL file left behind is newer than the output, and the output newer than
/// every L0 file) merged into L0, when due (or `force`d: a drain on demand).
/// Stops at the first file a running job holds.
pub fn flush_pick(
    levels: &Levels,
    limits: &FlushLimits,
    held: &[ClaimRange],
    force: bool,
) -> Option<Pick> {
    let due = limits.due(levels.wal.len() as u64, levels.wal_bytes());
    if levels.wal.is_empty() || !(due || force) {
        return None;
    }
    let held: Vec<Option<(u64, u64)>> = held
        .iter()
        .filter(|c| c.level == 0)
        .map(l0_claim_seqs)
        .collect();
    let free = |f: &FileRecord| {
        held.iter().all(|h| match h {
            Some((lo, hi)) => f.seq < *lo || f.seq > *hi,
            // An older binary's whole-L0 claim holds every file.
            None => false,
        })
    };
    let oldest_first: Vec<FileRecord> = levels
        .wal
        .iter()
        .take_while(|f| free(f))
        .take(limits.max_files.max(1))
        .cloned()
        .collect();
    if oldest_first.is_empty() {
        return None;
    }
    let take = prefix_within(&oldest_first, limits.max_bytes);
    Some(flush(oldest_first[..take].to_vec()))
}

/// Merges WAL files into one L0 file with their highest sequence: newer
/// than every L0 file (earlier flushes), older than every WAL file left.
fn flush(mut files: Vec<FileRecord>) -> Pick {
    files.sort_by_key(|f| std::cmp::Reverse((f.seq, f.id)));
    Pick {
        kind: PickKind::Flush,
        input_level: 0,
        output_level: 0,
        claims: vec![l0_claim(&files)],
        inputs: files,
    }
}

/// Picks in order of preference: levels by score (highest first, only those
/// due), several candidates per level. The caller claims the first it can;
/// `held` (the live claims of running jobs) steers L0 picks around them.
pub fn candidates(
    levels: &Levels,
    config: &LsmConfig,
    limits: &PickLimits,
    held: &[ClaimRange],
) -> Vec<Pick> {
    let debt = lsm::debt(levels, config, 0);
    let targets = lsm::targets(levels, config);
    let mut due: Vec<_> = debt
        .levels
        .iter()
        .filter(|l| l.level < LAST_LEVEL && l.score >= 1.0)
        .collect();
    due.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut picks = Vec::new();
    for level in due {
        if level.level == 0 {
            picks.extend(l0_picks(levels, config, limits, targets.base_level, held));
        } else {
            picks.extend(level_picks(levels, level.level, limits));
        }
    }
    picks.extend(deletion::heavy_files(levels).map(|f| match f.level {
        LAST_LEVEL => deletion::cleanup(f.clone()),
        level => merge_pick(levels, level, level + 1, vec![f.clone()]),
    }));
    picks
}

/// L0's output level: the base level, or a shallower one that still holds
/// data (an upgraded store): L0 may never skip over older data.
pub fn l0_output_level(levels: &Levels, base_level: u32) -> u32 {
    (1..base_level)
        .find(|&l| !levels.files(l).is_empty())
        .unwrap_or(base_level)
}

/// L0's candidates: a merge of the newest small files among themselves and/or
/// the oldest files into the base level, each only over files no running job
/// holds.
fn l0_picks(
    levels: &Levels,
    config: &LsmConfig,
    limits: &PickLimits,
    base_level: u32,
    held: &[ClaimRange],
) -> Vec<Pick> {
    // A flush holds WAL sequences, all newer than every L0 file: it does
    // not hold L0.
    let newest_l0 = levels.l0.first().map_or(0, |f| f.seq);
    let held: Vec<ClaimRange> = held
        .iter()
        .filter(|c| l0_claim_seqs(c).is_none_or(|(lo, _)| lo <= newest_l0))
        .cloned()
        .collect();
    let busy = HeldL0::from_claims(&held);
    let out = l0_output_level(levels, base_level);
    let expensive = levels.bytes(out)
        > levels
            .bytes(0)
            .saturating_mul(config.level_size_ratio.max(2));
    let intra = (expensive || busy.is_some())
        .then(|| intra_l0_pick(levels, limits, busy.map_or(0, |b| b.above)))
        .flatten();
    // While L0 into the base level is expensive, wait for a run of small
    // files to form rather than rewrite the base level for a few files; past
    // twice the trigger, L0 goes down regardless.
    let many = levels.l0.len() as u64 >= 2 * config.l0_trigger_files.max(1);
    let go_down = !expensive || intra.is_some() || many;
    let below = busy.map_or(u64::MAX, |b| b.below);
    let down = go_down
        .then(|| l0_pick_below(levels, base_level, limits, below))
        .flatten();
    intra.into_iter().chain(down).collect()
}

/// The L0 sequences running jobs hold: files with `seq < below` or
/// `seq > above` are free. A claim that is not a sequence range (an older
/// binary's whole-L0 claim) holds everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HeldL0 {
    below: u64,
    above: u64,
}

impl HeldL0 {
    fn from_claims(held: &[ClaimRange]) -> Option<HeldL0> {
        held.iter()
            .filter(|c| c.level == 0)
            .map(|c| match l0_claim_seqs(c) {
                Some((lo, hi)) => HeldL0 {
                    below: lo,
                    above: hi,
                },
                None => HeldL0 {
                    below: 0,
                    above: u64::MAX,
                },
            })
            .reduce(|a, b| HeldL0 {
                below: a.below.min(b.below),
                above: a.above.max(b.above),
            })
    }
}

/// The claim on L0 files: their sequence range, as big-endian bytes so that
/// byte order is numeric order (docs/decisions/0003-level-layout-and-claims.md).
pub fn l0_claim(files: &[FileRecord]) -> ClaimRange {
    let lo = files.iter().map(|f| f.seq).min().unwrap_or(0);
    let hi = files.iter().map(|f| f.seq).max().unwrap_or(u64::MAX);
    ClaimRange {
        level: 0,
        min_key: lo.to_be_bytes().to_vec(),
        max_key: Some(hi.to_be_bytes().to_vec()),
    }
}

fn l0_claim_seqs(claim: &ClaimRange) -> Option<(u64, u64)> {
    let lo = u64::from_be_bytes(claim.min_key.as_slice().try_into().ok()?);
    let hi = u64::from_be_bytes(claim.max_key.as_deref()?.try_into().ok()?);
    Some((lo, hi))
}

#[cfg(test)]
fn l0_pick(levels: &Levels, base_level: u32, limits: &PickLimits) -> Option<Pick> {
    l0_pick_below(levels, base_level, limits, u64::MAX)
}

/// The oldest L0 files with `seq < below` into the base level.
fn l0_pick_below(
    levels: &Levels,
    base_level: u32,
    limits: &PickLimits,
    below: u64,
) -> Option<Pick> {
    let out = l0_output_level(levels, base_level);
    let mut oldest_first: Vec<FileRecord> = levels
        .l0
        .iter()
        .rev()
        .take_while(|f| f.seq < below)
        .cloned()
        .collect();
    if oldest_first.is_empty() {
        return None;
    }
    // Up to `max_l0_files` and `max_input_bytes` of L0, whatever they
    // overlap below (RocksDB's rule). Shrinking the L0 prefix until the
    // overlap fits degenerates into "one L0 file + the whole base level" once
    // the base level outgrows the budget: write amplification of base size ÷
    // one file, and L0 draining a file per job (issue 23 item 2). The overlap
    // is bounded by the base level's size instead, which its own score keeps
    // near its target (see `L0_JOB_BOUND` in docs/decisions/0003).
    oldest_first.truncate(limits.max_l0_files.max(1));
    oldest_first.truncate(prefix_within(&oldest_first, limits.max_input_bytes));
    Some(merge_pick(levels, 0, out, oldest_first))
}

/// The newest run of small L0 files with `seq > above`, merged into L0 again
/// (see the module docs); `None` when the run is shorter than
/// `min_intra_l0_files`.
fn intra_l0_pick(levels: &Levels, limits: &PickLimits, above: u64) -> Option<Pick> {
    let small: Vec<FileRecord> = levels
        .l0
        .iter()
        .take_while(|f| f.seq > above && f.size_bytes < limits.small_l0_bytes)
        .take(limits.max_l0_files.max(2))
        .cloned()
        .collect();
    let take = intra_l0_run(&small, intra_l0_cap(limits));
    (take >= limits.min_intra_l0_files.max(2)).then(|| intra_l0(small[..take].to_vec()))
}

/// The most bytes one intra-L0 merge reads (and so writes): four small
/// files' worth by default, one target file, and never above the budget.
fn intra_l0_cap(limits: &PickLimits) -> u64 {
    limits
        .small_l0_bytes
        .saturating_mul(4)
        .min(limits.max_input_bytes)
}

/// How many of `files` (newest first) one intra-L0 merge takes: it grows
/// while the bytes rewritten per file removed do not rise and the total
/// stays within `cap` (RocksDB's `FindIntraL0Compaction`). A previous
/// merge's output, as large as several new files together, raises that cost
/// and ends the run: without the rule each merge rewrote the last one's
/// output again, quadratic in the number of small files.
fn intra_l0_run(files: &[FileRecord], cap: u64) -> usize {
    let Some(first) = files.first() else {
        return 0;
    };
    let mut bytes = first.size_bytes;
    let mut take = 1;
    for f in &files[1..] {
        let next = bytes + f.size_bytes;
        // Per file removed: `bytes / (take - 1)` now, `next / take` with f.
        let cheaper_or_equal = take == 1 || next * (take as u64 - 1) <= bytes * take as u64;
        if next > cap || !cheaper_or_equal {
            break;
        }
        bytes = next;
        take += 1;
    }
    take
}

/// Merges `files` (a run of consecutive L0 files by sequence, newest first)
/// into L0: the output takes their highest sequence, so it sits exactly where
/// they were among the other L0 files.
fn intra_l0(files: Vec<FileRecord>) -> Pick {
    Pick {
        kind: PickKind::Merge,
        input_level: 0,
        output_level: 0,
        claims: vec![l0_claim(&files)],
        inputs: files,
    }
}

/// How many of `files` (at least one) fit in `budget` bytes.
fn prefix_within(files: &[FileRecord], budget: u64) -> usize {
    let mut bytes = 0;
    let n = files
        .iter()
        .take_while(|f| {
            bytes += f.size_bytes;
            bytes <= budget
        })
        .count();
    n.max(1).min(files.len())
}

pub(super) fn level_picks(levels: &Levels, level: u32, limits: &PickLimits) -> Vec<Pick> {
    let next = level + 1;
    let mut by_ratio: Vec<(f64, &FileRecord)> = levels
        .files(level)
        .iter()
        .zip(levels.overlapping_bytes_below(level))
        .map(|(f, below)| (below as f64 / f.size_bytes.max(1) as f64, f))
        .collect();
    by_ratio.sort_by(|a, b| a.0.total_cmp(&b.0));
    // A tombstone moved onto the last level would stay there for good:
    // such files are merged instead (with nothing below, a rewrite that
    // drops them).
    let into_last = next == LAST_LEVEL;
    let (movable, rewrite): (Vec<FileRecord>, Vec<FileRecord>) = by_ratio
        .iter()
        .take_while(|(ratio, _)| *ratio == 0.0)
        .map(|(_, f)| (*f).clone())
        .partition(|f| !into_last || f.tombstone_count == 0);
    let mut picks = Vec::new();
    if !movable.is_empty() {
        let take = prefix_within(&movable, limits.max_input_bytes);
        picks.extend(move_pick(levels, level, movable[..take].to_vec()));
    }
    picks.extend(
        rewrite
            .into_iter()
            .take(CANDIDATES_PER_LEVEL)
            .map(|f| merge_pick(levels, level, next, vec![f])),
    );
    picks.extend(
        by_ratio
            .iter()
            .filter(|(ratio, _)| *ratio > 0.0)
            .take(CANDIDATES_PER_LEVEL)
            .map(|(_, f)| merge_pick(levels, level, next, vec![(*f).clone()])),
    );
    picks
}

/// Moves `files` from `level` to the next one; `None` if one of them now overlaps there.
fn move_pick(levels: &Levels, level: u32, files: Vec<FileRecord>) -> Option<Pick> {
    let next = level + 1;
    let mut claims = Vec::new();
    for f in &files {
        if !levels.overlapping(next, &f.min_key, &f.max_key).is_empty() {
            return None;
        }
        for l in [level, next] {
            claims.push(ClaimRange {
                level: l,
                min_key: f.min_key.clone(),
                max_key: Some(f.max_key.clone()),
            });
        }
    }
    Some(Pick {
        kind: PickKind::Move,
        input_level: level,
        output_level: next,
        inputs: files,
        claims,
    })
}

/// Merges `seeds` (files of `level`) with everything they overlap on `out`.
fn merge_pick(levels: &Levels, level: u32, out: u32, mut seeds: Vec<FileRecord>) -> Pick {
    let lo = seeds
        .iter()
        .map(|f| f.min_key.clone())
        .min()
        .unwrap_or_default();
    let hi = seeds
        .iter()
        .map(|f| f.max_key.clone())
        .max()
        .unwrap_or_default();
    let below = levels.overlapping(out, &lo, &hi);
    let out_lo = below
        .first()
        .map_or(lo.clone(), |f| f.min_key.clone().min(lo.clone()));
    let out_hi = below
        .last()
        .map_or(hi.clone(), |f| f.max_key.clone().max(hi.clone()));
    let input_claim = if level == 0 {
        l0_claim(&seeds)
    } else {
        ClaimRange {
            level,
            min_key: lo,
            max_key: Some(hi),
        }
    };
    let output_claim = ClaimRange {
        level: out,
        min_key: out_lo,
        max_key: Some(out_hi),
    };
    seeds.sort_by_key(|f| std::cmp::Reverse((f.seq, f.id)));
    seeds.extend(below);
    Pick {
        kind: PickKind::Merge,
        input_level: level,
        output_level: out,
        inputs: seeds,
        claims: vec![input_claim, output_claim],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lsm::tests::file;
    use crate::meta::claims_conflict;

    const MIB: u64 = 1 << 20;

    fn config() -> LsmConfig {
        LsmConfig {
            level_base_bytes: 8 * MIB,
            level_size_ratio: 10,
            l0_trigger_files: 2,
        }
    }

    fn limits(max_input_bytes: u64) -> PickLimits {
        PickLimits {
            max_input_bytes,
            max_l0_files: 64,
            small_l0_bytes: MIB,
            min_intra_l0_files: 2,
        }
    }

    #[test]
    fn small_l0_files_merge_among_themselves_when_the_base_level_is_large() {
        let small = PickLimits {
            small_l0_bytes: 50_000,
            ..limits(u64::MAX)
        };
        let levels = Levels::new(vec![
            file(1, 6, "a", "z", 6 * MIB),
            file(10, 0, "a", "z", 100_000), // oldest, not small
            file(11, 0, "a", "m", 1000),
            file(12, 0, "b", "z", 1000),
            file(13, 0, "c", "d", 1000),
        ]);
        let picks = candidates(&levels, &config(), &small, &[]);
        assert_eq!((picks[0].input_level, picks[0].output_level), (0, 0));
        assert_eq!(
            ids(&picks[0]),
            vec![13, 12, 11],
            "the newest run of small files"
        );
        assert_eq!(
            picks[1].output_level, 6,
            "L0 into the base level stays a fallback"
        );
        assert_eq!(picks[0].refreshed(&levels), Some(picks[0].clone()));
        // With L0 large against the base level, L0 goes down instead.
        let small_base = Levels::new(vec![
            file(1, 6, "a", "z", MIB),
            file(11, 0, "a", "m", 100_000),
            file(12, 0, "b", "z", 100_000),
        ]);
        let picks = candidates(&small_base, &config(), &small, &[]);
        assert!(picks.iter().all(|p| p.output_level != 0), "{picks:?}");
    }

    #[test]
    fn while_an_l0_job_runs_newer_small_files_merge_among_themselves() {
        let small = PickLimits {
            small_l0_bytes: 50_000,
            ..limits(u64::MAX)
        };
        // Base level small against L0: without a running job, L0 just goes down.
        let levels = Levels::new(vec![
            file(1, 6, "a", "z", 1000),
            file(10, 0, "a", "z", 1000),
            file(11, 0, "a", "m", 1000),
            file(12, 0, "b", "z", 1000),
            file(13, 0, "c", "d", 1000),
        ]);
        let idle = candidates(&levels, &config(), &small, &[]);
        assert!(idle.iter().all(|p| p.output_level == 6), "{idle:?}");
        // A job holds 10..=11 (it took them into the base level): the newer
        // files merge among themselves, and nothing else touches L0.
        let held = vec![
            l0_claim(&levels.l0[2..]),
            ClaimRange {
                level: 6,
                min_key: b"a".to_vec(),
                max_key: Some(b"z".to_vec()),
            },
        ];
        let busy = candidates(&levels, &config(), &small, &held);
        assert_eq!(busy.len(), 1, "{busy:?}");
        assert_eq!((busy[0].output_level, ids(&busy[0])), (0, vec![13, 12]));
        assert!(!claims_conflict(&held, &busy[0].claims));
        // A job holding the newest files leaves the oldest ones to go down.
        let newest = vec![l0_claim(&levels.l0[..2])];
        let below = candidates(&levels, &config(), &small, &newest);
        assert_eq!(below.len(), 1, "{below:?}");
        assert_eq!(
            (below[0].output_level, ids(&below[0])),
            (6, vec![11, 10, 1])
        );
        assert!(!claims_conflict(&newest, &below[0].claims));
        // An older binary's whole-L0 claim leaves nothing on L0.
        let whole = vec![ClaimRange {
            level: 0,
            min_key: Vec::new(),
            max_key: None,
        }];
        assert!(candidates(&levels, &config(), &small, &whole).is_empty());
    }

    fn ids(p: &Pick) -> Vec<i64> {
        p.inputs.iter().map(|f| f.id).collect()
    }

    #[test]
    fn l0_takes_the_oldest_prefix_and_only_overlapping_base_files() {
        let live = vec![
            file(10, 6, "a", "c", 2 * MIB),
            file(11, 6, "d", "f", 2 * MIB),
            file(12, 6, "x", "z", 2 * MIB),
            // L0, oldest = lowest seq (= id here).
            file(20, 0, "b", "e", MIB),
            file(21, 0, "a", "b", MIB),
            file(22, 0, "x", "y", MIB),
        ];
        let levels = Levels::new(live);
        let base = lsm::targets(&levels, &config()).base_level;
        let pick = l0_pick(&levels, base, &limits(2 * MIB)).unwrap();
        assert_eq!(
            pick.output_level, 6,
            "6 MiB at the bottom: L6 is the base level"
        );
        // Two L0 files fit the budget; the L6 files under [a, e] come along.
        assert_eq!(
            ids(&pick),
            vec![21, 20, 10, 11],
            "newest first, then level 6"
        );
        assert_eq!(
            l0_claim_seqs(&pick.claims[0]),
            Some((20, 21)),
            "L0 is claimed by sequence"
        );
        assert_eq!(
            (
                pick.claims[1].min_key.as_slice(),
                pick.claims[1].max_key.as_deref()
            ),
            (&b"a"[..], Some(&b"f"[..]))
        );
        // A tiny budget still takes one file.
        assert_eq!(
            ids(&l0_pick(&levels, base, &limits(1)).unwrap()),
            vec![20, 10, 11]
        );
    }

    /// Issue 23 item 2: with the base level larger than the budget, an L0
    /// job still takes as many L0 files as the budget holds — not one L0
    /// file plus the whole base level, job after job.
    #[test]
    fn l0_never_shrinks_to_one_file_because_the_base_level_is_large() {
        let mut live: Vec<FileRecord> = (0..10)
            .map(|i| {
                let (lo, hi) = (format!("k{i}0"), format!("k{i}9"));
                file(100 + i, 6, &lo, &hi, MIB / 2)
            })
            .collect();
        live.extend((0..8).map(|i| file(200 + i, 0, "k00", "k99", MIB)));
        let levels = Levels::new(live);
        let base = lsm::targets(&levels, &config()).base_level;
        let pick = l0_pick(&levels, base, &limits(4 * MIB)).unwrap();
        let l0: Vec<i64> = pick
            .inputs
            .iter()
            .filter(|f| f.level == 0)
            .map(|f| f.id)
            .collect();
        assert_eq!(l0, vec![203, 202, 201, 200], "the oldest 4 MiB of L0");
        assert_eq!(pick.inputs.len(), 14, "and every base file they overlap");
    }

    /// Intra-L0 grows while the bytes rewritten per file removed do not
    /// rise (RocksDB's rule): a previous merge's output ends the run, so
    /// small files are not rewritten again and again.
    #[test]
    fn intra_l0_does_not_rewrite_its_last_output_with_a_few_new_files() {
        let small = |id| file(id, 0, "a", "z", 10_000);
        let mut files: Vec<FileRecord> = (20..27).rev().map(small).collect();
        files.push(file(10, 0, "a", "z", 70_000)); // the last merge's output
        assert_eq!(intra_l0_run(&files, u64::MAX), 7);
        // Files of one size merge up to the cap.
        assert_eq!(intra_l0_run(&files[..7], 45_000), 4);
        // Newer files larger than the older ones still merge when that
        // lowers the cost per file removed.
        let growing = vec![small(3), small(2), file(1, 0, "a", "z", 5_000)];
        assert_eq!(intra_l0_run(&growing, u64::MAX), 3);
    }

    #[test]
    fn a_file_with_nothing_below_moves_without_a_rewrite() {
        let levels = Levels::new(vec![
            file(1, 4, "a", "b", MIB),
            file(2, 4, "m", "n", MIB),
            file(3, 5, "m", "m", MIB),
        ]);
        let picks = level_picks(&levels, 4, &limits(u64::MAX));
        assert_eq!(picks[0].kind, PickKind::Move);
        assert_eq!(ids(&picks[0]), vec![1]);
        assert_eq!(picks[1].kind, PickKind::Merge);
        assert_eq!(ids(&picks[1]), vec![2, 3]);
        // Moves are refused once something overlapping lands below.
        let later = Levels::new(vec![file(1, 4, "a", "b", MIB), file(9, 5, "b", "c", MIB)]);
        assert_eq!(picks[0].refreshed(&later), None);
    }

    #[test]
    fn l0_never_skips_a_level_that_still_holds_data() {
        let levels = Levels::new(vec![file(1, 1, "a", "z", MIB), file(2, 0, "a", "b", 1)]);
        assert_eq!(l0_output_level(&levels, 5), 1);
        assert_eq!(l0_output_level(&Levels::new(vec![]), 5), 5);
    }

    #[test]
    fn candidates_follow_the_scores() {
        let levels = Levels::new(vec![
            file(1, 0, "a", "b", 1),
            file(2, 0, "a", "b", 1),
            file(3, 1, "c", "d", MIB),
        ]);
        let picks = candidates(&levels, &config(), &limits(u64::MAX), &[]);
        // L1 (the base level) is further over its target than L0: it goes first.
        assert_eq!(picks[0].input_level, 1);
        assert_eq!(picks[0].kind, PickKind::Move);
        assert!(picks.iter().any(|p| p.input_level == 0));
        assert!(candidates(&Levels::new(vec![]), &config(), &limits(1), &[]).is_empty());
    }
}
