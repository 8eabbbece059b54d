//! The cache tier as its own processes: 1 batcher, 1 index reading through 3
//! `skyvault cache` replicas (`SKYVAULT_CACHE_PEERS`), on a real PostgreSQL
//! and a real S3 server (moto), all on loopback.
//!
//! Needs the binary: `cargo build -p skyvault --bin skyvault` first (see
//! `skyvault_e2e::services::skyvault_binary`).

use bytes::Bytes;
use skyvault::api::proto::batcher::v1::{
    BatchWriteRequest, WriteRequest, batcher_service_client::BatcherServiceClient,
    write_request::Operation,
};
use skyvault::api::proto::index::v1::{BatchGetRequest, index_service_client::IndexServiceClient};
use skyvault_e2e::services::dataplane::{Deps, RoleProcess};
use skyvault_e2e::wait_for;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tonic::Request;
use tonic::transport::Channel;

const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys the test writes; every batch touches a few, so they span many files.
const KEYS: usize = 40;
/// Batches written one at a time: each becomes its own L0 file in the store
/// (`skyvault flush` after each: reads of the WAL tier never reach a cache).
const BATCHES: usize = 30;

fn key(i: usize) -> String {
    format!("key/{i:03}")
}

/// What every key should read as (`None`: never written or deleted).
type Model = BTreeMap<String, Option<Bytes>>;

async fn write(client: &mut BatcherServiceClient<Channel>, writes: Vec<WriteRequest>) -> u64 {
    let mut request = Request::new(BatchWriteRequest { writes });
    request.set_timeout(RPC_TIMEOUT);
    client
        .batch_write(request)
        .await
        .unwrap()
        .into_inner()
        .sequence
}

/// Batch `b` puts three keys and deletes one, so values are overwritten and
/// deleted across files and only newest-first resolution reads them right.
async fn write_batches(
    deps: &Deps,
    client: &mut BatcherServiceClient<Channel>,
    model: &mut Model,
    batches: std::ops::Range<usize>,
) -> u64 {
    let mut last = 0;
    for b in batches {
        let mut writes = Vec::new();
        for j in 0..3 {
            let k = key((b * 7 + j * 13) % KEYS);
            let value = Bytes::from(format!("v{b}-{j}"));
            writes.push(WriteRequest {
                key: k.clone(),
                operation: Some(Operation::Put(value.clone())),
            });
            model.insert(k, Some(value));
        }
        if b % 4 == 3 {
            let k = key((b * 11) % KEYS);
            writes.push(WriteRequest {
                key: k.clone(),
                operation: Some(Operation::Delete(true)),
            });
            model.insert(k, None);
        }
        last = write(client, writes).await;
        flush(deps);
    }
    last
}

