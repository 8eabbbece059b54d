//! Planning of the compaction and purge Jobs: from the SkyVault, its existing Jobs and the
//! clock to "create this Job, delete those, write this status, look again then". Pure, so
//! the controller only carries the plan out.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::crd::{JobKindStatus, JobResult, JobRun, SkyVault};
use crate::jobs::{self, JobKind};
use crate::schedule::{self, Schedule, ScheduleError, ScheduleInput};

/// Something worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobEvent {
    /// A Job was created (scheduled or manual).
    Created {
        job: String,
        manual: bool,
        missed: u32,
    },
    /// A schedule time was skipped for being older than the starting deadline.
    MissedDeadline { at: Timestamp },
    /// A Job this operator had seen running has failed.
    Failed { job: String, message: String },
    /// A Job is due but the previous one still runs.
    Blocked { running: String },
}

/// What to do for one kind of Job.
#[derive(Clone, Debug)]
pub struct JobPlan {
    pub kind: JobKind,
    pub create: Option<Job>,
    pub delete: Vec<String>,
    pub status: JobKindStatus,
    pub events: Vec<JobEvent>,
    /// When the next scheduled run is due.
    pub requeue_after: Option<Duration>,
}

/// Plan one kind. `jobs` are this SkyVault's Jobs of that kind; `previous` is its status.
pub fn plan(
    sv: &SkyVault,
    kind: JobKind,
    jobs: &[Job],
    now: Timestamp,
    config_checksum: &str,
) -> Result<JobPlan, ScheduleError> {
    let spec = kind.spec(sv);
    let schedule = Schedule::parse(kind.schedule(sv))?;
    let previous = previous_status(sv, kind);
    let history = jobs::summarize(jobs, spec);
    let last_scheduled = max_opt(
        previous.last_schedule_time.as_ref().map(|t| t.0),
        history.last_scheduled,
    );
    let decision = schedule::decide(
        &schedule,
        ScheduleInput {
            now,
            last_scheduled,
            created: sv.creation_timestamp().map_or(now, |t| t.0),
            suspend: spec.suspend,
            starting_deadline: SignedDuration::from_secs(spec.starting_deadline_seconds),
        },
    );
    let trigger = pending_trigger(sv, kind, &previous, &history.triggers);

    let mut events = failed_since(&previous, history.latest.as_ref());
    let mut status = JobKindStatus {
        last_run: history.latest.clone(),
        last_successful_time: history.last_successful.clone(),
        last_schedule_time: last_scheduled.map(Time),
        next_schedule_time: decision.next.map(Time),
        handled_trigger: previous.handled_trigger.clone(),
    };
    if let Some(at) = decision.too_late {
        events.push(JobEvent::MissedDeadline { at });
        status.last_schedule_time = Some(Time(at));
    }

    let wanted = trigger
        .as_deref()
        .map(|t| (now, Some(t)))
        .or(decision.due.map(|d| (d, None)));
    let mut create = None;
    match (wanted, history.active.first()) {
        (Some(_), Some(running)) => events.push(JobEvent::Blocked {
            running: running.clone(),
        }),
        (Some((time, trig)), None) => {
            let job = jobs::build_job(sv, kind, time, trig, config_checksum);
            let name = job.name_any();
            let missed = if trig.is_some() { 0 } else { decision.missed };
            events.push(JobEvent::Created {
                job: name.clone(),
                manual: trig.is_some(),
                missed,
            });
            status.last_run = Some(JobRun {
                job_name: name,
                scheduled_time: Some(Time(time)),
                start_time: None,
                completion_time: None,
                result: JobResult::Running,
                message: None,
                manual: trig.is_some(),
            });
            match trig {
                Some(t) => status.handled_trigger = Some(t.to_string()),
                None => status.last_schedule_time = Some(Time(time)),
            }
            create = Some(job);
        }
        (None, _) => {}
    }
    let requeue_after = decision.next.map(|n| duration_until(now, n));
    Ok(JobPlan {
        kind,
        create,
        delete: history.to_delete,
        status,
        events,
        requeue_after,
    })
}

fn previous_status(sv: &SkyVault, kind: JobKind) -> JobKindStatus {
    let status = sv.status.as_ref();
    let s = match kind {
        JobKind::Compact => status.and_then(|s| s.compaction.clone()),
        JobKind::Purge => status.and_then(|s| s.purge.clone()),
    };
    s.unwrap_or_default()
}

/// The trigger annotation's value when no Job has been started for it yet.
fn pending_trigger(
    sv: &SkyVault,
    kind: JobKind,
    previous: &JobKindStatus,
    started: &[String],
) -> Option<String> {
    let value = sv
        .annotations()
        .get(kind.trigger_annotation())?
        .trim()
        .to_string();
    let handled =
        previous.handled_trigger.as_deref() == Some(value.as_str()) || started.contains(&value);
    (!value.is_empty() && !handled).then_some(value)
}

/// A failure Event, once: when the status still shows the Job running and it now failed.
fn failed_since(previous: &JobKindStatus, latest: Option<&JobRun>) -> Vec<JobEvent> {
    let (Some(before), Some(now)) = (previous.last_run.as_ref(), latest) else {
        return vec![];
    };
    let newly_failed = before.job_name == now.job_name
        && before.result == JobResult::Running
        && now.result == JobResult::Failed;
    if !newly_failed {
        return vec![];
    }
    let message = now.message.clone().unwrap_or_else(|| "Job failed".into());
    vec![JobEvent::Failed {
        job: now.job_name.clone(),
        message,
    }]
}

fn max_opt(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Time from `now` to just past `then` (rounded up, so the wake-up finds the time passed).
fn duration_until(now: Timestamp, then: Timestamp) -> Duration {
    let secs = then.duration_since(now).as_secs().max(0) + 1;
    Duration::from_secs(u64::try_from(secs).unwrap_or(1))
}

#[cfg(test)]
#[path = "maintenance_tests.rs"]
mod tests;
