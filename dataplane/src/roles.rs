//! Each data-plane role as its own process (`skyvault batcher`, `skyvault
//! index`, `skyvault migrate`; `skyvault cache` is in `cache_tier::role`), sharing one metadata database and one bucket
//! with any number of replicas of each role.
//!
//! Start-up order matters for Kubernetes: the HTTP listener (`/healthz`,
//! `/readyz`, `/metrics`) comes up first and reports "not ready" while the
//! dependencies are unreachable, so a database that starts after the pods is
//! waited for instead of crash-looping. Configuration errors that retrying
//! cannot fix (a bad URL, a missing bucket, rejected credentials) stop the
//! process with a message naming them.

use crate::api::proto::batcher::v1::batcher_service_server::BatcherServiceServer;
use crate::api::proto::index::v1::index_service_server::IndexServiceServer;
use crate::api::{BatcherApi, IndexApi};
use crate::batcher::{Batcher, BatcherConfig};
use crate::cache::{BlockCache, CacheConfig};
use crate::cache_tier::CachePeers;
use crate::config::{Limits, MAX_GRPC_MESSAGE_BYTES};
use crate::index::{Index, IndexConfig};
use crate::meta::{DynMeta, MetaError};
use crate::objstore::{DynStore, StoreError};
use crate::server::{self, Readiness, StopSignal};
use anyhow::Context;
use clap::builder::TypedValueParser as _;
use std::future::Future;
use std::time::Duration;
use tonic::service::RoutesBuilder;

/// A path no writer uses: probing it answers "is the store reachable".
const PROBE_OBJECT: &str = "_skyvault/probe";
/// How often a batcher re-checks its dependencies for `/readyz` (see
/// `track_readiness`).
#[derive(Clone, Copy, Debug)]
struct ReadinessTiming {
    /// The database, and an object store that did not answer.
    interval: Duration,
    /// An object store that answered.
    store_probe: Duration,
}

const READINESS: ReadinessTiming = ReadinessTiming {
    interval: Duration::from_secs(2),
    store_probe: Duration::from_secs(300),
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Batcher,
    Index,
}

/// Flags shared by the role commands (env fallbacks are the operator's contract).
#[derive(clap::Args, Clone, Debug)]
pub struct RoleArgs {
    /// gRPC listener (the role's service, health, reflection).
    #[arg(long, env = "SKYVAULT_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: String,
    /// HTTP listener: /healthz, /readyz, /metrics.
    #[arg(long, env = "SKYVAULT_HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: String,
    /// Metadata database, e.g. postgres://USER:PASSWORD@HOST:5432/DB.
    #[arg(long, env = "SKYVAULT_METADATA_URL")]
    pub metadata_url: String,
    /// Object store, e.g. s3://BUCKET/PREFIX (see SKYVAULT_S3_*) or file:///DIR.
    #[arg(long, env = "SKYVAULT_OBJECT_STORE_URL")]
    pub object_store_url: String,
    /// Cache replicas (HOST:PORT, comma separated, stable names in ring
    /// order): the index resolves point reads through them. Empty: it reads
    /// through its own in-process cache. The batcher ignores it.
    #[arg(long, env = "SKYVAULT_CACHE_PEERS", value_delimiter = ',')]
    pub cache_peers: Vec<String>,
    /// Per-RPC deadline for a cache replica; past it the index reads that
    /// replica's files itself.
    #[arg(long, env = "SKYVAULT_CACHE_PEER_TIMEOUT_MS", default_value_t = 1500,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub cache_peer_timeout_ms: u64,
    /// Object-store requests this process keeps in flight at most; more wait
    /// their turn instead of overwhelming the store.
    #[arg(long, env = "SKYVAULT_OBJECT_STORE_MAX_REQUESTS", default_value_t = crate::objstore::DEFAULT_MAX_REQUESTS,
          value_parser = clap::value_parser!(u64).range(1..=4096).map(|n| n as usize))]
    pub object_store_max_requests: usize,
    #[command(flatten)]
    pub security: crate::security::SecurityArgs,
}

#[derive(Clone, Debug)]
pub struct RoleConfig {
    pub grpc_addr: String,
    pub http_addr: String,
    pub metadata_url: String,
    pub object_store_url: String,
    pub object_store_max_requests: usize,
    pub batcher: BatcherConfig,
    pub cache: CacheConfig,
    pub index: IndexConfig,
    pub limits: Limits,
    pub cache_peers: Vec<String>,
    pub cache_peer_timeout: Duration,
    pub security: crate::security::SecurityArgs,
}

