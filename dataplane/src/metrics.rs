//! Prometheus metrics for every role, in one process-wide registry.
//!
//! One registry per process is what `/metrics` exposes; roles running in the
//! same process (standalone) share it, which is exactly what an operator wants
//! to scrape.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::LazyLock;

pub struct Metrics {
    pub registry: Registry,
    pub rpc_requests: IntCounterVec,
    pub rpc_latency: HistogramVec,
    pub batch_writes: Histogram,
    pub batch_bytes: Histogram,
    pub batch_age: Histogram,
    pub flush_duration: Histogram,
    pub commit_group: Histogram,
    pub commit_duration: Histogram,
    pub flushes: IntCounterVec,
    pub batcher_queue: IntGauge,
    pub batcher_queued_bytes: IntGauge,
    pub storage_full: IntGauge,
    pub dead_bytes: IntGauge,
    pub objstore_requests: IntCounterVec,
    pub objstore_bytes: IntCounterVec,
    pub objstore_latency: HistogramVec,
    pub objstore_waiting: IntGauge,
    pub cache_requests: IntCounterVec,
    pub cache_bytes: IntGaugeVec,
    pub cache_service_lookups: IntCounterVec,
    pub cache_fallbacks: IntCounterVec,
    pub index_applied_seq: IntGauge,
    pub index_read_index_rounds: prometheus::IntCounter,
    pub index_files: IntGauge,
    pub lsm_files: IntGaugeVec,
    pub batch_stalled: prometheus::IntCounter,
    pub compaction_dead_waits: prometheus::IntCounter,
    pub objstore_slowdowns: prometheus::IntCounter,
    pub lsm_bytes: IntGaugeVec,
    pub index_files_probed: Histogram,
    pub index_tables_consulted: Histogram,
    pub index_memtable_bytes: IntGauge,
    pub index_memtable_keys: IntGauge,
    pub index_catch_up_apply: Histogram,
    pub jobs: IntCounterVec,
    pub job_bytes: IntCounterVec,
    pub job_objects_deleted: IntCounterVec,
    pub job_duration: HistogramVec,
}

/// A counter vector registered in `registry` (modules that own their metrics
/// pass `&metrics().registry`).
pub(crate) fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

