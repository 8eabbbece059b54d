//! The client commands of the `skyvault` binary: put, get, delete, scan.

use crate::api::proto::batcher::v1::{
    BatchWriteRequest, WriteRequest, batcher_service_client::BatcherServiceClient,
    write_request::Operation,
};
use crate::api::proto::index::v1::{
    BatchGetRequest, ScanRequest, index_service_client::IndexServiceClient,
};
use crate::config::MAX_GRPC_MESSAGE_BYTES;
use anyhow::{Context, bail};
use std::io::Write;
use tonic::transport::{Channel, Endpoint};

/// Connects to a SkyVault gRPC endpoint (standalone, a batcher or an index).
pub async fn connect(addr: &str) -> anyhow::Result<Channel> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| {
            format!("invalid --addr {addr:?}: expected HOST:PORT or http://HOST:PORT")
        })?
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true);
    // A name with several addresses (a Kubernetes headless Service: one per ready Pod)
    // gets one channel over all of them, so calls spread over the Pods instead of riding
    // one connection to one Pod. Resolved once: long-lived clients should re-resolve.
    let addrs = resolve_all(endpoint.uri()).await;
    if addrs.len() > 1 {
        return balanced(&addrs);
    }
    endpoint.connect().await.with_context(|| {
        format!(
            "cannot connect to SkyVault at {url}: is `skyvault standalone` (or the service) running? \
             Pass --addr HOST:PORT or set SKYVAULT_ADDR"
        )
    })
}

/// One channel spreading calls over every address (each connected lazily).
fn balanced(addrs: &[std::net::SocketAddr]) -> anyhow::Result<Channel> {
    let endpoints = addrs
        .iter()
        .map(|a| {
            Endpoint::from_shared(format!("http://{a}")).map(|e| {
                e.connect_timeout(std::time::Duration::from_secs(5))
                    .tcp_nodelay(true)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Channel::balance_list(endpoints.into_iter()))
}

/// Every address an `http://NAME:PORT` URI's name resolves to (none for `https`, for a
/// literal IP, or when it does not resolve: the caller then connects as usual).
async fn resolve_all(uri: &tonic::codegen::http::Uri) -> Vec<std::net::SocketAddr> {
    let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
        return vec![];
    };
    if uri.scheme_str() != Some("http")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok()
    {
        return vec![];
    }
    let mut addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(found) => found.collect(),
        Err(_) => return vec![],
    };
    addrs.sort();
    addrs.dedup();
    addrs
}

fn describe(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

pub async fn write(addr: &str, writes: Vec<WriteRequest>) -> anyhow::Result<u64> {
    let mut client = BatcherServiceClient::new(connect(addr).await?)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let response = client
        .batch_write(BatchWriteRequest { writes })
        .await
        .map_err(describe)?;
    Ok(response.into_inner().sequence)
}

pub async fn put(addr: &str, key: String, value: String) -> anyhow::Result<()> {
    let request = WriteRequest {
        key,
        operation: Some(Operation::Put(value.into_bytes().into())),
    };
    let sequence = write(addr, vec![request]).await?;
    println!("OK sequence={sequence}");
    Ok(())
}

pub async fn delete(addr: &str, keys: Vec<String>) -> anyhow::Result<()> {
    let writes = keys
        .into_iter()
        .map(|key| WriteRequest {
            key,
            operation: Some(Operation::Delete(true)),
        })
        .collect();
    let sequence = write(addr, writes).await?;
    println!("OK sequence={sequence}");
    Ok(())
}

/// Prints the value of one key, or `KEY<TAB>VALUE` lines for several;
/// fails (exit status 1) if any key is absent.
pub async fn get(addr: &str, keys: Vec<String>, min_sequence: Option<u64>) -> anyhow::Result<()> {
    let mut client = IndexServiceClient::new(connect(addr).await?)
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let results = client
        .batch_get(BatchGetRequest {
            keys: keys.clone(),
            min_sequence,
            consistency: 0,
        })
        .await
        .map_err(describe)?
        .into_inner()
        .results;
    let mut out = std::io::stdout().lock();
    let mut missing = Vec::new();
    for key in &keys {
        match results.get(key) {
            Some(value) if keys.len() == 1 => out.write_all(value)?,
            Some(value) => {
                out.write_all(key.as_bytes())?;
                out.write_all(b"\t")?;
                out.write_all(value)?;
            }
            None => {
                missing.push(key.as_str());
                continue;
            }
        }
        out.write_all(b"\n")?;
    }
    if !missing.is_empty() {
        bail!("not found: {}", missing.join(", "));
    }
    Ok(())
}

pub struct ScanArgs {
    pub prefix: String,
    pub start: String,
    pub end: String,
    /// Total pairs to print (across pages); 0 prints everything.
    pub limit: u64,
}

/// Prints `KEY<TAB>VALUE` lines in key order, following page tokens.
pub async fn scan(addr: &str, args: ScanArgs) -> anyhow::Result<()> {
    let mut client = IndexServiceClient::new(connect(addr).await?)
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES);
    let mut out = std::io::stdout().lock();
    let (mut printed, mut page_token) = (0u64, String::new());
    loop {
        let remaining = if args.limit == 0 {
            1000
        } else {
            (args.limit - printed).min(1000)
        };
        let page = client
            .scan(ScanRequest {
                start_key: args.start.clone(),
                end_key: args.end.clone(),
                prefix: args.prefix.clone(),
                limit: remaining as u32,
                page_token,
                min_sequence: None,
                consistency: 0,
            })
            .await
            .map_err(describe)?
            .into_inner();
        for item in page.items {
            out.write_all(item.key.as_bytes())?;
            out.write_all(b"\t")?;
            out.write_all(&item.value)?;
            out.write_all(b"\n")?;
            printed += 1;
        }
        if page.next_page_token.is_empty() || (args.limit != 0 && printed >= args.limit) {
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}

#[cfg(test)]
mod balance_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio_stream::StreamExt;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    /// A gRPC server (health) on 127.0.0.1 counting the connections it accepts.
    async fn server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let incoming = TcpListenerStream::new(listener).map(move |conn| {
            counter.fetch_add(1, Ordering::Relaxed);
            conn
        });
        let (_reporter, health) = tonic_health::server::health_reporter();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(incoming),
        );
        (addr, accepted)
    }

    /// Several addresses (a headless Service's ready Pods) share the calls of one channel.
    #[tokio::test]
    async fn calls_spread_over_every_address() {
        let (a, a_conns) = server().await;
        let (b, b_conns) = server().await;
        let mut client = HealthClient::new(super::balanced(&[a, b]).unwrap());
        for _ in 0..20 {
            client
                .check(HealthCheckRequest::default())
                .await
                .expect("health check");
        }
        assert!(a_conns.load(Ordering::Relaxed) >= 1, "no call reached {a}");
        assert!(b_conns.load(Ordering::Relaxed) >= 1, "no call reached {b}");
    }

    #[tokio::test]
    async fn literal_addresses_and_https_are_not_resolved() {
        let uri = |s: &str| s.parse().unwrap();
        assert!(
            super::resolve_all(&uri("http://127.0.0.1:50051"))
                .await
                .is_empty()
        );
        assert!(
            super::resolve_all(&uri("http://[::1]:50051"))
                .await
                .is_empty()
        );
        assert!(
            super::resolve_all(&uri("https://localhost:50051"))
                .await
                .is_empty()
        );
        assert!(
            !super::resolve_all(&uri("http://localhost:50051"))
                .await
                .is_empty()
        );
    }
}
