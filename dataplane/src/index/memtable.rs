//! The WAL tier in memory (docs/decisions/0008-wal-tier.md).
//!
//! Every group commit is one WAL object: the unit of durability. Readers do
//! not consult WAL objects as files; the index decodes each live WAL object
//! once, when it first sees it in the manifest, and merges its entries into
//! one ordered map (newest value per key). A point read then costs one map
//! lookup for the whole WAL tier, however many commits it holds, and a scan
//! one more cursor. A background flush (`compaction::flush`) merges the
//! oldest WAL objects into one L0 file and swaps them out in one transaction;
//! the entries they held leave the map in the same manifest snapshot that
//! brings the L0 file in.
//!
//! The map is persistent (`imbl::OrdMap`): each manifest snapshot holds its
//! own version, shares almost all nodes with the previous one, and a reader
//! holding an old snapshot keeps seeing exactly the files it was built from.

use crate::cache::ReadError;
use crate::meta::FileRecord;
use crate::sstable::{Entry, FormatError, Table, Value};
use bytes::Bytes;
use imbl::OrdMap;
use std::collections::HashSet;
use std::ops::Bound;
use std::sync::Arc;

/// In-memory cost of one entry beyond its key and value bytes: the map's
/// node share, the sequence, the `Bytes` handles (an estimate, for gauges).
pub const ENTRY_OVERHEAD_BYTES: usize = 96;

/// Whether a manifest row belongs to the WAL tier (a batcher's group commit
/// not yet flushed into L0).
pub fn is_wal(record: &FileRecord) -> bool {
    record.is_wal_tier()
}

/// One WAL object's entries, decoded once.
#[derive(Debug)]
pub struct WalFile {
    pub record: FileRecord,
    entries: Vec<Entry>,
    /// Why the object could not be decoded: while it is live, any key may
    /// be in it, so every read fails DATA_LOSS naming it (invariant 8).
    damage: Option<Arc<ReadError>>,
}

impl WalFile {
    /// Decodes a whole WAL object (every block's checksum is verified, and
    /// the entry counts against its properties); a damaged object is kept
    /// as damaged, never as data.
    pub fn decode(record: FileRecord, bytes: Bytes) -> WalFile {
        let decoded = Table::from_bytes(bytes)
            .and_then(|table| table.iter().collect::<Result<Vec<_>, FormatError>>());
        match decoded {
            Ok(entries) => WalFile {
                record,
                entries,
                damage: None,
            },
            Err(source) => {
                tracing::error!(object = %record.object, error = %source, "a WAL object is corrupt: every read fails DATA_LOSS until it is repaired or removed");
                let object = record.object.clone();
                WalFile {
                    record,
                    entries: Vec::new(),
                    damage: Some(Arc::new(ReadError::Corrupt { object, source })),
                }
            }
        }
    }

    #[cfg(test)]
    pub fn from_entries(record: FileRecord, entries: Vec<Entry>) -> WalFile {
        WalFile {
            record,
            entries,
            damage: None,
        }
    }

    fn mem_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.key.len() + value_len(&e.value) + ENTRY_OVERHEAD_BYTES)
            .sum()
    }
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::Put(v) => v.len(),
        Value::Delete => 0,
    }
}

/// The WAL tier of one manifest snapshot.
#[derive(Clone, Debug, Default)]
pub struct MemTable {
    /// Newest value per key, with the sequence of the WAL file it came from.
    map: OrdMap<Bytes, (u64, Value)>,
    /// The live WAL files, by ascending sequence.
    files: Vec<Arc<WalFile>>,
    /// Estimated memory of the decoded entries.
    mem_bytes: usize,
    /// The damage of a live WAL file that could not be decoded, if any.
    damaged: Option<Arc<ReadError>>,
}

