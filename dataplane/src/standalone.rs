//! `skyvault standalone`: every role in one process on a local directory
//! (objects under `DIR/objects`, metadata in `DIR/meta.db`), one gRPC port and
//! one HTTP port. The index reads through the in-process cache, no network hop.

use crate::api::proto::batcher::v1::batcher_service_server::BatcherServiceServer;
use crate::api::proto::index::v1::index_service_server::IndexServiceServer;
use crate::api::{BatcherApi, IndexApi};
use crate::batcher::{Batcher, BatcherConfig};
use crate::cache::{BlockCache, CacheConfig};
use crate::compaction::{self, CompactionConfig};
use crate::config::{Limits, MAX_GRPC_MESSAGE_BYTES};
use crate::index::{Index, IndexConfig};
use crate::meta::DynMeta;
use crate::metrics::metrics;
use crate::objstore::{DEFAULT_MAX_REQUESTS, DynStore, LocalStore};
use crate::purge::{self, PurgeConfig};
use crate::server::{self, Readiness, StopSignal};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tonic::service::RoutesBuilder;

#[derive(Clone, Debug)]
pub struct StandaloneConfig {
    pub data_dir: PathBuf,
    pub grpc_addr: String,
    pub http_addr: String,
    pub batcher: BatcherConfig,
    pub cache: CacheConfig,
    pub index: IndexConfig,
    pub limits: Limits,
    /// Background compaction + purge; `None` disables it.
    pub maintenance: Option<Maintenance>,
    /// TLS and client tokens of the gRPC listener (none by default: loopback).
    pub security: crate::security::SecurityArgs,
}

/// The embedded default compacts and purges by itself, so a standalone
/// store never grows without bound.
#[derive(Clone, Debug)]
pub struct Maintenance {
    /// Purge runs this often.
    pub interval: Duration,
    /// Compaction jobs run at once, each doing one bounded job at a time for
    /// as long as the debt (`crate::lsm`) says a level is due.
    pub compaction_workers: usize,
    pub compaction: CompactionConfig,
    pub purge: PurgeConfig,
}

impl Default for Maintenance {
    fn default() -> Self {
        Maintenance {
            interval: Duration::from_secs(60),
            compaction_workers: 2,
            compaction: CompactionConfig::default(),
            // One process: no reader holds a manifest longer than a
            // request, so replaced files go after a minute; orphans (a
            // flush between PUT and commit) wait longer.
            purge: PurgeConfig {
                grace: Duration::from_secs(600),
                replaced_grace: Some(Duration::from_secs(60)),
                dry_run: false,
            },
        }
    }
}

impl StandaloneConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StandaloneConfig {
            data_dir: data_dir.into(),
            grpc_addr: "127.0.0.1:50051".into(),
            http_addr: "127.0.0.1:9090".into(),
            batcher: BatcherConfig::default(),
            cache: CacheConfig::default(),
            index: IndexConfig::default(),
            limits: Limits::default(),
            maintenance: Some(Maintenance::default()),
            security: Default::default(),
        }
    }
}

/// The store's parts, wired together but not yet listening.
pub struct Parts {
    pub store: DynStore,
    pub meta: DynMeta,
    pub batcher: Batcher,
    /// The batcher's collector task: while it runs, writes can succeed.
    pub collector: tokio::task::JoinHandle<()>,
    pub index: Arc<Index>,
}

/// Opens (creating if needed) the store in `data_dir`.
pub async fn open(config: &StandaloneConfig, store: Option<DynStore>) -> anyhow::Result<Parts> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let store = match store {
        Some(store) => store,
        None => default_store(dir)?,
    };
    let meta_url = format!("sqlite://{}", dir.join("meta.db").display());
    let meta = crate::meta::open_url(&meta_url)
        .await
        .with_context(|| format!("opening metadata {meta_url}"))?;
    crate::store_identity::establish(&store, &meta)
        .await
        .context("checking the store identity")?;
    let cache = Arc::new(BlockCache::new(store.clone(), &config.cache));
    let (index, _follow) = Index::start(meta.clone(), cache, config.index.clone())
        .await
        .context("loading the manifest")?;
    let (batcher, collector) = Batcher::start(config.batcher.clone(), store.clone(), meta.clone());
    Ok(Parts {
        store,
        meta,
        batcher,
        collector,
        index,
    })
}

fn default_store(dir: &Path) -> anyhow::Result<DynStore> {
    let objects = dir.join("objects");
    let local = LocalStore::open(&objects)
        .with_context(|| format!("opening object directory {}", objects.display()))?;
    crate::objstore::layered(Arc::new(local), DEFAULT_MAX_REQUESTS)
}

