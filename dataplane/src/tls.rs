//! TLS for the gRPC listeners and for calls between roles (rustls with ring,
//! no OpenSSL). See docs/security.md for the threat model and the set-up.
//!
//! Certificates and keys come from PEM files and are *re-read when the files
//! change* (checked at most once a second, on a handshake): Kubernetes updates
//! a mounted Secret by swapping a symlink, so a renewed certificate (e.g. from
//! cert-manager) takes effect on new connections without a restart, and
//! connections already open keep going. A half-written pair (certificate and
//! key that do not match, or unparsable PEM) is refused with a warning and
//! the previous pair stays in use.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore, ServerConfig, SignatureScheme,
    client::ResolvesClientCert,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};

/// How often a handshake may look at the files again.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// `skyvault_tls_reloads_total`: certificate pairs taken from changed files.
static TLS_RELOADS: std::sync::LazyLock<prometheus::IntCounter> = std::sync::LazyLock::new(|| {
    crate::security::counter(
        "tls_reloads_total",
        "TLS certificate pairs reloaded from changed files",
    )
});

/// TLS flags of every role (env fallbacks are the operator's contract).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// PEM certificate chain this process serves (and presents to other roles
    /// as its client certificate). With `--tls-key-file`: gRPC is TLS only.
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
    /// The listener's TLS configuration, or `None` for plaintext.
    pub fn server_config(&self) -> anyhow::Result<Option<Arc<ServerConfig>>> {
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) else {
            return Ok(None);
        };
        server_config(cert, key, self.tls_client_ca_file.as_deref()).map(Some)
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

/// A server configuration that reloads `cert`/`key` when they change and,
/// with `client_ca`, requires client certificates chained to it.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        Some(ca) => {
            let roots = Arc::new(load_roots(ca)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .with_context(|| format!("client CA bundle {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let pair = Arc::new(ReloadingPair::load(cert, key, provider)?);
    let mut config = builder.with_cert_resolver(pair);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
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

/// A certificate chain and key read from two files, re-read when either
/// changes. Serves as the server's certificate and as the client's.
#[derive(Debug)]
struct ReloadingPair {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    pair: Arc<CertifiedKey>,
    /// The file contents `pair` was built from.
    source: (Vec<u8>, Vec<u8>),
    checked: Instant,
}

impl ReloadingPair {
    fn load(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> anyhow::Result<Self> {
        let source = read_pair(cert, key)?;
        let pair = certified_key(&source, &provider)
            .with_context(|| format!("TLS pair {} / {}", cert.display(), key.display()))?;
        Ok(ReloadingPair {
            cert: cert.into(),
            key: key.into(),
            provider,
            state: Mutex::new(Loaded {
                pair,
                source,
                checked: Instant::now(),
            }),
        })
    }

    /// The pair to use now: the files' current one if they changed into a
    /// valid pair, else the last good one.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().expect("TLS pair lock");
        if state.checked.elapsed() >= RELOAD_CHECK {
            state.checked = Instant::now();
            self.reload(&mut state);
        }
        state.pair.clone()
    }

    fn reload(&self, state: &mut Loaded) {
        let source = match read_pair(&self.cert, &self.key) {
            Ok(source) if source != state.source => source,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot re-read the TLS pair; keeping the loaded one");
                return;
            }
        };
        match certified_key(&source, &self.provider) {
            Ok(pair) => {
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                TLS_RELOADS.inc();
                state.pair = pair;
                state.source = source;
            }
            // Typically a rotation caught between writing the two files:
            // the next check sees the finished pair.
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "new TLS pair refused; keeping the loaded one")
            }
        }
    }
}

fn read_pair(cert: &Path, key: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let c = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let k = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    Ok((c, k))
}

fn certified_key(
    (cert, key): &(Vec<u8>, Vec<u8>),
    provider: &CryptoProvider,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = certs_from_pem(cert)?;
    let key = PrivateKeyDer::from_pem_slice(key).context("no PEM private key")?;
    let pair = CertifiedKey::from_der(chain, key, provider)
        .context("the key does not match the certificate (or is of an unsupported type)")?;
    Ok(Arc::new(pair))
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
