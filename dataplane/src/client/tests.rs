//! The client against real in-process standalone servers over gRPC.

use super::*;
use crate::objstore::{DynStore, Fault, FaultyStore, LocalStore, MeteredStore};
use crate::standalone::{self, Running, StandaloneConfig};
use futures::TryStreamExt;
use std::net::SocketAddr;
use std::sync::Mutex;

async fn server(dir: &std::path::Path, store: Option<DynStore>) -> Running {
    let mut config = StandaloneConfig::new(dir);
    config.grpc_addr = "127.0.0.1:0".into();
    config.http_addr = "127.0.0.1:0".into();
    config.maintenance = None;
    config.limits.max_get_response_bytes = 1_000;
    standalone::start(config, store)
        .await
        .expect("server starts")
}

/// Resolves every name to the addresses the test sets.
#[derive(Default)]
struct Names(Mutex<Vec<SocketAddr>>);

#[async_trait::async_trait]
impl Resolve for Names {
    async fn resolve(&self, _host: &str, _port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(self.0.lock().unwrap().clone())
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
    }
}

#[tokio::test]
async fn writes_reads_chunked_gets_and_paged_scans() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), None).await;
    let client = ClientOptions::new(s.grpc_addr.to_string())
        .with_max_keys_per_get(7)
        .with_scan_page(3)
        .connect()
        .await
        .unwrap();
    let writes = (0..40).map(|i| Write::put(format!("k/{i:02}"), format!("value-{i:02}")));
    let seq = client.write(writes.collect()).await.unwrap();
    assert_eq!(client.session_sequence(), seq);
    // 40 keys in RPCs of 7; 40 × ~16 bytes is over the 1,000-byte budget of
    // one answer, so a chunk may also be split.
    let keys: Vec<String> = (0..45).map(|i| format!("k/{i:02}")).collect();
    let found = client.get_many(keys).await.unwrap();
    assert_eq!(found.len(), 40);
    assert_eq!(found["k/07"].as_ref(), b"value-07");
    let pairs: Vec<(String, Bytes)> = client
        .scan(ScanRange::prefix("k/"))
        .try_collect()
        .await
        .unwrap();
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 40, "every page followed");
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "in key order");
    client.delete("k/00").await.unwrap();
    assert_eq!(client.get("k/00").await.unwrap(), None);
    let strong = client.with_consistency(ReadConsistency::Strong);
    assert_eq!(
        strong.get("k/01").await.unwrap().as_deref(),
        Some(&b"value-01"[..])
    );
    s.shutdown().await.unwrap();
}

/// Over the server's byte budget for one answer, a read is split until it
/// fits (here down to single keys: each value nearly fills the budget).
#[tokio::test]
async fn a_get_over_the_response_budget_is_split() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), None).await;
    let client = Client::connect(s.grpc_addr.to_string()).await.unwrap();
    let big = "x".repeat(600);
    let writes = (0..6).map(|i| Write::put(format!("big/{i}"), big.clone()));
    client.write(writes.collect()).await.unwrap();
    let found = client
        .get_many((0..6).map(|i| format!("big/{i}")))
        .await
        .unwrap();
    assert_eq!(found.len(), 6);
    s.shutdown().await.unwrap();
}

/// One name, two servers: calls go to both; a re-resolution that drops one
/// sends every later call to the other.
#[tokio::test]
async fn reads_spread_over_every_address_and_follow_re_resolution() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (server(da.path(), None).await, server(db.path(), None).await);
    for (s, value) in [(&a, "a"), (&b, "b")] {
        let direct = Client::connect(s.grpc_addr.to_string()).await.unwrap();
        direct.put("who", value).await.unwrap();
    }
    let names = Arc::new(Names::default());
    *names.0.lock().unwrap() = vec![a.grpc_addr, b.grpc_addr];
    let client = ClientOptions::new("skyvault-index.test:50051")
        .with_resolver(names.clone())
        .connect()
        .await
        .unwrap()
        .with_consistency(ReadConsistency::Eventual);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        seen.insert(client.get("who").await.unwrap().unwrap());
    }
    assert_eq!(seen.len(), 2, "round-robin over both Pods: {seen:?}");

    *names.0.lock().unwrap() = vec![b.grpc_addr];
    client.refresh().await.unwrap();
    assert_eq!(
        client.index_addresses(),
        vec![format!("http://{}", b.grpc_addr)]
    );
    for _ in 0..5 {
        assert_eq!(client.get("who").await.unwrap().unwrap().as_ref(), b"b");
    }
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// The periodic re-resolution picks up a new address by itself.
#[tokio::test]
async fn names_are_resolved_again_periodically() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), None).await;
    let names = Arc::new(Names::default());
    let client = ClientOptions::new("skyvault-index.test:50051")
        .with_resolver(names.clone())
        .with_resolve_interval(Duration::from_millis(20))
        .connect()
        .await
        .unwrap();
    assert_eq!(
        client.index_addresses(),
        vec!["http://skyvault-index.test:50051"]
    );
    *names.0.lock().unwrap() = vec![s.grpc_addr];
    let want = vec![format!("http://{}", s.grpc_addr)];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.index_addresses() != want {
        assert!(std::time::Instant::now() < deadline, "never re-resolved");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.shutdown().await.unwrap();
}

