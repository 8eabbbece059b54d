//! One clock decides what purge may delete (issue 23 item 1, decision 0009):
//! a compaction job and purge whose process clocks are minutes apart lose
//! nothing. Skew is injected as an offset to each step's process clock
//! (`meta::set_clock_skew_ms`), never by waiting out the real lifetimes.
//!
//! With process clocks (before decision 0009) both halves fail: purge, ten
//! minutes ahead, sees the lagging job's claim as expired and deletes its
//! uploaded output as an orphan, which the job then swaps in; and the job
//! stamps the file it replaced ten minutes in the past, so purge with a
//! five-minute grace deletes it while readers of the old manifest still
//! need it.

use bytes::Bytes;
use skyvault::compaction::output_name;
use skyvault::meta::{ClaimRange, FileKind, NewFile, Swap, set_clock_skew_ms};
use skyvault::purge::{self, PurgeConfig};
use skyvault::sstable::{Entry, Value};
use skyvault::standalone::{self, StandaloneConfig};
use std::time::Duration;

const MINUTE_MS: i64 = 60_000;

/// One purge run with `grace`.
async fn purge_with(parts: &standalone::Parts, grace: Duration) -> purge::PurgeSummary {
    let config = PurgeConfig {
        grace,
        replaced_grace: None,
        dry_run: false,
    };
    purge::purge(&parts.store, &parts.meta, &config)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_lagging_job_and_a_leading_purge_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StandaloneConfig::new(dir.path());
    config.maintenance = None;
    config.batcher.wal_flush = None;
    let parts = standalone::open(&config, None).await.unwrap();
    let keys: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("k{i}"))).collect();
    let entries = keys
        .iter()
        .map(|k| Entry {
            key: k.clone(),
            value: Value::Put(Bytes::from_static(b"v")),
        })
        .collect();
    parts.batcher.write(entries).await.unwrap();
    let input = parts.meta.live_files().await.unwrap().remove(0);

    // The job's clock is ten minutes behind: it claims the input and
    // uploads its output (a copy of the input, so the data reads the same).
    set_clock_skew_ms(-10 * MINUTE_MS);
    let job = "00000000000000aa";
    let whole = ClaimRange {
        level: 0,
        min_key: Vec::new(),
        max_key: None,
    };
    let ttl = Duration::from_secs(60);
    assert!(parts.meta.claim(job, &[whole], ttl).await.unwrap());
    let output = output_name(job, 0);
    let bytes = parts.store.get(&input.object).await.unwrap();
    parts.store.put(&output, bytes).await.unwrap();

    // Purge's clock is ten minutes ahead, and no grace period at all: only
    // the live claim keeps the output.
    set_clock_skew_ms(10 * MINUTE_MS);
    let summary = purge_with(&parts, Duration::ZERO).await;
    assert!(
        summary.orphans_deleted.is_empty(),
        "purge deleted the output of a job whose claim is live: {:?}",
        summary.orphans_deleted
    );

    // The job swaps (its clock still behind); then purge, clocks agreeing
    // again, with a five-minute grace: the replaced input is young.
    set_clock_skew_ms(-10 * MINUTE_MS);
    let swap = Swap {
        inputs: vec![input.id],
        outputs: vec![NewFile {
            object: output.clone(),
            kind: FileKind::Run,
            level: 6,
            min_key: input.min_key.clone(),
            max_key: input.max_key.clone(),
            entry_count: input.entry_count,
            tombstone_count: 0,
            size_bytes: input.size_bytes,
        }],
        seq: input.seq,
        moves: Vec::new(),
        claim: Some(job.into()),
    };
    parts.meta.swap(swap).await.unwrap();
    set_clock_skew_ms(0);
    let summary = purge_with(&parts, Duration::from_secs(300)).await;
    assert!(
        summary.replaced_deleted.is_empty(),
        "purge deleted a file replaced a moment ago: {:?}",
        summary.replaced_deleted
    );
    parts
        .store
        .get(&input.object)
        .await
        .expect("the replaced input is still readable by old manifests");
    parts
        .store
        .get(&output)
        .await
        .expect("the installed output exists");
    parts.index.catch_up().await.unwrap();
    let values = parts.index.get_many(&keys).await.unwrap();
    assert!(values.iter().all(|v| v.as_deref() == Some(&b"v"[..])));
}
