//! Store identity (issue 14): a database and a bucket that belong to
//! different stores are refused by roles, jobs and purge — and purge deletes
//! nothing. Everything in-process on local directories and SQLite, with a
//! zero grace period so that a purge that did run would delete.

use bytes::Bytes;
use skyvault::meta::DynMeta;
use skyvault::objstore::{BoxUpload, DynStore, LocalStore, ObjectMeta, ObjectStore, StoreResult};
use skyvault::purge::{self, PurgeConfig};
use skyvault::sstable::{Entry, Value};
use skyvault::standalone::{self, Parts, StandaloneConfig};
use skyvault::store_identity::{self, IdentityError, MARKER};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn no_grace() -> PurgeConfig {
    PurgeConfig {
        grace: Duration::ZERO,
        ..Default::default()
    }
}

fn config(dir: &Path) -> StandaloneConfig {
    let mut config = StandaloneConfig::new(dir);
    config.maintenance = None;
    config
}

/// A standalone store in `dir` holding a few committed files.
async fn store_with_data(dir: &Path) -> Parts {
    let parts = standalone::open(&config(dir), None).await.unwrap();
    for i in 0..3 {
        let entry = Entry {
            key: Bytes::from(format!("key-{i}")),
            value: Value::Put(Bytes::from_static(b"value")),
        };
        parts.batcher.write(vec![entry]).await.unwrap();
    }
    parts
}

async fn objects(store: &DynStore) -> usize {
    let mut n = 0;
    for prefix in purge::OBJECT_PREFIXES {
        n += store.list(prefix).await.unwrap().len();
    }
    n
}

async fn sqlite(dir: &Path) -> DynMeta {
    std::fs::create_dir_all(dir).unwrap();
    skyvault::meta::open_url(&format!("sqlite://{}", dir.join("meta.db").display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_store_keeps_its_identity_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let parts = store_with_data(dir.path()).await;
    let id = store_identity::verify(&parts.store, &parts.meta)
        .await
        .unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(
        store_identity::establish(&parts.store, &parts.meta)
            .await
            .unwrap(),
        id
    );
    assert!(parts.store.get(MARKER).await.is_ok());
}

#[tokio::test]
async fn purge_with_an_empty_database_over_a_store_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = store_with_data(&dir.path().join("a")).await;
    let before = objects(&a.store).await;
    assert!(before >= 3);
    let empty = sqlite(&dir.path().join("empty")).await;

    let err = purge::purge(&a.store, &empty, &no_grace())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has no store identity"), "{err}");
    let err = store_identity::establish(&a.store, &empty)
        .await
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::DatabaseMissing { .. }),
        "{err}"
    );
    assert_eq!(objects(&a.store).await, before, "nothing deleted");
    assert_eq!(empty.store_id().await.unwrap(), None, "nothing recorded");
}

#[tokio::test]
async fn another_stores_database_is_refused_by_roles_jobs_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let a = store_with_data(&dir.path().join("a")).await;
    let b = store_with_data(&dir.path().join("b")).await;
    let before = objects(&a.store).await;

    let err = purge::purge(&a.store, &b.meta, &no_grace())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("must name the same store"),
        "{err}"
    );
    for err in [
        store_identity::establish(&a.store, &b.meta)
            .await
            .unwrap_err(),
        store_identity::verify(&a.store, &b.meta).await.unwrap_err(),
    ] {
        assert!(matches!(err, IdentityError::Mismatch { .. }), "{err}");
    }
    assert_eq!(objects(&a.store).await, before, "nothing deleted");
}

#[tokio::test]
async fn a_database_with_files_over_a_bucket_without_marker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = store_with_data(&dir.path().join("a")).await;
    let other: DynStore = Arc::new(LocalStore::open(dir.path().join("other-bucket")).unwrap());
    let err = store_identity::establish(&other, &a.meta)
        .await
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::MarkerMissing { files, .. } if files >= 3),
        "{err}"
    );
    assert!(other.get(MARKER).await.is_err(), "no marker written");
}

