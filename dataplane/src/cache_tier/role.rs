//! `skyvault cache`: one cache replica. It needs only the object store (no
//! metadata database): it is told which files to read, and files are
//! immutable, so it never has anything to invalidate.

use super::service::CacheApi;
use crate::api::proto::cache::v1::cache_service_server::CacheServiceServer;
use crate::cache::{BlockCache, CacheConfig};
use crate::config::MAX_GRPC_MESSAGE_BYTES;
use crate::server::{self, Readiness, StopSignal};
use anyhow::Context;
use clap::builder::TypedValueParser as _;
use std::future::Future;
use std::sync::Arc;
use tonic::service::RoutesBuilder;

/// Flags of `skyvault cache` (env fallbacks are the operator's contract).
#[derive(clap::Args, Clone, Debug)]
pub struct CacheArgs {
    /// gRPC listener (CacheService, health, reflection).
    #[arg(long, env = "SKYVAULT_GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: String,
    /// HTTP listener: /healthz, /readyz, /metrics.
    #[arg(long, env = "SKYVAULT_HTTP_ADDR", default_value = "0.0.0.0:9090")]
    pub http_addr: String,
    /// Object store, e.g. s3://BUCKET/PREFIX (see SKYVAULT_S3_*) or file:///DIR.
    #[arg(long, env = "SKYVAULT_OBJECT_STORE_URL")]
    pub object_store_url: String,
    /// Bytes of decoded file metadata and blocks kept in memory.
    #[arg(long, env = "SKYVAULT_CACHE_CAPACITY_BYTES", default_value_t = 256 << 20,
          value_parser = clap::value_parser!(u64).range(1 << 20..=1 << 40))]
    pub cache_capacity_bytes: u64,
    /// Object-store requests this process keeps in flight at most.
    #[arg(long, env = "SKYVAULT_OBJECT_STORE_MAX_REQUESTS", default_value_t = crate::objstore::DEFAULT_MAX_REQUESTS,
          value_parser = clap::value_parser!(u64).range(1..=4096).map(|n| n as usize))]
    pub object_store_max_requests: usize,
    #[command(flatten)]
    pub security: crate::security::SecurityArgs,
}

#[derive(Clone, Debug)]
pub struct CacheRoleConfig {
    pub grpc_addr: String,
    pub http_addr: String,
    pub object_store_url: String,
    pub object_store_max_requests: usize,
    pub cache: CacheConfig,
    pub security: crate::security::SecurityArgs,
}

impl CacheArgs {
    pub fn config(self) -> CacheRoleConfig {
        CacheRoleConfig {
            grpc_addr: self.grpc_addr,
            http_addr: self.http_addr,
            object_store_url: self.object_store_url,
            object_store_max_requests: self.object_store_max_requests,
            cache: CacheConfig {
                capacity_bytes: self.cache_capacity_bytes,
                ..CacheConfig::default()
            },
            security: self.security,
        }
    }
}

/// Runs a cache replica until `shutdown` resolves or a listener fails. The
/// HTTP listener comes up first and reports "not ready" until the store
/// answers, as the other roles do.
pub async fn run(
    config: CacheRoleConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let security = config.security.listeners()?;
    let stop = StopSignal::on(shutdown);
    let until_stopped = || stop.stopped();
    let readiness = Readiness::default();
    let http = server::bind(&config.http_addr, "HTTP").await?;
    let http_addr = server::local_addr(&http);
    let http_task = tokio::spawn(server::serve_http(
        http,
        security.http_tls(),
        readiness.clone(),
        None,
        until_stopped(),
    ));

    let store = tokio::select! {
        store = crate::roles::open_store(&config.object_store_url, config.object_store_max_requests) => store?,
        _ = until_stopped() => return Ok(()),
    };
    let grpc = server::bind(&config.grpc_addr, "gRPC").await?;
    let grpc_addr = server::local_addr(&grpc);
    let cache = Arc::new(BlockCache::new(store.clone(), &config.cache));
    let mut routes = RoutesBuilder::default();
    routes.add_service(
        CacheServiceServer::new(CacheApi::new(cache))
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
    );
    // Ready once the store answered; a later store outage shows up as
    // failed RPCs, which the indexes absorb by reading locally.
    readiness.set(true);
    tracing::info!(role = "cache", %grpc_addr, %http_addr, store = %store.describe(), capacity_bytes = config.cache.capacity_bytes, "serving");
    let grpc_result = server::serve_grpc(
        grpc,
        routes,
        &["cache.v1.CacheService"],
        &security,
        until_stopped(),
    )
    .await;
    stop.stop();
    http_task.await.context("HTTP task panicked")??;
    grpc_result
}
