//! What a run measured: counters kept while it runs ([`Recorder`]), the
//! report printed at the end ([`Report`]) and the debt over time (CSV).

use super::args::SimConfig;
use super::sim::{Sim, Stall};
use crate::compaction::picker::{Pick, PickKind};
use crate::lsm::{self, LAST_LEVEL, Levels};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Clone, Debug, Default, Serialize)]
pub struct JobCounts {
    pub flushes: u64,
    pub l0_to_base: u64,
    pub intra_l0: u64,
    pub level_merges: u64,
    pub trivial_moves: u64,
}

/// Counters kept while the simulation runs.
#[derive(Default)]
pub struct Recorder {
    sample_every: f64,
    next_sample: f64,
    /// Seconds spent at each L0 file count.
    l0_seconds: Vec<f64>,
    pub max_l0: usize,
    pub logical_bytes: f64,
    pub wal_written: f64,
    pub flush_written: f64,
    pub compaction_written: f64,
    pub compaction_read: f64,
    pub moved: f64,
    pub jobs: JobCounts,
    pub idle_nothing_picked: u64,
    pub idle_inputs_claimed: u64,
    /// L0 files taken by all L0 -> base jobs together.
    pub l0_job_l0_files: u64,
    pub max_job_input_bytes: u64,
    /// The part of a job's input on its own (input) level: what
    /// `max_input_bytes` bounds; the rest is what it overlaps below.
    pub max_job_own_level_bytes: u64,
    pub waited_l0: f64,
    pub waited_wal: f64,
    pub peak_space_amplification: f64,
    pub peak_pending_bytes: u64,
    csv: String,
    /// The samples the PNG plots.
    pub points: Vec<super::plot::Point>,
}

impl Recorder {
    pub fn new(sample_every: f64) -> Recorder {
        let mut csv = "seconds,logical_gib,wal_files,l0_files,l0_mib,pending_gib,score,base_level,space_amplification".to_string();
        for l in 1..=LAST_LEVEL {
            let _ = write!(csv, ",l{l}_gib");
        }
        csv.push('\n');
        Recorder {
            sample_every,
            csv,
            ..Default::default()
        }
    }

    pub fn next_sample(&self) -> f64 {
        self.next_sample
    }

    /// `dt` seconds passed with `l0` files in L0.
    pub fn elapse(&mut self, dt: f64, l0: usize) {
        if self.l0_seconds.len() <= l0 {
            self.l0_seconds.resize(l0 + 1, 0.0);
        }
        self.l0_seconds[l0] += dt;
        self.max_l0 = self.max_l0.max(l0);
    }

    pub fn waited(&mut self, why: Stall, secs: f64) {
        match why {
            Stall::L0 => self.waited_l0 += secs,
            Stall::Wal => self.waited_wal += secs,
        }
    }

    /// A job slot started a job that found nothing it could run.
    pub fn idle(&mut self, nothing_picked: bool) {
        if nothing_picked {
            self.idle_nothing_picked += 1;
        } else {
            self.idle_inputs_claimed += 1;
        }
    }

    pub fn started(&mut self, pick: &Pick) {
        let j = &mut self.jobs;
        match (pick.kind, pick.input_level, pick.output_level) {
            (PickKind::Flush, ..) => j.flushes += 1,
            (PickKind::Move, ..) => j.trivial_moves += 1,
            (_, 0, 0) => j.intra_l0 += 1,
            (_, 0, _) => {
                j.l0_to_base += 1;
                self.l0_job_l0_files += pick.inputs.iter().filter(|f| f.level == 0).count() as u64;
            }
            _ => j.level_merges += 1,
        }
        if pick.kind == PickKind::Merge {
            self.max_job_input_bytes = self.max_job_input_bytes.max(pick.bytes());
            let own: u64 = pick
                .inputs
                .iter()
                .filter(|f| f.level == pick.input_level)
                .map(|f| f.size_bytes)
                .sum();
            self.max_job_own_level_bytes = self.max_job_own_level_bytes.max(own);
        }
    }

    /// A merge (or flush) swapped in outputs of `written` bytes.
    pub fn finished(&mut self, pick: &Pick, written: f64) {
        if pick.kind == PickKind::Flush {
            self.jobs.flushes += 1;
            self.flush_written += written;
        } else {
            self.compaction_read += pick.bytes() as f64;
            self.compaction_written += written;
        }
    }