/// A bucket whose marker is gone (or that predates identities) still cannot
/// be adopted by an empty database: its data objects give it away.
#[tokio::test]
async fn an_empty_database_over_a_bucket_with_data_but_no_marker_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = store_with_data(&dir.path().join("a")).await;
    a.store.delete(MARKER).await.unwrap();
    let empty = sqlite(&dir.path().join("empty")).await;
    let err = store_identity::establish(&a.store, &empty)
        .await
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::EmptyDatabaseOverData { .. }),
        "{err}"
    );
    assert_eq!(empty.store_id().await.unwrap(), None);
}

/// When the store's first process runs relative to this one's first read.
#[derive(Clone, Copy, Debug)]
enum Other {
    /// Before this process reads the marker (after anything read earlier).
    BeforeMarkerRead,
    /// Right after this process read the marker (before anything read later).
    AfterMarkerRead,
    /// When this process, having found neither record, lists the bucket for
    /// data (and so sees the other process's files).
    BeforeList,
}

/// An object store through which "another process" — a standalone store on
/// the same directory that records the identity and commits files — runs at
/// a chosen point of this process's identity check.
struct Interleaved {
    inner: DynStore,
    dir: PathBuf,
    when: Other,
    pending: Mutex<bool>,
}

impl Interleaved {
    async fn run_other_once(&self) {
        let first = std::mem::take(&mut *self.pending.lock().unwrap());
        if first {
            store_with_data(&self.dir).await;
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for Interleaved {
    async fn put(&self, path: &str, data: Bytes) -> StoreResult<()> {
        self.inner.put(path, data).await
    }
    async fn upload<'a>(&'a self, path: &str) -> StoreResult<BoxUpload<'a>> {
        self.inner.upload(path).await
    }
    async fn get(&self, path: &str) -> StoreResult<Bytes> {
        if path != MARKER {
            return self.inner.get(path).await;
        }
        match self.when {
            Other::BeforeMarkerRead => self.run_other_once().await,
            Other::AfterMarkerRead | Other::BeforeList => {}
        }
        let got = self.inner.get(path).await;
        if let Other::AfterMarkerRead = self.when {
            self.run_other_once().await;
        }
        got
    }
    async fn get_range(&self, path: &str, range: std::ops::Range<u64>) -> StoreResult<Bytes> {
        self.inner.get_range(path, range).await
    }
    async fn get_suffix(&self, path: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        self.inner.get_suffix(path, len).await
    }
    async fn delete(&self, path: &str) -> StoreResult<()> {
        self.inner.delete(path).await
    }
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        if let Other::BeforeList = self.when {
            self.run_other_once().await;
        }
        self.inner.list(prefix).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Two processes starting a new store at once (CI saw an index refuse the
/// store its batcher was recording as "no store identity"): whenever the
/// other one records the identity — and commits files — during this one's
/// check, both roles and jobs accept the store and agree on its id.
#[tokio::test]
async fn a_store_being_created_beside_this_process_is_accepted() {
    for when in [
        Other::BeforeMarkerRead,
        Other::AfterMarkerRead,
        Other::BeforeList,
    ] {
        for role in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let meta = sqlite(dir.path()).await;
            let local = LocalStore::open(dir.path().join("objects")).unwrap();
            let store: DynStore = Arc::new(Interleaved {
                inner: Arc::new(local),
                dir: dir.path().to_path_buf(),
                when,
                pending: Mutex::new(true),
            });
            let checked = if role {
                store_identity::establish(&store, &meta).await
            } else {
                store_identity::verify(&store, &meta).await
            };
            let id = checked.unwrap_or_else(|e| panic!("{when:?}, role {role}: {e}"));
            assert_eq!(meta.store_id().await.unwrap(), Some(id), "{when:?}");
            assert!(objects(&store).await >= 3, "the other process committed");
        }
    }
}
