//! Deletion-triggered compaction (RocksDB's `CompactOnDeletionCollector`): a
//! file of L1 or deeper that is mostly tombstones ([`lsm::tombstone_heavy`])
//! is compacted whatever its level's score, so deleted data stops taking
//! space and slowing scans. The picker merges such a file into the next level;
//! on the last level, where only an older version's trivial move can have put
//! one, it is rewritten alone ([`cleanup`]), which drops every tombstone
//! (nothing is deeper). Counts come from the file rows (`tombstone_count`,
//! migration 0008); rows written before it count none.

use super::picker::{CANDIDATES_PER_LEVEL, Pick, PickKind};
use crate::lsm::{self, LAST_LEVEL, Levels};
use crate::meta::{ClaimRange, FileRecord};

/// The tombstone-heavy files, shallowest level first, a few at most.
pub fn heavy_files(levels: &Levels) -> impl Iterator<Item = &FileRecord> {
    (1..=LAST_LEVEL)
        .flat_map(|level| levels.files(level).iter())
        .filter(|f| lsm::tombstone_heavy(f))
        .take(CANDIDATES_PER_LEVEL)
}

/// Rewrites one last-level file in place.
pub fn cleanup(file: FileRecord) -> Pick {
    let claims = vec![ClaimRange {
        level: LAST_LEVEL,
        min_key: file.min_key.clone(),
        max_key: Some(file.max_key.clone()),
    }];
    Pick {
        kind: PickKind::Cleanup,
        input_level: LAST_LEVEL,
        output_level: LAST_LEVEL,
        inputs: vec![file],
        claims,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compaction::picker::{PickLimits, candidates, level_picks};
    use crate::lsm::{DELETION_TRIGGER_TOMBSTONES, LsmConfig, debt, tests::file};

    const MIB: u64 = 1 << 20;

    fn with_tombstones(f: FileRecord, tombstones: u64, entries: u64) -> FileRecord {
        FileRecord {
            tombstone_count: tombstones,
            entry_count: entries,
            ..f
        }
    }

    fn config() -> LsmConfig {
        LsmConfig {
            level_base_bytes: 64 * MIB,
            level_size_ratio: 10,
            l0_trigger_files: 4,
        }
    }

    fn limits() -> PickLimits {
        PickLimits {
            max_input_bytes: u64::MAX,
            max_l0_files: 64,
            small_l0_bytes: MIB,
            min_intra_l0_files: 2,
        }
    }

    #[test]
    fn a_file_with_tombstones_reaches_the_last_level_by_a_merge_not_a_move() {
        let levels = Levels::new(vec![
            file(1, 5, "a", "b", MIB),
            with_tombstones(file(2, 5, "m", "n", MIB), 1, 10),
        ]);
        let picks = level_picks(&levels, 5, &limits());
        let kinds: Vec<(PickKind, i64)> = picks.iter().map(|p| (p.kind, p.inputs[0].id)).collect();
        assert_eq!(
            kinds,
            vec![(PickKind::Move, 1), (PickKind::Merge, 2)],
            "one tombstone is enough: on the last level it would stay for good"
        );
        assert_eq!(picks[1].output_level, LAST_LEVEL);
        // Above the last level a tombstone may still hide older data: moves stay.
        let higher = Levels::new(vec![
            with_tombstones(file(2, 3, "m", "n", MIB), 1, 10),
            file(3, 6, "a", "z", 100 * MIB),
        ]);
        assert_eq!(level_picks(&higher, 3, &limits())[0].kind, PickKind::Move);
    }

    #[test]
    fn mostly_tombstones_is_due_whatever_the_scores() {
        let n = DELETION_TRIGGER_TOMBSTONES;
        let levels = Levels::new(vec![
            with_tombstones(file(1, 4, "a", "c", MIB), n, 2 * n),
            with_tombstones(file(2, 4, "d", "f", MIB), n - 1, n),
            with_tombstones(file(3, 4, "g", "h", MIB), n, 2 * n + 1),
            file(4, 5, "b", "b", MIB),
            with_tombstones(file(5, 6, "x", "z", 100 * MIB), 3 * n, 4 * n),
        ]);
        let shape = debt(&levels, &config(), 1);
        assert!(shape.score < 1.0, "no level is over its target");
        assert_eq!(shape.tombstone_heavy_files, 2);
        assert!(shape.needs_compaction);
        let picks = candidates(&levels, &config(), &limits(), &[]);
        let seen: Vec<(PickKind, u32, Vec<i64>)> = picks
            .iter()
            .map(|p| (p.kind, p.output_level, p.ids()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (PickKind::Merge, 5, vec![1, 4]),
                (PickKind::Cleanup, LAST_LEVEL, vec![5]),
            ],
            "below the floor or under half tombstones: not picked"
        );
        let cleanup = &picks[1];
        assert_eq!(cleanup.refreshed(&levels).as_ref(), Some(cleanup));
        let gone = Levels::new(vec![file(4, 5, "b", "b", MIB)]);
        assert_eq!(cleanup.refreshed(&gone), None, "its file was replaced");
    }
}
