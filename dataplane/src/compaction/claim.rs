//! A job's claim on its inputs, renewed in the background for as long as the
//! job runs. When a renewal finds the claim gone (it expired: the job stalled
//! longer than the TTL, and another job may now hold the ranges) or cannot
//! reach the database for longer than the TTL, `lost` is set and the job
//! aborts before it swaps; the swap itself checks the claim again in its
//! transaction, so a lapse between the last renewal and the swap is caught too.

use crate::meta::{ClaimRange, DynMeta, MetaResult};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Claim {
    pub job: String,
    meta: DynMeta,
    pub lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Claim {
    /// Claims `ranges` for `job`; `None` if another job holds an overlapping range.
    pub async fn acquire(
        meta: &DynMeta,
        job: &str,
        ranges: &[ClaimRange],
        ttl: Duration,
    ) -> MetaResult<Option<Claim>> {
        if !meta.claim(job, ranges, ttl).await? {
            return Ok(None);
        }
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn(renew(meta.clone(), job.to_string(), ttl, lost.clone()));
        Ok(Some(Claim {
            job: job.to_string(),
            meta: meta.clone(),
            lost,
            renewer,
        }))
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Stops renewing and drops the claim (a swap already dropped it on success).
    pub async fn release(self) {
        self.renewer.abort();
        if let Err(e) = self.meta.release_claim(&self.job).await {
            tracing::warn!(job = %self.job, error = %e, "releasing a compaction claim; it expires by itself");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

async fn renew(meta: DynMeta, job: String, ttl: Duration, lost: Arc<AtomicBool>) {
    let every = ttl / 3;
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        match meta.renew_claim(&job, ttl).await {
            Ok(true) => last_ok = Instant::now(),
            Ok(false) => {
                tracing::warn!(%job, "compaction claim expired; the job aborts");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) if last_ok.elapsed() >= ttl => {
                tracing::warn!(%job, error = %e, "cannot renew the compaction claim; the job aborts");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => tracing::warn!(%job, error = %e, "renewing the compaction claim; retrying"),
        }
    }
}