/// `skyvault flush`: the WAL tier (the batch just written) into an L0 file.
fn flush(deps: &Deps) {
    let out = deps.command(&["flush"]).output().unwrap();
    assert!(
        out.status.success(),
        "skyvault flush: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads every key of the model and returns the mismatches (empty: correct).
async fn read_all(
    client: &mut IndexServiceClient<Channel>,
    model: &Model,
    min_sequence: u64,
) -> Result<Vec<String>, tonic::Status> {
    let mut request = Request::new(BatchGetRequest {
        keys: model.keys().cloned().collect(),
        min_sequence: Some(min_sequence),
        consistency: 0,
    });
    request.set_timeout(RPC_TIMEOUT);
    let got = client.batch_get(request).await?.into_inner().results;
    Ok(model
        .iter()
        .filter(|(k, want)| got.get(*k) != want.as_ref())
        .map(|(k, want)| format!("{k}: want {want:?}, got {:?}", got.get(k)))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_reads_through_three_caches_and_survives_a_cache_kill() {
    let deps = Deps::start();
    deps.migrate();
    let caches: Vec<RoleProcess> = (0..3)
        .map(|i| deps.spawn("cache", &format!("cache-{i}"), &[]))
        .collect();
    let peers = caches
        .iter()
        .map(|c| c.grpc.as_str())
        .collect::<Vec<_>>()
        .join(",");
    // Forty L0 files on purpose and no compaction here: no write stall.
    let batcher = deps.spawn("batcher", "batcher", &[("SKYVAULT_L0_STOP_FILES", "0")]);
    let index = deps.spawn(
        "index",
        "index",
        &[
            ("SKYVAULT_CACHE_PEERS", &peers),
            ("SKYVAULT_CACHE_PEER_TIMEOUT_MS", "1000"),
        ],
    );
    for role in caches.iter().chain([&batcher, &index]) {
        role.ready().await;
    }
    let mut b = BatcherServiceClient::new(batcher.channel().await);
    let ix = IndexServiceClient::new(index.channel().await);

    // Phase 1: every key reads back right through the caches.
    let mut model: Model = (0..KEYS).map(|i| (key(i), None)).collect();
    let seq = write_batches(&deps, &mut b, &mut model, 0..BATCHES).await;
    index.wait_wal_tier_drained().await;
    for round in 0..3 {
        let wrong = read_all(&mut ix.clone(), &model, seq).await.unwrap();
        assert!(wrong.is_empty(), "round {round}: {wrong:#?}");
    }
    // Every replica owns some of the ~30 files and answered lookups for them;
    // the index never needed to read locally.
    let mut served = Vec::new();
    for cache in &caches {
        served.push(
            cache
                .metric("skyvault_cache_service_lookups_total", "")
                .await,
        );
    }
    assert!(
        served.iter().all(|&n| n > 0),
        "lookups per cache: {served:?}"
    );
    let hits = caches[0]
        .metric("skyvault_cache_requests_total", "result=\"hit\"")
        .await;
    assert!(hits > 0, "repeated reads hit cache-0's memory");
    assert_eq!(
        index.metric("skyvault_cache_fallbacks_total", "").await,
        0,
        "no fallback while every cache is up"
    );

    // Phase 2: readers run while the busiest cache is killed with SIGKILL.
    // Not one read may fail or be wrong.
    let victim = (0..caches.len()).max_by_key(|&i| served[i]).unwrap();
    let model = Arc::new(model);
    let killed = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut readers = tokio::task::JoinSet::new();
    for r in 0..3 {
        let (mut ix, model, killed, reads) =
            (ix.clone(), model.clone(), killed.clone(), reads.clone());
        readers.spawn(async move {
            let mut after_kill = 0;
            while after_kill < 15 {
                let was_killed = killed.load(Ordering::SeqCst);
                let wrong = read_all(&mut ix, &model, seq)
                    .await
                    .unwrap_or_else(|e| panic!("reader {r}: read failed: {e:?}"));
                assert!(wrong.is_empty(), "reader {r}: {wrong:#?}");
                reads.fetch_add(1, Ordering::SeqCst);
                after_kill += usize::from(was_killed);
            }
        });
    }
    wait_for("reads before the kill", Duration::from_secs(60), || async {
        anyhow::ensure!(reads.load(Ordering::SeqCst) >= 10, "not yet");
        Ok(())
    })
    .await
    .unwrap();
    caches[victim].process.kill();
    killed.store(true, Ordering::SeqCst);
    while let Some(done) = readers.join_next().await {
        done.unwrap();
    }
    let victim_peer = format!("peer=\"{}\"", caches[victim].grpc);
    let fallbacks = index
        .metric("skyvault_cache_fallbacks_total", &victim_peer)
        .await;
    assert!(
        fallbacks > 0,
        "the index counted fallbacks for {victim_peer}"
    );

    // New files after the kill are read right too, and the survivors keep serving.
    let mut model = Arc::try_unwrap(model).unwrap();
    let survivors: Vec<&RoleProcess> = (0..caches.len())
        .filter(|&i| i != victim)
        .map(|i| &caches[i])
        .collect();
    let mut before = Vec::new();
    for cache in &survivors {
        before.push(
            cache
                .metric("skyvault_cache_service_lookups_total", "")
                .await,
        );
    }
    let seq = write_batches(&deps, &mut b, &mut model, BATCHES..BATCHES + 10).await;
    index.wait_wal_tier_drained().await;
    let wrong = read_all(&mut ix.clone(), &model, seq).await.unwrap();
    assert!(wrong.is_empty(), "after the kill: {wrong:#?}");
    let mut after = Vec::new();
    for cache in &survivors {
        after.push(
            cache
                .metric("skyvault_cache_service_lookups_total", "")
                .await,
        );
    }
    assert!(
        before.iter().zip(&after).all(|(b, a)| a > b),
        "surviving caches kept serving: before {before:?}, after {after:?}"
    );
    assert!(
        index
            .metric("skyvault_cache_fallbacks_total", &victim_peer)
            .await
            >= fallbacks
    );
    for cache in &survivors {
        cache.process.ensure_running().unwrap();
    }
    index.process.ensure_running().unwrap();
}
