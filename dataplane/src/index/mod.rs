//! The read path: the index holds the manifest (live files, newest first),
//! keeps it current from the metadata database, and answers point reads
//! ([`lookup`]) and range scans ([`scan`]) through the block cache.
//!
//! Catch-up asks the database for "changes with version > applied". Versions
//! are taken in commit order without gaps (see `meta`), so this never skips a
//! file committed out of order (invariant 4). A read carrying a minimum
//! sequence waits until that version is applied (invariant 5).

mod lookup;
mod manifest;
pub mod memtable;
mod read_index;
mod scan;

pub use lookup::{FileAnswer, file_meta, get, probe};
pub use manifest::{LiveFile, Manifest};
pub use memtable::{MemTable, WalFile};
pub use scan::{KeyRange, Page, PageLimits};

use crate::cache::{BlockCache, ReadError};
use crate::cache_tier::CachePeers;
use crate::meta::{DynMeta, FileRecord, MetaError};
use crate::metrics::metrics;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct IndexConfig {
    /// Catch-up runs at least this often even without a notification.
    pub poll_interval: Duration,
    /// Level targets, for the compaction debt this index reports at `/lsm`.
    pub lsm: crate::lsm::LsmConfig,
    /// The index refuses to serve (UNAVAILABLE, not ready) once its last
    /// successful catch-up is older than this: purge deletes replaced objects
    /// after its grace period (60 s at the least), so a manifest must never be
    /// served for that long without checking the database. Keep it well below
    /// the smallest grace period in use.
    pub max_manifest_age: Duration,
}

/// Default [`IndexConfig::max_manifest_age`]: half the smallest purge grace.
pub const DEFAULT_MAX_MANIFEST_AGE: Duration = Duration::from_secs(30);

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            poll_interval: Duration::from_millis(500),
            lsm: crate::lsm::LsmConfig::default(),
            max_manifest_age: DEFAULT_MAX_MANIFEST_AGE,
        }
    }
}

/// Why a catch-up failed; the index keeps serving its last manifest.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A new WAL object could not be read into the WAL tier (the store is
    /// down, or the object is corrupt: never served, retried).
    #[error("reading WAL object into memory: {0}")]
    Wal(#[source] ReadError),
}

/// WAL objects fetched at once by one catch-up.
const WAL_FETCH_CONCURRENCY: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Read(#[from] Arc<ReadError>),
    #[error("sequence {wanted} not applied yet (index at {applied}) before the deadline")]
    NotYetApplied { wanted: u64, applied: u64 },
    #[error(
        "index manifest is stale: last caught up with the metadata database {age_ms} ms ago \
         (limit {limit_ms} ms); refusing to serve files purge may have deleted"
    )]
    Stale { age_ms: u64, limit_ms: u64 },
    #[error("cannot learn the latest committed sequence for a strong read: {0}")]
    Committed(String),
}

pub struct Index {
    meta: DynMeta,
    cache: Arc<BlockCache>,
    /// Cache replicas for point reads (role `index` with SKYVAULT_CACHE_PEERS);
    /// `None` reads through `cache` in-process (standalone, or no peers).
    peers: Option<Arc<CachePeers>>,
    manifest: RwLock<Arc<Manifest>>,
    applied: watch::Sender<u64>,
    lsm: crate::lsm::LsmConfig,
    /// When the last catch-up succeeded (whether or not it changed anything).
    caught_up_at: std::sync::Mutex<Instant>,
    /// One catch-up at a time loads WAL objects and installs: concurrent ones
    /// (the follow task, read-your-writes and strong reads) would otherwise
    /// fetch the same objects again — against a slow store, many times over.
    catching_up: tokio::sync::Mutex<()>,
    max_manifest_age: Duration,
    /// Strong reads queue here for the next ReadIndex round (`read_index`).
    read_index: tokio::sync::mpsc::UnboundedSender<read_index::Waiter>,
    /// Rounds served so far: each is one latest-version query.
    read_index_rounds: std::sync::atomic::AtomicU64,
    /// Strong reads queued and not yet taken by a round.
    read_index_queued: std::sync::atomic::AtomicUsize,
    /// Replaced files purge has not deleted yet, as last polled
    /// ([`DEAD_BYTES_POLL`]); reported in the debt.
    dead_bytes: std::sync::atomic::AtomicU64,
}

