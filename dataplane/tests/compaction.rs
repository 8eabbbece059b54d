//! Invariants 6 (compaction changes nothing visible; never two at once) and
//! 7 (purge never deletes a referenced object), with a model-based test.

mod common;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use skyvault::compaction::{self, CompactionConfig, Outcome};
use skyvault::index::{Index, KeyRange, Manifest, PageLimits};
use skyvault::lsm::LsmConfig;
use skyvault::meta::ClaimRange;
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
    common::quiet_config(dir)
}

async fn flush(parts: &Parts) -> compaction::CompactionSummary {
    common::flush_wal_tier(parts).await
}

/// One group commit that becomes one L0 file of its own (as every commit
/// did before the WAL tier): write, then flush.
async fn write_l0(parts: &Parts, batch: Vec<Entry>) {
    parts.batcher.write(batch).await.unwrap();
    let s = flush(parts).await;
    assert_eq!(s.outcome, Outcome::Compacted, "{s:?}");
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

/// A tiny tree: levels of a few KiB, so a few hundred writes build four or
/// five levels, L0 picks are partial and files move down without rewrites.
fn tiny_tree() -> CompactionConfig {
    CompactionConfig {
        lsm: LsmConfig {
            level_base_bytes: 2048,
            level_size_ratio: 3,
            l0_trigger_files: 3,
        },
        target_file_bytes: 1024,
        max_input_bytes: 6 * 1024,
        max_l0_files: 4,
        // Flushes here are ~1 KiB: let them merge among themselves (intra-L0)
        // whenever the base level outgrows L0 (rarely, with these tiny levels;
        // `intra_l0_keeps_tombstones_and_order` covers it for sure).
        small_l0_bytes: Some(1536),
        ..Default::default()
    }
}

type Model = BTreeMap<Bytes, Bytes>;

/// Every key of the key space reads as the model says, by point reads and by scan.
async fn verify(parts: &Parts, model: &Model, keys: &[Bytes], context: &str) {
    verify_index(&parts.index, model, keys, context).await;
}

const ALL: PageLimits = PageLimits {
    max_items: 100_000,
    max_bytes: usize::MAX,
};

async fn verify_index(index: &Index, model: &Model, keys: &[Bytes], context: &str) {
    let got = index.get_many(keys).await.unwrap();
    for (key, value) in keys.iter().zip(got) {
        assert_eq!(value.as_ref(), model.get(key), "{context}: key {key:?}");
    }
    let range = KeyRange::new(b"", None, b"");
    let page = index.scan(&range, ALL).await.unwrap();
    let scanned: Model = page.items.into_iter().collect();
    assert_eq!(&scanned, model, "{context}: scan");
    // Small pages, so scans resume across the WAL tier's chunks too.
    let mut paged = Model::new();
    let mut range = KeyRange::new(b"", None, b"");
    loop {
        let limits = PageLimits {
            max_items: 7,
            max_bytes: usize::MAX,
        };
        let page = index.scan(&range, limits).await.unwrap();
        paged.extend(page.items);
        match page.resume_after {
            Some(after) => range.start = [after.as_ref(), &[0]].concat(),
            None => break,
        }
    }
    assert_eq!(&paged, model, "{context}: paged scan");
}

/// Reads through a manifest snapshot taken earlier: what a request that
/// started before a swap sees until it finishes.
async fn verify_at(
    parts: &Parts,
    manifest: &Manifest,
    model: &Model,
    keys: &[Bytes],
    context: &str,
) {
    let cache = parts.index.cache();
    for key in keys {
        let got = skyvault::index::get(cache, manifest, key).await.unwrap();
        assert_eq!(got.as_ref(), model.get(key), "{context}: key {key:?}");
    }
}

/// A random batch of puts and deletes over `keys`, applied to `model` too.
fn random_batch(rng: &mut StdRng, keys: &[Bytes], model: &mut Model, tag: &str) -> Vec<Entry> {
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
            // About 100 bytes, so a few hundred keys span four or five levels.
            let value = Bytes::from(format!("{tag}-{}-{:>80}", rng.random::<u32>(), "v"));
            model.insert(key.clone(), value.clone());
            batch.push(Entry {
                key,
                value: Value::Put(value),
            });
        }
    }
    batch
}

