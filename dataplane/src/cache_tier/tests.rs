//! The index's client against real `CacheService` servers on loopback (and
//! one dead address): answers match the newest-first model, and the dead
//! replica's share is read locally and counted.

use super::{CacheApi, CachePeers, Ring};
use crate::api::proto::cache::v1::cache_service_server::CacheServiceServer;
use crate::cache::{BlockCache, CacheConfig};
use crate::index::Manifest;
use crate::meta::{FileKind, FileRecord, ManifestDelta};
use crate::metrics::{counter_value, metrics};
use crate::objstore::{DynStore, LocalStore};
use crate::sstable::{Value, Writer, WriterOptions};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const FILES: u64 = 40;
const KEYS: usize = 50;

fn key(i: usize) -> Vec<u8> {
    format!("k{i:03}").into_bytes()
}

/// Writes `FILES` files (file `s` has sequence `s`), each putting or deleting
/// a few keys, and returns the manifest plus what each key should read as.
async fn write_files(store: &DynStore) -> (Manifest, BTreeMap<Vec<u8>, Option<Bytes>>) {
    let mut model = BTreeMap::new();
    let mut records = Vec::new();
    for seq in 1..=FILES {
        let s = seq as usize;
        let mut entries = BTreeMap::new();
        for j in 0..4 {
            let value = if (s + j).is_multiple_of(5) {
                Value::Delete
            } else {
                Value::Put(Bytes::from(format!("v{seq}-{j}")))
            };
            entries.insert(key((s * 7 + j * 11) % KEYS), value);
        }
        let mut writer = Writer::new(WriterOptions::default());
        for (k, v) in &entries {
            writer.add(k, v).unwrap();
        }
        let data = writer.finish(seq, seq).unwrap();
        let object = format!("wal/{seq:06}.sst");
        store.put(&object, data.clone()).await.unwrap();
        for (k, v) in &entries {
            let value = match v {
                Value::Put(b) => Some(b.clone()),
                Value::Delete => None,
            };
            model.insert(k.clone(), value);
        }
        records.push(FileRecord {
            id: seq as i64,
            object,
            kind: FileKind::Run,
            level: 0,
            seq,
            min_key: entries.keys().next().unwrap().clone(),
            max_key: entries.keys().next_back().unwrap().clone(),
            entry_count: entries.len() as u64,
            tombstone_count: 0,
            size_bytes: data.len() as u64,
            added_version: seq,
            removed_version: None,
            created_at_ms: 0,
            removed_at_ms: None,
        });
    }
    let manifest = Manifest::default().apply(
        ManifestDelta {
            version: FILES,
            added: records,
            removed_ids: vec![],
            full: false,
        },
        vec![],
    );
    (manifest, model)
}

async fn serve(store: DynStore) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cache = Arc::new(BlockCache::new(store, &CacheConfig::default()));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CacheServiceServer::new(CacheApi::new(cache)))
            .serve_with_incoming(incoming),
    );
    addr
}

/// An address nothing listens on (bound, then released).
async fn dead_addr() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

#[tokio::test]
async fn reads_through_replicas_match_the_model_and_fall_back_for_a_dead_one() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    let (manifest, mut model) = write_files(&store).await;
    model.insert(b"absent".to_vec(), None);
    let dead = dead_addr().await;
    let names = vec![serve(store.clone()).await, serve(store.clone()).await, dead];
    let ring = Ring::new(&names);
    assert!(
        manifest
            .files
            .iter()
            .any(|f| ring.owner(&f.object) == Some(2)),
        "the dead replica owns some of the {FILES} files"
    );
    let peers = CachePeers::new(&names, Duration::from_millis(500)).unwrap();
    let local = BlockCache::new(store, &CacheConfig::default());
    let keys: Vec<Bytes> = model.keys().map(|k| Bytes::from(k.clone())).collect();
    let fallbacks = || counter_value(&metrics().cache_fallbacks, &[names[2].as_str()]);
    for round in 0..2u64 {
        let got = peers.get_many(&local, &manifest, &keys).await.unwrap();
        for ((k, want), got) in model.iter().zip(&got) {
            assert_eq!(
                got,
                want,
                "round {round}: key {}",
                String::from_utf8_lossy(k)
            );
        }
        assert_eq!(fallbacks(), round + 1, "one fallback per read");
    }
    for live in &names[..2] {
        assert_eq!(
            counter_value(&metrics().cache_fallbacks, &[live.as_str()]),
            0
        );
    }
}

