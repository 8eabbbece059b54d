//! SSTable: the immutable sorted file every SkyVault write and compaction produces.
//!
//! The byte-level format is specified in `docs/format.md`; this module is its reference
//! implementation. Everything here is pure: no I/O, no async. A reader fetches byte ranges from
//! the object store and hands them to the decoders:
//!
//! 1. the last [`FOOTER_LEN`] bytes → [`Footer::decode`],
//! 2. [`Footer::meta_range`] → [`TableMeta::decode`] (block index, bloom filter, properties),
//! 3. one data block per point lookup: [`BlockIndex::find`] → [`DataBlock::decode`] →
//!    [`DataBlock::get`].
//!
//! [`Table`] wraps the whole file when it is already in memory (tests, compaction, local reads).
//!
//! Every structure carries a crc32c, and every decoder validates lengths before it reads or
//! allocates, so corrupt input yields a [`FormatError`], never a panic and never wrong data
//! (design invariant 8).

mod block;
mod bloom;
mod coding;
mod error;
mod footer;
mod frame;
mod hash;
mod index;
mod meta;
mod properties;
mod table;
mod writer;

#[cfg(test)]
mod tests;

pub use block::{DataBlock, IntoEntries};
pub use bloom::{BloomFilter, key_hash};
pub use bytes::Bytes;
pub use error::{BlockKind, FormatError};
pub use footer::{FOOTER_LEN, FORMAT_VERSION, Footer, MAGIC};
pub use frame::MAX_BLOCK_CONTENTS_LEN;
pub use hash::xxh64;
pub use index::BlockIndex;
pub use meta::TableMeta;
pub use properties::Properties;
pub use table::{Table, TableIter};
pub use writer::Writer;

/// Longest key [`Writer::add`] accepts. Keys live uncompressed in the index and the properties,
/// which every reader keeps in memory, so they are kept small.
pub const MAX_KEY_LEN: usize = 64 * 1024;
/// Longest value [`Writer::add`] accepts. Bounded so that one entry always fits in a block whose
/// decompressed size stays under [`MAX_BLOCK_CONTENTS_LEN`].
pub const MAX_VALUE_LEN: usize = 32 * 1024 * 1024;

/// What a key maps to. A tombstone is a distinct state, never an empty value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Put(Bytes),
    Delete,
}

impl Value {
    pub fn is_delete(&self) -> bool {
        matches!(self, Value::Delete)
    }
}

/// One key/value pair as stored in a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Bytes,
    pub value: Value,
}

/// Compression applied to each block before it is checksummed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    None,
    #[default]
    Lz4,
}

impl Compression {
    /// The on-disk tag, shared by the block trailer and the properties block.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            _ => None,
        }
    }
}

/// How [`Writer`] lays out a table.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Target uncompressed size of a data block; a block is cut once it reaches this size.
    /// Values above 16 MiB are treated as 16 MiB.
    pub block_size: usize,
    /// Bloom filter bits per key; 0 writes an empty filter that never rules a key out.
    /// Values above 64 are treated as 64.
    pub bloom_bits_per_key: u32,
    pub compression: Compression,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            block_size: 16 * 1024,
            bloom_bits_per_key: 10,
            compression: Compression::Lz4,
        }
    }
}

/// Where a block lives in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockHandle {
    pub offset: u64,
    pub len: u64,
}

impl BlockHandle {
    /// The byte range to fetch from the object store.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset.saturating_add(self.len)
    }
}
