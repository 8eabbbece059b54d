use super::*;
use crate::crd::SkyVaultStatus;
use crate::naming::{L0_FILES_ANNOTATION, LSM_SHAPE_ANNOTATION};
use crate::testutil::{debt_job_with, finished_at, job_with, sample, ts};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// `vault`, created at midnight, compaction every 10 minutes.
fn vault() -> SkyVault {
    let mut sv = sample();
    sv.metadata.creation_timestamp = Some(Time(ts("2030-01-01T00:00:00Z")));
    sv
}

/// Sets the trigger annotation `key` to `value`.
fn trigger(sv: &mut SkyVault, key: &str, value: &str) {
    sv.metadata.annotations = Some([(key.to_string(), value.to_string())].into());
}

fn with_compaction_status(mut sv: SkyVault, st: JobKindStatus) -> SkyVault {
    sv.status = Some(SkyVaultStatus {
        compaction: Some(st),
        ..SkyVaultStatus::default()
    });
    sv
}

#[test]
fn creates_the_due_job_and_requeues_for_the_next() {
    let p = plan(
        &vault(),
        JobKind::Compact,
        &[],
        ts("2030-01-01T00:10:05Z"),
        "sum",
        None,
    )
    .unwrap();
    let job = p.create.into_iter().next().expect("due");
    assert_eq!(job.metadata.name.as_deref(), Some("vault-compact-31557610"));
    assert_eq!(
        p.status.last_schedule_time,
        Some(Time(ts("2030-01-01T00:10:00Z")))
    );
    assert_eq!(
        p.status.next_schedule_time,
        Some(Time(ts("2030-01-01T00:20:00Z")))
    );
    let run = p.status.last_run.unwrap();
    assert_eq!(run.result, JobResult::Running);
    assert_eq!(run.job_name, "vault-compact-31557610");
    // Compaction looks at the debt again well before the next schedule time ...
    assert_eq!(p.requeue_after, Some(DEBT_POLL));
    assert_eq!(
        p.events,
        vec![JobEvent::Created {
            job: "vault-compact-31557610".into(),
            manual: false,
            missed: 0
        }]
    );
}

#[test]
fn nothing_due_before_the_first_time() {
    let p = plan(
        &vault(),
        JobKind::Purge,
        &[],
        ts("2030-01-01T00:10:00Z"),
        "sum",
        None,
    )
    .unwrap();
    assert!(p.create.is_empty());
    assert!(p.events.is_empty());
    // Purge runs at minute 17 and wakes up just after it.
    assert_eq!(
        p.status.next_schedule_time,
        Some(Time(ts("2030-01-01T00:17:00Z")))
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(421)));
    assert_eq!(p.debt, None, "purge does not follow the debt");
}

#[test]
fn existing_job_for_the_time_is_not_created_again() {
    // Status was lost, but the Job carries its schedule time.
    let jobs = vec![job_with(
        "vault-compact-31557610",
        "2030-01-01T00:10:00Z",
        None,
        None,
    )];
    let p = plan(
        &vault(),
        JobKind::Compact,
        &jobs,
        ts("2030-01-01T00:11:00Z"),
        "sum",
        None,
    )
    .unwrap();
    assert!(p.create.is_empty());
    assert!(p.events.is_empty());
    assert_eq!(
        p.status.last_run.unwrap().job_name,
        "vault-compact-31557610"
    );
}

#[test]
fn never_starts_while_the_previous_job_runs() {
    let jobs = vec![job_with(
        "vault-compact-31557610",
        "2030-01-01T00:10:00Z",
        None,
        None,
    )];
    let p = plan(
        &vault(),
        JobKind::Compact,
        &jobs,
        ts("2030-01-01T00:20:30Z"),
        "sum",
        None,
    )
    .unwrap();
    assert!(p.create.is_empty());
    assert_eq!(
        p.events,
        vec![JobEvent::Blocked {
            running: "vault-compact-31557610".into()
        }]
    );
    // Once it finishes, the 00:20 run is started late (within the deadline).
    let done = vec![job_with(
        "vault-compact-31557610",
        "2030-01-01T00:10:00Z",
        Some(JobResult::Succeeded),
        None,
    )];
    let p = plan(
        &vault(),
        JobKind::Compact,
        &done,
        ts("2030-01-01T00:25:00Z"),
        "sum",
        None,
    )
    .unwrap();
    assert_eq!(
        p.create[0].clone().metadata.name.as_deref(),
        Some("vault-compact-31557620")
    );
}

