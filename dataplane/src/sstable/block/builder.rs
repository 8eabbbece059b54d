//! Encoding side of data blocks (format in the parent module's doc).

use super::Value;
use crate::sstable::coding::{put_varint, shared_prefix_len};

/// Entries between restart points: longer runs compress keys better but make a lookup scan
/// more entries after the binary search.
pub(crate) const RESTART_INTERVAL: usize = 16;

/// Accumulates the entries of one data block on the write path.
#[derive(Default)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    since_restart: usize,
    /// Last key added, kept across blocks for the writer's order check.
    last_key: Vec<u8>,
}

impl BlockBuilder {
    /// Appends an entry. The caller guarantees `key` sorts after every key added before and that
    /// the block stays below 4 GiB.
    pub(crate) fn add(&mut self, key: &[u8], value: &Value) {
        let shared = if self.buf.is_empty() || self.since_restart == RESTART_INTERVAL {
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
            0
        } else {
            shared_prefix_len(&self.last_key, key)
        };
        self.since_restart += 1;
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, (key.len() - shared) as u64);
        match value {
            Value::Delete => put_varint(&mut self.buf, 0),
            Value::Put(v) => put_varint(&mut self.buf, v.len() as u64 + 1),
        }
        self.buf.extend_from_slice(&key[shared..]);
        if let Value::Put(v) = value {
            self.buf.extend_from_slice(v);
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Size of the contents if the block were finished now.
    pub(crate) fn estimated_len(&self) -> usize {
        self.buf.len() + 4 * (self.restarts.len() + 1)
    }

    pub(crate) fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Appends the restart array and returns the contents; the builder is ready for a new block.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut contents = std::mem::take(&mut self.buf);
        for r in &self.restarts {
            contents.extend_from_slice(&r.to_le_bytes());
        }
        contents.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts.clear();
        self.since_restart = 0;
        contents
    }
}
