//! Deriving the status (role replica counts and the Ready / Progressing / Degraded
//! conditions) from what the children report. Pure: a real cluster, envtest and unit tests
//! all feed it StatefulSet statuses the same way.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{JobResult, JobRun, RoleStatus};
use crate::naming::Role;
use crate::upgrade::UpgradeCondition;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// Condition reasons (documented in docs/operations.md).
pub mod reason {
    pub const ALL_REPLICAS_READY: &str = "AllReplicasReady";
    pub const REPLICAS_NOT_READY: &str = "ReplicasNotReady";
    pub const ROLLING_OUT: &str = "RollingOut";
    pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
    pub const AS_EXPECTED: &str = "AsExpected";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const APPLY_FAILED: &str = "ApplyFailed";
    pub const COMPACTION_FAILED: &str = "CompactionFailed";
    pub const PURGE_FAILED: &str = "PurgeFailed";
    pub const MIGRATION_RUNNING: &str = "MigrationRunning";
    pub const MIGRATION_FAILED: &str = "MigrationFailed";
    /// The operator cannot issue `spec.tls`'s certificate (a Secret in the way, a damaged CA).
    pub const CERTIFICATE_FAILED: &str = "CertificateFailed";
}

/// Why the operator could not bring the children to the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// One of the `reason` constants (InvalidSpec, SecretNotFound, ApplyFailed, …).
    pub reason: &'static str,
    /// Human-readable, naming the offending field.
    pub message: String,
}

/// One role as its StatefulSet reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleState {
    pub role: Role,
    pub desired: i32,
    pub ready: i32,
    pub updated: i32,
    /// The StatefulSet controller has acted on the latest spec and every Pod runs it.
    pub rolled_out: bool,
    /// What the rollout still waits for (empty once rolled out).
    pub waiting_for: String,
}

/// Read a role's state. A missing StatefulSet or status counts as nothing ready.
pub fn role_state(role: Role, desired: i32, sts: Option<&StatefulSet>) -> RoleState {
    let status = sts.and_then(|s| s.status.as_ref());
    let generation = sts.and_then(|s| s.metadata.generation);
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
    let waiting_for = match status {
        None => "no status from the StatefulSet controller yet".to_string(),
        Some(s) => {
            let observed = match (s.observed_generation, generation) {
                (Some(o), Some(g)) => o >= g,
                (_, None) => true,
                (None, Some(_)) => false,
            };
            let revisions = (&s.current_revision, &s.update_revision);
            if !observed {
                "the StatefulSet controller to observe the new spec".to_string()
            } else if s.replicas != desired {
                format!("{} Pods to become {desired}", s.replicas)
            } else if updated < desired {
                format!("{updated}/{desired} Pods updated")
            } else if ready < desired {
                format!("{ready}/{desired} Pods ready")
            } else if let (Some(c), Some(u)) = revisions
                && c != u
            {
                format!("revision {c} to become {u}")
            } else {
                String::new()
            }
        }
    };
    RoleState {
        role,
        desired,
        ready,
        updated,
        rolled_out: waiting_for.is_empty(),
        waiting_for,
    }
}

/// The status block of one role.
pub fn role_status(state: &RoleState) -> RoleStatus {
    RoleStatus {
        desired: state.desired,
        ready: state.ready,
        updated: state.updated,
        summary: format!("{}/{}", state.ready, state.desired),
    }
}

/// Everything the conditions depend on.
pub struct ConditionInput<'a> {
    pub generation: Option<i64>,
    pub problem: Option<&'a Problem>,
    pub roles: &'a [RoleState],
    /// The compaction Job that finished last with a real result (`lastResult`).
    pub last_compaction: Option<&'a JobRun>,
    /// The purge Job that finished last with a real result.
    pub last_purge: Option<&'a JobRun>,
    /// An image upgrade held back by its migration or by the roll order.
    pub upgrade: Option<&'a UpgradeCondition>,
    /// Conditions currently in the status, for lastTransitionTime.
    pub previous: &'a [Condition],
    pub now: Timestamp,
}

