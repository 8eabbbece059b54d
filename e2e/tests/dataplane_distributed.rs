//! Every role as its own OS process (`skyvault batcher`, `index`, `cache`)
//! on a real PostgreSQL and a real S3 server (moto), all on loopback.
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
use skyvault_e2e::services::http_get_status;
use skyvault_e2e::wait_for;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Request};

const RPC_TIMEOUT: Duration = Duration::from_secs(10);

fn put(key: &str, value: &str) -> WriteRequest {
    WriteRequest {
        key: key.into(),
        operation: Some(Operation::Put(Bytes::from(value.to_string()))),
    }
}

fn delete(key: &str) -> WriteRequest {
    WriteRequest {
        key: key.into(),
        operation: Some(Operation::Delete(true)),
    }
}

async fn write(
    client: &mut BatcherServiceClient<Channel>,
    writes: Vec<WriteRequest>,
) -> Result<u64, tonic::Status> {
    let mut request = Request::new(BatchWriteRequest { writes });
    request.set_timeout(RPC_TIMEOUT);
    Ok(client.batch_write(request).await?.into_inner().sequence)
}

async fn read(
    client: &mut IndexServiceClient<Channel>,
    keys: Vec<String>,
    min_sequence: u64,
) -> Result<BTreeMap<String, Bytes>, tonic::Status> {
    let mut request = Request::new(BatchGetRequest {
        keys,
        min_sequence: Some(min_sequence),
        consistency: 0,
    });
    request.set_timeout(RPC_TIMEOUT);
    Ok(client
        .batch_get(request)
        .await?
        .into_inner()
        .results
        .into_iter()
        .collect())
}

/// What a set of keys should read as (`None`: absent or deleted).
type Model = BTreeMap<String, Option<Bytes>>;

