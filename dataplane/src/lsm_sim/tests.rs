//! The simulator as the picker's regression test: a short run through the
//! real picker must keep the LSM's shape (write and space amplification, L0
//! under its stop trigger, bounded jobs, no idle starts). The old L0 pick
//! that shrank to one file plus the whole base level (issue 23 item 2) fails
//! here.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sim: SimArgs,
}

fn parse(flags: &str) -> Result<SimConfig, String> {
    let argv = std::iter::once("lsm-sim").chain(flags.split_whitespace());
    Cli::try_parse_from(argv)
        .map_err(|e| e.to_string())?
        .sim
        .config()
}

fn run(flags: &str) -> Report {
    let run = simulate(parse(flags).expect("valid flags")).expect("the run ends");
    assert!(run.csv.lines().count() > 2, "the debt over time is sampled");
    run.report
}

#[test]
fn flags_that_contradict_each_other_are_refused_naming_them() {
    let both = parse("--data-bytes 1GiB --key-count 10").unwrap_err();
    assert!(
        both.contains("--data-bytes") && both.contains("--key-count"),
        "{both}"
    );
    let budget =
        parse("--data-bytes 1GiB --level-base-bytes 256MiB --max-input-bytes 64MiB").unwrap_err();
    assert!(
        budget.contains("--max-input-bytes") && budget.contains("--level-base-bytes"),
        "{budget}"
    );
    let deletes = parse("--data-bytes 1GiB --deletes 1.5").unwrap_err();
    assert!(deletes.contains("--deletes"), "{deletes}");
    let size = parse("--data-bytes 12parsecs").unwrap_err();
    assert!(size.contains("--data-bytes"), "{size}");
    assert!(
        parse("--keys uniform")
            .unwrap_err()
            .contains("--data-bytes")
    );
    assert!(parse("--data-bytes 1GiB --keys zipf:0.8 --level-base-bytes 64MiB").is_ok());
}

/// 16 GiB of uniform keys with a 1 GiB base level and the default 1 GiB job
/// budget: the base level reaches the budget, which is where the old L0 pick
/// (shrink the L0 prefix until L0 + overlap fits, one file at least)
/// degenerated. Measured at this commit: WA 7.5, 16.3 L0 files per L0 job;
/// with the old pick WA 10.6 and 4.4 files per job (issue 23 item 2).
#[test]
fn an_l0_job_drains_l0_even_when_the_base_level_fills_the_budget() {
    let r = run("--data-bytes 16GiB --keys uniform --level-base-bytes 1GiB");
    assert_shape(&r);
    assert!(
        r.l0_files_per_l0_job >= 8.0,
        "L0 jobs must take at least the trigger's worth of L0 files: {r:#?}"
    );
    assert!(r.write_amplification <= 9.0, "{r:#?}");
}

/// The default shape with every key distribution, with and without deletes.
#[test]
fn every_key_distribution_keeps_the_lsm_in_shape() {
    for keys in ["uniform", "zipf", "sequential"] {
        for deletes in ["0", "0.1"] {
            let r = run(&format!(
                "--data-bytes 8GiB --keys {keys} --deletes {deletes}"
            ));
            assert_shape(&r);
        }
    }
}

/// What must hold in any run (the targets, with the overshoot the
/// stop trigger allows: it stops writes, not the flush of WAL bytes already
/// written, which lands as up to `wal_stop_bytes ÷ target_file_bytes` files).
fn assert_shape(r: &Report) {
    let cfg = crate::compaction::CompactionConfig::default();
    let overshoot = (crate::batcher::DEFAULT_WAL_STOP_BYTES / cfg.target_file_bytes) as usize;
    assert!(
        r.write_amplification <= r.write_amplification_shape.typical,
        "{r:#?}"
    );
    assert!(r.space_amplification <= 1.15, "{r:#?}");
    assert!(
        r.max_l0_files <= r.l0_stop_files as usize + overshoot,
        "{r:#?}"
    );
    assert!(r.max_job_own_level_bytes <= r.max_input_bytes, "{r:#?}");
    assert_eq!(
        r.idle_nothing_picked, 0,
        "debt said due, the picker had nothing: {r:#?}"
    );
    assert!(r.writes > 0 && r.simulated_seconds > 0.0);
}