#[test]
fn missed_runs_are_reported_and_coalesced() {
    let jobs = vec![job_with(
        "vault-compact-31557610",
        "2030-01-01T00:10:00Z",
        Some(JobResult::Succeeded),
        None,
    )];
    let p = plan(
        &vault(),
        JobKind::Compact,
        &jobs,
        ts("2030-01-01T00:45:00Z"),
        "sum",
        None,
    )
    .unwrap();
    assert_eq!(
        p.create[0].clone().metadata.name.as_deref(),
        Some("vault-compact-31557640")
    );
    assert_eq!(
        p.events,
        vec![JobEvent::Created {
            job: "vault-compact-31557640".into(),
            manual: false,
            missed: 2
        }]
    );
}

#[test]
fn too_late_run_is_skipped_once() {
    let mut sv = vault();
    sv.spec.compaction.job.starting_deadline_seconds = 60;
    let p = plan(
        &sv,
        JobKind::Compact,
        &[],
        ts("2030-01-01T00:15:00Z"),
        "sum",
        None,
    )
    .unwrap();
    assert!(p.create.is_empty());
    assert_eq!(
        p.events,
        vec![JobEvent::MissedDeadline {
            at: ts("2030-01-01T00:10:00Z")
        }]
    );
    // The status remembers it, so the next reconcile is quiet.
    let sv = with_compaction_status(sv, p.status);
    let p = plan(
        &sv,
        JobKind::Compact,
        &[],
        ts("2030-01-01T00:16:00Z"),
        "sum",
        None,
    )
    .unwrap();
    assert!(p.events.is_empty());
}

#[test]
fn suspend_stops_scheduled_runs_but_not_manual_ones() {
    let mut sv = vault();
    sv.spec.compaction.job.suspend = true;
    let p = plan(
        &sv,
        JobKind::Compact,
        &[],
        ts("2030-01-01T00:10:05Z"),
        "sum",
        None,
    )
    .unwrap();
    assert!(p.create.is_empty());
    // No schedule time to wake for; only the debt poll.
    assert_eq!(p.requeue_after, Some(DEBT_POLL));
    assert_eq!(p.status.next_schedule_time, None);
    trigger(&mut sv, crate::naming::TRIGGER_COMPACTION_ANNOTATION, "go");
    let p = plan(
        &sv,
        JobKind::Compact,
        &[],
        ts("2030-01-01T00:10:05Z"),
        "sum",
        None,
    )
    .unwrap();
    let job = p.create.into_iter().next().expect("manual run");
    assert!(
        job.metadata
            .name
            .unwrap()
            .starts_with("vault-compact-31557610-")
    );
    assert_eq!(p.status.handled_trigger.as_deref(), Some("go"));
    assert!(p.status.last_run.unwrap().manual);
}

#[test]
fn a_trigger_value_runs_one_job() {
    let mut sv = vault();
    trigger(&mut sv, crate::naming::TRIGGER_PURGE_ANNOTATION, "1");
    let p = plan(
        &sv,
        JobKind::Purge,
        &[],
        ts("2030-01-01T00:05:00Z"),
        "sum",
        None,
    )
    .unwrap();
    let job = p.create.into_iter().next().expect("triggered");
    // Handled through the status ...
    let mut handled = sv.clone();
    handled.status = Some(SkyVaultStatus {
        purge: Some(p.status.clone()),
        ..SkyVaultStatus::default()
    });
    assert!(
        plan(
            &handled,
            JobKind::Purge,
            &[],
            ts("2030-01-01T00:06:00Z"),
            "sum",
            None
        )
        .unwrap()
        .create
        .is_empty()
    );
    // ... or through the Job's annotation if the status write was lost, or not yet seen (a
    // reconcile woken by the new Job reads the SkyVault from before the status write): the
    // status then still names the value, so the server-side apply does not drop it.
    let name = job.metadata.name.clone().unwrap();
    let jobs = vec![job_with(
        &name,
        "2030-01-01T00:05:00Z",
        Some(JobResult::Succeeded),
        Some("1"),
    )];
    let stale = plan(
        &sv,
        JobKind::Purge,
        &jobs,
        ts("2030-01-01T00:06:00Z"),
        "sum",
        None,
    )
    .unwrap();
    assert!(stale.create.is_empty());
    assert_eq!(stale.status.handled_trigger.as_deref(), Some("1"));
    // A new value runs again.
    trigger(&mut sv, crate::naming::TRIGGER_PURGE_ANNOTATION, "2");
    assert!(
        plan(
            &sv,
            JobKind::Purge,
            &jobs,
            ts("2030-01-01T00:06:00Z"),
            "sum",
            None
        )
        .unwrap()
        .create
        .len()
            == 1
    );
}

