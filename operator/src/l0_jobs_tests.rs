//! The count against the data plane's real picker and `/lsm` body (the `skyvault` crate is
//! a dev-dependency): random trees, Jobs claiming one after the other.

use super::*;
use skyvault::compaction::picker::{self, PickLimits};
use skyvault::lsm::{self, Levels, LsmConfig};
use skyvault::meta::{ClaimRange, FileKind, FileRecord, claims_conflict};

const MIB: u64 = 1 << 20;

fn record(id: u64, level: u32, size: u64) -> FileRecord {
    FileRecord {
        id: i64::try_from(id).unwrap(),
        object: format!("run/{id}.sst"),
        kind: FileKind::Run,
        level,
        seq: id,
        min_key: b"a".to_vec(),
        max_key: b"z".to_vec(),
        entry_count: 1,
        tombstone_count: 0,
        size_bytes: size,
        added_version: id,
        removed_version: None,
        created_at_ms: 0,
        removed_at_ms: None,
    }
}

/// The index's `/lsm` body for `levels`, as the operator parses it.
fn reading(levels: &Levels, config: &LsmConfig) -> LsmDebt {
    let body = serde_json::to_string(&lsm::debt(levels, config, 7)).unwrap();
    serde_json::from_str(&body).unwrap()
}

/// Jobs started one after another, each claiming the first L0 pick no earlier Job holds
/// (as `skyvault compact` does): how many find work.
fn picker_jobs(levels: &Levels, config: &LsmConfig, limits: &PickLimits) -> usize {
    picker_jobs_beside(levels, config, limits, Vec::new())
}

/// [`picker_jobs`] beside running Jobs holding `held`.
fn picker_jobs_beside(
    levels: &Levels,
    config: &LsmConfig,
    limits: &PickLimits,
    mut held: Vec<ClaimRange>,
) -> usize {
    let mut jobs = 0;
    while let Some(pick) = picker::candidates(levels, config, limits, &held)
        .into_iter()
        .find(|p| p.input_level == 0 && !claims_conflict(&held, &p.claims))
    {
        held.extend(pick.claims);
        jobs += 1;
        assert!(jobs <= 8, "the picker keeps finding L0 work");
    }
    jobs
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// One random case: the SkyVault's settings and the tree the index reads.
fn case(rng: &mut Rng) -> (CompactionSpec, Levels) {
    let spec = CompactionSpec {
        l0_trigger_files: 2 + i32::try_from(rng.below(9)).unwrap(),
        target_file_bytes: [16, 64][rng.below(2) as usize] * (MIB as i64),
        max_input_bytes: [None, Some(256 * MIB as i64)][rng.below(2) as usize],
        level_size_ratio: [4, 10][rng.below(2) as usize],
        ..CompactionSpec::default()
    };
    let small = u64::try_from(spec.target_file_bytes).unwrap() / 4;
    let trigger = u64::try_from(spec.l0_trigger_files).unwrap();
    let files = trigger + rng.below(2 * trigger + 6);
    let mut live: Vec<FileRecord> = (1..=files)
        .map(|id| {
            let size = match rng.below(10) {
                0..=5 => small / 16 + rng.below(small - small / 16),
                6..=8 => small + rng.below(3 * small),
                _ => 100 * MIB + rng.below(400 * MIB),
            };
            record(id, 0, size)
        })
        .collect();
    // The output level: empty (a deep tree's base level), holding up to its target (a small
    // tree's last level), or over it (an upgraded store's L1).
    match rng.below(4) {
        0 => {}
        1 => live.push(record(10_000, 6, 50 << 30)),
        2 => live.push(record(10_000, 6, 100 * MIB + rng.below(150 * MIB))),
        _ => live.push(record(10_000, 1, (1 << 30) + rng.below(2 << 30))),
    }
    (spec, Levels::new(live))
}

fn lsm_config(c: &CompactionSpec) -> LsmConfig {
    LsmConfig {
        level_base_bytes: u64::try_from(c.level_base_bytes).unwrap(),
        level_size_ratio: u64::try_from(c.level_size_ratio).unwrap(),
        l0_trigger_files: u64::try_from(c.l0_trigger_files).unwrap(),
    }
}

/// What `skyvault compact` uses for these settings (`CompactionConfig::limits`).
fn limits(c: &CompactionSpec) -> PickLimits {
    let b = L0Bounds::of(c);
    PickLimits {
        max_input_bytes: b.max_input_bytes,
        max_l0_files: 256,
        small_l0_bytes: b.small_l0_bytes,
        min_intra_l0_files: usize::try_from(b.trigger_files).unwrap(),
    }
}

#[test]
fn the_count_is_what_the_real_picker_lets_run_at_once() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut seen = [0usize; 3];
    for i in 0..3000 {
        let (spec, levels) = case(&mut rng);
        let config = lsm_config(&spec);
        let debt = reading(&levels, &config);
        assert!(debt.levels[0].score >= 1.0, "case {i}: L0 is due");
        let want = picker_jobs(&levels, &config, &limits(&spec));
        let got = l0_jobs(&debt, &L0Bounds::of(&spec), None);
        assert_eq!(
            got,
            Some(want),
            "case {i}: {spec:?}\nL0 newest first {:?}\nlevels {:?}",
            debt.l0_file_bytes,
            debt.levels
        );
        seen[want] += 1;
    }
    // Every answer occurs, so the cases reach each branch of the picker.
    assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
}

