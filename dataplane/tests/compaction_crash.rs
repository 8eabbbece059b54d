//! A `skyvault compact` process that dies at each stage leaves a store that
//! reads correctly, and a later purge removes its leftovers.

use bytes::Bytes;
use skyvault::purge::{self, PurgeConfig};
use skyvault::sstable::{Entry, Value};
use skyvault::standalone::{self, StandaloneConfig};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

async fn write_data(dir: &Path) -> Vec<(Bytes, Option<Bytes>)> {
    let mut config = StandaloneConfig::new(dir);
    config.maintenance = None;
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

#[tokio::test]
async fn compact_killed_at_each_stage_leaves_a_readable_store() {
    for stage in [
        "before_output_upload",
        "after_output_upload",
        "before_swap",
        "after_swap",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let expected = write_data(dir.path()).await;
        let out = Command::new(env!("CARGO_BIN_EXE_skyvault"))
            .args(["compact", "--data-dir"])
            .arg(dir.path())
            .env("SKYVAULT_COMPACT_CRASH_AT", stage)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{stage}: the crash hook did not fire"
        );
        let uploaded = list(dir.path(), "run") > 0;
        assert_eq!(
            uploaded,
            stage != "before_output_upload",
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
            dry_run: false,
        };
        // The dead job's claim is still live (it expires after its TTL):
        // until then purge keeps the outputs it had uploaded.
        let dead_jobs: Vec<String> = std::fs::read_dir(dir.path().join("objects/run"))
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let name = format!("run/{}", e.ok()?.file_name().to_string_lossy());
                skyvault::compaction::job_of_output(&name).map(str::to_string)
            })
            .filter(|_| stage != "after_swap")
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
}