impl MemTable {
    /// Fails while a live WAL file is damaged: it may hold any key.
    pub fn check(&self) -> Result<(), Arc<ReadError>> {
        match &self.damaged {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// The newest value of `key` in the WAL tier (a tombstone is `Delete`).
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.map.get(key).map(|(_, v)| v)
    }

    /// Up to `limit` entries with keys in `(after or start, end)`, in key order.
    pub fn range(
        &self,
        start: &[u8],
        after: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Vec<Entry> {
        let lo = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Included(start),
        };
        let hi = end.map_or(Bound::Unbounded, Bound::Excluded);
        if let (Bound::Excluded(lo) | Bound::Included(lo), Bound::Excluded(hi)) = (lo, hi)
            && lo >= hi
        {
            return Vec::new();
        }
        self.map
            .range::<_, [u8]>((lo, hi))
            .take(limit)
            .map(|(k, (_, v))| Entry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect()
    }

    /// The live WAL files, by ascending sequence.
    pub fn files(&self) -> &[Arc<WalFile>] {
        &self.files
    }

    pub fn contains(&self, id: i64) -> bool {
        self.files.iter().any(|f| f.record.id == id)
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Distinct keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Estimated memory of the decoded entries (keys, values, map nodes).
    pub fn mem_bytes(&self) -> usize {
        self.mem_bytes
    }

    /// The WAL tier after a manifest change: `removed` files leave (a flush
    /// swapped them for an L0 file), `kept` filters what a full reload still
    /// lists, `added` files arrive (any order).
    ///
    /// The usual change is incremental: the flush removes the oldest files (a
    /// prefix by sequence) and commits add newer ones, so entries from files
    /// at or below the removed prefix's highest sequence are dropped and the
    /// new files' entries inserted, newest last. Anything else (a full
    /// reload, a removal out of order) rebuilds the map from the files.
    pub fn next(
        &self,
        removed: &HashSet<i64>,
        kept: impl Fn(i64) -> bool,
        added: Vec<Arc<WalFile>>,
    ) -> MemTable {
        let (gone, stay): (Vec<_>, Vec<_>) = self
            .files
            .iter()
            .cloned()
            .partition(|f| removed.contains(&f.record.id) || !kept(f.record.id));
        let mut added: Vec<Arc<WalFile>> = added
            .into_iter()
            .filter(|f| !self.contains(f.record.id))
            .collect();
        added.sort_by_key(|f| (f.record.seq, f.record.id));
        let prefix_gone = gone.len() == stay_start(&self.files, &gone);
        let newest_stay = stay.last().map_or(0, |f| f.record.seq);
        let appended = added.first().is_none_or(|f| f.record.seq > newest_stay);
        if !(prefix_gone && appended) {
            let mut files = stay;
            files.extend(added);
            return MemTable::build(files);
        }
        let mut next = MemTable {
            map: self.map.clone(),
            damaged: stay.iter().find_map(|f| f.damage.clone()),
            files: stay,
            mem_bytes: self.mem_bytes,
        };
        if let Some(upto) = gone.last().map(|f| f.record.seq) {
            // Only the flushed files' keys can hold entries this old: the
            // cost is the flush's size, not the tier's.
            for e in gone.iter().flat_map(|f| &f.entries) {
                if next.map.get(&e.key).is_some_and(|(seq, _)| *seq <= upto) {
                    next.map.remove(&e.key);
                }
            }
            next.mem_bytes = next.files.iter().map(|f| f.mem_bytes()).sum();
        }
        for file in added {
            next.insert(file);
        }
        next
    }

    fn build(mut files: Vec<Arc<WalFile>>) -> MemTable {
        files.sort_by_key(|f| (f.record.seq, f.record.id));
        let mut table = MemTable::default();
        for file in files {
            table.insert(file);
        }
        table
    }

    /// Adds a file newer than every file held.
    fn insert(&mut self, file: Arc<WalFile>) {
        let seq = file.record.seq;
        for e in &file.entries {
            self.map.insert(e.key.clone(), (seq, e.value.clone()));
        }
        self.mem_bytes += file.mem_bytes();
        if self.damaged.is_none() {
            self.damaged = file.damage.clone();
        }
        self.files.push(file);
    }
}

/// How many of `files`' oldest entries `gone` covers when `gone` is exactly
/// a prefix of `files` (else a number different from `gone.len()`).
fn stay_start(files: &[Arc<WalFile>], gone: &[Arc<WalFile>]) -> usize {
    files
        .iter()
        .zip(gone)
        .take_while(|(f, g)| f.record.id == g.record.id)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::FileKind;

    fn wal(id: i64, seq: u64, entries: &[(&str, Option<&str>)]) -> Arc<WalFile> {
        let record = FileRecord {
            id,
            object: format!("wal/{id}.sst"),
            kind: FileKind::Wal,
            level: 0,
            seq,
            min_key: vec![],
            max_key: vec![],
            entry_count: entries.len() as u64,
            size_bytes: 100,
            added_version: seq,
            removed_version: None,
            created_at_ms: 0,
            removed_at_ms: None,
        };
        let entries = entries
            .iter()
            .map(|(k, v)| Entry {
                key: Bytes::copy_from_slice(k.as_bytes()),
                value: v.map_or(Value::Delete, |v| {
                    Value::Put(Bytes::copy_from_slice(v.as_bytes()))
                }),
            })
            .collect();
        Arc::new(WalFile::from_entries(record, entries))
    }

    fn value(t: &MemTable, key: &str) -> Option<Option<String>> {
        t.get(key.as_bytes()).map(|v| match v {
            Value::Put(v) => Some(String::from_utf8(v.to_vec()).unwrap()),
            Value::Delete => None,
        })
    }

    #[test]
    fn newest_file_wins_and_tombstones_are_kept() {
        let t = MemTable::default().next(
            &HashSet::new(),
            |_| true,
            vec![
                wal(2, 20, &[("a", Some("2")), ("b", None)]),
                wal(
                    1,
                    10,
                    &[("a", Some("1")), ("b", Some("1")), ("c", Some("1"))],
                ),
            ],
        );
        assert_eq!(
            value(&t, "a"),
            Some(Some("2".into())),
            "arrival order does not matter"
        );
        assert_eq!(
            value(&t, "b"),
            Some(None),
            "a tombstone shadows older files"
        );
        assert_eq!(value(&t, "c"), Some(Some("1".into())));
        assert_eq!(value(&t, "d"), None);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn a_flushed_prefix_leaves_only_its_own_entries() {
        let t = MemTable::default().next(
            &HashSet::new(),
            |_| true,
            vec![
                wal(1, 10, &[("a", Some("1")), ("b", Some("1"))]),
                wal(2, 20, &[("a", Some("2"))]),
            ],
        );
        let before = t.clone();
        let t = t.next(
            &HashSet::from([1]),
            |_| true,
            vec![wal(3, 30, &[("c", Some("3"))])],
        );
        assert_eq!(
            value(&t, "a"),
            Some(Some("2".into())),
            "newer than the flush"
        );
        assert_eq!(value(&t, "b"), None, "now served by the L0 file");
        assert_eq!(value(&t, "c"), Some(Some("3".into())));
        assert_eq!(
            value(&before, "b"),
            Some(Some("1".into())),
            "an older snapshot is unchanged"
        );
        let ids: Vec<i64> = t.files().iter().map(|f| f.record.id).collect();
        assert_eq!(ids, vec![2, 3]);
    }

    #[test]
    fn an_out_of_order_removal_rebuilds_correctly() {
        let t = MemTable::default().next(
            &HashSet::new(),
            |_| true,
            vec![
                wal(1, 10, &[("a", Some("1"))]),
                wal(2, 20, &[("a", Some("2")), ("b", Some("2"))]),
                wal(3, 30, &[("c", Some("3"))]),
            ],
        );
        // A full reload that no longer lists file 2.
        let t = t.next(&HashSet::new(), |id| id != 2, vec![]);
        assert_eq!(value(&t, "a"), Some(Some("1".into())));
        assert_eq!(value(&t, "b"), None);
        assert_eq!(value(&t, "c"), Some(Some("3".into())));
    }

    #[test]
    fn a_damaged_wal_file_fails_every_read_until_it_leaves() {
        let record = wal(2, 20, &[]).record.clone();
        let damaged = Arc::new(WalFile::decode(record, Bytes::from_static(b"not a table")));
        let t = MemTable::default().next(
            &HashSet::new(),
            |_| true,
            vec![
                wal(1, 10, &[("a", Some("1"))]),
                damaged,
                wal(3, 30, &[("b", Some("3"))]),
            ],
        );
        let err = t.check().unwrap_err().to_string();
        assert!(err.contains("wal/2.sst"), "{err}");
        assert!(t.get(b"not there").is_none(), "no entries from it");
        let t = t.next(&HashSet::from([1, 2]), |_| true, vec![]);
        assert!(t.check().is_ok(), "flushed away");
    }

    #[test]
    fn ranges_are_ordered_bounded_and_resumable() {
        let t = MemTable::default().next(
            &HashSet::new(),
            |_| true,
            vec![wal(
                1,
                1,
                &[
                    ("a", Some("1")),
                    ("b", None),
                    ("c", Some("1")),
                    ("d", Some("1")),
                ],
            )],
        );
        let keys = |v: Vec<Entry>| -> Vec<String> {
            v.into_iter()
                .map(|e| String::from_utf8(e.key.to_vec()).unwrap())
                .collect()
        };
        assert_eq!(keys(t.range(b"b", None, Some(b"d"), 10)), vec!["b", "c"]);
        assert_eq!(keys(t.range(b"a", Some(b"b"), None, 1)), vec!["c"]);
        assert!(t.range(b"d", None, Some(b"a"), 10).is_empty());
    }
}
