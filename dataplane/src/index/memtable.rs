//! The WAL tier in memory (docs/decisions/0008-wal-tier.md).
//!
//! Every group commit is one WAL object: the unit of durability. Readers do
//! not consult WAL objects as files; the index decodes each live WAL object
//! once, when it first sees it in the manifest, and merges its entries into
//! one ordered map (newest value per key). A point read then costs one map
//! lookup for the whole WAL tier, however many commits it holds, and a scan
//! one more cursor. A background flush (`compaction::flush`) merges the
//! oldest WAL objects into one L0 file and swaps them out in one transaction.
//! The entries they held leave the map a little later, a bounded number per
//! manifest change ([`MemTable::next`]): until then the map still answers for
//! them with exactly what the new L0 file holds (an entry is pruned only
//! while no newer WAL entry replaced it), so reads stay right, and no catch-up
//! pays for a whole flush at once (removing ~2,000 commits' entries in one go
//! took 0.3–0.7 s, during which reads waiting for a sequence waited too).
//!
//! The map is persistent (`imbl::OrdMap`): each manifest snapshot holds its
//! own version, shares almost all nodes with the previous one, and a reader
//! holding an old snapshot keeps seeing exactly the files it was built from.

use crate::cache::ReadError;
use crate::meta::FileRecord;
use crate::sstable::{Entry, FormatError, Table, Value};
use bytes::Bytes;
use imbl::{OrdMap, Vector};
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

/// Flushed entries pruned from the map per manifest change, at least; more
/// when the change adds more (twice what it adds), so pruning keeps up.
const PRUNE_PER_CHANGE: usize = 1024;

/// One WAL object's entries, decoded once.
#[derive(Debug)]
pub struct WalFile {
    pub record: FileRecord,
    entries: Vec<Entry>,
    /// Estimated memory of `entries` (see [`ENTRY_OVERHEAD_BYTES`]).
    mem_bytes: usize,
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
                mem_bytes: entries_mem_bytes(&entries),
                entries,
                damage: None,
            },
            Err(source) => {
                tracing::error!(object = %record.object, error = %source, "a WAL object is corrupt: every read fails DATA_LOSS until it is repaired or removed");
                let object = record.object.clone();
                WalFile {
                    record,
                    entries: Vec::new(),
                    mem_bytes: 0,
                    damage: Some(Arc::new(ReadError::Corrupt { object, source })),
                }
            }
        }
    }

    #[cfg(test)]
    pub fn from_entries(record: FileRecord, entries: Vec<Entry>) -> WalFile {
        WalFile {
            record,
            mem_bytes: entries_mem_bytes(&entries),
            entries,
            damage: None,
        }
    }
}

