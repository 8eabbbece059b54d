//! The bad-input table: each case gets INVALID_ARGUMENT naming the field, and
//! nothing of a rejected request is written.

mod common;

use common::{put, start};
use skyvault::api::proto::batcher::v1::{WriteRequest, write_request::Operation};
use skyvault::api::proto::index::v1::{BatchGetRequest, ScanRequest};
use tonic::Code;

fn write(key: &str, op: Option<Operation>) -> WriteRequest {
    WriteRequest {
        key: key.into(),
        operation: op,
    }
}

#[tokio::test]
async fn rejected_writes_name_the_field_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    let big = "v".repeat((1 << 20) + 1);
    let quarter = "v".repeat(1 << 20);
    let cases: Vec<(&str, Vec<WriteRequest>, &str)> = vec![
        ("no writes", vec![], "writes must contain"),
        (
            "empty key",
            vec![put("ok", "1"), put("", "1")],
            "writes[1].key must not be empty",
        ),
        (
            "key too long",
            vec![put(&"k".repeat(1025), "1")],
            "writes[0].key is 1025 bytes; the limit is 1024",
        ),
        (
            "value too long",
            vec![put("ok", &big)],
            "writes[0].put is 1048577 bytes; the limit is 1048576",
        ),
        (
            "batch too big",
            (0..5).map(|i| put(&format!("k{i}"), &quarter)).collect(),
            "the batch limit",
        ),
        (
            "too many writes",
            (0..10_001).map(|i| put(&format!("k{i}"), "")).collect(),
            "writes has 10001 entries; the limit is 10000",
        ),
        (
            "operation unset",
            vec![write("ok", None)],
            "writes[0].operation must be set",
        ),
        (
            "delete false",
            vec![write("ok", Some(Operation::Delete(false)))],
            "writes[0].delete must be true",
        ),
    ];
    for (name, writes, message) in cases {
        let err = s.write(writes).await.expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert!(
            err.message().contains(message),
            "{name}: {:?} lacks {message:?}",
            err.message()
        );
    }
    assert!(
        s.scan_all().await.is_empty(),
        "a rejected batch wrote something"
    );
    let seq = s
        .write(vec![put("after", "1")])
        .await
        .expect("valid writes still work");
    assert_eq!(seq, 1, "rejected requests took no sequence numbers");
    s.stop().await;
}

#[tokio::test]
async fn rejected_reads_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(common::config(dir.path()), None).await;
    let mut index = s.index();
    let get = |keys: Vec<String>| BatchGetRequest {
        keys,
        min_sequence: None,
        consistency: 0,
    };
    let cases = vec![
        (
            get(vec!["a".into(), String::new()]),
            "keys[1] must not be empty",
        ),
        (get(vec!["k".repeat(1025)]), "keys[0] is 1025 bytes"),
        (
            get((0..1001).map(|i| i.to_string()).collect()),
            "keys has 1001 entries; the limit is 1000",
        ),
    ];
    for (req, message) in cases {
        let err = index.batch_get(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains(message),
            "{:?} lacks {message:?}",
            err.message()
        );
    }
    let scans = vec![
        (
            ScanRequest {
                limit: 10_001,
                ..Default::default()
            },
            "limit is 10001; the maximum is 10000",
        ),
        (
            ScanRequest {
                page_token: "zz".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            ScanRequest {
                prefix: "p".repeat(1025),
                ..Default::default()
            },
            "prefix is 1025 bytes",
        ),
    ];
    for (req, message) in scans {
        let err = s.scan(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains(message),
            "{:?} lacks {message:?}",
            err.message()
        );
    }
    s.stop().await;
}
