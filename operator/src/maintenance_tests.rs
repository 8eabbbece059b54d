use super::*;
use crate::crd::SkyVaultStatus;
use crate::testutil::{job_with, sample, ts};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// `vault`, created at midnight, compaction every 10 minutes.
fn vault() -> SkyVault {
    let mut sv = sample();
    sv.metadata.creation_timestamp = Some(Time(ts("2030-01-01T00:00:00Z")));
    sv
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
    sv.metadata.annotations = Some(
        [(
            crate::naming::TRIGGER_COMPACTION_ANNOTATION.to_string(),
            "go".to_string(),
        )]
        .into(),
    );
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
    sv.metadata.annotations = Some(
        [(
            crate::naming::TRIGGER_PURGE_ANNOTATION.to_string(),
            "1".to_string(),
        )]
        .into(),
    );
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
    // ... or through the Job's annotation if the status write was lost.
    let name = job.metadata.name.clone().unwrap();
    let jobs = vec![job_with(
        &name,
        "2030-01-01T00:05:00Z",
        Some(JobResult::Succeeded),
        Some("1"),
    )];
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
        .is_empty()
    );
    // A new value runs again.
    sv.metadata.annotations = Some(
        [(
            crate::naming::TRIGGER_PURGE_ANNOTATION.to_string(),
            "2".to_string(),
        )]
        .into(),
    );
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
