//! Data blocks: sorted entries, prefix-compressed, with restart points for binary search.
//!
//! Contents (before framing, see the `frame` module):
//!
//! ```text
//! entry*  | restart: u32 LE * num_restarts | num_restarts: u32 LE
//! entry   = varint shared | varint non_shared | varint value_tag | key[shared..] | value
//! ```
//!
//! `shared` is the length of the prefix the key shares with the previous entry's key; it is 0
//! at every restart point (the offset of an entry, every 16th entry from the first), so a
//! reader can binary-search restart keys without decoding what precedes them.
//! `value_tag` 0 is a tombstone (no value bytes); `n + 1` is a put of an `n`-byte value.

use std::cmp::Ordering;
use std::ops::Range;

use bytes::Bytes;

use super::coding::Cursor;
use super::{BlockHandle, BlockKind, Entry, FormatError, Value, frame};

mod builder;
pub(crate) use builder::BlockBuilder;

/// A decoded, fully validated data block. Validation happens once, in [`DataBlock::decode`], so
/// lookups and iteration are infallible.
#[derive(Clone, Debug)]
pub struct DataBlock {
    contents: Bytes,
    /// End of the entries, start of the restart array.
    entries_end: usize,
    num_restarts: usize,
    len: usize,
    last_key: Bytes,
}

/// One entry as laid out in the contents, before prefix expansion.
struct RawEntry {
    shared: usize,
    delta: Range<usize>,
    /// `None` for a tombstone.
    value: Option<Range<usize>>,
    next: usize,
}

impl DataBlock {
    /// Verifies the crc of `raw` (exactly the bytes of `handle`), decompresses it and checks
    /// every entry, so that nothing read later can be out of bounds or out of order.
    pub fn decode(handle: BlockHandle, raw: Bytes) -> Result<DataBlock, FormatError> {
        let offset = handle.offset;
        if raw.len() as u64 != handle.len {
            return Err(FormatError::LengthMismatch {
                kind: BlockKind::Data,
                offset,
                expected: handle.len,
                actual: raw.len() as u64,
            });
        }
        let contents = frame::decode_bytes(BlockKind::Data, offset, &raw)?;
        Self::from_contents(contents)
            .map_err(|(at, reason)| FormatError::corrupt(BlockKind::Data, offset, at, reason))
    }

    fn from_contents(contents: Bytes) -> Result<DataBlock, (usize, &'static str)> {
        let mut trailer = Cursor::at(&contents, contents.len().saturating_sub(4));
        let num_restarts = trailer
            .u32_le()
            .ok_or((0, "block shorter than its restart count"))?
            as usize;
        let entries_end = num_restarts
            .checked_mul(4)
            .and_then(|n| contents.len().checked_sub(4 + n))
            .ok_or((0, "restart array larger than the block"))?;
        if num_restarts == 0 {
            return Err((entries_end, "no restart points"));
        }
        let mut block = DataBlock {
            contents,
            entries_end,
            num_restarts,
            len: 0,
            last_key: Bytes::new(),
        };
        let last_key = block.validate_entries()?;
        block.last_key = Bytes::from(last_key);
        Ok(block)
    }

    /// Walks every entry: varints and lengths in bounds, restart points on entry boundaries with
    /// `shared == 0`, keys non-empty and strictly increasing. Returns the last key.
    fn validate_entries(&mut self) -> Result<Vec<u8>, (usize, &'static str)> {
        if self.restart(0) != 0 {
            return Err((self.entries_end, "first restart point is not 0"));
        }
        let mut key = Vec::new();
        let (mut pos, mut next_restart) = (0, 0);
        while pos < self.entries_end {
            let e = self.parse(pos).ok_or((pos, "entry runs past the end"))?;
            if next_restart < self.num_restarts && self.restart(next_restart) == pos {
                if e.shared != 0 {
                    return Err((pos, "restart entry shares a prefix"));
                }
                next_restart += 1;
            } else if next_restart < self.num_restarts && self.restart(next_restart) < pos {
                return Err((pos, "restart point not on an entry boundary"));
            }
            if e.shared > key.len() {
                return Err((pos, "shared prefix longer than the previous key"));
            }
            let delta = &self.contents[e.delta.clone()];
            if self.len > 0 && delta <= &key[e.shared..] {
                return Err((pos, "keys not strictly increasing"));
            }
            key.truncate(e.shared);
            key.extend_from_slice(delta);
            if key.is_empty() {
                return Err((pos, "empty key"));
            }
            self.len += 1;
            pos = e.next;
        }
        if next_restart != self.num_restarts {
            return Err((self.entries_end, "restart point past the last entry"));
        }
        Ok(key)
    }

    /// Offset of restart point `i` (`i < num_restarts`).
    fn restart(&self, i: usize) -> usize {
        let mut c = Cursor::at(&self.contents, self.entries_end + 4 * i);
        c.u32_le().map_or(usize::MAX, |r| r as usize)
    }

