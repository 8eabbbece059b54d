//! Compaction driven by the debt the index reports (`GET /lsm`, faked here).

use super::*;

/// Level 0 over its trigger and level 1 three 64 MiB files over its target:
/// four pieces of work, more than the default two concurrent Jobs.
const HEAVY_DEBT: &str = r#"{"version":9,"l0_files":12,"l0_bytes":50331648,"pending_bytes":251658240,
  "score":3.0,"needs_compaction":true,
  "levels":[{"level":0,"files":12,"bytes":50331648,"target_bytes":0,"score":3.0},
            {"level":1,"files":7,"bytes":469762048,"target_bytes":268435456,"score":1.75},
                      {"level":6,"files":400,"bytes":26843545600,"target_bytes":26843545600,"score":1.0}]}"#;
const NO_DEBT: &str = r#"{"version":10,"l0_files":1,"l0_bytes":4096,"pending_bytes":0,
  "score":0.25,"needs_compaction":false,
  "levels":[{"level":0,"files":1,"bytes":4096,"target_bytes":0,"score":0.25}]}"#;

/// Issue 11, "it drives itself" and "honest outcomes": the debt the index
/// reports starts bounded compaction Jobs up to maxConcurrentJobs (the
/// schedule is a year away); Jobs ended by the pod failure policy on exit 3
/// or 4 are neither successes nor failures and hold debt Jobs until the LSM
/// changes (issue 23: no Job every 30 s that exits 3); a real success is recorded; an
/// index that stops answering falls back to the schedule with a condition and
/// one Warning, not an error loop.
#[tokio::test]
async fn compaction_debt_drives_jobs_and_idle_outcomes_count_as_neither() -> Result<()> {
    let index = FakeIndex::start(HEAVY_DEBT).await?;
    let mut env = OperatorEnv::new("op-debt").await?;
    env.start_operator_with("op-a", true, &[index.url_flag()])
        .await?;
    env.apply_skyvault(&small_skyvault("debt")).await?;

    let first = wait_for("two debt-driven compaction Jobs", T, || async {
        let jobs = jobs_of_kind(&env, "compact").await?;
        ensure!(jobs.len() == 2, "{} Jobs", jobs.len());
        Ok(jobs)
    })
    .await
    .with_context(|| env.operator_logs())?;
    ensure!(
        index.last_path() == format!("/{}/debt/lsm", env.namespace()),
        "debt read from {}",
        index.last_path()
    );
    for job in &first {
        let name = job.metadata.name.clone().unwrap_or_default();
        ensure!(
            name.starts_with("debt-compact-") && (name.ends_with("-d0") || name.ends_with("-d1")),
            "debt Job name {name}"
        );
        let note = job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("skyvault.io/debt"));
        ensure!(
            note.is_some_and(|n| n.contains("score 3.00")),
            "{name}: debt annotation {note:?}"
        );
        let policy = job
            .spec
            .as_ref()
            .and_then(|s| s.pod_failure_policy.as_ref())
            .with_context(|| format!("{name} has no podFailurePolicy"))?;
        let codes = policy.rules[0]
            .on_exit_codes
            .as_ref()
            .context("exit code rule")?;
        ensure!(
            policy.rules[0].action == "FailJob" && codes.values == vec![3, 4],
            "{name}: {policy:?}"
        );
    }
    wait_for("the debt in status and `kubectl get sv`", T, || async {
        let s = env.get_skyvault("debt").await?;
        let d = &s.data["status"]["compactionDebt"];
        ensure!(d["l0Files"] == 12 && d["needsCompaction"] == true, "{d}");
        ensure!(d["summary"] == "score 3.00, 240Mi pending", "{d}");
        let auto = condition(&s, "AutoCompaction");
        ensure!(
            auto.as_ref()
                .is_some_and(|c| c.0 == "True" && c.1 == "DebtObserved"),
            "AutoCompaction {auto:?}"
        );
        let cols = printed_columns(&env, "debt").await?;
        ensure!(
            cols.get("L0 Files").map(String::as_str) == Some("12"),
            "{cols:?}"
        );
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;
    compaction_jobs_stay(
        &env,
        "no third Job while two run",
        2,
        Duration::from_secs(5),
    )
    .await?;

    // Exit 3 and exit 4: the Jobs end without a success or a failure.
    let names: Vec<String> = first
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    env.end_job_by_policy(&names[0], 3).await?;
    env.end_job_by_policy(&names[1], 4).await?;
    wait_for("idle outcomes in status", T, || async {
        let s = env.get_skyvault("debt").await?;
        let c = &s.data["status"]["compaction"];
        ensure!(c["lastRun"]["jobName"] == names[1].as_str(), "{c}");
        ensure!(c["lastRun"]["result"] == "InputsClaimed", "{c}");
        ensure!(c["lastRun"]["debt"] == true, "{c}");
        ensure!(
            c["lastSuccessfulTime"].is_null(),
            "idle counted as success: {c}"
        );
        ensure!(c["lastResult"].is_null(), "idle counted as a result: {c}");
        let degraded = condition(&s, "Degraded");
        ensure!(
            degraded.as_ref().is_some_and(|d| d.0 == "False"),
            "idle counted as failure: {degraded:?}"
        );
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;

    // Idle on the LSM as the index still reports it: no Job starts again (the 30 s hold
    // of before would have started two by now), however often the debt is read ...
    compaction_jobs_stay(
        &env,
        "no debt Job while the LSM keeps the shape the idle Jobs saw",
        2,
        Duration::from_secs(40),
    )
    .await?;
    // ... until it changes (a flush added an L0 file): then the debt starts Jobs again.
    index.set(&HEAVY_DEBT.replace(r#""files":12"#, r#""files":13"#));
    let second = wait_for(
        "debt Jobs again once the LSM changed",
        Duration::from_secs(60),
        || async {
            let jobs = jobs_of_kind(&env, "compact").await?;
            let new: Vec<String> = jobs
                .iter()
                .filter_map(|j| j.metadata.name.clone())
                .filter(|n| !names.contains(n))
                .collect();
            ensure!(!new.is_empty(), "no new Job yet");
            Ok(new)
        },
    )
    .await
    .with_context(|| env.operator_logs())?;

    // The debt is paid: one Job did real work, no more Jobs start.
    index.set(NO_DEBT);
    wait_for("the paid debt in status", T, || async {
        let s = env.get_skyvault("debt").await?;
        let d = &s.data["status"]["compactionDebt"];
        ensure!(d["needsCompaction"] == false && d["l0Files"] == 1, "{d}");
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;
    for name in &second {
        env.finish_job(name, true).await?;
    }
    wait_for("a real success recorded", T, || async {
        let s = env.get_skyvault("debt").await?;
        let c = &s.data["status"]["compaction"];
        ensure!(c["lastSuccessfulTime"].is_string(), "{c}");
        ensure!(c["lastResult"]["result"] == "Succeeded", "{c}");
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;
    let count = jobs_of_kind(&env, "compact").await?.len();
    holds_for("no Jobs without debt", Duration::from_secs(12), || async {
        let n = jobs_of_kind(&env, "compact").await?.len();
        ensure!(n == count, "{n} compaction Jobs, had {count}");
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;

    // The index stops answering while its Pods are ready: schedule only, said once.
    index.set("");
    set_all_ready(&env, "debt").await?;
    let s = wait_condition(
        &env,
        "debt",
        "AutoCompaction",
        "False",
        Some("IndexUnreachable"),
    )
    .await?;
    let (_, _, message, _) = condition(&s, "AutoCompaction").unwrap_or_default();
    ensure!(message.contains("503"), "AutoCompaction message {message}");
    ensure!(
        s.data["status"]["compactionDebt"]["l0Files"] == 1,
        "the last reading stays: {}",
        s.data["status"]["compactionDebt"]
    );
    warning_event(&env, "debt", "CompactionDebtUnavailable").await?;
    wait_condition(&env, "debt", "Ready", "True", None).await?;
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// Level 0 due (10 files of 20 MiB, trigger 8) over an upgraded store's 4 GiB L1, as a data
/// plane with issue 23's `/lsm` fields reports it: going down would rewrite L1 for 200 MiB
/// of L0, and no run of small files (under 16 MiB) has formed, so the picker has nothing.
fn unpickable_l0(files: usize) -> String {
    let sizes = vec![(20u64 << 20).to_string(); files].join(",");
    let l0_bytes = (files as u64) * (20 << 20);
    let score = files as f64 / 8.0;
    format!(
        r#"{{"version":3,"l0_files":{files},"l0_bytes":{l0_bytes},"pending_bytes":{l0_bytes},
          "score":{score},"needs_compaction":true,"base_level":1,"l0_output_level":1,
          "l0_file_bytes":[{sizes}],"l0_output_files_outside_l0":0,
          "levels":[{{"level":0,"files":{files},"bytes":{l0_bytes},"target_bytes":0,"score":{score}}},
                    {{"level":1,"files":64,"bytes":4294967296,"target_bytes":5368709120,"score":0.8}},
                    {{"level":6,"files":0,"bytes":0,"target_bytes":0,"score":0.0}}]}}"#
    )
}

/// Issue 23 item 5: with level 0 due but nothing to pick, the operator starts no Job (before,
/// one every ~30 s that exited 3), reading the count from the real `/lsm` contract; once L0
/// holds twice its trigger the picker sends it down regardless, and one Job starts.
#[tokio::test]
async fn no_debt_job_while_level_0_is_due_but_nothing_can_be_picked() -> Result<()> {
    let index = FakeIndex::start(&unpickable_l0(10)).await?;
    let mut env = OperatorEnv::new("op-unpickable").await?;
    env.start_operator_with("op-a", true, &[index.url_flag()])
        .await?;
    env.apply_skyvault(&small_skyvault("stuck")).await?;
    wait_for("the debt in status", T, || async {
        let s = env.get_skyvault("stuck").await?;
        let d = &s.data["status"]["compactionDebt"];
        ensure!(d["l0Files"] == 10 && d["needsCompaction"] == true, "{d}");
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;
    compaction_jobs_stay(
        &env,
        "no Job while nothing can be picked",
        0,
        Duration::from_secs(15),
    )
    .await?;
    index.set(&unpickable_l0(16));
    wait_for(
        "one L0 Job at twice the trigger",
        Duration::from_secs(45),
        || async {
            let n = jobs_of_kind(&env, "compact").await?.len();
            ensure!(n == 1, "{n} compaction Jobs");
            Ok(())
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    env.assert_no_rbac_denials()?;
    Ok(())
}
