//! Compaction and purge Jobs: the builder, and reading a kind's Job history back into a
//! summary (what is running, what finished last, what is beyond the history limits).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sha2::{Digest, Sha256};

use crate::crd::{
    DEFAULT_COMPACTION_SCHEDULE, DEFAULT_PURGE_SCHEDULE, JobResult, JobRun, JobScheduleSpec,
    SkyVault,
};
use crate::debt::LsmDebt;
use crate::job_memory;
use crate::naming::{
    self, DEBT_ANNOTATION, JOB_KIND_LABEL, L0_FILES_ANNOTATION, LSM_SHAPE_ANNOTATION,
    SCHEDULED_TIME_ANNOTATION, TRIGGER_VALUE_ANNOTATION,
};
use crate::pod::{self, ContainerPlan};
use crate::schedule::unix_minute;

/// Where the Job writes its JSON summary, so it lands in the Pod's
/// `status.containerStatuses[].state.terminated.message`.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

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
    let mut annotations =
        BTreeMap::from([(SCHEDULED_TIME_ANNOTATION.to_string(), time.to_string())]);
    if let Some(value) = trigger {
        annotations.insert(TRIGGER_VALUE_ANNOTATION.into(), value.into());
    }
    let name = job_name(sv, kind, time, trigger);
    build(sv, kind, name, annotations, config_checksum)
}

/// Name of a debt-driven compaction Job: `NAME-compact-<unix minute>-d<slot>`; the slot
/// tells apart the Jobs created in the same minute.
pub fn debt_job_name(sv: &SkyVault, time: Timestamp, slot: u32) -> String {
    format!("{}-d{slot}", job_name(sv, JobKind::Compact, time, None))
}

/// A compaction Job started because the index reported `debt`; its one-line summary, its L0
/// file count and the LSM's shape are kept as annotations.
pub fn build_debt_job(
    sv: &SkyVault,
    time: Timestamp,
    slot: u32,
    debt: &LsmDebt,
    config_checksum: &str,
) -> Job {
    let annotations = BTreeMap::from([
        (SCHEDULED_TIME_ANNOTATION.to_string(), time.to_string()),
        (DEBT_ANNOTATION.to_string(), crate::debt::summary(debt)),
        (L0_FILES_ANNOTATION.to_string(), debt.l0_files.to_string()),
        (LSM_SHAPE_ANNOTATION.to_string(), crate::debt::shape(debt)),
    ]);
    let name = debt_job_name(sv, time, slot);
    build(sv, JobKind::Compact, name, annotations, config_checksum)
}

fn build(
    sv: &SkyVault,
    kind: JobKind,
    name: String,
    annotations: BTreeMap<String, String>,
    config_checksum: &str,
) -> Job {
    let spec = kind.spec(sv);
    let mut meta = naming::child_meta(sv, name, kind.as_str());
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(JOB_KIND_LABEL.into(), kind.as_str().into());
    meta.annotations = Some(annotations);
    let (env, resources, pod_failure_policy) = match kind {
        JobKind::Compact => {
            let c = &sv.spec.compaction;
            let mut env = vec![pod::env_var(
                "SKYVAULT_COMPACT_SUMMARY_FILE",
                TERMINATION_LOG,
            )];
            if let Some(max) = c.max_input_bytes {
                env.push(pod::env_var("SKYVAULT_COMPACT_MAX_INPUT_BYTES", max));
            }
            let (request, limit) = job_memory::compaction_memory(c);
            let resources = pod::fill_resources(spec.resources.as_ref(), request, Some(limit));
            (env, resources, Some(compaction_failure_policy()))
        }
        JobKind::Purge => {
            let (request, limit) = job_memory::purge_memory(sv);
            let resources = pod::fill_resources(spec.resources.as_ref(), request, Some(limit));
            (vec![], resources, None)
        }
    };
    let container = pod::container(
        sv,
        ContainerPlan {
            subcommand: kind.as_str(),
            env,
            resources,
            server: false,
        },
    );
    Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(spec.backoff_limit),
            active_deadline_seconds: Some(spec.active_deadline_seconds),
            pod_failure_policy,
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

/// Exit codes of `skyvault compact` that end a Job at once, without retries and without
/// counting against backoffLimit: 3 = nothing to do, 4 = another Job holds the inputs.
/// The Job then ends Failed with reason `PodFailurePolicy`, and [`job_result`] reads the
/// exit code back from the condition's message.
pub const IDLE_EXIT_CODES: [i32; 2] = [EXIT_NOTHING_TO_DO, EXIT_INPUTS_CLAIMED];
pub const EXIT_NOTHING_TO_DO: i32 = 3;
pub const EXIT_INPUTS_CLAIMED: i32 = 4;

/// FailJob on the idle exit codes; a Pod disrupted (evicted, preempted, node drained) is
/// retried without counting against backoffLimit.
fn compaction_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(pod::CONTAINER_NAME.into()),
                    operator: "In".into(),
                    values: IDLE_EXIT_CODES.to_vec(),
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: Some("True".into()),
                }]),
            },
        ],
    }
}

/// Whether a Job was started for compaction debt.
pub fn is_debt(job: &Job) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DEBT_ANNOTATION))
}

