//! Security, with real parts: PostgreSQL over TLS, `skyvault` role processes
//! serving TLS and checking tokens, and the store identity (docs/security.md).
//! One PostgreSQL server with `ssl=on` and one S3 server for the whole binary.

use skyvault_e2e::certs::TestCa;
use skyvault_e2e::process::http_get;
use skyvault_e2e::services::PostgresServer;
use skyvault_e2e::services::dataplane::Deps;
use std::sync::OnceLock;
use std::time::Duration;

struct Fixture {
    deps: Deps,
    ca: TestCa,
}

/// The PostgreSQL certificate names `localhost` only: a URL naming
/// 127.0.0.1 reaches the same server under a name the certificate lacks.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ca = TestCa::new("skyvault test CA").unwrap();
        let leaf = ca.issue(&["localhost"]).unwrap();
        let pg = PostgresServer::start_with_tls(Some(&leaf)).unwrap();
        let deps = Deps::start_with(pg);
        ca.write(deps.dir(), "ca.crt").unwrap();
        TestCa::new("some other CA")
            .unwrap()
            .write(deps.dir(), "other-ca.crt")
            .unwrap();
        Fixture { deps, ca }
    })
}

fn pg_url(host: &str, query: &str) -> String {
    let f = fixture();
    format!(
        "postgres://skyvault@{host}:{}/skyvault?{query}",
        f.deps.pg.port()
    )
}

fn ca_file(name: &str) -> String {
    fixture().deps.dir().join(name).display().to_string()
}

