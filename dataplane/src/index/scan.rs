//! Range reads: a k-way merge over every file that overlaps the range, in key
//! order; for a key present in several files the newest wins, and tombstones
//! hide the key. Blocks are fetched lazily, one at a time per file.

use super::manifest::{LiveFile, Manifest};
use super::memtable::MemTable;
use crate::cache::{BlockCache, ReadError};
use crate::sstable::{Entry, TableMeta, Value};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;

/// A key range `[start, end)`; `end = None` is unbounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// The intersection of `[start, end)` and the keys having `prefix`.
    pub fn new(start: &[u8], end: Option<&[u8]>, prefix: &[u8]) -> KeyRange {
        let start = start.max(prefix).to_vec();
        let end = match (end, prefix_end(prefix)) {
            (Some(a), Some(b)) => Some(a.min(b.as_slice()).to_vec()),
            (Some(a), None) => Some(a.to_vec()),
            (None, b) => b,
        };
        KeyRange { start, end }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }

    pub fn is_empty(&self) -> bool {
        self.end
            .as_deref()
            .is_some_and(|end| end <= self.start.as_slice())
    }
}

/// The smallest key greater than every key with `prefix` (None: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Budget of one page.
#[derive(Clone, Copy, Debug)]
pub struct PageLimits {
    pub max_items: usize,
    pub max_bytes: usize,
}

#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<(Bytes, Bytes)>,
    /// Set when the page stopped early: continue strictly after this key.
    pub resume_after: Option<Bytes>,
    /// The version of the manifest the page was read from (set by the index).
    pub version: u64,
}

/// The most entries buffered at a time from the WAL tier in memory. A scan
/// starts with a chunk of about one page and doubles it per refill: copying
/// 256 entries (refcount traffic on shared keys and values) for a 10-item
/// page was a quarter of a small scan's CPU.
const MEM_CHUNK: usize = 256;

/// Where a cursor's entries come from.
enum Source {
    /// One file, a block at a time.
    File {
        file: Arc<LiveFile>,
        table: Arc<TableMeta>,
        next_block: usize,
    },
    /// The WAL tier in memory, a chunk at a time after the last key taken.
    Mem {
        last: Option<Bytes>,
        done: bool,
        chunk: usize,
    },
}

/// Reads one source's entries from a start key on.
struct Cursor {
    /// Lower is newer: the WAL tier is 0, files follow in read order.
    rank: usize,
    source: Source,
    buffered: VecDeque<Entry>,
}

impl Cursor {
    /// Makes sure the cursor has a head entry unless the source is exhausted.
    async fn fill(
        &mut self,
        cache: &BlockCache,
        mem: &MemTable,
        range: &KeyRange,
    ) -> Result<(), Arc<ReadError>> {
        if !self.buffered.is_empty() {
            return Ok(());
        }
        match &mut self.source {
            Source::File {
                file,
                table,
                next_block,
            } => {
                while self.buffered.is_empty() && *next_block < table.index.len() {
                    let block = cache.block(&file.object, table, *next_block).await?;
                    *next_block += 1;
                    self.buffered.extend(block.entries_from(&range.start));
                }
            }
            Source::Mem { last, done, chunk } if !*done => {
                let entries =
                    mem.range(&range.start, last.as_deref(), range.end.as_deref(), *chunk);
                *done = entries.len() < *chunk;
                *last = entries.last().map(|e| e.key.clone());
                *chunk = (*chunk * 2).min(MEM_CHUNK);
                self.buffered.extend(entries);
            }
            Source::Mem { .. } => {}
        }
        Ok(())
    }

    fn head(&self) -> Option<&Entry> {
        self.buffered.front()
    }
}

pub async fn scan(
    cache: &BlockCache,
    manifest: &Manifest,
    range: &KeyRange,
    limits: PageLimits,
) -> Result<Page, Arc<ReadError>> {
    let mut page = Page::default();
    if range.is_empty() || limits.max_items == 0 {
        return Ok(page);
    }
    manifest.mem.check()?;
    let mut cursors = open_cursors(cache, manifest, range, limits.max_items).await?;
    let mut bytes = 0usize;
    loop {
        for c in cursors.iter_mut() {
            c.fill(cache, &manifest.mem, range).await?;
        }
        cursors.retain(|c| c.head().is_some());
        // The smallest head key; among equal keys the newest file (lowest rank).
        let Some(winner) = cursors
            .iter()
            .min_by(|a, b| (&a.head().unwrap().key, a.rank).cmp(&(&b.head().unwrap().key, b.rank)))
        else {
            break;
        };
        let entry = winner
            .head()
            .cloned()
            .expect("retained cursors have a head");
        if !range.contains(&entry.key) {
            break;
        }
        for c in cursors.iter_mut() {
            if c.head().is_some_and(|h| h.key == entry.key) {
                c.buffered.pop_front();
            }
        }
        if let Value::Put(value) = entry.value {
            if page.items.len() == limits.max_items
                || (bytes >= limits.max_bytes && !page.items.is_empty())
            {
                page.resume_after = page.items.last().map(|(k, _)| k.clone());
                break;
            }
            bytes += entry.key.len() + value.len();
            page.items.push((entry.key, value));
        }
    }
    Ok(page)
}

async fn open_cursors(
    cache: &BlockCache,
    manifest: &Manifest,
    range: &KeyRange,
    page_items: usize,
) -> Result<Vec<Cursor>, Arc<ReadError>> {
    let mut cursors = vec![Cursor {
        rank: 0,
        source: Source::Mem {
            last: None,
            done: manifest.mem.is_empty(),
            // One more than a page: deletes and shadowed keys usually fit too.
            chunk: page_items.saturating_add(1).clamp(8, MEM_CHUNK),
        },
        buffered: VecDeque::new(),
    }];
    for (i, file) in manifest.files.iter().enumerate() {
        if !file.overlaps(&range.start, range.end.as_deref()) {
            continue;
        }
        let table = cache.table(&file.object).await?;
        let first = table.index.seek(&range.start);
        cursors.push(Cursor {
            rank: i + 1,
            source: Source::File {
                file: file.clone(),
                table,
                next_block: first,
            },
            buffered: VecDeque::new(),
        });
    }
    Ok(cursors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_intersect_prefixes() {
        let r = KeyRange::new(b"", None, b"ab");
        assert_eq!(
            r,
            KeyRange {
                start: b"ab".to_vec(),
                end: Some(b"ac".to_vec())
            }
        );
        assert!(r.contains(b"ab") && r.contains(b"ab\xff") && !r.contains(b"ac"));
        let r = KeyRange::new(b"b", Some(b"c"), b"");
        assert!(r.contains(b"b") && !r.contains(b"c") && !r.contains(b"a"));
        assert!(KeyRange::new(b"c", Some(b"b"), b"").is_empty());
        assert_eq!(KeyRange::new(b"", None, b"\xff\xff").end, None);
        assert_eq!(KeyRange::new(b"", None, b"a\xff").end, Some(b"b".to_vec()));
    }
}
