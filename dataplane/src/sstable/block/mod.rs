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

use std::ops::Range;

use bytes::Bytes;

use super::coding::Cursor;
use super::{BlockHandle, BlockKind, Entry, FormatError, Value, frame};

mod builder;
pub(crate) use builder::BlockBuilder;

/// A decoded, fully validated data block. Validation happens once, in [`DataBlock::decode`], so
/// lookups and iteration are infallible.
///
/// Decoding also expands every key once into `keys`: a point read then binary-searches whole
/// keys instead of decoding up to a restart interval of prefix-compressed entries (the block
/// search was the largest item of a warm read's profile), and iteration hands out keys as
/// slices without copying. The price is the key bytes a second time plus 8 bytes per entry.
#[derive(Clone, Debug)]
pub struct DataBlock {
    contents: Bytes,
    /// Every entry's full key, concatenated in order.
    keys: Bytes,
    /// End of entry `i`'s key in `keys`.
    key_ends: Vec<u32>,
    /// Offset of entry `i` in `contents`.
    entry_starts: Vec<u32>,
}

/// One entry as laid out in the contents, before prefix expansion.
struct RawEntry {
    shared: usize,
    delta: Range<usize>,
    /// `None` for a tombstone.
    value: Option<Range<usize>>,
    next: usize,
}

/// The layout of a block's contents, used while validating it.
struct Layout<'a> {
    contents: &'a [u8],
    entries_end: usize,
    num_restarts: usize,
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
        if u32::try_from(contents.len()).is_err() {
            return Err((0, "block larger than 4 GiB"));
        }
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
        let layout = Layout {
            contents: &contents,
            entries_end,
            num_restarts,
        };
        let (mut keys, key_ends, entry_starts) = layout.validate_entries()?;
        // The cache weighs blocks by `mem_size`: keep capacity equal to length.
        keys.shrink_to_fit();
        Ok(DataBlock {
            contents: contents.slice(..entries_end),
            keys: Bytes::from(keys),
            key_ends,
            entry_starts,
        })
    }

    /// The full key of entry `i` (`i < len`).
    fn key(&self, i: usize) -> &[u8] {
        &self.keys[self.key_range(i)]
    }

    fn key_range(&self, i: usize) -> Range<usize> {
        let start = if i == 0 {
            0
        } else {
            self.key_ends[i - 1] as usize
        };
        start..self.key_ends[i] as usize
    }

    /// Index of the first entry whose key is `>= key` (`len` if none).
    fn lower_bound(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The value of entry `i`; entries were validated at decode, so parsing cannot fail.
    fn value(&self, i: usize) -> Value {
        let layout = Layout {
            contents: &self.contents,
            entries_end: self.contents.len(),
            num_restarts: 0,
        };
        match layout
            .parse(self.entry_starts[i] as usize)
            .and_then(|e| e.value)
        {
            None => Value::Delete,
            Some(range) => Value::Put(self.contents.slice(range)),
        }
    }

    /// The value stored for `key`, if this block holds it.
    pub fn get(&self, key: &[u8]) -> Option<Value> {
        let i = self.lower_bound(key);
        (i < self.len() && self.key(i) == key).then(|| self.value(i))
    }

    fn entry(&self, i: usize) -> Entry {
        Entry {
            key: self.keys.slice(self.key_range(i)),
            value: self.value(i),
        }
    }

    /// All entries, in key order.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        (0..self.len()).map(|i| self.entry(i))
    }

    /// Entries with keys `>= key`, in key order.
    pub fn entries_from(&self, key: &[u8]) -> impl Iterator<Item = Entry> + '_ {
        (self.lower_bound(key)..self.len()).map(|i| self.entry(i))
    }

    /// Owning iteration, for callers that keep the block only to drain it.
    pub fn into_entries(self) -> IntoEntries {
        IntoEntries {
            block: self,
            next: 0,
        }
    }

    /// Owning iteration over entries with keys `>= key`.
    pub fn into_entries_from(self, key: &[u8]) -> IntoEntries {
        let next = self.lower_bound(key);
        IntoEntries { block: self, next }
    }

    /// Number of entries (at least 1).
    pub fn len(&self) -> usize {
        self.key_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.key_ends.is_empty()
    }

    pub fn first_key(&self) -> &[u8] {
        self.key(0)
    }

    pub fn last_key(&self) -> &[u8] {
        self.key(self.len() - 1)
    }

    /// Bytes held in memory, for cache weighting.
    pub fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.contents.len()
            + self.keys.len()
            + 4 * (self.key_ends.capacity() + self.entry_starts.capacity())
    }
}

type Expanded = (Vec<u8>, Vec<u32>, Vec<u32>);

impl Layout<'_> {
    /// Walks every entry: varints and lengths in bounds, restart points on entry boundaries with
    /// `shared == 0`, keys non-empty and strictly increasing. Returns every key expanded, the
    /// end of each in that buffer, and the start of each entry.
    fn validate_entries(&self) -> Result<Expanded, (usize, &'static str)> {
        if self.restart(0) != 0 {
            return Err((self.entries_end, "first restart point is not 0"));
        }
        let (mut keys, mut key_ends, mut entry_starts) = (Vec::new(), Vec::new(), Vec::new());
        let mut key_start = 0;
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
            let previous = key_start..keys.len();
            if e.shared > previous.len() {
                return Err((pos, "shared prefix longer than the previous key"));
            }
            let delta = &self.contents[e.delta.clone()];
            if !entry_starts.is_empty() && delta <= &keys[previous.start + e.shared..] {
                return Err((pos, "keys not strictly increasing"));
            }
            keys.extend_from_within(previous.start..previous.start + e.shared);
            keys.extend_from_slice(delta);
            key_start = previous.end;
            if keys.len() == key_start {
                return Err((pos, "empty key"));
            }
            // Entry offsets fit in u32 (the block is under 4 GiB); expanded keys can
            // add up to more than the block, so their ends are checked.
            let end = u32::try_from(keys.len()).map_err(|_| (pos, "expanded keys exceed 4 GiB"))?;
            key_ends.push(end);
            entry_starts.push(pos as u32);
            pos = e.next;
        }
        if next_restart != self.num_restarts {
            return Err((self.entries_end, "restart point past the last entry"));
        }
        Ok((keys, key_ends, entry_starts))
    }

    /// Offset of restart point `i` (`i < num_restarts`).
    fn restart(&self, i: usize) -> usize {
        let mut c = Cursor::at(self.contents, self.entries_end + 4 * i);
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
}

/// Owning iterator over a block's entries.
pub struct IntoEntries {
    block: DataBlock,
    next: usize,
}

impl Iterator for IntoEntries {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        let i = self.next;
        (i < self.block.len()).then(|| {
            self.next += 1;
            self.block.entry(i)
        })
    }
}

#[cfg(test)]
mod tests;
