//! The CRD's bounds on every tunable the operator hands to the data plane equal the bounds
//! of the `skyvault` flag that reads it, in every role that reads it (the shared ConfigMap
//! reaches every role, so the index reads the batcher's tuning too): a value the API server
//! accepts never crash-loops a Pod on clap's range check, and the CRD does not refuse what
//! the binary takes. Checked against the real binary: a value out of its range exits 2
//! with clap's "invalid value"; one in range gets past parsing (and fails opening the
//! unreachable store given here, exit 1).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skyvault_e2e::manifests::read_yaml_file;
use skyvault_e2e::services::skyvault_binary;
use skyvault_e2e::tools::repo_root;

use super::*;

/// A CRD field, the flag (and env var, from the ConfigMap or the Job) it becomes, the
/// subcommands reading it, and whether the binary has an upper bound. A value in range but
/// refused by a cross-field check (`--wal-flush-bytes` 4 GiB over the default
/// `--wal-stop-bytes`) exits 1 like the unreachable store, so it counts as accepted: the CEL
/// rule on spec.batcher covers that pair.
struct Tunable {
    group: &'static str,
    field: &'static str,
    flag: &'static str,
    env: &'static str,
    roles: &'static [&'static str],
    /// False where the flag has no upper bound (the CRD's maximum is then the operator's
    /// own cap, and the binary must accept anything above it too).
    binary_max: bool,
}

const TUNABLES: &[Tunable] = &[
    Tunable {
        group: "batcher",
        field: "batchMaxBytes",
        flag: "--batch-max-bytes",
        env: "SKYVAULT_BATCH_MAX_BYTES",
        roles: &["batcher", "index"],
        binary_max: true,
    },
    Tunable {
        group: "batcher",
        field: "batchMaxAgeMs",
        flag: "--batch-max-age-ms",
        env: "SKYVAULT_BATCH_MAX_AGE_MS",
        roles: &["batcher", "index"],
        binary_max: true,
    },
    Tunable {
        group: "batcher",
        field: "maxConcurrentFlushes",
        flag: "--batch-max-concurrent-flushes",
        env: "SKYVAULT_BATCH_MAX_CONCURRENT_FLUSHES",
        roles: &["batcher", "index"],
        binary_max: true,
    },
    Tunable {
        group: "batcher",
        field: "queueMaxBytes",
        flag: "--batch-queue-max-bytes",
        env: "SKYVAULT_BATCH_QUEUE_MAX_BYTES",
        roles: &["batcher", "index"],
        binary_max: true,
    },
    Tunable {
        group: "batcher",
        field: "l0SlowdownFiles",
        flag: "--l0-slowdown-files",
        env: "SKYVAULT_L0_SLOWDOWN_FILES",
        roles: &["batcher", "index"],
        binary_max: true,
    },
    Tunable {
        group: "batcher",
        field: "l0StopFiles",
        flag: "--l0-stop-files",
        env: "SKYVAULT_L0_STOP_FILES",
        roles: &["batcher", "index"],
        binary_max: true,
    },
    Tunable {
        group: "batcher",
        field: "walFlushBytes",
        flag: "--wal-flush-bytes",
        env: "SKYVAULT_WAL_FLUSH_BYTES",
        roles: &["batcher", "index"],
        binary_max: true,
    },
    Tunable {
        group: "batcher",
        field: "walFlushFiles",
        flag: "--wal-flush-files",
        env: "SKYVAULT_WAL_FLUSH_FILES",
        roles: &["batcher", "index"],
        binary_max: true,
    },
    Tunable {
        group: "batcher",
        field: "walStopBytes",
        flag: "--wal-stop-bytes",
        env: "SKYVAULT_WAL_STOP_BYTES",
        roles: &["batcher", "index"],
        binary_max: true,
    },
    Tunable {
        group: "index",
        field: "cacheCapacityBytes",
        flag: "--cache-capacity-bytes",
        env: "SKYVAULT_CACHE_CAPACITY_BYTES",
        roles: &["index"],
        binary_max: true,
    },
    Tunable {
        group: "cache",
        field: "cacheCapacityBytes",
        flag: "--cache-capacity-bytes",
        env: "SKYVAULT_CACHE_CAPACITY_BYTES",
        roles: &["cache"],
        binary_max: true,
    },
    Tunable {
        group: "compaction",
        field: "targetFileBytes",
        flag: "--target-file-bytes",
        env: "SKYVAULT_COMPACT_TARGET_FILE_BYTES",
        roles: &["compact"],
        binary_max: true,
    },
    Tunable {
        group: "compaction",
        field: "maxInputBytes",
        flag: "--max-input-bytes",
        env: "SKYVAULT_COMPACT_MAX_INPUT_BYTES",
        roles: &["compact"],
        binary_max: true,
    },
    Tunable {
        group: "compaction",
        field: "levelBaseBytes",
        flag: "--level-base-bytes",
        env: "SKYVAULT_LEVEL_BASE_BYTES",
        roles: &["index", "compact"],
        binary_max: true,
    },
    Tunable {
        group: "compaction",
        field: "levelSizeRatio",
        flag: "--level-size-ratio",
        env: "SKYVAULT_LEVEL_SIZE_RATIO",
        roles: &["index", "compact"],
        binary_max: true,
    },
    Tunable {
        group: "compaction",
        field: "l0TriggerFiles",
        flag: "--l0-trigger-files",
        env: "SKYVAULT_L0_TRIGGER_FILES",
        roles: &["index", "compact"],
        binary_max: true,
    },
    Tunable {
        group: "purge",
        field: "gracePeriodSeconds",
        flag: "--grace-secs",
        env: "SKYVAULT_PURGE_GRACE_SECS",
        roles: &["purge"],
        binary_max: true,
    },
];