impl RoleArgs {
    pub fn config(self, batcher: BatcherConfig, cache: CacheConfig) -> RoleConfig {
        RoleConfig {
            grpc_addr: self.grpc_addr,
            http_addr: self.http_addr,
            metadata_url: self.metadata_url,
            object_store_url: self.object_store_url,
            object_store_max_requests: self.object_store_max_requests,
            batcher,
            cache,
            index: IndexConfig::default(),
            limits: Limits::default(),
            // An empty env var yields one empty name: treat it as "no peers".
            cache_peers: self
                .cache_peers
                .into_iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            cache_peer_timeout: Duration::from_millis(self.cache_peer_timeout_ms),
            security: self.security,
        }
    }
}

/// `skyvault migrate`: applies the embedded migrations and prints the version.
pub async fn migrate(metadata_url: &str) -> anyhow::Result<u64> {
    let meta = crate::meta::open_url(metadata_url)
        .await
        .context("migrating the metadata database")?;
    Ok(meta.current_version().await?)
}

/// Runs `role` until `shutdown` resolves or a listener fails.
pub async fn run(
    role: Role,
    config: RoleConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Certificates and token files are read now: a wrong path stops the
    // process at once, naming it.
    let security = config.security.listeners()?;
    let stop = StopSignal::on(shutdown);
    let until_stopped = || stop.stopped();
    let readiness = Readiness::default();
    let http = server::bind(&config.http_addr, "HTTP").await?;
    let http_addr = server::local_addr(&http);
    // The index answers /lsm (compaction debt) once its manifest is loaded.
    let loaded_index: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<Index>>> =
        Default::default();
    let debt = matches!(role, Role::Index).then(|| {
        let slot = loaded_index.clone();
        std::sync::Arc::new(move || slot.get().map(|index| index.debt())) as server::DebtSource
    });
    let http_task = tokio::spawn(server::serve_http(
        http,
        security.http_tls(),
        readiness.clone(),
        debt,
        until_stopped(),
    ));

    let opened = tokio::select! {
        opened = open_dependencies(&config) => opened?,
        _ = until_stopped() => return Ok(()),
    };
    let (store, meta) = opened;
    let store_id = crate::store_identity::establish(&store, &meta)
        .await
        .context("checking the store identity")?;
    let grpc = server::bind(&config.grpc_addr, "gRPC").await?;
    let grpc_addr = server::local_addr(&grpc);
    let mut routes = RoutesBuilder::default();
    let service = match role {
        Role::Batcher => {
            let (batcher, collector) =
                Batcher::start(config.batcher.clone(), store.clone(), meta.clone());
            readiness.fail_when_done("batcher collector", collector);
            readiness.require(space_condition(&batcher));
            routes.add_service(
                BatcherServiceServer::new(BatcherApi::new(batcher, config.limits.clone()))
                    .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES),
            );
            tokio::spawn(track_readiness(
                store.clone(),
                meta.clone(),
                readiness.clone(),
                READINESS,
            ));
            "batcher.v1.BatcherService"
        }
        Role::Index => {
            let cache = std::sync::Arc::new(BlockCache::new(store.clone(), &config.cache));
            let peers = if config.cache_peers.is_empty() {
                None
            } else {
                let peers = CachePeers::with_security(
                    &config.cache_peers,
                    config.cache_peer_timeout,
                    &config.security.peer_client()?,
                )?;
                tracing::info!(peers = ?config.cache_peers, "point reads go through the cache tier");
                Some(std::sync::Arc::new(peers))
            };
            let (index, _follow) =
                Index::start_with_peers(meta.clone(), cache, peers, config.index.clone())
                    .await
                    .context("loading the manifest")?;
            let _ = loaded_index.set(index.clone());
            routes.add_service(
                IndexServiceServer::new(IndexApi::new(index.clone(), config.limits.clone()))
                    .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
            );
            // Ready after its first catch-up. It stays ready while the
            // database is down, serving the manifest it has, until that
            // manifest is older than `max_manifest_age` (purge may have
            // deleted what it names): then reads fail UNAVAILABLE and
            // readiness is false until a catch-up succeeds.
            let fresh = index.clone();
            readiness.require(std::sync::Arc::new(move || fresh.staleness()));
            readiness.set(true);
            "index.v1.IndexService"
        }
    };
    tracing::info!(?role, %grpc_addr, %http_addr, %store_id, store = %store.describe(), meta = %meta.describe(), "serving");
    let grpc_result =
        server::serve_grpc(grpc, routes, &[service], &security, until_stopped()).await;
    stop.stop();
    http_task.await.context("HTTP task panicked")??;
    grpc_result
}

