//! A whole table held in memory, for tests, compaction and local reads. Remote readers use
//! [`Footer`], [`TableMeta`] and [`DataBlock`] directly on fetched ranges.

use bytes::Bytes;

use super::{BlockKind, DataBlock, Entry, Footer, FormatError, IntoEntries, TableMeta, Value};

pub struct Table {
    file: Bytes,
    footer: Footer,
    meta: TableMeta,
}

impl Table {
    /// Decodes footer and meta region (data blocks are verified when read).
    pub fn from_bytes(file: Bytes) -> Result<Table, FormatError> {
        let footer = Footer::decode(&file)?;
        if footer.file_len() != file.len() as u64 {
            return Err(FormatError::LengthMismatch {
                kind: BlockKind::File,
                offset: 0,
                expected: footer.file_len(),
                actual: file.len() as u64,
            });
        }
        let range = footer.meta_range();
        let meta = TableMeta::decode(&footer, &file[range.start as usize..range.end as usize])?;
        Ok(Table { file, footer, meta })
    }

    pub fn meta(&self) -> &TableMeta {
        &self.meta
    }

    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The whole file.
    pub fn bytes(&self) -> &Bytes {
        &self.file
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Value>, FormatError> {
        if !self.meta.may_contain(key) {
            return Ok(None);
        }
        let Some(i) = self.meta.index.find(key) else {
            return Ok(None);
        };
        Ok(self.block(i)?.get(key))
    }

    /// Decodes data block `i` (see [`TableMeta::decode_block`]).
    pub fn block(&self, i: usize) -> Result<DataBlock, FormatError> {
        if i >= self.meta.index.len() {
            return Err(FormatError::corrupt(
                BlockKind::Index,
                0,
                0,
                "block number out of range",
            ));
        }
        let range = self.meta.index.handle(i).range();
        // The index covers exactly the data region, which from_bytes checked lies in the file.
        let raw = self.file.slice(range.start as usize..range.end as usize);
        self.meta.decode_block(i, raw)
    }

    /// Every entry in key order. Stops after the first error. At the end, checks the counts
    /// in the properties against what was read.
    pub fn iter(&self) -> TableIter<'_> {
        TableIter {
            table: self,
            next_block: 0,
            current: None,
            counts: Some(Counts::default()),
            pending: None,
            done: false,
        }
    }

    /// Entries with keys `>= key`, in key order.
    pub fn iter_from(&self, key: &[u8]) -> TableIter<'_> {
        let first = self.meta.index.seek(key);
        let mut iter = TableIter {
            table: self,
            next_block: first + 1,
            current: None,
            counts: None,
            pending: None,
            done: false,
        };
        if first < self.meta.index.len() {
            match self.block(first) {
                Ok(block) => iter.current = Some(block.into_entries_from(key)),
                Err(e) => iter.pending = Some(e),
            }
        }
        iter
    }

    /// Reads every block: Ok means the whole file is intact.
    pub fn verify(&self) -> Result<(), FormatError> {
        self.iter().try_for_each(|entry| entry.map(drop))
    }
}

#[derive(Default, PartialEq, Eq)]
struct Counts {
    entries: u64,
    tombstones: u64,
    key_bytes: u64,
    value_bytes: u64,
}

impl Counts {
    fn add(&mut self, entry: &Entry) {
        self.entries += 1;
        self.key_bytes += entry.key.len() as u64;
        match &entry.value {
            Value::Delete => self.tombstones += 1,
            Value::Put(v) => self.value_bytes += v.len() as u64,
        }
    }
}

/// Iterator over a [`Table`]'s entries; see [`Table::iter`].
pub struct TableIter<'a> {
    table: &'a Table,
    next_block: usize,
    current: Option<IntoEntries>,
    /// Running totals when iterating the whole table, checked against the properties.
    counts: Option<Counts>,
    /// An error found before the first call to `next`.
    pending: Option<FormatError>,
    done: bool,
}

impl TableIter<'_> {
    fn check_counts(&self) -> Result<(), FormatError> {
        let props = &self.table.meta.props;
        let expected = Counts {
            entries: props.entry_count,
            tombstones: props.tombstone_count,
            key_bytes: props.raw_key_bytes,
            value_bytes: props.raw_value_bytes,
        };
        match &self.counts {
            Some(counts) if *counts != expected => Err(FormatError::corrupt(
                BlockKind::Properties,
                self.table.footer.props_handle().offset,
                0,
                "entry counts disagree with the data blocks",
            )),
            _ => Ok(()),
        }
    }
}

impl Iterator for TableIter<'_> {
    type Item = Result<Entry, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending.take() {
            self.done = true;
            return Some(Err(e));
        }
        while !self.done {
            if let Some(entry) = self.current.as_mut().and_then(Iterator::next) {
                if let Some(counts) = &mut self.counts {
                    counts.add(&entry);
                }
                return Some(Ok(entry));
            }
            self.current = None;
            if self.next_block >= self.table.meta.index.len() {
                self.done = true;
                return self.check_counts().err().map(Err);
            }
            let block = self.table.block(self.next_block);
            self.next_block += 1;
            match block {
                Ok(block) => self.current = Some(block.into_entries()),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}
