//! The journey's gRPC clients: a writer of fresh keys and a read-your-writes reader
//! running under load while pods come and go, tallying what was acked and how long
//! calls failed; and the final check that every acked write reads back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use skyvault::api::proto::batcher::v1::{
    BatchWriteRequest, WriteRequest, batcher_service_client::BatcherServiceClient,
    write_request::Operation,
};
use skyvault::api::proto::index::v1::{BatchGetRequest, index_service_client::IndexServiceClient};
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};

use super::RPC_TIMEOUT;
use crate::wait_for;

/// How the journey's clients reach a SkyVault with `spec.tls` and `spec.auth`:
/// the CA, the namespace (the certificate names `SV-ROLE.NAMESPACE.svc`, the
/// name checked whatever address the Service is reached on) and a write token.
pub struct JourneyTls {
    pub config: Arc<tokio_rustls::rustls::ClientConfig>,
    pub namespace: String,
    pub token: String,
}

static TLS: std::sync::OnceLock<JourneyTls> = std::sync::OnceLock::new();

/// From now on the clients below connect over TLS and send the token.
pub fn use_tls(tls: JourneyTls) {
    let _ = TLS.set(tls);
}

/// Adds the journey's token, when there is one, to every call.
#[derive(Clone)]
pub struct Token(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    }
}

type Intercepted = tonic::service::interceptor::InterceptedService<Channel, Token>;

/// A lazily connecting channel to `addr` (`HOST:PORT`) of the SkyVault's
/// `role` Service, with the token interceptor.
pub fn channel(addr: &str, role: &str) -> Result<(Channel, Token)> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(RPC_TIMEOUT);
    Ok(match TLS.get() {
        None => (endpoint.connect_lazy(), Token(None)),
        Some(tls) => {
            let name = format!("{}-{role}.{}.svc", super::SV_NAME, tls.namespace);
            let connector = skyvault::tls::connector(tls.config.clone(), Some(name));
            let token = format!("Bearer {}", tls.token).parse()?;
            (
                endpoint.connect_with_connector_lazy(connector),
                Token(Some(token)),
            )
        }
    })
}

fn batcher_client(addr: &str) -> Result<BatcherServiceClient<Intercepted>> {
    let (channel, token) = channel(addr, "batcher")?;
    Ok(BatcherServiceClient::with_interceptor(channel, token))
}

fn index_client(addr: &str) -> Result<IndexServiceClient<Intercepted>> {
    let (channel, token) = channel(addr, "index")?;
    Ok(IndexServiceClient::with_interceptor(channel, token))
}

/// What the clients saw.
#[derive(Default, Debug)]
pub struct Tally {
    /// key -> (value, sequence) of every acknowledged write.
    pub acked: BTreeMap<String, (String, u64)>,
    pub write_ok: u64,
    pub write_err: u64,
    pub read_ok: u64,
    pub read_err: u64,
    /// Longest time between the first failure of a run and the next success.
    pub worst_write_outage: Duration,
    pub worst_read_outage: Duration,
    pub last_errors: Vec<String>,
}

fn note_error(t: &mut Tally, e: String) {
    if t.last_errors.len() >= 20 {
        t.last_errors.remove(0);
    }
    t.last_errors.push(e);
}

/// Writes batches of 4 fresh keys until `stop`, recording what was acked.
pub async fn writer(batcher: String, tally: Arc<Mutex<Tally>>, stop: Arc<AtomicBool>) {
    let mut client = batcher_client(&batcher).expect("endpoint");
    let mut i = 0u64;
    let mut failing_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let writes: Vec<WriteRequest> = (0..4)
            .map(|j| WriteRequest {
                key: format!("w{i:07}-{j}"),
                operation: Some(Operation::Put(Bytes::from(format!("v{i}-{j}")))),
            })
            .collect();
        let keys: Vec<(String, String)> = (0..4)
            .map(|j| (format!("w{i:07}-{j}"), format!("v{i}-{j}")))
            .collect();
        let result = client.batch_write(BatchWriteRequest { writes }).await;
        let mut t = tally.lock().await;
        match result {
            Ok(r) => {
                let seq = r.into_inner().sequence;
                t.write_ok += 1;
                for (k, v) in keys {
                    t.acked.insert(k, (v, seq));
                }
                if let Some(since) = failing_since.take() {
                    t.worst_write_outage = t.worst_write_outage.max(since.elapsed());
                }
            }
            Err(status) => {
                t.write_err += 1;
                failing_since.get_or_insert_with(Instant::now);
                note_error(&mut t, format!("write: {status}"));
                drop(t);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        drop(t);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads back recently acked keys (read-your-writes through `min_sequence`)
/// until `stop`; a wrong value fails the test at once.
pub async fn reader(index: String, tally: Arc<Mutex<Tally>>, stop: Arc<AtomicBool>) {
    let mut client = index_client(&index).expect("endpoint");
    let mut failing_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let sample: Vec<(String, String, u64)> = {
            let t = tally.lock().await;
            t.acked
                .iter()
                .rev()
                .step_by(3)
                .take(16)
                .map(|(k, (v, s))| (k.clone(), v.clone(), *s))
                .collect()
        };
        if sample.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let min_sequence = sample.iter().map(|s| s.2).max();
        let result = client
            .batch_get(BatchGetRequest {
                keys: sample.iter().map(|s| s.0.clone()).collect(),
                min_sequence,
                consistency: 0,
            })
            .await;
        let mut t = tally.lock().await;
        match result {
            Ok(r) => {
                let got = r.into_inner().results;
                for (k, v, _) in &sample {
                    let have = got.get(k).map(|b| String::from_utf8_lossy(b).into_owned());
                    assert_eq!(
                        have.as_deref(),
                        Some(v.as_str()),
                        "read-your-writes broken for acked key {k}"
                    );
                }
                t.read_ok += 1;
                if let Some(since) = failing_since.take() {
                    t.worst_read_outage = t.worst_read_outage.max(since.elapsed());
                }
            }
            Err(status) => {
                t.read_err += 1;
                failing_since.get_or_insert_with(Instant::now);
                note_error(&mut t, format!("read: {status}"));
                drop(t);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        drop(t);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acked key reads back with its value.
pub async fn verify_all(index: &str, acked: &BTreeMap<String, (String, u64)>) -> Result<()> {
    let client = index_client(index)?;
    let max_seq = acked.values().map(|v| v.1).max().unwrap_or(0);
    let keys: Vec<&String> = acked.keys().collect();
    for chunk in keys.chunks(500) {
        let got = wait_for("a BatchGet of acked keys", Duration::from_secs(60), || {
            let mut client = client.clone();
            let keys: Vec<String> = chunk.iter().map(|k| (*k).clone()).collect();
            async move {
                Ok(client
                    .batch_get(BatchGetRequest {
                        keys,
                        min_sequence: Some(max_seq),
                        consistency: 0,
                    })
                    .await?
                    .into_inner()
                    .results)
            }
        })
        .await?;
        for k in chunk {
            let want = &acked[*k].0;
            let have = got.get(*k).map(|b| String::from_utf8_lossy(b).into_owned());
            if have.as_deref() != Some(want.as_str()) {
                bail!("acked key {k} lost: want {want}, read {have:?}");
            }
        }
    }
    Ok(())
}
