//! The LSM's shape: which live files sit on which level, what size each level
//! should have, and how far behind compaction is (the *debt*). One
//! implementation serves the compaction picker, standalone's in-process
//! scheduler, the index's `/lsm` endpoint (which the operator turns into Jobs)
//! and the `skyvault_lsm_*` gauges.
//!
//! Levels: the WAL tier holds the batchers' group commits, read from memory
//! and flushed into L0 in bulk (docs/decisions/0008-wal-tier.md); L0 holds
//! those flushes (overlapping, newest first); L1..L6 are sorted runs of
//! non-overlapping files. Level targets are
//! dynamic, as RocksDB's `level_compaction_dynamic_level_bytes`: the largest
//! level sets the scale, each level above it is `ratio` times smaller, and the
//! *base level* (where L0 compacts to) is the highest one whose target is still
//! above `level_base_bytes / ratio`, and never below the first non-empty
//! level, so levels above the base level are empty. (A store upgraded from the
//! two-level layout keeps its runs at L1: L1 is its base level, and its excess
//! drains down level by level, mostly by trivial moves.) See
//! docs/decisions/0003-level-layout-and-claims.md.

use crate::meta::FileRecord;
use serde::Serialize;

/// Levels L0..L6, as RocksDB's default `num_levels`.
pub const NUM_LEVELS: u32 = 7;
/// The deepest level: nothing below it, so it is never compacted further.
pub const LAST_LEVEL: u32 = NUM_LEVELS - 1;
/// Score of a non-empty level with no target (above the base level, which the
/// targets never produce; kept so such a level would drain first).
pub const MISPLACED_SCORE: f64 = 1_000.0;

#[derive(Clone, Debug, PartialEq)]
pub struct LsmConfig {
    /// Target size of the base level (RocksDB's `max_bytes_for_level_base`).
    pub level_base_bytes: u64,
    /// Each level's target is this many times the one above (at least 2).
    pub level_size_ratio: u64,
    /// L0 is due for compaction at this many files.
    pub l0_trigger_files: u64,
}

impl Default for LsmConfig {
    fn default() -> Self {
        LsmConfig {
            level_base_bytes: 256 << 20,
            level_size_ratio: 10,
            l0_trigger_files: 8,
        }
    }
}

/// Live files by level.
#[derive(Clone, Debug, Default)]
pub struct Levels {
    /// The WAL tier: group commits not yet flushed into L0, oldest first.
    /// Never picked by compaction; `compaction::flush` empties it.
    pub wal: Vec<FileRecord>,
    /// L0, newest first (higher `seq` wins).
    pub l0: Vec<FileRecord>,
    /// `runs[i]` is level `i + 1`, ordered by `min_key` (files do not overlap).
    pub runs: Vec<Vec<FileRecord>>,
}

impl Levels {
    pub fn new(live: Vec<FileRecord>) -> Levels {
        let mut levels = Levels {
            wal: Vec::new(),
            l0: Vec::new(),
            runs: vec![Vec::new(); LAST_LEVEL as usize],
        };
        for file in live {
            match file.level {
                0 if file.is_wal_tier() => levels.wal.push(file),
                0 => levels.l0.push(file),
                // A level beyond ours (written by a newer version) is read as the last.
                n => levels.runs[(n.min(LAST_LEVEL) - 1) as usize].push(file),
            }
        }
        levels.wal.sort_by_key(|f| (f.seq, f.id));
        levels.l0.sort_by_key(|f| std::cmp::Reverse((f.seq, f.id)));
        for run in &mut levels.runs {
            run.sort_by(|a, b| a.min_key.cmp(&b.min_key));
        }
        levels
    }

    /// The files of `level` (L0 newest first, others by key).
    pub fn files(&self, level: u32) -> &[FileRecord] {
        match level {
            0 => &self.l0,
            n => &self.runs[(n - 1) as usize],
        }
    }

    pub fn bytes(&self, level: u32) -> u64 {
        self.files(level).iter().map(|f| f.size_bytes).sum()
    }

    /// Bytes of the WAL tier (what every index holds in memory).
    pub fn wal_bytes(&self) -> u64 {
        self.wal.iter().map(|f| f.size_bytes).sum()
    }

