//! Compaction and purge Jobs: the builder, and reading a kind's Job history back into a
//! summary (what is running, what finished last, what is beyond the history limits).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sha2::{Digest, Sha256};

use crate::crd::{
    DEFAULT_COMPACTION_SCHEDULE, DEFAULT_PURGE_SCHEDULE, JobResult, JobRun, JobScheduleSpec,
    SkyVault,
};
use crate::naming::{self, JOB_KIND_LABEL, SCHEDULED_TIME_ANNOTATION, TRIGGER_VALUE_ANNOTATION};
use crate::pod::{self, ContainerPlan};
use crate::schedule::unix_minute;

/// Memory a Job needs besides the files it merges.
const JOB_BASE_MEMORY: i64 = 256 * 1024 * 1024;

/// The two maintenance Jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    Compact,
    Purge,
}

impl JobKind {
    pub const ALL: [JobKind; 2] = [JobKind::Compact, JobKind::Purge];

    /// The `skyvault` subcommand, label value and name infix.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Compact => "compact",
            JobKind::Purge => "purge",
        }
    }

    /// Word used in Events and condition reasons.
    pub fn noun(self) -> &'static str {
        match self {
            JobKind::Compact => "Compaction",
            JobKind::Purge => "Purge",
        }
    }

    pub fn trigger_annotation(self) -> &'static str {
        match self {
            JobKind::Compact => naming::TRIGGER_COMPACTION_ANNOTATION,
            JobKind::Purge => naming::TRIGGER_PURGE_ANNOTATION,
        }
    }

    pub fn spec(self, sv: &SkyVault) -> &JobScheduleSpec {
        match self {
            JobKind::Compact => &sv.spec.compaction.job,
            JobKind::Purge => &sv.spec.purge.job,
        }
    }

    /// The schedule text in force (the spec's or the default).
    pub fn schedule(self, sv: &SkyVault) -> &str {
        let default = match self {
            JobKind::Compact => DEFAULT_COMPACTION_SCHEDULE,
            JobKind::Purge => DEFAULT_PURGE_SCHEDULE,
        };
        self.spec(sv).schedule.as_deref().unwrap_or(default)
    }

    /// Label selector for this kind's Jobs of one SkyVault.
    pub fn selector(self, sv: &SkyVault) -> String {
        format!(
            "{},{JOB_KIND_LABEL}={}",
            naming::instance_selector(sv),
            self.as_str()
        )
    }
}

/// Deterministic name: `NAME-compact-<unix minute>` for a schedule time, plus a short hash
/// of the trigger value for manual runs. Creating the same Job twice is then harmless.
pub fn job_name(sv: &SkyVault, kind: JobKind, time: Timestamp, trigger: Option<&str>) -> String {
    let base = format!(
        "{}-{}-{}",
        sv.metadata.name.as_deref().unwrap_or(""),
        kind.as_str(),
        unix_minute(time)
    );
    match trigger {
        None => base,
        Some(value) => format!("{base}-{}", short_hash(value)),
    }
}