    /// One CSV row of the debt at `now`, when the writes so far hold
    /// `live` bytes of distinct entries.
    pub fn sample(
        &mut self,
        now: f64,
        levels: &Levels,
        cfg: &SimConfig,
        live: f64,
        final_row: bool,
    ) {
        if !final_row {
            self.next_sample += self.sample_every;
        }
        const GIB: f64 = (1u64 << 30) as f64;
        let d = lsm::debt(levels, &cfg.compaction.lsm, 0);
        let stored = (d.wal_bytes + d.levels.iter().map(|l| l.bytes).sum::<u64>()) as f64;
        // Once a key space's worth is written (before, the WAL tier and L0
        // alone outweigh the little live data).
        if self.logical_bytes >= cfg.key_count * (cfg.size.key + cfg.size.value) as f64
            && live > 0.0
        {
            self.peak_space_amplification = self.peak_space_amplification.max(stored / live);
        }
        self.peak_pending_bytes = self.peak_pending_bytes.max(d.pending_bytes);
        self.points.push([
            now,
            d.l0_files as f64,
            d.pending_bytes as f64,
            stored / live.max(1.0),
        ]);
        let _ = write!(
            self.csv,
            "{:.1},{:.3},{},{},{:.1},{:.3},{:.3},{},{:.4}",
            now,
            self.logical_bytes / GIB,
            d.wal_files,
            d.l0_files,
            d.l0_bytes as f64 / (1u64 << 20) as f64,
            d.pending_bytes as f64 / GIB,
            d.score,
            d.base_level,
            stored / live.max(1.0),
        );
        for l in &d.levels[1..] {
            let _ = write!(self.csv, ",{:.3}", l.bytes as f64 / GIB);
        }
        self.csv.push('\n');
    }

    pub fn csv(&self) -> &str {
        &self.csv
    }

