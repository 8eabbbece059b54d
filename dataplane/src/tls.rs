//! TLS for the gRPC and HTTP listeners and for calls between roles (rustls with ring,
//! no OpenSSL). See docs/security.md for the threat model and the set-up.
//!
//! Certificates and keys come from PEM files and are *re-read when the files
//! change* (checked at most once a second, on a handshake): Kubernetes updates
//! a mounted Secret by swapping a symlink, so a renewed certificate (e.g. from
//! cert-manager) takes effect on new connections without a restart, and
//! connections already open keep going. A half-written pair (certificate and
//! key that do not match, or unparsable PEM) is refused with a warning and
//! the previous pair stays in use.

use crate::reload::{Build, Reloading};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore, ServerConfig, SignatureScheme,
    client::ResolvesClientCert,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};

/// `skyvault_tls_reloads_total`: certificate pairs taken from changed files.
static TLS_RELOADS: std::sync::LazyLock<prometheus::IntCounter> = std::sync::LazyLock::new(|| {
    crate::metrics::counter(
        &crate::metrics::metrics().registry,
        "tls_reloads_total",
        "TLS certificate pairs reloaded from changed files",
    )
});

/// TLS flags of every role (env fallbacks are the operator's contract).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// PEM certificate chain this process serves (and presents to other roles
    /// as its client certificate). With `--tls-key-file`: gRPC and HTTP are TLS only.
    #[arg(long, env = "SKYVAULT_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `--tls-cert-file`.
    #[arg(long, env = "SKYVAULT_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle: clients must present a certificate it signed (mTLS).
    #[arg(long, env = "SKYVAULT_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// PEM CA bundle that verifies the servers this process calls (the index's
    /// cache replicas). Default: the system's roots.
    #[arg(long, env = "SKYVAULT_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
}

impl TlsArgs {
    /// The listeners' TLS configurations, or `None` for plaintext.
    pub fn server_configs(&self) -> anyhow::Result<Option<ServerConfigs>> {
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) else {
            return Ok(None);
        };
        server_configs(cert, key, self.tls_client_ca_file.as_deref()).map(Some)
    }

    /// What a role uses to call other roles: verifies them with
    /// `--tls-ca-file` and presents its own certificate when it has one.
    pub fn client_config(&self) -> anyhow::Result<Arc<ClientConfig>> {
        let identity = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        };
        client_config(self.tls_ca_file.as_deref(), identity)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a role's two listeners serve: one certificate pair, reloaded once for both.
#[derive(Clone, Debug)]
pub struct ServerConfigs {
    /// gRPC (HTTP/2), requiring client certificates when a client CA is given.
    pub grpc: Arc<ServerConfig>,
    /// `/healthz`, `/readyz`, `/metrics`, `/lsm` (HTTP/1.1). Never asks for a
    /// client certificate: kubelet probes and most scrapers cannot present one,
    /// and nothing there changes or reveals data.
    pub http: Arc<ServerConfig>,
}

/// Server configurations that reload `cert`/`key` when they change; with
/// `client_ca`, gRPC requires client certificates chained to it.
pub fn server_configs(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<ServerConfigs> {
    let provider = provider();
    let pair = Arc::new(ReloadingPair::load(cert, key, provider.clone())?);
    let builder = || {
        ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")
    };
    let mut grpc = match client_ca {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .with_context(|| format!("client CA bundle {}", ca.display()))?;
            builder()?.with_client_cert_verifier(verifier)
        }
        None => builder()?.with_no_client_auth(),
    }
    .with_cert_resolver(pair.clone());
    grpc.alpn_protocols = vec![b"h2".to_vec()];
    let mut http = builder()?.with_no_client_auth().with_cert_resolver(pair);
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerConfigs {
        grpc: Arc::new(grpc),
        http: Arc::new(http),
    })
}

/// A client configuration verifying servers against `ca` (or the system's
/// roots) and presenting `identity` (reloaded like a server's) when given.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = provider();
    let roots = match ca {
        Some(ca) => load_roots(ca)?,
        None => system_roots(),
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            builder.with_client_cert_resolver(Arc::new(ReloadingPair::load(cert, key, provider)?))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A bad system certificate is skipped, like every TLS client does.
        let _ = roots.add(cert);
    }
    roots
}

/// Every certificate of a PEM bundle, as trust anchors.
pub fn load_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .with_context(|| format!("CA bundle {}: not a CA certificate", path.display()))?;
    }
    Ok(roots)
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    certs_from_pem(&pem).with_context(|| format!("certificates in {}", path.display()))
}

