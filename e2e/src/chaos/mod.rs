//! The crash campaign (issue 12): clients write with recorded acks and
//! sequences while roles die at random moments — `kill -9`, power loss
//! through lazyfs (which drops every write not fsynced), compaction and purge
//! jobs killed mid-run with object-store faults injected, PostgreSQL outages —
//! and restart; at the end every acked write must read back with its value,
//! nothing un-acked may be partially visible, every batch all-or-nothing, and
//! a client's reads carrying `min_sequence` never go back.
//!
//! Two targets, run one after the other: `skyvault standalone` on a lazyfs
//! mount holding its data directory (SQLite and the local object store), and
//! the distributed roles (batcher, index, cache, compaction and purge jobs) on
//! PostgreSQL and an S3 server. `just chaos` runs it; see docs/reliability.md.

mod check;
mod distributed;
mod standalone;
mod workload;

pub use check::Verdict;

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use workload::History;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Distributed,
    Both,
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "standalone" => Ok(Mode::Standalone),
            "distributed" => Ok(Mode::Distributed),
            "both" => Ok(Mode::Both),
            other => {
                anyhow::bail!("CHAOS_MODE={other:?}: expected standalone, distributed or both")
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Wall-clock bound of the faults phase (both targets together).
    pub seconds: u64,
    /// At most this many faults (both targets together).
    pub max_faults: u64,
    pub clients: usize,
    pub mode: Mode,
    pub seed: u64,
    /// Where `skyvault` and `skyvault-lazyfs` are.
    pub bin_dir: PathBuf,
}

/// What one campaign did and found.
#[derive(Debug, Default)]
pub struct Summary {
    pub kills: u64,
    pub power_losses: u64,
    pub job_kills: u64,
    pub db_outages: u64,
    pub verdict: Verdict,
    pub seconds: f64,
}

impl Summary {
    fn add(&mut self, other: Summary) {
        self.kills += other.kills;
        self.power_losses += other.power_losses;
        self.job_kills += other.job_kills;
        self.db_outages += other.db_outages;
        self.seconds += other.seconds;
        let (v, o) = (&mut self.verdict, other.verdict);
        v.acked += o.acked;
        v.lost += o.lost;
        v.wrong += o.wrong;
        v.not_written += o.not_written;
        v.unknown += o.unknown;
        v.unknown_committed += o.unknown_committed;
        v.unreadable += o.unreadable;
        v.details.extend(o.details);
    }

    /// The one summary line `just chaos` ends with.
    pub fn line(&self) -> String {
        let v = &self.verdict;
        format!(
            "chaos: seconds={:.0} kills={} power_losses={} job_kills={} db_outages={} \
             acked={} lost={} wrong={} not_written={} unknown={} unknown_committed={} \
             unreadable_keys={}",
            self.seconds,
            self.kills,
            self.power_losses,
            self.job_kills,
            self.db_outages,
            v.acked,
            v.lost,
            v.wrong,
            v.not_written,
            v.unknown,
            v.unknown_committed,
            v.unreadable
        )
    }
}

/// SplitMix64: a seeded generator, so a run's fault schedule is printed
/// with its seed (timings still vary from run to run).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `range` (milliseconds, say).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

/// A system under test the campaign can strike.
trait Target {
    fn batcher(&self) -> String;
    fn index(&self) -> String;
    /// One fault at random; says which on stdout and counts it in `summary`.
    async fn strike(&mut self, rng: &mut Rng, summary: &mut Summary) -> Result<()>;
    /// Every role back up and ready.
    async fn settle(&mut self) -> Result<()>;
}

/// Runs the campaign; `lost` and `wrong` in the summary must be 0.
pub async fn run(config: &Config) -> Result<Summary> {
    let mut rng = Rng::new(config.seed);
    let dir = tempfile::Builder::new()
        .prefix("skyvault-chaos-")
        .tempdir()?;
    let shares: &[Mode] = match config.mode {
        Mode::Both => &[Mode::Standalone, Mode::Distributed],
        Mode::Standalone => &[Mode::Standalone],
        Mode::Distributed => &[Mode::Distributed],
    };
    let mut total = Summary::default();
    for &mode in shares {
        let seconds = config.seconds / shares.len() as u64;
        let faults = config.max_faults / shares.len() as u64;
        let summary = match mode {
            Mode::Standalone => {
                let root = dir.path().join("standalone");
                let mut target = standalone::Standalone::start(&config.bin_dir, &root)?;
                campaign(&mut target, config, seconds, faults, &mut rng).await?
            }
            _ => {
                let root = dir.path().join("distributed");
                let mut target = distributed::Distributed::start(&config.bin_dir, &root)?;
                campaign(&mut target, config, seconds, faults, &mut rng).await?
            }
        };
        println!("{mode:?}: {}", summary.line());
        total.add(summary);
    }
    Ok(total)
}

async fn connect(addr: &str) -> Result<Channel> {
    // Lazy: the clients' channels reconnect by themselves across restarts.
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy())
}

async fn campaign(
    target: &mut impl Target,
    config: &Config,
    seconds: u64,
    max_faults: u64,
    rng: &mut Rng,
) -> Result<Summary> {
    target.settle().await?;
    let started = Instant::now();
    let history = Arc::new(History::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for id in 0..config.clients {
        let (b, i) = (
            connect(&target.batcher()).await?,
            connect(&target.index()).await?,
        );
        clients.push(tokio::spawn(workload::client(
            id,
            b,
            i,
            history.clone(),
            stop.clone(),
        )));
    }
    let mut summary = Summary::default();
    let deadline = started + Duration::from_secs(seconds);
    let mut faults = 0;
    while Instant::now() < deadline && faults < max_faults {
        tokio::time::sleep(Duration::from_millis(rng.between(200, 1500))).await;
        target.strike(rng, &mut summary).await?;
        faults += 1;
    }
    target
        .settle()
        .await
        .context("restarting after the faults")?;
    // A last stretch without faults, so the final state has fresh writes too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await?;
    }
    let index = connect(&target.index()).await?;
    summary.verdict = check::verify(&history, index).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    for detail in &summary.verdict.details {
        println!("  violation: {detail}");
    }
    Ok(summary)
}
