//! Purge never deletes an object a flush is about to commit (issue 12 item 1):
//! a batcher's writer intent protects its uploaded, uncommitted files however
//! old they are, and an intent that expired can never commit again.

use bytes::Bytes;
use skyvault::meta::{FileKind, MetaError, NewFile};
use skyvault::objstore::{DynStore, Fault, FaultyStore, LocalStore, ObjectStore};
use skyvault::purge::{self, PurgeConfig};
use skyvault::sstable::{Entry, Value};
use skyvault::standalone::{self, StandaloneConfig};
use skyvault::writer_intent::{self, writer_of_wal};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn no_grace() -> PurgeConfig {
    PurgeConfig {
        grace: Duration::ZERO,
        ..Default::default()
    }
}

/// A standalone store without background maintenance, over a faulty layer.
async fn open() -> (
    tempfile::TempDir,
    Arc<FaultyStore<LocalStore>>,
    standalone::Parts,
) {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStore::open(dir.path().join("objects")).unwrap();
    let faulty = Arc::new(FaultyStore::new(local));
    let mut config = StandaloneConfig::new(dir.path());
    config.maintenance = None;
    let store: DynStore = faulty.clone();
    let parts = standalone::open(&config, Some(store)).await.unwrap();
    (dir, faulty, parts)
}

async fn wal_objects(store: &FaultyStore<LocalStore>) -> Vec<String> {
    store
        .list("wal/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect()
}

/// A flush whose PUT landed and whose commit is held back survives a purge
/// with no grace at all, then commits and reads back.
#[tokio::test]
async fn a_flush_between_put_and_commit_survives_purge() {
    let (_dir, faulty, parts) = open().await;

    faulty.set_fault(Some(Fault::PutThenHang));
    let batcher = parts.batcher.clone();
    let write = tokio::spawn(async move {
        batcher
            .write(vec![Entry {
                key: Bytes::from_static(b"key"),
                value: Value::Put(Bytes::from_static(b"value")),
            }])
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let uploaded = loop {
        let objects = wal_objects(&faulty).await;
        if let Some(object) = objects.into_iter().next() {
            break object;
        }
        assert!(
            Instant::now() < deadline,
            "the flush never uploaded its file"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(writer_of_wal(&uploaded).is_some(), "{uploaded}");
    assert!(parts.meta.live_files().await.unwrap().is_empty());

    // The commit has not happened; the object is past a zero grace period.
    let summary = purge::purge(&parts.store, &parts.meta, &no_grace())
        .await
        .unwrap();
    assert_eq!(summary.kept_in_progress, 1, "{summary:?}");
    assert!(summary.orphans_deleted.is_empty(), "{summary:?}");

    faulty.set_fault(None);
    let seq = write.await.unwrap().expect("the held flush commits");
    parts
        .index
        .wait_for(seq, Duration::from_secs(10))
        .await
        .unwrap();
    let got = parts
        .index
        .get_many(&[Bytes::from_static(b"key")])
        .await
        .expect("the committed file is still in the store");
    assert_eq!(got, vec![Some(Bytes::from_static(b"value"))]);
}

fn wal_file(object: &str) -> NewFile {
    NewFile {
        object: object.to_string(),
        kind: FileKind::Wal,
        level: 0,
        min_key: b"a".to_vec(),
        max_key: b"a".to_vec(),
        entry_count: 1,
        tombstone_count: 0,
        size_bytes: 5,
    }
}

/// An intent that expired is gone for good: purge deletes its uploads, and a
/// late commit of one of them commits nothing. An intent about to expire
/// (within the commit margin) cannot commit either.
#[tokio::test]
async fn an_expired_intent_never_commits_and_its_uploads_are_orphans() {
    let (_dir, faulty, parts) = open().await;
    let meta = &parts.meta;

    let writer = "00000000000000aa";
    meta.register_writer(writer, Duration::from_millis(1))
        .await
        .unwrap();
    let object = writer_intent::wal_object_name(writer);
    faulty
        .put(&object, Bytes::from_static(b"bytes"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while meta.live_writers().await.unwrap().contains(&writer.into()) {
        assert!(Instant::now() < deadline, "the intent never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        !meta
            .renew_writer(writer, Duration::from_secs(60))
            .await
            .unwrap()
    );
    let summary = purge::purge(&parts.store, meta, &no_grace()).await.unwrap();
    assert_eq!(summary.orphans_deleted, vec![object.clone()]);
    let err = meta.commit_wal(wal_file(&object)).await.unwrap_err();
    assert!(matches!(err, MetaError::Conflict(_)), "{err:?}");
    assert!(meta.live_files().await.unwrap().is_empty());

    // Live, but for less than the commit margin: refused too.
    let short = "00000000000000bb";
    let ttl = writer_intent::COMMIT_MARGIN / 2;
    meta.register_writer(short, ttl).await.unwrap();
    let err = meta
        .commit_wal(wal_file(&writer_intent::wal_object_name(short)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("writer intent"), "{err}");

    // Live well past the margin: commits.
    let live = "00000000000000cc";
    meta.register_writer(live, writer_intent::INTENT_TTL)
        .await
        .unwrap();
    meta.commit_wal(wal_file(&writer_intent::wal_object_name(live)))
        .await
        .unwrap();
    assert_eq!(meta.live_files().await.unwrap().len(), 1);
}

/// A batcher whose intent expired (its renewals could not reach the database
/// for a minute, say) commits none of the flushes named after it — each fails
/// "nothing was committed" — then takes a new intent and writes again.
#[tokio::test]
async fn a_batcher_whose_intent_expired_takes_a_new_one() {
    let (dir, _faulty, parts) = open().await;
    let put = |v: &'static str| {
        vec![Entry {
            key: Bytes::from_static(b"k"),
            value: Value::Put(Bytes::from_static(v.as_bytes())),
        }]
    };
    parts.batcher.write(put("first")).await.unwrap();
    let first = writer_of_wal(&parts.meta.live_files().await.unwrap()[0].object)
        .unwrap()
        .to_string();
    // Expire it behind the batcher's back.
    let url = format!("sqlite://{}/meta.db", dir.path().display());
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE writer_intents SET expires_at_ms = 0")
        .execute(&db)
        .await
        .unwrap();
    let err = parts.batcher.write(put("lapsed")).await.unwrap_err();
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("nothing was committed"),
        "{status:?}"
    );
    assert!(status.message().contains(&first), "{status:?}");
    // The next renewal finds it expired; a write after that succeeds.
    let deadline = Instant::now() + writer_intent::RENEW_EVERY * 3;
    loop {
        if parts.batcher.write(put("second")).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batcher never took a new intent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let live = parts.meta.live_files().await.unwrap();
    let newest = writer_of_wal(&live[0].object).unwrap();
    assert_ne!(newest, first, "committed under the expired intent");
    assert_eq!(live.len(), 2, "the lapsed write committed: {live:?}");
}