/// Ready, Progressing and Degraded, in that order.
pub fn conditions(input: &ConditionInput) -> Vec<Condition> {
    let (ready, progressing, degraded) = match input.problem {
        Some(p) => (
            (false, p.reason, p.message.clone()),
            (
                false,
                p.reason,
                "not progressing until the problem is fixed".to_string(),
            ),
            (true, p.reason, p.message.clone()),
        ),
        None => (
            readiness(input.roles),
            upgrade_progress(input.upgrade, input.roles),
            match input.upgrade {
                Some(u) if u.failed => (true, u.reason, u.message.clone()),
                _ => job_health(input),
            },
        ),
    };
    [
        (READY, ready),
        (PROGRESSING, progressing),
        (DEGRADED, degraded),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| condition(input, type_, status, reason, message))
    .collect()
}

fn summary(roles: &[RoleState], pick: impl Fn(&RoleState) -> bool) -> String {
    roles
        .iter()
        .filter(|r| pick(r))
        .map(|r| {
            format!(
                "{} {}/{} ready, {} updated",
                r.role.as_str(),
                r.ready,
                r.desired,
                r.updated
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn readiness(roles: &[RoleState]) -> (bool, &'static str, String) {
    if roles.iter().all(|r| r.ready >= r.desired) {
        (true, reason::ALL_REPLICAS_READY, summary(roles, |_| true))
    } else {
        (
            false,
            reason::REPLICAS_NOT_READY,
            summary(roles, |r| r.ready < r.desired),
        )
    }
}

fn rollout(roles: &[RoleState]) -> (bool, &'static str, String) {
    if roles.iter().all(|r| r.rolled_out) {
        return (
            false,
            reason::ROLLOUT_COMPLETE,
            "every role runs the current spec".into(),
        );
    }
    let waiting: Vec<String> = roles
        .iter()
        .filter(|r| !r.rolled_out)
        .map(|r| format!("{}: waiting for {}", r.role.as_str(), r.waiting_for))
        .collect();
    (true, reason::ROLLING_OUT, waiting.join("; "))
}

/// Progressing during an upgrade: False while a failed migration blocks it, else True with
/// what is held and what the StatefulSets still wait for.
fn upgrade_progress(
    upgrade: Option<&UpgradeCondition>,
    roles: &[RoleState],
) -> (bool, &'static str, String) {
    let (rolling, why, message) = rollout(roles);
    match upgrade {
        None => (rolling, why, message),
        Some(u) if u.failed => (false, u.reason, u.message.clone()),
        Some(u) if rolling => (true, u.reason, format!("{}; {message}", u.message)),
        Some(u) => (true, u.reason, u.message.clone()),
    }
}

/// Degraded when the latest compaction or purge failed (until a later one succeeds).
fn job_health(input: &ConditionInput) -> (bool, &'static str, String) {
    let failed = |run: Option<&JobRun>| run.filter(|r| r.result == JobResult::Failed).cloned();
    let describe = |r: &JobRun| {
        format!(
            "Job {} failed: {}",
            r.job_name,
            r.message.as_deref().unwrap_or("no reason given")
        )
    };
    if let Some(run) = failed(input.last_compaction) {
        return (true, reason::COMPACTION_FAILED, describe(&run));
    }
    if let Some(run) = failed(input.last_purge) {
        return (true, reason::PURGE_FAILED, describe(&run));
    }
    // A retry that is still running (or found nothing to do) has not fixed anything yet:
    // keep the failure reported until a later run succeeds.
    let running = |run: Option<&JobRun>| {
        run.is_some_and(|r| r.result == JobResult::Running || r.result.is_idle())
    };
    for (run, why) in [
        (input.last_compaction, reason::COMPACTION_FAILED),
        (input.last_purge, reason::PURGE_FAILED),
    ] {
        let carried = input
            .previous
            .iter()
            .find(|c| c.type_ == DEGRADED && c.status == "True" && c.reason == why);
        if let (true, Some(previous)) = (running(run), carried) {
            return (true, why, previous.message.clone());
        }
    }
    (false, reason::AS_EXPECTED, "no failures".into())
}

fn condition(
    input: &ConditionInput,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
) -> Condition {
    let previous = input.previous;
    condition_at(
        type_,
        (status, reason, message),
        input.generation,
        previous,
        input.now,
    )
}

/// A condition whose lastTransitionTime moves only when its status flips from `previous`.
pub fn condition_at(
    type_: &str,
    (status, reason, message): (bool, &str, String),
    generation: Option<i64>,
    previous: &[Condition],
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
