//! `cache.v1.CacheService` on a cache replica: looks keys up in the files it
//! is asked about, through its own [`BlockCache`], and returns only the
//! per-key results (never blocks), so an index read costs one small RPC per
//! replica.

use crate::api::proto::cache::v1::{
    GetRequest, GetResponse, KeyResult, ObjectResults, cache_service_server::CacheService,
    key_result::Outcome,
};
use crate::cache::BlockCache;
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
