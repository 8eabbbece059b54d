//! `skyvault lsm-sim`: the leveled LSM at any size in seconds, by driving
//! the real picker (`compaction::picker`), level targets and debt
//! (`crate::lsm`) and claim rules (`meta::claims_conflict`) with synthetic
//! file metadata instead of data.
//!
//! - `keys`: the key space and how writes cover it (uniform, zipf, sequential);
//! - `model`: what a file holds and what a merge of files writes;
//! - `sim`: the event loop (writer, WAL flush, job slots, back-pressure);
//! - `report`: what a run measured, as JSON and CSV.
//!
//! Used to size a cluster (docs/operations.md) and, in a short run, as the
//! picker's regression test (tests below).

mod args;
mod keys;
mod model;
mod report;
mod sim;

pub use args::{Scheduler, SimArgs, SimConfig};
pub use keys::KeyDist;
pub use report::Report;

use std::time::Instant;

/// Runs one simulation to the end (every write done, nothing due).
pub fn simulate(cfg: SimConfig) -> Result<(Report, String), String> {
    let started = Instant::now();
    let mut sim = sim::Sim::new(cfg);
    sim.run()?;
    let report = Report::new(&sim, started.elapsed().as_secs_f64());
    Ok((report, sim.rec.csv().to_string()))
}

/// `skyvault lsm-sim`.
pub fn main(args: &SimArgs) -> anyhow::Result<()> {
    let cfg = args.config().map_err(anyhow::Error::msg)?;
    let (report, csv) = simulate(cfg).map_err(anyhow::Error::msg)?;
    if let Some(path) = &args.csv {
        std::fs::write(path, csv)
            .map_err(|e| anyhow::anyhow!("writing --csv {}: {e}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
