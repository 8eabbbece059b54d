//! Caps the object-store requests one process has in flight. Without a cap a
//! burst of cache misses (a read touching hundreds of new files, a scan over a
//! cold range) fans out into thousands of concurrent GETs: the store throttles
//! or times them out and every one fails. Queued here, they succeed later.

use super::{BoxUpload, ObjectMeta, ObjectStore, StoreError, StoreResult};
use crate::metrics::metrics;
use async_trait::async_trait;
use bytes::Bytes;
use prometheus::IntGauge;
use std::ops::Range;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Requests in flight per process unless configured otherwise.
pub const DEFAULT_MAX_REQUESTS: usize = 64;

#[derive(Debug)]
pub struct LimitedStore<S> {
    inner: S,
    permits: Semaphore,
    /// `skyvault_objstore_waiting`: requests waiting for their turn.
    waiting: IntGauge,
}

impl<S> LimitedStore<S> {
    /// `max_requests` is at least 1.
    pub fn new(inner: S, max_requests: usize) -> Self {
        LimitedStore {
            inner,
            permits: Semaphore::new(max_requests.max(1)),
            waiting: metrics().objstore_waiting.clone(),
        }
    }

    async fn permit(&self) -> StoreResult<SemaphorePermit<'_>> {
        // Counted while waiting; the guard also uncounts a caller that is
        // cancelled (dropped) before its turn comes.
        let _waiting = Waiting::new(&self.waiting);
        let permit = self.permits.acquire().await;
        // The semaphore is never closed; the error arm is only for completeness.
        permit.map_err(|_| StoreError::Unavailable("object store limiter closed".into()))
    }
}

/// One request in the waiting gauge for as long as it lives.
struct Waiting<'a>(&'a IntGauge);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Waiting(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for LimitedStore<S> {
    async fn put(&self, path: &str, data: Bytes) -> StoreResult<()> {
        let _permit = self.permit().await?;
        self.inner.put(path, data).await
    }

    /// Not limited: an upload sends one part at a time and is rare (compaction).
    async fn upload<'a>(&'a self, path: &str) -> StoreResult<BoxUpload<'a>> {
        self.inner.upload(path).await
    }

    async fn get(&self, path: &str) -> StoreResult<Bytes> {
        let _permit = self.permit().await?;
        self.inner.get(path).await
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let _permit = self.permit().await?;
        self.inner.get_range(path, range).await
    }

    async fn get_suffix(&self, path: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        let _permit = self.permit().await?;
        self.inner.get_suffix(path, len).await
    }

    async fn delete(&self, path: &str) -> StoreResult<()> {
        let _permit = self.permit().await?;
        self.inner.delete(path).await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let _permit = self.permit().await?;
        self.inner.list(prefix).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records the most requests it ever had in flight at once.
    #[derive(Default)]
    struct Gauge {
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    #[async_trait]
    impl ObjectStore for Arc<Gauge> {
        async fn put(&self, _: &str, _: Bytes) -> StoreResult<()> {
            unreachable!("the test only reads")
        }
        async fn upload<'a>(&'a self, _: &str) -> StoreResult<BoxUpload<'a>> {
            unreachable!("the test only reads")
        }
        async fn get(&self, _: &str) -> StoreResult<Bytes> {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::task::yield_now().await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(Bytes::new())
        }
        async fn get_range(&self, path: &str, _: Range<u64>) -> StoreResult<Bytes> {
            self.get(path).await
        }
        async fn get_suffix(&self, path: &str, _: u64) -> StoreResult<(Bytes, u64)> {
            Ok((self.get(path).await?, 0))
        }
        async fn delete(&self, _: &str) -> StoreResult<()> {
            Ok(())
        }
        async fn list(&self, _: &str) -> StoreResult<Vec<ObjectMeta>> {
            Ok(Vec::new())
        }
        fn describe(&self) -> String {
            "gauge".into()
        }
    }

    #[tokio::test]
    async fn never_more_than_the_limit_in_flight() {
        let gauge = Arc::new(Gauge::default());
        let store = LimitedStore::new(gauge.clone(), 3);
        let reads = (0..50).map(|i| {
            let store = &store;
            async move { store.get(&format!("o/{i}")).await }
        });
        let results = futures::future::join_all(reads).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(gauge.peak.load(Ordering::SeqCst), 3);
    }

    /// A request cancelled while waiting for its turn leaves the waiting
    /// gauge as it found it.
    #[tokio::test]
    async fn a_cancelled_wait_is_uncounted() {
        let mut store = LimitedStore::new(Arc::new(Gauge::default()), 1);
        store.waiting = IntGauge::new("test_waiting", "private to this test").unwrap();
        let turn = store.permits.acquire().await.unwrap();
        let mut read = Box::pin(store.get("o/1"));
        assert!(futures::poll!(&mut read).is_pending());
        assert_eq!(store.waiting.get(), 1);
        drop(read); // the caller gave up (deadline, client gone)
        assert_eq!(store.waiting.get(), 0);
        drop(turn);
        store.get("o/2").await.unwrap();
        assert_eq!(store.waiting.get(), 0);
    }
}
