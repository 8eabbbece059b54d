//! `skyvault bench`: a closed-loop gRPC load generator. Every worker keeps one
//! request in flight; latencies go into HDR histograms; reads are verified
//! (a wrong value counts as an error, not a success).

use crate::client::{Client, ClientOptions, ReadConsistency, RetryPolicy, ScanRange, Write};
use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Workload {
    Write,
    Read,
    /// Fraction of requests that are reads.
    Mixed(f64),
    Scan,
    /// `grpc.health.v1.Health/Check`: the RPC floor of the same server.
    Health,
    /// Each request writes a fresh value to a worker's own key and reads it
    /// back at once (writer and reader are separate clients, so the reader
    /// knows nothing of the write's sequence): a read missing the value just
    /// acknowledged counts as a `STALE` error.
    ReadAfterWrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    Written,
    NotWritten,
    Deleted,
    Mixed,
}

#[derive(Clone, Debug)]
pub enum Distribution {
    Uniform,
    Zipf(Arc<Vec<f64>>),
}

pub fn parse_workload(s: &str) -> Result<Workload, String> {
    match s {
        "write" => Ok(Workload::Write),
        "read" => Ok(Workload::Read),
        "scan" => Ok(Workload::Scan),
        "health" => Ok(Workload::Health),
        "read-after-write" => Ok(Workload::ReadAfterWrite),
        _ => match s.strip_prefix("mixed:").map(str::parse::<f64>) {
            Some(Ok(r)) if (0.0..=1.0).contains(&r) => Ok(Workload::Mixed(r)),
            _ => Err(format!(
                "unknown workload {s:?}: use write, read, scan, health or mixed:READ_FRACTION (e.g. mixed:0.5)"
            )),
        },
    }
}

pub fn parse_read_mode(s: &str) -> Result<ReadMode, String> {
    match s {
        "written" => Ok(ReadMode::Written),
        "notwritten" => Ok(ReadMode::NotWritten),
        "deleted" => Ok(ReadMode::Deleted),
        "mixed" => Ok(ReadMode::Mixed),
        _ => Err(format!(
            "unknown read mode {s:?}: use written, notwritten, deleted or mixed"
        )),
    }
}

/// `uniform` or `zipf:S` (S > 0); the Zipf CDF is built once per run.
pub fn parse_distribution(s: &str) -> Result<DistributionSpec, String> {
    match s {
        "uniform" => Ok(DistributionSpec::Uniform),
        _ => match s.strip_prefix("zipf:").map(str::parse::<f64>) {
            Some(Ok(exp)) if exp > 0.0 => Ok(DistributionSpec::Zipf(exp)),
            _ => Err(format!(
                "unknown distribution {s:?}: use uniform or zipf:S with S > 0 (e.g. zipf:1.1)"
            )),
        },
    }
}

#[derive(Clone, Copy, Debug)]
pub enum DistributionSpec {
    Uniform,
    Zipf(f64),
}

impl DistributionSpec {
    fn build(self, keys: u64) -> Distribution {
        match self {
            DistributionSpec::Uniform => Distribution::Uniform,
            DistributionSpec::Zipf(exp) => {
                let mut cdf = Vec::with_capacity(keys as usize);
                let mut total = 0.0;
                for rank in 1..=keys {
                    total += 1.0 / (rank as f64).powf(exp);
                    cdf.push(total);
                }
                cdf.iter_mut().for_each(|c| *c /= total);
                Distribution::Zipf(Arc::new(cdf))
            }
        }
    }
}

