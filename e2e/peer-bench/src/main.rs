//! `skyvault-peer-bench`: the closed-loop workloads of `skyvault bench`
//! (dataplane/src/bench.rs), run against SlateDB embedded in this process, so
//! the two stores can be compared side by side (e2e/bench-peers.sh).
//!
//! What is the same as `skyvault bench`: N workers each keep one operation in
//! flight; keys are `k` + a zero-padded index (16 bytes, 100,000-key space,
//! uniform); values are derived from the key (pseudo-random, incompressible,
//! so every read is verified); a warm-up whose operations are not counted;
//! HDR histograms of per-operation latency in microseconds; the same JSON
//! report fields (`requests_per_s`, `keys_per_s`, `latency_ms.p50`/`p99`/
//! `p99.9`, ...), plus a few describing the SlateDB configuration.
//!
//! What differs (by construction): SlateDB is a library, so there is no RPC,
//! no serialisation and no second process; the gRPC floor of SkyVault
//! (`skyvault bench --workload health`) is what that costs there.
//!
//! Durability: the object store is object_store's `LocalFileSystem` with
//! fsync on (file, then the parent directory after the rename), and every
//! write awaits `WriteHandle::await_durable` (SlateDB 0.18's replacement for
//! `WriteOptions { await_durable: true }`): it returns once the WAL object
//! holding the write has been PUT. The WAL is flushed every
//! `--flush-interval-ms` (default 1 ms).

use futures::future::join_all;
use hdrhistogram::Histogram;
use object_store::local::LocalFileSystem;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use slatedb::config::{FlushOptions, FlushType, Settings};
use slatedb::{Db, WriteBatch};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: skyvault-peer-bench [options]
  --workload write|read     durable writes, or gets of a preloaded key space (default write)
  --concurrency N           operations in flight, one per worker (default 64)
  --duration D              measured time, e.g. 10s, 500ms, 2m (default 10s)
  --warmup D                unmeasured time before it (default 2s)
  --key-size N              bytes per key (default 16)
  --value-size N            bytes per value (default 1024)
  --batch-size N            keys per operation: one WriteBatch, or N concurrent gets (default 1)
  --keys N                  size of the key space (default 100000)
  --flush-interval-ms N     SlateDB WAL flush interval (default 1)
  --no-flush-memtable       reads: leave the preloaded keys in the memtable
                            (default: flush them to L0 SSTs, so reads go through the block cache)
  --data-dir DIR            where the local object store lives (default: a fresh temp dir,
                            removed at exit)
  --json                    print the report as one JSON line";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Workload {
    Write,
    Read,
}

#[derive(Clone, Debug)]
struct Config {
    workload: Workload,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    key_size: usize,
    value_size: usize,
    batch_size: usize,
    keys: u64,
    flush_interval: Duration,
    flush_memtable: bool,
    data_dir: Option<PathBuf>,
    json: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workload: Workload::Write,
            concurrency: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            key_size: 16,
            value_size: 1024,
            batch_size: 1,
            keys: 100_000,
            flush_interval: Duration::from_millis(1),
            flush_memtable: true,
            data_dir: None,
            json: false,
        }
    }
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

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let mut c = Config::default();
    let mut args = args.into_iter();
    fn number<T>(flag: &str, v: &str, min: T) -> Result<T, String>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
    {
        let n: T = v
            .parse()
            .map_err(|_| format!("{flag}: {v:?} is not a number"))?;
        if n < min {
            return Err(format!("{flag} must be at least {min}"));
        }
        Ok(n)
    }
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--workload" => {
                c.workload = match value()?.as_str() {
                    "write" => Workload::Write,
                    "read" => Workload::Read,
                    other => return Err(format!("unknown workload {other:?}: use write or read")),
                }
            }
            "--concurrency" => c.concurrency = number(&flag, &value()?, 1)?,
            "--duration" => c.duration = parse_duration(&value()?)?,
            "--warmup" => c.warmup = parse_duration(&value()?)?,
            "--key-size" => c.key_size = number(&flag, &value()?, 2)?,
            "--value-size" => c.value_size = number(&flag, &value()?, 0)?,
            "--batch-size" => c.batch_size = number(&flag, &value()?, 1)?,
            "--keys" => c.keys = number(&flag, &value()?, 1)?,
            "--flush-interval-ms" => {
                c.flush_interval = Duration::from_millis(number(&flag, &value()?, 1)?)
            }
            "--no-flush-memtable" => c.flush_memtable = false,
            "--data-dir" => c.data_dir = Some(PathBuf::from(value()?)),
            "--json" => c.json = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(c)
}

