//! Listeners: one gRPC server (the roles' services plus health and
//! reflection) and one HTTP server (`/healthz`, `/readyz`, `/metrics`).

use crate::api::proto::FILE_DESCRIPTOR_SET;
use crate::metrics::metrics;
use crate::security::ListenerSecurity;
use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tonic::service::RoutesBuilder;

/// One stop signal that every listener of a process waits on: fired by the
/// process's shutdown (SIGTERM), by a caller, or by a listener that failed.
#[derive(Clone)]
pub struct StopSignal(tokio::sync::watch::Sender<bool>);

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal(tokio::sync::watch::channel(false).0)
    }
}

impl StopSignal {
    /// A signal that also fires when `shutdown` resolves.
    pub fn on(shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        let signal = StopSignal::default();
        let fire = signal.clone();
        tokio::spawn(async move {
            shutdown.await;
            fire.stop();
        });
        signal
    }

    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once the signal has fired (at once if it already has).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// Readiness shared between the roles and `/readyz`.
#[derive(Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    /// Set once a part that cannot come back (the batcher's collector) is
    /// gone: not ready from then on, whatever `set` says.
    failed: Arc<AtomicBool>,
    /// Conditions checked on every query (the index's manifest age, the
    /// batcher's space).
    required: Arc<std::sync::Mutex<Vec<ReadyCondition>>>,
}

/// A condition readiness checks on every query: why the process is not
/// ready, or `None` while the condition holds.
pub type ReadyCondition = Arc<dyn Fn() -> Option<String> + Send + Sync>;

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.reason().is_none()
    }

    /// Why the process is not ready (the first reason found), if it is not.
    pub fn reason(&self) -> Option<String> {
        if self.failed.load(Ordering::SeqCst) {
            return Some("a part that cannot recover stopped (see the log)".into());
        }
        if !self.ready.load(Ordering::SeqCst) {
            return Some("its dependencies do not answer yet".into());
        }
        let required = self.required.lock().expect("readiness lock");
        required.iter().find_map(|condition| condition())
    }

    /// Not ready while `condition` gives a reason, whatever `set` says.
    pub fn require(&self, condition: ReadyCondition) {
        self.required
            .lock()
            .expect("readiness lock")
            .push(condition);
    }

    /// Not ready for good (until the process restarts).
    pub fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Fails readiness once `task` ends, however it ends: used for the
    /// batcher's collector, without which every write fails.
    pub fn fail_when_done(&self, what: &'static str, task: tokio::task::JoinHandle<()>) {
        let readiness = self.clone();
        tokio::spawn(async move {
            match task.await {
                Ok(()) => tracing::warn!("{what} stopped; not ready"),
                Err(e) => tracing::error!(error = %e, "{what} failed; not ready"),
            }
            readiness.fail();
        });
    }
}

/// Binds now (so callers learn the real port of `:0` before serving).
///
/// `[::]:PORT` (what the operator configures) is one dual-stack socket on Linux: IPv6 and
/// IPv4 clients alike, so IPv6-only, dual-stack and IPv4 clusters all work. Where the
/// kernel has IPv6 switched off, it falls back to `0.0.0.0:PORT`.
pub async fn bind(addr: &str, what: &str) -> anyhow::Result<TcpListener> {
    let result = TcpListener::bind(addr).await;
    let v6_any = addr
        .parse::<SocketAddr>()
        .ok()
        .filter(|a| a.is_ipv6() && a.ip().is_unspecified());
    match (result, v6_any) {
        (Ok(l), _) => Ok(l),
        (Err(e), Some(a)) => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], a.port()));
            tracing::warn!(error = %e, "cannot bind {what} on {addr} (no IPv6?); binding {v4}");
            TcpListener::bind(v4)
                .await
                .with_context(|| format!("binding the {what} listener on {addr} ({e}) or {v4}"))
        }
        (Err(e), None) => Err(e).with_context(|| format!("binding the {what} listener on {addr}")),
    }
}

/// Serves `routes` plus `grpc.health.v1` (every listed service reported
/// SERVING) and server reflection until `shutdown` resolves, over TLS and
/// checking credentials as `security` says.
pub async fn serve_grpc(
    listener: TcpListener,
    mut routes: RoutesBuilder,
    serving: &[&str],
    security: &ListenerSecurity,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for service in serving {
        reporter
            .set_service_status(*service, tonic_health::ServingStatus::Serving)
            .await;
    }
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    routes.add_service(health).add_service(reflection);
    let server = tonic::transport::Server::builder()
        .layer(crate::auth::AuthLayer(security.policy.clone()))
        .add_routes(routes.routes());
    let served = match &security.tls {
        Some(tls) => {
            let incoming = crate::tls::incoming(listener, tls.grpc.clone());
            server
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            // The builder's `tcp_nodelay` only reaches listeners tonic binds itself; ours is
            // bound by the caller, so Nagle is switched off here. With Nagle on, small
            // responses wait for the peer's delayed ACK: a 40 ms stall at p99.
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            server
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    };
    served.context("gRPC server failed")
}

/// Where `/lsm` gets the compaction debt from (roles that follow the
/// manifest); `None` until the manifest is loaded.
pub type DebtSource = std::sync::Arc<dyn Fn() -> Option<crate::lsm::Debt> + Send + Sync>;

/// Serves `/healthz`, `/readyz`, `/metrics` and (with `debt`) `/lsm` until
/// `shutdown` resolves, over TLS with `tls`. Nothing here asks for
/// credentials: probes and scrapers must reach it (see docs/security.md).
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    readiness: Readiness,
    debt: Option<DebtSource>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut app = Router::new();
    if let Some(debt) = debt {
        // The operator polls this to decide when to start compaction Jobs.
        app = app.route(
            "/lsm",
            get(move || {
                let answer = match debt() {
                    Some(debt) => (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        serde_json::to_string(&debt).unwrap_or_default(),
                    )
                        .into_response(),
                    None => (StatusCode::SERVICE_UNAVAILABLE, "manifest not loaded yet\n")
                        .into_response(),
                };
                std::future::ready(answer)
            }),
        );
    }
    let app = app
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let reason = readiness.reason();
                async move {
                    match reason {
                        None => (StatusCode::OK, "ready\n".to_string()),
                        Some(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        )
        .route("/metrics", get(|| async { metrics().render() }));
    let served = match tls {
        Some(tls) => {
            let listener = crate::tls::HttpsListener::new(listener, tls);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    served.context("HTTP server failed")
}

pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("bound listener has an address")
}

#[cfg(test)]
mod bind_tests {
    use super::bind;

    /// `[::]` serves IPv4 clients too (one dual-stack socket), so the operator can configure
    /// it for every cluster; IPv6 clients where the machine has IPv6.
    #[tokio::test]
    async fn unspecified_ipv6_serves_ipv4_and_ipv6_clients() {
        let listener = bind("[::]:0", "test").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            for _ in 0..2 {
                let _ = listener.accept().await;
            }
        });
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("IPv4 client of [::]");
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            tokio::net::TcpStream::connect(("::1", port))
                .await
                .expect("IPv6 client of [::]");
        }
        accept.abort();
    }
}