#[test]
fn beside_a_running_job_the_count_never_exceeds_the_real_pickers() {
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    let mut seen = [0usize; 3];
    for i in 0..2000 {
        let (spec, before) = case(&mut rng);
        let (config, limits) = (lsm_config(&spec), limits(&spec));
        // A Job created at `before` runs its first pick; then flushes arrive.
        let Some(first) = picker::candidates(&before, &config, &limits, &[])
            .into_iter()
            .find(|p| p.input_level == 0)
        else {
            continue;
        };
        let mut live: Vec<FileRecord> = before
            .l0
            .iter()
            .chain(before.runs.iter().flatten())
            .cloned()
            .collect();
        let small = u64::try_from(spec.target_file_bytes).unwrap() / 4;
        for id in 0..rng.below(2 * u64::try_from(spec.l0_trigger_files).unwrap()) {
            live.push(record(5_000 + id, 0, 1 + rng.below(small)));
        }
        let now = Levels::new(live);
        let real = 1 + picker_jobs_beside(&now, &config, &limits, first.claims.clone());
        let held = before.l0.len() as u64;
        let got = l0_jobs(&reading(&now, &config), &L0Bounds::of(&spec), Some(held)).unwrap();
        assert!(
            got <= real,
            "case {i}: counted {got}, the picker runs {real}"
        );
        // Exact when the running Job took every L0 file there was.
        let took_all = first.inputs.iter().filter(|f| f.level == 0).count() == before.l0.len();
        if took_all && first.output_level != 0 {
            assert_eq!(got, real.min(2), "case {i}");
        }
        seen[got] += 1;
    }
    assert!(seen[1] > 50 && seen[2] > 50, "{seen:?}");
}

#[test]
fn the_index_body_parses_with_every_field() {
    let live = vec![record(1, 0, 3 * MIB), record(2, 0, 5 * MIB), {
        let mut f = record(3, 6, 100 * MIB);
        f.min_key = b"zz".to_vec();
        f.max_key = b"zzz".to_vec();
        f
    }];
    let debt = reading(&Levels::new(live), &LsmConfig::default());
    assert_eq!(debt.version, 7);
    assert_eq!((debt.l0_files, debt.l0_bytes), (2, 8 * MIB));
    assert_eq!(debt.l0_file_bytes, vec![5 * MIB, 3 * MIB], "newest first");
    assert_eq!(debt.l0_output_level, Some(6));
    assert_eq!(debt.l0_output_files_outside_l0, Some(1));
    assert_eq!(debt.levels.len(), 7);
}

fn bounds() -> L0Bounds {
    L0Bounds::of(&CompactionSpec::default())
}

/// A reading of L0 `sizes` (newest first) over an output level of `out` bytes: L1 (an
/// upgraded store's) from 1 GiB on, else the last level.
fn l0_reading(sizes: &[u64], out: u64) -> LsmDebt {
    let mut live: Vec<FileRecord> = sizes
        .iter()
        .rev()
        .zip(1..)
        .map(|(&s, id)| record(id, 0, s))
        .collect();
    live.push(record(10_000, if out >= 1 << 30 { 1 } else { 6 }, out));
    reading(&Levels::new(live), &LsmConfig::default())
}

#[test]
fn two_l0_jobs_when_small_files_arrived_behind_the_oldest_ones() {
    // Eight 64 MiB flushes (the oldest), then eight 1 MiB files.
    let mut sizes = vec![MIB; 8];
    sizes.extend([64 * MIB; 8]);
    // From scratch one Job takes all sixteen (they fit its budget); while it runs holding the
    // eight that were there, the eight newer small ones merge beside it.
    let reading = l0_reading(&sizes, 100 * MIB);
    assert_eq!(l0_jobs(&reading, &bounds(), None), Some(1));
    assert_eq!(l0_jobs(&reading, &bounds(), Some(8)), Some(2));
    // Seven small ones are below the trigger (8): the running Job alone.
    assert_eq!(l0_jobs(&reading, &bounds(), Some(9)), Some(1));
}

#[test]
fn no_l0_job_while_going_down_is_expensive_and_no_run_formed() {
    // Ten 20 MiB files (not small: 16 MiB and up) over an upgraded store's 3 GiB L1: the
    // picker waits for a run of small files (or twice the trigger): a Job would exit 3.
    let sizes = vec![20 * MIB; 10];
    assert_eq!(
        l0_jobs(&l0_reading(&sizes, 3 << 30), &bounds(), None),
        Some(0)
    );
    let many = vec![20 * MIB; 16];
    assert_eq!(
        l0_jobs(&l0_reading(&many, 3 << 30), &bounds(), None),
        Some(1)
    );
}

#[test]
fn an_older_data_plane_says_nothing_about_the_count() {
    let mut debt = l0_reading(&[MIB; 9], 0);
    debt.l0_output_level = None;
    assert_eq!(l0_jobs(&debt, &bounds(), None), None);
}