    /// The L0 file count that `q` of the simulated time stayed at or below.
    fn l0_quantile(&self, q: f64) -> usize {
        let total: f64 = self.l0_seconds.iter().sum();
        let mut acc = 0.0;
        for (n, secs) in self.l0_seconds.iter().enumerate() {
            acc += secs;
            if acc >= q * total {
                return n;
            }
        }
        self.l0_seconds.len().saturating_sub(1)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LevelReport {
    pub level: u32,
    pub files: u64,
    pub bytes: u64,
    pub target_bytes: u64,
}

/// The write amplification the level shape implies: 1 for the WAL commit,
/// 1 for its flush into L0, 1 for L0 into the base level, and per level
/// below the base level `ratio + 1` at worst (each byte pushed down is merged
/// with `ratio` bytes already there) or about `(ratio + 1) / 2` on average
/// (the least-overlap pick halves it, as RocksDB observes).
#[derive(Clone, Debug, Serialize)]
pub struct ShapeBound {
    pub base_level: u32,
    pub levels_below_base: u32,
    pub worst: f64,
    pub typical: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub simulated_seconds: f64,
    pub wall_seconds: f64,
    pub keys: String,
    pub key_count: u64,
    pub key_space_bytes: u64,
    pub logical_bytes_written: u64,
    pub writes: u64,
    pub deletes: f64,
    /// Expected distinct live keys at the end (not deleted).
    pub live_keys: u64,
    /// Writes that replaced or deleted an older version of their key.
    pub overwrite_ratio: f64,
    pub write_amplification: f64,
    pub write_amplification_shape: ShapeBound,
    /// At the end, after compaction paid its debt (as e2e/bench-amplification.sh measures).
    pub space_amplification: f64,
    /// The highest of any sample once a key space's worth of data was
    /// written: what the store holds while writes run at full rate.
    pub peak_space_amplification: f64,
    /// The highest `pending_bytes` of the debt in any sample.
    pub peak_pending_bytes: u64,
    pub stored_bytes: u64,
    pub live_bytes: u64,
    pub max_l0_files: usize,
    pub p99_l0_files: usize,
    pub l0_stop_files: u64,
    pub max_job_input_bytes: u64,
    /// The largest input of one job on its own level (L0 files of an L0
    /// job): at most `max_input_bytes` or one file (decision 0003's bound is
    /// this plus the base-level bytes it overlaps).
    pub max_job_own_level_bytes: u64,
    pub max_input_bytes: u64,
    pub jobs_per_hour: f64,
    pub jobs: JobCounts,
    /// L0 files an L0 -> base job takes on average: the old degenerate pick
    /// (one L0 file plus the whole base level) drove it towards 1.
    pub l0_files_per_l0_job: f64,
    /// Jobs started while nothing could be run: debt due but no candidate
    /// (`idle_nothing_picked`) or every candidate held by a running job
    /// (`idle_inputs_claimed`).
    pub idle_job_starts: u64,
    pub idle_nothing_picked: u64,
    pub idle_inputs_claimed: u64,
    /// Seconds writes waited at --l0-stop-files and at --wal-stop-bytes.
    pub write_wait_l0_seconds: f64,
    pub write_wait_wal_seconds: f64,
    pub write_rate_bytes_per_sec: f64,
    pub wal_bytes_written: u64,
    pub flush_bytes_written: u64,
    pub compaction_bytes_read: u64,
    pub compaction_bytes_written: u64,
    pub bytes_moved: u64,
    pub levels: Vec<LevelReport>,
}

impl Report {
    pub fn new(sim: &Sim, wall_seconds: f64) -> Report {
        let (cfg, rec) = (&sim.cfg, &sim.rec);
        let keys = &sim.keys;
        let writes = sim.writer.done;
        let live_keys = keys.count * keys.coverage(writes / keys.count) * (1.0 - cfg.deletes);
        let entry = (cfg.size.key + cfg.size.value) as f64;
        let d = sim.debt();
        let stored = d.wal_bytes + d.levels.iter().map(|l| l.bytes).sum::<u64>();
        let ratio = cfg.compaction.lsm.level_size_ratio as f64;
        let below = LAST_LEVEL - d.base_level;
        let jobs = rec.jobs.l0_to_base
            + rec.jobs.intra_l0
            + rec.jobs.level_merges
            + rec.jobs.trivial_moves;
        Report {
            simulated_seconds: sim.now,
            wall_seconds,
            keys: format!("{:?}", cfg.keys).to_lowercase(),
            key_count: keys.count as u64,
            key_space_bytes: (keys.count * entry) as u64,
            logical_bytes_written: rec.logical_bytes as u64,
            writes: writes as u64,
            deletes: cfg.deletes,
            live_keys: live_keys as u64,
            overwrite_ratio: 1.0
                - keys.count * keys.coverage(writes / keys.count) / writes.max(1.0),
            write_amplification: (rec.wal_written + rec.flush_written + rec.compaction_written)
                / rec.logical_bytes.max(1.0),
            write_amplification_shape: ShapeBound {
                base_level: d.base_level,
                levels_below_base: below,
                worst: 3.0 + (ratio + 1.0) * below as f64,
                typical: 3.0 + (ratio + 1.0) / 2.0 * below as f64,
            },
            space_amplification: stored as f64 / (live_keys * entry).max(1.0),
            peak_space_amplification: rec.peak_space_amplification,
            peak_pending_bytes: rec.peak_pending_bytes,
            stored_bytes: stored,
            live_bytes: (live_keys * entry) as u64,
            max_l0_files: rec.max_l0,
            p99_l0_files: rec.l0_quantile(0.99),
            l0_stop_files: cfg.l0_stop_files,
            max_job_input_bytes: rec.max_job_input_bytes,
            max_job_own_level_bytes: rec.max_job_own_level_bytes,
            max_input_bytes: cfg.compaction.max_input_bytes,
            jobs_per_hour: jobs as f64 * 3600.0 / sim.now.max(1e-9),
            jobs: rec.jobs.clone(),
            l0_files_per_l0_job: rec.l0_job_l0_files as f64 / rec.jobs.l0_to_base.max(1) as f64,
            idle_job_starts: rec.idle_nothing_picked + rec.idle_inputs_claimed,
            idle_nothing_picked: rec.idle_nothing_picked,
            idle_inputs_claimed: rec.idle_inputs_claimed,
            write_wait_l0_seconds: rec.waited_l0,
            write_wait_wal_seconds: rec.waited_wal,
            write_rate_bytes_per_sec: rec.logical_bytes / sim.now.max(1e-9),
            wal_bytes_written: rec.wal_written as u64,
            flush_bytes_written: rec.flush_written as u64,
            compaction_bytes_read: rec.compaction_read as u64,
            compaction_bytes_written: rec.compaction_written as u64,
            bytes_moved: rec.moved as u64,
            levels: d
                .levels
                .iter()
                .map(|l| LevelReport {
                    level: l.level,
                    files: l.files,
                    bytes: l.bytes,
                    target_bytes: l.target_bytes,
                })
                .collect(),
        }
    }
}
