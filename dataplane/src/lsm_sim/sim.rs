//! The event loop: a writer filling the WAL tier, the WAL flush into L0 and
//! N compaction job slots, on a simulated clock that jumps from one event
//! (a commit, a job's end, a hold's end, a sample) to the next.
//!
//! Jobs are chosen exactly as `compaction::run` chooses them: the real
//! `picker::candidates` over the live files and the claims of running jobs,
//! the first candidate whose claims conflict with none of them; the flush is
//! `picker::flush_pick`. A job's outputs are computed when it starts (from
//! the files it claimed, which nobody else can change) and installed when it
//! ends, after `(bytes in + bytes out) ÷ --job-bytes-per-sec`.

use super::args::{Scheduler, SimConfig};
use super::keys::Keys;
use super::model::{self, FileModel, Output};
use super::report::Recorder;
use crate::compaction::picker::{self, Pick, PickKind, PickLimits};
use crate::lsm::{self, Debt, LAST_LEVEL, Levels};
use crate::meta::{ClaimRange, FileKind, FileRecord, claims_conflict};
use std::collections::{HashMap, HashSet};

/// A running job (or flush).
pub struct Job {
    pub pick: Pick,
    outputs: Vec<Output>,
    ends_at: f64,
}

pub struct Sim {
    pub cfg: SimConfig,
    limits: PickLimits,
    pub keys: Keys,
    pub levels: Levels,
    models: HashMap<i64, FileModel>,
    next_id: i64,
    next_seq: u64,
    pub now: f64,
    pub jobs: Vec<Job>,
    flush: Option<Job>,
    /// No compaction job starts before this (after an idle one).
    hold_until: f64,
    /// Whether the job slots must look at the levels again.
    dirty: bool,
    pub writer: Writer,
    pub rec: Recorder,
}

/// Why the writer waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    L0,
    Wal,
}

