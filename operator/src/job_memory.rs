//! Memory of the compaction and purge Jobs when the spec gives none, from their measured
//! peak RSS (docs/operations.md, "Memory of a compaction Job" and "Memory of a purge Job";
//! the commands and numbers are in docs/benchmarks.md).

use crate::crd::{CompactionSpec, SkyVault};
use crate::l0_jobs::DEFAULT_MAX_INPUT_BYTES;

const MIB: i64 = 1024 * 1024;

/// The runtime, the inputs' metadata, buffers and the two multipart parts (one being built,
/// one uploading) of a compaction Job: measured 126 MiB with 13 inputs and 64 MiB outputs,
/// of which the inputs' reads and the output account for about 30.
const COMPACT_BASE_MEMORY: i64 = 96 * MIB;
/// Per input file: two 256 KiB ranged reads in flight (`CHUNK_BYTES`).
const COMPACT_PER_INPUT_MEMORY: i64 = 512 * 1024;
/// Percent of `targetFileBytes` the output being written holds until it is finished: an
/// 8-byte hash per entry (in a vector that grows by doubling), then the bloom filter and
/// the block index. Measured 9.4 bytes per entry, 0.40 per byte at the 23.6 bytes per
/// entry that 16-byte keys and 16-byte values take on disk; smaller entries need more.
const COMPACT_OUTPUT_PERCENT: i64 = 45;
/// Level-0 files one Job merges at most (the data plane's bound).
const COMPACT_MAX_L0_INPUTS: i64 = 256;
/// Smallest memory request of a compaction Job the operator sizes.
pub const COMPACT_MIN_MEMORY_REQUEST: i64 = 256 * MIB;

/// Memory request and limit of a compaction Job:
/// `inputs = 256 level-0 files + maxInputBytes / targetFileBytes`,
/// `peak = 96 MiB + inputs x 512 KiB + 45 % of targetFileBytes`; the request is the peak
/// (at least 256 MiB, rounded up to MiB), the limit twice the request (allocator headroom).
/// Defaults (1 GiB, 64 MiB): 261 MiB / 522 MiB; 4 GiB files: 2068 MiB / 4136 MiB.
pub fn compaction_memory(c: &CompactionSpec) -> (i64, i64) {
    let max_input = c.max_input_bytes.unwrap_or(DEFAULT_MAX_INPUT_BYTES as i64);
    let file = c.target_file_bytes.max(1);
    let inputs = COMPACT_MAX_L0_INPUTS + (max_input + file - 1) / file;
    let request = compaction_peak(inputs, file).max(COMPACT_MIN_MEMORY_REQUEST);
    (request, request.saturating_mul(2))
}

/// Peak memory of a compaction Job reading `inputs` files and writing outputs of
/// `output_bytes` (rounded up to MiB).
fn compaction_peak(inputs: i64, output_bytes: i64) -> i64 {
    let peak = COMPACT_BASE_MEMORY
        .saturating_add(inputs.saturating_mul(COMPACT_PER_INPUT_MEMORY))
        .saturating_add(output_bytes / 100 * COMPACT_OUTPUT_PERCENT);
    round_up_mib(peak)
}

/// A purge Job's runtime, connections and the file rows of a small store: measured 34 MiB.
const PURGE_BASE_MEMORY: i64 = 64 * MIB;
/// Per object listed: its name and metadata in the listing, and its name in the sets and
/// summaries purge builds. Measured 143 bytes when it only lists them (170 MiB over
/// 1,006,033 objects) and 235 bytes when it deletes every one (258 MiB over 1,000,315).
const PURGE_PER_OBJECT_MEMORY: i64 = 256;
/// Objects budgeted at least: a store's objects are its live files plus every file
/// replaced within the grace period plus orphans, which no reading tells.
pub const PURGE_MIN_OBJECTS: i64 = 1_000_000;
/// Objects budgeted per live file the index last reported (each live file stands for
/// itself and the files it replaced that still wait out the grace period).
const PURGE_OBJECTS_PER_LIVE_FILE: i64 = 4;

/// Memory request and limit of a purge Job, which holds the whole listing (until purge
/// streams it): `64 MiB + 256 B x objects`, `objects = max(1,000,000, 4 x live files in
/// status.compactionDebt)`; the limit is twice the request. 309 MiB / 618 MiB up to 250,000
/// live files.
pub fn purge_memory(sv: &SkyVault) -> (i64, i64) {
    let live: i64 = (sv.status.as_ref())
        .and_then(|s| s.compaction_debt.as_ref())
        .map_or(0, |d| d.levels.iter().map(|l| l.files).sum());
    let objects = live
        .saturating_mul(PURGE_OBJECTS_PER_LIVE_FILE)
        .max(PURGE_MIN_OBJECTS);
    let request = round_up_mib(
        PURGE_BASE_MEMORY.saturating_add(objects.saturating_mul(PURGE_PER_OBJECT_MEMORY)),
    );
    (request, request.saturating_mul(2))
}

fn round_up_mib(bytes: i64) -> i64 {
    bytes.saturating_add(MIB - 1) / MIB * MIB
}

#[cfg(test)]
#[path = "job_memory_tests.rs"]
mod tests;
