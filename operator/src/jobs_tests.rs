use super::*;
use crate::testutil::{debt_job_with, finished_at, job_with, sample, ts};
use std::collections::BTreeMap;

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
    // The inputs' reads and the output being written (job_memory): 261 MiB, limit twice.
    let res = c.resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "261Mi");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "522Mi");
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

/// History limits: successful, failed.
fn limits(successful: i32, failed: i32) -> JobScheduleSpec {
    JobScheduleSpec {
        successful_jobs_history_limit: successful,
        failed_jobs_history_limit: failed,
        ..JobScheduleSpec::default()
    }
}

#[test]
fn summary_finds_active_latest_and_history_to_delete() {
    let spec = limits(2, 1);
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
    let spec = limits(0, 0);
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

#[test]
fn compaction_job_ends_on_idle_exit_codes_and_reports_its_summary() {
    let mut sv = sample();
    sv.spec.compaction.max_input_bytes = Some(1 << 30);
    let job = build_job(
        &sv,
        JobKind::Compact,
        ts("2030-01-01T00:10:00Z"),
        None,
        "sum",
    );
    let spec = job.spec.unwrap();
    let policy = spec.pod_failure_policy.expect("compaction has a policy");
    assert_eq!(policy.rules.len(), 2);
    let fail = &policy.rules[0];
    assert_eq!(fail.action, "FailJob");
    let codes = fail.on_exit_codes.as_ref().unwrap();
    assert_eq!(codes.container_name.as_deref(), Some("skyvault"));
    assert_eq!(codes.operator, "In");
    assert_eq!(codes.values, vec![3, 4]);
    let disruption = &policy.rules[1];
    assert_eq!(disruption.action, "Ignore");
    assert_eq!(
        disruption.on_pod_conditions.as_ref().unwrap()[0].type_,
        "DisruptionTarget"
    );
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.containers[0].name, "skyvault", "the policy names it");
    let env: BTreeMap<_, _> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.as_str(), e.value.clone()?)))
        .collect();
    assert_eq!(env["SKYVAULT_COMPACT_SUMMARY_FILE"], "/dev/termination-log");
    assert_eq!(env["SKYVAULT_COMPACT_MAX_INPUT_BYTES"], "1073741824");

    // Without a bound the data plane's default applies.
    let plain = build_job(
        &sample(),
        JobKind::Compact,
        ts("2030-01-01T00:10:00Z"),
        None,
        "s",
    );
    let c = &plain.spec.unwrap().template.spec.unwrap().containers[0];
    assert!(
        !c.env
            .iter()
            .flatten()
            .any(|e| e.name == "SKYVAULT_COMPACT_MAX_INPUT_BYTES")
    );
    // Purge has neither.
    let purge = build_job(
        &sample(),
        JobKind::Purge,
        ts("2030-01-01T00:10:00Z"),
        None,
        "s",
    );
    assert!(purge.spec.unwrap().pod_failure_policy.is_none());
}

#[test]
fn compaction_jobs_get_the_memory_formula() {
    let mut sv = sample();
    sv.spec.compaction.target_file_bytes = 4 << 30;
    let job = build_job(&sv, JobKind::Compact, ts("2030-01-01T00:10:00Z"), None, "s");
    let c = &job.spec.unwrap().template.spec.unwrap().containers[0];
    let res = c.resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "2068Mi");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "4136Mi");
    let purge = build_job(&sv, JobKind::Purge, ts("2030-01-01T00:10:00Z"), None, "s");
    let c = &purge.spec.unwrap().template.spec.unwrap().containers[0];
    let res = c.resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "309Mi");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "618Mi");
}

#[test]
fn user_memory_replaces_the_compaction_default() {
    let mut sv = sample();
    let yaml = "requests: {memory: 1Gi}\nlimits: {memory: 2Gi}";
    sv.spec.compaction.job.resources = Some(serde_yaml::from_str(yaml).unwrap());
    let job = build_job(&sv, JobKind::Compact, ts("2030-01-01T00:10:00Z"), None, "s");
    let c = &job.spec.unwrap().template.spec.unwrap().containers[0];
    let res = c.resources.as_ref().unwrap();
    assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "1Gi");
    assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "2Gi");
    assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "100m");
}

#[test]
fn debt_jobs_are_named_by_minute_and_slot_and_marked() {
    let mut sv = sample();
    let t = ts("2030-01-01T00:10:42Z");
    let reading: crate::debt::LsmDebt = serde_json::from_str(
        r#"{"version":3,"l0_files":12,"l0_bytes":1,"pending_bytes":1073741824,"score":2.0,
            "needs_compaction":true,"levels":[{"level":0,"files":12,"bytes":1,"target_bytes":0,"score":2.0}]}"#,
    )
    .unwrap();
    let job = build_debt_job(&sv, t, 1, &reading, "sum");
    assert_eq!(
        job.metadata.name.as_deref(),
        Some("vault-compact-31557610-d1")
    );
    assert!(is_debt(&job));
    assert_eq!(trigger_value(&job), None);
    let ann = job.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[DEBT_ANNOTATION], "score 2.00, 1.0Gi pending");
    assert_eq!(ann[L0_FILES_ANNOTATION], "12");
    assert_eq!(ann[LSM_SHAPE_ANNOTATION], crate::debt::shape(&reading));
    assert_eq!(scheduled_time(&job), Some(t));
    assert!(job_run(&job).debt);
    assert!(!is_debt(&build_job(&sv, JobKind::Compact, t, None, "s")));
    sv.metadata.name = Some("a".repeat(crate::crd::MAX_NAME_LEN));
    let longest = debt_job_name(&sv, ts("2150-01-01T00:00:00Z"), crate::debt::MAX_SLOTS - 1);
    assert!(longest.len() <= 63, "{longest}: {} chars", longest.len());
}