#[test]
fn failure_is_reported_once_when_seen_finishing() {
    let running = job_with("vault-compact-31557610", "2030-01-01T00:10:00Z", None, None);
    let p = plan(
        &vault(),
        JobKind::Compact,
        &[running],
        ts("2030-01-01T00:12:00Z"),
        "sum",
        None,
    )
    .unwrap();
    let sv = with_compaction_status(vault(), p.status);
    let failed = job_with(
        "vault-compact-31557610",
        "2030-01-01T00:10:00Z",
        Some(JobResult::Failed),
        None,
    );
    let p = plan(
        &sv,
        JobKind::Compact,
        std::slice::from_ref(&failed),
        ts("2030-01-01T00:13:00Z"),
        "sum",
        None,
    )
    .unwrap();
    assert!(
        matches!(&p.events[..], [JobEvent::Failed { job, .. }] if job == "vault-compact-31557610")
    );
    assert_eq!(
        p.status.last_run.as_ref().unwrap().result,
        JobResult::Failed
    );
    let sv = with_compaction_status(vault(), p.status);
    let p = plan(
        &sv,
        JobKind::Compact,
        &[failed],
        ts("2030-01-01T00:14:00Z"),
        "sum",
        None,
    )
    .unwrap();
    assert!(p.events.is_empty());
}

#[test]
fn history_beyond_limits_is_deleted() {
    let mut sv = vault();
    sv.spec.compaction.job.successful_jobs_history_limit = 1;
    let jobs = vec![
        job_with(
            "old",
            "2030-01-01T00:10:00Z",
            Some(JobResult::Succeeded),
            None,
        ),
        job_with(
            "new",
            "2030-01-01T00:20:00Z",
            Some(JobResult::Succeeded),
            None,
        ),
    ];
    let p = plan(
        &sv,
        JobKind::Compact,
        &jobs,
        ts("2030-01-01T00:25:00Z"),
        "sum",
        None,
    )
    .unwrap();
    assert_eq!(p.delete, vec!["old"]);
}

#[test]
fn invalid_schedule_is_an_error() {
    let mut sv = vault();
    sv.spec.purge.job.schedule = Some("99 * * * *".into());
    assert!(
        plan(
            &sv,
            JobKind::Purge,
            &[],
            ts("2030-01-01T00:25:00Z"),
            "sum",
            None
        )
        .is_err()
    );
}

// ---------- compaction debt ----------

/// The index reports level 1 three target files over its target (three Jobs wanted).
fn heavy_debt() -> LsmDebt {
    serde_json::from_str(
        r#"{"version":7,"l0_files":2,"l0_bytes":1000,"pending_bytes":201326592,"score":1.75,
            "needs_compaction":true,
            "levels":[{"level":0,"files":2,"bytes":1000,"target_bytes":0,"score":0.5},
                      {"level":1,"files":7,"bytes":469762048,"target_bytes":268435456,"score":1.75},
                      {"level":6,"files":400,"bytes":26843545600,"target_bytes":26843545600,"score":1.0}]}"#,
    )
    .unwrap()
}

fn calm_debt() -> LsmDebt {
    let mut d = heavy_debt();
    d.needs_compaction = false;
    d.score = 0.5;
    d.levels.truncate(1);
    d
}

fn names(p: &JobPlan) -> Vec<String> {
    p.create.iter().map(|j| j.name_any()).collect()
}

