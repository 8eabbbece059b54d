//! Point reads: the WAL tier in memory first, then newest file first,
//! pruned by key range and bloom filter; the first source holding the key
//! decides (a tombstone means absent).

use super::manifest::{LiveFile, Manifest};
use crate::cache::{BlockCache, ReadError};
use crate::metrics::metrics;
use crate::sstable::{TableMeta, Value};
use bytes::Bytes;
use std::sync::Arc;

/// What one file says about one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileAnswer {
    Value(Bytes),
    Tombstone,
    NotInFile,
}

impl FileAnswer {
    /// The key's final value when this is the newest file holding it.
    pub fn into_value(self) -> Option<Bytes> {
        match self {
            FileAnswer::Value(v) => Some(v),
            FileAnswer::Tombstone | FileAnswer::NotInFile => None,
        }
    }
}

/// The newest value of `key`, or `None` if it was never written or is deleted.
pub async fn get(
    cache: &BlockCache,
    manifest: &Manifest,
    key: &[u8],
) -> Result<Option<Bytes>, Arc<ReadError>> {
    let m = metrics();
    manifest.mem.check()?;
    if let Some(value) = manifest.mem.get(key) {
        m.index_tables_consulted.observe(1.0);
        m.index_files_probed.observe(0.0);
        return Ok(match value {
            Value::Put(v) => Some(v.clone()),
            Value::Delete => None,
        });
    }
    let mut probed = 0u32;
    let mut found = FileAnswer::NotInFile;
    let candidates = manifest.candidates(key);
    m.index_tables_consulted
        .observe(1.0 + candidates.len() as f64);
    for i in candidates {
        let file = &manifest.files[i];
        let table = file_meta(cache, file).await?;
        let (answer, read_block) = probe_table(cache, &file.object, &table, key).await?;
        probed += u32::from(read_block);
        if answer != FileAnswer::NotInFile {
            found = answer;
            break;
        }
    }
    m.index_files_probed.observe(f64::from(probed));
    Ok(found.into_value())
}

/// A live file's decoded metadata, through the cache.
pub async fn file_meta(
    cache: &BlockCache,
    file: &LiveFile,
) -> Result<Arc<TableMeta>, Arc<ReadError>> {
    cache.table(&file.object).await
}

/// Looks `key` up in one file: metadata, bloom filter, then one block. The
/// cache tier's replicas answer `cache.v1.CacheService/Get` with this.
pub async fn probe(
    cache: &BlockCache,
    object: &Arc<str>,
    key: &[u8],
) -> Result<FileAnswer, Arc<ReadError>> {
    let table = cache.table(object).await?;
    Ok(probe_table(cache, object, &table, key).await?.0)
}

/// The answer, and whether a data block had to be read for it.
async fn probe_table(
    cache: &BlockCache,
    object: &Arc<str>,
    table: &TableMeta,
    key: &[u8],
) -> Result<(FileAnswer, bool), Arc<ReadError>> {
    // Key range and bloom filter; `find` alone would answer block 0 for a
    // key below the file's first key.
    if !table.may_contain(key) {
        return Ok((FileAnswer::NotInFile, false));
    }
    let Some(block_index) = table.index.find(key) else {
        return Ok((FileAnswer::NotInFile, false));
    };
    let block = cache.block(object, table, block_index).await?;
    let answer = match block.get(key) {
        Some(Value::Put(v)) => FileAnswer::Value(v),
        Some(Value::Delete) => FileAnswer::Tombstone,
        None => FileAnswer::NotInFile,
    };
    Ok((answer, true))
}
