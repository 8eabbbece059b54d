//! Reading one input file as a stream of entries: the footer and meta region
//! once, then data blocks in ranged GETs of about [`CHUNK_BYTES`], with the
//! next chunk already in flight while the current one is merged. Memory per
//! input is two chunks, whatever the file's size.

use super::CompactionError;
use crate::cache::read_table_meta;
use crate::meta::FileRecord;
use crate::objstore::{DynStore, StoreResult};
use crate::sstable::{Entry, IntoEntries, TableMeta};
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Bytes per ranged GET (whole blocks; one block at least).
pub const CHUNK_BYTES: u64 = 256 << 10;

pub struct InputCursor {
    object: String,
    store: DynStore,
    table: Arc<TableMeta>,
    /// Blocks of each chunk, in order; `next_chunk` is the next to request.
    chunks: Vec<Range<usize>>,
    next_chunk: usize,
    in_flight: Option<(Range<usize>, JoinHandle<StoreResult<Bytes>>)>,
    /// The chunk being decoded: its bytes, its first byte's offset and the blocks left in it.
    current: Option<(Bytes, u64, Range<usize>)>,
    entries: Option<IntoEntries>,
    entries_read: u64,
}

impl InputCursor {
    pub async fn open(store: &DynStore, file: &FileRecord) -> Result<Self, CompactionError> {
        let table = read_table_meta(store, &file.object)
            .await
            .map_err(|e| CompactionError::read(&file.object, e))?;
        let chunks = chunk_blocks(&table);
        let mut cursor = InputCursor {
            object: file.object.clone(),
            store: store.clone(),
            table: Arc::new(table),
            chunks,
            next_chunk: 0,
            in_flight: None,
            current: None,
            entries: None,
            entries_read: 0,
        };
        cursor.request_next();
        Ok(cursor)
    }

    /// The next entry in key order; `None` at the end (after checking the
    /// count against the file's properties).
    pub async fn next(&mut self) -> Result<Option<Entry>, CompactionError> {
        loop {
            if let Some(entry) = self.entries.as_mut().and_then(Iterator::next) {
                self.entries_read += 1;
                return Ok(Some(entry));
            }
            if !self.decode_next_block()? && !self.receive_chunk().await? {
                return self.finish().map(|()| None);
            }
        }
    }

    /// Moves to the next block of the current chunk; false when it is used up.
    fn decode_next_block(&mut self) -> Result<bool, CompactionError> {
        let Some((data, start, blocks)) = &mut self.current else {
            return Ok(false);
        };
        let Some(i) = blocks.next() else {
            self.current = None;
            return Ok(false);
        };
        let range = self.table.index.handle(i).range();
        let raw = data.slice((range.start - *start) as usize..(range.end - *start) as usize);
        let block = self
            .table
            .decode_block(i, raw)
            .map_err(|source| CompactionError::Corrupt {
                object: self.object.clone(),
                source,
            })?;
        self.entries = Some(block.into_entries());
        Ok(true)
    }

    /// Waits for the chunk in flight and requests the one after; false at the end.
    async fn receive_chunk(&mut self) -> Result<bool, CompactionError> {
        let Some((blocks, task)) = self.in_flight.take() else {
            return Ok(false);
        };
        let data = task
            .await
            .map_err(|e| CompactionError::Task(e.to_string()))?
            .map_err(CompactionError::Store)?;
        let start = self.table.index.handle(blocks.start).offset;
        self.current = Some((data, start, blocks));
        self.request_next();
        Ok(true)
    }

    fn request_next(&mut self) {
        let Some(blocks) = self.chunks.get(self.next_chunk).cloned() else {
            return;
        };
        self.next_chunk += 1;
        let first = self.table.index.handle(blocks.start).range();
        let last = self.table.index.handle(blocks.end - 1).range();
        let (store, object) = (self.store.clone(), self.object.clone());
        let task =
            tokio::spawn(async move { store.get_range(&object, first.start..last.end).await });
        self.in_flight = Some((blocks, task));
    }

    fn finish(&self) -> Result<(), CompactionError> {
        let expected = self.table.props.entry_count;
        if self.entries_read != expected {
            return Err(CompactionError::Corrupt {
                object: self.object.clone(),
                source: crate::sstable::FormatError::corrupt(
                    crate::sstable::BlockKind::Properties,
                    0,
                    0,
                    "entry count differs from the entries read",
                ),
            });
        }
        Ok(())
    }
}

impl Drop for InputCursor {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.in_flight {
            task.abort();
        }
    }
}

/// Groups consecutive blocks into ranges of about `CHUNK_BYTES`.
fn chunk_blocks(table: &TableMeta) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for i in 0..table.index.len() {
        bytes += table.index.handle(i).len;
        if bytes >= CHUNK_BYTES {
            chunks.push(start..i + 1);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < table.index.len() {
        chunks.push(start..table.index.len());
    }
    chunks
}
