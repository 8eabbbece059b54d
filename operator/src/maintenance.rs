//! Planning of the compaction and purge Jobs: from the SkyVault, its existing Jobs and the
//! clock to "create this Job, delete those, write this status, look again then". Pure, so
//! the controller only carries the plan out.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::crd::{JobKindStatus, JobResult, JobRun, SkyVault};
use crate::debt::{self, DebtDecision, DebtInput, LsmDebt};
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
    /// A schedule time passed while debt-driven Jobs filled every slot: they cover it.
    Covered { at: Timestamp, running: usize },
    /// Compaction Jobs were created for the debt the index reported.
    DebtJobs { jobs: Vec<String>, debt: String },
}

/// Wait before looking at the debt again while compaction Jobs are due or running (a
/// finished Job also wakes the controller at once through the Job watch).
pub const DEBT_REQUEUE: Duration = Duration::from_secs(10);
/// Wait between debt readings while there is no debt (or the index does not answer).
pub const DEBT_POLL: Duration = Duration::from_secs(30);

/// What to do for one kind of Job.
#[derive(Clone, Debug)]
pub struct JobPlan {
    pub kind: JobKind,
    /// Jobs to create, oldest first.
    pub create: Vec<Job>,
    pub delete: Vec<String>,
    pub status: JobKindStatus,
    pub events: Vec<JobEvent>,
    /// When to look again: the next scheduled run, or sooner while compaction debt is
    /// followed.
    pub requeue_after: Option<Duration>,
    /// What the debt asked for (compaction only).
    pub debt: Option<DebtDecision>,
}

/// Plan one kind. `jobs` are this SkyVault's Jobs of that kind; `debt` is the index's
/// reading (compaction only; `None` when it could not be read).
///
/// Concurrency: purge runs one Job at a time. Compaction runs up to
/// `maxConcurrentJobs`; a scheduled run still never overlaps another scheduled or manual
/// one (CronJob `Forbid`), a manual run waits for a free slot, and debt-driven Jobs fill the
/// slots left, one per bounded piece of work the debt asks for.
pub fn plan(
    sv: &SkyVault,
    kind: JobKind,
    jobs: &[Job],
    now: Timestamp,
    config_checksum: &str,
    debt: Option<&LsmDebt>,
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
    let (trigger, started_trigger) = pending_trigger(sv, kind, &previous, &history.triggers);

    let last_result = newer_result(previous.last_result.as_ref(), history.last_result.as_ref());
    let mut events = failed_since(&previous, last_result.as_ref());
    let mut status = JobKindStatus {
        last_run: history.latest.clone(),
        last_successful_time: max_opt(
            previous.last_successful_time.as_ref().map(|t| t.0),
            history.last_successful.as_ref().map(|t| t.0),
        )
        .map(Time),
        last_result,
        last_schedule_time: last_scheduled.map(Time),
        next_schedule_time: decision.next.map(Time),
        // A Job carrying the annotation's value proves it was handled, even when the status
        // read here predates the write that recorded it (a reconcile woken by the new Job can
        // see the SkyVault from before that write; applying `previous` would then drop it).
        handled_trigger: started_trigger.or_else(|| previous.handled_trigger.clone()),
    };
    if let Some(at) = decision.too_late {
        events.push(JobEvent::MissedDeadline { at });
        status.last_schedule_time = Some(Time(at));
    }

    let max_running = match kind {
        JobKind::Compact => {
            usize::try_from(sv.spec.compaction.max_concurrent_jobs.max(1)).unwrap_or(1)
        }
        JobKind::Purge => 1,
    };
    let mut running = history.active.len();
    let wanted = trigger
        .as_deref()
        .map(|t| (now, Some(t)))
        .or(decision.due.map(|d| (d, None)));
    let mut create = Vec::new();
    if let Some((time, trig)) = wanted {
        let full = running >= max_running;
        match (trig, history.active_not_debt.first()) {
            // A scheduled run never overlaps another scheduled or manual one.
            (None, Some(other)) => events.push(JobEvent::Blocked {
                running: other.clone(),
            }),
            // Every slot is taken by debt-driven Jobs: they do what the run would.
            (None, None) if full => {
                events.push(JobEvent::Covered { at: time, running });
                status.last_schedule_time = Some(Time(time));
            }
            (Some(_), _) if full => events.push(JobEvent::Blocked {
                running: history.active.first().cloned().unwrap_or_default(),
            }),
            _ => {
                let job = jobs::build_job(sv, kind, time, trig, config_checksum);
                let name = job.name_any();
                let missed = if trig.is_some() { 0 } else { decision.missed };
                events.push(JobEvent::Created {
                    job: name.clone(),
                    manual: trig.is_some(),
                    missed,
                });
                status.last_run = Some(new_run(name, time, trig.is_some(), false));
                match trig {
                    Some(t) => status.handled_trigger = Some(t.to_string()),
                    None => status.last_schedule_time = Some(Time(time)),
                }
                create.push(job);
                running += 1;
            }
        }
    }

    let mut requeue_after = decision.next.map(|n| duration_until(now, n));
    let mut debt_decision = None;
    if kind == JobKind::Compact {
        let c = &sv.spec.compaction;
        let d = debt::debt_jobs(DebtInput {
            enabled: debt::switched_off(c).is_none(),
            debt,
            spec: c,
            max_concurrent: max_running,
            running,
            held_l0: history.running_l0_files,
            hold_until: debt::hold_until(
                history.last_finished.as_ref(),
                history.last_finished_shape.as_deref(),
                debt,
            ),
            now,
        });
        if let (DebtDecision::Create(n), Some(reading)) = (d, debt) {
            let note = debt::summary(reading);
            let slots = debt::free_slots(&history.names, |s| jobs::debt_job_name(sv, now, s), n);
            let mut names = Vec::new();
            for slot in slots {
                let job = jobs::build_debt_job(sv, now, slot, reading, config_checksum);
                names.push(job.name_any());
                create.push(job);
            }
            if let Some(last) = names.last() {
                status.last_run = Some(new_run(last.clone(), now, false, true));
                events.push(JobEvent::DebtJobs {
                    jobs: names,
                    debt: note,
                });
            }
        }
        let again = match d {
            DebtDecision::Create(_) | DebtDecision::Saturated => DEBT_REQUEUE,
            // A hold may end sooner, when the LSM's shape changes: read the debt again.
            DebtDecision::Hold(until) => duration_until(now, until).min(DEBT_POLL),
            DebtDecision::Idle => DEBT_POLL,
        };
        requeue_after = Some(requeue_after.map_or(again, |r| r.min(again)));
        debt_decision = Some(d);
    }
    Ok(JobPlan {
        kind,
        create,
        delete: history.to_delete,
        status,
        events,
        requeue_after,
        debt: debt_decision,
    })
}

