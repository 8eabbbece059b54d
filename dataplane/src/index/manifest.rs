//! The index's view of the metadata: live files ordered newest first.

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
    /// Newest first: higher `seq` wins, so a lookup stops at the first file
    /// that has the key.
    pub files: Vec<Arc<LiveFile>>,
}

impl Manifest {
    /// The next snapshot after applying `delta`.
    pub fn apply(&self, delta: ManifestDelta) -> Manifest {
        let removed: HashSet<i64> = delta.removed_ids.into_iter().collect();
        let known: HashSet<i64> = self.files.iter().map(|f| f.record.id).collect();
        let mut files: Vec<Arc<LiveFile>> = self
            .files
            .iter()
            .filter(|f| !removed.contains(&f.record.id))
            .cloned()
            .collect();
        for record in delta.added {
            // A retried catch-up may deliver a file twice; keep one copy.
            if known.contains(&record.id) || removed.contains(&record.id) {
                continue;
            }
            let object = Arc::from(record.object.as_str());
            files.push(Arc::new(LiveFile { record, object }));
        }
        files.sort_by_key(|f| std::cmp::Reverse((f.record.seq, f.record.id)));
        Manifest {
            version: delta.version.max(self.version),
            files,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::FileKind;

    fn record(id: i64, seq: u64) -> FileRecord {
        FileRecord {
            id,
            object: format!("wal/{id}.sst"),
            kind: FileKind::Wal,
            level: 0,
            seq,
            min_key: b"a".to_vec(),
            max_key: b"z".to_vec(),
            entry_count: 1,
            size_bytes: 1,
            added_version: seq,
            removed_version: None,
            created_at_ms: 0,
            removed_at_ms: None,
        }
    }

    #[test]
    fn orders_newest_first_and_applies_removals() {
        let m = Manifest::default().apply(ManifestDelta {
            version: 3,
            added: vec![record(1, 1), record(3, 3), record(2, 2)],
            removed_ids: vec![],
        });
        let seqs: Vec<u64> = m.files.iter().map(|f| f.record.seq).collect();
        assert_eq!(seqs, vec![3, 2, 1]);
        let m = m.apply(ManifestDelta {
            version: 4,
            added: vec![record(3, 3)],
            removed_ids: vec![2],
        });
        let ids: Vec<i64> = m.files.iter().map(|f| f.record.id).collect();
        assert_eq!((m.version, ids), (4, vec![3, 1]));
    }
}
