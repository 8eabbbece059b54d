//! The in-memory cache tier: file metadata (footer, index, filter,
//! properties) and data blocks, weighted by bytes, loaded from the object
//! store on a miss with concurrent misses for the same item coalesced.
//!
//! Metadata and blocks live in separate moka caches so a scan streaming many
//! blocks cannot evict the metadata every point read needs.

use crate::metrics::metrics;
use crate::objstore::{DynStore, StoreError};
use crate::sstable::{BlockKind, DataBlock, FOOTER_LEN, Footer, FormatError, TableMeta};
use moka::future::Cache;
use prometheus::IntCounter;
use std::sync::Arc;

/// Opening a file reads this much of its tail at once: small files' metadata
/// then arrives with the footer in a single GET.
const SPECULATIVE_TAIL_BYTES: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("object {object:?} is corrupt: {size} bytes is shorter than a footer")]
    TooShort { object: String, size: u64 },
    #[error("object {object:?} is corrupt: {source}")]
    Corrupt {
        object: String,
        #[source]
        source: FormatError,
    },
}

#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub capacity_bytes: u64,
    /// Share of the capacity reserved for file metadata (0..=1).
    pub meta_fraction: f64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            capacity_bytes: 256 << 20,
            meta_fraction: 0.25,
        }
    }
}

type BlockKey = (Arc<str>, u64);

pub struct BlockCache {
    store: DynStore,
    metas: Cache<Arc<str>, Arc<TableMeta>>,
    blocks: Cache<BlockKey, Arc<DataBlock>>,
    counters: Counters,
}

/// Hit and miss counters, resolved once: a label lookup per probe showed in
/// the read path's profile.
struct Counters {
    meta_hit: IntCounter,
    meta_miss: IntCounter,
    block_hit: IntCounter,
    block_miss: IntCounter,
}

impl Counters {
    fn new() -> Self {
        let c =
            |kind: &str, result: &str| metrics().cache_requests.with_label_values(&[kind, result]);
        Counters {
            meta_hit: c("meta", "hit"),
            meta_miss: c("meta", "miss"),
            block_hit: c("block", "hit"),
            block_miss: c("block", "miss"),
        }
    }
}

fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX).max(1)
}

impl BlockCache {
    pub fn new(store: DynStore, config: &CacheConfig) -> Self {
        let meta_bytes =
            (config.capacity_bytes as f64 * config.meta_fraction.clamp(0.0, 1.0)) as u64;
        let metas = Cache::builder()
            .max_capacity(meta_bytes.max(1))
            .weigher(|k: &Arc<str>, v: &Arc<TableMeta>| weight(k.len() + v.mem_size()))
            .build();
        let blocks = Cache::builder()
            .max_capacity(config.capacity_bytes.saturating_sub(meta_bytes).max(1))
            .weigher(|k: &BlockKey, v: &Arc<DataBlock>| weight(k.0.len() + v.mem_size()))
            .build();
        BlockCache {
            store,
            metas,
            blocks,
            counters: Counters::new(),
        }
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// The decoded metadata of `object`, from memory or two ranged GETs at most.
    pub async fn table(&self, object: &Arc<str>) -> Result<Arc<TableMeta>, Arc<ReadError>> {
        if let Some(meta) = self.metas.get(object).await {
            self.counters.meta_hit.inc();
            return Ok(meta);
        }
        self.counters.meta_miss.inc();
        let result = self
            .metas
            .try_get_with(object.clone(), self.load_table(object))
            .await;
        self.publish_sizes();
        result
    }

    /// Data block `i` of `object`, decoded: checksum verified, decompressed,
    /// and its keys checked against the index (a crc cannot catch a block
    /// from another file).
    pub async fn block(
        &self,
        object: &Arc<str>,
        table: &TableMeta,
        i: usize,
    ) -> Result<Arc<DataBlock>, Arc<ReadError>> {
        let handle = table.index.handle(i);
        let key = (object.clone(), handle.offset);
        if let Some(block) = self.blocks.get(&key).await {
            self.counters.block_hit.inc();
            return Ok(block);
        }
        self.counters.block_miss.inc();
        let result = self
            .blocks
            .try_get_with(key, self.load_block(object, table, i))
            .await;
        self.publish_sizes();
        result
    }

    async fn load_table(&self, object: &str) -> Result<Arc<TableMeta>, ReadError> {
        Ok(Arc::new(read_table_meta(&self.store, object).await?))
    }

    async fn load_block(
        &self,
        object: &str,
        table: &TableMeta,
        i: usize,
    ) -> Result<Arc<DataBlock>, ReadError> {
        let raw = self
            .store
            .get_range(object, table.index.handle(i).range())
            .await?;
        table
            .decode_block(i, raw)
            .map(Arc::new)
            .map_err(|source| ReadError::Corrupt {
                object: object.to_string(),
                source,
            })
    }

    fn publish_sizes(&self) {
        let m = metrics();
        m.cache_bytes
            .with_label_values(&["meta"])
            .set(self.metas.weighted_size() as i64);
        m.cache_bytes
            .with_label_values(&["block"])
            .set(self.blocks.weighted_size() as i64);
    }
}

/// Reads and decodes an object's footer and meta region: one ranged GET of
/// the tail, a second one only when the meta region is larger than that.
pub async fn read_table_meta(store: &DynStore, object: &str) -> Result<TableMeta, ReadError> {
    let corrupt = |source| ReadError::Corrupt {
        object: object.to_string(),
        source,
    };
    let want = SPECULATIVE_TAIL_BYTES.max(FOOTER_LEN as u64);
    let (tail, size) = store.get_suffix(object, want).await?;
    let tail_start = size - tail.len() as u64;
    if tail.len() < FOOTER_LEN {
        return Err(ReadError::TooShort {
            object: object.to_string(),
            size,
        });
    }
    let footer = Footer::decode(&tail[tail.len() - FOOTER_LEN..]).map_err(corrupt)?;
    // A footer describing a file of another length (its meta region running
    // past the object, say) is corruption, not a store failure to retry.
    if footer.file_len() != size {
        return Err(corrupt(FormatError::LengthMismatch {
            kind: BlockKind::File,
            offset: 0,
            expected: footer.file_len(),
            actual: size,
        }));
    }
    let range = footer.meta_range();
    let meta_bytes = if range.start >= tail_start && range.end <= size {
        tail.slice((range.start - tail_start) as usize..(range.end - tail_start) as usize)
    } else {
        store.get_range(object, range).await?
    };
    TableMeta::decode(&footer, &meta_bytes).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objstore::LocalStore;

    /// A footer whose meta region runs past the end of the object is
    /// corruption (DATA_LOSS), not an object-store failure (UNAVAILABLE).
    #[tokio::test]
    async fn a_footer_running_past_the_object_is_data_loss() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
        let mut object = vec![0u8; 100];
        object.extend_from_slice(&Footer::new(50, 1_000, 10, 10).encode());
        store
            .put("wal/past-end.sst", bytes::Bytes::from(object))
            .await
            .unwrap();
        let Err(err) = read_table_meta(&store, "wal/past-end.sst").await else {
            panic!("a footer running past the object was accepted");
        };
        assert!(matches!(err, ReadError::Corrupt { .. }), "{err:?}");
        let status = tonic::Status::from(crate::index::IndexError::Read(Arc::new(err)));
        assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
    }
}