/// How often the index polls the dead bytes (one aggregate query).
const DEAD_BYTES_POLL: Duration = Duration::from_secs(5);
/// Prune steps (each of the memtable's per-change budget) an idle index
/// takes per quiet wake of its follow loop.
const IDLE_PRUNE_STEPS: usize = 64;

/// A manifest apply this long is logged (reads waiting for a sequence wait for it).
const SLOW_APPLY: Duration = Duration::from_millis(50);

impl Index {
    /// Loads the manifest once (so a started index serves every committed
    /// write) and keeps it current in a background task.
    pub async fn start(
        meta: DynMeta,
        cache: Arc<BlockCache>,
        config: IndexConfig,
    ) -> Result<(Arc<Index>, tokio::task::JoinHandle<()>), CatchUpError> {
        Self::start_with_peers(meta, cache, None, config).await
    }

    /// As [`Index::start`], resolving point reads through cache replicas
    /// (`cache` remains the fallback and serves scans).
    pub async fn start_with_peers(
        meta: DynMeta,
        cache: Arc<BlockCache>,
        peers: Option<Arc<CachePeers>>,
        config: IndexConfig,
    ) -> Result<(Arc<Index>, tokio::task::JoinHandle<()>), CatchUpError> {
        let (read_index, queue) = read_index::channel();
        let index = Arc::new(Index {
            meta,
            cache,
            peers: peers.filter(|p| !p.is_empty()),
            manifest: RwLock::new(Arc::new(Manifest::default())),
            lsm: config.lsm.clone(),
            applied: watch::channel(0).0,
            caught_up_at: std::sync::Mutex::new(Instant::now()),
            catching_up: tokio::sync::Mutex::new(()),
            max_manifest_age: config.max_manifest_age,
            read_index,
            read_index_rounds: Default::default(),
            read_index_queued: Default::default(),
            dead_bytes: Default::default(),
        });
        tokio::spawn(read_index::serve(Arc::downgrade(&index), queue));
        index.catch_up().await?;
        let task = tokio::spawn(follow(Arc::downgrade(&index), config));
        Ok((index, task))
    }

    pub fn manifest(&self) -> Arc<Manifest> {
        self.manifest.read().expect("manifest lock").clone()
    }

    /// Compaction debt of the manifest this index serves (see `crate::lsm`).
    pub fn debt(&self) -> crate::lsm::Debt {
        let mut debt = self.manifest().debt(&self.lsm);
        debt.dead_bytes = self.dead_bytes.load(Ordering::Relaxed);
        debt
    }

    /// Polls the dead bytes (replaced, not yet purged) for the debt report
    /// and its gauge.
    async fn poll_dead_bytes(&self) {
        match self.meta.dead_bytes().await {
            Ok(bytes) => {
                self.dead_bytes.store(bytes, Ordering::Relaxed);
                metrics().dead_bytes.set(bytes as i64);
            }
            Err(e) => tracing::debug!(error = %e, "polling the dead bytes"),
        }
    }

    /// Flushed WAL-tier entries leave the map a budget per manifest change;
    /// an index that sees no more commits prunes the rest here, a step at a
    /// time (a catch-up may come between two steps).
    async fn prune_idle(&self) {
        for _ in 0..IDLE_PRUNE_STEPS {
            let _turn = self.catching_up.lock().await;
            let Some(next) = self.manifest().pruned_more() else {
                return;
            };
            let m = metrics();
            m.index_memtable_bytes.set(next.mem.mem_bytes() as i64);
            m.index_memtable_keys.set(next.mem.len() as i64);
            *self.manifest.write().expect("manifest lock") = Arc::new(next);
        }
    }

    pub fn applied_sequence(&self) -> u64 {
        *self.applied.borrow()
    }

    pub fn cache(&self) -> &Arc<BlockCache> {
        &self.cache
    }

    /// How long ago the last catch-up succeeded.
    pub fn manifest_age(&self) -> Duration {
        self.caught_up_at.lock().expect("catch-up clock").elapsed()
    }

    /// Whether the manifest may be served: caught up within the limit.
    pub fn is_fresh(&self) -> bool {
        self.check_fresh().is_ok()
    }

