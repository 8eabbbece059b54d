//! Purge: deletes objects nothing references any more — files replaced by
//! compaction, and orphans of writes that crashed between PUT and commit —
//! once they are older than a grace period (invariant 7).
//!
//! The grace period must exceed the longest time a reader can hold an old
//! manifest (an in-flight request, or an index that lost its database) plus
//! the longest flush (PUT → commit), so no object a reader may still open and
//! no object about to be committed is deleted. Compaction outputs do not rely
//! on the grace period: their names carry the job's id, and an output of a job
//! whose claim is live is never an orphan, however long the job runs.

use crate::compaction::job_of_output;
use crate::meta::{DynMeta, MetaError};
use crate::metrics::metrics;
use crate::objstore::{DynStore, StoreError};
use crate::writer_intent::writer_of_wal;
use serde::Serialize;
use std::collections::HashSet;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Prefixes under which the store writes objects; nothing else is touched.
pub const OBJECT_PREFIXES: &[&str] = &["wal/", "run/"];

#[derive(Clone, Debug)]
pub struct PurgeConfig {
    /// How old an unreferenced object (an orphan) must be before it goes.
    pub grace: Duration,
    /// How long ago a replaced file must have been replaced before it goes
    /// (`None`: `grace`). It needs only outlast the readers of older
    /// manifests — a request, or an index within its max manifest age —
    /// not the longest flush, so it may be shorter: standalone uses a
    /// minute, which bounds the dead bytes compaction leaves behind.
    pub replaced_grace: Option<Duration>,
    pub dry_run: bool,
}

impl Default for PurgeConfig {
    fn default() -> Self {
        PurgeConfig {
            grace: Duration::from_secs(3600),
            replaced_grace: None,
            dry_run: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Identity(#[from] crate::store_identity::IdentityError),
}

/// What one run did; printed as JSON by `skyvault purge`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PurgeSummary {
    pub dry_run: bool,
    /// Replaced by compaction and past the grace period.
    pub replaced_deleted: Vec<String>,
    /// Never committed (or their row is gone) and past the grace period.
    pub orphans_deleted: Vec<String>,
    /// Unreferenced but still within the grace period.
    pub kept_young: u64,
    /// Outputs of compaction jobs still running (claim live) and flushes of
    /// batchers whose writer intent is live, not yet committed.
    pub kept_in_progress: u64,
    pub live_objects: u64,
    pub duration_ms: u64,
}

pub async fn purge(
    store: &DynStore,
    meta: &DynMeta,
    config: &PurgeConfig,
) -> Result<PurgeSummary, PurgeError> {
    let started = Instant::now();
    let result = run(store, meta, config).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    let m = metrics();
    m.jobs.with_label_values(&["purge", outcome]).inc();
    m.job_duration
        .with_label_values(&["purge"])
        .observe(started.elapsed().as_secs_f64());
    let mut summary = result?;
    summary.duration_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

async fn run(
    store: &DynStore,
    meta: &DynMeta,
    config: &PurgeConfig,
) -> Result<PurgeSummary, PurgeError> {
    // Deleting what the database does not name is only safe when database
    // and bucket belong to the same store.
    crate::store_identity::verify(store, meta).await?;
    let mut summary = PurgeSummary {
        dry_run: config.dry_run,
        ..Default::default()
    };
    // List the objects before reading the rows: an object committed between
    // the two reads is then seen as referenced, never as an orphan.
    let mut objects = Vec::new();
    for prefix in OBJECT_PREFIXES {
        objects.extend(store.list(prefix).await?);
    }
    // Claims before rows: a job whose claim is gone by now has either
    // installed its outputs (the rows read next include them) or given up.
    let running: HashSet<String> = meta.live_claim_jobs().await?.into_iter().collect();
    // Likewise writer intents: an intent seen expired here never commits
    // again, so its objects not in the rows read next are orphans for good.
    let writing: HashSet<String> = meta.live_writers().await?.into_iter().collect();
    let rows = meta.all_files().await?;
    let known: HashSet<&str> = rows.iter().map(|f| f.object.as_str()).collect();
    summary.live_objects = rows.iter().filter(|f| f.removed_version.is_none()).count() as u64;
    // One clock decides (docs/decisions/0009-one-clock.md): the database's,
    // which stamped every removal, claim and intent compared here.
    let now_ms = meta.clock_ms().await?;
    let cutoff_ms = now_ms - config.grace.as_millis() as i64;
    let replaced_grace = config.replaced_grace.unwrap_or(config.grace);
    let replaced_cutoff_ms = now_ms - replaced_grace.as_millis() as i64;

    let mut forget = Vec::new();
    for row in rows.iter().filter(|f| f.removed_version.is_some()) {
        if row.removed_at_ms.unwrap_or(i64::MAX) > replaced_cutoff_ms {
            summary.kept_young += 1;
            continue;
        }
        if !config.dry_run {
            store.delete(&row.object).await?;
            count_deleted("replaced");
        }
        summary.replaced_deleted.push(row.object.clone());
        forget.push(row.id);
    }
    // An orphan's age is its LastModified (the store's clock) against the
    // database's: only for objects no live claim or intent explains.
    let cutoff = UNIX_EPOCH + Duration::from_millis(cutoff_ms.max(0) as u64);
    for object in objects.iter().filter(|o| !known.contains(o.path.as_str())) {
        let in_progress = job_of_output(&object.path).is_some_and(|job| running.contains(job))
            || writer_of_wal(&object.path).is_some_and(|writer| writing.contains(writer));
        if in_progress {
            summary.kept_in_progress += 1;
            continue;
        }
        if object.last_modified > cutoff {
            summary.kept_young += 1;
            continue;
        }
        if !config.dry_run {
            store.delete(&object.path).await?;
            count_deleted("orphan");
        }
        summary.orphans_deleted.push(object.path.clone());
    }
    if !config.dry_run && !forget.is_empty() {
        meta.forget_files(&forget).await?;
    }
    Ok(summary)
}

fn count_deleted(reason: &str) {
    metrics()
        .job_objects_deleted
        .with_label_values(&["purge", reason])
        .inc();
}
