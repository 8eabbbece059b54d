//! The `skyvault` binary: every data-plane role, the jobs and the client CLI.

use anyhow::Context;
use clap::builder::TypedValueParser as _;
use clap::{Parser, Subcommand};
use skyvault::batcher::BatcherConfig;
use skyvault::cache::CacheConfig;
use skyvault::cli;
use skyvault::standalone::{self, StandaloneConfig};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "skyvault",
    version,
    about = "SkyVault: a key-value store on object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ClientArgs {
    /// The SkyVault gRPC endpoint (standalone server, batcher or index).
    #[arg(
        long,
        env = "SKYVAULT_ADDR",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    addr: String,
    /// Reads (get, scan): `session` (default: at least what this command
    /// wrote or was given by --min-sequence), `strong` (linearizable: every
    /// write acknowledged before the read) or `eventual`.
    #[arg(long, global = true, default_value = "session", value_parser = cli::parse_consistency)]
    consistency: skyvault::client::ReadConsistency,
    #[command(flatten)]
    security: cli::ClientSecurityArgs,
}

impl Command {
    /// The TLS and token flags of a client command or `bench`.
    fn client_security(&self) -> Option<&cli::ClientSecurityArgs> {
        match self {
            Command::Put { client, .. }
            | Command::Get { client, .. }
            | Command::Delete { client, .. }
            | Command::Scan { client, .. } => Some(&client.security),
            Command::Bench(args) => Some(&args.security),
            _ => None,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole store in one process on a local directory + SQLite.
    Standalone(StandaloneArgs),
    /// Run the write path (BatcherService) against shared metadata + object store.
    Batcher {
        #[command(flatten)]
        role: skyvault::roles::RoleArgs,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Run the read path (IndexService) against shared metadata + object store.
    Index {
        #[command(flatten)]
        role: skyvault::roles::RoleArgs,
        #[command(flatten)]
        tuning: Tuning,
        /// Level targets the compaction debt at /lsm is measured against.
        #[command(flatten)]
        lsm: skyvault::compaction::LsmArgs,
        /// Refuse reads (UNAVAILABLE) and report not ready once the last
        /// successful catch-up with the database is older than this (seconds);
        /// keep it well below purge's grace period (60 s at the least).
        #[arg(long, env = "SKYVAULT_MAX_MANIFEST_AGE_SECS", default_value_t = 30,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        max_manifest_age_secs: u64,
    },
    /// Run a cache replica (CacheService): point lookups in the files it owns, for the indexes.
    Cache(skyvault::cache_tier::CacheArgs),
    /// Apply the embedded metadata migrations and exit (roles also do it on start).
    Migrate {
        #[arg(long, env = "SKYVAULT_METADATA_URL")]
        metadata_url: String,
    },
    /// Write one key.
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read keys: prints the value (one key) or KEY<TAB>VALUE lines; exit 1 if any is missing.
    Get {
        #[arg(required = true)]
        keys: Vec<String>,
        /// Wait until the index has applied this commit sequence (read your writes).
        #[arg(long)]
        min_sequence: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete keys (in one atomic batch).
    Delete {
        #[arg(required = true)]
        keys: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run one bounded compaction job (what the Kubernetes Job runs); when no
    /// level is due, flush the WAL tier into L0 instead. Prints a JSON summary.
    Compact {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        compaction: skyvault::compaction::CompactionArgs,
        /// Only report what would be compacted.
        #[arg(long)]
        dry_run: bool,
        /// Also write the JSON summary here (e.g. /dev/termination-log in a Kubernetes Job).
        #[arg(long, env = "SKYVAULT_COMPACT_SUMMARY_FILE")]
        summary_file: Option<PathBuf>,
    },
    /// Flush the WAL tier (group commits held in the indexes' memory) into
    /// one L0 file now, whether or not it is due; batchers do it by themselves
    /// at --wal-flush-bytes. Prints a JSON summary; exit 3 when the tier is empty.
    Flush {
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Delete unreferenced objects older than the grace period once; prints a JSON summary.
    Purge {
        #[command(flatten)]
        storage: StorageArgs,
        /// Only objects unreferenced for longer than this are deleted (seconds).
        #[arg(long, env = "SKYVAULT_PURGE_GRACE_SECS", default_value_t = 3600,
              value_parser = clap::value_parser!(u64).range(GRACE_SECS))]
        grace_secs: u64,
        /// Only report what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Load generator: closed-loop gRPC clients; prints throughput and latency percentiles.
    Bench(BenchArgs),
    /// Simulate the leveled LSM at any size from file metadata alone: the
    /// real picker, level targets and claims, a write model and N job slots
    /// (docs/operations.md, "Sizing with lsm-sim").
    LsmSim(Box<skyvault::lsm_sim::SimArgs>),
    /// Print KEY<TAB>VALUE lines in key order.
    Scan {
        /// Only keys starting with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// First key (inclusive).
        #[arg(long, default_value = "")]
        start: String,
        /// Last key (exclusive).
        #[arg(long, default_value = "")]
        end: String,
        /// Print at most this many pairs (0: all).
        #[arg(long, default_value_t = 0)]
        limit: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Endpoint for both writes and reads (standalone); see the two below.
    #[arg(long, env = "SKYVAULT_ADDR", default_value = "127.0.0.1:50051")]
    addr: String,
    /// Batcher endpoint (defaults to --addr).
    #[arg(long)]
    batcher_addr: Option<String>,
    /// Index endpoint (defaults to --addr).
    #[arg(long)]
    index_addr: Option<String>,
    /// Requests in flight (one per worker).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000).map(|n| n as usize))]
    concurrency: usize,
    /// Measured time, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time before it.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Bytes per key (the server's limit is 1024).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024).map(|n| n as usize))]
    key_size: usize,
    /// Bytes per value (the server's limit is 1 MiB).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=1 << 20).map(|n| n as usize))]
    value_size: usize,
    /// Keys per BatchWrite/BatchGet (pairs per Scan page).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000).map(|n| n as usize))]
    batch_size: usize,
    /// Size of the key space.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// write | read | mixed:READ_FRACTION | scan | health (the gRPC floor).
    #[arg(long, default_value = "write", value_parser = skyvault::bench::parse_workload)]
    workload: skyvault::bench::Workload,
    /// What reads look for: written | notwritten | deleted | mixed.
    #[arg(long, default_value = "written", value_parser = skyvault::bench::parse_read_mode)]
    read_mode: skyvault::bench::ReadMode,
    /// uniform | zipf:S
    #[arg(long, default_value = "uniform", value_parser = skyvault::bench::parse_distribution)]
    distribution: skyvault::bench::DistributionSpec,
    /// Skip writing the key space before a read/scan/mixed run.
    #[arg(long)]
    no_preload: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Reads: eventual (default: what a client without extensions gets),
    /// session or strong.
    #[arg(long, default_value = "eventual", value_parser = cli::parse_consistency)]
    consistency: skyvault::client::ReadConsistency,
    #[command(flatten)]
    security: cli::ClientSecurityArgs,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: use e.g. 500ms, 10s or 2m");
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .ok_or_else(bad)?;
    let n: u64 = n.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

async fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    use skyvault::bench::{self, BenchConfig, Workload};
    let config = BenchConfig {
        batcher_addr: args.batcher_addr.unwrap_or_else(|| args.addr.clone()),
        index_addr: args.index_addr.unwrap_or_else(|| args.addr.clone()),
        concurrency: args.concurrency,
        duration: args.duration,
        warmup: args.warmup,
        key_size: args.key_size,
        value_size: args.value_size,
        batch_size: args.batch_size,
        keys: args.keys,
        workload: args.workload,
        read_mode: args.read_mode,
        distribution: args.distribution,
        preload: !args.no_preload
            && !matches!(
                args.workload,
                Workload::Write | Workload::Health | Workload::ReadAfterWrite
            ),
        consistency: args.consistency,
    };
    let report = bench::run(config, args.json).await?;
    let mut out = std::io::stdout().lock();
    let printed = if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)
    } else {
        bench::print(&mut out, &report)
    };
    match printed {
        // `skyvault bench | head -2`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Where the data lives: a standalone data directory, or explicit URLs.
#[derive(clap::Args)]
struct StorageArgs {
    /// A standalone data directory (implies both URLs below).
    #[arg(long, env = "SKYVAULT_DATA_DIR", conflicts_with_all = ["metadata_url", "object_store_url"])]
    data_dir: Option<PathBuf>,
    /// Metadata database, e.g. sqlite:///var/lib/skyvault/meta.db.
    #[arg(long, env = "SKYVAULT_METADATA_URL", requires = "object_store_url")]
    metadata_url: Option<String>,
    /// Object store, e.g. file:///var/lib/skyvault/objects.
    #[arg(long, env = "SKYVAULT_OBJECT_STORE_URL", requires = "metadata_url")]
    object_store_url: Option<String>,
}

impl StorageArgs {
    async fn open(
        &self,
    ) -> anyhow::Result<(skyvault::objstore::DynStore, skyvault::meta::DynMeta)> {
        let (meta_url, store_url) = match (
            &self.data_dir,
            &self.metadata_url,
            &self.object_store_url,
        ) {
            (Some(dir), _, _) => {
                let dir = std::path::absolute(dir).context("resolving --data-dir")?;
                (
                    format!("sqlite://{}", dir.join("meta.db").display()),
                    format!("file://{}", dir.join("objects").display()),
                )
            }
            (None, Some(m), Some(o)) => (m.clone(), o.clone()),
            _ => anyhow::bail!(
                "say where the data is: --data-dir DIR, or --metadata-url and --object-store-url \
                 (or SKYVAULT_METADATA_URL and SKYVAULT_OBJECT_STORE_URL)"
            ),
        };
        let store =
            skyvault::objstore::open_url(&store_url, skyvault::objstore::DEFAULT_MAX_REQUESTS)
                .await?;
        // Chaos runs only (e2e/src/chaos): faults for the compaction and purge jobs.
        let store = skyvault::objstore::inject_faults_from_env(store)?;
        let meta = skyvault::meta::open_url(&meta_url)
            .await
            .with_context(|| format!("opening metadata {meta_url}"))?;
        // Jobs never create an identity: a store's roles record it first.
        skyvault::store_identity::verify(&store, &meta).await?;
        Ok((store, meta))
    }
}

#[derive(clap::Args)]
struct StandaloneArgs {
    /// Directory holding the objects and the SQLite metadata (created if missing).
    #[arg(long, env = "SKYVAULT_DATA_DIR")]
    data_dir: PathBuf,
    /// gRPC listener (BatcherService, IndexService, health, reflection).
    #[arg(long, env = "SKYVAULT_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    grpc_addr: String,
    /// HTTP listener: /healthz, /readyz, /metrics.
    #[arg(long, env = "SKYVAULT_HTTP_ADDR", default_value = "127.0.0.1:9090")]
    http_addr: String,
    #[command(flatten)]
    tuning: Tuning,
    /// Seconds between background compaction + purge runs (0 disables them).
    #[arg(long, env = "SKYVAULT_MAINTENANCE_INTERVAL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    maintenance_interval_secs: u64,
    /// Purge grace period of the background runs (seconds).
    #[arg(long, env = "SKYVAULT_PURGE_GRACE_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(GRACE_SECS))]
    purge_grace_secs: u64,
    /// How long the background purge keeps files compaction replaced
    /// (seconds): longer than any request holds a manifest. Shorter than
    /// `--purge-grace-secs` (which orphans keep), it bounds the dead bytes
    /// compaction leaves on disk.
    #[arg(long, env = "SKYVAULT_PURGE_REPLACED_GRACE_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(GRACE_SECS))]
    purge_replaced_grace_secs: u64,
    /// Compaction jobs run at once in the background (on disjoint inputs).
    #[arg(long, env = "SKYVAULT_COMPACTION_WORKERS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=16))]
    compaction_workers: u64,
    #[command(flatten)]
    compaction: skyvault::compaction::CompactionArgs,
    #[command(flatten)]
    security: skyvault::security::SecurityArgs,
}

/// Purge grace periods (seconds): at least a minute, which is longer than
/// any metadata transaction may run (`meta::postgres::STATEMENT_TIMEOUT`),
/// as the CRD requires; at most 30 days.
const GRACE_SECS: std::ops::RangeInclusive<u64> = 60..=2_592_000;

/// Every range here matches the CRD's (operator/src/crd.rs) where it has one.
#[derive(clap::Args)]
struct Tuning {
    /// Flush a batch once it holds this many key+value bytes.
    #[arg(long, env = "SKYVAULT_BATCH_MAX_BYTES", default_value_t = 4 << 20,
          value_parser = clap::value_parser!(u64).range(1024..=1 << 30))]
    batch_max_bytes: u64,
    /// Longest a write waits for company while other flushes run (ms).
    #[arg(long, env = "SKYVAULT_BATCH_MAX_AGE_MS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    batch_max_age_ms: u64,
    /// Flushes in flight at once.
    #[arg(long, env = "SKYVAULT_BATCH_MAX_CONCURRENT_FLUSHES", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=64))]
    batch_max_concurrent_flushes: u64,
    /// Queued BatchWrite requests before RESOURCE_EXHAUSTED.
    #[arg(long, env = "SKYVAULT_BATCH_QUEUE_CAPACITY", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batch_queue_capacity: u64,
    /// Memory of queued BatchWrite requests before RESOURCE_EXHAUSTED: their
    /// key + value bytes plus a fixed overhead per entry (an empty queue takes
    /// any request).
    #[arg(long, env = "SKYVAULT_BATCH_QUEUE_MAX_BYTES", default_value_t = 256 << 20,
          value_parser = clap::value_parser!(u64).range(4 << 20..=64 << 30))]
    batch_queue_max_bytes: u64,
    /// From this many L0 files on, the batcher spaces its flushes (up to 100 ms
    /// apart at twice this count), so batches grow and compaction catches up;
    /// writes never fail for it. 0 never slows down.
    #[arg(long, env = "SKYVAULT_L0_SLOWDOWN_FILES", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(0..=100_000))]
    l0_slowdown_files: u64,
    /// Writes wait (up to 2 s, then RESOURCE_EXHAUSTED) while L0 holds this many
    /// files, so writers cannot outrun compaction; 0 never stalls.
    #[arg(long, env = "SKYVAULT_L0_STOP_FILES", default_value_t = skyvault::batcher::DEFAULT_L0_STOP_FILES,
          value_parser = clap::value_parser!(u64).range(0..=100_000))]
    l0_stop_files: u64,
    /// The WAL tier (group commits read from every index's memory) is
    /// flushed into one L0 file once it holds this many bytes.
    #[arg(long, env = "SKYVAULT_WAL_FLUSH_BYTES", default_value_t = skyvault::wal_flush::DEFAULT_LIMITS.flush_bytes,
          value_parser = clap::value_parser!(u64).range(1 << 20..=4 << 30))]
    wal_flush_bytes: u64,
    /// …or this many group commits (an index restart reads each back once).
    #[arg(long, env = "SKYVAULT_WAL_FLUSH_FILES", default_value_t = skyvault::wal_flush::DEFAULT_LIMITS.flush_files as u64,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    wal_flush_files: u64,
    /// Writes wait (up to 2 s, then RESOURCE_EXHAUSTED) while the WAL tier
    /// holds this many bytes (its flush fell behind); must exceed
    /// --wal-flush-bytes; 0 never stalls.
    #[arg(long, env = "SKYVAULT_WAL_STOP_BYTES", default_value_t = skyvault::batcher::DEFAULT_WAL_STOP_BYTES,
          value_parser = clap::value_parser!(u64).range(0..=64 << 30))]
    wal_stop_bytes: u64,
    /// Bytes of decoded file metadata and blocks kept in memory.
    #[arg(long, env = "SKYVAULT_CACHE_CAPACITY_BYTES", default_value_t = 256 << 20,
          value_parser = clap::value_parser!(u64).range(0..=1 << 40))]
    cache_capacity_bytes: u64,
}