#[test]
fn debt_starts_jobs_up_to_the_concurrency_limit() {
    let d = heavy_debt();
    let now = ts("2030-01-01T00:03:20Z");
    let p = plan(&vault(), JobKind::Compact, &[], now, "sum", Some(&d)).unwrap();
    assert_eq!(
        names(&p),
        vec!["vault-compact-31557603-d0", "vault-compact-31557603-d1"],
        "3 wanted, maxConcurrentJobs 2"
    );
    assert!(p.create.iter().all(jobs::is_debt));
    assert_eq!(p.debt, Some(DebtDecision::Create(2)));
    assert_eq!(p.requeue_after, Some(DEBT_REQUEUE));
    assert_eq!(
        p.events,
        vec![JobEvent::DebtJobs {
            jobs: names(&p),
            debt: "score 1.75, 192Mi pending".into()
        }]
    );
    let last = p.status.last_run.as_ref().unwrap();
    assert!(last.debt && last.result == JobResult::Running);
    assert_eq!(last.job_name, "vault-compact-31557603-d1");
    assert_eq!(
        p.status.last_schedule_time, None,
        "debt Jobs are not schedule runs"
    );

    // With both running (Jobs created by the last reconcile), nothing more in the same minute.
    let running: Vec<Job> = names(&p)
        .iter()
        .map(|n| debt_job_with(n, "2030-01-01T00:03:20Z", None))
        .collect();
    let p = plan(&vault(), JobKind::Compact, &running, now, "sum", Some(&d)).unwrap();
    assert!(p.create.is_empty());
    assert_eq!(p.debt, Some(DebtDecision::Saturated));

    // One finished with real work: its slot is refilled under a free name.
    let mut one_done = running.clone();
    one_done[0] = debt_job_with(
        "vault-compact-31557603-d0",
        "2030-01-01T00:03:20Z",
        Some(JobResult::Succeeded),
    );
    let p = plan(&vault(), JobKind::Compact, &one_done, now, "sum", Some(&d)).unwrap();
    assert_eq!(names(&p), vec!["vault-compact-31557603-d2"]);
    assert!(
        p.status.last_successful_time.is_some(),
        "a compaction that did work is a success"
    );

    // A higher limit lets all three wanted pieces run.
    let mut wide = vault();
    wide.spec.compaction.max_concurrent_jobs = 8;
    let p = plan(&wide, JobKind::Compact, &[], now, "sum", Some(&d)).unwrap();
    assert_eq!(p.create.len(), 3);
}

#[test]
fn no_debt_jobs_without_debt_a_reading_or_the_switch() {
    let now = ts("2030-01-01T00:03:20Z");
    let calm = calm_debt();
    let p = plan(&vault(), JobKind::Compact, &[], now, "sum", Some(&calm)).unwrap();
    assert!(p.create.is_empty());
    assert_eq!(p.requeue_after, Some(DEBT_POLL));
    // The index did not answer: only the schedule (not due before 00:10).
    let p = plan(&vault(), JobKind::Compact, &[], now, "sum", None).unwrap();
    assert!(p.create.is_empty());
    assert_eq!(p.debt, Some(DebtDecision::Idle));
    let mut off = vault();
    off.spec.compaction.trigger_on_debt = false;
    let d = heavy_debt();
    let p = plan(&off, JobKind::Compact, &[], now, "sum", Some(&d)).unwrap();
    assert!(p.create.is_empty());
    let mut suspended = vault();
    suspended.spec.compaction.job.suspend = true;
    let p = plan(&suspended, JobKind::Compact, &[], now, "sum", Some(&d)).unwrap();
    assert!(p.create.is_empty(), "suspend stops every automatic run");
    // The schedule still runs when the index is silent.
    let p = plan(
        &vault(),
        JobKind::Compact,
        &[],
        ts("2030-01-01T00:10:05Z"),
        "sum",
        None,
    )
    .unwrap();
    assert_eq!(names(&p), vec!["vault-compact-31557610"]);
}

