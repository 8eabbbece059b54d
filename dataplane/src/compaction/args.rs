//! Command-line flags (each also an environment variable) for the LSM shape
//! and compaction bounds (sizes as bytes or with a suffix: `256MiB`), shared by `skyvault standalone`, `skyvault compact`
//! and `skyvault index` (which reports the debt against the same targets).

use super::CompactionConfig;
use crate::lsm::LsmConfig;

#[derive(clap::Args, Clone, Debug)]
pub struct LsmArgs {
    /// Target size of the base level (the first level below L0 that holds data);
    /// each deeper level is `--level-size-ratio` times larger.
    #[arg(long, env = "SKYVAULT_LEVEL_BASE_BYTES", default_value_t = 256 << 20,
          value_parser = crate::byte_size::Bytes::range(1 << 20..=1 << 40))]
    pub level_base_bytes: u64,
    /// Size ratio between consecutive levels.
    #[arg(long, env = "SKYVAULT_LEVEL_SIZE_RATIO", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(2..=100))]
    pub level_size_ratio: u64,
    /// L0 (flushed WAL files) is compacted once it holds this many files.
    #[arg(long, env = "SKYVAULT_L0_TRIGGER_FILES", default_value_t = 8,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub l0_trigger_files: u64,
}

impl LsmArgs {
    pub fn config(&self) -> LsmConfig {
        LsmConfig {
            level_base_bytes: self.level_base_bytes,
            level_size_ratio: self.level_size_ratio,
            l0_trigger_files: self.l0_trigger_files,
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct CompactionArgs {
    #[command(flatten)]
    pub lsm: LsmArgs,
    /// Compaction outputs are cut at about this size.
    #[arg(long, env = "SKYVAULT_COMPACT_TARGET_FILE_BYTES", default_value_t = 64 << 20,
          value_parser = crate::byte_size::Bytes::range(64 << 10..=4 << 30))]
    pub target_file_bytes: u64,
    /// Input bytes one compaction job reads at most (one file is always taken);
    /// an L0 job reads up to this much of L0 plus the base-level files those
    /// overlap. At least --level-base-bytes.
    #[arg(long, env = "SKYVAULT_COMPACT_MAX_INPUT_BYTES", default_value_t = 1 << 30,
          value_parser = crate::byte_size::Bytes::range(1 << 20..=1 << 40))]
    pub max_input_bytes: u64,
}

impl CompactionArgs {
    /// The configuration, or what is wrong with the flags together.
    pub fn config(&self) -> Result<CompactionConfig, String> {
        // A budget below the base level's target leaves no room for the
        // level-to-level jobs that keep the base level near its target, and
        // so for L0 jobs, which read the base level's overlap (issue 23).
        if self.max_input_bytes < self.lsm.level_base_bytes {
            return Err(format!(
                "--max-input-bytes ({}) must be at least --level-base-bytes ({}): \
                 raise --max-input-bytes or lower --level-base-bytes",
                self.max_input_bytes, self.lsm.level_base_bytes
            ));
        }
        Ok(CompactionConfig {
            lsm: self.lsm.config(),
            target_file_bytes: self.target_file_bytes,
            max_input_bytes: self.max_input_bytes,
            ..CompactionConfig::default()
        })
    }
}
