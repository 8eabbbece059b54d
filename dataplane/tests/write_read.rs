//! Invariants 2 (atomic batch), 3 (order and tombstones) and 5
//! (read-your-writes), scans, health and metrics, against an in-process
//! standalone server over real gRPC.

mod common;

use common::{del, http_get, put, start};
use skyvault::api::proto::batcher::v1::WriteRequest;
use skyvault::api::proto::index::v1::ScanRequest;
use skyvault::objstore::Fault;
use tonic::Code;

#[tokio::test]
async fn newest_file_wins_and_tombstones_shadow() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    let s1 = s
        .write(vec![put("k", "v1"), put("other", "o")])
        .await
        .unwrap();
    let s2 = s.write(vec![put("k", "v2")]).await.unwrap();
    assert!(s2 > s1, "sequences grow: {s1} then {s2}");
    assert_eq!(s.try_get(&["k"], Some(s2)).await.unwrap()["k"], b"v2");

    let s3 = s.write(vec![del("k")]).await.unwrap();
    let got = s.try_get(&["k", "other"], Some(s3)).await.unwrap();
    assert!(!got.contains_key("k"), "a tombstone hides older values");
    assert_eq!(got["other"], b"o");

    let s4 = s.write(vec![put("k", "v3")]).await.unwrap();
    assert_eq!(s.try_get(&["k"], Some(s4)).await.unwrap()["k"], b"v3");
    s.stop().await;
}

#[tokio::test]
async fn last_write_in_request_order_wins_within_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    let seq = s
        .write(vec![
            put("k", "1"),
            put("k", "2"),
            del("j"),
            put("j", "x"),
            put("gone", "y"),
            del("gone"),
        ])
        .await
        .unwrap();
    let got = s.try_get(&["k", "j", "gone"], Some(seq)).await.unwrap();
    assert_eq!(got.get("k").map(Vec::as_slice), Some(&b"2"[..]));
    assert_eq!(got.get("j").map(Vec::as_slice), Some(&b"x"[..]));
    assert!(!got.contains_key("gone"));
    s.stop().await;
}

#[tokio::test]
async fn a_batch_is_visible_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    let keys: Vec<String> = (0..20).map(|i| format!("atomic/{i:02}")).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let writer = {
        let batcher = s.batcher();
        let keys = keys.clone();
        tokio::spawn(async move {
            let mut batcher = batcher;
            let mut sequence = 0;
            for round in 0..60 {
                let writes = keys.iter().map(|k| put(k, &round.to_string())).collect();
                sequence = batcher
                    .batch_write(skyvault::api::proto::batcher::v1::BatchWriteRequest { writes })
                    .await
                    .unwrap()
                    .into_inner()
                    .sequence;
            }
            sequence
        })
    };
    let mut observed_rounds = std::collections::BTreeSet::new();
    while !writer.is_finished() {
        let got = s.get(&key_refs).await;
        let values: std::collections::BTreeSet<&Vec<u8>> = got.values().collect();
        assert!(
            got.is_empty() || got.len() == keys.len(),
            "partial batch visible: {} keys",
            got.len()
        );
        assert!(values.len() <= 1, "values of two batches mixed: {values:?}");
        if let Some(v) = values.into_iter().next() {
            observed_rounds.insert(v.clone());
        }
    }
    let last = writer.await.unwrap();
    let got = s.try_get(&key_refs, Some(last)).await.unwrap();
    assert_eq!(got["atomic/00"], b"59");
    s.stop().await;
}

