//! `skyvault lsm-sim`: the leveled LSM at any size in seconds, by driving
//! the real picker (`compaction::picker`), level targets and debt
//! (`crate::lsm`) and claim rules (`meta::claims_conflict`) with synthetic
//! file metadata instead of data.
//!
//! - `keys`: the key space and how writes cover it (uniform, zipf, sequential);
//! - `model`: what a file holds and what a merge of files writes;
//! - `sim`: the event loop (writer, WAL flush, job slots, back-pressure);
//! - `report`: what a run measured, as JSON and CSV; `plot`: the debt as a PNG.
//!
//! Used to size a cluster (docs/operations.md) and, in a short run, as the
//! picker's regression test (tests below).

mod args;
mod keys;
mod model;
mod plot;
mod report;
mod sim;

pub use args::{Scheduler, SimArgs, SimConfig};
pub use keys::KeyDist;
pub use report::Report;

use std::time::Instant;

/// What one run produced.
pub struct Run {
    pub report: Report,
    /// The debt over time, one row per sample.
    pub csv: String,
    points: Vec<plot::Point>,
}

impl Run {
    /// The debt over time as a PNG (see `plot`).
    pub fn png(&self) -> std::io::Result<Vec<u8>> {
        plot::png(&self.points)
    }
}

/// Runs one simulation to the end (every write done, nothing due).
pub fn simulate(cfg: SimConfig) -> Result<Run, String> {
    let started = Instant::now();
    let mut sim = sim::Sim::new(cfg);
    sim.run()?;
    let report = Report::new(&sim, started.elapsed().as_secs_f64());
    Ok(Run {
        report,
        csv: sim.rec.csv().to_string(),
        points: std::mem::take(&mut sim.rec.points),
    })
}

/// `skyvault lsm-sim`.
pub fn main(args: &SimArgs) -> anyhow::Result<()> {
    let cfg = args.config().map_err(anyhow::Error::msg)?;
    let run = simulate(cfg).map_err(anyhow::Error::msg)?;
    let write = |flag: &str, path: &std::path::Path, bytes: &[u8]| {
        std::fs::write(path, bytes)
            .map_err(|e| anyhow::anyhow!("writing {flag} {}: {e}", path.display()))
    };
    if let Some(path) = &args.csv {
        write("--csv", path, run.csv.as_bytes())?;
    }
    if let Some(path) = &args.png {
        write("--png", path, &run.png()?)?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&run.report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&run.report)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