fn expect(model: &Model, got: &BTreeMap<String, Bytes>, context: &str) {
    for (key, want) in model {
        assert_eq!(got.get(key), want.as_ref(), "{context}: key {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_batchers_two_indexes_read_your_writes_and_survive_a_batcher_kill() {
    let deps = Deps::start();
    deps.migrate();
    // The full shape: 3 cache replicas behind both indexes.
    let caches: Vec<RoleProcess> = (0..3)
        .map(|i| deps.spawn("cache", &format!("cache-{i}"), &[]))
        .collect();
    let peers: Vec<&str> = caches.iter().map(|c| c.grpc.as_str()).collect();
    let peers = peers.join(",");
    let batchers = [
        deps.spawn("batcher", "batcher-0", &[]),
        deps.spawn("batcher", "batcher-1", &[]),
    ];
    let with_caches = [("SKYVAULT_CACHE_PEERS", peers.as_str())];
    let indexes = [
        deps.spawn("index", "index-0", &with_caches),
        deps.spawn("index", "index-1", &with_caches),
    ];
    for role in caches.iter().chain(&batchers).chain(&indexes) {
        role.ready().await;
    }
    let b = [batchers[0].channel().await, batchers[1].channel().await];
    let ix = [indexes[0].channel().await, indexes[1].channel().await];

    // Phase 1: concurrent writers, each owning its keys, alternating batchers
    // and reading back from the other index with read-your-writes.
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..6usize {
        let (b, ix) = (b.clone(), ix.clone());
        writers.spawn(async move {
            let mut model = Model::new();
            let mut last = 0;
            for i in 0..20usize {
                let mut batcher = BatcherServiceClient::new(b[(w + i) % 2].clone());
                let mut index = IndexServiceClient::new(ix[(w + i + 1) % 2].clone());
                let mut writes = Vec::new();
                let mut keys = Vec::new();
                for j in 0..4 {
                    let key = format!("w{w}/k{}", (i * 4 + j) % 13);
                    let value = format!("v{w}-{i}-{j}");
                    writes.push(put(&key, &value));
                    model.insert(key.clone(), Some(Bytes::from(value)));
                    keys.push(key);
                }
                if i % 3 == 2 {
                    // Delete a key written earlier (possibly in this batch: last write wins).
                    let key = format!("w{w}/k{}", (i * 7) % 13);
                    writes.push(delete(&key));
                    model.insert(key.clone(), None);
                    keys.push(key);
                }
                let seq = write(&mut batcher, writes).await.expect("write acked");
                assert!(seq > last, "sequence grows for one writer");
                last = seq;
                let got = read(&mut index, keys.clone(), seq).await.expect("read");
                let batch: Model = keys.iter().map(|k| (k.clone(), model[k].clone())).collect();
                expect(&batch, &got, &format!("writer {w} batch {i}"));
            }
            (model, last)
        });
    }
    let mut model = Model::new();
    let mut max_seq = 0;
    while let Some(done) = writers.join_next().await {
        let (m, last) = done.unwrap();
        model.extend(m);
        max_seq = max_seq.max(last);
    }
    let keys: Vec<String> = model.keys().cloned().collect();
    for (n, channel) in ix.iter().enumerate() {
        let mut index = IndexServiceClient::new(channel.clone());
        let got = read(&mut index, keys.clone(), max_seq).await.unwrap();
        expect(&model, &got, &format!("final state on index-{n}"));
    }

    // Phase 2: writers on both batchers; batcher-1 is killed mid-stream.
    // Writers on batcher-0 must not see a single failure; on batcher-1 only
    // requests after the kill fail; every acked write stays readable.
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let acked_on_1 = Arc::new(tokio::sync::Notify::new());
    let mut survivors = tokio::task::JoinSet::new();
    for w in 0..3usize {
        let (channel, acked) = (b[0].clone(), acked.clone());
        survivors.spawn(async move {
            let mut batcher = BatcherServiceClient::new(channel);
            for i in 0..40 {
                let key = format!("p2/a/{w}/{i}");
                let seq = write(&mut batcher, vec![put(&key, &key)])
                    .await
                    .unwrap_or_else(|e| panic!("write via the surviving batcher failed: {e}"));
                acked.lock().unwrap().push((key, seq));
            }
        });
    }
    let mut victims = tokio::task::JoinSet::new();
    for w in 0..3usize {
        let (channel, acked, notify) = (b[1].clone(), acked.clone(), acked_on_1.clone());
        victims.spawn(async move {
            let mut batcher = BatcherServiceClient::new(channel);
            for i in 0.. {
                let key = format!("p2/b/{w}/{i}");
                match write(&mut batcher, vec![put(&key, &key)]).await {
                    Ok(seq) => {
                        acked.lock().unwrap().push((key, seq));
                        notify.notify_one();
                    }
                    // After the kill: connection refused or reset, never a hang.
                    Err(e) => {
                        assert!(
                            matches!(
                                e.code(),
                                Code::Unavailable | Code::Unknown | Code::Cancelled
                            ),
                            "unexpected failure {e:?}"
                        );
                        return i;
                    }
                }
            }
            unreachable!()
        });
    }
    tokio::time::timeout(Duration::from_secs(30), acked_on_1.notified())
        .await
        .expect("batcher-1 acked a write");
    batchers[1].process.kill();
    while let Some(done) = victims.join_next().await {
        done.unwrap();
    }
    while let Some(done) = survivors.join_next().await {
        done.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.iter().any(|(k, _)| k.starts_with("p2/b/")));
    let max_seq = acked.iter().map(|(_, s)| *s).max().unwrap();
    let keys: Vec<String> = acked.iter().map(|(k, _)| k.clone()).collect();
    for (n, channel) in ix.iter().enumerate() {
        let mut index = IndexServiceClient::new(channel.clone());
        let got = read(&mut index, keys.clone(), max_seq).await.unwrap();
        for key in &keys {
            assert_eq!(
                got.get(key).map(|v| v.as_ref()),
                Some(key.as_bytes()),
                "acked write {key} missing on index-{n}"
            );
        }
    }
    // The surviving batcher still serves.
    let mut batcher = BatcherServiceClient::new(b[0].clone());
    write(&mut batcher, vec![put("after", "kill")])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_writes_promptly_and_recovers() {
    let mut deps = Deps::start();
    let batcher = deps.spawn("batcher", "batcher", &[]);
    // Serves its last manifest for at most 8 s without reaching the database.
    let max_age = Duration::from_secs(8);
    let index = deps.spawn("index", "index", &[("SKYVAULT_MAX_MANIFEST_AGE_SECS", "8")]);
    batcher.ready().await;
    index.ready().await;
    let mut b = BatcherServiceClient::new(batcher.channel().await);
    let mut ix = IndexServiceClient::new(index.channel().await);
    let seq = write(&mut b, vec![put("before", "outage")]).await.unwrap();
    let got = read(&mut ix, vec!["before".into()], seq).await.unwrap();
    assert_eq!(got.get("before").map(|v| v.as_ref()), Some(&b"outage"[..]));

    deps.pg.stop();
    let down_at = Instant::now();
    // A write is refused as UNAVAILABLE well before its deadline.
    let started = Instant::now();
    let err = write(&mut b, vec![put("during", "outage")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < RPC_TIMEOUT - Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // Reads from the manifest the index already has keep working.
    let got = read(&mut ix, vec!["before".into()], seq).await.unwrap();
    assert_eq!(got.get("before").map(|v| v.as_ref()), Some(&b"outage"[..]));
    // The batcher reports itself not ready while it cannot commit.
    wait_for("batcher /readyz 503", Duration::from_secs(20), || async {
        match http_get_status(&batcher.http, "/readyz")? {
            503 => Ok(()),
            s => anyhow::bail!("HTTP {s}"),
        }
    })
    .await
    .unwrap();
    // Issue 12 item 2: past its manifest age limit the index refuses to read
    // (purge may have deleted what an old manifest names) and is not ready.
    let stale = ix.clone();
    wait_for(
        "index refuses its stale manifest",
        Duration::from_secs(40),
        || {
            let mut ix = stale.clone();
            async move {
                match read(&mut ix, vec!["before".into()], seq).await {
                    Err(s) if s.code() == Code::Unavailable && s.message().contains("stale") => {
                        Ok(())
                    }
                    other => anyhow::bail!("{other:?}"),
                }
            }
        },
    )
    .await
    .unwrap();
    assert!(
        down_at.elapsed() >= max_age,
        "refused after {:?}",
        down_at.elapsed()
    );
    assert_eq!(http_get_status(&index.http, "/readyz").unwrap(), 503);

    deps.pg.restart().unwrap();
    // Service resumes by itself: writes commit and the index catches up.
    let (b2, ix2) = (b.clone(), ix.clone());
    wait_for(
        "writes and reads after the outage",
        Duration::from_secs(60),
        move || {
            let (mut b, mut ix) = (b2.clone(), ix2.clone());
            async move {
                let seq = write(&mut b, vec![put("after", "outage")]).await?;
                let got = read(&mut ix, vec!["after".into()], seq).await?;
                anyhow::ensure!(got.get("after").map(|v| v.as_ref()) == Some(&b"outage"[..]));
                Ok(())
            }
        },
    )
    .await
    .unwrap();
    batcher.ready().await;
    index.ready().await;
    batcher.process.ensure_running().unwrap();
    index.process.ensure_running().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_outage_fails_writes_promptly_and_recovers() {
    let mut deps = Deps::start();
    let batcher = deps.spawn("batcher", "batcher", &[]);
    let index = deps.spawn("index", "index", &[]);
    batcher.ready().await;
    index.ready().await;
    let mut b = BatcherServiceClient::new(batcher.channel().await);
    let mut ix = IndexServiceClient::new(index.channel().await);
    let seq = write(&mut b, vec![put("before", "outage")]).await.unwrap();
    // Read once so the index holds the file's metadata and block in memory.
    let got = read(&mut ix, vec!["before".into()], seq).await.unwrap();
    assert_eq!(got.get("before").map(|v| v.as_ref()), Some(&b"outage"[..]));

    deps.s3.stop();
    let started = Instant::now();
    let err = write(&mut b, vec![put("during", "outage")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < RPC_TIMEOUT - Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // Cached data keeps being served while the store is down.
    let got = read(&mut ix, vec!["before".into()], seq).await.unwrap();
    assert_eq!(got.get("before").map(|v| v.as_ref()), Some(&b"outage"[..]));

    // moto keeps objects in memory, so the restarted store is empty; what
    // must resume by itself is new writes and reads of them.
    deps.s3.restart().unwrap();
    let (b2, ix2) = (b.clone(), ix.clone());
    wait_for(
        "writes and reads after the store returns",
        Duration::from_secs(60),
        move || {
            let (mut b, mut ix) = (b2.clone(), ix2.clone());
            async move {
                let seq = write(&mut b, vec![put("after", "outage")]).await?;
                let got = read(&mut ix, vec!["after".into()], seq).await?;
                anyhow::ensure!(got.get("after").map(|v| v.as_ref()) == Some(&b"outage"[..]));
                Ok(())
            }
        },
    )
    .await
    .unwrap();
    batcher.process.ensure_running().unwrap();
    index.process.ensure_running().unwrap();
}
