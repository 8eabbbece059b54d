//! The block index: for each data block, in file order, the block's last key and its length.
//!
//! Contents: one record per data block until the end of the contents:
//! `varint shared | varint non_shared | key[shared..] (non_shared bytes) | varint block_len`,
//! where `shared` is the length of the prefix the key shares with the previous record's key
//! (0 for the first). Data blocks are contiguous from file offset 0, so block `i` starts where
//! block `i - 1` ends; offsets are implied, not stored.

use super::coding::{Cursor, put_varint, shared_prefix_len};
use super::frame::TRAILER_LEN;
use super::{BlockHandle, BlockKind, FormatError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockIndex {
    /// Every block's last key, concatenated.
    keys: Vec<u8>,
    /// `keys[key_ends[i - 1]..key_ends[i]]` is block `i`'s last key.
    key_ends: Vec<usize>,
    handles: Vec<BlockHandle>,
}

impl BlockIndex {
    /// Number of data blocks (at least 1 in a decoded index).
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Where data block `i` lives. Panics if `i >= len()`.
    pub fn handle(&self, i: usize) -> BlockHandle {
        self.handles[i]
    }

    /// The last (largest) key of data block `i`. Panics if `i >= len()`.
    pub fn last_key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.key_ends[i - 1] };
        &self.keys[start..self.key_ends[i]]
    }

    /// The only block that can hold `key`: the first whose last key is `>= key`. `None` when
    /// `key` is beyond the table's last key. (A key below the table's first key still maps to
    /// block 0; [`super::TableMeta::may_contain`] rules it out from the properties.)
    pub fn find(&self, key: &[u8]) -> Option<usize> {
        let i = self.seek(key);
        (i < self.len()).then_some(i)
    }

    /// The first block that may hold keys `>= key`; `len()` if there is none.
    pub fn seek(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.last_key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Total length of the data region (where the last block ends).
    pub fn data_len(&self) -> u64 {
        self.handles.last().map_or(0, |h| h.offset + h.len)
    }

    pub fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.keys.capacity()
            + self.key_ends.capacity() * std::mem::size_of::<usize>()
            + self.handles.capacity() * std::mem::size_of::<BlockHandle>()
    }

    pub(crate) fn decode(offset: u64, contents: &[u8]) -> Result<Self, FormatError> {
        let corrupt = |at, reason| FormatError::corrupt(BlockKind::Index, offset, at, reason);
        let mut index = BlockIndex {
            keys: Vec::new(),
            key_ends: Vec::new(),
            handles: Vec::new(),
        };
        let mut cursor = Cursor::new(contents);
        let mut block_offset = 0u64;
        let mut prev_start = 0;
        while !cursor.is_empty() {
            let at = cursor.pos();
            let shared = cursor
                .varint_usize()
                .ok_or_else(|| corrupt(at, "bad shared-length varint"))?;
            let non_shared = cursor
                .varint_usize()
                .ok_or_else(|| corrupt(at, "bad key-length varint"))?;
            let prev_len = index.keys.len() - prev_start;
            if shared > prev_len {
                return Err(corrupt(at, "shared prefix longer than the previous key"));
            }
            let delta = cursor
                .bytes(non_shared)
                .ok_or_else(|| corrupt(at, "key runs past the end"))?;
            let block_len = cursor
                .varint()
                .ok_or_else(|| corrupt(at, "bad block-length varint"))?;
            if block_len <= TRAILER_LEN as u64 {
                return Err(corrupt(at, "block too short to hold a trailer"));
            }

            let start = index.keys.len();
            index
                .keys
                .extend_from_within(prev_start..prev_start + shared);
            index.keys.extend_from_slice(delta);
            let key = &index.keys[start..];
            if key.is_empty() {
                return Err(corrupt(at, "empty key"));
            }
            if start > 0 && index.keys[prev_start..start] >= *key {
                return Err(corrupt(at, "keys not strictly increasing"));
            }
            index.key_ends.push(index.keys.len());
            index.handles.push(BlockHandle {
                offset: block_offset,
                len: block_len,
            });
            block_offset = block_offset
                .checked_add(block_len)
                .ok_or_else(|| corrupt(at, "data region length overflows"))?;
            prev_start = start;
        }
        if index.is_empty() {
            return Err(corrupt(0, "no data blocks"));
        }
        index.keys.shrink_to_fit();
        Ok(index)
    }
}

/// Builds index-block contents while the writer emits data blocks.
#[derive(Default)]
pub(crate) struct IndexBuilder {
    buf: Vec<u8>,
    prev_key: Vec<u8>,
}

impl IndexBuilder {
    pub(crate) fn add(&mut self, last_key: &[u8], block_len: u64) {
        let shared = shared_prefix_len(&self.prev_key, last_key);
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, (last_key.len() - shared) as u64);
        self.buf.extend_from_slice(&last_key[shared..]);
        put_varint(&mut self.buf, block_len);
        self.prev_key.clear();
        self.prev_key.extend_from_slice(last_key);
    }

    pub(crate) fn contents(&self) -> &[u8] {
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(blocks: &[(&[u8], u64)]) -> BlockIndex {
        let mut b = IndexBuilder::default();
        for &(key, len) in blocks {
            b.add(key, len);
        }
        BlockIndex::decode(0, b.contents()).unwrap()
    }

    #[test]
    fn find_and_seek() {
        let index = build(&[(b"apple", 100), (b"applesauce", 50), (b"banana", 70)]);
        assert_eq!(index.len(), 3);
        assert_eq!(index.last_key(1), b"applesauce");
        assert_eq!(
            index.handle(2),
            BlockHandle {
                offset: 150,
                len: 70
            }
        );
        assert_eq!(index.data_len(), 220);
        assert_eq!(index.find(b"a"), Some(0));
        assert_eq!(index.find(b"apple"), Some(0));
        assert_eq!(index.find(b"apple\0"), Some(1));
        assert_eq!(index.find(b"applesauce"), Some(1));
        assert_eq!(index.find(b"b"), Some(2));
        assert_eq!(index.find(b"banana"), Some(2));
        assert_eq!(index.find(b"banana\0"), None);
        assert_eq!(index.seek(b"banana\0"), 3);
        assert_eq!(index.seek(b""), 0);
    }

    #[test]
    fn rejects_malformed_contents() {
        let cases: &[(&[u8], &str)] = &[
            (&[], "no data blocks"),
            (
                &[1, 1, b'a', 9],
                "shared prefix longer than the previous key",
            ),
            (&[0, 0, 9], "empty key"),
            (
                &[0, 1, b'b', 9, 0, 1, b'a', 9],
                "keys not strictly increasing",
            ),
            (&[0, 1, b'b', 9, 1, 0, 9], "keys not strictly increasing"),
            (&[0, 1, b'a', 5], "block too short to hold a trailer"),
            (&[0, 5, b'a'], "key runs past the end"),
            (&[0, 1, b'a'], "bad block-length varint"),
        ];
        for &(contents, reason) in cases {
            match BlockIndex::decode(0, contents) {
                Err(FormatError::Corrupt { reason: r, .. }) => {
                    assert_eq!(r, reason, "{contents:?}")
                }
                other => panic!("{contents:?}: {other:?}"),
            }
        }
    }
}
