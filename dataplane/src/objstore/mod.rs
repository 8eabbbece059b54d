//! The object store: one small trait, with backends and cross-cutting layers
//! (metrics, fault injection) as thin wrappers over it.
//!
//! Objects are immutable once written: every path is written at most once, so
//! readers may cache anything they have read from it.

mod faulty;
pub mod latency;
mod limited;
mod local;
mod metered;
mod s3;
mod s3_multipart;
mod upload;

pub use faulty::{FAULTS_ENV, Fault, FaultyStore, inject_faults_from_env};
pub use limited::{DEFAULT_MAX_REQUESTS, LimitedStore};
pub use local::LocalStore;
pub use metered::MeteredStore;
pub use s3::{S3Config, S3Store};
pub use upload::{BoxUpload, PART_BYTES, Upload};

use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub path: String,
    pub size: u64,
    pub last_modified: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {path:?} not found")]
    NotFound { path: String },
    #[error("range {start}..{end} is outside object {path:?} of {size} bytes")]
    BadRange {
        path: String,
        start: u64,
        end: u64,
        size: u64,
    },
    #[error("invalid object path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("object store I/O on {path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request for a reason retrying cannot fix: a
    /// missing bucket, bad credentials, a bad URL.
    #[error("object store misconfigured: {0}")]
    Rejected(String),
    /// The store has no room for the write: a full disk or an exhausted
    /// quota. Retrying helps only once space is freed.
    #[error("object store out of space writing {path:?}: {detail}")]
    NoSpace { path: String, detail: String },
}

impl StoreError {
    /// Whether retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Io { .. })
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Writes the whole object atomically: readers see all of it or nothing.
    async fn put(&self, path: &str, data: Bytes) -> StoreResult<()>;
    /// Starts writing `path` part by part (see [`Upload`]); for objects too
    /// large to hold in memory.
    async fn upload<'a>(&'a self, path: &str) -> StoreResult<BoxUpload<'a>>;
    async fn get(&self, path: &str) -> StoreResult<Bytes>;
    /// Reads bytes `range` of the object; the range must lie inside it.
    async fn get_range(&self, path: &str, range: Range<u64>) -> StoreResult<Bytes>;
    /// Reads the last `len` bytes (all of it if shorter), with the object's size.
    async fn get_suffix(&self, path: &str, len: u64) -> StoreResult<(Bytes, u64)>;
    /// Deleting a missing object succeeds, as on S3.
    async fn delete(&self, path: &str) -> StoreResult<()>;
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>>;
    /// A short description for logs, e.g. `file:///var/lib/skyvault`.
    fn describe(&self) -> String;
}

pub type DynStore = Arc<dyn ObjectStore>;

/// A shared store is a store: layers (`FaultyStore`, …) can wrap one.
#[async_trait]
impl ObjectStore for DynStore {
    async fn put(&self, path: &str, data: Bytes) -> StoreResult<()> {
        (**self).put(path, data).await
    }
    async fn upload<'a>(&'a self, path: &str) -> StoreResult<BoxUpload<'a>> {
        (**self).upload(path).await
    }
    async fn get(&self, path: &str) -> StoreResult<Bytes> {
        (**self).get(path).await
    }
    async fn get_range(&self, path: &str, range: Range<u64>) -> StoreResult<Bytes> {
        (**self).get_range(path, range).await
    }
    async fn get_suffix(&self, path: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        (**self).get_suffix(path, len).await
    }
    async fn delete(&self, path: &str) -> StoreResult<()> {
        (**self).delete(path).await
    }
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        (**self).list(prefix).await
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Rejects paths that could escape the store's root or that S3 would treat oddly.
pub(crate) fn check_path(path: &str) -> StoreResult<()> {
    let bad = |reason| {
        Err(StoreError::InvalidPath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("empty");
    }
    if path.starts_with('/') {
        return bad("must be relative");
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("empty, '.' or '..' segment");
    }
    Ok(())
}

/// Opens the store named by a URL: `file:///abs/dir` or `s3://BUCKET/PREFIX`
/// (see `s3` for the environment it reads), metered and with at most `max_requests`
/// requests in flight (queued callers wait; their wait is not in the latency
/// histogram, it is in `skyvault_objstore_waiting_requests`).
pub async fn open_url(url: &str, max_requests: usize) -> anyhow::Result<DynStore> {
    let base: DynStore = if let Some(dir) = url.strip_prefix("file://") {
        Arc::new(LocalStore::open(dir)?)
    } else if url.starts_with("s3://") {
        Arc::new(S3Store::open(S3Config::from_url_and_env(url)?).await)
    } else {
        anyhow::bail!(
            "unsupported object store URL {url:?}: expected file:///absolute/dir or s3://BUCKET/PREFIX"
        )
    };
    layered(base, max_requests)
}

/// The layers every store gets: the benchmarks' latency model when asked
/// for (`latency`), metrics, and the limit on requests in flight.
pub fn layered(base: DynStore, max_requests: usize) -> anyhow::Result<DynStore> {
    let base = latency::apply_from_env(base)?;
    Ok(Arc::new(LimitedStore::new(
        MeteredStore::new(base),
        max_requests,
    )))
}