fn short_hash(value: &str) -> String {
    Sha256::digest(value.as_bytes())
        .iter()
        .take(2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The Job for one run. `time` is the schedule time (or the trigger time for manual runs).
pub fn build_job(
    sv: &SkyVault,
    kind: JobKind,
    time: Timestamp,
    trigger: Option<&str>,
    config_checksum: &str,
) -> Job {
    let spec = kind.spec(sv);
    let mut meta = naming::child_meta(sv, job_name(sv, kind, time, trigger), kind.as_str());
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(JOB_KIND_LABEL.into(), kind.as_str().into());
    let mut annotations =
        BTreeMap::from([(SCHEDULED_TIME_ANNOTATION.to_string(), time.to_string())]);
    if let Some(value) = trigger {
        annotations.insert(TRIGGER_VALUE_ANNOTATION.into(), value.into());
    }
    meta.annotations = Some(annotations);
    let memory = match kind {
        // A merge holds about one output file plus the blocks being merged.
        JobKind::Compact => 2 * sv.spec.compaction.target_file_bytes + JOB_BASE_MEMORY,
        JobKind::Purge => JOB_BASE_MEMORY,
    };
    let container = pod::container(
        sv,
        ContainerPlan {
            subcommand: kind.as_str(),
            env: vec![],
            resources: pod::fill_resources(spec.resources.as_ref(), memory, None),
            server: false,
        },
    );
    Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(spec.backoff_limit),
            active_deadline_seconds: Some(spec.active_deadline_seconds),
            template: pod::pod_template(
                sv,
                kind.as_str(),
                config_checksum,
                container,
                Some("Never"),
            ),
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// Running, Succeeded or Failed, from the Job's terminal conditions.
pub fn job_result(job: &Job) -> JobResult {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let is_true = |t: &str| {
        conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
    };
    if is_true("Complete") {
        JobResult::Succeeded
    } else if is_true("Failed") {
        JobResult::Failed
    } else {
        JobResult::Running
    }
}

fn failure_message(job: &Job) -> Option<String> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let failed = conditions
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    let reason = failed.reason.clone().unwrap_or_default();
    Some(match &failed.message {
        Some(m) if !m.is_empty() => format!("{reason}: {m}"),
        _ => reason,
    })
}

/// The schedule time a Job was created for (falls back to its creation time).
pub fn scheduled_time(job: &Job) -> Option<Timestamp> {
    let annotated = job
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SCHEDULED_TIME_ANNOTATION))
        .and_then(|v| v.parse::<Timestamp>().ok());
    annotated.or_else(|| job.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The trigger value a manual Job was started for.
pub fn trigger_value(job: &Job) -> Option<&str> {
    job.metadata
        .annotations
        .as_ref()?
        .get(TRIGGER_VALUE_ANNOTATION)
        .map(String::as_str)
}

/// The status entry for one Job.
pub fn job_run(job: &Job) -> JobRun {
    let status = job.status.as_ref();
    let result = job_result(job);
    JobRun {
        job_name: job.metadata.name.clone().unwrap_or_default(),
        scheduled_time: scheduled_time(job).map(Time),
        start_time: status.and_then(|s| s.start_time.clone()),
        completion_time: finish_time(job),
        result,
        message: (result == JobResult::Failed)
            .then(|| failure_message(job))
            .flatten(),
        manual: trigger_value(job).is_some(),
    }
}

/// When a finished Job finished: completionTime for success, the Failed condition's time else.
fn finish_time(job: &Job) -> Option<Time> {
    let status = job.status.as_ref()?;
    match job_result(job) {
        JobResult::Succeeded => status
            .completion_time
            .clone()
            .or_else(|| condition_time(job, "Complete")),
        JobResult::Failed => condition_time(job, "Failed"),
        JobResult::Running => None,
    }
}

fn condition_time(job: &Job, type_: &str) -> Option<Time> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let c = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")?;
    c.last_transition_time
        .clone()
        .or_else(|| c.last_probe_time.clone())
}

/// What a kind's existing Jobs say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobHistory {
    /// Names of Jobs still running.
    pub active: Vec<String>,
    /// The newest Job.
    pub latest: Option<JobRun>,
    /// Completion time of the newest successful Job.
    pub last_successful: Option<Time>,
    /// The latest schedule time of a scheduled (not manual) Job.
    pub last_scheduled: Option<Timestamp>,
    /// Trigger values that already have a Job.
    pub triggers: Vec<String>,
    /// Finished Jobs beyond the history limits.
    pub to_delete: Vec<String>,
}

/// Summarize the Jobs of one kind (already filtered to one SkyVault and kind).
pub fn summarize(jobs: &[Job], spec: &JobScheduleSpec) -> JobHistory {
    let mut sorted: Vec<&Job> = jobs
        .iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .collect();
    // Newest first: by schedule time, then name for a stable order.
    sorted.sort_by(|a, b| {
        (scheduled_time(b), b.metadata.name.as_deref())
            .cmp(&(scheduled_time(a), a.metadata.name.as_deref()))
    });
    let name = |j: &Job| j.metadata.name.clone().unwrap_or_default();
    let by_result = |r: JobResult| sorted.iter().filter(move |j| job_result(j) == r);
    let keep = |limit: i32| usize::try_from(limit).unwrap_or(0);
    let to_delete: Vec<String> = by_result(JobResult::Succeeded)
        .skip(keep(spec.successful_jobs_history_limit))
        .chain(by_result(JobResult::Failed).skip(keep(spec.failed_jobs_history_limit)))
        .map(|j| name(j))
        .collect();
    JobHistory {
        active: by_result(JobResult::Running).map(|j| name(j)).collect(),
        latest: sorted.first().map(|j| job_run(j)),
        last_successful: by_result(JobResult::Succeeded).find_map(|j| finish_time(j)),
        last_scheduled: sorted
            .iter()
            .filter(|j| trigger_value(j).is_none())
            .find_map(|j| scheduled_time(j)),
        triggers: sorted
            .iter()
            .filter_map(|j| trigger_value(j).map(str::to_string))
            .collect(),
        to_delete,
    }
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