/// `skyvault bench`'s keys: `<space letter><zero-padded index>`, padded to `size`.
fn key(space: char, i: u64, size: usize) -> String {
    let digits = size.saturating_sub(1).max(1);
    format!("{space}{i:0digits$}")
}

/// `skyvault bench`'s values: a splitmix64 stream seeded by an FNV-1a hash of
/// the key (incompressible; any read can be verified).
fn value_for(key: &str, size: usize) -> Vec<u8> {
    let mut state = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// `skyvault bench`'s report fields, then what describes this run's SlateDB.
#[derive(Debug, Serialize)]
struct Report {
    workload: String,
    concurrency: usize,
    batch_size: usize,
    duration_s: f64,
    requests: u64,
    keys: u64,
    bytes: u64,
    requests_per_s: f64,
    keys_per_s: f64,
    mb_per_s: f64,
    latency_ms: BTreeMap<String, f64>,
    errors: BTreeMap<String, u64>,
    system: &'static str,
    slatedb_version: &'static str,
    warmup_s: f64,
    key_size: usize,
    value_size: usize,
    key_space: u64,
    flush_interval_ms: f64,
    object_store: &'static str,
    fsync: bool,
    await_durable: bool,
    /// Reads: whether the preloaded keys were flushed from the memtable to L0.
    flush_memtable: bool,
    preload_s: f64,
}

struct Shared {
    config: Config,
    db: Db,
    run_seed: u64,
    measuring: AtomicBool,
    stop: AtomicBool,
}

struct WorkerResult {
    histogram: Histogram<u64>,
    requests: u64,
    keys: u64,
    bytes: u64,
    errors: BTreeMap<String, u64>,
}

type Outcome = Result<(u64, u64), String>;

fn error_code(e: slatedb::Error) -> String {
    format!("{:?}", e.kind())
}

async fn write_once(shared: &Shared, rng: &mut SmallRng) -> Outcome {
    let c = &shared.config;
    let mut batch = WriteBatch::new();
    for _ in 0..c.batch_size {
        let k = key('k', rng.random_range(0..c.keys), c.key_size);
        let v = value_for(&k, c.value_size);
        batch.put(k, v);
    }
    let handle = shared.db.write(batch).await.map_err(error_code)?;
    handle.await_durable().await.map_err(error_code)?;
    Ok((
        c.batch_size as u64,
        (c.batch_size * (c.key_size + c.value_size)) as u64,
    ))
}

async fn get_one(db: &Db, k: String, value_size: usize) -> Outcome {
    let got = db.get(k.as_bytes()).await.map_err(error_code)?;
    match got {
        Some(v) if v.as_ref() == value_for(&k, value_size).as_slice() => {
            Ok((1, (k.len() + v.len()) as u64))
        }
        _ => Err("WRONG_VALUE".into()),
    }
}

/// `batch_size` gets of preloaded keys, issued concurrently (SlateDB has no
/// multi-get); each value is verified.
async fn read_once(shared: &Shared, rng: &mut SmallRng) -> Outcome {
    let c = &shared.config;
    if c.batch_size == 1 {
        let k = key('k', rng.random_range(0..c.keys), c.key_size);
        return get_one(&shared.db, k, c.value_size).await;
    }
    let gets = (0..c.batch_size).map(|_| {
        let k = key('k', rng.random_range(0..c.keys), c.key_size);
        get_one(&shared.db, k, c.value_size)
    });
    let mut total = (0, 0);
    for r in join_all(gets).await {
        let (keys, bytes) = r?;
        total.0 += keys;
        total.1 += bytes;
    }
    Ok(total)
}

async fn worker(shared: Arc<Shared>, id: u64) -> WorkerResult {
    let mut rng = SmallRng::seed_from_u64(shared.run_seed ^ id);
    let mut result = WorkerResult {
        histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram"),
        requests: 0,
        keys: 0,
        bytes: 0,
        errors: BTreeMap::new(),
    };
    while !shared.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let outcome = match shared.config.workload {
            Workload::Write => write_once(&shared, &mut rng).await,
            Workload::Read => read_once(&shared, &mut rng).await,
        };
        // A get served from the block cache completes without ever returning
        // Pending, so without this a worker would hold its runtime thread and
        // starve the others (and SlateDB's own tasks): yield once per
        // operation, as a client waiting on a reply would.
        tokio::task::yield_now().await;
        if !shared.measuring.load(Ordering::Relaxed) {
            continue;
        }
        match outcome {
            Ok((keys, bytes)) => {
                let micros = started.elapsed().as_micros().max(1) as u64;
                let _ = result.histogram.record(micros.min(60_000_000));
                result.requests += 1;
                result.keys += keys;
                result.bytes += bytes;
            }
            Err(code) => *result.errors.entry(code).or_default() += 1,
        }
    }
    result
}

