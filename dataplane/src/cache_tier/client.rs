//! The index's side of the cache tier. A point read groups, for each key, the
//! files whose key range and bloom filter admit it (the index keeps file
//! metadata itself; replicas hold data blocks) by owning replica and sends one
//! RPC per replica carrying every (object, keys) pair it owns. The answer for a key is
//! then taken from the newest file that holds it, exactly as the local lookup
//! does, so the result cannot depend on which replica answered what.
//!
//! A replica that fails (down, slow, malformed reply) costs latency, never a
//! read: its share is looked up through the index's own [`BlockCache`] and
//! counted in `skyvault_cache_fallbacks_total{peer}`. After a failure the
//! replica is skipped for [`RETRY_AFTER`] so a dead one does not add its
//! timeout to every read.

use super::ring::Ring;
use crate::api::proto::cache::v1::{
    GetRequest, GetResponse, ObjectKeys, cache_service_client::CacheServiceClient,
    key_result::Outcome,
};
use crate::cache::{BlockCache, ReadError};
use crate::config::MAX_GRPC_MESSAGE_BYTES;
use crate::index::{FileAnswer, Manifest, file_meta, probe};
use crate::metrics::metrics;
use crate::security::{ClientSecurity, Credentials};
use crate::sstable::Value;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::codegen::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// How long a failed replica is bypassed before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cache peer {peer:?} is not a valid HOST:PORT: {source}")]
    BadAddress {
        peer: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cache peer list contains {peer:?} twice")]
    Duplicate { peer: String },
}

/// Why one replica's RPC was not used.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("bypassed after a recent failure")]
    Bypassed,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Status(#[from] tonic::Status),
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
}

impl CallError {
    /// Whether the replica itself failed (so it is skipped for a while).
    /// Not when it was already skipped, nor when it answered that this one
    /// reply would be over its budget: it is healthy, only this read is big.
    fn is_peer_failure(&self) -> bool {
        match self {
            CallError::Bypassed => false,
            CallError::Status(s) => s.code() != tonic::Code::ResourceExhausted,
            CallError::Timeout(_) | CallError::Malformed(_) => true,
        }
    }
}

type PeerClient = CacheServiceClient<InterceptedService<Channel, Credentials>>;

struct Peer {
    name: String,
    client: PeerClient,
    bypass_until: Mutex<Option<Instant>>,
}

pub struct CachePeers {
    ring: Ring,
    peers: Vec<Peer>,
    timeout: Duration,
}

/// Files (positions in the manifest) → keys (positions in the request).
type Plan = BTreeMap<usize, Vec<usize>>;
/// What file `.0.0` says about key `.0.1` (positions as in [`Plan`]).
type Answers = Vec<((usize, usize), FileAnswer)>;

impl CachePeers {
    /// Plaintext, unauthenticated replicas (tests, development).
    pub fn new(addrs: &[String], timeout: Duration) -> Result<CachePeers, PeerError> {
        Self::with_security(addrs, timeout, &ClientSecurity::default())
    }

    /// Channels connect lazily (and reconnect by themselves), so replicas may
    /// start after the index. With `security`, calls go over TLS (the index's
    /// certificate as client certificate) and carry the internal token.
    pub fn with_security(
        addrs: &[String],
        timeout: Duration,
        security: &ClientSecurity,
    ) -> Result<CachePeers, PeerError> {
        let mut peers: Vec<Peer> = Vec::with_capacity(addrs.len());
        for addr in addrs {
            if peers.iter().any(|p| &p.name == addr) {
                return Err(PeerError::Duplicate { peer: addr.clone() });
            }
            let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|source| PeerError::BadAddress {
                    peer: addr.clone(),
                    source,
                })?
                .connect_timeout(timeout)
                .timeout(timeout)
                .tcp_nodelay(true);
            let channel = security.connect_lazy(endpoint);
            let client = CacheServiceClient::with_interceptor(channel, security.credentials())
                .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
            peers.push(Peer {
                name: addr.clone(),
                client,
                bypass_until: Mutex::new(None),
            });
        }
        Ok(CachePeers {
            ring: Ring::new(addrs),
            peers,
            timeout,
        })
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Point reads through the replicas; same contract as the local lookup.
    pub async fn get_many(
        &self,
        local: &BlockCache,
        manifest: &Manifest,
        keys: &[Bytes],
    ) -> Result<Vec<Option<Bytes>>, Arc<ReadError>> {
        manifest.mem.check()?;
        let candidates = candidates(local, manifest, keys).await?;
        let mut plans: Vec<Plan> = vec![Plan::new(); self.peers.len()];
        for (k, files) in candidates.iter().enumerate() {
            for &f in files {
                let owner = self
                    .ring
                    .owner(&manifest.files[f].object)
                    .expect("CachePeers is never empty");
                plans[owner].entry(f).or_default().push(k);
            }
        }
        let calls = plans
            .iter()
            .enumerate()
            .filter(|(_, plan)| !plan.is_empty())
            .map(|(p, plan)| self.resolve(p, plan, local, manifest, keys));
        let mut answers: HashMap<(usize, usize), FileAnswer> = HashMap::new();
        for part in futures::future::try_join_all(calls).await? {
            answers.extend(part);
        }
        Ok(candidates
            .iter()
            .enumerate()
            .map(|(k, files)| {
                if let Some(value) = manifest.mem.get(&keys[k]) {
                    return match value {
                        Value::Put(v) => Some(v.clone()),
                        Value::Delete => None,
                    };
                }
                files
                    .iter()
                    .filter_map(|&f| answers.remove(&(f, k)))
                    .find(|a| *a != FileAnswer::NotInFile)
                    .and_then(FileAnswer::into_value)
            })
            .collect())
    }