fn new_run(job_name: String, time: Timestamp, manual: bool, debt: bool) -> JobRun {
    JobRun {
        job_name,
        scheduled_time: Some(Time(time)),
        start_time: None,
        completion_time: None,
        result: JobResult::Running,
        message: None,
        manual,
        debt,
    }
}

/// The later-finished of the recorded and the observed last real result (the recorded one
/// survives its Job being deleted by the history limits).
fn newer_result(recorded: Option<&JobRun>, observed: Option<&JobRun>) -> Option<JobRun> {
    match (recorded, observed) {
        (Some(r), Some(o)) => {
            let finished = |run: &JobRun| run.completion_time.as_ref().map(|t| t.0);
            if r.job_name != o.job_name && finished(r) > finished(o) {
                Some(r.clone())
            } else {
                Some(o.clone())
            }
        }
        (r, o) => o.or(r).cloned(),
    }
}

fn previous_status(sv: &SkyVault, kind: JobKind) -> JobKindStatus {
    let status = sv.status.as_ref();
    let s = match kind {
        JobKind::Compact => status.and_then(|s| s.compaction.clone()),
        JobKind::Purge => status.and_then(|s| s.purge.clone()),
    };
    s.unwrap_or_default()
}

/// The trigger annotation's value when no Job has been started for it yet (first), and the
/// value when a Job for it exists (second).
fn pending_trigger(
    sv: &SkyVault,
    kind: JobKind,
    previous: &JobKindStatus,
    started: &[String],
) -> (Option<String>, Option<String>) {
    let Some(value) = sv.annotations().get(kind.trigger_annotation()) else {
        return (None, None);
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return (None, None);
    }
    if started.contains(&value) {
        return (None, Some(value));
    }
    let handled = previous.handled_trigger.as_deref() == Some(value.as_str());
    ((!handled).then_some(value), None)
}

/// A failure Event, once: when the last real result is a failure not recorded before.
fn failed_since(previous: &JobKindStatus, last_result: Option<&JobRun>) -> Vec<JobEvent> {
    let Some(now) = last_result.filter(|r| r.result == JobResult::Failed) else {
        return vec![];
    };
    let recorded = |run: Option<&JobRun>| {
        run.is_some_and(|r| r.job_name == now.job_name && r.result == JobResult::Failed)
    };
    if recorded(previous.last_result.as_ref()) || recorded(previous.last_run.as_ref()) {
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
