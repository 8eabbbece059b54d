//! The index's view of the metadata: the WAL tier in memory, then the live
//! files ordered newest first.

use super::memtable::{MemTable, WalFile, is_wal};
use crate::meta::{FileRecord, ManifestDelta};
use std::collections::HashSet;
use std::sync::Arc;

/// One live file, with its object name shared by cache keys.
#[derive(Debug)]
pub struct LiveFile {
    pub record: FileRecord,
    pub object: Arc<str>,
}

impl LiveFile {
    pub fn new(record: FileRecord) -> LiveFile {
        let object = Arc::from(record.object.as_str());
        LiveFile { record, object }
    }

    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.record.min_key.as_slice() <= key && key <= self.record.max_key.as_slice()
    }

    /// Whether the file's key range meets `[lo, hi)` (`hi = None`: unbounded).
    pub fn overlaps(&self, lo: &[u8], hi: Option<&[u8]>) -> bool {
        self.record.max_key.as_slice() >= lo
            && hi.is_none_or(|hi| self.record.min_key.as_slice() < hi)
    }
}

/// An immutable snapshot; readers hold an `Arc` to one while they read, so a
/// concurrent catch-up never changes the files under a request.
#[derive(Debug, Default)]
pub struct Manifest {
    pub version: u64,
    /// Newest data first, so a lookup stops at the first file that has the
    /// key: L0 by descending sequence, then L1, L2, ... (each level's files
    /// do not overlap; ordered by key). Level order, not sequence, decides
    /// between levels: a deeper file can carry a higher sequence than a
    /// shallower one whose keys it does not share (see decision 0003).
    /// The WAL tier is not among them: it is read from `mem`.
    pub files: Vec<Arc<LiveFile>>,
    /// The live WAL files' entries, newer than every file in `files`.
    pub mem: MemTable,
    /// `files[runs[i]]` are the files of level `i + 1` (empty ranges for
    /// empty levels), for binary search by key.
    runs: Vec<std::ops::Range<usize>>,
}

impl Manifest {
    /// The next snapshot after applying `delta`; `wal` holds the decoded
    /// WAL files the delta adds (see [`Manifest::wal_to_load`]).
    pub fn apply(&self, delta: ManifestDelta, wal: Vec<Arc<WalFile>>) -> Manifest {
        let removed: HashSet<i64> = delta.removed_ids.iter().copied().collect();
        // A file delivered again is either a retried catch-up (same record)
        // or a trivial move (new level): the delivered record wins.
        let delivered: HashSet<i64> = delta.added.iter().map(|f| f.id).collect();
        let full = delta.full;
        let mem = self
            .mem
            .next(&removed, |id| !full || delivered.contains(&id), wal);
        let mut files: Vec<Arc<LiveFile>> = self
            .files
            .iter()
            .filter(|f| !removed.contains(&f.record.id))
            .filter(|f| {
                // A full delta is the whole live manifest: keep only what it lists.
                let listed = delivered.contains(&f.record.id);
                (!listed && !full) || (listed && Self::unchanged(f, &delta.added))
            })
            .cloned()
            .collect();
        let kept: HashSet<i64> = files.iter().map(|f| f.record.id).collect();
        for record in delta.added {
            if kept.contains(&record.id) || removed.contains(&record.id) || is_wal(&record) {
                continue;
            }
            files.push(Arc::new(LiveFile::new(record)));
        }
        files.sort_by(|a, b| read_order(&a.record, &b.record));
        let runs = level_ranges(&files);
        Manifest {
            version: delta.version.max(self.version),
            files,
            mem,
            runs,
        }
    }

    /// This snapshot (same version, same files) with more of its flushed
    /// WAL-tier entries pruned; `None` when none wait.
    pub fn pruned_more(&self) -> Option<Manifest> {
        Some(Manifest {
            version: self.version,
            files: self.files.clone(),
            mem: self.mem.pruned_more()?,
            runs: self.runs.clone(),
        })
    }

    /// The WAL files `delta` adds that this snapshot has not decoded yet:
    /// the caller fetches and decodes them before [`Manifest::apply`].
    pub fn wal_to_load<'a>(&self, delta: &'a ManifestDelta) -> Vec<&'a FileRecord> {
        let removed: HashSet<i64> = delta.removed_ids.iter().copied().collect();
        delta
            .added
            .iter()
            .filter(|r| is_wal(r) && !removed.contains(&r.id) && !self.mem.contains(r.id))
            .collect()
    }
}