/// The exit code named in a `PodFailurePolicy` Failed condition's message
/// ("Container skyvault for pod NS/POD failed with exit code 3 matching FailJob rule at
/// index 0").
fn policy_exit_code(message: &str) -> Option<i32> {
    let rest = message.split("exit code ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The result from the Job's terminal conditions: Complete is Succeeded; Failed is Failed
/// unless the pod failure policy ended it on an idle exit code (NothingToDo, InputsClaimed).
pub fn job_result(job: &Job) -> JobResult {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    let find =
        |t: &str| conditions.and_then(|cs| cs.iter().find(|c| c.type_ == t && c.status == "True"));
    if find("Complete").is_some() {
        return JobResult::Succeeded;
    }
    let Some(failed) = find("Failed") else {
        return JobResult::Running;
    };
    let by_policy = failed.reason.as_deref() == Some("PodFailurePolicy");
    let code = failed.message.as_deref().and_then(policy_exit_code);
    match code {
        Some(EXIT_NOTHING_TO_DO) if by_policy => JobResult::NothingToDo,
        Some(EXIT_INPUTS_CLAIMED) if by_policy => JobResult::InputsClaimed,
        _ => JobResult::Failed,
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
    annotation(job, TRIGGER_VALUE_ANNOTATION)
}

fn annotation<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .annotations
        .as_ref()?
        .get(key)
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
        debt: is_debt(job),
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
        JobResult::Failed | JobResult::NothingToDo | JobResult::InputsClaimed => {
            condition_time(job, "Failed")
        }
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
    /// Names of running Jobs started by the schedule or a trigger (not for debt).
    pub active_not_debt: Vec<String>,
    /// The newest Job.
    pub latest: Option<JobRun>,
    /// The Job that finished last (any result).
    pub last_finished: Option<JobRun>,
    /// The LSM shape that Job was created for (debt Jobs only).
    pub last_finished_shape: Option<String>,
    /// Of the running debt Jobs, the most L0 files one was created with.
    pub running_l0_files: Option<u64>,
    /// The Job that finished last with a real result (Succeeded or Failed).
    pub last_result: Option<JobRun>,
    /// Completion time of the newest successful Job.
    pub last_successful: Option<Time>,
    /// The latest schedule time of a scheduled (not manual, not debt) Job.
    pub last_scheduled: Option<Timestamp>,
    /// Trigger values that already have a Job.
    pub triggers: Vec<String>,
    /// Names of every Job (to pick free names).
    pub names: Vec<String>,
    /// Finished Jobs beyond the history limits.
    pub to_delete: Vec<String>,
}

/// Summarize the Jobs of one kind (already filtered to one SkyVault and kind).
/// History limits: `successfulJobsHistoryLimit` keeps that many Succeeded Jobs and, apart,
/// that many idle ones (nothing to do, inputs claimed), so idle runs never push the last
/// real success out; `failedJobsHistoryLimit` keeps Failed ones.
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
    let by = |pick: fn(JobResult) -> bool| sorted.iter().filter(move |j| pick(job_result(j)));
    let keep = |limit: i32| usize::try_from(limit).unwrap_or(0);
    let successful = keep(spec.successful_jobs_history_limit);
    let to_delete: Vec<String> = by(|r| r == JobResult::Succeeded)
        .skip(successful)
        .chain(by(JobResult::is_idle).skip(successful))
        .chain(by(|r| r == JobResult::Failed).skip(keep(spec.failed_jobs_history_limit)))
        .map(|j| name(j))
        .collect();
    // Finished Jobs, newest finish first. Finish times have whole seconds: two Jobs ending in
    // the same second are ordered by when they were started for (a manual run's trigger
    // time has sub-second precision), so a retry that succeeds right after a failure counts
    // as the later one whatever the names.
    let mut finished: Vec<(Time, &Job)> = sorted
        .iter()
        .filter_map(|j| finish_time(j).map(|t| (t, *j)))
        .collect();
    finished.sort_by(|(ta, a), (tb, b)| {
        (&tb.0, scheduled_time(b), b.metadata.name.as_deref()).cmp(&(
            &ta.0,
            scheduled_time(a),
            a.metadata.name.as_deref(),
        ))
    });
    let running = || by(|r| r == JobResult::Running);
    JobHistory {
        active: running().map(|j| name(j)).collect(),
        active_not_debt: running().filter(|j| !is_debt(j)).map(|j| name(j)).collect(),
        latest: sorted.first().map(|j| job_run(j)),
        last_finished: finished.first().map(|(_, j)| job_run(j)),
        last_finished_shape: finished
            .first()
            .and_then(|(_, j)| annotation(j, LSM_SHAPE_ANNOTATION))
            .map(str::to_string),
        running_l0_files: running()
            .filter_map(|j| annotation(j, L0_FILES_ANNOTATION)?.parse().ok())
            .max(),
        last_result: finished
            .iter()
            .find(|(_, j)| !job_result(j).is_idle())
            .map(|(_, j)| job_run(j)),
        last_successful: finished
            .iter()
            .find(|(_, j)| job_result(j) == JobResult::Succeeded)
            .map(|(t, _)| t.clone()),
        last_scheduled: sorted
            .iter()
            .filter(|j| trigger_value(j).is_none() && !is_debt(j))
            .find_map(|j| scheduled_time(j)),
        triggers: sorted
            .iter()
            .filter_map(|j| trigger_value(j).map(str::to_string))
            .collect(),
        names: sorted.iter().map(|j| name(j)).collect(),
        to_delete,
    }
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