    /// Why the manifest may not be served, while it may not (readiness).
    pub fn staleness(&self) -> Option<String> {
        self.check_fresh().err().map(|e| e.to_string())
    }

    fn check_fresh(&self) -> Result<(), IndexError> {
        let age = self.manifest_age();
        if age <= self.max_manifest_age {
            return Ok(());
        }
        Err(IndexError::Stale {
            age_ms: age.as_millis() as u64,
            limit_ms: self.max_manifest_age.as_millis() as u64,
        })
    }

    /// Applies every manifest change committed since the last catch-up,
    /// reading the WAL objects it adds into the WAL tier first (so a write
    /// is readable from the moment its sequence counts as applied).
    pub async fn catch_up(&self) -> Result<u64, CatchUpError> {
        let current = self.manifest();
        let asked = Instant::now();
        let delta = self.meta.changes_since(current.version).await?;
        if delta.version <= current.version {
            self.caught_up(asked);
            return Ok(current.version);
        }
        // Loading and installing one at a time, so WAL objects another
        // catch-up already decoded are not fetched again. A delta applies
        // only to the version it was computed from (it folds away files
        // added and removed after that version): if another catch-up moved
        // the manifest meanwhile, ask again from there.
        let _turn = self.catching_up.lock().await;
        let base = self.manifest();
        if base.version >= delta.version {
            self.caught_up(asked);
            return Ok(base.version);
        }
        let delta = if base.version == current.version {
            delta
        } else {
            self.meta.changes_since(base.version).await?
        };
        let wal = self.load_wal(base.wal_to_load(&delta)).await?;
        // The manifest is now as fresh as the moment the question was asked.
        self.caught_up(asked);
        let applying = Instant::now();
        let (added, removed) = (delta.added.len(), delta.removed_ids.len());
        let next = Arc::new(base.apply(delta, wal));
        let took = applying.elapsed();
        metrics().index_catch_up_apply.observe(took.as_secs_f64());
        if took > SLOW_APPLY {
            tracing::info!(
                added,
                removed,
                took_ms = took.as_millis() as u64,
                "slow manifest apply"
            );
        }
        let version = next.version;
        let shape = next.levels();
        {
            // Catch-ups run concurrently (the follow task, read-your-writes
            // waits, explicit calls): one that fetched an older delta but
            // finishes last must not replace a newer manifest.
            let mut installed = self.manifest.write().expect("manifest lock");
            if installed.version >= version {
                return Ok(installed.version);
            }
            let m = metrics();
            m.index_files.set(next.files.len() as i64);
            m.index_memtable_bytes.set(next.mem.mem_bytes() as i64);
            m.index_memtable_keys.set(next.mem.len() as i64);
            publish_levels(&shape);
            *installed = next;
        }
        self.applied.send_if_modified(|applied| {
            let newer = version > *applied;
            *applied = (*applied).max(version);
            newer
        });
        metrics().index_applied_seq.set(version as i64);
        Ok(version)
    }

    fn caught_up(&self, asked: Instant) {
        let mut at = self.caught_up_at.lock().expect("catch-up clock");
        *at = (*at).max(asked);
    }

    /// Fetches and decodes WAL objects (a few KB each: one GET apiece). A
    /// store error fails the catch-up (retried); a damaged object is kept as
    /// damaged and fails reads instead (see [`WalFile::decode`]).
    async fn load_wal(&self, records: Vec<&FileRecord>) -> Result<Vec<Arc<WalFile>>, CatchUpError> {
        let store = self.cache.store();
        futures::stream::iter(records.into_iter().cloned())
            .map(|record| async move {
                let bytes = store.get(&record.object).await.map_err(ReadError::Store)?;
                Ok(Arc::new(WalFile::decode(record, bytes)))
            })
            .buffered(WAL_FETCH_CONCURRENCY)
            .try_collect()
            .await
            .map_err(CatchUpError::Wal)
    }

    /// Waits until `sequence` is applied, at most `wait`.
    pub async fn wait_for(&self, sequence: u64, wait: Duration) -> Result<(), IndexError> {
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(wait, rx.wait_for(|v| *v >= sequence)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(IndexError::NotYetApplied {
                wanted: sequence,
                applied: self.applied_sequence(),
            }),
        }
    }