impl Manifest {
    /// Positions in `files` of the files that may hold `key`, newest data
    /// first: every L0 file whose range covers it, then at most one file per
    /// deeper level (binary search: a level's files do not overlap).
    pub fn candidates(&self, key: &[u8]) -> Vec<usize> {
        let l0_end = self.runs.first().map_or(self.files.len(), |r| r.start);
        let mut out: Vec<usize> = (0..l0_end)
            .filter(|&i| self.files[i].may_contain(key))
            .collect();
        for run in &self.runs {
            let level = &self.files[run.clone()];
            let i = level.partition_point(|f| f.record.max_key.as_slice() < key);
            if level.get(i).is_some_and(|f| f.may_contain(key)) {
                out.push(run.start + i);
            }
        }
        out
    }

    /// Whether `file`'s record is delivered again unchanged.
    fn unchanged(file: &LiveFile, added: &[FileRecord]) -> bool {
        added
            .iter()
            .any(|r| r.id == file.record.id && r.level == file.record.level)
    }

    /// The live files by level, without the WAL tier (for gauges; see
    /// [`Manifest::debt`]).
    pub fn levels(&self) -> crate::lsm::Levels {
        crate::lsm::Levels::new(self.files.iter().map(|f| f.record.clone()).collect())
    }

    /// The compaction debt, the WAL tier counted from the in-memory table.
    /// Computed on every commit (gauges, standalone's compaction trigger):
    /// copying the tier's records, thousands between two flushes, made it
    /// O(tier) allocations per commit.
    pub fn debt(&self, lsm: &crate::lsm::LsmConfig) -> crate::lsm::Debt {
        let mut debt = crate::lsm::debt(&self.levels(), lsm, self.version);
        debt.wal_files = self.mem.files().len() as u64;
        debt.wal_bytes = self.mem.files().iter().map(|f| f.record.size_bytes).sum();
        debt
    }
}

/// Where each level L1..L6 lies in `files` (sorted by [`read_order`]).
fn level_ranges(files: &[Arc<LiveFile>]) -> Vec<std::ops::Range<usize>> {
    (1..crate::lsm::NUM_LEVELS)
        .map(|level| {
            let start = files.partition_point(|f| f.record.level < level);
            let end = files.partition_point(|f| f.record.level <= level);
            start..end
        })
        .collect()
}

