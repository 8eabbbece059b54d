//! Prometheus metrics and the HTTP endpoint serving them with /healthz and /readyz.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The operator's metrics, registered in their own registry.
pub struct Metrics {
    registry: Registry,
    pub reconciliations: IntCounterVec,
    pub failures: IntCounterVec,
    pub duration: Histogram,
    pub jobs_created: IntCounterVec,
    pub debt_readings: IntCounterVec,
    pub leader: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "skyvault_operator_reconciliations_total",
                "Reconciliations run, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "skyvault_operator_reconcile_errors_total",
                "Reconciliations that failed, by error kind",
            ),
            &["error"],
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "skyvault_operator_reconcile_duration_seconds",
                "Time spent in one reconciliation",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");
        let jobs_created = IntCounterVec::new(
            Opts::new(
                "skyvault_operator_jobs_created_total",
                "Compaction/purge Jobs created, by kind and trigger",
            ),
            &["kind", "trigger"],
        )
        .expect("valid metric");
        let debt_readings = IntCounterVec::new(
            Opts::new(
                "skyvault_operator_debt_readings_total",
                "Compaction debt readings from the index (GET /lsm), by result",
            ),
            &["result"],
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "skyvault_operator_leader",
            "1 while this replica holds the leader Lease",
        )
        .expect("valid metric");
        for c in [
            Box::new(reconciliations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(jobs_created.clone()),
            Box::new(debt_readings.clone()),
            Box::new(leader.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            reconciliations,
            failures,
            duration,
            jobs_created,
            debt_readings,
            leader,
        }
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("exposition format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

async fn metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
}

async fn ok() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// Routes: /metrics, /healthz (process alive), /readyz (serving; a standby replica is ready
/// too, so a Deployment rollout does not wait for leadership).
pub fn router(m: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(ok))
        .route("/readyz", get(ok))
        .with_state(m)
}

/// Serve until the process exits.
/// Default of `--metrics-addr`: every address of the Pod, IPv4 and IPv6.
pub const DEFAULT_ADDR: &str = "[::]:8080";

pub async fn serve(addr: SocketAddr, m: Arc<Metrics>) -> std::io::Result<()> {
    let listener = bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics and health endpoint listening");
    axum::serve(listener, router(m)).await
}

/// Binds `addr`; `[::]` (the default: one dual-stack socket, IPv4 and IPv6 clusters alike)
/// falls back to `0.0.0.0` on a kernel with IPv6 off.
async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Err(e) if addr.is_ipv6() && addr.ip().is_unspecified() => {
            tracing::warn!(error = %e, %addr, "no IPv6; listening on 0.0.0.0");
            tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], addr.port()))).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default address serves IPv4 clients (kubelet probes, Prometheus) too.
    #[tokio::test]
    async fn the_default_dual_stack_address_serves_ipv4() {
        let default: SocketAddr = DEFAULT_ADDR.parse().unwrap();
        assert!(default.ip().is_unspecified() && default.is_ipv6());
        let listener = bind(SocketAddr::new(default.ip(), 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("an IPv4 client");
    }

    #[test]
    fn renders_every_metric_family() {
        let m = Metrics::new();
        m.reconciliations.with_label_values(&["success"]).inc();
        m.failures.with_label_values(&["apply"]).inc();
        m.duration.observe(0.02);
        m.jobs_created
            .with_label_values(&["compact", "schedule"])
            .inc();
        m.debt_readings.with_label_values(&["error"]).inc();
        m.leader.set(1);
        let text = m.render();
        for name in [
            "skyvault_operator_reconciliations_total{outcome=\"success\"} 1",
            "skyvault_operator_reconcile_errors_total{error=\"apply\"} 1",
            "skyvault_operator_reconcile_duration_seconds_count 1",
            "skyvault_operator_jobs_created_total{kind=\"compact\",trigger=\"schedule\"} 1",
            "skyvault_operator_debt_readings_total{result=\"error\"} 1",
            "skyvault_operator_leader 1",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }

    #[tokio::test]
    async fn http_endpoint_serves_health_and_metrics() {
        let m = Arc::new(Metrics::new());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(axum::serve(listener, router(m)).into_future());
        for (path, needle) in [
            ("/healthz", "ok"),
            ("/readyz", "ok"),
            ("/metrics", "skyvault_operator_leader"),
        ] {
            let body = http_get(addr, path).await;
            assert!(body.starts_with("HTTP/1.1 200"), "{path}: {body}");
            assert!(body.contains(needle), "{path}: {body}");
        }
        server.abort();
    }

    /// Minimal HTTP/1.1 GET over a raw socket (no client dependency for one test).
    async fn http_get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }
}