/// What the random test saw happen, so it can insist each path was exercised.
#[derive(Debug, Default)]
struct Seen {
    trivial_moves: usize,
    intra_l0: usize,
    partial_l0_picks: usize,
    tombstones_dropped: u64,
    deepest_level: u32,
    lost_claims: usize,
    concurrent_swaps: usize,
    /// Two L0 jobs that both swapped at once (one into the base level, one
    /// merging the newer L0 files among themselves).
    concurrent_l0_jobs: usize,
    /// Flushes of the WAL tier into L0.
    flushes: usize,
    /// WAL files a freshly started index read back into memory.
    rebuilt_wal_files: usize,
}

#[tokio::test]
async fn random_operations_read_like_a_map_across_a_multi_level_tree() {
    let mut seen = Seen::default();
    for seed in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let parts = open(dir.path()).await;
        let mut rng = StdRng::seed_from_u64(seed);
        let keys: Vec<Bytes> = (0..300)
            .map(|i| Bytes::from(format!("key{i:03}")))
            .collect();
        let mut model = Model::new();
        let no_grace = PurgeConfig {
            grace: Duration::ZERO,
            replaced_grace: None,
            dry_run: false,
        };
        let cfg = tiny_tree();
        for step in 0..120 {
            let context = format!("seed {seed} step {step}");
            // Now and then a burst of writes piles up L0 before two jobs start.
            let burst = rng.random_bool(0.1);
            if burst {
                for k in 0..8 {
                    let tag = format!("s{seed}-{step}-burst{k}");
                    let more = random_batch(&mut rng, &keys, &mut model, &tag);
                    // Some commits stay in the WAL tier, most become L0 files.
                    if rng.random_bool(0.8) {
                        write_l0(&parts, more).await;
                    } else {
                        parts.batcher.write(more).await.unwrap();
                    }
                }
            }
            let batch = random_batch(&mut rng, &keys, &mut model, &format!("s{seed}-{step}"));
            if burst || rng.random_bool(0.4) {
                // Two jobs, a flush and a write at once: the jobs run on
                // disjoint inputs (or one finds them claimed), the flush takes
                // the WAL tier into L0 above them, the write lands in the WAL
                // tier above that.
                let (a, b, f, w) = tokio::join!(
                    compaction::compact(&parts.store, &parts.meta, &cfg),
                    compaction::compact(&parts.store, &parts.meta, &cfg),
                    async {
                        let limits = skyvault::wal_flush::DEFAULT_LIMITS;
                        let flush = CompactionConfig::default();
                        compaction::flush(&parts.store, &parts.meta, &flush, &limits, true).await
                    },
                    parts.batcher.write(batch)
                );
                w.unwrap();
                if f.unwrap().outcome == Outcome::Compacted {
                    seen.flushes += 1;
                }
                let (a, b) = (a.unwrap(), b.unwrap());
                if a.outcome.exit_code() == 0 && b.outcome.exit_code() == 0 {
                    seen.concurrent_swaps += 1;
                    if a.level_in == Some(0) && b.level_in == Some(0) {
                        seen.concurrent_l0_jobs += 1;
                    }
                }
                for s in [&a, &b] {
                    note(&mut seen, &parts, s).await;
                }
            } else {
                parts.batcher.write(batch).await.unwrap();
                parts.index.catch_up().await.unwrap();
                verify(&parts, &model, &keys, &format!("{context} after write")).await;
                if rng.random_bool(0.5) {
                    // The WAL tier into L0; readers see the swap in one step.
                    let old = parts.index.manifest();
                    if flush(&parts).await.outcome == Outcome::Compacted {
                        seen.flushes += 1;
                    }
                    verify_at(
                        &parts,
                        &old,
                        &model,
                        &keys,
                        &format!("{context} pre-flush snapshot"),
                    )
                    .await;
                    parts.index.catch_up().await.unwrap();
                    verify(&parts, &model, &keys, &format!("{context} after flush")).await;
                }
                let s = compaction::compact(&parts.store, &parts.meta, &cfg)
                    .await
                    .unwrap();
                note(&mut seen, &parts, &s).await;
                // Possibly still on the old manifest: replaced files must still be readable.
                verify(&parts, &model, &keys, &format!("{context} old manifest")).await;
            }
            check_levels(&parts, &context).await;
            parts.index.catch_up().await.unwrap();
            verify(
                &parts,
                &model,
                &keys,
                &format!("{context} after compaction"),
            )
            .await;
            if rng.random_bool(0.1) {
                // A job whose claim lapses (zero TTL) must not change anything.
                let lapsing = CompactionConfig {
                    claim_ttl: Duration::ZERO,
                    ..cfg.clone()
                };
                if compaction::compact(&parts.store, &parts.meta, &lapsing)
                    .await
                    .is_err()
                {
                    seen.lost_claims += 1;
                }
                parts.index.catch_up().await.unwrap();
                verify(
                    &parts,
                    &model,
                    &keys,
                    &format!("{context} after a lost claim"),
                )
                .await;
            }
            if rng.random_bool(0.2) {
                purge::purge(&parts.store, &parts.meta, &no_grace)
                    .await
                    .unwrap();
                verify(&parts, &model, &keys, &format!("{context} after purge")).await;
            }
            if rng.random_bool(0.05) {
                // A second index, started now, rebuilds the WAL tier from the
                // objects and reads exactly what the first one does.
                let cache = Arc::new(skyvault::cache::BlockCache::new(
                    parts.store.clone(),
                    &Default::default(),
                ));
                let (second, _follow) =
                    skyvault::index::Index::start(parts.meta.clone(), cache, Default::default())
                        .await
                        .unwrap();
                seen.rebuilt_wal_files += second.manifest().mem.files().len();
                verify_index(&second, &model, &keys, &format!("{context} second index")).await;
            }
        }
        // Drain every due job; the tree ends within its targets and reads the same.
        for _ in 0..200 {
            let s = compaction::compact(&parts.store, &parts.meta, &cfg)
                .await
                .unwrap();
            note(&mut seen, &parts, &s).await;
            if s.outcome == Outcome::NothingToDo {
                break;
            }
        }
        parts.index.catch_up().await.unwrap();
        assert!(
            !parts.index.debt().needs_compaction,
            "seed {seed}: {:?}",
            parts.index.debt()
        );
        verify(&parts, &model, &keys, &format!("seed {seed} drained")).await;
    }
    assert!(seen.trivial_moves > 0, "{seen:?}");
    assert!(seen.partial_l0_picks > 0, "{seen:?}");
    assert!(seen.tombstones_dropped > 0, "{seen:?}");
    assert!(seen.deepest_level >= 3, "{seen:?}");
    assert!(seen.lost_claims > 0, "{seen:?}");
    assert!(seen.concurrent_swaps > 0, "{seen:?}");
    assert!(seen.concurrent_l0_jobs > 0, "{seen:?}");
    assert!(seen.flushes > 0, "{seen:?}");
    assert!(seen.rebuilt_wal_files > 0, "{seen:?}");
}

