use super::*;
use crate::testutil::{job_with, sample, ts};

#[test]
fn job_names_are_deterministic_and_fit_a_label() {
    let mut sv = sample();
    let t = ts("2030-01-01T00:10:00Z");
    assert_eq!(
        job_name(&sv, JobKind::Compact, t, None),
        "vault-compact-31557610"
    );
    assert_eq!(
        job_name(&sv, JobKind::Purge, t, None),
        "vault-purge-31557610"
    );
    let manual = job_name(&sv, JobKind::Compact, t, Some("now"));
    assert_eq!(manual, job_name(&sv, JobKind::Compact, t, Some("now")));
    assert_ne!(manual, job_name(&sv, JobKind::Compact, t, Some("again")));
    sv.metadata.name = Some("a".repeat(crate::crd::MAX_NAME_LEN));
    let longest = job_name(&sv, JobKind::Compact, ts("2150-01-01T00:00:00Z"), Some("x"));
    assert!(longest.len() <= 63, "{} chars", longest.len());
}

#[test]
fn job_runs_the_subcommand_once_with_the_kinds_settings() {
    let mut sv = sample();
    sv.spec.compaction.job.backoff_limit = 5;
    sv.spec.compaction.job.active_deadline_seconds = 900;
    let job = build_job(
        &sv,
        JobKind::Compact,
        ts("2030-01-01T00:10:00Z"),
        None,
        "sum",
    );
    assert_eq!(job.metadata.name.as_deref(), Some("vault-compact-31557610"));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[JOB_KIND_LABEL], "compact");
    assert_eq!(labels["app.kubernetes.io/instance"], "vault");
    let ann = job.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[SCHEDULED_TIME_ANNOTATION], "2030-01-01T00:10:00Z");
    assert!(!ann.contains_key(TRIGGER_VALUE_ANNOTATION));
    assert_eq!(
        job.metadata.owner_references.as_ref().unwrap()[0].name,
        "vault"
    );
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(5));
    assert_eq!(spec.active_deadline_seconds, Some(900));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let c = &pod.containers[0];
    assert_eq!(c.args.as_ref().unwrap(), &vec!["compact".to_string()]);
    assert!(
        c.readiness_probe.is_none() && c.ports.is_none(),
        "Jobs serve nothing"
    );
    assert_eq!(
        c.security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
    // Bounded by the streaming merge, not by file sizes: 256 MiB request, 512 MiB limit.
    let res = c.resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "256Mi");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "512Mi");
    let env: Vec<_> = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(env.contains(&"SKYVAULT_METADATA_URL"));
}

#[test]
fn manual_purge_job_records_its_trigger() {
    let job = build_job(
        &sample(),
        JobKind::Purge,
        ts("2030-01-01T00:10:30Z"),
        Some("run-1"),
        "sum",
    );
    let ann = job.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[TRIGGER_VALUE_ANNOTATION], "run-1");
    assert_eq!(trigger_value(&job), Some("run-1"));
    let c = &job.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(c.args.as_ref().unwrap(), &vec!["purge".to_string()]);
}

#[test]
fn result_comes_from_terminal_conditions() {
    assert_eq!(
        job_result(&job_with("a", "2030-01-01T00:00:00Z", None, None)),
        JobResult::Running
    );
    let ok = job_with(
        "a",
        "2030-01-01T00:00:00Z",
        Some(JobResult::Succeeded),
        None,
    );
    assert_eq!(job_result(&ok), JobResult::Succeeded);
    let run = job_run(&ok);
    assert_eq!(run.completion_time, Some(Time(ts("2030-01-01T01:00:00Z"))));
    assert_eq!(run.scheduled_time, Some(Time(ts("2030-01-01T00:00:00Z"))));
    let bad = job_with("b", "2030-01-01T00:00:00Z", Some(JobResult::Failed), None);
    let run = job_run(&bad);
    assert_eq!(run.result, JobResult::Failed);
    assert_eq!(
        run.message.as_deref(),
        Some("BackoffLimitExceeded: Job has reached the specified backoff limit")
    );
    assert_eq!(run.completion_time, Some(Time(ts("2030-01-01T01:00:00Z"))));
}

#[test]
fn summary_finds_active_latest_and_history_to_delete() {
    let spec = JobScheduleSpec {
        successful_jobs_history_limit: 2,
        failed_jobs_history_limit: 1,
        ..JobScheduleSpec::default()
    };
    let jobs = vec![
        job_with(
            "j1",
            "2030-01-01T00:10:00Z",
            Some(JobResult::Succeeded),
            None,
        ),
        job_with("j2", "2030-01-01T00:20:00Z", Some(JobResult::Failed), None),
        job_with(
            "j3",
            "2030-01-01T00:30:00Z",
            Some(JobResult::Succeeded),
            None,
        ),
        job_with("j4", "2030-01-01T00:40:00Z", Some(JobResult::Failed), None),
        job_with(
            "j5",
            "2030-01-01T00:50:00Z",
            Some(JobResult::Succeeded),
            None,
        ),
        job_with("m1", "2030-01-01T00:55:00Z", None, Some("t1")),
    ];
    let h = summarize(&jobs, &spec);
    assert_eq!(h.active, vec!["m1"]);
    assert_eq!(h.latest.as_ref().unwrap().job_name, "m1");
    assert!(h.latest.as_ref().unwrap().manual);
    assert_eq!(
        h.last_scheduled,
        Some(ts("2030-01-01T00:50:00Z")),
        "manual runs don't count"
    );
    assert_eq!(h.triggers, vec!["t1"]);
    let mut deleted = h.to_delete.clone();
    deleted.sort();
    assert_eq!(deleted, vec!["j1", "j2"]);
    assert_eq!(h.last_successful, Some(Time(ts("2030-01-01T01:00:00Z"))));
}

#[test]
fn zero_history_limits_delete_every_finished_job() {
    let spec = JobScheduleSpec {
        successful_jobs_history_limit: 0,
        failed_jobs_history_limit: 0,
        ..JobScheduleSpec::default()
    };
    let jobs = vec![
        job_with(
            "j1",
            "2030-01-01T00:10:00Z",
            Some(JobResult::Succeeded),
            None,
        ),
        job_with("j2", "2030-01-01T00:20:00Z", Some(JobResult::Failed), None),
        job_with("j3", "2030-01-01T00:30:00Z", None, None),
    ];
    let h = summarize(&jobs, &spec);
    assert_eq!(h.to_delete, vec!["j1", "j2"]);
    assert_eq!(h.active, vec!["j3"]);
}

#[test]
fn empty_history() {
    let h = summarize(&[], &JobScheduleSpec::default());
    assert_eq!(h, JobHistory::default());
}
