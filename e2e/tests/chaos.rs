//! The short crash campaign CI runs (`just chaos` is the long one; figures in
//! docs/reliability.md): about a minute of kill -9 and power loss of
//! standalone on lazyfs, then of the distributed roles, compaction and purge
//! jobs (with store faults) and PostgreSQL. Needs root, /dev/fuse, and the
//! `skyvault` and `skyvault-lazyfs` binaries built (e2e/run-tests.sh does).

use skyvault_e2e::chaos::{self, Config, Mode};
use skyvault_e2e::services::skyvault_binary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_crash_campaign_loses_nothing() {
    let bin_dir = skyvault_binary().unwrap().parent().unwrap().to_path_buf();
    let config = Config {
        seconds: 60,
        max_faults: 100_000,
        clients: 3,
        mode: Mode::Both,
        seed: std::process::id() as u64,
        bin_dir,
    };
    let summary = chaos::run(&config).await.unwrap();
    println!("{}", summary.line());
    let v = &summary.verdict;
    assert_eq!(
        (v.lost, v.wrong),
        (0, 0),
        "{}: {:#?}",
        summary.line(),
        v.details
    );
    assert!(
        v.acked > 100,
        "too little was acked to judge: {}",
        summary.line()
    );
    assert!(
        summary.kills >= 10 && summary.power_losses >= 5,
        "too few faults: {}",
        summary.line()
    );
}
