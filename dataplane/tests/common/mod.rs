//! Shared helpers for the data-plane integration tests: an in-process
//! standalone server on loopback with free ports, and typed clients.
#![allow(dead_code)]

use skyvault::api::proto::batcher::v1::{
    BatchWriteRequest, WriteRequest, batcher_service_client::BatcherServiceClient,
    write_request::Operation,
};
use skyvault::api::proto::index::v1::{
    BatchGetRequest, ScanRequest, ScanResponse, index_service_client::IndexServiceClient,
};
use skyvault::objstore::{DynStore, FaultyStore, LocalStore, MeteredStore};
use skyvault::standalone::{self, Running, StandaloneConfig};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tonic::transport::Channel;

pub struct Server {
    pub running: Running,
    pub channel: Channel,
}

pub fn config(dir: &Path) -> StandaloneConfig {
    let mut config = StandaloneConfig::new(dir);
    config.grpc_addr = "127.0.0.1:0".into();
    config.http_addr = "127.0.0.1:0".into();
    config
}

pub async fn start(config: StandaloneConfig, store: Option<DynStore>) -> Server {
    let running = standalone::start(config, store)
        .await
        .expect("server starts");
    let channel = skyvault::cli::connect(&running.grpc_addr.to_string())
        .await
        .expect("client connects");
    Server { running, channel }
}

/// A local store wrapped in a fault injector the test keeps a handle to.
pub fn faulty_store(dir: &Path) -> (Arc<FaultyStore<MeteredStore<LocalStore>>>, DynStore) {
    let local = LocalStore::open(dir.join("objects")).unwrap();
    let faulty = Arc::new(FaultyStore::new(MeteredStore::new(local)));
    let dyn_store: DynStore = faulty.clone();
    (faulty, dyn_store)
}

impl Server {
    pub fn batcher(&self) -> BatcherServiceClient<Channel> {
        BatcherServiceClient::new(self.channel.clone())
    }

    pub fn index(&self) -> IndexServiceClient<Channel> {
        IndexServiceClient::new(self.channel.clone())
    }

    pub async fn write(&self, writes: Vec<WriteRequest>) -> Result<u64, tonic::Status> {
        let resp = self
            .batcher()
            .batch_write(BatchWriteRequest { writes })
            .await?;
        Ok(resp.into_inner().sequence)
    }

    pub async fn get(&self, keys: &[&str]) -> HashMap<String, Vec<u8>> {
        self.try_get(keys, None).await.expect("BatchGet succeeds")
    }

    pub async fn try_get(
        &self,
        keys: &[&str],
        min_sequence: Option<u64>,
    ) -> Result<HashMap<String, Vec<u8>>, tonic::Status> {
        let req = BatchGetRequest {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            min_sequence,
            consistency: 0,
        };
        let results = self.index().batch_get(req).await?.into_inner().results;
        Ok(results.into_iter().map(|(k, v)| (k, v.to_vec())).collect())
    }

    pub async fn scan(&self, req: ScanRequest) -> Result<ScanResponse, tonic::Status> {
        Ok(self.index().scan(req).await?.into_inner())
    }

    /// Every live pair, following page tokens.
    pub async fn scan_all(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .scan(ScanRequest {
                    page_token,
                    limit: 100,
                    ..Default::default()
                })
                .await
                .expect("scan succeeds");
            out.extend(page.items.into_iter().map(|kv| (kv.key, kv.value.to_vec())));
            if page.next_page_token.is_empty() {
                return out;
            }
            page_token = page.next_page_token;
        }
    }

    pub async fn stop(self) {
        self.running.shutdown().await.expect("clean shutdown");
    }
}

pub fn put(key: &str, value: &str) -> WriteRequest {
    WriteRequest {
        key: key.into(),
        operation: Some(Operation::Put(value.as_bytes().to_vec().into())),
    }
}

pub fn del(key: &str) -> WriteRequest {
    WriteRequest {
        key: key.into(),
        operation: Some(Operation::Delete(true)),
    }
}

/// A standalone store with nothing in the background: no maintenance, no
/// WAL flush (tests flush themselves, so they decide which commits become
/// which L0 file) and no L0 stall (tests pile up L0 on purpose).
pub fn quiet_config(dir: &Path) -> StandaloneConfig {
    let mut c = StandaloneConfig::new(dir);
    c.maintenance = None;
    c.batcher.wal_flush = None;
    c.batcher.l0_stop_files = 0;
    c
}

/// Flushes the whole WAL tier into one L0 file (if it holds anything).
pub async fn flush_wal_tier(parts: &standalone::Parts) -> skyvault::compaction::CompactionSummary {
    let limits = skyvault::wal_flush::DEFAULT_LIMITS;
    let config = skyvault::compaction::CompactionConfig::default();
    skyvault::compaction::flush(&parts.store, &parts.meta, &config, &limits, true)
        .await
        .unwrap()
}

/// One HTTP/1.1 GET on the plain-text HTTP listener: the whole response
/// (status line and headers included), or only the body for `/metrics`.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    if path == "/metrics" {
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or(out)
    } else {
        out
    }
}