impl Distribution {
    fn sample(&self, rng: &mut SmallRng, keys: u64) -> u64 {
        match self {
            Distribution::Uniform => rng.random_range(0..keys),
            Distribution::Zipf(cdf) => {
                let u: f64 = rng.random();
                cdf.partition_point(|c| *c < u).min(cdf.len() - 1) as u64
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub batcher_addr: String,
    pub index_addr: String,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub key_size: usize,
    pub value_size: usize,
    pub batch_size: usize,
    pub keys: u64,
    pub workload: Workload,
    pub read_mode: ReadMode,
    pub distribution: DistributionSpec,
    /// Write every key once before measuring (reads of written/deleted keys need it).
    pub preload: bool,
    /// Of reads (`eventual` measures what a client without extensions gets).
    pub consistency: ReadConsistency,
}

/// Keys are `<space letter><zero-padded index>`, padded to `key_size`.
fn key(space: char, i: u64, size: usize) -> String {
    let digits = size.saturating_sub(1).max(1);
    format!("{space}{i:0digits$}")
}

/// The value stored under a key: derived from the key so any read verifies.
/// The value written for `key`: a pseudo-random byte stream seeded by the key,
/// so reads can be verified and values do not compress (like real payloads:
/// compression must not flatter the storage numbers).
fn value_for(key: &str, size: usize) -> Vec<u8> {
    let mut state = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(size);
    out
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub workload: String,
    pub concurrency: usize,
    pub batch_size: usize,
    pub duration_s: f64,
    pub requests: u64,
    pub keys: u64,
    pub bytes: u64,
    pub requests_per_s: f64,
    pub keys_per_s: f64,
    pub mb_per_s: f64,
    pub latency_ms: BTreeMap<String, f64>,
    pub errors: BTreeMap<String, u64>,
}

struct Shared {
    config: BenchConfig,
    distribution: Distribution,
    /// Different in every run: consecutive runs (e.g. rounds of a long
    /// benchmark) must not repeat each other's key sequence. Values are derived
    /// from keys, so reads verify whatever the seed.
    run_seed: u64,
    measuring: AtomicBool,
    stop: AtomicBool,
    requests: AtomicU64,
}

struct WorkerResult {
    histogram: Histogram<u64>,
    requests: u64,
    keys: u64,
    bytes: u64,
    errors: BTreeMap<String, u64>,
}

pub async fn run(config: BenchConfig, json: bool) -> anyhow::Result<Report> {
    if config.concurrency == 0 || config.batch_size == 0 || config.keys == 0 {
        bail!("--concurrency, --batch-size and --keys must be at least 1");
    }
    let (writer, reader, health) = connect(&config).await?;
    if config.preload {
        preload(&config, &writer).await.context("preloading keys")?;
    }
    let shared = Arc::new(Shared {
        run_seed: rand::random(),
        distribution: config.distribution.build(config.keys),
        config: config.clone(),
        measuring: AtomicBool::new(config.warmup.is_zero()),
        stop: AtomicBool::new(false),
        requests: AtomicU64::new(0),
    });
    let workers: Vec<_> = (0..config.concurrency)
        .map(|w| {
            tokio::spawn(worker(
                shared.clone(),
                w as u64,
                Clients {
                    writer: writer.clone(),
                    reader: reader.clone(),
                    health: health.clone(),
                },
            ))
        })
        .collect();
    tokio::time::sleep(config.warmup).await;
    shared.measuring.store(true, Ordering::SeqCst);
    let started = Instant::now();
    progress(&shared, started, json).await;
    shared.stop.store(true, Ordering::SeqCst);
    let elapsed = started.elapsed();
    let mut merged = WorkerResult {
        histogram: Histogram::new(3).expect("valid histogram"),
        requests: 0,
        keys: 0,
        bytes: 0,
        errors: BTreeMap::new(),
    };
    for w in workers {
        let r = w.await.context("bench worker panicked")?;
        merged
            .histogram
            .add(&r.histogram)
            .expect("same histogram bounds");
        merged.requests += r.requests;
        merged.keys += r.keys;
        merged.bytes += r.bytes;
        for (code, n) in r.errors {
            *merged.errors.entry(code).or_default() += n;
        }
    }
    Ok(report(&config, elapsed, merged))
}

/// Prints a live line on a terminal once per second until the duration ends.
async fn progress(shared: &Shared, started: Instant, json: bool) {
    let live = !json && std::io::stderr().is_terminal();
    let duration = shared.config.duration;
    while started.elapsed() < duration {
        let left = duration.saturating_sub(started.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        if live {
            let n = shared.requests.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64();
            eprint!("\r{:>5.1}s  {:>10.0} req/s   ", secs, n as f64 / secs);
        }
    }
    if live {
        eprintln!();
    }
}

fn report(config: &BenchConfig, elapsed: Duration, r: WorkerResult) -> Report {
    let secs = elapsed.as_secs_f64();
    let ms = |v: u64| v as f64 / 1000.0;
    let h = &r.histogram;
    let latency_ms = [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)]
        .into_iter()
        .map(|(name, q)| (name.to_string(), ms(h.value_at_quantile(q / 100.0))))
        .chain([("max".to_string(), ms(h.max()))])
        .collect();
    Report {
        workload: format!("{:?}", config.workload).to_lowercase(),
        concurrency: config.concurrency,
        batch_size: config.batch_size,
        duration_s: secs,
        requests: r.requests,
        keys: r.keys,
        bytes: r.bytes,
        requests_per_s: r.requests as f64 / secs,
        keys_per_s: r.keys as f64 / secs,
        mb_per_s: r.bytes as f64 / secs / 1e6,
        latency_ms,
        errors: r.errors,
    }
}

/// The writer, the reader (separate clients: separate sessions, so reads
/// get only the consistency asked for) and a plain channel for health checks.
/// Each error is counted, never retried: the bench measures the server.
async fn connect(config: &BenchConfig) -> anyhow::Result<(Client, Client, Channel)> {
    let health = crate::cli::connect(&config.index_addr).await?;
    crate::cli::connect(&config.batcher_addr).await?;
    let once = RetryPolicy {
        max_attempts: 1,
        ..Default::default()
    };
    let options = |addr: &str| -> anyhow::Result<ClientOptions> {
        Ok(crate::cli::options(addr)?
            .with_retry(once.clone())
            .with_scan_page(config.batch_size as u32))
    };
    let writer = options(&config.batcher_addr)?.connect().await?;
    let reader = options(&config.index_addr)?.connect().await?;
    Ok((writer, reader.with_consistency(config.consistency), health))
}

async fn preload(config: &BenchConfig, client: &Client) -> anyhow::Result<()> {
    let per_request = (1 << 20) / (config.key_size + config.value_size).max(1);
    let spaces: &[(char, bool)] = match config.read_mode {
        ReadMode::Written | ReadMode::NotWritten => &[('k', false)],
        ReadMode::Deleted => &[('d', false), ('d', true)],
        ReadMode::Mixed => &[('k', false), ('d', false), ('d', true)],
    };
    for &(space, delete) in spaces {
        let mut i = 0;
        while i < config.keys {
            let end = (i + per_request.max(1) as u64).min(config.keys);
            let writes = (i..end)
                .map(|n| write_request(space, n, delete, config))
                .collect();
            client.write(writes).await?;
            i = end;
        }
    }
    Ok(())
}

fn write_request(space: char, i: u64, delete: bool, config: &BenchConfig) -> Write {
    let k = key(space, i, config.key_size);
    if delete {
        Write::delete(k)
    } else {
        let value = value_for(&k, config.value_size);
        Write::put(k, value)
    }
}

struct Clients {
    writer: Client,
    reader: Client,
    health: Channel,
}

async fn worker(shared: Arc<Shared>, id: u64, clients: Clients) -> WorkerResult {
    let config = &shared.config;
    let mut rng = SmallRng::seed_from_u64(shared.run_seed ^ id);
    let mut health = tonic_health::pb::health_client::HealthClient::new(clients.health);
    let mut result = WorkerResult {
        histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram"),
        requests: 0,
        keys: 0,
        bytes: 0,
        errors: BTreeMap::new(),
    };
    while !shared.stop.load(Ordering::Relaxed) {
        let read = match config.workload {
            Workload::Read | Workload::Scan => true,
            Workload::Mixed(r) => rng.random_bool(r),
            Workload::Write | Workload::Health | Workload::ReadAfterWrite => false,
        };
        let started = Instant::now();
        let outcome = if config.workload == Workload::Health {
            let req = tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            };
            health
                .check(req)
                .await
                .map(|_| (0, 0))
                .map_err(|s| format!("{:?}", s.code()))
        } else if config.workload == Workload::ReadAfterWrite {
            read_after_write_once(&clients.writer, &clients.reader, id, &mut rng).await
        } else if config.workload == Workload::Scan {
            scan_once(&clients.reader, &shared, &mut rng).await
        } else if read {
            read_once(&clients.reader, &shared, &mut rng).await
        } else {
            write_once(&clients.writer, &shared, &mut rng).await
        };
        if !shared.measuring.load(Ordering::Relaxed) {
            continue;
        }
        shared.requests.fetch_add(1, Ordering::Relaxed);
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

type Outcome = Result<(u64, u64), String>;

fn code(e: crate::client::ClientError) -> String {
    format!("{:?}", e.code())
}

/// One write of a fresh value, then one read of it.
async fn read_after_write_once(
    writer: &Client,
    reader: &Client,
    id: u64,
    rng: &mut SmallRng,
) -> Outcome {
    let key = format!("raw/{id}");
    let value = rng.random::<u64>().to_le_bytes().to_vec();
    writer.put(key.clone(), value.clone()).await.map_err(code)?;
    match reader.get(key).await.map_err(code)? {
        Some(got) if got.as_ref() == value.as_slice() => Ok((2, 16)),
        _ => Err("STALE".into()),
    }
}

async fn write_once(client: &Client, shared: &Shared, rng: &mut SmallRng) -> Outcome {
    let c = &shared.config;
    let writes: Vec<Write> = (0..c.batch_size)
        .map(|_| write_request('k', shared.distribution.sample(rng, c.keys), false, c))
        .collect();
    let bytes = (c.batch_size * (c.key_size + c.value_size)) as u64;
    client
        .write(writes)
        .await
        .map(|_| (c.batch_size as u64, bytes))
        .map_err(code)
}

async fn read_once(client: &Client, shared: &Shared, rng: &mut SmallRng) -> Outcome {
    let c = &shared.config;
    let mut expected = BTreeMap::new();
    for _ in 0..c.batch_size {
        let i = shared.distribution.sample(rng, c.keys);
        let mode = match c.read_mode {
            ReadMode::Mixed => {
                [ReadMode::Written, ReadMode::NotWritten, ReadMode::Deleted][rng.random_range(0..3)]
            }
            m => m,
        };
        let (k, want) = match mode {
            ReadMode::Written => (key('k', i, c.key_size), true),
            ReadMode::NotWritten => (key('n', i, c.key_size), false),
            _ => (key('d', i, c.key_size), false),
        };
        let want = want.then(|| value_for(&k, c.value_size));
        expected.insert(k, want);
    }
    let results = client
        .get_many(expected.keys().cloned())
        .await
        .map_err(code)?;
    let mut bytes = 0;
    for (k, want) in &expected {
        let got = results.get(k).map(|b| b.as_ref());
        if got != want.as_deref() {
            return Err("WRONG_VALUE".into());
        }
        bytes += (k.len() + got.map_or(0, <[u8]>::len)) as u64;
    }
    Ok((expected.len() as u64, bytes))
}

/// One page (the client asks for `batch_size` pairs per page).
async fn scan_once(client: &Client, shared: &Shared, rng: &mut SmallRng) -> Outcome {
    let c = &shared.config;
    let range = ScanRange {
        prefix: "k".into(),
        start: key('k', shared.distribution.sample(rng, c.keys), c.key_size),
        end: String::new(),
    };
    let items: Vec<(String, bytes::Bytes)> = client
        .scan(range)
        .take(c.batch_size)
        .try_collect()
        .await
        .map_err(code)?;
    let mut bytes = 0;
    for (k, v) in &items {
        if v.as_ref() != value_for(k, c.value_size).as_slice() {
            return Err("WRONG_VALUE".into());
        }
        bytes += (k.len() + v.len()) as u64;
    }
    Ok((items.len() as u64, bytes))
}

/// The human-readable summary.
pub fn print(out: &mut impl std::io::Write, report: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {:.0} req/s, {:.0} keys/s, {:.2} MB/s over {:.1}s ({} requests)",
        report.workload,
        report.requests_per_s,
        report.keys_per_s,
        report.mb_per_s,
        report.duration_s,
        report.requests
    )?;
    let l = &report.latency_ms;
    writeln!(
        out,
        "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        l["p50"], l["p90"], l["p99"], l["p99.9"], l["max"]
    )?;
    if report.errors.is_empty() {
        writeln!(out, "errors: none")
    } else {
        writeln!(out, "errors: {:?}", report.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_options() {
        assert_eq!(parse_workload("mixed:0.5").unwrap(), Workload::Mixed(0.5));
        assert!(
            parse_workload("mixed:2")
                .unwrap_err()
                .contains("mixed:READ_FRACTION")
        );
        assert!(matches!(
            parse_distribution("zipf:1.1"),
            Ok(DistributionSpec::Zipf(_))
        ));
        assert!(parse_distribution("zipf:0").is_err());
        assert!(parse_read_mode("sometimes").is_err());
    }

    #[test]
    fn keys_are_padded_and_zipf_skews_to_low_ranks() {
        assert_eq!(key('k', 42, 16), "k000000000000042");
        let zipf = DistributionSpec::Zipf(1.2).build(1000);
        let mut rng = SmallRng::seed_from_u64(1);
        let low = (0..10_000)
            .filter(|_| zipf.sample(&mut rng, 1000) < 10)
            .count();
        assert!(low > 5_000, "{low} of 10000 samples in the top 10 ranks");
    }
}