/// A running standalone server; dropping it does not stop it, `shutdown` does.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    stop: StopSignal,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.stop();
        self.task.await.context("server task panicked")?
    }

    /// Waits until the server stops by itself (a listener failed).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task panicked")?
    }

    pub fn stopper(&self) -> StopSignal {
        self.stop.clone()
    }
}

pub async fn start(config: StandaloneConfig, store: Option<DynStore>) -> anyhow::Result<Running> {
    let parts = open(&config, store).await?;
    if let Some(maintenance) = config.maintenance.clone() {
        let purge_now = Arc::new(tokio::sync::Notify::new());
        for _ in 0..maintenance.compaction_workers.max(1) {
            tokio::spawn(compact_while_due(
                parts.store.clone(),
                parts.meta.clone(),
                parts.index.clone(),
                maintenance.compaction.clone(),
                purge_now.clone(),
            ));
        }
        tokio::spawn(purge_every(
            parts.store.clone(),
            parts.meta.clone(),
            maintenance,
            purge_now,
        ));
    }
    let security = config.security.listeners()?;
    let grpc = server::bind(&config.grpc_addr, "gRPC").await?;
    let http = server::bind(&config.http_addr, "HTTP").await?;
    let (grpc_addr, http_addr) = (server::local_addr(&grpc), server::local_addr(&http));
    let readiness = Readiness::default();
    let mut routes = RoutesBuilder::default();
    routes
        .add_service(
            BatcherServiceServer::new(BatcherApi::new(
                parts.batcher.clone(),
                config.limits.clone(),
            ))
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        )
        .add_service(
            IndexServiceServer::new(
                IndexApi::new(parts.index.clone(), config.limits.clone())
                    .read_after_write(parts.meta.subscribe()),
            )
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        );
    let stop = StopSignal::default();
    let until_stopped = || stop.stopped();
    let services = ["batcher.v1.BatcherService", "index.v1.IndexService"];
    let http_tls = security.http_tls();
    let grpc_task = {
        let shutdown = until_stopped();
        tokio::spawn(async move {
            server::serve_grpc(grpc, routes, &services, &security, shutdown).await
        })
    };
    let debt = {
        let index = parts.index.clone();
        Arc::new(move || Some(index.debt())) as server::DebtSource
    };
    let http_task = tokio::spawn(server::serve_http(
        http,
        http_tls,
        readiness.clone(),
        Some(debt),
        until_stopped(),
    ));
    let fresh = parts.index.clone();
    readiness.require(Arc::new(move || fresh.staleness()));
    readiness.require(crate::roles::space_condition(&parts.batcher));
    readiness.set(true);
    readiness.fail_when_done("batcher collector", parts.collector);
    tracing::info!(%grpc_addr, %http_addr, data_dir = %config.data_dir.display(), "skyvault standalone serving");
    let stop_on_failure = stop.clone();
    let task = tokio::spawn(async move {
        let (g, h) = tokio::join!(
            async {
                let r = grpc_task.await;
                stop_on_failure.stop();
                r
            },
            http_task
        );
        g.context("gRPC task panicked")??;
        h.context("HTTP task panicked")??;
        Ok(())
    });
    Ok(Running {
        grpc_addr,
        http_addr,
        stop,
        task,
    })
}

/// Retry delays after a failed compaction job: doubling, up to a minute.
const MIN_COMPACTION_BACKOFF: Duration = Duration::from_secs(1);
const MAX_COMPACTION_BACKOFF: Duration = Duration::from_secs(60);