fn certs_from_pem(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("not PEM certificates")?;
    if certs.is_empty() {
        bail!("no PEM certificate found");
    }
    Ok(certs)
}

/// A certificate chain and key read from two files, rebuilt when either
/// changes (`crate::reload`). Serves as the server's certificate and as the
/// client's.
#[derive(Debug)]
struct ReloadingPair(Reloading<CertifiedKey>);

impl ReloadingPair {
    fn load(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> anyhow::Result<Self> {
        let build: Build<CertifiedKey> =
            Box::new(move |files: &[Vec<u8>]| certified_key(&files[0], &files[1], &provider));
        let on_reload = || TLS_RELOADS.inc();
        Reloading::load(vec![cert.into(), key.into()], build, on_reload).map(ReloadingPair)
    }

    /// The pair to use now: the files' current one if they changed into a
    /// valid pair (a rotation caught between writing the two files is not:
    /// the next look sees the finished pair), else the last good one.
    fn current(&self) -> Arc<CertifiedKey> {
        self.0.get()
    }
}

fn certified_key(
    cert: &[u8],
    key: &[u8],
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let chain = certs_from_pem(cert)?;
    let key = PrivateKeyDer::from_pem_slice(key).context("no PEM private key")?;
    CertifiedKey::from_der(chain, key, provider)
        .context("the key does not match the certificate (or is of an unsupported type)")
}

impl ResolvesServerCert for ReloadingPair {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for ReloadingPair {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let pair = self.current();
        pair.key.choose_scheme(sigschemes).is_some().then_some(pair)
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts TLS connections on `listener` (handshakes run concurrently, each
/// bounded, so one slow client cannot hold up the others); failed handshakes
/// are logged and dropped.
pub fn incoming(
    listener: tokio::net::TcpListener,
    config: Arc<ServerConfig>,
) -> impl futures::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>
{
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                return;
            }
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The HTTP listener over TLS, for `axum::serve`: handshakes as in [`incoming`].
pub struct HttpsListener {
    connections: futures::stream::BoxStream<'static, std::io::Result<TlsStream>>,
    local: std::net::SocketAddr,
}

type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

impl HttpsListener {
    pub fn new(listener: tokio::net::TcpListener, config: Arc<ServerConfig>) -> Self {
        let local = crate::server::local_addr(&listener);
        let connections = Box::pin(incoming(listener, config));
        HttpsListener { connections, local }
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (TlsStream, std::net::SocketAddr) {
        use futures::StreamExt;
        // `incoming` logs failed accepts and handshakes itself and ends only when
        // this listener is dropped; a connection already gone is skipped.
        loop {
            match self.connections.next().await {
                Some(Ok(tls)) => match tls.get_ref().0.peer_addr() {
                    Ok(peer) => return (tls, peer),
                    Err(_) => continue,
                },
                Some(Err(_)) => continue,
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        Ok(self.local)
    }
}

/// A channel connecting on first use (and reconnecting by itself) to
/// `endpoint`: over TLS with `tls` when given, checking the certificate
/// against `server_name` or the URI's host (see [`connector`]); else plaintext.
pub fn lazy_channel(
    endpoint: tonic::transport::Endpoint,
    tls: Option<&Arc<ClientConfig>>,
    server_name: Option<String>,
) -> tonic::transport::Channel {
    match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(connector(tls.clone(), server_name)),
        None => endpoint.connect_lazy(),
    }
}

/// Connects tonic channels over TLS with `config` (used instead of tonic's own
/// TLS so that client certificates reload like server ones). The server name
/// checked is `server_name`, or the URI's host: a client that resolved a
/// Service name to Pod addresses dials an address but checks the name.
pub fn connector(
    config: Arc<ClientConfig>,
    server_name: Option<String>,
) -> impl tower::Service<
    tonic::codegen::http::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    let connector = tokio_rustls::TlsConnector::from(config);
    tower::service_fn(move |uri: tonic::codegen::http::Uri| {
        let (connector, server_name) = (connector.clone(), server_name.clone());
        async move {
            let invalid = |what: &str| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{uri}: {what}"))
            };
            let host = uri.host().ok_or_else(|| invalid("no host"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let name = server_name.unwrap_or_else(|| host.clone());
            let name =
                ServerName::try_from(name).map_err(|_| invalid("not a valid TLS server name"))?;
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        }
    })
}
