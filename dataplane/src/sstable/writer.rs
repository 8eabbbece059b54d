//! Builds a table from entries added in key order. The whole file can stay in
//! memory (`finish` returns it), or a streaming writer takes the finished data
//! blocks out as it goes (`take_data`) and `finish` returns only the rest, so
//! memory stays bounded by one block plus the meta region.

use bytes::Bytes;

use super::block::BlockBuilder;
use super::bloom::key_hash;
use super::index::IndexBuilder;
use super::{
    BloomFilter, Compression, FOOTER_LEN, Footer, FormatError, MAX_KEY_LEN, MAX_VALUE_LEN,
    Properties, Value, WriterOptions, frame,
};

/// Upper bound on `block_size`, so that a block plus one maximal entry stays well inside the
/// reader's decompressed-size limit.
const MAX_TARGET_BLOCK_SIZE: usize = 16 * 1024 * 1024;

pub struct Writer {
    opts: WriterOptions,
    /// Finished data blocks not yet taken by `take_data`.
    out: Vec<u8>,
    /// Bytes already handed out by `take_data` (the offset of `out`).
    taken: u64,
    block: BlockBuilder,
    index: IndexBuilder,
    key_hashes: Vec<u64>,
    min_key: Bytes,
    data_block_count: u64,
    entry_count: u64,
    tombstone_count: u64,
    raw_key_bytes: u64,
    raw_value_bytes: u64,
}

impl Writer {
    pub fn new(mut opts: WriterOptions) -> Self {
        opts.block_size = opts.block_size.min(MAX_TARGET_BLOCK_SIZE);
        Writer {
            opts,
            out: Vec::new(),
            taken: 0,
            block: BlockBuilder::default(),
            index: IndexBuilder::default(),
            key_hashes: Vec::new(),
            min_key: Bytes::new(),
            data_block_count: 0,
            entry_count: 0,
            tombstone_count: 0,
            raw_key_bytes: 0,
            raw_value_bytes: 0,
        }
    }

    /// Appends an entry. Keys must be non-empty and strictly increasing (bytewise); on error
    /// nothing is added and the writer can go on.
    pub fn add(&mut self, key: &[u8], value: &Value) -> Result<(), FormatError> {
        self.check_entry(key, value)?;
        if self.entry_count == 0 {
            self.min_key = Bytes::copy_from_slice(key);
        }
        self.block.add(key, value);
        self.key_hashes.push(key_hash(key));
        self.entry_count += 1;
        self.raw_key_bytes += key.len() as u64;
        match value {
            Value::Delete => self.tombstone_count += 1,
            Value::Put(v) => self.raw_value_bytes += v.len() as u64,
        }
        if self.block.estimated_len() >= self.opts.block_size {
            self.flush_block();
        }
        Ok(())
    }

    fn check_entry(&self, key: &[u8], value: &Value) -> Result<(), FormatError> {
        if key.is_empty() {
            return Err(FormatError::EmptyKey);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(FormatError::KeyTooLarge(key.len()));
        }
        if let Value::Put(v) = value
            && v.len() > MAX_VALUE_LEN
        {
            return Err(FormatError::ValueTooLarge(v.len()));
        }
        let prev = self.block.last_key();
        if self.entry_count > 0 && key <= prev {
            return Err(FormatError::KeyOrder {
                prev: Bytes::copy_from_slice(prev),
                key: Bytes::copy_from_slice(key),
            });
        }
        Ok(())
    }

    fn flush_block(&mut self) {
        let contents = self.block.finish();
        let len = frame::encode(&mut self.out, &contents, self.opts.compression);
        self.index.add(self.block.last_key(), len);
        self.data_block_count += 1;
    }

    /// Hands out the finished data blocks so far (the file's next bytes);
    /// later calls and `finish` continue where this one stopped.
    pub fn take_data(&mut self) -> Bytes {
        let data = std::mem::take(&mut self.out);
        self.taken += data.len() as u64;
        Bytes::from(data)
    }

    /// Bytes of finished data blocks not yet taken.
    pub fn pending_data_len(&self) -> usize {
        self.out.len()
    }

    pub fn entry_count(&self) -> u64 {
        self.entry_count
    }

    pub fn tombstone_count(&self) -> u64 {
        self.tombstone_count
    }

    /// Roughly the size `finish` would return now (exact for the data already cut into blocks,
    /// an upper bound for the rest, which may still compress).
    pub fn estimated_size(&self) -> usize {
        let trailers = 4 * frame::TRAILER_LEN;
        let filter = self.key_hashes.len() * self.opts.bloom_bits_per_key.min(64) as usize / 8 + 9;
        let props = 2 * self.block.last_key().len() + 80;
        self.taken as usize
            + self.out.len()
            + self.block.estimated_len()
            + self.index.contents().len()
            + self.block.last_key().len()
            + filter
            + props
            + trailers
            + FOOTER_LEN
    }

    /// Writes the meta region and footer and returns the file's remaining bytes (the whole file
    /// unless `take_data` was called). `min_seq..=max_seq` is the range of write sequence
    /// numbers this table holds, recorded in its properties.
    pub fn finish(mut self, min_seq: u64, max_seq: u64) -> Result<Bytes, FormatError> {
        if min_seq > max_seq {
            return Err(FormatError::SeqRange {
                min: min_seq,
                max: max_seq,
            });
        }
        if self.entry_count == 0 {
            return Err(FormatError::EmptyTable);
        }
        if !self.block.is_empty() {
            self.flush_block();
        }
        let compression = self.opts.compression;
        let meta_offset = self.taken + self.out.len() as u64;
        let index_len = frame::encode(&mut self.out, self.index.contents(), compression);
        // Filter bits are random: compressing them never pays.
        let filter = BloomFilter::build(&self.key_hashes, self.opts.bloom_bits_per_key);
        let filter_len = frame::encode(&mut self.out, &filter, Compression::None);
        let props = Properties {
            min_key: self.min_key.clone(),
            max_key: Bytes::copy_from_slice(self.block.last_key()),
            entry_count: self.entry_count,
            tombstone_count: self.tombstone_count,
            min_seq,
            max_seq,
            data_bytes: meta_offset,
            data_block_count: self.data_block_count,
            raw_key_bytes: self.raw_key_bytes,
            raw_value_bytes: self.raw_value_bytes,
            compression,
        };
        let props_len = frame::encode(&mut self.out, &props.encode(), compression);
        let footer = Footer::new(meta_offset, index_len, filter_len, props_len);
        self.out.extend_from_slice(&footer.encode());
        Ok(Bytes::from(self.out))
    }
}

#[cfg(test)]
mod streaming_tests {
    use super::*;

    #[test]
    fn taking_data_as_it_goes_yields_the_same_file() {
        let opts = WriterOptions {
            block_size: 256,
            ..Default::default()
        };
        let (mut whole, mut streamed) = (Writer::new(opts.clone()), Writer::new(opts));
        let mut parts = Vec::new();
        for i in 0..2_000u32 {
            let key = format!("key{i:06}");
            let value = Value::Put(Bytes::from(format!("value-{i}")));
            whole.add(key.as_bytes(), &value).unwrap();
            streamed.add(key.as_bytes(), &value).unwrap();
            if i % 97 == 0 {
                parts.extend_from_slice(&streamed.take_data());
                assert_eq!(streamed.pending_data_len(), 0);
            }
        }
        assert_eq!(whole.estimated_size(), streamed.estimated_size());
        parts.extend_from_slice(&streamed.finish(1, 2).unwrap());
        assert_eq!(parts, whole.finish(1, 2).unwrap().to_vec());
    }
}