impl Tuning {
    fn batcher(&self) -> anyhow::Result<BatcherConfig> {
        anyhow::ensure!(
            self.wal_stop_bytes == 0 || self.wal_stop_bytes > self.wal_flush_bytes,
            "--wal-stop-bytes ({}) must be 0 or more than --wal-flush-bytes ({}): writes would stop \
             before the WAL tier is due for its flush",
            self.wal_stop_bytes,
            self.wal_flush_bytes
        );
        let flush_bytes = self.wal_flush_bytes;
        let flush_files = self.wal_flush_files as usize;
        let wal_flush = skyvault::wal_flush::WalFlushConfig {
            limits: skyvault::compaction::FlushLimits {
                flush_bytes,
                flush_files,
                max_bytes: flush_bytes.saturating_mul(2),
                max_files: flush_files.saturating_mul(2),
            },
            ..Default::default()
        };
        Ok(BatcherConfig {
            max_batch_bytes: self.batch_max_bytes as usize,
            max_batch_age: Duration::from_millis(self.batch_max_age_ms),
            max_concurrent_flushes: self.batch_max_concurrent_flushes as usize,
            queue_capacity: self.batch_queue_capacity as usize,
            queue_max_bytes: self.batch_queue_max_bytes as usize,
            l0_slowdown_files: self.l0_slowdown_files,
            l0_stop_files: self.l0_stop_files,
            wal_stop_bytes: self.wal_stop_bytes,
            wal_flush: Some(wal_flush),
            ..BatcherConfig::default()
        })
    }