#[tokio::test]
async fn failed_flush_writes_nothing_and_service_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (faulty, store) = common::faulty_store(dir.path());
    let s = start(common::config(dir.path()), Some(store)).await;
    faulty.set_fault(Some(Fault::FailPuts));
    let err = s
        .write(vec![put("a", "1"), put("b", "2")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    faulty.set_fault(None);
    let seq = s.write(vec![put("c", "3")]).await.unwrap();
    let got = s.try_get(&["a", "b", "c"], Some(seq)).await.unwrap();
    assert_eq!(got.len(), 1, "only the acked batch is visible: {got:?}");
    s.stop().await;
}

#[tokio::test]
async fn full_queue_is_resource_exhausted() {
    assert_queue_bounded(|c| c.queue_capacity = 2, one_kib, "requests waiting").await;
}

/// The queue is bounded by bytes too: with room for many requests but only
/// about two of these 1 KiB ones, the rest are turned away.
#[tokio::test]
async fn queue_full_of_bytes_is_resource_exhausted() {
    assert_queue_bounded(
        |c| {
            c.queue_capacity = 1_000;
            c.queue_max_bytes = 2_300; // each costs 1,003 bytes + the entry's overhead
        },
        one_kib,
        "bytes waiting",
    )
    .await;
}

/// Many tiny entries hold far more memory than their key and value bytes:
/// the byte budget counts each entry's overhead too. Each request holds
/// 5,000 bytes of keys in 1,000 entries (85,000 bytes with their overhead):
/// counting keys and values alone (5,000 each), forty of the fifty would fit.
#[tokio::test]
async fn queue_counts_what_tiny_entries_cost() {
    let tiny = |i: usize| {
        (0..1_000)
            .map(|j| put(&format!("{i:02}{j:03}"), ""))
            .collect::<Vec<_>>()
    };
    assert_queue_bounded(
        |c| {
            c.queue_capacity = 1_000;
            c.queue_max_bytes = 200_000; // two of them
        },
        tiny,
        "bytes waiting",
    )
    .await;
}

/// The smallest queue the CLI allows (4 MiB) still takes the largest request
/// (4 MiB of keys and values, whose entries cost more than that): an empty
/// queue takes any request, so none is refused forever.
#[tokio::test]
async fn the_largest_request_fits_the_smallest_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.batcher.queue_max_bytes = 4 << 20;
    let s = start(config, None).await;
    let value = "v".repeat(4_096 - 4);
    let writes: Vec<_> = (0..1_024)
        .map(|i| put(&format!("{i:04}"), &value))
        .collect();
    let seq = s.write(writes).await.expect("accepted into an empty queue");
    let got = s.try_get(&["0000", "1023"], Some(seq)).await.unwrap();
    assert_eq!(got.len(), 2);
    s.stop().await;
}

/// One request of 1 KiB: three-byte key, 1,000-byte value.
fn one_kib(i: usize) -> Vec<WriteRequest> {
    vec![put(&format!("q{i:02}"), &"v".repeat(1_000))]
}

/// With one flush hung, at most one batch in the collector and two queued
/// requests (as `bound` sets the queue) can be accepted of fifty `request(i)`;
/// every other request must be turned away with RESOURCE_EXHAUSTED naming the
/// bound.
async fn assert_queue_bounded(
    bound: impl FnOnce(&mut skyvault::batcher::BatcherConfig),
    request: impl Fn(usize) -> Vec<WriteRequest>,
    says: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let (faulty, store) = common::faulty_store(dir.path());
    let mut config = common::config(dir.path());
    bound(&mut config.batcher);
    config.batcher.max_concurrent_flushes = 1;
    config.batcher.max_batch_bytes = 1; // every request is a full batch
    let s = std::sync::Arc::new(start(config, Some(store)).await);
    faulty.set_fault(Some(Fault::HangPuts));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (s, entries) = (s.clone(), request(i));
            tokio::spawn(async move { s.write(entries).await })
        })
        .collect();
    let mut pending: futures::stream::FuturesUnordered<_> = tasks.into_iter().collect();
    let mut rejected = 0;
    // Rejections come back at once; accepted writes stay pending while puts hang.
    let waited = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while rejected < 46 {
            let result = futures::StreamExt::next(&mut pending)
                .await
                .expect("tasks remain");
            let err = result
                .unwrap()
                .expect_err("nothing can be acked while puts hang");
            assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
            assert!(err.message().contains(says), "{err:?}");
            rejected += 1;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "only {rejected} of 50 writes rejected: the queue is not bounded"
    );
    // Up to four may have been accepted (how many depends on scheduling);
    // once the store recovers each of those completes.
    faulty.set_fault(None);
    let mut acked = 0;
    while let Some(result) = futures::StreamExt::next(&mut pending).await {
        match result.unwrap() {
            Ok(_) => acked += 1,
            Err(e) => assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}"),
        }
    }
    assert!(
        (1..=4).contains(&acked),
        "{acked} writes accepted past a bound of 4"
    );
}

/// Without its collector task the batcher can write nothing: readiness must
/// say so. A zero batch size (refused by the CLI, possible through the
/// library) makes the collector panic at once.
#[tokio::test]
async fn readiness_fails_when_the_collector_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.batcher.max_batch_bytes = 0;
    let s = start(config, None).await;
    let http = s.running.http_addr;
    let not_ready = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while !http_get(http, "/readyz").await.starts_with("HTTP/1.1 503") {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(not_ready.is_ok(), "/readyz still ready without a collector");
    let err = s.write(vec![put("k", "v")]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    s.stop().await;
}

#[tokio::test]
async fn read_your_writes_waits_then_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    let seq = s.write(vec![put("ryw", "1")]).await.unwrap();
    assert_eq!(s.try_get(&["ryw"], Some(seq)).await.unwrap()["ryw"], b"1");
    let mut req = tonic::Request::new(skyvault::api::proto::index::v1::BatchGetRequest {
        keys: vec!["ryw".into()],
        min_sequence: Some(seq + 1000),
        consistency: 0,
    });
    req.set_timeout(std::time::Duration::from_secs(1));
    let err = s.index().batch_get(req).await.unwrap_err();
    // The server answers before the client's own deadline fires: never CANCELLED.
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    let marked = |e: &tonic::Status| {
        e.metadata()
            .get(skyvault::api::headers::READ_ERROR_HEADER)
            .is_some_and(|v| v == skyvault::api::headers::NOT_YET_APPLIED)
    };
    assert!(marked(&err), "a client may try another index: {err:?}");
    s.stop().await;
}