async fn open(url: &str) -> Result<(), String> {
    skyvault::meta::open_url(url)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn postgres_verify_full_connects_and_bad_tls_settings_fail_precisely() {
    let ca = ca_file("ca.crt");
    open(&pg_url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await
    .expect("verify-full with the right CA and host name");
    open(&pg_url(
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .await
    .expect("verify-ca with the right CA");
    open(&pg_url("127.0.0.1", "sslmode=require"))
        .await
        .expect("require encrypts without checking the certificate");

    let other = ca_file("other-ca.crt");
    let wrong_ca = pg_url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    );
    fails_tls(&wrong_ca, "invalid peer certificate").await;
    let wrong_host = pg_url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    fails_tls(&wrong_host, "not valid for name").await;
}

/// Opening `url` fails as a TLS failure whose reason contains `reason`.
async fn fails_tls(url: &str, reason: &str) {
    let err = open(url).await.unwrap_err();
    assert!(
        err.contains("TLS to the metadata database failed") && err.contains(reason),
        "{err}"
    );
}

#[tokio::test]
async fn postgres_without_tls_fails_sslmode_require_precisely() {
    let plain = PostgresServer::start().unwrap();
    let url = format!("{}?sslmode=require", plain.url());
    fails_tls(&url, "does not support TLS").await;
}

/// A role whose database TLS fails stays up, not ready, and says why; the
/// one-shot `migrate` exits non-zero with the same reason.
#[tokio::test]
async fn a_role_with_a_wrong_database_ca_is_not_ready_and_says_why() {
    let f = fixture();
    let url = pg_url(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            ca_file("other-ca.crt")
        ),
    );
    let out = f
        .deps
        .command(&["migrate"])
        .env("SKYVAULT_METADATA_URL", &url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("TLS to the metadata database failed"),
        "{stderr}"
    );

    let role = f.deps.spawn(
        "index",
        "index-wrong-ca",
        &[("SKYVAULT_METADATA_URL", &url)],
    );
    let port: u16 = role.http.rsplit_once(':').unwrap().1.parse().unwrap();
    skyvault_e2e::wait_for(
        "the TLS error in the index's log",
        Duration::from_secs(30),
        || async {
            role.process.ensure_running()?;
            anyhow::ensure!(
                role.process
                    .log_tail(50)
                    .contains("TLS to the metadata database failed")
            );
            Ok(())
        },
    )
    .await
    .unwrap();
    let (code, _) = http_get(port, "/readyz").await.unwrap();
    assert_eq!(code, 503, "an index without its database is not ready");
    let _ = &f.ca;
}

// ---------------------------------------------------------------------------
// TLS listeners and tokens on real role processes.

use skyvault::api::proto::batcher::v1::{
    BatchWriteRequest, WriteRequest, batcher_service_client::BatcherServiceClient,
    write_request::Operation,
};
use skyvault::api::proto::cache::v1::{GetRequest, cache_service_client::CacheServiceClient};
use skyvault::api::proto::index::v1::{BatchGetRequest, index_service_client::IndexServiceClient};
use skyvault::security::ClientSecurity;
use std::path::{Path, PathBuf};
use tonic::transport::{Channel, Endpoint};

const READ_TOKEN: &str = "reader-token-0123456789abcdef";
const WRITE_TOKEN: &str = "writer-token-0123456789abcdef";
const INTERNAL_TOKEN: &str = "internal-token-0123456789abcdef";

/// Credentials files of one test, as the operator mounts them.
struct Creds {
    dir: tempfile::TempDir,
}

impl Creds {
    fn new() -> Creds {
        let dir = tempfile::tempdir().unwrap();
        let ca = &fixture().ca;
        ca.write(dir.path(), "ca.crt").unwrap();
        ca.issue(&["localhost", "127.0.0.1"])
            .unwrap()
            .write(dir.path(), "tls")
            .unwrap();
        ca.issue(&["some-user"])
            .unwrap()
            .write(dir.path(), "user")
            .unwrap();
        std::fs::write(
            dir.path().join("tokens"),
            format!("read {READ_TOKEN}\nwrite {WRITE_TOKEN}\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("internal"), INTERNAL_TOKEN).unwrap();
        Creds { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The environment of a role serving TLS; `mtls` also requires client certificates.
    fn env(&self, mtls: bool) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("SKYVAULT_TLS_CERT_FILE", self.path("tls.crt")),
            ("SKYVAULT_TLS_KEY_FILE", self.path("tls.key")),
            ("SKYVAULT_TLS_CA_FILE", self.path("ca.crt")),
            ("SKYVAULT_AUTH_TOKENS_FILE", self.path("tokens")),
            ("SKYVAULT_INTERNAL_TOKEN_FILE", self.path("internal")),
        ];
        if mtls {
            env.push(("SKYVAULT_TLS_CLIENT_CA_FILE", self.path("ca.crt")));
        }
        env
    }

    /// A TLS channel to `addr` trusting the test CA, presenting `cert` (a
    /// `NAME` with NAME.crt/NAME.key here) when given, and `token`.
    fn channel(
        &self,
        addr: &str,
        cert: Option<&str>,
        token: Option<&str>,
    ) -> ClientSecurityChannel {
        let (crt, key): (Option<PathBuf>, Option<PathBuf>) = match cert {
            Some(n) => (
                Some(self.dir.path().join(format!("{n}.crt"))),
                Some(self.dir.path().join(format!("{n}.key"))),
            ),
            None => (None, None),
        };
        let identity = crt.as_deref().zip(key.as_deref());
        let tls =
            skyvault::tls::client_config(Some(&self.dir.path().join("ca.crt")), identity).unwrap();
        let token = token.map(|t| {
            let path = self.dir.path().join(format!("token-{}", &t[..6]));
            std::fs::write(&path, t).unwrap();
            skyvault::auth::BearerToken::from_file(&path).unwrap()
        });
        let security = ClientSecurity {
            tls: Some(tls),
            token,
        };
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .timeout(Duration::from_secs(10));
        (security.connect_lazy(endpoint), security.credentials())
    }
}

type ClientSecurityChannel = (Channel, skyvault::security::Credentials);

fn batcher(
    ch: ClientSecurityChannel,
) -> BatcherServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, skyvault::security::Credentials>,
> {
    BatcherServiceClient::with_interceptor(ch.0, ch.1)
}

fn index(
    ch: ClientSecurityChannel,
) -> IndexServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, skyvault::security::Credentials>,
> {
    IndexServiceClient::with_interceptor(ch.0, ch.1)
}

fn put(key: &str, value: &str) -> BatchWriteRequest {
    BatchWriteRequest {
        writes: vec![WriteRequest {
            key: key.into(),
            operation: Some(Operation::Put(value.as_bytes().to_vec().into())),
        }],
    }
}

fn get(keys: &[&str], min_sequence: u64) -> BatchGetRequest {
    BatchGetRequest {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        min_sequence: Some(min_sequence),
        ..Default::default()
    }
}

fn code<T>(r: Result<T, tonic::Status>) -> tonic::Code {
    match r {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

/// Batcher and index serve TLS and want tokens; the cache wants a client
/// certificate (mTLS) and the roles' internal token. The index reads through
/// the cache with both; nobody else gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_serves_tls_and_turns_away_callers_without_credentials() {
    let f = fixture();
    f.deps.migrate();
    let creds = Creds::new();
    let env_of = |mtls| creds.env(mtls);
    let as_refs = |env: &Vec<(&'static str, String)>| {
        env.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>()
    };
    let cache_env = as_refs(&env_of(true));
    let cache = spawn(&f.deps, "cache", "tls-cache", &cache_env);
    let mut index_env = as_refs(&env_of(false));
    index_env.push(("SKYVAULT_CACHE_PEERS", cache.grpc.clone()));
    let index_role = spawn(&f.deps, "index", "tls-index", &index_env);
    let batcher_role = spawn(&f.deps, "batcher", "tls-batcher", &as_refs(&env_of(false)));
    // Ready over HTTPS (`ready` checks the certificate), the cache too:
    // its HTTP listener asks for no client certificate, as probes have none.
    for role in [&cache, &index_role, &batcher_role] {
        role.ready().await;
    }
    // That listener speaks TLS only, /lsm and /metrics included.
    let http_port: u16 = index_role.http.rsplit_once(':').unwrap().1.parse().unwrap();
    let plain = http_get(http_port, "/readyz").await;
    assert!(plain.is_err(), "plaintext HTTP answered: {plain:?}");
    let (status, lsm) = index_role.get("/lsm").await.unwrap();
    assert!(
        status == 200 && lsm.contains("\"l0_files\""),
        "{status} {lsm}"
    );

    // Batcher: no token, a read token, then a write token.
    let c = |t| batcher(creds.channel(&batcher_role.grpc, None, t));
    assert_eq!(
        code(c(None).batch_write(put("k", "v")).await),
        tonic::Code::Unauthenticated
    );
    let denied = c(Some(READ_TOKEN))
        .batch_write(put("k", "v"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let seq = c(Some(WRITE_TOKEN))
        .batch_write(put("k", "v"))
        .await
        .unwrap()
        .into_inner()
        .sequence;
    // Into an L0 file, so the read goes to a file and so through the cache
    // (the WAL tier is read from the index's memory).
    let flushed = f.deps.command(&["flush"]).output().unwrap();
    assert!(
        flushed.status.success(),
        "skyvault flush: {}",
        String::from_utf8_lossy(&flushed.stderr)
    );
    index_role.wait_wal_tier_drained().await;

    // Index: a read token reads what the write token wrote, through the cache.
    let i = |t| index(creds.channel(&index_role.grpc, None, t));
    assert_eq!(
        code(i(None).batch_get(get(&["k"], seq)).await),
        tonic::Code::Unauthenticated
    );
    let got = i(Some(READ_TOKEN))
        .batch_get(get(&["k"], seq))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.results.get("k").map(|v| v.as_ref()), Some(&b"v"[..]));
    assert!(
        cache
            .metric("skyvault_cache_service_lookups_total", "")
            .await
            > 0,
        "the index read through the cache over mTLS"
    );

    // The client library: TLS checked against the name it was given
    // (`localhost`, which it resolves to addresses), a write token, session reads.
    let port = |addr: &str| addr.rsplit_once(':').unwrap().1.to_string();
    let tls = skyvault::tls::client_config(Some(&creds.dir.path().join("ca.crt")), None).unwrap();
    let client =
        skyvault::client::ClientOptions::new(format!("localhost:{}", port(&batcher_role.grpc)))
            .with_index_endpoints([format!("localhost:{}", port(&index_role.grpc))])
            .with_tls(tls)
            .with_bearer_token(WRITE_TOKEN)
            .unwrap()
            .connect()
            .await
            .unwrap();
    client.put("library", "over-tls").await.unwrap();
    assert_eq!(
        client.get("library").await.unwrap().as_deref(),
        Some(&b"over-tls"[..])
    );

    // The CLI: --server-ca-file and --token-file; without the token it is refused.
    std::fs::write(creds.dir.path().join("write-token"), WRITE_TOKEN).unwrap();
    let cli = |token: bool| {
        let mut cmd =
            f.deps
                .command(&["put", "cli-key", "cli-value", "--addr", &batcher_role.grpc]);
        cmd.args(["--server-ca-file", &creds.path("ca.crt")]);
        if token {
            cmd.args(["--token-file", &creds.path("write-token")]);
        }
        cmd.output().unwrap()
    };
    let ok = cli(true);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = cli(false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("authorization"),
        "{stderr}"
    );

    // A plaintext client cannot talk to a TLS listener.
    let plain = Endpoint::from_shared(format!("http://{}", index_role.grpc))
        .unwrap()
        .connect_lazy();
    assert_ne!(
        code(
            IndexServiceClient::new(plain)
                .batch_get(get(&["k"], 0))
                .await
        ),
        tonic::Code::Ok
    );

    // Cache: no client certificate fails the handshake; a user's certificate
    // with a user token, or without a token, is refused.
    let lookup = || GetRequest {
        keys: vec![b"k".to_vec().into()],
        objects: vec![],
    };
    let cc = |cert, t| {
        let (ch, cr) = creds.channel(&cache.grpc, cert, t);
        CacheServiceClient::with_interceptor(ch, cr)
    };
    // Refused in the handshake: no gRPC status from the server at all.
    let no_cert = cc(None, Some(INTERNAL_TOKEN))
        .get(lookup())
        .await
        .unwrap_err();
    assert!(
        std::error::Error::source(&no_cert).is_some()
            && !matches!(
                no_cert.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ),
        "{no_cert:?}"
    );
    assert_eq!(
        code(cc(Some("user"), None).get(lookup()).await),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        code(cc(Some("user"), Some(WRITE_TOKEN)).get(lookup()).await),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(cc(Some("user"), Some(INTERNAL_TOKEN)).get(lookup()).await),
        tonic::Code::Ok
    );
}

fn spawn(
    deps: &Deps,
    role: &str,
    name: &str,
    env: &[(&str, String)],
) -> skyvault_e2e::services::dataplane::RoleProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    deps.spawn(role, name, &env)
}

/// The certificate a fresh handshake with `addr` presents (offering `alpn`).
async fn served_certificate(addr: &str, ca: &Path, alpn: &[u8]) -> Vec<u8> {
    let mut config = (*skyvault::tls::client_config(Some(ca), None).unwrap()).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let config = std::sync::Arc::new(config);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Renewing the certificate files (as cert-manager and a Secret volume do)
/// changes what new connections see, while requests keep flowing: none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_dropping_requests() {
    let f = fixture();
    f.deps.migrate();
    let creds = Creds::new();
    let env: Vec<(&str, String)> = creds.env(false);
    let role = spawn(&f.deps, "index", "rotating-index", &env);
    role.ready().await;
    let ca = creds.dir.path().join("ca.crt");
    let before = served_certificate(&role.grpc, &ca, b"h2").await;
    assert_eq!(
        served_certificate(&role.http, &ca, b"http/1.1").await,
        before
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, mut client) = (
            stop.clone(),
            index(creds.channel(&role.grpc, None, Some(READ_TOKEN))),
        );
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match client.batch_get(get(&["k"], 0)).await {
                    Ok(_) => ok += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };
    // Renew: a new key and certificate, written as a Secret volume swaps them.
    let renewed = f.ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    let staging = tempfile::tempdir_in(creds.dir.path()).unwrap();
    let (crt, key) = renewed.write(staging.path(), "tls").unwrap();
    std::fs::rename(key, creds.dir.path().join("tls.key")).unwrap();
    std::fs::rename(crt, creds.dir.path().join("tls.crt")).unwrap();
    skyvault_e2e::wait_for(
        "the renewed certificate on new connections",
        Duration::from_secs(20),
        || async {
            anyhow::ensure!(served_certificate(&role.grpc, &ca, b"h2").await != before);
            Ok(())
        },
    )
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} requests failed during the rotation: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 0);
    // The HTTP listener serves the same, renewed pair (one reload for both).
    assert_ne!(
        served_certificate(&role.http, &ca, b"http/1.1").await,
        before
    );
    assert!(role.metric("skyvault_tls_reloads_total", "").await >= 1);
}

// ---------------------------------------------------------------------------
// Store identity with real processes: PostgreSQL + S3 store, then another
// (SQLite) database pointed at the same bucket.

/// A batcher and a purge Job given another store's database over this
/// store's bucket refuse, naming the problem, and the bucket keeps every object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_database_over_the_bucket_is_refused_by_roles_and_purge() {
    let f = fixture();
    f.deps.migrate();
    // The real store: an index records (or checks) its identity, a batcher writes.
    let index = f.deps.spawn("index", "identity-index", &[]);
    index.ready().await;
    let batcher = f.deps.spawn("batcher", "identity-batcher", &[]);
    batcher.ready().await;
    let mut b = BatcherServiceClient::new(batcher.channel().await);
    b.batch_write(put("identity-key", "v")).await.unwrap();
    let objects_before = data_objects(&f.deps).await;
    assert!(objects_before > 0);

    let other = tempfile::tempdir().unwrap();
    let other_db = format!("sqlite://{}/meta.db", other.path().display());
    let out = f
        .deps
        .command(&["batcher"])
        .env("SKYVAULT_METADATA_URL", &other_db)
        .env("SKYVAULT_GRPC_ADDR", "127.0.0.1:0")
        .env("SKYVAULT_HTTP_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the batcher ran on another database");
    assert!(
        stderr.contains("has no store identity") && stderr.contains("refusing to run"),
        "{stderr}"
    );

    let out = f
        .deps
        .command(&["purge", "--grace-secs", "60"])
        .env("SKYVAULT_METADATA_URL", &other_db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "purge ran on another database: {stderr}"
    );
    assert!(stderr.contains("refusing to run"), "{stderr}");
    assert_eq!(
        data_objects(&f.deps).await,
        objects_before,
        "nothing deleted"
    );
}

/// Objects under the prefixes purge manages, in the fixture's bucket.
async fn data_objects(deps: &Deps) -> usize {
    deps.s3.export_env();
    let store = skyvault::objstore::open_url(&deps.s3.url("data"), 8)
        .await
        .unwrap();
    let mut n = 0;
    for prefix in skyvault::purge::OBJECT_PREFIXES {
        n += store.list(prefix).await.unwrap().len();
    }
    n
}
