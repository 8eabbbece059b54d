//! Scheduled and manual compaction/purge Jobs: no overlap, bounded history, results and
//! failures in status.

use super::*;

/// With a one-minute schedule a compaction Job appears with the right
/// command and owner; while it is active no second one is created; when it
/// completes the missed run starts; history is bounded; results reach status.
#[tokio::test]
async fn scheduled_compaction_jobs_forbid_overlap_and_bound_history() -> Result<()> {
    let mut env = OperatorEnv::new("op-sched").await?;
    env.start_operator("op-a", true).await?;
    let mut sv = small_skyvault("sched");
    sv["spec"]["compaction"] = json!({ "schedule": "* * * * *", "successfulJobsHistoryLimit": 1 });
    let uid = env.apply_skyvault(&sv).await?.metadata.uid.unwrap();

    let first = wait_for(
        "the first scheduled compaction Job",
        Duration::from_secs(100),
        || async {
            jobs_of_kind(&env, "compact")
                .await?
                .into_iter()
                .next()
                .context("none yet")
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    let first_name = first.metadata.name.clone().unwrap();
    ensure!(
        first_name.starts_with("sched-compact-"),
        "Job name {first_name}"
    );
    check_owner(
        first.metadata.owner_references.as_ref(),
        &uid,
        "compaction Job",
    )?;
    let args = job_args(&first);
    ensure!(args.iter().any(|a| a == "compact"), "Job command {args:?}");
    ensure!(
        jobs_of_kind(&env, "purge").await?.is_empty(),
        "purge is not due"
    );
    env.start_job(&first_name).await?;

    // The next schedule time passes while the first Job is active: no second Job.
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let past_next_minute = Duration::from_secs((60 - now.rem_euclid(60) + 10) as u64);
    compaction_jobs_stay(
        &env,
        "only one compaction Job while it is active",
        1,
        past_next_minute,
    )
    .await?;

    env.finish_job(&first_name, true).await?;
    // The success reaches status (lastRun may already have moved on to the
    // missed run, which starts as soon as the first one is done).
    wait_for("status.compaction.lastSuccessfulTime", T, || async {
        let s = env.get_skyvault("sched").await?;
        let c = &s.data["status"]["compaction"];
        ensure!(c["lastSuccessfulTime"].is_string(), "compaction status {c}");
        let last = &c["lastRun"];
        ensure!(
            last["manual"] != true,
            "scheduled run marked manual: {last}"
        );
        ensure!(
            last["jobName"] != first_name.as_str() || last["result"] == "Succeeded",
            "lastRun {last}"
        );
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;

    // The run missed while the first was active starts now (Forbid semantics).
    let second = wait_for(
        "a second compaction Job",
        Duration::from_secs(90),
        || async {
            let jobs = jobs_of_kind(&env, "compact").await?;
            jobs.into_iter()
                .find(|j| j.metadata.name.as_deref() != Some(first_name.as_str()))
                .context("none yet")
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    let second_name = second.metadata.name.clone().unwrap();
    ensure!(
        job_args(&second).iter().any(|a| a == "compact"),
        "command {:?}",
        job_args(&second)
    );
    env.finish_job(&second_name, true).await?;

    // successfulJobsHistoryLimit 1: the older finished Job goes away.
    wait_for("history bounded to one successful Job", T, || async {
        let jobs = jobs_of_kind(&env, "compact").await?;
        let finished: Vec<_> = jobs
            .iter()
            .filter(|j| job_finished(j))
            .filter_map(|j| j.metadata.name.clone())
            .collect();
        ensure!(
            !finished.contains(&first_name),
            "the first Job is still kept: {finished:?}"
        );
        ensure!(finished.len() <= 1, "finished Jobs kept: {finished:?}");
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// The manual-trigger annotation runs one Job now (compaction and purge);
/// the same value runs nothing more; a failed Job degrades the SkyVault and
/// a later success clears it; failed history is bounded.
#[tokio::test]
async fn manual_triggers_run_jobs_and_results_reach_status() -> Result<()> {
    let mut env = OperatorEnv::new("op-trigger").await?;
    env.start_operator("op-a", true).await?;
    let mut sv = small_skyvault("trig");
    sv["spec"]["compaction"]["failedJobsHistoryLimit"] = json!(1);
    sv["spec"]["compaction"]["successfulJobsHistoryLimit"] = json!(1);
    let uid = env.apply_skyvault(&sv).await?.metadata.uid.unwrap();
    wait_statefulset(&env, "trig-batcher", "created", |_| Ok(())).await?;
    ensure!(
        jobs_of_kind(&env, "compact").await?.is_empty(),
        "no Job before a trigger"
    );

    env.merge_patch_skyvault(
        "trig",
        json!({"metadata": {"annotations": {"skyvault.io/trigger-compaction": "one"}}}),
    )
    .await?;
    let job = wait_for(
        "a triggered compaction Job",
        Duration::from_secs(30),
        || async {
            jobs_of_kind(&env, "compact")
                .await?
                .into_iter()
                .next()
                .context("none yet")
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    let job1 = job.metadata.name.clone().unwrap();
    check_owner(
        job.metadata.owner_references.as_ref(),
        &uid,
        "triggered Job",
    )?;
    ensure!(
        job_args(&job).iter().any(|a| a == "compact"),
        "command {:?}",
        job_args(&job)
    );
    wait_for("handledTrigger = one", T, || async {
        let s = env.get_skyvault("trig").await?;
        ensure!(
            s.data["status"]["compaction"]["handledTrigger"] == "one",
            "{}",
            s.data["status"]["compaction"]
        );
        ensure!(
            s.data["status"]["compaction"]["lastRun"]["manual"] == true,
            "lastRun {}",
            s.data["status"]["compaction"]["lastRun"]
        );
        Ok(())
    })
    .await?;

    // Failure is reflected in status and as Degraded.
    env.finish_job(&job1, false).await?;
    let s = wait_condition(&env, "trig", "Degraded", "True", Some("CompactionFailed")).await?;
    ensure!(
        s.data["status"]["compaction"]["lastRun"]["result"] == "Failed",
        "{}",
        s.data["status"]["compaction"]["lastRun"]
    );
    // Same trigger value: nothing new.
    holds_for(
        "no second Job for the same trigger value",
        Duration::from_secs(5),
        || async {
            let n = jobs_of_kind(&env, "compact").await?.len();
            ensure!(n == 1, "{n} Jobs");
            Ok(())
        },
    )
    .await?;

    // New value: one more Job; its success clears Degraded.
    env.merge_patch_skyvault(
        "trig",
        json!({"metadata": {"annotations": {"skyvault.io/trigger-compaction": "two"}}}),
    )
    .await?;
    let job2 = wait_for(
        "a second triggered Job",
        Duration::from_secs(30),
        || async {
            jobs_of_kind(&env, "compact")
                .await?
                .into_iter()
                .find(|j| !job_finished(j))
                .and_then(|j| j.metadata.name)
                .context("none yet")
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    env.finish_job(&job2, true).await?;
    wait_condition(&env, "trig", "Degraded", "False", None).await?;
    // `kubectl get sv` shows when the last compaction succeeded.
    wait_for("the Last Compaction column", T, || async {
        let cols = printed_columns(&env, "trig").await?;
        ensure!(
            cols.get("Last Compaction").is_some_and(|c| !c.is_empty()),
            "columns {cols:?}"
        );
        Ok(())
    })
    .await?;

    // Failed-history limit 1 and successful-history limit 1: a third failed run
    // replaces the first failed one.
    env.merge_patch_skyvault(
        "trig",
        json!({"metadata": {"annotations": {"skyvault.io/trigger-compaction": "three"}}}),
    )
    .await?;
    let job3 = wait_for("a third triggered Job", Duration::from_secs(30), || async {
        jobs_of_kind(&env, "compact")
            .await?
            .into_iter()
            .find(|j| !job_finished(j))
            .and_then(|j| j.metadata.name)
            .context("none yet")
    })
    .await?;
    env.finish_job(&job3, false).await?;
    wait_for("bounded Job history", T, || async {
        let names: Vec<String> = jobs_of_kind(&env, "compact")
            .await?
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect();
        ensure!(
            !names.contains(&job1),
            "the older failed Job is kept: {names:?}"
        );
        ensure!(
            names.len() == 2,
            "want one failed + one successful Job, have {names:?}"
        );
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;

    // Purge has its own trigger and command.
    env.merge_patch_skyvault(
        "trig",
        json!({"metadata": {"annotations": {"skyvault.io/trigger-purge": "p1"}}}),
    )
    .await?;
    let purge = wait_for("a triggered purge Job", Duration::from_secs(30), || async {
        jobs_of_kind(&env, "purge")
            .await?
            .into_iter()
            .next()
            .context("none yet")
    })
    .await?;
    ensure!(
        job_args(&purge).iter().any(|a| a == "purge"),
        "purge command {:?}",
        job_args(&purge)
    );
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// docs/operations.md: `Degraded=True CompactionFailed` "clears when a later
/// one succeeds" — not when a retry merely starts.
#[tokio::test]
async fn failed_compaction_stays_degraded_until_a_later_run_succeeds() -> Result<()> {
    let mut env = OperatorEnv::new("op-degraded").await?;
    env.start_operator("op-a", true).await?;
    env.apply_skyvault(&small_skyvault("deg")).await?;
    let trigger = |value: &'static str| json!({"metadata": {"annotations": {"skyvault.io/trigger-compaction": value}}});
    let running_job = || async {
        jobs_of_kind(&env, "compact")
            .await?
            .into_iter()
            .find(|j| !job_finished(j))
            .and_then(|j| j.metadata.name)
            .context("no running Job yet")
    };
    env.merge_patch_skyvault("deg", trigger("a")).await?;
    let first = wait_for("the first triggered Job", T, running_job).await?;
    env.finish_job(&first, false).await?;
    wait_condition(&env, "deg", "Degraded", "True", Some("CompactionFailed")).await?;

    env.merge_patch_skyvault("deg", trigger("b")).await?;
    let retry = wait_for("the retry Job", T, running_job).await?;
    wait_for("the operator to record the retry", T, || async {
        let s = env.get_skyvault("deg").await?;
        let c = &s.data["status"]["compaction"];
        ensure!(
            c["handledTrigger"] == "b" && c["lastRun"]["jobName"] == retry.as_str(),
            "{c}"
        );
        Ok(())
    })
    .await?;
    let s = env.get_skyvault("deg").await?;
    ensure!(
        condition(&s, "Degraded").is_some_and(|c| c.0 == "True" && c.1 == "CompactionFailed"),
        "Degraded cleared while the retry is still running: {:?}",
        condition(&s, "Degraded")
    );
    env.finish_job(&retry, true).await?;
    wait_condition(&env, "deg", "Degraded", "False", None).await?;
    env.assert_no_rbac_denials()?;
    Ok(())
}
