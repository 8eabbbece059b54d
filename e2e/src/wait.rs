//! Waiting on a condition with a deadline (never a bare sleep).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Default deadline for things the operator or API server should do promptly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Ok`, or fails after `timeout` with `what`
/// and the last error `check` returned (its "why not yet").
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                bail!("timed out after {timeout:?} waiting for {what}; last: {e:#}")
            }
            Err(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Checks that `check` keeps returning `Ok` for the whole `period` (used to
/// show that something does *not* happen, e.g. no second Job is created).
pub async fn holds_for<F, Fut>(what: &str, period: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let end = Instant::now() + period;
    loop {
        if let Err(e) = check().await {
            bail!("{what} stopped holding: {e:#}");
        }
        if Instant::now() >= end {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
