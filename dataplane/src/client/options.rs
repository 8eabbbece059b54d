//! How a [`Client`](super::Client) connects: endpoints, deadlines, retries,
//! re-resolution, request headers. Every connection is built by
//! [`ClientOptions::endpoint`], the one place where transport settings (and
//! later TLS) are applied; every call passes through [`Headers`], the one
//! place where per-request metadata (such as an auth token) is added.

use super::ClientError;
use super::pool::{DnsResolver, Resolve};
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::service::Interceptor;
use tonic::transport::Endpoint;

/// Retries of calls that failed without effect: exponential backoff with
/// full jitter (each wait is uniform in `[0, min(max, initial × 2ⁿ)]`), so
/// that clients which failed together do not retry together.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        cap.mul_f64(rand::random::<f64>())
    }
}

/// Settings of a [`Client`](super::Client); build one with
/// [`ClientOptions::new`] and the `with_*` methods, then
/// [`ClientOptions::connect`].
///
/// ```no_run
/// # async fn demo() -> Result<(), skyvault::client::ClientError> {
/// use skyvault::client::ClientOptions;
/// use std::time::Duration;
///
/// // A distributed deployment: writes to the batchers, reads spread over
/// // every index Pod behind the headless Service, re-resolved every 10 s.
/// let client = ClientOptions::new("skyvault-batcher:50051")
///     .with_index_endpoints(["skyvault-index-headless:50051"])
///     .with_timeout(Duration::from_secs(5))
///     .with_resolve_interval(Duration::from_secs(10))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientOptions {
    pub(super) batcher: Vec<String>,
    pub(super) index: Vec<String>,
    pub(super) timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) retry: RetryPolicy,
    pub(super) resolve_interval: Duration,
    pub(super) eject_for: Duration,
    pub(super) max_keys_per_get: usize,
    pub(super) get_parallelism: usize,
    pub(super) scan_page: u32,
    pub(super) headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    pub(super) resolver: Arc<dyn Resolve>,
    pub(super) tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("batcher", &self.batcher)
            .field("index", &self.index)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ClientOptions {
    /// One endpoint for writes and reads (`skyvault standalone`, or a
    /// Service in front of both roles): `HOST:PORT` or `http://HOST:PORT`.
    /// A name resolving to several addresses (a Kubernetes headless
    /// Service) spreads calls over all of them.
    pub fn new(addr: impl Into<String>) -> Self {
        let addr = addr.into();
        ClientOptions {
            batcher: vec![addr.clone()],
            index: vec![addr],
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            resolve_interval: Duration::from_secs(30),
            eject_for: Duration::from_secs(5),
            max_keys_per_get: 1_000,
            get_parallelism: 4,
            scan_page: 1_000,
            headers: Vec::new(),
            resolver: Arc::new(DnsResolver),
            tls: None,
        }
    }

    /// Where writes go (`batcher.v1.BatcherService`), replacing the default.
    pub fn with_batcher_endpoints<S: Into<String>>(
        mut self,
        addrs: impl IntoIterator<Item = S>,
    ) -> Self {
        self.batcher = addrs.into_iter().map(Into::into).collect();
        self
    }

    /// Where reads go (`index.v1.IndexService`), replacing the default.
    pub fn with_index_endpoints<S: Into<String>>(
        mut self,
        addrs: impl IntoIterator<Item = S>,
    ) -> Self {
        self.index = addrs.into_iter().map(Into::into).collect();
        self
    }

    /// Deadline of one operation, every retry included (default 10 s). The
    /// server sees what is left of it as the call's `grpc-timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How often endpoint names are resolved again (default 30 s), so Pods
    /// that joined a headless Service get traffic and departed ones stop.
    pub fn with_resolve_interval(mut self, every: Duration) -> Self {
        self.resolve_interval = every;
        self
    }

    /// How long an endpoint whose connection failed is skipped (default 5 s).
    pub fn with_ejection(mut self, skip_for: Duration) -> Self {
        self.eject_for = skip_for;
        self
    }

    /// Keys per `BatchGet` RPC (default 1,000, the server's limit); larger
    /// reads are split into several RPCs.
    pub fn with_max_keys_per_get(mut self, keys: usize) -> Self {
        self.max_keys_per_get = keys.max(1);
        self
    }

    /// Items asked for per `Scan` page (default 1,000; the server may stop
    /// a page earlier at its byte limit).
    pub fn with_scan_page(mut self, items: u32) -> Self {
        self.scan_page = items.max(1);
        self
    }

    /// Metadata sent with every call (for example a proxy's routing header,
    /// or `authorization`). Fails on a name or value gRPC cannot carry.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, ClientError> {
        let bad = |what: &str| ClientError::InvalidOption(format!("header {name:?}: bad {what}"));
        let key = name.parse::<AsciiMetadataKey>().map_err(|_| bad("name"))?;
        let value = value
            .parse::<AsciiMetadataValue>()
            .map_err(|_| bad("value"))?;
        self.headers.push((key, value));
        Ok(self)
    }

    /// Connects over TLS (see [`crate::tls::client_config`]: the servers' CA,
    /// and a client certificate where they require one). The certificate is
    /// checked against the endpoint's name even when the name was resolved to
    /// several Pod addresses.
    ///
    /// ```no_run
    /// # async fn demo() -> anyhow::Result<()> {
    /// use skyvault::client::ClientOptions;
    /// let tls = skyvault::tls::client_config(Some("ca.crt".as_ref()), None)?;
    /// let client = ClientOptions::new("vault-index.prod.svc:50051")
    ///     .with_tls(tls)
    ///     .with_bearer_token("reader-token-0123456789")?
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn with_tls(mut self, config: Arc<tokio_rustls::rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Sends `authorization: Bearer TOKEN` with every call (docs/security.md).
    pub fn with_bearer_token(self, token: &str) -> Result<Self, ClientError> {
        self.with_header("authorization", &format!("Bearer {}", token.trim()))
    }

    /// Resolves endpoint names with `resolver` instead of the system's DNS
    /// (service discovery of your own).
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Connects (lazily: the first call opens the connections).
    pub async fn connect(self) -> Result<super::Client, ClientError> {
        super::Client::from_options(self).await
    }

    /// The transport settings for one address (`http://…` or `https://…`).
    /// TLS settings belong here, so that every connection gets them.
    pub fn endpoint(&self, uri: &str) -> Result<Endpoint, ClientError> {
        let endpoint = Endpoint::from_shared(uri.to_string()).map_err(|e| {
            ClientError::InvalidOption(format!(
                "endpoint {uri:?}: {e}; expected HOST:PORT or http://HOST:PORT"
            ))
        })?;
        Ok(endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10)))
    }

    /// A lazily connecting channel to `uri` (an address of `name`'s URI),
    /// over TLS when configured, checking the certificate against `name`'s host.
    pub fn channel(&self, uri: &str, name: &str) -> Result<tonic::transport::Channel, ClientError> {
        let host = name
            .parse::<tonic::codegen::http::Uri>()
            .ok()
            .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_string()));
        let endpoint = self.endpoint(uri)?;
        Ok(crate::tls::lazy_channel(endpoint, self.tls.as_ref(), host))
    }

    /// One channel to `addr` (`HOST:PORT` or a URI), connected now (TLS as
    /// configured): fails at once when nothing listens there (or the TLS
    /// handshake fails).
    pub async fn connect_now(
        &self,
        addr: &str,
    ) -> Result<tonic::transport::Channel, Box<dyn std::error::Error + Send + Sync>> {
        let endpoint = self.endpoint(&as_uri(addr))?;
        Ok(match &self.tls {
            None => endpoint.connect().await?,
            Some(tls) => {
                let connector = crate::tls::connector(tls.clone(), None);
                endpoint.connect_with_connector(connector).await?
            }
        })
    }

    pub(super) fn interceptor(&self) -> Headers {
        Headers(Arc::new(self.headers.clone()))
    }
}

/// `HOST:PORT` as a URI (`http://HOST:PORT`); URIs pass unchanged.
pub(super) fn as_uri(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// Adds the configured metadata to every request.
#[derive(Clone)]
pub struct Headers(Arc<Vec<(AsciiMetadataKey, AsciiMetadataValue)>>);

impl Interceptor for Headers {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        for (key, value) in self.0.iter() {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_is_jittered_below_it() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
        };
        for retry in 0..40 {
            let cap = Duration::from_millis((10u64 << retry.min(10)).min(100));
            assert!(policy.backoff(retry) <= cap, "retry {retry}");
        }
        let waits: std::collections::HashSet<_> = (0..20).map(|_| policy.backoff(5)).collect();
        assert!(waits.len() > 1, "no jitter: {waits:?}");
    }

    #[test]
    fn bad_headers_and_endpoints_are_refused_by_name() {
        let err = ClientOptions::new("x:1")
            .with_header("bad header", "v")
            .unwrap_err();
        assert!(err.to_string().contains("bad header"), "{err}");
        let err = ClientOptions::new("x:1").endpoint("http://[").unwrap_err();
        assert!(err.to_string().contains("http://["), "{err}");
    }
}