/// One compaction worker: whenever the manifest the index serves has a level
/// due (checked on every manifest change and every second), runs one bounded
/// job, and again until nothing is due or other workers hold the work.
async fn compact_while_due(
    store: DynStore,
    meta: DynMeta,
    index: Arc<Index>,
    config: CompactionConfig,
    purge_now: Arc<tokio::sync::Notify>,
) {
    let mut changes = meta.subscribe();
    let mut backoff = MIN_COMPACTION_BACKOFF;
    loop {
        let debt = index.debt();
        if debt.needs_compaction && debt.dead_over_budget() {
            // Purge deletes replaced files only after their grace period:
            // compaction waits for it rather than fill the disk with them.
            tracing::debug!(dead_bytes = debt.dead_bytes, "compaction waits for purge");
            metrics().compaction_dead_waits.inc();
            purge_now.notify_one();
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if debt.needs_compaction {
            match compaction::compact(&store, &meta, &config).await {
                Ok(s) if s.outcome.exit_code() == 0 => {
                    backoff = MIN_COMPACTION_BACKOFF;
                    tracing::info!(
                        outcome = ?s.outcome,
                        level_in = ?s.level_in,
                        level_out = ?s.level_out,
                        inputs = s.inputs.len(),
                        outputs = s.outputs.len(),
                        bytes_in = s.bytes_in,
                        bytes_out = s.bytes_out,
                        "compacted"
                    );
                    continue;
                }
                // Another worker holds the work (or it is gone): retrying on
                // every commit would only re-read the manifest; wait a second.
                Ok(_) => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                // A full disk or a broken store fails every attempt alike:
                // back off instead of retrying every second.
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "compaction failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_COMPACTION_BACKOFF);
                    continue;
                }
            }
        }
        // Wait for the next manifest change (or a second).
        let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
    }
}

/// Least time between two purges that compaction asked for.
const MIN_PURGE_GAP: Duration = Duration::from_secs(5);

/// Purges every `interval`, and sooner when compaction waits on the dead
/// bytes (at most every [`MIN_PURGE_GAP`]). Errors are logged and retried.
async fn purge_every(
    store: DynStore,
    meta: DynMeta,
    config: Maintenance,
    purge_now: Arc<tokio::sync::Notify>,
) {
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut last: Option<LastPurge> = None;
    loop {
        let asked = tokio::select! {
            _ = ticks.tick() => false,
            _ = purge_now.notified() => true,
        };
        let version = meta.current_version().await.ok();
        if asked || purge_due(last.as_ref(), version) {
            let waiting = purge_once(&store, &meta, &config.purge).await;
            last = Some(LastPurge {
                at: std::time::Instant::now(),
                version,
                waiting,
            });
        }
        tokio::time::sleep(MIN_PURGE_GAP).await;
    }
}

/// What the previous background purge saw.
struct LastPurge {
    at: std::time::Instant,
    /// The manifest version before it ran (`None`: unknown).
    version: Option<u64>,
    /// Whether it kept objects that a later run will delete (young ones,
    /// outputs of running jobs) or failed.
    waiting: bool,
}

/// An idle store runs a full purge this often at most (each is a LIST per
/// prefix and an identity GET: billed requests; issue 25 item 1): objects a
/// crashed flush left behind change no manifest and wait for it.
const IDLE_PURGE_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Whether a background purge can find work: the manifest moved since the
/// last one (files replaced, flushes committed), the last one left objects
/// waiting, or an idle interval has passed.
fn purge_due(last: Option<&LastPurge>, version: Option<u64>) -> bool {
    let Some(last) = last else {
        return true;
    };
    last.waiting
        || version.is_none()
        || version != last.version
        || last.at.elapsed() >= IDLE_PURGE_INTERVAL
}

/// One purge; returns whether objects wait for a later one (or it failed).
async fn purge_once(store: &DynStore, meta: &DynMeta, config: &PurgeConfig) -> bool {
    match purge::purge(store, meta, config).await {
        Ok(s) => {
            if !s.replaced_deleted.is_empty() || !s.orphans_deleted.is_empty() {
                tracing::info!(
                    replaced = s.replaced_deleted.len(),
                    orphans = s.orphans_deleted.len(),
                    "purged"
                );
            }
            s.kept_young > 0 || s.kept_in_progress > 0
        }
        Err(e) => {
            tracing::warn!(error = %e, "purge failed; will retry");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle store purges every half hour (3 requests each), not every
    /// minute; any change, a kept object or a failure brings the next one on.
    #[test]
    fn an_idle_store_purges_rarely() {
        let idle = LastPurge {
            at: std::time::Instant::now(),
            version: Some(7),
            waiting: false,
        };
        assert!(purge_due(None, Some(7)), "the first run");
        assert!(!purge_due(Some(&idle), Some(7)), "nothing changed");
        assert!(purge_due(Some(&idle), Some(8)), "the manifest moved");
        assert!(purge_due(Some(&idle), None), "the version is unknown");
        let waiting = LastPurge {
            waiting: true,
            ..idle
        };
        assert!(purge_due(Some(&waiting), Some(7)), "objects were kept");
        let long_ago = LastPurge {
            at: std::time::Instant::now() - IDLE_PURGE_INTERVAL,
            waiting: false,
            ..waiting
        };
        assert!(purge_due(Some(&long_ago), Some(7)), "half an hour passed");
    }
}