pub(crate) fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::IntCounter {
    let c = prometheus::IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid");
    registry
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(latency_buckets());
    let h = HistogramVec::new(opts, labels).expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

/// 50 µs .. ~13 s, doubling: covers in-memory hits up to slow object-store calls.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.000_05, 2.0, 19).expect("valid buckets")
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new_custom(Some("skyvault".into()), None).expect("valid registry");
        let count_buckets = prometheus::exponential_buckets(1.0, 2.0, 17).expect("valid");
        let byte_buckets = prometheus::exponential_buckets(256.0, 4.0, 10).expect("valid");
        let cache_bytes = IntGaugeVec::new(
            Opts::new("cache_bytes", "Bytes held by the in-memory cache, by kind"),
            &["kind"],
        )
        .expect("valid metric");
        r.register(Box::new(cache_bytes.clone())).expect("unique");
        Metrics {
            rpc_requests: counter_vec(
                &r,
                "rpc_requests_total",
                "gRPC requests by RPC and status code",
                &["rpc", "code"],
            ),
            rpc_latency: histogram_vec(
                &r,
                "rpc_duration_seconds",
                "gRPC request latency by RPC",
                &["rpc"],
            ),
            batch_writes: histogram(
                &r,
                "batch_writes",
                "Writes per flushed batch (after de-duplication)",
                count_buckets,
            ),
            batch_bytes: histogram(&r, "batch_bytes", "Bytes per flushed file", byte_buckets),
            batch_age: histogram(
                &r,
                "batch_age_seconds",
                "Time from the first queued write of a batch to its flush start",
                latency_buckets(),
            ),
            flush_duration: histogram(
                &r,
                "flush_duration_seconds",
                "Time to build, upload and commit one batch",
                latency_buckets(),
            ),
            commit_group: histogram(
                &r,
                "commit_group_flushes",
                "Flushed files committed together in one metadata transaction",
                prometheus::exponential_buckets(1.0, 2.0, 8).expect("valid"),
            ),
            commit_duration: histogram(
                &r,
                "commit_duration_seconds",
                "Time to commit one group of flushed files to the metadata database",
                latency_buckets(),
            ),
            flushes: counter_vec(&r, "flushes_total", "Batch flushes by result", &["result"]),
            batcher_queue: gauge(
                &r,
                "batcher_queued_requests",
                "BatchWrite requests waiting to be flushed",
            ),
            batcher_queued_bytes: gauge(
                &r,
                "batcher_queued_bytes",
                "Memory of the BatchWrite requests waiting to be flushed, as the queue's \
                 byte budget counts it (key + value bytes plus a fixed cost per entry)",
            ),
            dead_bytes: gauge(
                &r,
                "dead_bytes",
                "Bytes of files replaced by compaction that purge has not deleted yet \
                 (polled by the index every 5 s)",
            ),
            storage_full: gauge(
                &r,
                "storage_full",
                "1 while writes fail for want of space in the object store or the \
                 metadata database (a full disk or quota); 0 once a write succeeds",
            ),
            objstore_requests: counter_vec(
                &r,
                "objstore_requests_total",
                "Object store requests by operation and result",
                &["op", "result"],
            ),
            objstore_bytes: counter_vec(
                &r,
                "objstore_bytes_total",
                "Object store payload bytes by direction",
                &["direction"],
            ),
            objstore_waiting: gauge(
                &r,
                "objstore_waiting_requests",
                "Object store requests queued behind the in-flight limit",
            ),
            objstore_latency: histogram_vec(
                &r,
                "objstore_duration_seconds",
                "Object store request latency by operation",
                &["op"],
            ),
            cache_requests: counter_vec(
                &r,
                "cache_requests_total",
                "Cache lookups by kind (meta, block) and result (hit, miss)",
                &["kind", "result"],
            ),
            cache_bytes,
            cache_service_lookups: counter_vec(
                &r,
                "cache_service_lookups_total",
                "(object, key) lookups answered by this cache replica, by result",
                &["result"],
            ),
            cache_fallbacks: counter_vec(
                &r,
                "cache_fallbacks_total",
                "Index reads of a cache replica's files done locally because the replica failed or was bypassed",
                &["peer"],
            ),
            index_applied_seq: gauge(
                &r,
                "index_applied_sequence",
                "Highest commit sequence applied to the index's manifest",
            ),
            index_read_index_rounds: counter(
                &r,
                "index_read_index_rounds_total",
                "Latest-committed-sequence queries made for strong reads (one per round of coalesced reads)",
            ),
            index_files: gauge(&r, "index_live_files", "Files in the index's manifest"),
            lsm_files: gauge_vec(&r, "lsm_files", "Live files per LSM level", &["level"]),
            objstore_slowdowns: counter(
                &r,
                "objstore_slowdowns_total",
                "Requests the object-store latency model held back for its per-prefix \
                 request rate, as S3's 503 SlowDown and the SDK's retry would (benchmarks only)",
            ),
            compaction_dead_waits: counter(
                &r,
                "compaction_dead_waits_total",
                "Seconds standalone's compaction waited for purge because replaced \
                 files not yet deleted outgrew the live data",
            ),
            batch_stalled: counter(
                &r,
                "batch_stalled_writes_total",
                "Writes that waited because L0 or the WAL tier was at its bound (--l0-stop-files, --wal-stop-bytes)",
            ),
            lsm_bytes: gauge_vec(&r, "lsm_bytes", "Live bytes per LSM level", &["level"]),
            index_files_probed: histogram(
                &r,
                "index_files_probed",
                "Files whose blocks were read per point lookup",
                prometheus::exponential_buckets(1.0, 2.0, 10).expect("valid"),
            ),
            index_tables_consulted: histogram(
                &r,
                "index_tables_consulted",
                "Tables a point lookup consulted: the WAL tier in memory (1) plus every file \
                 whose key range held the key, whatever the commit rate",
                prometheus::linear_buckets(1.0, 1.0, 16).expect("valid"),
            ),
            index_memtable_bytes: gauge(
                &r,
                "index_memtable_bytes",
                "Estimated memory of the WAL tier's decoded entries in this index",
            ),
            index_memtable_keys: gauge(
                &r,
                "index_memtable_keys",
                "Distinct keys in the WAL tier held in memory by this index",
            ),
            index_catch_up_apply: histogram(
                &r,
                "index_catch_up_apply_seconds",
                "Time to apply one manifest change to the index's manifest and WAL tier \
                 (reads that wait for a sequence wait for it)",
                latency_buckets(),
            ),
            jobs: counter_vec(
                &r,
                "jobs_total",
                "Compaction, WAL flush and purge runs by job and result",
                &["job", "result"],
            ),
            job_bytes: counter_vec(
                &r,
                "job_bytes_total",
                "Bytes read and written by jobs",
                &["job", "direction"],
            ),
            job_objects_deleted: counter_vec(
                &r,
                "job_objects_deleted_total",
                "Objects deleted by purge, by reason",
                &["job", "reason"],
            ),
            job_duration: histogram_vec(
                &r,
                "job_duration_seconds",
                "Duration of job runs",
                &["job"],
            ),
            registry: r,
        }
    }

    /// The text exposition format served on `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Convenience for counters that tests read back.
pub fn counter_value(c: &IntCounterVec, labels: &[&str]) -> u64 {
    c.with_label_values(labels).get()
}
