//! The S3 object store against a real S3 HTTP server (moto_server).

use bytes::Bytes;
use skyvault::objstore::{ObjectStore, S3Config, S3Store, StoreError};
use skyvault_e2e::services::S3Server;
use std::collections::BTreeMap;

fn config(server: &S3Server, bucket: &str, prefix: &str) -> S3Config {
    let mut config = S3Config::from_url_and_env(&format!("s3://{bucket}/{prefix}")).unwrap();
    config.endpoint = Some(server.endpoint());
    config.path_style = true;
    config
}

async fn store(server: &S3Server, prefix: &str) -> S3Store {
    S3Store::open(config(server, server.bucket(), prefix)).await
}

fn credentials(server: &S3Server) {
    // The SDK's standard chain reads them from the environment.
    for (k, v) in server.env() {
        if k.starts_with("AWS_") {
            // SAFETY: set before any store (and its threads) is created, to
            // the same values in every test of this binary.
            unsafe { std::env::set_var(k, v) };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_conformance() {
    let server = S3Server::start().unwrap();
    credentials(&server);
    let s = store(&server, "tenant/a").await;
    let data = Bytes::from((0..10_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());

    s.put("wal/0001.sst", data.clone()).await.unwrap();
    assert_eq!(s.get("wal/0001.sst").await.unwrap(), data);
    assert_eq!(
        s.get_range("wal/0001.sst", 100..1100).await.unwrap(),
        data.slice(100..1100)
    );
    assert_eq!(
        s.get_range("wal/0001.sst", 9_999..10_000).await.unwrap(),
        data.slice(9_999..)
    );
    // Suffix: the last bytes plus the object's size from Content-Range.
    let (tail, size) = s.get_suffix("wal/0001.sst", 64).await.unwrap();
    assert_eq!((tail, size), (data.slice(10_000 - 64..), 10_000));
    // A suffix longer than the object returns all of it.
    let (all, size) = s.get_suffix("wal/0001.sst", 1 << 20).await.unwrap();
    assert_eq!((all, size), (data.clone(), 10_000));
    // A range past the end is an error, never a short read.
    assert!(matches!(
        s.get_range("wal/0001.sst", 9_000..10_001).await,
        Err(StoreError::BadRange { .. })
    ));
    assert!(matches!(
        s.get_range("wal/0001.sst", 20_000..20_010).await,
        Err(StoreError::BadRange { .. })
    ));

    // Missing objects.
    assert!(matches!(
        s.get("wal/none.sst").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.get_range("wal/none.sst", 0..10).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.get_suffix("wal/none.sst", 10).await,
        Err(StoreError::NotFound { .. })
    ));

    // List by prefix, relative to the store's own prefix, across pages
    // (moto pages at 1000 keys).
    let mut expected = BTreeMap::new();
    expected.insert("wal/0001.sst".to_string(), 10_000u64);
    for i in 0..1_005 {
        let path = format!("run/{i:05}.sst");
        s.put(&path, Bytes::from(vec![1u8; i % 7])).await.unwrap();
        expected.insert(path, (i % 7) as u64);
    }
    let other = store(&server, "tenant/b").await;
    other
        .put("wal/0001.sst", Bytes::from_static(b"x"))
        .await
        .unwrap();
    let listed: BTreeMap<String, u64> = s
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.path, o.size))
        .collect();
    assert_eq!(listed, expected, "everything under tenant/a, nothing else");
    let runs = s.list("run/").await.unwrap();
    assert_eq!(runs.len(), 1_005);
    assert!(runs.iter().all(|o| o.path.starts_with("run/")));
    assert!(runs.iter().all(|o| o.last_modified > std::time::UNIX_EPOCH));

    // Delete, and deleting a missing object succeeds (as the trait promises).
    s.delete("wal/0001.sst").await.unwrap();
    s.delete("wal/0001.sst").await.unwrap();
    assert!(matches!(
        s.get("wal/0001.sst").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(other.get("wal/0001.sst").await.unwrap(), "x");

    // Invalid paths are rejected before any request.
    assert!(matches!(
        s.put("../x", Bytes::new()).await,
        Err(StoreError::InvalidPath { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_a_clear_permanent_error() {
    let server = S3Server::start().unwrap();
    credentials(&server);
    let s = S3Store::open(config(&server, "no-such-bucket", "p")).await;
    for result in [
        s.put("wal/x.sst", Bytes::from_static(b"x")).await.err(),
        s.get("wal/x.sst").await.err(),
        s.list("").await.err(),
    ] {
        let err = result.expect("a missing bucket must fail");
        assert!(
            matches!(err, StoreError::Rejected(_)),
            "expected Rejected, got {err:?}"
        );
        assert!(!err.is_transient());
        assert!(err.to_string().contains("no-such-bucket"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_unavailable_within_the_timeouts() {
    let server = S3Server::start().unwrap();
    credentials(&server);
    let mut config = config(&server, server.bucket(), "p");
    // A port nobody listens on: connection refused on every attempt.
    config.endpoint = Some(format!(
        "http://127.0.0.1:{}",
        skyvault_e2e::process::free_port().unwrap()
    ));
    let s = S3Store::open(config).await;
    let started = std::time::Instant::now();
    let err = s.get("wal/x.sst").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_url_reads_the_environment() {
    let server = S3Server::start().unwrap();
    server.export_env();
    let s =
        skyvault::objstore::open_url(&server.url("env"), skyvault::objstore::DEFAULT_MAX_REQUESTS)
            .await
            .unwrap();
    s.put("a/b", Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(s.get("a/b").await.unwrap(), "hello");
    assert!(s.describe().contains(server.bucket()));
}

/// Streamed uploads: small ones are one PUT, large ones a multipart upload
/// (parts of 8 MiB, the last one shorter) that appears only when finished;
/// an aborted upload never appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_uploads_appear_whole_and_only_when_finished() {
    let server = S3Server::start().unwrap();
    credentials(&server);
    let s = store(&server, "uploads").await;
    let big: Bytes = (0..(skyvault::objstore::PART_BYTES * 2 + 12_345))
        .map(|i| (i % 253) as u8)
        .collect::<Vec<u8>>()
        .into();
    let mut upload = s.upload("run/big.sst").await.unwrap();
    for piece in big.chunks(3 << 20) {
        upload.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    assert!(
        matches!(s.get("run/big.sst").await, Err(StoreError::NotFound { .. })),
        "visible before finish"
    );
    upload.finish().await.unwrap();
    assert_eq!(s.get("run/big.sst").await.unwrap(), big);

    let mut small = s.upload("run/small.sst").await.unwrap();
    small.write(Bytes::from_static(b"tiny")).await.unwrap();
    small.finish().await.unwrap();
    assert_eq!(
        s.get("run/small.sst").await.unwrap(),
        Bytes::from_static(b"tiny")
    );

    let mut dropped = s.upload("run/aborted.sst").await.unwrap();
    dropped
        .write(big.slice(..skyvault::objstore::PART_BYTES + 1))
        .await
        .unwrap();
    dropped.abort().await;
    assert!(matches!(
        s.get("run/aborted.sst").await,
        Err(StoreError::NotFound { .. })
    ));
}
