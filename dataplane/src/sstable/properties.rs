//! Table-wide facts a reader needs without touching data blocks: key range (to skip tables),
//! counts (to plan compactions) and the sequence range (to order tables).
//!
//! Contents, in this order, nothing after:
//! `varint len | min_key | varint len | max_key`, then varints `entry_count, tombstone_count,
//! min_seq, max_seq, data_bytes, data_block_count, raw_key_bytes, raw_value_bytes`, then
//! `compression: u8`.

use bytes::Bytes;

use super::coding::{Cursor, put_varint};
use super::{BlockKind, Compression, FormatError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Properties {
    /// First key of the table.
    pub min_key: Bytes,
    /// Last key of the table.
    pub max_key: Bytes,
    /// Entries, tombstones included.
    pub entry_count: u64,
    pub tombstone_count: u64,
    /// Sequence range of the writes in this table, as given to [`super::Writer::finish`].
    pub min_seq: u64,
    pub max_seq: u64,
    /// On-disk size of the data region (all data blocks, framed and compressed).
    pub data_bytes: u64,
    pub data_block_count: u64,
    /// Sum of key lengths, uncompressed.
    pub raw_key_bytes: u64,
    /// Sum of value lengths, uncompressed (tombstones count 0).
    pub raw_value_bytes: u64,
    /// What the writer was asked for; each block's own type byte says how it is stored.
    pub compression: Compression,
}

impl Properties {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.min_key.len() + self.max_key.len() + 64);
        for key in [&self.min_key, &self.max_key] {
            put_varint(&mut out, key.len() as u64);
            out.extend_from_slice(key);
        }
        for v in [
            self.entry_count,
            self.tombstone_count,
            self.min_seq,
            self.max_seq,
            self.data_bytes,
            self.data_block_count,
            self.raw_key_bytes,
            self.raw_value_bytes,
        ] {
            put_varint(&mut out, v);
        }
        out.push(self.compression.tag());
        out
    }

    pub(crate) fn decode(offset: u64, contents: &[u8]) -> Result<Self, FormatError> {
        let corrupt = |at, reason| FormatError::corrupt(BlockKind::Properties, offset, at, reason);
        let mut c = Cursor::new(contents);
        let key = |c: &mut Cursor| {
            let at = c.pos();
            let len = c
                .varint_usize()
                .ok_or_else(|| corrupt(at, "bad key-length varint"))?;
            let key = c
                .bytes(len)
                .ok_or_else(|| corrupt(at, "key runs past the end"))?;
            Ok::<_, FormatError>(Bytes::copy_from_slice(key))
        };
        let min_key = key(&mut c)?;
        let max_key = key(&mut c)?;
        let mut counters = [0u64; 8];
        for counter in &mut counters {
            let at = c.pos();
            *counter = c
                .varint()
                .ok_or_else(|| corrupt(at, "bad counter varint"))?;
        }
        let at = c.pos();
        let tag = c
            .u8()
            .ok_or_else(|| corrupt(at, "missing compression byte"))?;
        let compression =
            Compression::from_tag(tag).ok_or_else(|| corrupt(at, "unknown compression"))?;
        if !c.is_empty() {
            return Err(corrupt(c.pos(), "trailing bytes"));
        }
        let [
            entry_count,
            tombstone_count,
            min_seq,
            max_seq,
            data_bytes,
            data_block_count,
            raw_key_bytes,
            raw_value_bytes,
        ] = counters;
        let props = Properties {
            min_key,
            max_key,
            entry_count,
            tombstone_count,
            min_seq,
            max_seq,
            data_bytes,
            data_block_count,
            raw_key_bytes,
            raw_value_bytes,
            compression,
        };
        props.check().map_err(|reason| corrupt(0, reason))?;
        Ok(props)
    }

    /// Relations every table satisfies, checked so a reader can rely on them.
    fn check(&self) -> Result<(), &'static str> {
        if self.min_key.is_empty() {
            return Err("empty min_key");
        }
        if self.min_key > self.max_key {
            return Err("min_key above max_key");
        }
        if self.data_block_count == 0 || self.entry_count < self.data_block_count {
            return Err("fewer entries than data blocks");
        }
        if self.tombstone_count > self.entry_count {
            return Err("more tombstones than entries");
        }
        if self.min_seq > self.max_seq {
            return Err("min_seq above max_seq");
        }
        if self.entry_count > 1 && self.min_key == self.max_key {
            return Err("several entries but one key");
        }
        Ok(())
    }

    pub fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.min_key.len() + self.max_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Properties {
        Properties {
            min_key: Bytes::from_static(b"a"),
            max_key: Bytes::from_static(b"zz"),
            entry_count: 10,
            tombstone_count: 3,
            min_seq: 5,
            max_seq: 9,
            data_bytes: 1234,
            data_block_count: 2,
            raw_key_bytes: 20,
            raw_value_bytes: 300,
            compression: Compression::Lz4,
        }
    }

    #[test]
    fn round_trips() {
        let props = sample();
        assert_eq!(Properties::decode(0, &props.encode()).unwrap(), props);
    }

    #[test]
    fn rejects_inconsistent_or_malformed() {
        let broken: [fn(&mut Properties); 5] = [
            |p| p.min_key = Bytes::new(),
            |p| p.max_key = Bytes::from_static(b"0"),
            |p| p.tombstone_count = 11,
            |p| p.min_seq = 10,
            |p| p.data_block_count = 0,
        ];
        for breakage in broken {
            let mut p = sample();
            breakage(&mut p);
            assert!(Properties::decode(0, &p.encode()).is_err(), "{p:?}");
        }
        let mut trailing = sample().encode();
        trailing.push(0);
        assert!(Properties::decode(0, &trailing).is_err());
        let full = sample().encode();
        for len in 0..full.len() {
            assert!(Properties::decode(0, &full[..len]).is_err(), "prefix {len}");
        }
    }
}