#[tokio::test]
async fn rejects_bad_and_duplicate_peers() {
    let a = "127.0.0.1:1".to_string();
    assert!(CachePeers::new(&[a.clone(), a], Duration::from_secs(1)).is_err());
    assert!(CachePeers::new(&["bad host:1".into()], Duration::from_secs(1)).is_err());
}

#[tokio::test]
async fn service_rejects_bad_requests_precisely() {
    use crate::api::proto::cache::v1::{
        GetRequest, ObjectKeys, cache_service_server::CacheService,
    };
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    let api = CacheApi::new(Arc::new(BlockCache::new(store, &CacheConfig::default())));
    let get = |objects: Vec<ObjectKeys>| {
        let request = tonic::Request::new(GetRequest {
            keys: vec![Bytes::from_static(b"k")],
            objects,
        });
        async { api.get(request).await.unwrap_err() }
    };
    let err = get(vec![ObjectKeys {
        object: "wal/1.sst".into(),
        key_indexes: vec![0, 1],
    }])
    .await;
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("objects[0].key_indexes"), "{err:?}");
    let err = get(vec![ObjectKeys {
        object: String::new(),
        key_indexes: vec![0],
    }])
    .await;
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    // A file the store does not have is an error, never "not in this file".
    let err = get(vec![ObjectKeys {
        object: "wal/missing.sst".into(),
        key_indexes: vec![0],
    }])
    .await;
    assert_ne!(err.code(), tonic::Code::Ok);
}

/// A read too big for one replica reply is served locally, and the replica,
/// which answered (RESOURCE_EXHAUSTED), is not skipped for the next read.
#[tokio::test]
async fn an_over_budget_reply_falls_back_without_skipping_the_replica() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    let big = Bytes::from(vec![b'v'; 1 << 20]);
    let mut entries: BTreeMap<Vec<u8>, Value> = (0..13)
        .map(|i| (format!("big/{i:02}").into_bytes(), Value::Put(big.clone())))
        .collect();
    entries.insert(b"small".to_vec(), Value::Put(Bytes::from_static(b"s")));
    let mut writer = Writer::new(WriterOptions::default());
    for (k, v) in &entries {
        writer.add(k, v).unwrap();
    }
    let data = writer.finish(1, 1).unwrap();
    store.put("wal/big.sst", data.clone()).await.unwrap();
    let manifest = Manifest::default().apply(
        ManifestDelta {
            version: 1,
            added: vec![FileRecord {
                id: 1,
                object: "wal/big.sst".into(),
                kind: FileKind::Run,
                level: 0,
                seq: 1,
                min_key: entries.keys().next().unwrap().clone(),
                max_key: entries.keys().next_back().unwrap().clone(),
                entry_count: entries.len() as u64,
                tombstone_count: 0,
                size_bytes: data.len() as u64,
                added_version: 1,
                removed_version: None,
                created_at_ms: 0,
                removed_at_ms: None,
            }],
            removed_ids: vec![],
            full: false,
        },
        vec![],
    );
    let names = vec![serve(store.clone()).await];
    let peers = CachePeers::new(&names, Duration::from_secs(5)).unwrap();
    let local = BlockCache::new(store, &CacheConfig::default());
    // Counted from here: the global counter may already hold another test's
    // fallbacks for a reused port.
    let counted = || counter_value(&metrics().cache_fallbacks, &[names[0].as_str()]);
    let before = counted();
    let fallbacks = || counted() - before;

    let keys: Vec<Bytes> = (0..13)
        .map(|i| Bytes::from(format!("big/{i:02}")))
        .collect();
    let got = peers.get_many(&local, &manifest, &keys).await.unwrap();
    assert!(got.iter().all(|v| v.as_ref() == Some(&big)));
    assert_eq!(
        fallbacks(),
        1,
        "13 MiB in one reply is over the replica's budget"
    );

    let got = peers
        .get_many(&local, &manifest, &[Bytes::from_static(b"small")])
        .await
        .unwrap();
    assert_eq!(got, vec![Some(Bytes::from_static(b"s"))]);
    assert_eq!(fallbacks(), 1, "the replica answered the small read itself");
}