    /// Parses the entry at `pos`; `None` if anything lies outside the entries region.
    fn parse(&self, pos: usize) -> Option<RawEntry> {
        let mut c = Cursor::at(self.contents.get(..self.entries_end)?, pos);
        let shared = c.varint_usize()?;
        let non_shared = c.varint_usize()?;
        let tag = c.varint()?;
        let delta_start = c.pos();
        c.bytes(non_shared)?;
        let delta = delta_start..c.pos();
        let value = match tag.checked_sub(1) {
            None => None,
            Some(len) => {
                let start = c.pos();
                c.bytes(usize::try_from(len).ok()?)?;
                Some(start..c.pos())
            }
        };
        Some(RawEntry {
            shared,
            delta,
            value,
            next: c.pos(),
        })
    }

    /// The full key of the entry at restart point `i` (restart entries share no prefix).
    fn restart_key(&self, i: usize) -> &[u8] {
        self.parse(self.restart(i))
            .map_or(&[], |e| &self.contents[e.delta])
    }

    fn value(&self, raw: &RawEntry) -> Value {
        match &raw.value {
            None => Value::Delete,
            Some(range) => Value::Put(self.contents.slice(range.clone())),
        }
    }

    /// Where to start scanning for `key`: the last restart point whose key is `<= key`
    /// (or the first one, if `key` precedes them all).
    fn scan_start(&self, key: &[u8]) -> ScanPos {
        let (mut lo, mut hi) = (0, self.num_restarts);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.restart_key(mid) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        ScanPos {
            pos: self.restart(lo.saturating_sub(1)),
            key: Vec::new(),
        }
    }

    /// Advances `at` past entries below `key`; returns the first entry `>= key`, unread.
    fn skip_below(&self, at: &mut ScanPos, key: &[u8]) -> Option<(RawEntry, Ordering)> {
        while at.pos < self.entries_end {
            let e = self.parse(at.pos)?;
            let prefix = at.key.get(..e.shared)?;
            let ord = cmp_concat(prefix, &self.contents[e.delta.clone()], key);
            if ord != Ordering::Less {
                return Some((e, ord));
            }
            at.apply(&self.contents, &e);
        }
        None
    }

    /// The value stored for `key`, if this block holds it.
    pub fn get(&self, key: &[u8]) -> Option<Value> {
        let mut at = self.scan_start(key);
        match self.skip_below(&mut at, key)? {
            (e, Ordering::Equal) => Some(self.value(&e)),
            _ => None,
        }
    }

    /// All entries, in key order.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        let mut at = ScanPos::default();
        std::iter::from_fn(move || self.next_entry(&mut at))
    }

    /// Entries with keys `>= key`, in key order.
    pub fn entries_from(&self, key: &[u8]) -> impl Iterator<Item = Entry> + '_ {
        let mut at = self.seek(key);
        std::iter::from_fn(move || self.next_entry(&mut at))
    }

    /// Owning iteration, for callers that keep the block only to drain it.
    pub fn into_entries(self) -> IntoEntries {
        IntoEntries {
            block: self,
            at: ScanPos::default(),
        }
    }

    /// Owning iteration over entries with keys `>= key`.
    pub fn into_entries_from(self, key: &[u8]) -> IntoEntries {
        let at = self.seek(key);
        IntoEntries { block: self, at }
    }

    fn seek(&self, key: &[u8]) -> ScanPos {
        let mut at = self.scan_start(key);
        // Leaves `at` on the first entry >= key, or at the end.
        if self.skip_below(&mut at, key).is_none() {
            at.pos = self.entries_end;
        }
        at
    }

    fn next_entry(&self, at: &mut ScanPos) -> Option<Entry> {
        if at.pos >= self.entries_end {
            return None;
        }
        let e = self.parse(at.pos)?;
        at.apply(&self.contents, &e);
        // Keys that share nothing with their predecessor are sliced, not copied.
        let key = if e.shared == 0 {
            self.contents.slice(e.delta.clone())
        } else {
            Bytes::copy_from_slice(&at.key)
        };
        Some(Entry {
            key,
            value: self.value(&e),
        })
    }

    /// Number of entries (at least 1).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn first_key(&self) -> &[u8] {
        self.restart_key(0)
    }

    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Bytes held in memory, for cache weighting.
    pub fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.contents.len() + self.last_key.len()
    }
}

/// A scan position: the offset of the next entry and the full key of the previous one.
#[derive(Default)]
struct ScanPos {
    pos: usize,
    key: Vec<u8>,
}

impl ScanPos {
    fn apply(&mut self, contents: &[u8], e: &RawEntry) {
        self.key.truncate(e.shared);
        self.key.extend_from_slice(&contents[e.delta.clone()]);
        self.pos = e.next;
    }
}

/// Compares `a ++ b` with `target` without concatenating.
fn cmp_concat(a: &[u8], b: &[u8], target: &[u8]) -> Ordering {
    let n = a.len().min(target.len());
    match a[..n].cmp(&target[..n]) {
        Ordering::Equal if a.len() > target.len() => Ordering::Greater,
        Ordering::Equal => b.cmp(&target[a.len()..]),
        unequal => unequal,
    }
}

/// Owning iterator over a block's entries.
pub struct IntoEntries {
    block: DataBlock,
    at: ScanPos,
}

impl Iterator for IntoEntries {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        self.block.next_entry(&mut self.at)
    }
}

#[cfg(test)]
mod tests;
