//! `just chaos`: the crash campaign (e2e/src/chaos). Environment:
//! CHAOS_SECONDS (default 60) bounds the faults phase, CHAOS_FAULTS (default
//! 100000) the number of faults, CHAOS_MODE = standalone | distributed | both
//! (default both), CHAOS_CLIENTS (default 4), CHAOS_SEED (default: the
//! time). Needs `skyvault` and `skyvault-lazyfs` next to this binary (or
//! SKYVAULT_BIN), root and /dev/fuse. Ends with one summary line; exits 1 if
//! anything was lost or wrong.

use anyhow::{Context, Result};
use skyvault_e2e::chaos::{self, Config};
use std::path::PathBuf;

fn env<T: std::str::FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}")),
        Err(_) => Ok(default),
    }
}

fn main() -> Result<()> {
    let bin_dir: PathBuf = match std::env::var_os("SKYVAULT_BIN") {
        Some(bin) => PathBuf::from(bin)
            .parent()
            .context("SKYVAULT_BIN has no directory")?
            .to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .context("locating this binary's directory")?
            .to_path_buf(),
    };
    if std::env::var_os("SKYVAULT_BIN").is_none() {
        // SAFETY: no other thread exists yet (the runtime starts below).
        unsafe { std::env::set_var("SKYVAULT_BIN", bin_dir.join("skyvault")) };
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let config = Config {
        seconds: env("CHAOS_SECONDS", 60)?,
        max_faults: env("CHAOS_FAULTS", 100_000)?,
        clients: env("CHAOS_CLIENTS", 4)?,
        mode: env("CHAOS_MODE", chaos::Mode::Both)?,
        seed: env("CHAOS_SEED", seed)?,
        bin_dir,
    };
    anyhow::ensure!(config.clients > 0, "CHAOS_CLIENTS must be at least 1");
    println!("chaos: {config:?}");
    let summary = tokio::runtime::Runtime::new()?.block_on(chaos::run(&config))?;
    println!("{}", summary.line());
    if summary.verdict.lost > 0 || summary.verdict.wrong > 0 {
        std::process::exit(1);
    }
    Ok(())
}
