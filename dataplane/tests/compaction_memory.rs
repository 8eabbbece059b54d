//! Peak memory of one compaction job does not grow with its input: a real
//! `skyvault compact` process merges several times more input than the bound
//! and reports its own peak RSS.
//!
//! The input size is `SKYVAULT_COMPACTION_MEMORY_INPUT_MIB` (default 192, four times the bound, so
//! CI stays quick); the benchmark runs it with 4096 in release mode
//! (`e2e/bench-compaction.sh`, results in docs/benchmarks.md).

use bytes::Bytes;
use rand::RngCore;
use skyvault::meta::{FileKind, NewFile};
use skyvault::sstable::{Value, Writer};
use skyvault::standalone::{self, StandaloneConfig};
use std::process::Command;

const MIB: u64 = 1 << 20;
/// The bound the job must stay under, whatever the input size.
const PEAK_RSS_BOUND: u64 = 48 * MIB;

fn input_mib() -> u64 {
    std::env::var("SKYVAULT_COMPACTION_MEMORY_INPUT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(192)
}

/// Writes `total` bytes of L0 files (8 MiB each, 1 KiB random values, random
/// keys) straight into the store and the manifest, as flushes would.
async fn generate(dir: &std::path::Path, total: u64) {
    let mut config = StandaloneConfig::new(dir);
    config.maintenance = None;
    let parts = standalone::open(&config, None).await.unwrap();
    let mut rng = rand::rng();
    let files = total.div_ceil(8 * MIB);
    for f in 0..files {
        let mut keys: Vec<[u8; 16]> = (0..8 * 1024)
            .map(|_| {
                let mut k = [0u8; 16];
                rng.fill_bytes(&mut k);
                k
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut writer = Writer::new(Default::default());
        for key in &keys {
            let mut value = vec![0u8; 1024];
            rng.fill_bytes(&mut value);
            writer.add(key, &Value::Put(Bytes::from(value))).unwrap();
        }
        let entry_count = writer.entry_count();
        let data = writer.finish(f + 1, f + 1).unwrap();
        let object = format!("wal/gen-{f:06}.sst");
        let size_bytes = data.len() as u64;
        parts.store.put(&object, data).await.unwrap();
        let file = NewFile {
            object,
            kind: FileKind::Wal,
            level: 0,
            min_key: keys[0].to_vec(),
            max_key: keys[keys.len() - 1].to_vec(),
            entry_count,
            size_bytes,
        };
        parts.meta.commit_wal(file).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compaction_job_stays_under_its_memory_bound_whatever_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let total = input_mib() * MIB;
    generate(dir.path(), total).await;
    let out = Command::new(env!("CARGO_BIN_EXE_skyvault"))
        .args(["compact", "--data-dir"])
        .arg(dir.path())
        .args(["--l0-trigger-files", "1"])
        .args(["--max-input-bytes", &(2 * total).to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("compaction summary: {summary}");
    let bytes_in = summary["bytes_in"].as_u64().unwrap();
    let peak = summary["peak_rss_bytes"].as_u64().unwrap();
    assert_eq!(summary["outcome"], "compacted");
    assert!(bytes_in >= total * 9 / 10, "read {bytes_in} of {total}");
    assert!(
        peak < PEAK_RSS_BOUND,
        "peak RSS {} MiB for {} MiB of input (bound {} MiB)",
        peak / MIB,
        bytes_in / MIB,
        PEAK_RSS_BOUND / MIB
    );
    println!(
        "compaction_memory input_mib={} peak_rss_mib={} duration_ms={}",
        bytes_in / MIB,
        peak / MIB,
        summary["duration_ms"]
    );
}
