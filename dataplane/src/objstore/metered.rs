//! Counts every object-store request by operation and result, with latency
//! and bytes: object-store requests are the main running cost of the store.

use super::{BoxUpload, ObjectMeta, ObjectStore, StoreResult, Upload};
use crate::metrics::metrics;
use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::time::Instant;

#[derive(Debug)]
pub struct MeteredStore<S> {
    inner: S,
}

impl<S> MeteredStore<S> {
    pub fn new(inner: S) -> Self {
        MeteredStore { inner }
    }
}

fn record<T>(op: &str, started: Instant, result: &StoreResult<T>) {
    let m = metrics();
    let outcome = if result.is_ok() { "ok" } else { "error" };
    m.objstore_requests.with_label_values(&[op, outcome]).inc();
    m.objstore_latency
        .with_label_values(&[op])
        .observe(started.elapsed().as_secs_f64());
}

fn count_bytes(direction: &str, n: usize) {
    metrics()
        .objstore_bytes
        .with_label_values(&[direction])
        .inc_by(n as u64);
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for MeteredStore<S> {
    async fn put(&self, path: &str, data: Bytes) -> StoreResult<()> {
        let (started, len) = (Instant::now(), data.len());
        let result = self.inner.put(path, data).await;
        record("put", started, &result);
        if result.is_ok() {
            count_bytes("out", len);
        }
        result
    }

    async fn upload<'a>(&'a self, path: &str) -> StoreResult<BoxUpload<'a>> {
        let started = Instant::now();
        let result = self.inner.upload(path).await;
        record("upload_start", started, &result);
        Ok(Box::new(MeteredUpload { inner: result? }))
    }

    async fn get(&self, path: &str) -> StoreResult<Bytes> {
        let started = Instant::now();
        let result = self.inner.get(path).await;
        record("get", started, &result);
        if let Ok(data) = &result {
            count_bytes("in", data.len());
        }
        result
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let started = Instant::now();
        let result = self.inner.get_range(path, range).await;
        record("get_range", started, &result);
        if let Ok(data) = &result {
            count_bytes("in", data.len());
        }
        result
    }

    async fn get_suffix(&self, path: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        let started = Instant::now();
        let result = self.inner.get_suffix(path, len).await;
        record("get_range", started, &result);
        if let Ok((data, _)) = &result {
            count_bytes("in", data.len());
        }
        result
    }

    async fn delete(&self, path: &str) -> StoreResult<()> {
        let started = Instant::now();
        let result = self.inner.delete(path).await;
        record("delete", started, &result);
        result
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let started = Instant::now();
        let result = self.inner.list(prefix).await;
        record("list", started, &result);
        result
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Counts an upload's writes (bytes out) and its completion.
struct MeteredUpload<'a> {
    inner: BoxUpload<'a>,
}

#[async_trait]
impl Upload for MeteredUpload<'_> {
    async fn write(&mut self, data: Bytes) -> StoreResult<()> {
        let (started, len) = (Instant::now(), data.len());
        let result = self.inner.write(data).await;
        record("upload_write", started, &result);
        if result.is_ok() {
            count_bytes("out", len);
        }
        result
    }

    async fn finish(self: Box<Self>) -> StoreResult<()> {
        let started = Instant::now();
        let result = self.inner.finish().await;
        record("upload_finish", started, &result);
        result
    }

    async fn abort(self: Box<Self>) {
        self.inner.abort().await
    }
}