    fn cache(&self) -> CacheConfig {
        CacheConfig {
            capacity_bytes: self.cache_capacity_bytes,
            ..CacheConfig::default()
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("SKYVAULT_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

async fn run_standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    let mut config = StandaloneConfig::new(args.data_dir);
    config.grpc_addr = args.grpc_addr;
    config.http_addr = args.http_addr;
    config.security = args.security;
    config.batcher = args.tuning.batcher()?;
    config.cache = args.tuning.cache();
    config.index.lsm = args.compaction.lsm.config();
    let compaction = args.compaction.config().map_err(anyhow::Error::msg)?;
    config.maintenance = (args.maintenance_interval_secs > 0).then(|| {
        let mut m = standalone::Maintenance {
            interval: Duration::from_secs(args.maintenance_interval_secs),
            compaction_workers: args.compaction_workers as usize,
            compaction,
            ..Default::default()
        };
        m.purge.grace = Duration::from_secs(args.purge_grace_secs);
        m.purge.replaced_grace = Some(Duration::from_secs(args.purge_replaced_grace_secs));
        m
    });
    let running = standalone::start(config, None).await?;
    let stop = running.stopper();
    tokio::spawn(async move {
        shutdown_signal().await;
        stop.stop();
    });
    running.wait().await
}

/// One bounded compaction job; exits 0 when it did work, 3 when nothing was
/// due, 4 when other jobs hold every candidate's inputs (docs/operations.md).
async fn run_compact(
    storage: &StorageArgs,
    config: skyvault::compaction::CompactionConfig,
    summary_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (store, meta) = storage.open().await?;
    let mut summary = skyvault::compaction::compact(&store, &meta, &config)
        .await
        .context("compaction failed; nothing was swapped")?;
    if summary.outcome == skyvault::compaction::Outcome::NothingToDo && !config.dry_run {
        // As RocksDB's manual compaction flushes the memtable first: a
        // compaction asked for (a Job, a trigger) also drains the WAL tier
        // when no level is due, so what was written is compacted eventually.
        let limits = skyvault::wal_flush::DEFAULT_LIMITS;
        summary = skyvault::compaction::flush(&store, &meta, &config, &limits, true)
            .await
            .context("flushing the WAL tier failed; nothing was swapped")?;
    }
    report_job(summary, summary_file)
}

async fn run_flush(storage: &StorageArgs) -> anyhow::Result<()> {
    let (store, meta) = storage.open().await?;
    let config = skyvault::compaction::CompactionConfig::default();
    let limits = skyvault::wal_flush::DEFAULT_LIMITS;
    let summary = skyvault::compaction::flush(&store, &meta, &config, &limits, true)
        .await
        .context("flush failed; nothing was swapped")?;
    report_job(summary, None)
}

/// Prints a job's JSON summary (and writes it to `summary_file`), then exits
/// with its outcome's status.
fn report_job(
    summary: skyvault::compaction::CompactionSummary,
    summary_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let json = serde_json::to_string(&summary)?;
    println!("{json}");
    if let Some(path) = summary_file {
        std::fs::write(&path, &json)
            .with_context(|| format!("writing the summary to {}", path.display()))?;
    }
    match summary.outcome.exit_code() {
        0 => Ok(()),
        code => std::process::exit(code),
    }
}

async fn run_purge(
    storage: &StorageArgs,
    config: skyvault::purge::PurgeConfig,
) -> anyhow::Result<()> {
    let (store, meta) = storage.open().await?;
    let summary = skyvault::purge::purge(&store, &meta, &config)
        .await
        .context("purge failed")?;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Some(security) = cli.command.client_security() {
        cli::use_security(security);
    }
    let result = match cli.command {
        Command::Standalone(args) => {
            init_logging();
            run_standalone(args).await
        }
        Command::Put { key, value, client } => cli::put(&client.addr, key, value).await,
        Command::Get {
            keys,
            min_sequence,
            client,
        } => cli::get(&client.addr, keys, min_sequence, client.consistency).await,
        Command::Delete { keys, client } => cli::delete(&client.addr, keys).await,
        Command::Compact {
            storage,
            compaction,
            dry_run,
            summary_file,
        } => {
            init_logging();
            match compaction.config() {
                Ok(config) => {
                    let config = skyvault::compaction::CompactionConfig { dry_run, ..config };
                    run_compact(&storage, config, summary_file).await
                }
                Err(e) => Err(anyhow::Error::msg(e)),
            }
        }
        Command::Flush { storage } => {
            init_logging();
            run_flush(&storage).await
        }
        Command::Purge {
            storage,
            grace_secs,
            dry_run,
        } => {
            init_logging();
            let config = skyvault::purge::PurgeConfig {
                grace: Duration::from_secs(grace_secs),
                replaced_grace: None,
                dry_run,
            };
            run_purge(&storage, config).await
        }
        Command::Batcher { role, tuning } => {
            init_logging();
            match tuning.batcher() {
                Ok(batcher) => {
                    let config = role.config(batcher, tuning.cache());
                    skyvault::roles::run(skyvault::roles::Role::Batcher, config, shutdown_signal())
                        .await
                }
                Err(e) => Err(e),
            }
        }
        Command::Index {
            role,
            tuning,
            lsm,
            max_manifest_age_secs,
        } => {
            init_logging();
            // The index does not write: the batcher's settings are unused.
            let mut config = role.config(BatcherConfig::default(), tuning.cache());
            config.index.lsm = lsm.config();
            config.index.max_manifest_age = Duration::from_secs(max_manifest_age_secs);
            skyvault::roles::run(skyvault::roles::Role::Index, config, shutdown_signal()).await
        }
        Command::Cache(args) => {
            init_logging();
            skyvault::cache_tier::role::run(args.config(), shutdown_signal()).await
        }
        Command::Migrate { metadata_url } => {
            init_logging();
            skyvault::roles::migrate(&metadata_url)
                .await
                .map(|version| println!("metadata migrated; manifest version {version}"))
        }
        Command::Bench(args) => run_bench(args).await,
        Command::LsmSim(args) => skyvault::lsm_sim::main(&args),
        Command::Scan {
            prefix,
            start,
            end,
            limit,
            client,
        } => {
            cli::scan(
                &client.addr,
                cli::ScanArgs {
                    prefix,
                    start,
                    end,
                    limit,
                    consistency: client.consistency,
                },
            )
            .await
        }
    };
    if let Err(e) = result {
        eprintln!("error: {:#}", e);
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["skyvault"].iter().chain(args))
    }

    /// Out-of-range flags are refused when parsed, naming the flag and the
    /// range, instead of reaching (and panicking) the running store.
    #[test]
    fn flags_out_of_range_are_refused_at_parse_time() {
        let standalone = ["standalone", "--data-dir", "/tmp/x"];
        let role = [
            "batcher",
            "--metadata-url",
            "sqlite:///tmp/m.db",
            "--object-store-url",
            "file:///tmp/o",
        ];
        let cache = ["cache", "--object-store-url", "file:///tmp/o"];
        let cases: &[(&[&str], &str, &str)] = &[
            (&standalone, "--batch-max-bytes", "0"),
            (&standalone, "--batch-max-bytes", "2000000000"),
            (&standalone, "--batch-max-age-ms", "60001"),
            (&standalone, "--batch-queue-capacity", "0"),
            (&standalone, "--batch-queue-max-bytes", "1024"),
            (&standalone, "--cache-capacity-bytes", "2000000000000"),
            (&standalone, "--purge-grace-secs", "0"),
            (&standalone, "--purge-replaced-grace-secs", "59"),
            (&standalone, "--maintenance-interval-secs", "86401"),
            (&role, "--batch-max-bytes", "0"),
            (&role, "--cache-peer-timeout-ms", "0"),
            (&role, "--object-store-max-requests", "0"),
            (&cache, "--object-store-max-requests", "0"),
            (&cache, "--cache-capacity-bytes", "0"),
            (&["purge", "--data-dir", "/tmp/x"], "--grace-secs", "59"),
            (&["bench"], "--concurrency", "0"),
            (&["bench"], "--key-size", "1025"),
            (&["bench"], "--value-size", "1048577"),
            (&["bench"], "--batch-size", "0"),
            (&["bench"], "--keys", "0"),
        ];
        for (base, flag, value) in cases {
            let mut args = base.to_vec();
            args.extend([*flag, *value]);
            let err = match parse(&args) {
                Ok(_) => panic!("{args:?} was accepted"),
                Err(e) => e,
            };
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}: {err}"
            );
            let message = err.to_string();
            assert!(
                message.contains(flag) && message.contains(&format!("{value} is not in")),
                "{args:?}: {message}"
            );
        }
        // The defaults and the bounds themselves are accepted.
        for args in [
            &standalone[..],
            &[
                &standalone[..],
                &["--batch-max-bytes", "1024", "--purge-grace-secs", "60"],
            ]
            .concat(),
            &role[..],
            &cache[..],
        ] {
            if let Err(e) = parse(args) {
                panic!("{args:?}: {e}");
            }
        }
    }
}