fn entries_mem_bytes(entries: &[Entry]) -> usize {
    entries
        .iter()
        .map(|e| e.key.len() + value_len(&e.value) + ENTRY_OVERHEAD_BYTES)
        .sum()
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
    /// The live WAL files, by ascending sequence (persistent: a manifest
    /// change copies no more than it changes).
    files: Vector<Arc<WalFile>>,
    /// Estimated memory of the decoded entries.
    mem_bytes: usize,
    /// The damage of a live WAL file that could not be decoded, if any.
    damaged: Option<Arc<ReadError>>,
    /// Flushed files whose entries may still be in `map`, oldest first, each
    /// with the highest sequence its flush covered: an entry of theirs is
    /// removed only while the map's entry for that key is that old.
    pruning: Vector<(u64, Arc<WalFile>)>,
    /// How many entries of the first file in `pruning` are done.
    pruned: usize,
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
    pub fn files(&self) -> &Vector<Arc<WalFile>> {
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
        let leaving = |f: &Arc<WalFile>| removed.contains(&f.record.id) || !kept(f.record.id);
        let prefix = self.files.iter().take_while(|f| leaving(f)).count();
        let other_gone = self.files.iter().skip(prefix).any(leaving);
        let mut added: Vec<Arc<WalFile>> = added
            .into_iter()
            .filter(|f| !self.contains(f.record.id))
            .collect();
        added.sort_by_key(|f| (f.record.seq, f.record.id));
        let newest_stay = match self.files.last() {
            Some(f) if prefix < self.files.len() => f.record.seq,
            _ => 0,
        };
        let appended = added.first().is_none_or(|f| f.record.seq > newest_stay);
        if other_gone || !appended {
            let mut files: Vec<_> = self.files.iter().filter(|f| !leaving(f)).cloned().collect();
            files.extend(added);
            return MemTable::build(files);
        }
        let stay = self.files.skip(prefix);
        let gone = self.files.take(prefix);
        let damaged = if gone.is_empty() {
            self.damaged.clone()
        } else {
            stay.iter().find_map(|f| f.damage.clone())
        };
        let mut next = MemTable {
            map: self.map.clone(),
            damaged,
            files: stay,
            mem_bytes: self.mem_bytes,
            pruning: self.pruning.clone(),
            pruned: self.pruned,
        };
        if let Some(upto) = gone.last().map(|f| f.record.seq) {
            // Only the flushed files' keys can hold entries this old: the
            // cost is the flush's size, not the tier's, spread over the
            // next changes.
            next.pruning.extend(gone.into_iter().map(|f| (upto, f)));
        }
        let mut budget = PRUNE_PER_CHANGE;
        for file in added {
            budget = budget.max(2 * file.entries.len());
            next.insert(file);
        }
        next.prune(budget);
        next
    }

    /// The same table with up to [`PRUNE_PER_CHANGE`] more flushed entries
    /// pruned, or `None` when none wait: an index that sees no more commits
    /// finishes what the last manifest changes started.
    pub fn pruned_more(&self) -> Option<MemTable> {
        if self.pruning.is_empty() {
            return None;
        }
        let mut next = self.clone();
        next.prune(PRUNE_PER_CHANGE);
        Some(next)
    }

    /// Removes up to `budget` flushed entries from the map (see `pruning`).
    fn prune(&mut self, mut budget: usize) {
        while budget > 0 {
            let Some((upto, file)) = self.pruning.front() else {
                return;
            };
            let end = file.entries.len().min(self.pruned + budget);
            for e in &file.entries[self.pruned..end] {
                if self.map.get(&e.key).is_some_and(|(seq, _)| seq <= upto) {
                    self.map.remove(&e.key);
                }
            }
            budget -= end - self.pruned;
            self.pruned = end;
            if end == file.entries.len() {
                self.mem_bytes = self.mem_bytes.saturating_sub(file.mem_bytes);
                self.pruning.pop_front();
                self.pruned = 0;
            }
        }
    }

    /// Flushed entries still waiting to leave the map.
    #[cfg(test)]
    fn pending_prune(&self) -> usize {
        self.pruning
            .iter()
            .map(|(_, f)| f.entries.len())
            .sum::<usize>()
            - self.pruned
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
        self.mem_bytes += file.mem_bytes;
        if self.damaged.is_none() {
            self.damaged = file.damage.clone();
        }
        self.files.push_back(file);
    }
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
            tombstone_count: 0,
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

    /// A large flush leaves the map over several changes; meanwhile its
    /// keys still read their (flushed, identical) values, and a key written
    /// again after the flush keeps its newer value.
    #[test]
    fn a_large_flush_is_pruned_a_budget_at_a_time() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("k{i:05}")).collect();
        let big: Vec<(&str, Option<&str>)> =
            keys.iter().map(|k| (k.as_str(), Some("old"))).collect();
        let t = MemTable::default().next(&HashSet::new(), |_| true, vec![wal(1, 10, &big)]);
        let full_bytes = t.mem_bytes();
        let t = t.next(&HashSet::from([1]), |_| true, vec![]);
        assert_eq!(t.pending_prune(), 10_000 - PRUNE_PER_CHANGE);
        assert_eq!(
            value(&t, "k09999"),
            Some(Some("old".into())),
            "not pruned yet"
        );
        let t = t.next(
            &HashSet::new(),
            |_| true,
            vec![wal(2, 20, &[("k09999", Some("new"))])],
        );
        // Half through manifest changes, the rest while idle.
        let mut t = t;
        for _ in 0..10_000 / PRUNE_PER_CHANGE / 2 {
            t = t.next(&HashSet::new(), |_| true, vec![]);
        }
        while let Some(next) = t.pruned_more() {
            assert!(next.pending_prune() < t.pending_prune(), "progress");
            t = next;
        }
        assert_eq!(t.pending_prune(), 0);
        assert_eq!(value(&t, "k00000"), None, "pruned");
        assert_eq!(
            value(&t, "k09999"),
            Some(Some("new".into())),
            "written after the flush"
        );
        assert_eq!(t.len(), 1);
        assert!(
            t.mem_bytes() < full_bytes / 100,
            "{} of {full_bytes}",
            t.mem_bytes()
        );
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
