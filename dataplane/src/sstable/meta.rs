//! The meta region (index, filter and properties blocks, back to back) decoded as one unit:
//! what a reader keeps in memory per open table.

use bytes::Bytes;

use super::bloom::key_hash;
use super::{
    BlockIndex, BlockKind, BloomFilter, DataBlock, Footer, FormatError, Properties, frame,
};

pub struct TableMeta {
    pub index: BlockIndex,
    pub filter: BloomFilter,
    pub props: Properties,
}

impl TableMeta {
    /// Decodes the bytes of [`Footer::meta_range`]: verifies each block's crc, decodes it, and
    /// checks that index, properties and footer agree with each other.
    pub fn decode(footer: &Footer, meta: &[u8]) -> Result<TableMeta, FormatError> {
        let range = footer.meta_range();
        if meta.len() as u64 != range.end - range.start {
            return Err(FormatError::LengthMismatch {
                kind: BlockKind::Meta,
                offset: range.start,
                expected: range.end - range.start,
                actual: meta.len() as u64,
            });
        }
        // Lengths fit in usize: together they equal meta.len().
        let (index_raw, rest) = meta.split_at(footer.index_handle().len as usize);
        let (filter_raw, props_raw) = rest.split_at(footer.filter_handle().len as usize);

        let at = footer.index_handle().offset;
        let index = BlockIndex::decode(at, &frame::decode(BlockKind::Index, at, index_raw)?)?;
        let at = footer.filter_handle().offset;
        let filter = BloomFilter::decode(at, &frame::decode(BlockKind::Filter, at, filter_raw)?)?;
        let at = footer.props_handle().offset;
        let props = Properties::decode(at, &frame::decode(BlockKind::Properties, at, props_raw)?)?;

        let meta = TableMeta {
            index,
            filter,
            props,
        };
        meta.check_consistency(footer)?;
        Ok(meta)
    }

    fn check_consistency(&self, footer: &Footer) -> Result<(), FormatError> {
        let (index, props) = (&self.index, &self.props);
        let index_err = |reason| {
            FormatError::corrupt(BlockKind::Index, footer.index_handle().offset, 0, reason)
        };
        let props_err = |reason| {
            FormatError::corrupt(
                BlockKind::Properties,
                footer.props_handle().offset,
                0,
                reason,
            )
        };
        if index.data_len() != footer.data_len() {
            return Err(index_err(
                "data blocks do not exactly cover the data region",
            ));
        }
        if props.data_bytes != footer.data_len() {
            return Err(props_err("data_bytes disagrees with the footer"));
        }
        if props.data_block_count != index.len() as u64 {
            return Err(props_err("data_block_count disagrees with the index"));
        }
        if index.last_key(index.len() - 1) != props.max_key {
            return Err(props_err("max_key disagrees with the index"));
        }
        if index.last_key(0) < &props.min_key[..] {
            return Err(props_err("min_key above the first block's last key"));
        }
        Ok(())
    }

    /// False if `key` is certainly not in this table: outside its key range or ruled out by
    /// the bloom filter.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hashed(key, key_hash(key))
    }

    /// [`Self::may_contain`] with the key's [`key_hash`] computed once by the caller.
    pub fn may_contain_hashed(&self, key: &[u8], hash: u64) -> bool {
        key >= &self.props.min_key[..]
            && key <= &self.props.max_key[..]
            && self.filter.may_contain_hash(hash)
    }

    /// [`DataBlock::decode`] for block `i`, plus a check that the block's keys lie exactly in
    /// the range the index (and properties) assign to it. The crc cannot catch a block from
    /// another table or a writer bug; this does.
    pub fn decode_block(&self, i: usize, raw: Bytes) -> Result<DataBlock, FormatError> {
        if i >= self.index.len() {
            return Err(FormatError::corrupt(
                BlockKind::Index,
                0,
                0,
                "block number out of range",
            ));
        }
        let handle = self.index.handle(i);
        let block = DataBlock::decode(handle, raw)?;
        let first_ok = if i == 0 {
            block.first_key() == self.props.min_key
        } else {
            block.first_key() > self.index.last_key(i - 1)
        };
        if !first_ok || block.last_key() != self.index.last_key(i) {
            return Err(FormatError::corrupt(
                BlockKind::Data,
                handle.offset,
                0,
                "keys outside the range the index assigns to this block",
            ));
        }
        Ok(block)
    }

    /// Bytes held in memory, for cache weighting.
    pub fn mem_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.index.mem_size()
            + self.filter.mem_size()
            + self.props.mem_size()
    }
}
