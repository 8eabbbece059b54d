//! Invariants 6 (compaction changes nothing visible; never two at once) and
//! 7 (purge never deletes a referenced object), with a model-based test.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use skyvault::compaction::{self, CompactionConfig, Outcome};
use skyvault::index::{KeyRange, PageLimits};
use skyvault::objstore::{DynStore, LocalStore, ObjectStore};
use skyvault::purge::{self, PurgeConfig};
use skyvault::sstable::{Entry, Value};
use skyvault::standalone::{self, Parts, StandaloneConfig};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

fn config(dir: &Path) -> StandaloneConfig {
    let mut c = StandaloneConfig::new(dir);
    c.maintenance = None;
    c
}

async fn open(dir: &Path) -> Parts {
    standalone::open(&config(dir), None).await.unwrap()
}

fn small_outputs() -> CompactionConfig {
    // Small outputs so compactions produce several runs and exercise cutting.
    CompactionConfig {
        target_file_bytes: 2048,
        ..Default::default()
    }
}

type Model = BTreeMap<Bytes, Bytes>;

/// Every key of the key space reads as the model says, by point reads and by scan.
async fn verify(parts: &Parts, model: &Model, keys: &[Bytes], context: &str) {
    let got = parts.index.get_many(keys).await.unwrap();
    for (key, value) in keys.iter().zip(got) {
        assert_eq!(value.as_ref(), model.get(key), "{context}: key {key:?}");
    }
    let range = KeyRange::new(b"", None, b"");
    let limits = PageLimits {
        max_items: 100_000,
        max_bytes: usize::MAX,
    };
    let page = parts.index.scan(&range, limits).await.unwrap();
    let scanned: Model = page.items.into_iter().collect();
    assert_eq!(&scanned, model, "{context}: scan");
}

#[tokio::test]
async fn random_operations_read_like_a_map_across_compactions_and_purges() {
    for seed in 0..4u64 {
        let dir = tempfile::tempdir().unwrap();
        let parts = open(dir.path()).await;
        let mut rng = StdRng::seed_from_u64(seed);
        let keys: Vec<Bytes> = (0..60).map(|i| Bytes::from(format!("key{i:03}"))).collect();
        let mut model = Model::new();
        let no_grace = PurgeConfig {
            grace: Duration::ZERO,
            dry_run: false,
        };
        for step in 0..40 {
            let mut batch = Vec::new();
            for _ in 0..rng.random_range(1..12) {
                let key = keys[rng.random_range(0..keys.len())].clone();
                if rng.random_bool(0.3) {
                    model.remove(&key);
                    batch.push(Entry {
                        key,
                        value: Value::Delete,
                    });
                } else {
                    let value = Bytes::from(format!("s{seed}-{step}-{}", rng.random::<u16>()));
                    model.insert(key.clone(), value.clone());
                    batch.push(Entry {
                        key,
                        value: Value::Put(value),
                    });
                }
            }
            parts.batcher.write(batch).await.unwrap();
            parts.index.catch_up().await.unwrap();
            let context = format!("seed {seed} step {step}");
            verify(&parts, &model, &keys, &format!("{context} after write")).await;
            if rng.random_bool(0.3) {
                let summary = compaction::compact(&parts.store, &parts.meta, &small_outputs())
                    .await
                    .unwrap();
                assert_eq!(summary.outcome, Outcome::Compacted);
                // Still on the old manifest: the replaced files must still be readable.
                verify(&parts, &model, &keys, &format!("{context} old manifest")).await;
                parts.index.catch_up().await.unwrap();
                verify(
                    &parts,
                    &model,
                    &keys,
                    &format!("{context} after compaction"),
                )
                .await;
            }
            if rng.random_bool(0.3) {
                purge::purge(&parts.store, &parts.meta, &no_grace)
                    .await
                    .unwrap();
                verify(&parts, &model, &keys, &format!("{context} after purge")).await;
            }
        }
    }
}

#[tokio::test]
async fn two_compactions_started_together_do_not_both_swap() {
    let dir = tempfile::tempdir().unwrap();
    let parts = open(dir.path()).await;
    for i in 0..20 {
        let entries = (0..50)
            .map(|j| Entry {
                key: format!("k{j:03}").into(),
                value: Value::Put(format!("{i}").into()),
            })
            .collect();
        parts.batcher.write(entries).await.unwrap();
    }
    let cfg = small_outputs();
    let (a, b) = tokio::join!(
        compaction::compact(&parts.store, &parts.meta, &cfg),
        compaction::compact(&parts.store, &parts.meta, &cfg)
    );
    let outcomes = [a.unwrap().outcome, b.unwrap().outcome];
    let compacted = outcomes
        .iter()
        .filter(|o| **o == Outcome::Compacted)
        .count();
    assert_eq!(compacted, 1, "{outcomes:?}");
    parts.index.catch_up().await.unwrap();
    let got = parts.index.get_many(&[Bytes::from("k007")]).await.unwrap();
    assert_eq!(got[0].as_deref(), Some(&b"19"[..]));
}

fn age(path: &Path, by: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - by).unwrap();
}

