//! `cache.v1.CacheService` on a cache replica: looks keys up in the files it
//! is asked about, through its own [`BlockCache`], and returns only the
//! per-key results (never blocks), so an index read costs one small RPC per
//! replica.

use crate::api::proto::cache::v1::{
    GetRequest, GetResponse, KeyResult, ObjectResults, cache_service_server::CacheService,
    key_result::Outcome,
};
use crate::cache::BlockCache;
use crate::config::MAX_CACHE_REPLY_BYTES;
use crate::index::{FileAnswer, IndexError, probe};
use crate::metrics::metrics;
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// (object, key) lookups accepted in one request: an index sends at most
/// keys-per-BatchGet × live files, and anything beyond this is a bug or abuse.
pub const MAX_LOOKUPS_PER_REQUEST: usize = 1 << 20;
/// Lookups in flight per request: enough to overlap store GETs on misses
/// without one request monopolising the replica.
const LOOKUP_CONCURRENCY: usize = 64;

pub struct CacheApi {
    cache: Arc<BlockCache>,
}

impl CacheApi {
    pub fn new(cache: Arc<BlockCache>) -> Self {
        CacheApi { cache }
    }

    async fn lookup(&self, req: GetRequest) -> Result<GetResponse, Status> {
        let total: usize = req.objects.iter().map(|o| o.key_indexes.len()).sum();
        if total > MAX_LOOKUPS_PER_REQUEST {
            return Err(Status::invalid_argument(format!(
                "objects[].key_indexes: {total} lookups in one request; the limit is {MAX_LOOKUPS_PER_REQUEST}"
            )));
        }
        for (i, o) in req.objects.iter().enumerate() {
            if o.object.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "objects[{i}].object is empty"
                )));
            }
            if let Some(k) = o
                .key_indexes
                .iter()
                .find(|&&k| k as usize >= req.keys.len())
            {
                return Err(Status::invalid_argument(format!(
                    "objects[{i}].key_indexes: {k} is out of range ({} keys)",
                    req.keys.len()
                )));
            }
        }
        let keys = &req.keys;
        let pairs: Vec<(usize, Arc<str>, bytes::Bytes)> = req
            .objects
            .iter()
            .enumerate()
            .flat_map(|(i, o)| {
                let object: Arc<str> = Arc::from(o.object.as_str());
                o.key_indexes
                    .iter()
                    .map(move |&k| (i, object.clone(), keys[k as usize].clone()))
            })
            .collect();
        let answers: Vec<(usize, FileAnswer)> = futures::stream::iter(pairs)
            .map(|(i, object, key)| async move {
                probe(&self.cache, &object, &key)
                    .await
                    .map(|answer| (i, answer))
            })
            .buffered(LOOKUP_CONCURRENCY)
            .try_collect()
            .await
            .map_err(|e| Status::from(IndexError::Read(e)))?;
        let mut objects: Vec<ObjectResults> = req
            .objects
            .iter()
            .map(|o| ObjectResults {
                results: Vec::with_capacity(o.key_indexes.len()),
            })
            .collect();
        let values: usize = answers
            .iter()
            .map(|(_, a)| match a {
                FileAnswer::Value(v) => v.len(),
                _ => 0,
            })
            .sum();
        // A few bytes of framing per result besides the values.
        let reply = values + answers.len() * 8;
        if reply > MAX_CACHE_REPLY_BYTES {
            return Err(Status::resource_exhausted(format!(
                "cache reply of {reply} bytes ({} lookups) is over its budget of \
                 {MAX_CACHE_REPLY_BYTES} bytes; send fewer lookups per request",
                answers.len()
            )));
        }
        let served = &metrics().cache_service_lookups;
        // `buffered` keeps request order, so pushing in order rebuilds the shape.
        for (i, answer) in answers {
            let (outcome, label) = match answer {
                FileAnswer::Value(v) => (Outcome::Value(v), "value"),
                FileAnswer::Tombstone => (Outcome::Tombstone(true), "tombstone"),
                FileAnswer::NotInFile => (Outcome::NotInFile(true), "not_in_file"),
            };
            served.with_label_values(&[label]).inc();
            objects[i].results.push(KeyResult {
                outcome: Some(outcome),
            });
        }
        Ok(GetResponse { objects })
    }
}

#[tonic::async_trait]
impl CacheService for CacheApi {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let started = Instant::now();
        let result = self.lookup(request.into_inner()).await.map(Response::new);
        crate::api::observe("CacheGet", started, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::proto::cache::v1::ObjectKeys;
    use crate::api::proto::cache::v1::cache_service_client::CacheServiceClient;
    use crate::api::proto::cache::v1::cache_service_server::CacheServiceServer;
    use crate::cache::CacheConfig;
    use crate::config::MAX_GRPC_MESSAGE_BYTES;
    use crate::objstore::{DynStore, LocalStore};
    use crate::sstable::{Value, Writer, WriterOptions};
    use bytes::Bytes;

    /// A reply too large for one gRPC message is refused by the replica
    /// with RESOURCE_EXHAUSTED naming its budget, not failed by the
    /// transport (OUT_OF_RANGE) after every lookup was done.
    #[tokio::test]
    async fn a_reply_over_budget_is_resource_exhausted() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
        let keys: Vec<Bytes> = (0..17)
            .map(|i| Bytes::from(format!("big/{i:02}")))
            .collect();
        let mut writer = Writer::new(WriterOptions::default());
        for key in &keys {
            writer
                .add(key, &Value::Put(Bytes::from(vec![b'v'; 1 << 20])))
                .unwrap();
        }
        store
            .put("wal/big.sst", writer.finish(1, 1).unwrap())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cache = Arc::new(BlockCache::new(store, &CacheConfig::default()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(
                    // As `skyvault cache` serves it.
                    CacheServiceServer::new(CacheApi::new(cache))
                        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
                )
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let mut client = CacheServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        let request = |n: usize| GetRequest {
            keys: keys[..n].to_vec(),
            objects: vec![ObjectKeys {
                object: "wal/big.sst".into(),
                key_indexes: (0..n as u32).collect(),
            }],
        };
        let err = client.get(request(17)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
        assert!(
            err.message()
                .contains(&format!("budget of {MAX_CACHE_REPLY_BYTES} bytes")),
            "{err:?}"
        );
        let fits = client.get(request(11)).await.unwrap().into_inner();
        assert_eq!(fits.objects[0].results.len(), 11);
    }
}
