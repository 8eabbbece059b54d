use super::*;
use crate::crd::{CompactionDebtStatus, LevelDebtStatus, SkyVaultStatus};
use crate::testutil::sample;

/// Measured peak RSS (docs/benchmarks.md, "Compaction and purge Job memory"): a `skyvault
/// compact` of 13 L0 files (813 MB, 33 M entries of 16-byte keys and 16-byte values) into
/// 64 MiB outputs, and into one 767 MB output (`--target-file-bytes 4GiB`).
#[test]
fn the_compaction_formula_covers_the_measured_peaks() {
    for (inputs, output, measured_mib) in [(13, 64 * MIB, 126), (13, 767_656_446, 418)] {
        let sized = compaction_peak(inputs, output);
        assert!(
            sized >= measured_mib * MIB,
            "{inputs} inputs, {output} B outputs: {} MiB sized, {measured_mib} MiB measured",
            sized / MIB
        );
    }
}

#[test]
fn compaction_memory_follows_the_inputs_and_the_output_size() {
    let mut c = CompactionSpec::default();
    // 256 + 1 GiB / 64 MiB = 272 inputs: 96 + 136 + 28.8 = 261 MiB.
    assert_eq!(compaction_memory(&c), (261 * MIB, 522 * MIB));
    // Small files: 256 + 1 GiB / 2 MiB = 768 inputs: 96 + 384 + 0.9 = 481 MiB.
    c.target_file_bytes = 2 * MIB;
    assert_eq!(compaction_memory(&c), (481 * MIB, 962 * MIB));
    // The largest files the CRD allows: the output's hashes dominate.
    c.target_file_bytes = 4 << 30;
    assert_eq!(compaction_memory(&c), (2068 * MIB, 4136 * MIB));
    c.max_input_bytes = Some(1 << 40);
    c.target_file_bytes = 65_536;
    assert!(compaction_memory(&c).1 > 0, "never overflows");
}

fn with_live_files(files: i64) -> SkyVault {
    let mut sv = sample();
    let level = LevelDebtStatus {
        level: 6,
        files,
        bytes: 0,
        target_bytes: 0,
        score: 0.0,
    };
    let debt: CompactionDebtStatus = serde_json::from_value(serde_json::json!({
        "l0Files": 0, "l0Bytes": 0, "pendingBytes": 0, "score": 0.0, "needsCompaction": false,
        "manifestVersion": 1, "observedAt": "2030-01-01T00:00:00Z", "summary": "none",
    }))
    .unwrap();
    sv.status = Some(SkyVaultStatus {
        compaction_debt: Some(CompactionDebtStatus {
            levels: vec![level],
            ..debt
        }),
        ..SkyVaultStatus::default()
    });
    sv
}

#[test]
fn purge_memory_covers_a_million_objects_and_grows_with_the_live_files() {
    // Measured: 258 MiB deleting 1,000,315 objects, 170 MiB listing 1,006,033.
    let (request, limit) = purge_memory(&sample());
    assert_eq!((request, limit), (309 * MIB, 618 * MIB));
    assert!(request >= 258 * MIB);
    assert_eq!(purge_memory(&with_live_files(250_000)).0, 309 * MIB);
    // 1 M live files: 4 M objects budgeted, 64 MiB + 256 B each.
    assert_eq!(purge_memory(&with_live_files(1_000_000)).0, 1041 * MIB);
}
