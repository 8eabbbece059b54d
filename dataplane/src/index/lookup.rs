//! Point reads: newest file first, pruned by key range and bloom filter;
//! the first file holding the key decides (a tombstone means absent).

use super::manifest::Manifest;
use crate::cache::{BlockCache, ReadError};
use crate::metrics::metrics;
use crate::sstable::Value;
use bytes::Bytes;
use std::sync::Arc;

/// The newest value of `key`, or `None` if it was never written or is deleted.
pub async fn get(
    cache: &BlockCache,
    manifest: &Manifest,
    key: &[u8],
) -> Result<Option<Bytes>, Arc<ReadError>> {
    let mut probed = 0u32;
    let mut found = None;
    for file in &manifest.files {
        if !file.may_contain(key) {
            continue;
        }
        let table = cache.table(&file.object).await?;
        // Key range and bloom filter; `find` alone would answer block 0 for a
        // key below the file's first key.
        if !table.may_contain(key) {
            continue;
        }
        let Some(block_index) = table.index.find(key) else {
            continue;
        };
        probed += 1;
        let block = cache.block(&file.object, &table, block_index).await?;
        if let Some(value) = block.get(key) {
            found = Some(value);
            break;
        }
    }
    metrics().index_files_probed.observe(f64::from(probed));
    Ok(match found {
        Some(Value::Put(v)) => Some(v),
        Some(Value::Delete) | None => None,
    })
}