/// Levels below L0 hold non-overlapping files.
async fn check_levels(parts: &Parts, context: &str) {
    let live = parts.meta.live_files().await.unwrap();
    for level in 1..skyvault::lsm::NUM_LEVELS {
        let mut files: Vec<_> = live.iter().filter(|f| f.level == level).collect();
        files.sort_by(|a, b| a.min_key.cmp(&b.min_key));
        for pair in files.windows(2) {
            assert!(
                pair[0].max_key < pair[1].min_key,
                "{context}: L{level} files overlap: {:?} {:?}",
                pair[0],
                pair[1]
            );
        }
    }
}

async fn note(seen: &mut Seen, parts: &Parts, s: &compaction::CompactionSummary) {
    match s.outcome {
        Outcome::TrivialMove => seen.trivial_moves += 1,
        Outcome::Compacted if s.level_out == Some(0) => seen.intra_l0 += 1,
        Outcome::Compacted => {
            seen.tombstones_dropped += s.tombstones_dropped;
            let live = parts.meta.live_files().await.unwrap();
            let l0_left = live
                .iter()
                .any(|f| f.level == 0 && f.kind == skyvault::meta::FileKind::Run);
            if s.level_in == Some(0) && l0_left {
                seen.partial_l0_picks += 1;
            }
        }
        _ => {}
    }
    if let Some(level) = s.level_out {
        seen.deepest_level = seen.deepest_level.max(level);
    }
}