/// Writes the whole key space in ~1 MiB batches, each awaited durable (as
/// `skyvault bench` preloads before reads).
async fn preload(db: &Db, c: &Config) -> Result<(), slatedb::Error> {
    let per_batch = ((1 << 20) / (c.key_size + c.value_size).max(1)).max(1) as u64;
    let mut i = 0;
    while i < c.keys {
        let end = (i + per_batch).min(c.keys);
        let mut batch = WriteBatch::new();
        for n in i..end {
            let k = key('k', n, c.key_size);
            let v = value_for(&k, c.value_size);
            batch.put(k, v);
        }
        db.write(batch).await?.await_durable().await?;
        i = end;
    }
    if c.flush_memtable {
        db.flush_with_options(FlushOptions {
            flush_type: FlushType::MemTable,
        })
        .await?;
    }
    Ok(())
}

/// The temp dir this process made (removed on drop), or the caller's.
struct DataDir {
    path: PathBuf,
    owned: bool,
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn data_dir(config: &Config) -> std::io::Result<DataDir> {
    match &config.data_dir {
        Some(p) => {
            std::fs::create_dir_all(p)?;
            Ok(DataDir {
                path: p.clone(),
                owned: false,
            })
        }
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let path = std::env::temp_dir().join(format!(
                "skyvault-peer-bench-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&path)?;
            Ok(DataDir { path, owned: true })
        }
    }
}

async fn run(config: Config) -> Result<Report, Box<dyn std::error::Error>> {
    let dir = data_dir(&config)?;
    let store = LocalFileSystem::new_with_prefix(&dir.path)?.with_fsync(true);
    let settings = Settings {
        flush_interval: Some(config.flush_interval),
        ..Settings::default()
    };
    let db = Db::builder("db", Arc::new(store))
        .with_settings(settings)
        .build()
        .await?;
    let preload_started = Instant::now();
    if config.workload == Workload::Read {
        preload(&db, &config).await?;
    }
    let preload_s = preload_started.elapsed().as_secs_f64();

    let shared = Arc::new(Shared {
        run_seed: rand::random(),
        db,
        config: config.clone(),
        measuring: AtomicBool::new(config.warmup.is_zero()),
        stop: AtomicBool::new(false),
    });
    let workers: Vec<_> = (0..config.concurrency)
        .map(|w| tokio::spawn(worker(shared.clone(), w as u64)))
        .collect();
    tokio::time::sleep(config.warmup).await;
    shared.measuring.store(true, Ordering::SeqCst);
    let started = Instant::now();
    tokio::time::sleep(config.duration).await;
    shared.stop.store(true, Ordering::SeqCst);
    let elapsed = started.elapsed();

    let mut histogram = Histogram::<u64>::new(3).expect("valid histogram");
    let (mut requests, mut keys, mut bytes) = (0, 0, 0);
    let mut errors = BTreeMap::new();
    for w in workers {
        let r = w.await?;
        histogram.add(&r.histogram).expect("same histogram bounds");
        requests += r.requests;
        keys += r.keys;
        bytes += r.bytes;
        for (code, n) in r.errors {
            *errors.entry(code).or_default() += n;
        }
    }
    shared.db.close().await?;

    let secs = elapsed.as_secs_f64();
    let ms = |v: u64| v as f64 / 1000.0;
    let latency_ms = [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)]
        .into_iter()
        .map(|(name, q)| (name.to_string(), ms(histogram.value_at_quantile(q / 100.0))))
        .chain([("max".to_string(), ms(histogram.max()))])
        .collect();
    Ok(Report {
        workload: format!("{:?}", config.workload).to_lowercase(),
        concurrency: config.concurrency,
        batch_size: config.batch_size,
        duration_s: secs,
        requests,
        keys,
        bytes,
        requests_per_s: requests as f64 / secs,
        keys_per_s: keys as f64 / secs,
        mb_per_s: bytes as f64 / secs / 1e6,
        latency_ms,
        errors,
        system: "slatedb",
        slatedb_version: "0.18",
        warmup_s: config.warmup.as_secs_f64(),
        key_size: config.key_size,
        value_size: config.value_size,
        key_space: config.keys,
        flush_interval_ms: config.flush_interval.as_secs_f64() * 1000.0,
        object_store: "LocalFileSystem",
        fsync: true,
        await_durable: config.workload == Workload::Write,
        flush_memtable: config.workload == Workload::Read && config.flush_memtable,
        preload_s,
    })
}

#[tokio::main]
async fn main() {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let json = config.json;
    match run(config).await {
        Ok(report) if json => {
            println!(
                "{}",
                serde_json::to_string(&report).expect("report serialises")
            )
        }
        Ok(r) => {
            let l = &r.latency_ms;
            println!(
                "slatedb {}: {:.0} req/s, {:.0} keys/s, {:.2} MB/s over {:.1}s ({} requests)",
                r.workload, r.requests_per_s, r.keys_per_s, r.mb_per_s, r.duration_s, r.requests
            );
            println!(
                "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                l["p50"], l["p90"], l["p99"], l["p99.9"], l["max"]
            );
            if r.errors.is_empty() {
                println!("errors: none");
            } else {
                println!("errors: {:?}", r.errors);
            }
        }
        Err(e) => {
            eprintln!("skyvault-peer-bench: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_have_skyvault_bench_format() {
        assert_eq!(key('k', 42, 16), "k000000000000042");
        let v = value_for("k000000000000042", 1024);
        assert_eq!(v.len(), 1024);
        assert_eq!(v, value_for("k000000000000042", 1024));
        assert_ne!(v, value_for("k000000000000043", 1024));
    }

    #[test]
    fn parses_flags() {
        let c = parse_args(
            [
                "--workload",
                "read",
                "--concurrency",
                "1",
                "--warmup",
                "500ms",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(c.workload, Workload::Read);
        assert_eq!(c.concurrency, 1);
        assert_eq!(c.warmup, Duration::from_millis(500));
        assert_eq!(c.value_size, 1024);
        assert!(parse_args(["--concurrency", "0"].map(String::from)).is_err());
        assert!(parse_args(["--bogus"].map(String::from)).is_err());
    }
}
