//! Write back-pressure from real debt (decision 0008): stalls at the L0 and
//! WAL-tier bounds with nothing written, pacing past the L0 slowdown trigger,
//! and none of it for ordinary small commits.

mod common;

use common::{flush_wal_tier as flush, quiet_config as config};
use skyvault::compaction::{self, CompactionConfig, Outcome};
use skyvault::lsm::LsmConfig;
use skyvault::sstable::{Entry, Value};
use skyvault::standalone::{self, Parts, StandaloneConfig};
use skyvault::write_stall::MAX_FLUSH_GAP;
use std::path::Path;
use std::time::{Duration, Instant};

/// Polls `done` every 20 ms until it holds, failing with `what` after 30 s.
async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A config whose batcher flushes the WAL tier into L0 as soon as it holds
/// anything (the flush loop runs as in production, on the polled counts),
/// so L0 files pile up at the pace of the tests' writes.
fn flush_every_commit(dir: &Path) -> StandaloneConfig {
    let mut config = config(dir);
    config.batcher.wal_flush = Some(skyvault::wal_flush::WalFlushConfig {
        limits: skyvault::compaction::FlushLimits {
            flush_bytes: 1 << 30,
            flush_files: 1,
            max_files: 4096,
            max_bytes: 1 << 30,
        },
        ..Default::default()
    });
    config
}

fn put(i: usize) -> Vec<Entry> {
    vec![Entry {
        key: format!("k{i}").into(),
        value: Value::Put("v".into()),
    }]
}

/// Writes until one fails `Stalled` (within a deadline: the counts are
/// polled, and each stalled attempt waits `stall_max_wait` before failing).
async fn write_until_stalled(parts: &Parts, what: &str) -> skyvault::batcher::WriteError {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut i = 100;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "writes never stalled at {what}"
        );
        match parts.batcher.write(put(i)).await {
            Err(e @ skyvault::batcher::WriteError::Stalled(_)) => return e,
            Ok(_) => i += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

/// Writes go through again within a few seconds.
async fn writes_resume(parts: &Parts) {
    for _ in 0..100 {
        if parts.batcher.write(put(1000)).await.is_ok() {
            return;
        }
    }
    panic!("writes did not resume");
}

/// Write stalls: at the L0 bound writes wait and then fail RESOURCE_EXHAUSTED
/// with nothing written; once compaction brings L0 down they go through.
#[tokio::test]
async fn writes_stall_at_the_l0_bound_until_compaction_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = flush_every_commit(dir.path());
    config.batcher.l0_stop_files = 3;
    config.batcher.stall_max_wait = Duration::from_millis(300);
    let parts = standalone::open(&config, None).await.unwrap();
    let stalled = write_until_stalled(&parts, "the L0 bound").await;
    let message = stalled.to_string();
    assert!(message.contains("nothing was written"), "{message}");
    assert!(message.contains("--l0-stop-files"), "{message}");
    let before = parts.meta.live_files().await.unwrap().len();
    assert!(parts.batcher.write(put(999)).await.is_err());
    assert_eq!(parts.meta.live_files().await.unwrap().len(), before);
    // Compaction drains L0; writes resume.
    let cfg = CompactionConfig {
        lsm: LsmConfig {
            l0_trigger_files: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let s = compaction::compact(&parts.store, &parts.meta, &cfg)
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Compacted, "{s:?}");
    writes_resume(&parts).await;
}

/// The WAL tier's bound: when its flush falls behind (here: no flush runs),
/// writes wait and then fail naming `--wal-stop-bytes`; a flush lets them on.
#[tokio::test]
async fn writes_stall_at_the_wal_bound_until_the_tier_is_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.batcher.wal_stop_bytes = 4096;
    config.batcher.stall_max_wait = Duration::from_millis(300);
    let parts = standalone::open(&config, None).await.unwrap();
    let stalled = write_until_stalled(&parts, "the WAL bound")
        .await
        .to_string();
    assert!(stalled.contains("--wal-stop-bytes"), "{stalled}");
    let counts = parts.meta.tier_counts().await.unwrap();
    assert!(counts.wal_bytes >= 4096, "{counts:?}");
    assert_eq!(flush(&parts).await.outcome, Outcome::Compacted);
    writes_resume(&parts).await;
}

/// Ordinary commits, however many, never reach a stall or slowdown trigger:
/// they land in the WAL tier, and only its flushes make L0 files.
#[tokio::test]
async fn many_small_commits_are_not_paced() {
    let dir = tempfile::tempdir().unwrap();
    let parts = standalone::open(&config(dir.path()), None).await.unwrap();
    let writers = (0..16).map(|c| {
        let batcher = parts.batcher.clone();
        async move {
            for round in 0..20 {
                batcher.write(put(c * 100 + round)).await.unwrap();
            }
        }
    });
    futures::future::join_all(writers).await;
    let counts = parts.meta.tier_counts().await.unwrap();
    assert_eq!(counts.l0_files, 0, "{counts:?}");
    assert!(counts.wal_files > 1, "{counts:?}");
    // Once the batcher's poll has seen the commits: still no pacing.
    wait_until("the batcher never saw the commits", || async {
        parts.batcher.tier_counts() == counts
    })
    .await;
    assert_eq!(parts.batcher.flush_gap(), Duration::ZERO);
}

/// Write slowdown: past the slowdown trigger the batcher spaces its flushes
/// (fewer, larger group commits, so fewer L0 files) and no write fails.
#[tokio::test]
async fn writes_slow_down_past_the_slowdown_trigger_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = flush_every_commit(dir.path());
    config.batcher.l0_slowdown_files = 2;
    let parts = standalone::open(&config, None).await.unwrap();
    // Four flushes, four L0 files: a write, then wait for its flush.
    for i in 0..4 {
        parts.batcher.write(put(i)).await.unwrap();
        let flushed = || async { parts.meta.tier_counts().await.unwrap().l0_files > i as u64 };
        wait_until(&format!("commit {i} was never flushed"), flushed).await;
    }
    // Group commits made so far: every WAL object ever written (no purge runs).
    let commits = || async { parts.store.list("wal/").await.unwrap().len() };
    // The L0 count is polled: wait until the batcher sees the 4 flushed files.
    wait_until("the slowdown never engaged", || async {
        parts.batcher.flush_gap() >= MAX_FLUSH_GAP
    })
    .await;
    let before = commits().await;
    let started = std::time::Instant::now();
    let writers = (0..64).map(|c| {
        let batcher = parts.batcher.clone();
        async move {
            for round in 0..3 {
                batcher.write(put(1000 + c * 10 + round)).await.unwrap();
            }
        }
    });
    futures::future::join_all(writers).await;
    let elapsed = started.elapsed();
    let flushes = commits().await - before;
    // Flush starts are at least MAX_FLUSH_GAP apart (4 files = twice the trigger).
    let bound = (elapsed.as_secs_f64() / MAX_FLUSH_GAP.as_secs_f64()) as u64 + 2;
    assert!(
        flushes as u64 <= bound,
        "{flushes} flushes in {elapsed:?}: not spaced by {MAX_FLUSH_GAP:?}"
    );
    assert!(flushes < 64 * 3, "writes were not batched");
}