#[tokio::test]
async fn a_job_whose_inputs_are_claimed_says_so_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let parts = open(dir.path()).await;
    for i in 0..20 {
        let entries = (0..50)
            .map(|j| Entry {
                key: format!("k{j:03}").into(),
                value: Value::Put(format!("{i}").into()),
            })
            .collect();
        write_l0(&parts, entries).await;
    }
    // Another job holds all of L0 (as a running L0 compaction does).
    let l0 = ClaimRange {
        level: 0,
        min_key: Vec::new(),
        max_key: None,
    };
    let ttl = Duration::from_secs(60);
    assert!(
        parts
            .meta
            .claim("other", std::slice::from_ref(&l0), ttl)
            .await
            .unwrap()
    );
    let before = parts.meta.current_version().await.unwrap();
    let cfg = small_outputs();
    let held = compaction::compact(&parts.store, &parts.meta, &cfg)
        .await
        .unwrap();
    assert_eq!(held.outcome, Outcome::InputsClaimed);
    assert_eq!(held.outcome.exit_code(), 4);
    assert_eq!(
        parts.meta.current_version().await.unwrap(),
        before,
        "nothing swapped"
    );
    parts.meta.release_claim("other").await.unwrap();
    let done = compaction::compact(&parts.store, &parts.meta, &cfg)
        .await
        .unwrap();
    assert_eq!(done.outcome, Outcome::Compacted);
    // With the L0 claim free again, a second claim on it conflicts only while held.
    assert!(
        parts
            .meta
            .claim("x", std::slice::from_ref(&l0), ttl)
            .await
            .unwrap()
    );
    assert!(!parts.meta.claim("y", &[l0], ttl).await.unwrap());
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
        replaced_grace: None,
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

