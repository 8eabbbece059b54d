//! Invariant 9 (read-after-write in one process) and strong reads, against an
//! in-process standalone server over real gRPC, with clients that know
//! nothing of the extension fields (as one generated from the original
//! SkyVault .proto files).

mod common;

use common::{del, put, start};
use skyvault::api::proto::batcher::v1::BatchWriteRequest;
use skyvault::api::proto::batcher::v1::batcher_service_client::BatcherServiceClient;
use skyvault::api::proto::index::v1::index_service_client::IndexServiceClient;
use skyvault::api::proto::index::v1::{BatchGetRequest, Consistency, ScanRequest};
use tonic::Code;
use tonic::transport::Channel;

/// A fresh connection of its own (no channel shared with the writer).
async fn connection(s: &common::Server) -> Channel {
    skyvault::cli::connect(&s.running.grpc_addr.to_string())
        .await
        .expect("client connects")
}

/// Plain BatchGet: no `min_sequence`, default consistency (the fields a
/// client generated from the original .proto cannot send).
async fn plain_get(index: &mut IndexServiceClient<Channel>, key: &str) -> Option<Vec<u8>> {
    let req = BatchGetRequest {
        keys: vec![key.to_string()],
        ..Default::default()
    };
    let mut results = index
        .batch_get(req)
        .await
        .expect("read")
        .into_inner()
        .results;
    results.remove(key).map(|v| v.to_vec())
}

/// Each worker writes on one connection and reads on another, right after
/// the ack: a put must be seen, a delete must hide the key. Returns the
/// stale reads.
async fn write_then_read(s: &common::Server, worker: usize, rounds: usize) -> usize {
    let mut batcher = BatcherServiceClient::new(connection(s).await);
    let mut index = IndexServiceClient::new(connection(s).await);
    let key = format!("raw/{worker}");
    let mut stale = 0;
    for round in 0..rounds {
        let value = format!("v{round}");
        let writes = vec![put(&key, &value)];
        batcher
            .batch_write(BatchWriteRequest { writes })
            .await
            .expect("put");
        if plain_get(&mut index, &key).await.as_deref() != Some(value.as_bytes()) {
            stale += 1;
        }
        let writes = vec![del(&key)];
        batcher
            .batch_write(BatchWriteRequest { writes })
            .await
            .expect("delete");
        if plain_get(&mut index, &key).await.is_some() {
            stale += 1;
        }
    }
    stale
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_reads_see_every_acknowledged_write_without_extension_fields() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    let (workers, rounds) = (6, 40);
    let stale = futures::future::join_all((0..workers).map(|w| write_then_read(&s, w, rounds)))
        .await
        .into_iter()
        .sum::<usize>();
    assert_eq!(
        stale,
        0,
        "{stale} of {} reads right after an acknowledged write missed it",
        workers * rounds * 2
    );
    s.stop().await;
}

#[tokio::test]
async fn scans_without_extension_fields_see_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    let mut index = IndexServiceClient::new(connection(&s).await);
    for round in 0..30 {
        let key = format!("scan/{round:03}");
        s.write(vec![put(&key, "x")]).await.unwrap();
        let page = index
            .scan(ScanRequest {
                prefix: "scan/".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            page.items.len(),
            round + 1,
            "scan right after writing {key}"
        );
        assert!(page.sequence > 0, "a page names the sequence it reflects");
    }
    s.stop().await;
}

#[tokio::test]
async fn reads_report_the_sequence_they_reflect_and_strong_reads_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    let seq = s.write(vec![put("k", "v")]).await.unwrap();
    let req = BatchGetRequest {
        keys: vec!["k".into()],
        consistency: Consistency::Strong.into(),
        ..Default::default()
    };
    let got = s.index().batch_get(req).await.unwrap().into_inner();
    assert_eq!(got.results["k"].as_ref(), b"v");
    assert!(
        got.sequence >= seq,
        "read at {} after a write at {seq}",
        got.sequence
    );
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_consistency_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    let get = BatchGetRequest {
        keys: vec!["k".into()],
        consistency: 7,
        ..Default::default()
    };
    let err = s.index().batch_get(get).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("consistency"), "{}", err.message());
    let scan = ScanRequest {
        consistency: -1,
        ..Default::default()
    };
    let err = s.index().scan(scan).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("consistency"), "{}", err.message());
    s.stop().await;
}