/// Newest data first: L0 by descending (seq, id); deeper levels after, by key.
fn read_order(a: &FileRecord, b: &FileRecord) -> std::cmp::Ordering {
    a.level.cmp(&b.level).then_with(|| {
        if a.level == 0 {
            (b.seq, b.id).cmp(&(a.seq, a.id))
        } else {
            a.min_key.cmp(&b.min_key)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::FileKind;

    fn record(id: i64, seq: u64) -> FileRecord {
        FileRecord {
            id,
            object: format!("run/{id}.sst"),
            kind: FileKind::Run,
            level: 0,
            seq,
            min_key: b"a".to_vec(),
            max_key: b"z".to_vec(),
            entry_count: 1,
            tombstone_count: 0,
            size_bytes: 1,
            added_version: seq,
            removed_version: None,
            created_at_ms: 0,
            removed_at_ms: None,
        }
    }

    #[test]
    fn wal_files_are_read_from_the_memtable_not_probed_as_files() {
        let wal_record = FileRecord {
            kind: FileKind::Wal,
            object: "wal/5.sst".into(),
            ..record(5, 5)
        };
        let delta = ManifestDelta {
            version: 5,
            added: vec![record(1, 1), wal_record.clone()],
            ..Default::default()
        };
        let base = Manifest::default();
        let to_load: Vec<i64> = base.wal_to_load(&delta).iter().map(|r| r.id).collect();
        assert_eq!(to_load, vec![5]);
        let entry = crate::sstable::Entry {
            key: bytes::Bytes::from_static(b"k"),
            value: crate::sstable::Value::Put(bytes::Bytes::from_static(b"v")),
        };
        let wal = Arc::new(WalFile::from_entries(wal_record, vec![entry]));
        let m = base.apply(delta.clone(), vec![wal]);
        let ids: Vec<i64> = m.files.iter().map(|f| f.record.id).collect();
        assert_eq!(ids, vec![1], "the WAL file is not a file to probe");
        assert!(m.mem.get(b"k").is_some());
        assert!(m.wal_to_load(&delta).is_empty(), "decoded once");
        let debt = m.debt(&crate::lsm::LsmConfig::default());
        assert_eq!(
            (debt.wal_files, debt.l0_files),
            (1, 1),
            "the debt still counts it, apart from the L0 file"
        );
    }

    #[test]
    fn orders_newest_first_and_applies_removals() {
        let m = Manifest::default().apply(
            ManifestDelta {
                version: 3,
                added: vec![record(1, 1), record(3, 3), record(2, 2)],
                removed_ids: vec![],
                full: false,
            },
            vec![],
        );
        let seqs: Vec<u64> = m.files.iter().map(|f| f.record.seq).collect();
        assert_eq!(seqs, vec![3, 2, 1]);
        let m = m.apply(
            ManifestDelta {
                version: 4,
                added: vec![record(3, 3)],
                removed_ids: vec![2],
                full: false,
            },
            vec![],
        );
        let ids: Vec<i64> = m.files.iter().map(|f| f.record.id).collect();
        assert_eq!((m.version, ids), (4, vec![3, 1]));
    }

    #[test]
    fn levels_order_before_sequence_and_moves_change_the_level() {
        let at = |id, level, seq| FileRecord {
            level,
            ..record(id, seq)
        };
        let m = Manifest::default().apply(
            ManifestDelta {
                version: 5,
                added: vec![at(1, 2, 9), at(2, 1, 4), at(3, 0, 5), at(4, 0, 7)],
                removed_ids: vec![],
                full: false,
            },
            vec![],
        );
        let ids: Vec<i64> = m.files.iter().map(|f| f.record.id).collect();
        assert_eq!(ids, vec![4, 3, 2, 1], "L0 newest first, then L1, then L2");
        // File 2 moves to L3: delivered again with its new level.
        let m = m.apply(
            ManifestDelta {
                version: 6,
                added: vec![at(2, 3, 4)],
                removed_ids: vec![],
                full: false,
            },
            vec![],
        );
        let order: Vec<(i64, u32)> = m
            .files
            .iter()
            .map(|f| (f.record.id, f.record.level))
            .collect();
        assert_eq!(order, vec![(4, 0), (3, 0), (1, 2), (2, 3)]);
    }

    #[test]
    fn candidates_are_covering_l0_files_then_one_file_per_level() {
        let at = |id, level, lo: &str, hi: &str| FileRecord {
            level,
            min_key: lo.into(),
            max_key: hi.into(),
            ..record(id, id as u64)
        };
        let m = Manifest::default().apply(
            ManifestDelta {
                version: 9,
                added: vec![
                    at(1, 0, "a", "m"),
                    at(2, 0, "k", "z"),
                    at(3, 1, "a", "c"),
                    at(4, 1, "d", "f"),
                    at(5, 1, "g", "z"),
                    at(6, 3, "a", "z"),
                ],
                removed_ids: vec![],
                full: false,
            },
            vec![],
        );
        let ids = |key: &str| -> Vec<i64> {
            m.candidates(key.as_bytes())
                .into_iter()
                .map(|i| m.files[i].record.id)
                .collect()
        };
        assert_eq!(ids("e"), vec![1, 4, 6]);
        assert_eq!(ids("l"), vec![2, 1, 5, 6], "L0 newest first");
        assert_eq!(ids("0"), Vec::<i64>::new());
    }

    #[test]
    fn a_full_delta_replaces_the_manifest() {
        let m = Manifest::default().apply(
            ManifestDelta {
                version: 3,
                added: vec![record(1, 1), record(2, 2), record(3, 3)],
                ..Default::default()
            },
            vec![],
        );
        let kept = m.files[1].clone();
        let m = m.apply(
            ManifestDelta {
                version: 9,
                added: vec![record(2, 2), record(7, 7)],
                full: true,
                ..Default::default()
            },
            vec![],
        );
        let ids: Vec<i64> = m.files.iter().map(|f| f.record.id).collect();
        assert_eq!((m.version, ids), (9, vec![7, 2]), "1 and 3 are gone");
        assert!(
            Arc::ptr_eq(&m.files[1], &kept),
            "unchanged files are kept as they are"
        );
    }
}
