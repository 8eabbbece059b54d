//! Fixtures for unit tests.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::crd::{JobResult, SkyVault};
use crate::naming::{DEBT_ANNOTATION, SCHEDULED_TIME_ANNOTATION, TRIGGER_VALUE_ANNOTATION};

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("RFC 3339 timestamp")
}

/// A SkyVault as the API server returns it after defaulting: `prod/vault`, 1 replica each.
pub fn sample() -> SkyVault {
    let yaml = r#"
apiVersion: skyvault.io/v1alpha1
kind: SkyVault
metadata: {}
spec:
  image: skyvault:test
  objectStore:
    bucket: data-bucket
    prefix: prod/
    credentialsSecret:
      name: s3-creds
  database:
    urlSecret:
      name: pg
"#;
    let mut sv: SkyVault = serde_yaml::from_str(yaml).expect("fixture parses");
    sv.metadata = ObjectMeta {
        name: Some("vault".into()),
        namespace: Some("prod".into()),
        uid: Some("0b7e6c1e-0000-4000-8000-000000000001".into()),
        generation: Some(3),
        ..ObjectMeta::default()
    };
    sv
}

/// A debt-driven compaction Job (see [`job_with`]).
pub fn debt_job_with(name: &str, scheduled: &str, result: Option<JobResult>) -> Job {
    let mut job = job_with(name, scheduled, result, None);
    job.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DEBT_ANNOTATION.into(), "score 2.00, 1Gi pending".into());
    job
}

/// Sets when a finished Job finished (its terminal condition and completion time).
pub fn finished_at(mut job: Job, at: &str) -> Job {
    if let Some(status) = job.status.as_mut() {
        if status.completion_time.is_some() {
            status.completion_time = Some(Time(ts(at)));
        }
        for c in status.conditions.iter_mut().flatten() {
            c.last_transition_time = Some(Time(ts(at)));
        }
    }
    job
}

/// A Job as the API server would hold it after the Job controller wrote `result`.
pub fn job_with(
    name: &str,
    scheduled: &str,
    result: Option<JobResult>,
    trigger: Option<&str>,
) -> Job {
    let mut annotations =
        BTreeMap::from([(SCHEDULED_TIME_ANNOTATION.to_string(), scheduled.to_string())]);
    if let Some(t) = trigger {
        annotations.insert(TRIGGER_VALUE_ANNOTATION.into(), t.into());
    }
    // Idle results end the Job through the pod failure policy, naming the exit code.
    let policy_exit = match result {
        Some(JobResult::NothingToDo) => Some(3),
        Some(JobResult::InputsClaimed) => Some(4),
        _ => None,
    };
    let condition = |type_: &str| JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(match (type_, policy_exit) {
            ("Failed", Some(_)) => "PodFailurePolicy".into(),
            ("Failed", None) => "BackoffLimitExceeded".into(),
            _ => "Completed".into(),
        }),
        message: Some(match (type_, policy_exit) {
            ("Failed", Some(code)) => format!(
                "Container skyvault for pod prod/{name}-x7k2p failed with exit code {code} matching FailJob rule at index 0"
            ),
            ("Failed", None) => "Job has reached the specified backoff limit".into(),
            _ => String::new(),
        }),
        last_transition_time: Some(Time(ts("2030-01-01T01:00:00Z"))),
        ..JobCondition::default()
    };
    let status = JobStatus {
        start_time: Some(Time(ts(scheduled))),
        completion_time: (result == Some(JobResult::Succeeded))
            .then(|| Time(ts("2030-01-01T01:00:00Z"))),
        conditions: match result {
            Some(JobResult::Succeeded) => Some(vec![condition("Complete")]),
            Some(JobResult::Failed | JobResult::NothingToDo | JobResult::InputsClaimed) => {
                Some(vec![condition("Failed")])
            }
            _ => None,
        },
        ..JobStatus::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(status),
    }
}
