//! Peak memory of one compaction job depends on how many files it reads, not
//! on their size: a real `skyvault compact` process merges several times more
//! input than its bound (`BASE + inputs × PER_INPUT`) and reports its own peak
//! RSS.
//!
//! Sizes: `SKYVAULT_COMPACTION_MEMORY_INPUT_MIB` (default 192, about three
//! times the bound, so CI stays quick) in files of
//! `SKYVAULT_COMPACTION_MEMORY_FILE_MIB` (default 8); the benchmark runs 4096
//! in 32 MiB files in release mode (`e2e/bench-compaction.sh`, results in
//! docs/benchmarks.md).

use bytes::Bytes;
use rand::RngCore;
use skyvault::meta::{FileKind, NewFile};
use skyvault::sstable::{Value, Writer};
use skyvault::standalone::{self, StandaloneConfig};
use std::process::Command;

const MIB: u64 = 1 << 20;
/// The job's peak RSS stays under `BASE + inputs × PER_INPUT` (runtime and
/// one output part; per input two 256 KiB chunks, a decoded block and the
/// file's index and filter, with allocator slack), whatever the bytes.
const BASE: u64 = 24 * MIB;
const PER_INPUT: u64 = 3 * MIB / 2;

fn env_mib(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `total` bytes of L0 files (`file` bytes each, 1 KiB random values,
/// random keys) straight into the store and the manifest, as flushes of the
/// WAL tier would.
async fn generate(dir: &std::path::Path, total: u64, file: u64) {
    let mut config = StandaloneConfig::new(dir);
    config.maintenance = None;
    config.batcher.wal_flush = None;
    let parts = standalone::open(&config, None).await.unwrap();
    let mut rng = rand::rng();
    let files = total.div_ceil(file);
    for f in 0..files {
        let mut keys: Vec<[u8; 16]> = (0..file / 1024)
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
        let object = format!("run/gen-{f:06}.sst");
        let size_bytes = data.len() as u64;
        parts.store.put(&object, data).await.unwrap();
        let file = NewFile {
            object,
            kind: FileKind::Run,
            level: 0,
            min_key: keys[0].to_vec(),
            max_key: keys[keys.len() - 1].to_vec(),
            entry_count,
            tombstone_count: 0,
            size_bytes,
        };
        parts.meta.commit_wal(file).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compaction_job_stays_under_its_memory_bound_whatever_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let total = env_mib("SKYVAULT_COMPACTION_MEMORY_INPUT_MIB", 192) * MIB;
    let file = env_mib("SKYVAULT_COMPACTION_MEMORY_FILE_MIB", 8) * MIB;
    generate(dir.path(), total, file).await;
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
    let inputs = summary["inputs"].as_array().unwrap().len() as u64;
    let bound = BASE + inputs * PER_INPUT;
    assert!(
        bytes_in >= 3 * bound,
        "the input must dwarf the bound: {bytes_in} vs {bound}"
    );
    assert!(
        peak < bound,
        "peak RSS {} MiB for {} MiB of input in {inputs} files (bound {} MiB)",
        peak / MIB,
        bytes_in / MIB,
        bound / MIB
    );
    println!(
        "compaction_memory input_mib={} inputs={inputs} bound_mib={} peak_rss_mib={} duration_ms={} bytes_out_mib={}",
        bytes_in / MIB,
        bound / MIB,
        peak / MIB,
        summary["duration_ms"],
        summary["bytes_out"].as_u64().unwrap_or(0) / MIB
    );
}