    /// Files of `level` (>= 1) whose key range meets `[lo, hi]`, in key order.
    pub fn overlapping(&self, level: u32, lo: &[u8], hi: &[u8]) -> Vec<FileRecord> {
        let files = self.files(level);
        // Non-overlapping and sorted, so max_key is sorted too.
        let start = files.partition_point(|f| f.max_key.as_slice() < lo);
        files[start..]
            .iter()
            .take_while(|f| f.min_key.as_slice() <= hi)
            .cloned()
            .collect()
    }

    /// For each file of `level` (>= 1, above the last), in key order, the
    /// bytes of `level + 1` it overlaps: [`Levels::overlapping`]'s sizes for
    /// a whole level in one pass over both, without copying files. The
    /// picker weighs every file of a level by it, thousands per pick at 1 TiB
    /// (a binary search per file there was a cache miss per probe).
    pub fn overlapping_bytes_below(&self, level: u32) -> Vec<u64> {
        let below = self.files(level + 1);
        let mut start = 0;
        self.files(level)
            .iter()
            .map(|f| {
                // Both levels are sorted and non-overlapping: where a file's
                // overlap starts never moves back.
                while below.get(start).is_some_and(|b| b.max_key < f.min_key) {
                    start += 1;
                }
                below[start..]
                    .iter()
                    .take_while(|b| b.min_key <= f.max_key)
                    .map(|b| b.size_bytes)
                    .sum()
            })
            .collect()
    }

    /// Whether any file on a level deeper than `level` may hold `key`.
    pub fn deeper_may_hold(&self, level: u32, key: &[u8]) -> bool {
        (level + 1..=LAST_LEVEL).any(|l| {
            let files = self.files(l);
            let i = files.partition_point(|f| f.max_key.as_slice() < key);
            files.get(i).is_some_and(|f| f.min_key.as_slice() <= key)
        })
    }
}

/// Each level's target size and the base level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets {
    pub base_level: u32,
    /// `bytes[l]` for l in 0..NUM_LEVELS (L0's entry is unused: 0); 0 above the base level.
    pub bytes: Vec<u64>,
}

/// RocksDB's dynamic level sizing (see the module docs).
pub fn targets(levels: &Levels, config: &LsmConfig) -> Targets {
    let ratio = config.level_size_ratio.max(2);
    let base = config.level_base_bytes.max(1);
    let max_size = (1..=LAST_LEVEL).map(|l| levels.bytes(l)).max().unwrap_or(0);
    let first_non_empty = (1..=LAST_LEVEL)
        .find(|&l| levels.bytes(l) > 0)
        .unwrap_or(LAST_LEVEL);
    let mut size = max_size;
    for _ in first_non_empty..LAST_LEVEL {
        size /= ratio;
    }
    let mut base_level = first_non_empty;
    let base_size = if size <= base / ratio {
        base / ratio + 1
    } else {
        while base_level > 1 && size > base {
            base_level -= 1;
            size /= ratio;
        }
        size.min(base)
    };
    let mut bytes = vec![0; NUM_LEVELS as usize];
    let mut level_size = base_size;
    for l in base_level..=LAST_LEVEL {
        bytes[l as usize] = level_size;
        level_size = level_size.saturating_mul(ratio);
    }
    Targets { base_level, bytes }
}

/// One level's line in the debt report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LevelDebt {
    pub level: u32,
    pub files: u64,
    pub bytes: u64,
    pub target_bytes: u64,
    /// L0: files / trigger (or bytes / base target, if larger); others: bytes / target.
    pub score: f64,
}

/// How far behind compaction is. Served as JSON at `/lsm`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Debt {
    /// The manifest version this was computed from (0 when not known).
    pub version: u64,
    /// Group commits not yet flushed into L0 (read from memory, never picked
    /// by compaction: the batchers' flush empties the tier).
    pub wal_files: u64,
    pub wal_bytes: u64,
    pub l0_files: u64,
    pub l0_bytes: u64,
    /// Estimate of the bytes compaction must still read to bring every level under its target.
    pub pending_bytes: u64,
    /// The highest score of any level that can be compacted.
    pub score: f64,
    pub needs_compaction: bool,
    /// Files of L1 and deeper that are mostly tombstones: compaction is due
    /// for them whatever the scores ([`tombstone_heavy`]).
    pub tombstone_heavy_files: u64,
    pub base_level: u32,
    pub levels: Vec<LevelDebt>,
    /// Bytes of replaced files purge has not deleted yet (space beyond the
    /// live files; bounded in standalone by pacing compaction on it). The
    /// index fills it in from the database; 0 when not known.
    pub dead_bytes: u64,
    /// The level L0 compacts into: the base level, or a shallower one that
    /// still holds data (`picker::l0_output_level`).
    pub l0_output_level: u32,
    /// Sizes of the L0 files, newest first (at most [`MAX_L0_LISTED`]). How
    /// many L0 jobs can run at once (the oldest files into the output level,
    /// and beside it a merge of the newest small files, intra-L0) follows from
    /// them; the operator sizes its Jobs by it.
    pub l0_file_bytes: Vec<u64>,
    /// Files of the output level outside the key span of all of L0: the ones
    /// a job into the next level can take beside an L0 job, whose claim holds
    /// the output level across the span of its L0 files.
    pub l0_output_files_outside_l0: u64,
}