/// A replaced file goes once its own grace (`replaced_grace`) has passed,
/// while a young orphan keeps the longer one; without it, both keep `grace`.
#[tokio::test]
async fn replaced_files_go_after_their_own_grace() {
    let dir = tempfile::tempdir().unwrap();
    let parts = open(dir.path()).await;
    let entry = Entry {
        key: "a".into(),
        value: Value::Put("1".into()),
    };
    parts.batcher.write(vec![entry]).await.unwrap();
    let flushed = flush(&parts).await;
    let replaced = flushed.inputs.clone();
    assert_eq!(replaced.len(), 1, "{flushed:?}");
    parts
        .store
        .put("wal/orphan-young.sst", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let one_grace = PurgeConfig {
        grace: Duration::from_secs(3600),
        ..Default::default()
    };
    let kept = purge::purge(&parts.store, &parts.meta, &one_grace)
        .await
        .unwrap();
    assert!(kept.replaced_deleted.is_empty(), "{kept:?}");
    assert!(parts.meta.dead_bytes().await.unwrap() > 0);

    let short = PurgeConfig {
        replaced_grace: Some(Duration::ZERO),
        ..one_grace
    };
    let summary = purge::purge(&parts.store, &parts.meta, &short)
        .await
        .unwrap();
    assert_eq!(summary.replaced_deleted, replaced);
    assert!(summary.orphans_deleted.is_empty(), "{summary:?}");
    assert_eq!(parts.meta.dead_bytes().await.unwrap(), 0);
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
    async fn upload<'a>(
        &'a self,
        p: &str,
    ) -> skyvault::objstore::StoreResult<skyvault::objstore::BoxUpload<'a>> {
        self.inner.upload(p).await
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
            write_l0(&parts, entries).await;
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

#[tokio::test]
async fn purge_keeps_the_outputs_of_a_running_compaction_however_old() {
    let dir = tempfile::tempdir().unwrap();
    let parts = open(dir.path()).await;
    let job = "0123456789abcdef";
    let range = ClaimRange {
        level: 6,
        min_key: b"a".to_vec(),
        max_key: Some(b"z".to_vec()),
    };
    let ttl = Duration::from_secs(60);
    assert!(parts.meta.claim(job, &[range], ttl).await.unwrap());
    // An output uploaded long ago by that job, not installed yet.
    let output = format!("run/0000000000001-{job}-0000.sst");
    parts
        .store
        .put(&output, Bytes::from_static(b"x"))
        .await
        .unwrap();
    age(
        &dir.path().join("objects").join(&output),
        Duration::from_secs(7200),
    );
    let no_grace = PurgeConfig {
        grace: Duration::ZERO,
        ..Default::default()
    };
    let summary = purge::purge(&parts.store, &parts.meta, &no_grace)
        .await
        .unwrap();
    assert_eq!(summary.kept_in_progress, 1);
    assert!(summary.orphans_deleted.is_empty(), "{summary:?}");
    // Once the job is gone (claim released or expired), it is an orphan.
    parts.meta.release_claim(job).await.unwrap();
    let summary = purge::purge(&parts.store, &parts.meta, &no_grace)
        .await
        .unwrap();
    assert_eq!(summary.orphans_deleted, vec![output]);
}

/// Intra-L0: with a large base level, runs of small L0 files merge into one
/// L0 file; its tombstones must survive (the base level still holds the
/// keys), and it must sit among the other L0 files by sequence.
#[tokio::test]
async fn intra_l0_keeps_tombstones_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let parts = open(dir.path()).await;
    let mut model = Model::new();
    let keys: Vec<Bytes> = (0..2000)
        .map(|i| Bytes::from(format!("key{i:04}")))
        .collect();
    // A base level (the last level) far larger than what follows; random
    // values, so compression does not shrink it.
    let mut rng = StdRng::seed_from_u64(7);
    for chunk in keys.chunks(50) {
        let batch = chunk
            .iter()
            .map(|k| {
                let noise: String = (0..25)
                    .map(|_| format!("{:08x}", rng.random::<u32>()))
                    .collect();
                let v = Bytes::from(format!("base-{noise}"));
                model.insert(k.clone(), v.clone());
                Entry {
                    key: k.clone(),
                    value: Value::Put(v),
                }
            })
            .collect();
        write_l0(&parts, batch).await;
    }
    let cfg = CompactionConfig {
        lsm: LsmConfig {
            level_base_bytes: 1 << 20,
            level_size_ratio: 10,
            l0_trigger_files: 4,
        },
        small_l0_bytes: Some(4096),
        ..Default::default()
    };
    let first = compaction::compact(&parts.store, &parts.meta, &cfg)
        .await
        .unwrap();
    assert_eq!(first.level_out, Some(6), "{first:?}");
    // One large L0 file of keys the base level does not hold: only it can
    // shadow their deletes below, so an intra-L0 job above it must keep them.
    let fresh: Vec<Bytes> = (0..50).map(|i| Bytes::from(format!("new{i:03}"))).collect();
    let batch = fresh
        .iter()
        .map(|k| {
            let noise: String = (0..25)
                .map(|_| format!("{:08x}", rng.random::<u32>()))
                .collect();
            let v = Bytes::from(format!("l0-{noise}"));
            model.insert(k.clone(), v.clone());
            Entry {
                key: k.clone(),
                value: Value::Put(v),
            }
        })
        .collect();
    write_l0(&parts, batch).await;
    let mut keys = keys;
    keys.extend(fresh.iter().cloned());
    // Small batches: overwrites and deletes of the keys only that L0 file holds.
    let mut intra = 0;
    for step in 0..40 {
        let batch = random_batch(&mut rng, &fresh, &mut model, &format!("s{step}"));
        write_l0(&parts, batch).await;
        let s = compaction::compact(&parts.store, &parts.meta, &cfg)
            .await
            .unwrap();
        if s.outcome == Outcome::Compacted && s.level_out == Some(0) {
            intra += 1;
            assert_eq!(
                s.tombstones_dropped, 0,
                "intra-L0 dropped tombstones: {s:?}"
            );
        }
        parts.index.catch_up().await.unwrap();
        verify(&parts, &model, &keys, &format!("step {step}")).await;
    }
    assert!(intra > 0, "no intra-L0 compaction ran");
    let live = parts.meta.live_files().await.unwrap();
    assert!(
        live.iter().filter(|f| f.level == 0).count() < 40,
        "L0 was not kept small"
    );
}