pub struct Writer {
    /// Writes (puts and deletes) still to do.
    pub left: f64,
    pub done: f64,
    /// WAL-tier bytes (what `--wal-stop-bytes` bounds).
    pub wal_bytes: f64,
    /// The next commit's time (rate-limited writers).
    next_at: f64,
    pub stalled: Option<(Stall, f64)>,
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let keys = Keys::new(cfg.keys, cfg.key_count);
        let writes = cfg.write_bytes / cfg.size.logical(cfg.deletes);
        Sim {
            limits: cfg.compaction.limits(),
            rec: Recorder::new(cfg.sample_secs),
            keys,
            levels: Levels::new(Vec::new()),
            models: HashMap::new(),
            next_id: 1,
            next_seq: 1,
            now: 0.0,
            jobs: Vec::new(),
            flush: None,
            hold_until: 0.0,
            dirty: true,
            writer: Writer {
                left: writes,
                done: 0.0,
                wal_bytes: 0.0,
                next_at: 0.0,
                stalled: None,
            },
            cfg,
        }
    }

    /// Runs until every write is done and compaction has nothing due.
    pub fn run(&mut self) -> Result<(), String> {
        loop {
            self.write();
            self.start_jobs();
            if self.finished() {
                self.rec
                    .sample(self.now, &self.levels, &self.cfg, self.live_bytes(), true);
                return Ok(());
            }
            let next = self.next_event();
            if !next.is_finite() {
                return Err(self.stuck());
            }
            self.advance(next);
        }
    }

    fn finished(&self) -> bool {
        self.writer.left <= 0.0
            && self.flush.is_none()
            && self.jobs.is_empty()
            && !self.flush_due()
            && !self.debt().needs_compaction
    }

    /// Bytes of the distinct live entries written so far (what a store
    /// without any amplification would hold).
    pub fn live_bytes(&self) -> f64 {
        let keys = &self.keys;
        let live =
            keys.count * keys.coverage(self.writer.done / keys.count) * (1.0 - self.cfg.deletes);
        live * (self.cfg.size.key + self.cfg.size.value) as f64
    }

    pub fn debt(&self) -> Debt {
        lsm::debt(&self.levels, &self.cfg.compaction.lsm, 0)
    }

    fn stuck(&self) -> String {
        let d = self.debt();
        format!(
            "the simulation is stuck at {:.0} s: nothing runs and nothing can start \
             (L0 {} files, WAL {} files, debt score {:.2}, writer waiting: {:?})",
            self.now,
            d.l0_files,
            d.wal_files,
            d.score,
            self.writer.stalled.map(|s| s.0)
        )
    }

    /// Commits every group commit that is due now and not held back.
    fn write(&mut self) {
        while self.writer.left > 0.0 && self.writer.next_at <= self.now {
            let stall = if self.levels.l0.len() as u64 >= self.cfg.l0_stop_files {
                Some(Stall::L0)
            } else if self.writer.wal_bytes >= self.cfg.wal_stop_bytes as f64 {
                Some(Stall::Wal)
            } else {
                None
            };
            // Time waited so far goes to the reason it waited for.
            if let Some((why, since)) = self.writer.stalled
                && stall != Some(why)
            {
                self.rec.waited(why, self.now - since);
                self.writer.stalled = None;
            }
            if let (Some(why), None) = (stall, self.writer.stalled) {
                self.writer.stalled = Some((why, self.now));
            }
            if stall.is_some() {
                return;
            }
            self.commit();
            self.start_flush();
        }
    }

    /// One group commit: a WAL-tier file (two if sequential keys wrap).
    fn commit(&mut self) {
        let per_write = self.cfg.size.logical(self.cfg.deletes);
        let writes = (self.cfg.commit_bytes / per_write).min(self.writer.left);
        self.writer.left -= writes;
        self.writer.done += writes;
        self.rec.logical_bytes += writes * per_write;
        if let Some(rate) = self.cfg.write_rate {
            self.writer.next_at = self.writer.next_at.max(self.now) + writes * per_write / rate;
        }
        let windows = self.keys.window(writes);
        for (lo, hi, exposure) in windows {
            let m = FileModel {
                lo,
                hi,
                coverage: self.keys.coverage(exposure),
                tombstones: self.cfg.deletes,
            };
            let entries = self.keys.count * (hi - lo) * m.coverage;
            let bytes = self.cfg.size.bytes(entries, m.tombstones);
            let (id, seq) = (self.id(), self.next_seq);
            self.next_seq += 1;
            let rec = model::record(id, 0, seq, FileKind::Wal, &m, entries, bytes);
            self.writer.wal_bytes += rec.size_bytes as f64;
            self.rec.wal_written += rec.size_bytes as f64;
            self.models.insert(id, m);
            self.levels.wal.push(rec);
        }
    }

    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn flush_due(&self) -> bool {
        self.cfg
            .flush
            .due(self.levels.wal.len() as u64, self.writer.wal_bytes as u64)
    }

    fn held(&self) -> Vec<ClaimRange> {
        self.jobs
            .iter()
            .chain(self.flush.as_ref())
            .flat_map(|j| j.pick.claims.iter().cloned())
            .collect()
    }

    fn start_flush(&mut self) {
        if self.flush.is_some() || !self.flush_due() {
            return;
        }
        let held = self.held();
        if let Some(pick) = picker::flush_pick(&self.levels, &self.cfg.flush, &held, false) {
            self.flush = Some(self.job(pick));
        }
    }

    /// Fills free job slots while the debt asks for jobs (see [`Scheduler`]).
    fn start_jobs(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        while self.jobs.len() < self.cfg.job_slots && self.now >= self.hold_until {
            let debt = self.debt();
            if !debt.needs_compaction {
                return;
            }
            if self.cfg.scheduler == Scheduler::Operator
                && self.jobs.len() >= wanted_jobs(&debt, self.cfg.compaction.target_file_bytes)
            {
                return;
            }
            let held = self.held();
            let picks =
                picker::candidates(&self.levels, &self.cfg.compaction.lsm, &self.limits, &held);
            let Some(pick) = picks.iter().find(|p| !claims_conflict(&held, &p.claims)) else {
                self.rec.idle(picks.is_empty());
                self.hold_until = self.now + self.cfg.idle_hold_secs;
                return;
            };
            let job = self.job(pick.clone());
            self.rec.started(&job.pick);
            self.jobs.push(job);
        }
    }

    /// A job for `pick`: its outputs and when it ends.
    fn job(&self, pick: Pick) -> Job {
        let cfg = &self.cfg;
        if pick.kind == PickKind::Move {
            return Job {
                pick,
                outputs: Vec::new(),
                ends_at: self.now + cfg.job_start_secs,
            };
        }
        let inputs: Vec<FileModel> = pick.inputs.iter().map(|f| self.models[&f.id]).collect();
        let outputs = model::merge(
            &self.keys,
            cfg.size,
            &inputs,
            pick.output_level,
            &self.levels,
            cfg.compaction.target_file_bytes,
        );
        let bytes = pick.bytes() as f64 + outputs.iter().map(|o| o.bytes).sum::<f64>();
        let start = if pick.kind == PickKind::Flush {
            0.0
        } else {
            cfg.job_start_secs
        };
        Job {
            pick,
            outputs,
            ends_at: self.now + start + bytes / cfg.job_bytes_per_sec,
        }
    }

    fn next_event(&self) -> f64 {
        let mut next = self.rec.next_sample();
        let mut busy = false;
        for j in self.jobs.iter().chain(self.flush.as_ref()) {
            next = next.min(j.ends_at);
            busy = true;
        }
        if self.writer.left > 0.0 && self.writer.stalled.is_none() {
            next = next.min(self.writer.next_at);
            busy = true;
        }
        if self.hold_until > self.now && self.jobs.len() < self.cfg.job_slots {
            next = next.min(self.hold_until);
            busy = true;
        }
        if busy {
            next.max(self.now)
        } else {
            f64::INFINITY
        }
    }

    fn advance(&mut self, to: f64) {
        self.rec.elapse(to - self.now, self.levels.l0.len());
        self.now = to;
        if self.now >= self.hold_until {
            self.dirty = true;
        }
        if self.rec.next_sample() <= self.now {
            self.rec
                .sample(self.now, &self.levels, &self.cfg, self.live_bytes(), false);
        }
        if self.flush.as_ref().is_some_and(|f| f.ends_at <= self.now) {
            let flush = self.flush.take().expect("checked");
            self.install(flush);
            self.start_flush();
        }
        let (done, running): (Vec<Job>, Vec<Job>) = std::mem::take(&mut self.jobs)
            .into_iter()
            .partition(|j| j.ends_at <= self.now);
        self.jobs = running;
        for job in done {
            self.install(job);
        }
    }

    /// The job's swap: inputs out, outputs (or moved files) in.
    fn install(&mut self, job: Job) {
        self.dirty = true;
        let pick = job.pick;
        let ids: HashSet<i64> = pick.inputs.iter().map(|f| f.id).collect();
        if pick.kind == PickKind::Flush {
            let before = self.levels.wal.len();
            self.levels.wal.retain(|f| !ids.contains(&f.id));
            debug_assert_eq!(before - self.levels.wal.len(), ids.len());
            self.writer.wal_bytes -= pick.bytes() as f64;
        }
        self.levels.l0.retain(|f| !ids.contains(&f.id));
        for level in 1..=LAST_LEVEL {
            let gone: Vec<&FileRecord> = pick.inputs.iter().filter(|f| f.level == level).collect();
            remove(&mut self.levels.runs[level as usize - 1], &gone);
        }
        if pick.kind == PickKind::Move {
            self.rec.moved += pick.bytes() as f64;
            let moved = pick.inputs.into_iter().map(|mut f| {
                f.level = pick.output_level;
                f
            });
            insert(&mut self.levels, moved.collect());
            return;
        }
        for f in &pick.inputs {
            self.models.remove(&f.id);
        }
        let seq = pick.inputs.iter().map(|f| f.seq).max().unwrap_or(0);
        let mut outputs = Vec::with_capacity(job.outputs.len());
        for o in job.outputs {
            let id = self.id();
            outputs.push(model::record(
                id,
                pick.output_level,
                seq,
                FileKind::Run,
                &o.model,
                o.entries,
                o.bytes,
            ));
            self.models.insert(id, o.model);
        }
        let written = outputs.iter().map(|f| f.size_bytes as f64).sum();
        insert(&mut self.levels, outputs);
        self.rec.finished(&pick, written);
    }
}