/// A file with at least this many tombstones, and no fewer than live
/// entries, is compacted for them (RocksDB's deletion-triggered compaction;
/// the floor keeps small files from churning).
pub const DELETION_TRIGGER_TOMBSTONES: u64 = 1024;

/// Whether `file` is compacted for its tombstones whatever its level's
/// score (see `compaction::picker`).
pub fn tombstone_heavy(file: &FileRecord) -> bool {
    file.level > 0
        && file.tombstone_count >= DELETION_TRIGGER_TOMBSTONES
        && file.tombstone_count.saturating_mul(2) >= file.entry_count
}

/// Dead bytes below which compaction never waits for purge.
pub const DEAD_BYTES_FLOOR: u64 = 1 << 30;

impl Debt {
    /// Bytes of the live files, the WAL tier's included.
    pub fn live_bytes(&self) -> u64 {
        self.wal_bytes + self.levels.iter().map(|l| l.bytes).sum::<u64>()
    }

    /// Whether replaced files not yet purged outgrew the live data (and
    /// [`DEAD_BYTES_FLOOR`]): standalone's compaction then waits for purge,
    /// so what compaction leaves behind at most doubles the store on disk.
    pub fn dead_over_budget(&self) -> bool {
        self.dead_bytes > self.live_bytes().max(DEAD_BYTES_FLOOR)
    }
}

/// L0 sizes listed in [`Debt::l0_file_bytes`] at most: far above any stop
/// trigger, and a bounded `/lsm` body when L0 is unbounded.
pub const MAX_L0_LISTED: usize = 1024;

/// Files of `level` outside the key span of all of L0.
fn outside_l0_span(levels: &Levels, level: u32) -> u64 {
    let files = levels.files(level);
    let lo = levels.l0.iter().map(|f| f.min_key.as_slice()).min();
    let hi = levels.l0.iter().map(|f| f.max_key.as_slice()).max();
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return files.len() as u64;
    };
    let inside = levels.overlapping(level, lo, hi).len();
    (files.len() - inside) as u64
}

pub fn debt(levels: &Levels, config: &LsmConfig, version: u64) -> Debt {
    let targets = targets(levels, config);
    let ratio = config.level_size_ratio.max(2);
    let mut out = Vec::with_capacity(NUM_LEVELS as usize);
    let mut pending = 0u64;
    for level in 0..NUM_LEVELS {
        let (files, bytes) = (levels.files(level).len() as u64, levels.bytes(level));
        let target = targets.bytes[level as usize];
        let score = level_score(level, files, bytes, &targets, config);
        if level < LAST_LEVEL && score >= 1.0 {
            let next = levels.bytes(if level == 0 {
                targets.base_level
            } else {
                level + 1
            });
            pending += if level == 0 {
                bytes + next
            } else {
                // Each excess byte is merged with about `ratio` bytes below it.
                bytes.saturating_sub(target).saturating_mul(ratio + 1)
            };
        }
        out.push(LevelDebt {
            level,
            files,
            bytes,
            target_bytes: target,
            score,
        });
    }
    let l0_out = crate::compaction::picker::l0_output_level(levels, targets.base_level);
    let score = out
        .iter()
        .filter(|l| l.level < LAST_LEVEL)
        .map(|l| l.score)
        .fold(0.0, f64::max);
    let tombstone_heavy_files = (1..NUM_LEVELS)
        .flat_map(|level| levels.files(level))
        .filter(|f| tombstone_heavy(f))
        .count() as u64;
    Debt {
        version,
        wal_files: levels.wal.len() as u64,
        wal_bytes: levels.wal_bytes(),
        l0_files: levels.l0.len() as u64,
        l0_bytes: levels.bytes(0),
        pending_bytes: pending,
        score,
        needs_compaction: score >= 1.0 || tombstone_heavy_files > 0,
        tombstone_heavy_files,
        base_level: targets.base_level,
        levels: out,
        dead_bytes: 0,
        l0_output_level: l0_out,
        l0_file_bytes: levels
            .l0
            .iter()
            .take(MAX_L0_LISTED)
            .map(|f| f.size_bytes)
            .collect(),
        l0_output_files_outside_l0: outside_l0_span(levels, l0_out),
    }
}

