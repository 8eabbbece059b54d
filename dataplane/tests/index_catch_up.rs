//! Concurrent catch-ups never move the index back to an older manifest: one
//! that fetched an older delta but finishes last is discarded (read-your-writes
//! and invariant 6 depend on the served manifest only ever moving forward).

use async_trait::async_trait;
use bytes::Bytes;
use skyvault::api::IndexApi;
use skyvault::api::proto::index::v1::index_service_server::IndexService;
use skyvault::api::proto::index::v1::{BatchGetRequest, Consistency};
use skyvault::cache::{BlockCache, CacheConfig};
use skyvault::config::Limits;
use skyvault::index::{Index, IndexConfig, IndexError, KeyRange, PageLimits};
use skyvault::meta::{
    ClaimRange, DynMeta, FileRecord, ManifestDelta, MetaError, MetaResult, MetaStore, NewFile, Swap,
};
use skyvault::server::Readiness;
use skyvault::sstable::{Entry, Value};
use skyvault::standalone::{self, StandaloneConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Delegates to a real store; while `hold` is set, `changes_since` reads its
/// answer at once and then waits for `release` before returning it.
struct Gated {
    inner: DynMeta,
    hold: AtomicBool,
    /// While set, `changes_since` fails as if the database were down.
    down: AtomicBool,
    fetched: Notify,
    release: Notify,
    /// While set, the next `current_version` signals `fetched` and waits for
    /// `release` before asking the database.
    hold_version: AtomicBool,
    version_queries: AtomicU64,
}

impl Gated {
    fn new(inner: DynMeta) -> Arc<Gated> {
        Arc::new(Gated {
            inner,
            hold: AtomicBool::new(false),
            down: AtomicBool::new(false),
            fetched: Notify::new(),
            release: Notify::new(),
            hold_version: AtomicBool::new(false),
            version_queries: AtomicU64::new(0),
        })
    }
}

#[async_trait]
impl MetaStore for Gated {
    async fn commit_wals(&self, files: Vec<NewFile>) -> MetaResult<Vec<u64>> {
        self.inner.commit_wals(files).await
    }
    async fn changes_since(&self, version: u64) -> MetaResult<ManifestDelta> {
        if self.down.load(Ordering::SeqCst) {
            return Err(MetaError::Unavailable(sqlx::Error::PoolTimedOut));
        }
        let delta = self.inner.changes_since(version).await;
        if self.hold.swap(false, Ordering::SeqCst) {
            let released = self.release.notified();
            self.fetched.notify_one();
            released.await;
        }
        delta
    }
    async fn live_files(&self) -> MetaResult<Vec<FileRecord>> {
        self.inner.live_files().await
    }
    async fn swap(&self, swap: Swap) -> MetaResult<u64> {
        self.inner.swap(swap).await
    }
    async fn claim(&self, job: &str, ranges: &[ClaimRange], ttl: Duration) -> MetaResult<bool> {
        self.inner.claim(job, ranges, ttl).await
    }
    async fn renew_claim(&self, job: &str, ttl: Duration) -> MetaResult<bool> {
        self.inner.renew_claim(job, ttl).await
    }
    async fn release_claim(&self, job: &str) -> MetaResult<()> {
        self.inner.release_claim(job).await
    }
    async fn register_writer(&self, writer: &str, ttl: Duration) -> MetaResult<()> {
        self.inner.register_writer(writer, ttl).await
    }
    async fn renew_writer(&self, writer: &str, ttl: Duration) -> MetaResult<bool> {
        self.inner.renew_writer(writer, ttl).await
    }
    async fn live_writers(&self) -> MetaResult<Vec<String>> {
        self.inner.live_writers().await
    }
    async fn live_claim_jobs(&self) -> MetaResult<Vec<String>> {
        self.inner.live_claim_jobs().await
    }
    async fn live_claims(&self) -> MetaResult<Vec<skyvault::meta::ClaimRange>> {
        self.inner.live_claims().await
    }
    async fn l0_file_count(&self) -> MetaResult<u64> {
        self.inner.l0_file_count().await
    }
    async fn dead_bytes(&self) -> MetaResult<u64> {
        self.inner.dead_bytes().await
    }
    async fn all_files(&self) -> MetaResult<Vec<FileRecord>> {
        self.inner.all_files().await
    }
    async fn forget_files(&self, ids: &[i64]) -> MetaResult<()> {
        self.inner.forget_files(ids).await
    }
    async fn clock_ms(&self) -> MetaResult<i64> {
        self.inner.clock_ms().await
    }
    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> MetaResult<bool> {
        self.inner.try_lease(name, holder, ttl).await
    }
    async fn release_lease(&self, name: &str, holder: &str) -> MetaResult<()> {
        self.inner.release_lease(name, holder).await
    }
    async fn current_version(&self) -> MetaResult<u64> {
        self.version_queries.fetch_add(1, Ordering::SeqCst);
        if self.hold_version.swap(false, Ordering::SeqCst) {
            let released = self.release.notified();
            self.fetched.notify_one();
            released.await;
        }
        self.inner.current_version().await
    }
    async fn store_id(&self) -> MetaResult<Option<String>> {
        self.inner.store_id().await
    }
    async fn init_store_id(&self, id: &str) -> MetaResult<String> {
        self.inner.init_store_id(id).await
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        // No notifications: only the test's explicit catch-ups move the index.
        watch::channel(0).1
    }
    fn describe(&self) -> String {
        "gated".into()
    }
}

fn put(key: &str, value: &str) -> Vec<Entry> {
    vec![Entry {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Value::Put(Bytes::copy_from_slice(value.as_bytes())),
    }]
}

#[tokio::test]
async fn a_slow_catch_up_with_an_older_delta_does_not_win() {
    let dir = tempfile::tempdir().unwrap();
    let (parts, gated, index) = unnotified_index(dir.path()).await;

    let first = parts.batcher.write(put("k", "old")).await.unwrap();
    gated.hold.store(true, Ordering::SeqCst);
    let slow = {
        let index = index.clone();
        tokio::spawn(async move { index.catch_up().await })
    };
    gated.fetched.notified().await; // the slow one holds a delta up to `first`
    let second = parts.batcher.write(put("k", "new")).await.unwrap();
    assert_eq!(index.catch_up().await.unwrap(), second);
    gated.release.notify_one();
    slow.await.unwrap().unwrap();
    assert!(first < second);
    assert_eq!(index.manifest().version, second, "the manifest went back");
    let got = index.get_many(&[Bytes::from("k")]).await.unwrap();
    assert_eq!(got[0].as_deref(), Some(&b"new"[..]));
}

/// Issue 12 item 2: an index that cannot catch up keeps serving only while its
/// manifest is younger than `max_manifest_age` (kept below purge's grace
/// period); past it every read fails UNAVAILABLE and readiness is false, until
/// a catch-up succeeds again.
#[tokio::test]
async fn a_stale_index_refuses_to_serve_and_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StandaloneConfig::new(dir.path());
    config.maintenance = None;
    let parts = standalone::open(&config, None).await.unwrap();
    let gated = Gated::new(parts.meta.clone());
    let cache = Arc::new(BlockCache::new(
        parts.store.clone(),
        &CacheConfig::default(),
    ));
    // Long enough that a loaded machine's catch-ups (every 20 ms) keep it fresh.
    let max_age = Duration::from_secs(2);
    let index_config = IndexConfig {
        poll_interval: Duration::from_millis(20),
        max_manifest_age: max_age,
        ..Default::default()
    };
    let (index, _follow) = Index::start(gated.clone(), cache, index_config)
        .await
        .unwrap();
    let readiness = Readiness::default();
    let fresh = index.clone();
    readiness.require(Arc::new(move || fresh.staleness()));
    readiness.set(true);
    let seq = parts.batcher.write(put("k", "v")).await.unwrap();
    index.wait_for(seq, Duration::from_secs(10)).await.unwrap();
    let keys = [Bytes::from("k")];
    assert_eq!(
        index.get_many(&keys).await.unwrap()[0].as_deref(),
        Some(&b"v"[..])
    );

    gated.down.store(true, Ordering::SeqCst);
    let down_at = Instant::now();
    let deadline = down_at + Duration::from_secs(10);
    let err = loop {
        // Staleness only grows while the database is down: not ready before
        // a read means that read must fail.
        let ready = readiness.get();
        match index.get_many(&keys).await {
            Ok(_) => assert!(ready, "served while not ready"),
            Err(e) => break e,
        }
        assert!(Instant::now() < deadline, "a stale index kept serving");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Measured from the last successful catch-up, which may have asked the
    // database a poll interval before `down_at`.
    assert!(
        index.manifest_age() >= max_age,
        "refused {:?} after the database went down, with a manifest {:?} old: before the limit",
        down_at.elapsed(),
        index.manifest_age()
    );
    assert!(matches!(err, IndexError::Stale { .. }), "{err:?}");
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("stale"), "{status:?}");
    assert!(!readiness.get(), "a stale index reports ready");
    let range = KeyRange::new(b"", None, b"");
    let limits = PageLimits {
        max_items: 10,
        max_bytes: 1 << 20,
    };
    assert!(matches!(
        index.scan(&range, limits).await,
        Err(IndexError::Stale { .. })
    ));

    // The database is back: the next catch-up serves again.
    gated.down.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while index.get_many(&keys).await.is_err() || !readiness.get() {
        assert!(Instant::now() < deadline, "the index never recovered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An index in another process than the writer, which it is never told
/// about (no notifications, no poll during the test), as a distributed index
/// between two catch-ups.
async fn unnotified_index(dir: &std::path::Path) -> (standalone::Parts, Arc<Gated>, Arc<Index>) {
    let mut config = StandaloneConfig::new(dir);
    config.maintenance = None;
    let parts = standalone::open(&config, None).await.unwrap();
    let gated = Gated::new(parts.meta.clone());
    let cache = Arc::new(BlockCache::new(
        parts.store.clone(),
        &CacheConfig::default(),
    ));
    let index_config = IndexConfig {
        poll_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let (index, _follow) = Index::start(gated.clone(), cache, index_config)
        .await
        .unwrap();
    (parts, gated, index)
}

fn read(key: &str, consistency: Consistency) -> tonic::Request<BatchGetRequest> {
    tonic::Request::new(BatchGetRequest {
        keys: vec![key.into()],
        consistency: consistency.into(),
        ..Default::default()
    })
}

/// Issue 15: a STRONG read sees a write acknowledged before it started even
/// when the index has not heard of it; a default read (eventual) does not.
#[tokio::test]
async fn a_strong_read_sees_a_write_the_index_was_not_told_about() {
    let dir = tempfile::tempdir().unwrap();
    let (parts, _gated, index) = unnotified_index(dir.path()).await;
    let api = IndexApi::new(index.clone(), Limits::default());
    parts.batcher.write(put("k", "v")).await.unwrap();

    let eventual = api
        .batch_get(read("k", Consistency::Default))
        .await
        .unwrap();
    assert!(
        eventual.into_inner().results.is_empty(),
        "the setup must leave the index behind, or this test proves nothing"
    );
    let strong = api.batch_get(read("k", Consistency::Strong)).await.unwrap();
    let strong = strong.into_inner();
    assert_eq!(strong.results.get("k").map(|v| &v[..]), Some(&b"v"[..]));
    assert_eq!(strong.sequence, index.applied_sequence());
}

/// Strong reads arriving while a version query is in flight share the next
/// one (etcd's ReadIndex batching): 1 + 20 reads cost 2 queries, not 21.
#[tokio::test]
async fn concurrent_strong_reads_share_one_version_query() {
    let dir = tempfile::tempdir().unwrap();
    let (parts, gated, index) = unnotified_index(dir.path()).await;
    let api = Arc::new(IndexApi::new(index.clone(), Limits::default()));
    parts.batcher.write(put("k", "v")).await.unwrap();
    let before = gated.version_queries.load(Ordering::SeqCst);

    gated.hold_version.store(true, Ordering::SeqCst);
    let strong = |api: Arc<IndexApi>| {
        tokio::spawn(async move { api.batch_get(read("k", Consistency::Strong)).await })
    };
    let first = strong(api.clone());
    // The first round is in the database.
    tokio::time::timeout(Duration::from_secs(10), gated.fetched.notified())
        .await
        .expect("a strong read never asked the database for its version");
    let rest: Vec<_> = (0..20).map(|_| strong(api.clone())).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while index.read_index_queued() < 20 {
        assert!(Instant::now() < deadline, "20 strong reads never queued");
        tokio::task::yield_now().await;
    }
    gated.release.notify_one();
    for read in std::iter::once(first).chain(rest) {
        let got = read.await.unwrap().unwrap().into_inner();
        assert_eq!(got.results.get("k").map(|v| &v[..]), Some(&b"v"[..]));
    }
    let queries = gated.version_queries.load(Ordering::SeqCst) - before;
    assert_eq!(queries, 2, "21 strong reads made {queries} version queries");
}

/// A flush of more entries than one manifest change prunes, with no commit
/// after it: the idle index still empties its WAL tier in memory (it used to
/// keep them until later commits), and the replaced WAL file shows up as
/// dead bytes in the debt until purge deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_index_prunes_a_large_flush_and_reports_dead_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StandaloneConfig::new(dir.path());
    config.maintenance = None;
    config.batcher.wal_flush = None;
    let parts = standalone::open(&config, None).await.unwrap();
    let entries: Vec<Entry> = (0..5_000)
        .map(|i| Entry {
            key: Bytes::from(format!("k{i:05}")),
            value: Value::Put(Bytes::from_static(b"v")),
        })
        .collect();
    parts.batcher.write(entries).await.unwrap();
    parts.index.catch_up().await.unwrap();
    let limits = skyvault::wal_flush::DEFAULT_LIMITS;
    let compaction = skyvault::compaction::CompactionConfig::default();
    skyvault::compaction::flush(&parts.store, &parts.meta, &compaction, &limits, true)
        .await
        .unwrap();
    parts.index.catch_up().await.unwrap();
    // One manifest change prunes only part of the flush (the memtable's
    // unit tests check that); no more changes come.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (keys, dead) = (
            parts.index.manifest().mem.len(),
            parts.index.debt().dead_bytes,
        );
        if keys == 0 && dead > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "idle index keeps {keys} flushed keys, dead bytes {dead}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = parts
        .index
        .get_many(&[Bytes::from("k04999")])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![Some(Bytes::from_static(b"v"))],
        "read from the L0 file"
    );
}