/// Puts `files` (one level's, in key order) where `Levels::new` would: L0
/// newest first, runs by key. A merge's outputs fill the gap its inputs
/// left, so they go in with one splice, not one shift of the level per file.
fn insert(levels: &mut Levels, files: Vec<FileRecord>) {
    let Some(first) = files.first() else {
        return;
    };
    if first.level == 0 {
        for f in files {
            let at = levels.l0.partition_point(|g| (g.seq, g.id) > (f.seq, f.id));
            levels.l0.insert(at, f);
        }
        return;
    }
    let run = &mut levels.runs[first.level as usize - 1];
    let at = run.partition_point(|g| g.min_key < first.min_key);
    let last = files.last().expect("not empty");
    let gap = run.get(at).is_none_or(|g| g.min_key > last.max_key);
    if gap && files.windows(2).all(|w| w[0].max_key < w[1].min_key) {
        run.splice(at..at, files);
        return;
    }
    for f in files {
        let at = run.partition_point(|g| g.min_key < f.min_key);
        run.insert(at, f);
    }
}

/// Removes `gone` from a run (ordered by key), as one range when they are
/// contiguous (a merge's inputs on its output level are).
fn remove(run: &mut Vec<FileRecord>, gone: &[&FileRecord]) {
    let mut at: Vec<usize> = gone
        .iter()
        .map(|f| {
            let from = run.partition_point(|g| g.min_key < f.min_key);
            from + run[from..]
                .iter()
                .position(|g| g.id == f.id)
                .expect("a live input")
        })
        .collect();
    at.sort_unstable();
    match (at.first(), at.last()) {
        (Some(&lo), Some(&hi)) if hi - lo + 1 == at.len() => {
            run.drain(lo..=hi);
        }
        _ => {
            for i in at.into_iter().rev() {
                run.remove(i);
            }
        }
    }
}

/// How many compaction Jobs the operator wants for `debt`: one while L0 is
/// due, plus one per target-size file of excess on each deeper level above
/// the last; at least one while anything is due. Mirrors `wanted_jobs` in
/// operator/src/debt.rs (a separate crate the data plane does not depend on).
pub fn wanted_jobs(debt: &Debt, target_file_bytes: u64) -> usize {
    if !debt.needs_compaction {
        return 0;
    }
    let file = target_file_bytes.max(1);
    let wanted: usize = debt
        .levels
        .iter()
        .filter(|l| l.score >= 1.0 && l.level < LAST_LEVEL)
        .map(|l| match l.level {
            0 => 1,
            _ => (l.bytes.saturating_sub(l.target_bytes).div_ceil(file) as usize).max(1),
        })
        .sum();
    wanted.max(1)
}