fn level_score(level: u32, files: u64, bytes: u64, targets: &Targets, config: &LsmConfig) -> f64 {
    if level == 0 {
        let by_files = files as f64 / config.l0_trigger_files.max(1) as f64;
        let by_bytes = bytes as f64 / config.level_base_bytes.max(1) as f64;
        return by_files.max(by_bytes);
    }
    let target = targets.bytes[level as usize];
    match (bytes, target) {
        (0, _) => 0.0,
        (_, 0) => MISPLACED_SCORE,
        (b, t) => b as f64 / t as f64,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::meta::FileKind;

    pub(crate) fn file(id: i64, level: u32, lo: &str, hi: &str, size: u64) -> FileRecord {
        FileRecord {
            id,
            object: format!("f/{id}.sst"),
            kind: FileKind::Run,
            level,
            seq: id as u64,
            min_key: lo.into(),
            max_key: hi.into(),
            entry_count: 1,
            tombstone_count: 0,
            size_bytes: size,
            added_version: id as u64,
            removed_version: None,
            created_at_ms: 0,
            removed_at_ms: None,
        }
    }

    /// A WAL-tier file (a group commit not yet flushed).
    pub(crate) fn wal(id: i64, size: u64) -> FileRecord {
        FileRecord {
            kind: FileKind::Wal,
            object: format!("wal/{id}.sst"),
            ..file(id, 0, "a", "z", size)
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_wal_tier_is_not_l0_and_does_not_make_compaction_due() {
        let live: Vec<FileRecord> = (1..=100).map(|id| wal(id, 10)).collect();
        let levels = Levels::new(live);
        assert_eq!((levels.wal.len(), levels.l0.len()), (100, 0));
        assert_eq!(levels.wal.first().map(|f| f.id), Some(1), "oldest first");
        let d = debt(&levels, &config(), 100);
        assert_eq!((d.wal_files, d.wal_bytes, d.l0_files), (100, 1000, 0));
        assert!(
            !d.needs_compaction,
            "a hundred commits are not compaction debt"
        );
    }

    #[test]
    fn dead_bytes_are_over_budget_past_the_live_bytes_and_the_floor() {
        let levels = Levels::new(vec![wal(1, 10), file(2, 6, "a", "z", 3 << 30)]);
        let mut d = debt(&levels, &config(), 2);
        assert_eq!(d.live_bytes(), (3 << 30) + 10);
        d.dead_bytes = 3 << 30;
        assert!(!d.dead_over_budget(), "within the live bytes");
        d.dead_bytes = (3 << 30) + 11;
        assert!(d.dead_over_budget());
        let mut small = debt(&Levels::new(vec![file(1, 6, "a", "z", MIB)]), &config(), 1);
        small.dead_bytes = DEAD_BYTES_FLOOR;
        assert!(!small.dead_over_budget(), "the floor");
        small.dead_bytes = DEAD_BYTES_FLOOR + 1;
        assert!(small.dead_over_budget());
    }

    fn config() -> LsmConfig {
        LsmConfig {
            level_base_bytes: 8 * MIB,
            level_size_ratio: 10,
            l0_trigger_files: 4,
        }
    }

    #[test]
    fn an_empty_tree_compacts_l0_into_the_last_level() {
        let t = targets(&Levels::new(vec![]), &config());
        assert_eq!(t.base_level, LAST_LEVEL);
    }

    #[test]
    fn targets_grow_by_the_ratio_from_the_base_level() {
        // 100 MiB at the bottom: L6 = 100, L5 = 10, L4 = 1 MiB, which is
        // within (base / ratio, base]: L4 is the base level.
        let levels = Levels::new(vec![file(1, 6, "a", "z", 100 * MIB)]);
        let t = targets(&levels, &config());
        assert_eq!(t.base_level, 4);
        assert_eq!(t.bytes[4..], [MIB, 10 * MIB, 100 * MIB]);
        assert_eq!(t.bytes[3], 0, "levels above the base level stay empty");
        // 10 GiB: the base level moves up one level per factor of ten.
        let levels = Levels::new(vec![file(1, 6, "a", "z", 10 << 30)]);
        assert_eq!(targets(&levels, &config()).base_level, 2);
    }

    #[test]
    fn debt_scores_l0_by_files_and_levels_by_size() {
        let live = vec![
            file(1, 0, "a", "b", 10),
            file(2, 0, "a", "b", 10),
            file(3, 0, "a", "b", 10),
            file(4, 0, "a", "b", 10),
            file(5, 1, "a", "z", MIB),
            file(6, 6, "a", "z", 100 * MIB),
        ];
        let d = debt(&Levels::new(live), &config(), 9);
        assert_eq!((d.l0_files, d.version), (4, 9));
        assert_eq!(d.levels[0].score, 1.0);
        // An upgraded store's runs at L1 make L1 the base level, over its target.
        assert_eq!(d.base_level, 1);
        assert!(d.levels[1].score > 1.0, "{:?}", d.levels[1]);
        assert!(d.needs_compaction);
        assert!(d.pending_bytes > 0);
        let quiet = debt(&Levels::new(vec![file(6, 6, "a", "z", MIB)]), &config(), 1);
        assert!(
            !quiet.needs_compaction,
            "the last level never needs compaction"
        );
        assert_eq!(quiet.pending_bytes, 0);
    }

    #[test]
    fn debt_lists_l0_newest_first_and_the_output_files_outside_its_span() {
        let live = vec![
            file(1, 0, "c", "d", 10),
            file(2, 0, "d", "f", 20),
            file(3, 2, "a", "b", MIB),
            file(4, 2, "c", "e", MIB),
            file(5, 2, "g", "h", MIB),
            file(6, 6, "a", "z", 100 * MIB),
        ];
        let d = debt(&Levels::new(live), &config(), 9);
        assert_eq!(d.l0_file_bytes, vec![20, 10]);
        // The first non-empty level is the base level of a small tree.
        assert_eq!((d.base_level, d.l0_output_level), (2, 2));
        // "a".."b" and "g".."h" lie outside L0's span "c".."f".
        assert_eq!(d.l0_output_files_outside_l0, 2);
        let no_l0 = debt(&Levels::new(vec![file(3, 2, "a", "b", MIB)]), &config(), 1);
        assert_eq!(no_l0.l0_output_files_outside_l0, 1);
    }

    #[test]
    fn overlap_and_deeper_lookups_use_key_ranges() {
        let levels = Levels::new(vec![
            file(1, 2, "a", "c", 1),
            file(2, 2, "d", "f", 1),
            file(3, 2, "g", "i", 1),
            file(4, 3, "k", "m", 1),
        ]);
        let ids = |v: Vec<FileRecord>| v.iter().map(|f| f.id).collect::<Vec<_>>();
        assert_eq!(ids(levels.overlapping(2, b"c", b"e")), vec![1, 2]);
        assert_eq!(ids(levels.overlapping(2, b"j", b"z")), Vec::<i64>::new());
        // L2 [a, c] [d, f] over L3 [b] (10 bytes), [c, e] (100), [x, y] (1000).
        let mut two: Vec<FileRecord> = levels.runs[1][..2].to_vec();
        for (id, lo, hi, size) in [(6, "b", "b", 10), (7, "c", "e", 100), (8, "x", "y", 1000)] {
            two.push(file(id, 3, lo, hi, size));
        }
        let two = Levels::new(two);
        assert_eq!(two.overlapping_bytes_below(2), vec![110, 100]);
        assert_eq!(levels.overlapping_bytes_below(2), vec![0, 0, 0]);
        assert!(levels.deeper_may_hold(1, b"e"));
        assert!(!levels.deeper_may_hold(2, b"e"));
        assert!(levels.deeper_may_hold(2, b"l"));
        assert!(!levels.deeper_may_hold(3, b"l"));
    }
}