#[test]
fn schedule_times_are_covered_while_debt_jobs_fill_every_slot() {
    let d = heavy_debt();
    let running = vec![
        debt_job_with("vault-compact-31557609-d0", "2030-01-01T00:09:00Z", None),
        debt_job_with("vault-compact-31557609-d1", "2030-01-01T00:09:00Z", None),
    ];
    let now = ts("2030-01-01T00:10:05Z");
    let p = plan(&vault(), JobKind::Compact, &running, now, "sum", Some(&d)).unwrap();
    assert!(p.create.is_empty());
    assert_eq!(
        p.events,
        vec![JobEvent::Covered {
            at: ts("2030-01-01T00:10:00Z"),
            running: 2
        }]
    );
    assert_eq!(
        p.status.last_schedule_time,
        Some(Time(ts("2030-01-01T00:10:00Z"))),
        "covered, so not due again"
    );
    // With a slot free the scheduled run starts next to the debt Job, and no debt Job
    // takes that slot as well.
    let p = plan(
        &vault(),
        JobKind::Compact,
        &running[..1],
        now,
        "sum",
        Some(&d),
    )
    .unwrap();
    assert_eq!(names(&p), vec!["vault-compact-31557610"]);
}

#[test]
fn scheduled_runs_still_never_overlap_and_triggers_take_a_free_slot() {
    let d = calm_debt();
    let scheduled = job_with("vault-compact-31557600", "2030-01-01T00:00:00Z", None, None);
    let now = ts("2030-01-01T00:10:05Z");
    let p = plan(
        &vault(),
        JobKind::Compact,
        std::slice::from_ref(&scheduled),
        now,
        "sum",
        Some(&d),
    )
    .unwrap();
    assert!(p.create.is_empty());
    assert!(matches!(&p.events[..], [JobEvent::Blocked { .. }]));
    // A manual run uses the second slot.
    let mut sv = vault();
    trigger(&mut sv, crate::naming::TRIGGER_COMPACTION_ANNOTATION, "go");
    let p = plan(
        &sv,
        JobKind::Compact,
        std::slice::from_ref(&scheduled),
        now,
        "sum",
        Some(&d),
    )
    .unwrap();
    assert_eq!(p.create.len(), 1);
    assert!(jobs::trigger_value(&p.create[0]).is_some());
    // With maxConcurrentJobs 1 it waits.
    sv.spec.compaction.max_concurrent_jobs = 1;
    let p = plan(&sv, JobKind::Compact, &[scheduled], now, "sum", Some(&d)).unwrap();
    assert!(p.create.is_empty());
}

/// The compaction plan at `t` with `job` as the only Job and `reading` as the debt.
fn plan_beside(job: &Job, t: &str, reading: &LsmDebt) -> JobPlan {
    let jobs = std::slice::from_ref(job);
    plan(
        &vault(),
        JobKind::Compact,
        jobs,
        ts(t),
        "sum",
        Some(reading),
    )
    .unwrap()
}

/// A debt Job created at 00:03:00 that found nothing to pick at 00:03:10.
fn idle_debt_job() -> Job {
    finished_at(
        debt_job_with(
            "vault-compact-31557603-d0",
            "2030-01-01T00:03:00Z",
            Some(JobResult::NothingToDo),
        ),
        "2030-01-01T00:03:10Z",
    )
}

#[test]
fn idle_runs_of_an_older_operator_hold_debt_jobs_briefly_and_failures_longer() {
    let d = heavy_debt();
    let idle = idle_debt_job();
    let at = |t: &str| plan_beside(&idle, t, &d);
    let p = at("2030-01-01T00:03:20Z");
    assert!(p.create.is_empty());
    assert_eq!(p.debt, Some(DebtDecision::Hold(ts("2030-01-01T00:03:40Z"))));
    assert_eq!(p.requeue_after, Some(Duration::from_secs(21)));
    assert!(
        p.status.last_successful_time.is_none(),
        "nothing to do is no success"
    );
    assert!(p.status.last_result.is_none(), "nor a result");
    assert!(p.events.is_empty(), "nor a failure");
    assert_eq!(at("2030-01-01T00:03:41Z").create.len(), 2);

    let failed = finished_at(
        debt_job_with(
            "vault-compact-31557603-d0",
            "2030-01-01T00:03:00Z",
            Some(JobResult::Failed),
        ),
        "2030-01-01T00:03:10Z",
    );
    let p = plan(
        &vault(),
        JobKind::Compact,
        &[failed],
        ts("2030-01-01T00:05:00Z"),
        "sum",
        Some(&d),
    )
    .unwrap();
    assert!(p.create.is_empty());
    assert_eq!(p.debt, Some(DebtDecision::Hold(ts("2030-01-01T00:08:10Z"))));
}