/// Without a client deadline only the server's own wait ran out: UNAVAILABLE
/// (retryable elsewhere), not DEADLINE_EXCEEDED (issue 23 item 8).
#[tokio::test]
async fn read_your_writes_without_a_deadline_is_unavailable_when_the_wait_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.limits.default_read_wait = std::time::Duration::from_millis(200);
    let s = start(config, None).await;
    let seq = s.write(vec![put("ryw", "1")]).await.unwrap();
    let req = tonic::Request::new(skyvault::api::proto::index::v1::BatchGetRequest {
        keys: vec!["ryw".into()],
        min_sequence: Some(seq + 1000),
        consistency: 0,
    });
    let err = s.index().batch_get(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.metadata()
            .get(skyvault::api::headers::READ_ERROR_HEADER)
            .is_some_and(|v| v == skyvault::api::headers::NOT_YET_APPLIED),
        "{err:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn scan_merges_files_in_key_order_with_paging() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    s.write(vec![put("b/1", "old"), put("a/1", "a1"), put("b/3", "b3")])
        .await
        .unwrap();
    s.write(vec![put("b/1", "new"), put("b/2", "b2"), put("c/1", "c1")])
        .await
        .unwrap();
    let seq = s.write(vec![del("b/3"), put("b/4", "b4")]).await.unwrap();

    let all = s
        .scan(ScanRequest {
            min_sequence: Some(seq),
            consistency: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: Vec<&str> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["a/1", "b/1", "b/2", "b/4", "c/1"]);
    assert_eq!(all.items[1].value, "new");
    assert!(all.next_page_token.is_empty());

    let mut prefix_b = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = s
            .scan(ScanRequest {
                prefix: "b/".into(),
                limit: 2,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        prefix_b.extend(page.items.into_iter().map(|kv| kv.key));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(prefix_b, ["b/1", "b/2", "b/4"]);

    let range = s
        .scan(ScanRequest {
            start_key: "b/2".into(),
            end_key: "c/1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: Vec<&str> = range.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["b/2", "b/4"]);
    s.stop().await;
}

#[tokio::test]
async fn health_reflection_and_metrics_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    for service in ["", "batcher.v1.BatcherService", "index.v1.IndexService"] {
        let resp = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            resp.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    s.write(vec![put("m", "1")]).await.unwrap();
    let http = s.running.http_addr;
    let body = http_get(http, "/metrics").await;
    assert!(
        body.contains("skyvault_rpc_requests_total{code=\"OK\",rpc=\"BatchWrite\"}"),
        "{body}"
    );
    assert!(body.contains("skyvault_objstore_requests_total"), "{body}");
    assert!(http_get(http, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(http_get(http, "/readyz").await.starts_with("HTTP/1.1 200"));
    s.stop().await;
}

/// A minimal HTTP/1.1 GET; returns the status line, headers and body.
/// A BatchGet whose results would not fit one response gets the documented
/// budget's RESOURCE_EXHAUSTED, not the transport's OUT_OF_RANGE; one that
/// fits the budget is answered.
#[tokio::test]
async fn batch_get_over_the_response_budget_is_resource_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    let value = "v".repeat(1 << 20);
    let keys: Vec<String> = (0..17).map(|i| format!("big/{i:02}")).collect();
    let mut seq = 0;
    for chunk in keys.chunks(3) {
        seq = s
            .write(chunk.iter().map(|k| put(k, &value)).collect())
            .await
            .unwrap();
    }
    let mut index = s
        .index()
        .max_decoding_message_size(skyvault::config::MAX_GRPC_MESSAGE_BYTES);
    let get = |n: usize| skyvault::api::proto::index::v1::BatchGetRequest {
        keys: keys[..n].to_vec(),
        min_sequence: Some(seq),
        consistency: 0,
    };
    // 17 MiB of values: more than a gRPC message may carry.
    let err = index.batch_get(get(17)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("budget of 8388608 bytes"), "{err:?}");
    assert!(
        err.metadata()
            .get(skyvault::api::headers::READ_ERROR_HEADER)
            .is_some_and(|v| v == skyvault::api::headers::RESPONSE_BUDGET),
        "clients decide by the header, not the message: {err:?}"
    );
    let fits = index.batch_get(get(7)).await.unwrap().into_inner().results;
    assert_eq!(fits.len(), 7);
    s.stop().await;
}