    /// The latest sequence committed in the metadata database, learned by a
    /// query that started after this call (so it covers every write
    /// acknowledged before it), shared with every strong read queued at the
    /// same time; by then the index has applied it unless another process
    /// committed in between. Wait for it with [`Index::wait_for`].
    pub async fn latest_committed(&self) -> Result<u64, IndexError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let gone = || IndexError::Committed("the index is shutting down".into());
        self.read_index_queued.fetch_add(1, Ordering::SeqCst);
        self.read_index.send(tx).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(IndexError::Committed)
    }

    /// ReadIndex rounds started so far (one database query each).
    pub fn read_index_rounds(&self) -> u64 {
        self.read_index_rounds.load(Ordering::SeqCst)
    }

    /// Strong reads waiting for a round to take them.
    pub fn read_index_queued(&self) -> usize {
        self.read_index_queued.load(Ordering::SeqCst)
    }

    /// Point reads; absent keys (never written or deleted) are `None`.
    pub async fn get_many(&self, keys: &[Bytes]) -> Result<Vec<Option<Bytes>>, IndexError> {
        Ok(self.get_many_at(keys).await?.1)
    }

    /// As [`Index::get_many`], with the version of the manifest that answered.
    pub async fn get_many_at(
        &self,
        keys: &[Bytes],
    ) -> Result<(u64, Vec<Option<Bytes>>), IndexError> {
        self.check_fresh()?;
        let manifest = self.manifest();
        if let Some(peers) = &self.peers {
            let values = peers.get_many(&self.cache, &manifest, keys).await?;
            return Ok((manifest.version, values));
        }
        let reads = keys
            .iter()
            .map(|key| lookup::get(&self.cache, &manifest, key));
        let values = futures::future::try_join_all(reads).await?;
        Ok((manifest.version, values))
    }

    /// One page of a range scan; `Page::version` names the manifest read.
    pub async fn scan(&self, range: &KeyRange, limits: PageLimits) -> Result<Page, IndexError> {
        self.check_fresh()?;
        let manifest = self.manifest();
        let mut page = scan::scan(&self.cache, &manifest, range, limits).await?;
        page.version = manifest.version;
        Ok(page)
    }
}

/// The `skyvault_lsm_files` / `skyvault_lsm_bytes` gauges, per level.
fn publish_levels(levels: &crate::lsm::Levels) {
    let m = metrics();
    for level in 0..crate::lsm::NUM_LEVELS {
        let label = level.to_string();
        m.lsm_files
            .with_label_values(&[&label])
            .set(levels.files(level).len() as i64);
        m.lsm_bytes
            .with_label_values(&[&label])
            .set(levels.bytes(level) as i64);
    }
}

/// Background catch-up: on every in-process commit notification, and on a
/// timer as the fallback for commits made by other processes.
async fn follow(index: std::sync::Weak<Index>, config: IndexConfig) {
    let mut notified = match index.upgrade() {
        Some(index) => index.meta.subscribe(),
        None => return,
    };
    let mut backoff = config.poll_interval;
    let mut dead_polled: Option<Instant> = None;
    loop {
        let quiet = tokio::select! {
            changed = notified.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(config.poll_interval).await;
                }
                false
            },
            _ = tokio::time::sleep(backoff) => true,
        };
        let Some(index) = index.upgrade() else { return };
        if dead_polled.is_none_or(|at| at.elapsed() >= DEAD_BYTES_POLL) {
            index.poll_dead_bytes().await;
            dead_polled = Some(Instant::now());
        }
        if quiet {
            // No commit for a poll interval: finish pruning what flushes left.
            index.prune_idle().await;
        }
        match index.catch_up().await {
            Ok(_) => backoff = config.poll_interval,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    age_ms = index.manifest_age().as_millis() as u64,
                    "index catch-up failed; serving the last manifest until it is too old"
                );
                // Retry well within the age limit, so a short outage never
                // makes the index refuse reads.
                let cap = (index.max_manifest_age / 4)
                    .clamp(Duration::from_millis(100), Duration::from_secs(10));
                backoff = (backoff * 2).min(cap);
            }
        }
    }
}