/// `job` as created for `reading` (the annotations `build_debt_job` writes).
fn created_for(mut job: Job, reading: &LsmDebt) -> Job {
    let ann = job
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    ann.insert(LSM_SHAPE_ANNOTATION.into(), crate::debt::shape(reading));
    ann.insert(L0_FILES_ANNOTATION.into(), reading.l0_files.to_string());
    job
}

#[test]
fn an_idle_job_holds_debt_jobs_until_the_lsm_changes_not_for_a_while() {
    let d = heavy_debt();
    let idle = created_for(idle_debt_job(), &d);
    let at = |t: &str, reading: &LsmDebt| plan_beside(&idle, t, reading);
    // Minutes later, the same files: still nothing to pick, no Job (the short hold of
    // before would have started two by now), and the debt is read again within a poll.
    let p = at("2030-01-01T00:06:00Z", &d);
    assert!(p.create.is_empty());
    assert_eq!(p.debt, Some(DebtDecision::Hold(ts("2030-01-01T00:13:10Z"))));
    assert_eq!(p.requeue_after, Some(DEBT_POLL));
    // Group commits alone change nothing; a flush into L0 does.
    let mut committed = d.clone();
    committed.version += 50;
    assert!(at("2030-01-01T00:06:00Z", &committed).create.is_empty());
    let mut flushed = d.clone();
    flushed.levels[0].files += 1;
    assert_eq!(at("2030-01-01T00:03:20Z", &flushed).create.len(), 2);
}

#[test]
fn a_failure_among_concurrent_jobs_is_reported_once_and_kept_until_a_success() {
    let d = calm_debt();
    let failed = finished_at(
        debt_job_with(
            "vault-compact-31557603-d0",
            "2030-01-01T00:03:00Z",
            Some(JobResult::Failed),
        ),
        "2030-01-01T00:04:00Z",
    );
    // A newer Job is running: the failure of the older one is still seen and reported.
    let newer = debt_job_with("vault-compact-31557603-d1", "2030-01-01T00:03:30Z", None);
    let jobs = vec![failed.clone(), newer];
    let now = ts("2030-01-01T00:05:00Z");
    let p = plan(&vault(), JobKind::Compact, &jobs, now, "sum", Some(&d)).unwrap();
    assert!(
        matches!(&p.events[..], [JobEvent::Failed { job, .. }] if job == "vault-compact-31557603-d0")
    );
    assert_eq!(
        p.status.last_run.as_ref().unwrap().result,
        JobResult::Running
    );
    assert_eq!(
        p.status.last_result.as_ref().unwrap().result,
        JobResult::Failed
    );
    let sv = with_compaction_status(vault(), p.status);
    let p = plan(&sv, JobKind::Compact, &jobs, now, "sum", Some(&d)).unwrap();
    assert!(p.events.is_empty(), "reported once");

    // The newer one finds nothing to do, and the failed Job is deleted by the history
    // limits: the recorded failure stays the last result.
    let idle = finished_at(
        debt_job_with(
            "vault-compact-31557603-d1",
            "2030-01-01T00:03:30Z",
            Some(JobResult::NothingToDo),
        ),
        "2030-01-01T00:06:00Z",
    );
    let p = plan(
        &sv,
        JobKind::Compact,
        std::slice::from_ref(&idle),
        now,
        "sum",
        Some(&d),
    )
    .unwrap();
    assert_eq!(
        p.status.last_result.as_ref().unwrap().job_name,
        "vault-compact-31557603-d0"
    );
    assert!(p.events.is_empty());

    // A later success replaces it.
    let ok = finished_at(
        debt_job_with(
            "vault-compact-31557603-d2",
            "2030-01-01T00:04:00Z",
            Some(JobResult::Succeeded),
        ),
        "2030-01-01T00:07:00Z",
    );
    let sv = with_compaction_status(vault(), p.status);
    let p = plan(&sv, JobKind::Compact, &[idle, ok], now, "sum", Some(&d)).unwrap();
    let last = p.status.last_result.as_ref().unwrap();
    assert_eq!(
        (last.job_name.as_str(), last.result),
        ("vault-compact-31557603-d2", JobResult::Succeeded)
    );
    assert_eq!(
        p.status.last_successful_time,
        Some(Time(ts("2030-01-01T00:07:00Z")))
    );
}