    /// One replica's share: its RPC, or the local lookup if that fails.
    async fn resolve(
        &self,
        p: usize,
        plan: &Plan,
        local: &BlockCache,
        manifest: &Manifest,
        keys: &[Bytes],
    ) -> Result<Answers, Arc<ReadError>> {
        let peer = &self.peers[p];
        match self.call(peer, plan, manifest, keys).await {
            Ok(answers) => return Ok(answers),
            Err(e) => {
                if e.is_peer_failure() {
                    tracing::warn!(peer = %peer.name, error = %e, "cache peer failed; reading its files locally");
                    *peer.bypass_until.lock().expect("peer lock") =
                        Some(Instant::now() + RETRY_AFTER);
                }
                metrics()
                    .cache_fallbacks
                    .with_label_values(&[peer.name.as_str()])
                    .inc();
            }
        }
        let lookups = plan.iter().flat_map(|(&f, ks)| {
            ks.iter().map(move |&k| async move {
                let answer = probe(local, &manifest.files[f].object, &keys[k]).await?;
                Ok::<_, Arc<ReadError>>(((f, k), answer))
            })
        });
        futures::future::try_join_all(lookups).await
    }

    async fn call(
        &self,
        peer: &Peer,
        plan: &Plan,
        manifest: &Manifest,
        keys: &[Bytes],
    ) -> Result<Answers, CallError> {
        let bypass = *peer.bypass_until.lock().expect("peer lock");
        if bypass.is_some_and(|until| Instant::now() < until) {
            return Err(CallError::Bypassed);
        }
        // Only the keys this replica needs, each once; positions renumbered.
        let mut wire_keys = Vec::new();
        let mut position: HashMap<usize, u32> = HashMap::new();
        let objects = plan
            .iter()
            .map(|(&f, ks)| ObjectKeys {
                object: manifest.files[f].object.to_string(),
                key_indexes: ks
                    .iter()
                    .map(|&k| {
                        *position.entry(k).or_insert_with(|| {
                            wire_keys.push(keys[k].clone());
                            (wire_keys.len() - 1) as u32
                        })
                    })
                    .collect(),
            })
            .collect();
        let request = GetRequest {
            keys: wire_keys,
            objects,
        };
        let mut request = tonic::Request::new(request);
        request.set_timeout(self.timeout);
        let mut client = peer.client.clone();
        let reply = tokio::time::timeout(self.timeout, client.get(request))
            .await
            .map_err(|_| CallError::Timeout(self.timeout))??
            .into_inner();
        unpack(plan, reply)
    }
}

/// Every file that may hold each key (newest first), so the newest hit can be
/// picked once all answers are in. Files are pruned by key range and then by
/// their bloom filter, from metadata the index keeps itself: only data blocks
/// are worth a round trip to a replica, and without the bloom check a key
/// would be sent to every L0 file whose range covers it.
async fn candidates(
    local: &BlockCache,
    manifest: &Manifest,
    keys: &[Bytes],
) -> Result<Vec<Vec<usize>>, Arc<ReadError>> {
    // A key the WAL tier holds is answered from memory: no file is asked.
    let in_range: Vec<Vec<usize>> = keys
        .iter()
        .map(|key| match manifest.mem.get(key) {
            Some(_) => Vec::new(),
            None => manifest.candidates(key),
        })
        .collect();
    let mut files: Vec<usize> = in_range.iter().flatten().copied().collect();
    files.sort_unstable();
    files.dedup();
    let metas =
        futures::future::try_join_all(files.iter().map(|&f| file_meta(local, &manifest.files[f])))
            .await?;
    let meta_of: HashMap<usize, _> = files.into_iter().zip(metas).collect();
    Ok(in_range
        .into_iter()
        .zip(keys)
        .map(|(fs, key)| {
            fs.into_iter()
                .filter(|f| meta_of[f].may_contain(key))
                .collect()
        })
        .collect())
}

/// Pairs the reply with the plan, refusing any shape mismatch (a reply that
/// is not exactly one result per requested key cannot be trusted at all).
fn unpack(plan: &Plan, reply: GetResponse) -> Result<Answers, CallError> {
    if reply.objects.len() != plan.len() {
        return Err(CallError::Malformed(
            "object count differs from the request",
        ));
    }
    let mut answers = Vec::new();
    for ((&f, ks), results) in plan.iter().zip(reply.objects) {
        if results.results.len() != ks.len() {
            return Err(CallError::Malformed("key count differs from the request"));
        }
        for (&k, result) in ks.iter().zip(results.results) {
            let answer = match result.outcome {
                Some(Outcome::Value(v)) => FileAnswer::Value(v),
                Some(Outcome::Tombstone(_)) => FileAnswer::Tombstone,
                Some(Outcome::NotInFile(_)) => FileAnswer::NotInFile,
                None => return Err(CallError::Malformed("a key result has no outcome")),
            };
            answers.push(((f, k), answer));
        }
    }
    Ok(answers)
}