/// Opens the store and the database, retrying with backoff while they are
/// unreachable; fails at once on errors that retrying cannot fix.
async fn open_dependencies(config: &RoleConfig) -> anyhow::Result<(DynStore, DynMeta)> {
    let store = open_store(&config.object_store_url, config.object_store_max_requests).await?;
    let mut backoff = Duration::from_millis(200);
    loop {
        match crate::meta::open_url(&config.metadata_url).await {
            Ok(meta) => return Ok((store, meta)),
            Err(e @ MetaError::BadUrl { .. }) => return Err(e.into()),
            // Not ready, saying why; a fixed certificate or CA is picked up
            // by the next attempt.
            Err(e @ MetaError::Tls(_)) => tracing::error!(error = %e, "retrying"),
            Err(e) => tracing::warn!(error = %e, "metadata database unreachable; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Opens the object store and waits (with backoff) until it answers; fails
/// at once on errors that retrying cannot fix.
pub(crate) async fn open_store(url: &str, max_requests: usize) -> anyhow::Result<DynStore> {
    let store = crate::objstore::open_url(url, max_requests)
        .await
        .with_context(|| format!("opening object store {url}"))?;
    let mut backoff = Duration::from_millis(200);
    loop {
        match probe_store(&store).await {
            Ok(()) => break,
            Err(e @ (StoreError::Rejected(_) | StoreError::InvalidPath { .. })) => {
                return Err(e).context("the object store refused the probe request");
            }
            Err(e) => tracing::warn!(error = %e, "object store unreachable; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    Ok(store)
}

/// Reachable means the store answered, even "not found".
async fn probe_store(store: &DynStore) -> Result<(), StoreError> {
    match store.get(PROBE_OBJECT).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Not ready while writes fail for want of space (reads, served by the
/// index, are not affected): the reason names the cause.
pub(crate) fn space_condition(batcher: &Batcher) -> server::ReadyCondition {
    let batcher = batcher.clone();
    std::sync::Arc::new(move || {
        let cause = batcher.out_of_space()?;
        Some(format!("out of space, writes are refused: {cause}"))
    })
}

/// A batcher is ready while it can both upload and commit. The database is
/// asked every `timing.interval` (2 s); the object store only every
/// `timing.store_probe` (5 min) while it answers — each probe is a billed
/// request, and an idle store should make few (issue 25 item 1) — and every
/// `timing.interval` once it did not. A store that fails in between fails
/// flushes, which their clients see at once.
async fn track_readiness(
    store: DynStore,
    meta: DynMeta,
    readiness: Readiness,
    timing: ReadinessTiming,
) {
    let mut store_ok_at: Option<tokio::time::Instant> = None;
    let mut was_ready = None;
    loop {
        let probe_due = store_ok_at.is_none_or(|at| at.elapsed() >= timing.store_probe);
        let probe = async {
            if probe_due {
                probe_store(&store).await
            } else {
                Ok(())
            }
        };
        let (stored, committed) = tokio::join!(probe, meta.current_version());
        match &stored {
            Ok(()) if probe_due => store_ok_at = Some(tokio::time::Instant::now()),
            Ok(()) => {}
            Err(_) => store_ok_at = None,
        }
        let ready = stored.is_ok() && committed.is_ok();
        if was_ready != Some(ready) {
            tracing::info!(ready, store = ?stored.err(), meta = ?committed.err(), "batcher readiness changed");
            was_ready = Some(ready);
        }
        readiness.set(ready);
        tokio::time::sleep(timing.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objstore::{LocalStore, MeteredStore};

    /// An idle batcher's readiness makes a dozen object-store requests an
    /// hour (it made 1,800: one every 2 s), and still notices a store that
    /// stops answering. Time runs a thousand times faster here: the hour is
    /// 3.6 s, every interval a thousandth of the real one.
    #[tokio::test]
    async fn an_idle_batcher_probes_the_store_a_few_times_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::open(dir.path().join("objects")).unwrap();
        let faulty =
            std::sync::Arc::new(crate::objstore::FaultyStore::new(MeteredStore::new(local)));
        let store: DynStore = faulty.clone();
        let url = format!("sqlite://{}", dir.path().join("meta.db").display());
        let meta = crate::meta::open_url(&url).await.unwrap();
        let readiness = Readiness::default();
        let timing = ReadinessTiming {
            interval: READINESS.interval / 1000,
            store_probe: READINESS.store_probe / 1000,
        };
        let task = tokio::spawn(track_readiness(store, meta, readiness.clone(), timing));
        let requests = || {
            let m = crate::metrics::metrics();
            let by = |outcome| {
                m.objstore_requests
                    .with_label_values(&["get", outcome])
                    .get()
            };
            by("ok") + by("error")
        };
        let before = requests();
        tokio::time::sleep(Duration::from_millis(3600)).await;
        let per_hour = requests() - before;
        assert!(per_hour <= 13, "{per_hour} probes in an idle hour");
        assert!(readiness.get());
        faulty.set_fault(Some(crate::objstore::Fault::Down));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while readiness.get() {
            assert!(
                std::time::Instant::now() < deadline,
                "a store that stopped answering is never noticed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
    }
}