/// A loopback address nothing listens on (the listener is closed when dropped).
fn dead_address() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// An address that refuses connections is retried elsewhere and skipped.
#[tokio::test]
async fn a_dead_address_is_skipped_and_calls_succeed_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), None).await;
    let dead = dead_address();
    let names = Arc::new(Names::default());
    *names.0.lock().unwrap() = vec![dead, s.grpc_addr];
    let client = ClientOptions::new("skyvault.test:50051")
        .with_resolver(names)
        .with_retry(RetryPolicy {
            max_attempts: 2,
            ..fast_retries()
        })
        .connect()
        .await
        .unwrap();
    for i in 0..10 {
        client.put(format!("k{i}"), "v").await.unwrap();
        assert!(client.get(format!("k{i}")).await.unwrap().is_some());
    }
    s.shutdown().await.unwrap();
}

/// A write the server refused without writing anything (the object store
/// failed the PUT) is retried, and succeeds once the store is back.
#[tokio::test]
async fn a_write_that_wrote_nothing_is_retried_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalStore::open(dir.path().join("objects")).unwrap();
    let faulty = Arc::new(FaultyStore::new(MeteredStore::new(local)));
    let s = server(dir.path(), Some(faulty.clone())).await;
    let client = ClientOptions::new(s.grpc_addr.to_string())
        .with_retry(RetryPolicy {
            max_attempts: 1_000,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        })
        .with_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    faulty.set_fault(Some(Fault::FailPuts));
    let failed = || crate::metrics::counter_value(&crate::metrics::metrics().flushes, &["error"]);
    let before = failed();
    let write = tokio::spawn({
        let client = client.clone();
        async move { client.put("k", "v").await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while failed() < before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the write never failed twice"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    faulty.set_fault(None);
    let seq = write
        .await
        .unwrap()
        .expect("retried after the store came back");
    assert!(seq > 0);
    assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    s.shutdown().await.unwrap();
}

/// A batcher whose every commit reply is lost, counting the requests.
#[derive(Default)]
struct LostReplies(std::sync::atomic::AtomicUsize);

#[tonic::async_trait]
impl crate::api::proto::batcher::v1::batcher_service_server::BatcherService for Arc<LostReplies> {
    async fn batch_write(
        &self,
        _: tonic::Request<BatchWriteRequest>,
    ) -> Result<tonic::Response<crate::api::proto::batcher::v1::BatchWriteResponse>, tonic::Status>
    {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(
            crate::batcher::WriteError::OutcomeUnknown("connection lost after COMMIT".into())
                .into(),
        )
    }
}

/// A write whose outcome is unknown is reported as such, sent exactly once.
#[tokio::test]
async fn a_write_of_unknown_outcome_is_never_retried() {
    use crate::api::proto::batcher::v1::batcher_service_server::BatcherServiceServer;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let batcher = Arc::new(LostReplies::default());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(BatcherServiceServer::new(batcher.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let client = ClientOptions::new(addr.to_string())
        .with_retry(fast_retries())
        .connect()
        .await
        .unwrap();
    let err = client.put("k", "v").await.unwrap_err();
    assert!(matches!(err, ClientError::WriteOutcomeUnknown(_)), "{err}");
    assert_eq!(
        batcher.0.load(Ordering::SeqCst),
        1,
        "the write was sent again"
    );
}

/// When every address has failed, the name is resolved again at once
/// (without waiting for the periodic re-resolution): Pods were replaced.
#[tokio::test]
async fn all_addresses_failing_triggers_a_re_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), None).await;
    let dead = dead_address();
    let names = Arc::new(Names::default());
    *names.0.lock().unwrap() = vec![dead];
    let client = ClientOptions::new("skyvault.test:50051")
        .with_resolver(names.clone())
        .with_resolve_interval(Duration::from_secs(3600))
        .with_retry(RetryPolicy {
            max_attempts: 1,
            ..fast_retries()
        })
        .connect()
        .await
        .unwrap();
    let err = client.get("k").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    *names.0.lock().unwrap() = vec![s.grpc_addr];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.get("k").await.is_err() {
        assert!(std::time::Instant::now() < deadline, "never re-resolved");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        client.index_addresses(),
        vec![format!("http://{}", s.grpc_addr)]
    );
    s.shutdown().await.unwrap();
}