#[tokio::test]
async fn purge_deletes_only_old_unreferenced_objects() {
    let dir = tempfile::tempdir().unwrap();
    let parts = open(dir.path()).await;
    parts
        .batcher
        .write(vec![Entry {
            key: "a".into(),
            value: Value::Put("1".into()),
        }])
        .await
        .unwrap();
    let objects = dir.path().join("objects");
    let referenced = parts.meta.live_files().await.unwrap()[0].object.clone();
    parts
        .store
        .put("wal/orphan-old.sst", Bytes::from_static(b"x"))
        .await
        .unwrap();
    parts
        .store
        .put("wal/orphan-young.sst", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let two_hours = Duration::from_secs(7200);
    age(&objects.join(&referenced), two_hours);
    age(&objects.join("wal/orphan-old.sst"), two_hours);

    let grace = PurgeConfig {
        grace: Duration::from_secs(3600),
        dry_run: true,
    };
    let dry = purge::purge(&parts.store, &parts.meta, &grace)
        .await
        .unwrap();
    assert_eq!(dry.orphans_deleted, vec!["wal/orphan-old.sst".to_string()]);
    assert!(
        objects.join("wal/orphan-old.sst").exists(),
        "a dry run deletes nothing"
    );

    let summary = purge::purge(
        &parts.store,
        &parts.meta,
        &PurgeConfig {
            dry_run: false,
            ..grace
        },
    )
    .await
    .unwrap();
    assert_eq!(
        summary.orphans_deleted,
        vec!["wal/orphan-old.sst".to_string()]
    );
    assert_eq!(summary.kept_young, 1);
    assert!(!objects.join("wal/orphan-old.sst").exists());
    assert!(objects.join("wal/orphan-young.sst").exists());
    assert!(
        objects.join(&referenced).exists(),
        "a referenced object was deleted"
    );
    let got = parts.index.get_many(&[Bytes::from("a")]).await.unwrap();
    assert_eq!(got[0].as_deref(), Some(&b"1"[..]));
}

/// Counts ranged GETs, to prove how many objects a read touches.
struct Counting {
    inner: LocalStore,
    gets: AtomicU64,
    objects: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

#[async_trait::async_trait]
impl ObjectStore for Counting {
    async fn put(&self, p: &str, d: Bytes) -> skyvault::objstore::StoreResult<()> {
        self.inner.put(p, d).await
    }
    async fn get(&self, p: &str) -> skyvault::objstore::StoreResult<Bytes> {
        self.inner.get(p).await
    }
    async fn get_range(
        &self,
        p: &str,
        r: std::ops::Range<u64>,
    ) -> skyvault::objstore::StoreResult<Bytes> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.objects.lock().unwrap().insert(p.to_string());
        self.inner.get_range(p, r).await
    }
    async fn get_suffix(&self, p: &str, n: u64) -> skyvault::objstore::StoreResult<(Bytes, u64)> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.objects.lock().unwrap().insert(p.to_string());
        self.inner.get_suffix(p, n).await
    }
    async fn delete(&self, p: &str) -> skyvault::objstore::StoreResult<()> {
        self.inner.delete(p).await
    }
    async fn list(
        &self,
        p: &str,
    ) -> skyvault::objstore::StoreResult<Vec<skyvault::objstore::ObjectMeta>> {
        self.inner.list(p).await
    }
    fn describe(&self) -> String {
        "counting".into()
    }
}

#[tokio::test]
async fn after_full_compaction_a_point_read_touches_one_run() {
    let dir = tempfile::tempdir().unwrap();
    {
        let parts = open(dir.path()).await;
        for i in 0..30 {
            let entries = (0..200)
                .map(|j| Entry {
                    key: format!("k{j:04}").into(),
                    value: Value::Put(format!("v{i}-{j}").into()),
                })
                .collect();
            parts.batcher.write(entries).await.unwrap();
        }
        let cfg = CompactionConfig {
            target_file_bytes: 300,
            ..Default::default()
        };
        let summary = compaction::compact(&parts.store, &parts.meta, &cfg)
            .await
            .unwrap();
        assert!(summary.outputs.len() > 1, "want several runs: {summary:?}");
        assert_eq!(summary.entries_out, 200);
    }
    let counting = Arc::new(Counting {
        inner: LocalStore::open(dir.path().join("objects")).unwrap(),
        gets: AtomicU64::new(0),
        objects: Default::default(),
    });
    let store: DynStore = counting.clone();
    let parts = standalone::open(&config(dir.path()), Some(store))
        .await
        .unwrap();
    for j in [0, 77, 199] {
        counting.gets.store(0, Ordering::SeqCst);
        counting.objects.lock().unwrap().clear();
        let key = Bytes::from(format!("k{j:04}"));
        let got = parts
            .index
            .get_many(std::slice::from_ref(&key))
            .await
            .unwrap();
        assert_eq!(got[0].as_deref(), Some(format!("v29-{j}").as_bytes()));
        let touched = counting.objects.lock().unwrap().len();
        assert_eq!(touched, 1, "key {j} touched {touched} objects");
        let gets = counting.gets.load(Ordering::SeqCst);
        assert!(gets <= 3, "key {j}: {gets} GETs (footer+meta, block)");
    }
}
