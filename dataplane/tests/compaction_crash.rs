//! A `skyvault compact` or `skyvault flush` process that dies at each stage
//! leaves a store that reads correctly (nothing acked is lost), and a later
//! purge removes its leftovers. Fixed failpoints, one per stage: the crash
//! campaign is random and cannot promise every step is hit.

use bytes::Bytes;
use skyvault::purge::{self, PurgeConfig};
use skyvault::sstable::{Entry, Value};
use skyvault::standalone::{self, StandaloneConfig};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Ten group commits over twenty keys (with deletes); `to_l0` flushes each
/// into an L0 file of its own (work for `compact`), else they stay in the
/// WAL tier (work for `flush`). Returns what every key reads.
async fn write_data(dir: &Path, to_l0: bool) -> Vec<(Bytes, Option<Bytes>)> {
    let mut config = StandaloneConfig::new(dir);
    config.maintenance = None;
    config.batcher.wal_flush = None;
    let parts = standalone::open(&config, None).await.unwrap();
    for i in 0..10 {
        let entries = (0..20)
            .map(|j| Entry {
                key: format!("k{j:02}").into(),
                value: if (i + j) % 7 == 0 {
                    Value::Delete
                } else {
                    Value::Put(format!("{i}").into())
                },
            })
            .collect();
        parts.batcher.write(entries).await.unwrap();
        if to_l0 {
            let limits = skyvault::wal_flush::DEFAULT_LIMITS;
            let config = skyvault::compaction::CompactionConfig::default();
            skyvault::compaction::flush(&parts.store, &parts.meta, &config, &limits, true)
                .await
                .unwrap();
        }
    }
    parts.index.catch_up().await.unwrap();
    let keys: Vec<Bytes> = (0..20).map(|j| Bytes::from(format!("k{j:02}"))).collect();
    let values = parts.index.get_many(&keys).await.unwrap();
    keys.into_iter().zip(values).collect()
}

fn list(dir: &Path, sub: &str) -> usize {
    std::fs::read_dir(dir.join("objects").join(sub))
        .map(|d| d.count())
        .unwrap_or(0)
}

const STAGES: [&str; 4] = [
    "before_output_upload",
    "after_output_upload",
    "before_swap",
    "after_swap",
];

#[tokio::test]
async fn compact_killed_at_each_stage_leaves_a_readable_store() {
    for stage in STAGES {
        killed_at(stage, "compact").await;
    }
}

/// The WAL tier's flush is a job like compaction: the same stages, the same
/// guarantees (decision 0008). Before the swap the WAL objects are still
/// live and read from memory; after it, the L0 file.
#[tokio::test]
async fn flush_killed_at_each_stage_leaves_a_readable_store() {
    for stage in STAGES {
        killed_at(stage, "flush").await;
    }
}

async fn killed_at(stage: &str, command: &str) {
    {
        let dir = tempfile::tempdir().unwrap();
        let expected = write_data(dir.path(), command == "compact").await;
        let stage = format!("{command} {stage}");
        let runs_before = list(dir.path(), "run");
        let out = Command::new(env!("CARGO_BIN_EXE_skyvault"))
            .args([command, "--data-dir"])
            .arg(dir.path())
            .env(
                "SKYVAULT_COMPACT_CRASH_AT",
                stage.split(' ').nth(1).unwrap(),
            )
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{stage}: the crash hook did not fire"
        );
        let uploaded = list(dir.path(), "run") > runs_before;
        assert_eq!(
            uploaded,
            !stage.ends_with("before_output_upload"),
            "{stage}: outputs written exactly from the first upload on"
        );

        let mut config = StandaloneConfig::new(dir.path());
        config.maintenance = None;
        let parts = standalone::open(&config, None).await.unwrap();
        let keys: Vec<Bytes> = expected.iter().map(|(k, _)| k.clone()).collect();
        let got = parts.index.get_many(&keys).await.unwrap();
        for ((key, want), got) in expected.iter().zip(got) {
            assert_eq!(&got, want, "{stage}: key {key:?}");
        }
        let no_grace = PurgeConfig {
            grace: Duration::ZERO,
            ..Default::default()
        };
        // The dead job's claim is still live (it expires after its TTL):
        // until then purge keeps the outputs it had uploaded.
        let live_objects: std::collections::HashSet<String> = parts
            .meta
            .all_files()
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.object)
            .collect();
        let dead_jobs: Vec<String> = std::fs::read_dir(dir.path().join("objects/run"))
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let name = format!("run/{}", e.ok()?.file_name().to_string_lossy());
                let name = (!live_objects.contains(&name)).then_some(name)?;
                skyvault::compaction::job_of_output(&name).map(str::to_string)
            })
            .filter(|_| !stage.ends_with("after_swap"))
            .collect();
        let kept = purge::purge(&parts.store, &parts.meta, &no_grace)
            .await
            .unwrap();
        assert_eq!(
            kept.kept_in_progress,
            dead_jobs.len() as u64,
            "{stage}: outputs of a job with a live claim are kept"
        );
        // The claim expires (here: now).
        for job in &dead_jobs {
            parts.meta.release_claim(job).await.unwrap();
        }
        purge::purge(&parts.store, &parts.meta, &no_grace)
            .await
            .unwrap();
        let live: usize = parts.meta.live_files().await.unwrap().len();
        let on_disk = list(dir.path(), "run") + list(dir.path(), "wal");
        assert_eq!(on_disk, live, "{stage}: purge left unreferenced objects");
        let got = parts.index.get_many(&keys).await.unwrap();
        for ((key, want), got) in expected.iter().zip(got) {
            assert_eq!(&got, want, "{stage} after purge: key {key:?}");
        }
    }
}

#[test]
fn compact_prints_a_json_summary_and_reports_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_skyvault");
    let out = Command::new(bin)
        .args(["compact", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "nothing to do has its own exit status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["outcome"], "nothing_to_do");
    assert!(summary["peak_rss_bytes"].as_u64().unwrap() > 0);
    let out = Command::new(bin)
        .args(["purge", "--dry-run", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin)
        .arg("compact")
        .env_remove("SKYVAULT_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--data-dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A job budget below the base level's target is refused, naming both flags.
    let out = Command::new(bin)
        .args(["compact", "--data-dir"])
        .arg(dir.path())
        .args([
            "--max-input-bytes",
            "16777216",
            "--level-base-bytes",
            "268435456",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--max-input-bytes (16777216) must be at least --level-base-bytes"),
        "{stderr}"
    );
}
