//! Store identity (issue 14): a database and a bucket that belong to
//! different stores are refused by roles, jobs and purge — and purge deletes
//! nothing. Everything in-process on local directories and SQLite, with a
//! zero grace period so that a purge that did run would delete.

use bytes::Bytes;
use skyvault::meta::DynMeta;
use skyvault::objstore::DynStore;
use skyvault::purge::{self, PurgeConfig};
use skyvault::sstable::{Entry, Value};
use skyvault::standalone::{self, Parts, StandaloneConfig};
use skyvault::store_identity::{self, IdentityError, MARKER};
use std::path::Path;
use std::time::Duration;

fn no_grace() -> PurgeConfig {
    PurgeConfig {
        grace: Duration::ZERO,
        dry_run: false,
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
    let other: DynStore = std::sync::Arc::new(
        skyvault::objstore::LocalStore::open(dir.path().join("other-bucket")).unwrap(),
    );
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