#[test]
fn idle_exit_codes_are_neither_success_nor_failure() {
    let at = "2030-01-01T00:00:00Z";
    let idle = job_with("a", at, Some(JobResult::NothingToDo), None);
    assert_eq!(job_result(&idle), JobResult::NothingToDo);
    let run = job_run(&idle);
    assert_eq!(run.completion_time, Some(Time(ts("2030-01-01T01:00:00Z"))));
    assert_eq!(run.message, None, "not a failure");
    let claimed = job_with("b", at, Some(JobResult::InputsClaimed), None);
    assert_eq!(job_result(&claimed), JobResult::InputsClaimed);

    // Another exit code under the policy, or exit code text under another reason, is a failure.
    let mut other = idle.clone();
    let c = &mut other.status.as_mut().unwrap().conditions.as_mut().unwrap()[0];
    c.message = Some(
        "Container skyvault for pod prod/a-x failed with exit code 1 matching FailJob rule at index 0"
            .into(),
    );
    assert_eq!(job_result(&other), JobResult::Failed);
    let mut backoff = idle;
    backoff
        .status
        .as_mut()
        .unwrap()
        .conditions
        .as_mut()
        .unwrap()[0]
        .reason = Some("BackoffLimitExceeded".into());
    assert_eq!(job_result(&backoff), JobResult::Failed);
}

#[test]
fn idle_runs_are_kept_apart_and_never_count_as_results() {
    let spec = limits(1, 1);
    let jobs = vec![
        finished_at(
            job_with(
                "ok",
                "2030-01-01T00:10:00Z",
                Some(JobResult::Succeeded),
                None,
            ),
            "2030-01-01T00:11:00Z",
        ),
        finished_at(
            job_with("bad", "2030-01-01T00:12:00Z", Some(JobResult::Failed), None),
            "2030-01-01T00:13:00Z",
        ),
        finished_at(
            debt_job_with("d1", "2030-01-01T00:14:00Z", Some(JobResult::NothingToDo)),
            "2030-01-01T00:15:00Z",
        ),
        finished_at(
            debt_job_with("d2", "2030-01-01T00:16:00Z", Some(JobResult::InputsClaimed)),
            "2030-01-01T00:17:00Z",
        ),
        debt_job_with("d3", "2030-01-01T00:18:00Z", None),
        job_with("s", "2030-01-01T00:19:00Z", None, None),
    ];
    let h = summarize(&jobs, &spec);
    assert_eq!(h.active, vec!["s", "d3"]);
    assert_eq!(h.active_not_debt, vec!["s"]);
    assert_eq!(h.latest.as_ref().unwrap().job_name, "s");
    assert_eq!(h.last_finished.as_ref().unwrap().job_name, "d2");
    assert_eq!(
        h.last_result.as_ref().unwrap().job_name,
        "bad",
        "idle runs are not results"
    );
    assert_eq!(h.last_successful, Some(Time(ts("2030-01-01T00:11:00Z"))));
    assert_eq!(
        h.last_scheduled,
        Some(ts("2030-01-01T00:19:00Z")),
        "debt Jobs are not schedule runs"
    );
    // One idle run kept besides the one success and the one failure.
    assert_eq!(h.to_delete, vec!["d1"]);
    assert_eq!(h.names.len(), 6);
}

/// A retry that succeeds in the same second its failed predecessor ended (finish times have
/// whole seconds) is the last result, whatever the names: the later trigger wins the tie.
#[test]
fn a_success_finishing_in_the_same_second_as_an_earlier_failure_is_the_last_result() {
    let failed = finished_at(
        job_with(
            "deg-compact-29934158-ca97",
            "2030-01-01T00:05:00.214Z",
            Some(JobResult::Failed),
            Some("a"),
        ),
        "2030-01-01T00:05:01Z",
    );
    let retry = finished_at(
        job_with(
            "deg-compact-29934158-3e23",
            "2030-01-01T00:05:00.648Z",
            Some(JobResult::Succeeded),
            Some("b"),
        ),
        "2030-01-01T00:05:01Z",
    );
    for jobs in [
        vec![failed.clone(), retry.clone()],
        vec![retry.clone(), failed.clone()],
    ] {
        let h = summarize(&jobs, &limits(3, 1));
        let last = h.last_result.expect("a real result");
        assert_eq!(last.job_name, "deg-compact-29934158-3e23");
        assert_eq!(last.result, JobResult::Succeeded);
    }
}