/// Arguments that let each role parse and then fail at once, touching nothing.
fn role_args(role: &str) -> Vec<&'static str> {
    const NOWHERE: &str = "file:///proc/skyvault-e2e-nowhere";
    const NO_DB: &str = "sqlite:///proc/skyvault-e2e-nowhere/meta.db";
    let listen = ["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"];
    let mut args = vec!["--object-store-url", NOWHERE];
    if role != "cache" {
        args.extend(["--metadata-url", NO_DB]);
    }
    if matches!(role, "batcher" | "index" | "cache") {
        args.extend(listen);
    }
    args
}

/// Whether `skyvault ROLE FLAG VALUE` gets past argument parsing.
fn accepts(bin: &std::path::Path, role: &str, flag: &str, value: i128) -> Result<bool> {
    let mut child = Command::new(bin)
        .arg(role)
        .args(role_args(role))
        .arg(flag)
        .arg(value.to_string())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            // Still running: it parsed, and then did not fail on the unreachable store.
            child.kill()?;
            child.wait()?;
            bail!("skyvault {role} {flag} {value} neither failed nor exited in 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().context("stderr")?, &mut stderr)?;
    let refused = status.code() == Some(2) && stderr.contains("invalid value");
    ensure!(
        refused || status.code() == Some(1),
        "skyvault {role} {flag} {value}: unexpected {status}: {stderr}"
    );
    Ok(!refused)
}

/// The env var the flag reads, from `skyvault ROLE --help`.
fn help_names_env(bin: &std::path::Path, role: &str, flag: &str, env: &str) -> Result<bool> {
    let out = Command::new(bin).args([role, "--help"]).output()?;
    let help = String::from_utf8_lossy(&out.stdout);
    let text: Vec<&str> = help.split("\n  -").collect();
    Ok(text.iter().any(|entry| {
        entry.contains(&format!("{flag} <")) && entry.contains(&format!("[env: {env}"))
    }))
}

#[test]
fn crd_bounds_equal_the_binarys_flag_bounds_for_every_tunable() -> Result<()> {
    let bin = skyvault_binary()?;
    let crd = read_yaml_file(&repo_root().join("crds/skyvault.io_skyvaults.yaml"))?;
    let spec = &crd[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let mut problems = Vec::new();
    for t in TUNABLES {
        let schema = &spec[t.group]["properties"][t.field];
        // The schema writes them as floats (60000.0); every bound is an integer.
        let bound = |v: &Value| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64);
        let (Some(min), Some(max)) = (bound(&schema["minimum"]), bound(&schema["maximum"])) else {
            problems.push(format!(
                "spec.{}.{}: no minimum/maximum in the CRD",
                t.group, t.field
            ));
            continue;
        };
        let (min, max) = (i128::from(min), i128::from(max));
        for role in t.roles {
            if !help_names_env(&bin, role, t.flag, t.env)? {
                problems.push(format!(
                    "skyvault {role} {} does not read {}",
                    t.flag, t.env
                ));
            }
            let field = format!("spec.{}.{} [{min}, {max}]", t.group, t.field);
            if !accepts(&bin, role, t.flag, min)? {
                problems.push(format!("{field}: skyvault {role} refuses the minimum"));
            }
            if !accepts(&bin, role, t.flag, max)? {
                problems.push(format!("{field}: skyvault {role} refuses the maximum"));
            }
            if min > 0 && accepts(&bin, role, t.flag, min - 1)? {
                problems.push(format!("{field}: skyvault {role} also takes {}", min - 1));
            }
            let above = accepts(&bin, role, t.flag, max + 1)?;
            if t.binary_max && above {
                problems.push(format!("{field}: skyvault {role} also takes {}", max + 1));
            }
            if !t.binary_max {
                let unbounded = above && accepts(&bin, role, t.flag, i128::from(u64::MAX))?;
                if !unbounded {
                    problems.push(format!("{field}: skyvault {role} has an upper bound now"));
                }
            }
        }
    }
    ensure!(
        problems.is_empty(),
        "CRD and binary disagree:\n{}",
        problems.join("\n")
    );
    Ok(())
}
