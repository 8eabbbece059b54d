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
    let (report, csv) = simulate(parse(flags).expect("valid flags")).expect("the run ends");
    assert!(csv.lines().count() > 2, "the debt over time is sampled");
    report
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
