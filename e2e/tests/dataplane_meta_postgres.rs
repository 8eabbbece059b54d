//! PostgreSQL metadata backend against a real server: the conformance checks
//! SQLite's unit tests run too (`skyvault::meta::conformance`), LISTEN/NOTIFY
//! between two connections, and invariant 4 (a commit that finishes out of
//! order is never skipped).

use skyvault::cache::{BlockCache, CacheConfig};
use skyvault::index::{Index, IndexConfig};
use skyvault::meta::{DynMeta, FileKind, MetaError, MetaStore, NewFile, PostgresMeta, conformance};
use skyvault::objstore::{LocalStore, MeteredStore, ObjectStore};
use skyvault_e2e::services::PostgresServer;
use sqlx::Row;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn wal(name: &str, min: &str, max: &str) -> NewFile {
    NewFile {
        object: format!("wal/{name}.sst"),
        kind: FileKind::Wal,
        level: 0,
        min_key: min.as_bytes().to_vec(),
        max_key: max.as_bytes().to_vec(),
        entry_count: 1,
        tombstone_count: 0,
        size_bytes: 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_sequenced_and_caught_up() {
    let pg = PostgresServer::start().unwrap();
    // Reopening runs the migrations again.
    let open = async || {
        let meta: DynMeta = Arc::new(PostgresMeta::open(&pg.url()).await.unwrap());
        assert!(meta.describe().starts_with("postgres://"));
        meta
    };
    conformance::commits_are_sequenced_and_caught_up(open).await;
}

/// A server of its own: conformance checks start from an empty database.
async fn fresh() -> (PostgresServer, PostgresMeta) {
    let pg = PostgresServer::start().unwrap();
    let meta = PostgresMeta::open(&pg.url()).await.unwrap();
    (pg, meta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_commit_takes_consecutive_versions_in_order() {
    let (_pg, meta) = fresh().await;
    conformance::a_group_commit_takes_consecutive_versions_in_order(&meta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_replaces_live_inputs_once() {
    let (_pg, meta) = fresh().await;
    conformance::swap_replaces_live_inputs_once(&meta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_exclude_until_expiry() {
    let (_pg, meta) = fresh().await;
    conformance::leases_exclude_until_expiry(&meta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_object_is_rejected_without_a_version_bump() {
    let (_pg, meta) = fresh().await;
    conformance::duplicate_object_is_rejected_without_a_version_bump(&meta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_trivial_moves_behave_as_on_sqlite() {
    let (_pg, meta) = fresh().await;
    conformance::claims_exclude_and_swaps_check_them(&meta).await;
    conformance::moves_change_levels_and_are_reported(&meta).await;
    conformance::forgotten_removals_force_a_full_reload(&meta).await;
    conformance::writer_intents_gate_commits(&meta).await;
    conformance::store_id_is_recorded_once(&meta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_counts_follow_the_wal_tier_rule() {
    let (_pg, meta) = fresh().await;
    conformance::tier_counts_follow_the_wal_tier_rule(&meta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_removals_follow_the_database_clock() {
    let (_pg, meta) = fresh().await;
    conformance::claims_and_removals_follow_the_database_clock(&meta).await;
}

/// A commit in one process wakes subscribers in another through NOTIFY,
/// well before the index's polling interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_reaches_other_connections() {
    let pg = PostgresServer::start().unwrap();
    let writer = PostgresMeta::open(&pg.url()).await.unwrap();
    let reader = PostgresMeta::open(&pg.url()).await.unwrap();
    let mut rx = reader.subscribe();
    // The listener task connects in the background: commit until one notification lands.
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        let mut n = 0;
        loop {
            n += 1;
            writer
                .commit_wal(wal(&format!("n{n}"), "a", "b"))
                .await
                .unwrap();
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await
            {
                return *rx.borrow_and_update();
            }
        }
    })
    .await
    .expect("no NOTIFY arrived within 10 s");
    assert!(got >= 1);
    // Now that LISTEN is established, one commit arrives promptly.
    let v = writer.commit_wal(wal("last", "a", "b")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|seen| *seen >= v))
        .await
        .expect("NOTIFY of the last commit within 2 s")
        .unwrap();
}

/// Invariant 4. Transaction A inserts its file row first (so it gets the
/// smaller `id`, the insert-time sequence) but commits after B. A reader that
/// tracked "max id seen" would never look below B's id again and would miss
/// A forever; catch-up by version does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_commit_is_never_skipped() {
    let pg = PostgresServer::start().unwrap();
    let meta = Arc::new(PostgresMeta::open(&pg.url()).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MeteredStore::new(LocalStore::open(dir.path()).unwrap()));
    // The index reads WAL objects into memory: both exist, with one shared key.
    for (name, value) in [("a", "from A"), ("b", "from B")] {
        let mut writer = skyvault::sstable::Writer::new(Default::default());
        let value = skyvault::sstable::Value::Put(bytes::Bytes::from(value));
        writer.add(b"k", &value).unwrap();
        let data = writer.finish(1, 1).unwrap();
        store.put(&format!("wal/{name}.sst"), data).await.unwrap();
    }
    let cache = Arc::new(BlockCache::new(store, &CacheConfig::default()));
    // A long poll interval: only explicit catch-ups and NOTIFY move the index.
    let config = IndexConfig {
        poll_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let (index, _follow) = Index::start(meta.clone(), cache, config).await.unwrap();

    // A: its own connection, row inserted, not committed, no version yet.
    let mut a = meta.pool().begin().await.unwrap();
    let a_id: i64 = sqlx::query(
        "INSERT INTO files (object, kind, level, seq, min_key, max_key, entry_count, \
         size_bytes, added_version, created_at_ms) \
         VALUES ('wal/a.sst', 'wal', 0, 0, 'a', 'z', 1, 100, 0, 0) RETURNING id",
    )
    .fetch_one(&mut *a)
    .await
    .unwrap()
    .get(0);

    // B: commits through the store while A is open.
    let b_seq = meta.commit_wal(wal("b", "a", "z")).await.unwrap();
    index.catch_up().await.unwrap();
    let max_id_seen: i64 = sqlx::query_scalar("SELECT max(id) FROM files")
        .fetch_one(meta.pool())
        .await
        .unwrap();
    assert!(a_id < max_id_seen, "A took the smaller insert-time id");

    // A commits now, taking the next version in its own transaction.
    let a_version: i64 = sqlx::query_scalar(
        "UPDATE manifest_version SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(&mut *a)
    .await
    .unwrap();
    sqlx::query("UPDATE files SET seq = $1, added_version = $1 WHERE id = $2")
        .bind(a_version)
        .bind(a_id)
        .execute(&mut *a)
        .await
        .unwrap();
    a.commit().await.unwrap();
    assert!(a_version as u64 > b_seq);

    // The naive reader really does miss A: this interleaving is the trap.
    let naive: Vec<String> = sqlx::query_scalar("SELECT object FROM files WHERE id > $1")
        .bind(max_id_seen)
        .fetch_all(meta.pool())
        .await
        .unwrap();
    assert!(naive.is_empty(), "tracking max id misses A: {naive:?}");

    // Version catch-up sees it, and so does the index.
    let delta = meta.changes_since(b_seq).await.unwrap();
    let added: Vec<&str> = delta.added.iter().map(|f| f.object.as_str()).collect();
    assert_eq!(added, vec!["wal/a.sst"]);
    index.catch_up().await.unwrap();
    let manifest = index.manifest();
    let objects: BTreeSet<String> = manifest
        .mem
        .files()
        .iter()
        .map(|f| f.record.object.clone())
        .collect();
    assert_eq!(
        objects,
        BTreeSet::from(["wal/a.sst".to_string(), "wal/b.sst".to_string()])
    );
    // A is newer than B (it committed later), so it wins on shared keys.
    let got = index.get_many(&[bytes::Bytes::from("k")]).await.unwrap();
    assert_eq!(got, vec![Some(bytes::Bytes::from("from A"))]);
}

/// Many concurrent committers over two connections pools: versions are
/// gapless and a reader catching up concurrently ends with every file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_are_gapless() {
    let pg = PostgresServer::start().unwrap();
    let a = Arc::new(PostgresMeta::open(&pg.url()).await.unwrap());
    let b = Arc::new(PostgresMeta::open(&pg.url()).await.unwrap());
    let reader = PostgresMeta::open(&pg.url()).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8 {
        let meta = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..25 {
                seqs.push(
                    meta.commit_wal(wal(&format!("t{t}-{i}"), "a", "b"))
                        .await
                        .unwrap(),
                );
            }
            seqs
        });
    }
    let mut seen = BTreeSet::new();
    let mut applied = 0;
    let mut committed = Vec::new();
    // Bounded: the catch-up that starts after every commit has returned must
    // reach version 200, and the commits themselves get a generous deadline.
    let give_up = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let all_committed = tasks.is_empty();
        let delta = reader.changes_since(applied).await.unwrap();
        for f in &delta.added {
            assert!(seen.insert(f.seq), "seq {} delivered twice", f.seq);
        }
        applied = delta.version;
        if all_committed {
            assert_eq!(
                applied, 200,
                "every commit returned, yet a catch-up after them reached version {applied}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "commits still running after 120 s ({} of 8 committers done; reader at version {applied})",
            8 - tasks.len()
        );
        if let Some(done) = tasks.try_join_next() {
            committed.extend(done.unwrap());
        }
        tokio::task::yield_now().await;
    }
    committed.sort();
    assert_eq!(committed, (1..=200).collect::<Vec<u64>>());
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), committed);
}

/// Every metadata transaction is bounded: a commit blocked on the manifest
/// row lock by a stalled holder fails after the lock timeout instead of
/// waiting forever, and the pool's sessions carry all three bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_lock_holder_does_not_block_commits_forever() {
    use skyvault::meta::postgres::{IDLE_IN_TRANSACTION_TIMEOUT, LOCK_TIMEOUT, STATEMENT_TIMEOUT};
    let pg = PostgresServer::start().unwrap();
    let meta = PostgresMeta::open(&pg.url()).await.unwrap();
    for (setting, bound) in [
        ("lock_timeout", LOCK_TIMEOUT),
        ("statement_timeout", STATEMENT_TIMEOUT),
        (
            "idle_in_transaction_session_timeout",
            IDLE_IN_TRANSACTION_TIMEOUT,
        ),
    ] {
        let shown: String = sqlx::query_scalar(&format!("SHOW {setting}"))
            .fetch_one(meta.pool())
            .await
            .unwrap();
        assert_eq!(shown, format!("{}s", bound.as_secs()), "{setting}");
        assert!(
            bound < Duration::from_secs(60),
            "{setting} is below the minimum grace"
        );
    }

    // Another client (no bounds of its own) takes the row lock and stalls.
    let other = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let mut holder = other.begin().await.unwrap();
    sqlx::query("UPDATE manifest_version SET version = version WHERE id = 1")
        .execute(&mut *holder)
        .await
        .unwrap();

    // Without the bound this waits as long as the holder stalls: forever.
    // The outer timeout only keeps a regression from hanging the suite.
    let blocked = tokio::time::timeout(
        Duration::from_secs(120),
        meta.commit_wal(wal("blocked", "a", "b")),
    )
    .await
    .expect("a commit blocked on the manifest row lock still waits after 120 s");
    let err = blocked.expect_err("the row lock is held by a stalled transaction");
    assert!(matches!(err, MetaError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("lock timeout"), "{err}");

    // Once the holder goes away, commits proceed.
    holder.rollback().await.unwrap();
    assert_eq!(meta.commit_wal(wal("after", "a", "b")).await.unwrap(), 1);
}
