//! Image upgrades (docs/decisions/0005-upgrade-order.md): a `skyvault migrate` Job must
//! succeed for the new image before any StatefulSet gets it, and the roles then take it one
//! after the other, readers first (cache, index, batcher), each only once the one before has
//! rolled out. Pure: the controller lists the Jobs and reads the StatefulSets, this module
//! says which Job to create or delete and which Pod template each StatefulSet gets.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use sha2::{Digest, Sha256};

use crate::crd::{JobResult, SkyVault};
use crate::jobs;
use crate::naming::{self, JOB_KIND_LABEL, Role};
use crate::pod::{self, ContainerPlan};
use crate::status::{self, reason};

/// The `skyvault` subcommand, the Jobs' `skyvault.io/job-kind` and component label.
pub const MIGRATE: &str = "migrate";
/// Annotation on a migrate Job: the image whose schema it applies.
pub const IMAGE_ANNOTATION: &str = "skyvault.io/image";
/// Annotation on a migrate Job: its attempt for that image (1, 2, ...).
pub const ATTEMPT_ANNOTATION: &str = "skyvault.io/migration-attempt";
/// Readers before writers: the cache serves the index, the index serves clients and reads
/// what the batcher (and compaction, which waits for the batcher) writes.
pub const ROLL_ORDER: [Role; 3] = [Role::Cache, Role::Index, Role::Batcher];

/// Pod retries inside one migrate Job (the Job controller's own backoff: 10 s, 20 s).
const MIGRATE_BACKOFF_LIMIT: i32 = 2;
/// A migration waits for the advisory lock and runs DDL; longer means something is stuck.
const MIGRATE_DEADLINE_SECONDS: i64 = 600;
/// `skyvault migrate` holds a connection pool and the embedded migrations, nothing more.
const MIGRATE_MEMORY: i64 = 128 * 1024 * 1024;
/// Wait after a failed migrate Job before the next attempt: doubled per attempt, capped.
const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(600);

/// Label selector for one SkyVault's migrate Jobs.
pub fn selector(sv: &SkyVault) -> String {
    format!(
        "{},{JOB_KIND_LABEL}={MIGRATE}",
        naming::instance_selector(sv)
    )
}

/// The image of the `skyvault` container of a StatefulSet's Pod template.
pub fn image_of(sts: &StatefulSet) -> Option<&str> {
    let spec = sts.spec.template.spec.as_ref()?;
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == pod::CONTAINER_NAME)?;
    c.image.as_deref()
}

/// `NAME-migrate-<8 hex of the image>-<attempt>`: one name per image and attempt, so a
/// repeated create is harmless and a retry never waits for the failed Job to be deleted.
pub fn job_name(sv: &SkyVault, image: &str, attempt: u32) -> String {
    let digest: String = Sha256::digest(image.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = sv.metadata.name.as_deref().unwrap_or("");
    format!("{name}-{MIGRATE}-{digest}-{attempt}")
}

/// The Job running `skyvault migrate` with the spec's image and the database Secret (no
/// object-store credentials: it only touches the database).
pub fn migrate_job(sv: &SkyVault, attempt: u32, config_checksum: &str) -> Job {
    let image = &sv.spec.image;
    let mut meta = naming::child_meta(sv, job_name(sv, image, attempt), MIGRATE);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(JOB_KIND_LABEL.into(), MIGRATE.into());
    meta.annotations = Some(BTreeMap::from([
        (IMAGE_ANNOTATION.to_string(), image.clone()),
        (ATTEMPT_ANNOTATION.to_string(), attempt.to_string()),
    ]));
    let resources = pod::fill_resources(None, MIGRATE_MEMORY, Some(MIGRATE_MEMORY));
    let plan = ContainerPlan {
        subcommand: MIGRATE,
        env: vec![],
        resources,
        server: false,
    };
    let container = pod::container(sv, plan);
    let template = pod::pod_template(sv, MIGRATE, config_checksum, container, Some("Never"));
    Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(MIGRATE_BACKOFF_LIMIT),
            active_deadline_seconds: Some(MIGRATE_DEADLINE_SECONDS),
            template,
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// Where the schema stands for the spec's image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Migration {
    /// No StatefulSet runs another image: nothing to gate (a new store's Pods migrate on
    /// start, one at a time under the database's advisory lock).
    NotNeeded,
    Running {
        job: String,
    },
    Succeeded {
        job: String,
    },
    /// The latest attempt failed; the next one is created at `retry_at`.
    Failed {
        job: String,
        message: String,
        retry_at: Timestamp,
    },
}

impl Migration {
    /// Whether the StatefulSets may take the new image.
    pub fn open(&self) -> bool {
        matches!(self, Migration::NotNeeded | Migration::Succeeded { .. })
    }
}

/// The image new compaction and purge Jobs run now, or `None` while they wait. `batcher` is
/// the batcher StatefulSet as this reconcile applies it (after [`plan_roll`]).
///
/// They are writers, like the batcher: they run the image the batchers run. While a
/// migration is failing (which can last: attempts back off up to 10 min) the old batchers
/// keep writing, so compaction and purge keep running with that image too; L0 and the
/// dead files would otherwise pile up for as long as the migration fails. They wait only
/// while an attempt runs and between a successful migration and the batcher's roll: every
/// `skyvault` process migrates on start, and an older binary refuses a schema with
/// migrations it does not know; the new image goes with the batcher, last (decision 0005).
pub fn maintenance_image(
    sv: &SkyVault,
    migration: &Migration,
    batcher: Option<&StatefulSet>,
) -> Option<String> {
    let running = batcher.and_then(image_of).unwrap_or(&sv.spec.image);
    match migration {
        Migration::NotNeeded | Migration::Failed { .. } => Some(running.to_string()),
        Migration::Succeeded { .. } if running == sv.spec.image => Some(running.to_string()),
        Migration::Succeeded { .. } | Migration::Running { .. } => None,
    }
}

/// What to do about the migrate Jobs.
#[derive(Clone, Debug)]
pub struct MigrationPlan {
    pub state: Migration,
    pub create: Option<Job>,
    /// Finished Jobs no longer worth keeping (other images, older attempts).
    pub delete: Vec<String>,
    /// When the next attempt is due.
    pub requeue_after: Option<Duration>,
}

/// Whether some existing StatefulSet's Pod template has another image than the spec's.
pub fn needed(sv: &SkyVault, stored: &[(Role, StatefulSet)]) -> bool {
    stored
        .iter()
        .any(|(_, s)| image_of(s).is_some_and(|i| i != sv.spec.image))
}

fn annotation<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn attempt_of(job: &Job) -> u32 {
    annotation(job, ATTEMPT_ANNOTATION)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// Wait before attempt `failed + 1`: 30 s, 60 s, 120 s, ... at most 10 min.
pub fn retry_delay(failed_attempt: u32) -> Duration {
    let doublings = failed_attempt.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// Plan the migrate Jobs: `jobs` are this SkyVault's (any image), `needed` from [`needed`].
pub fn plan_migration(
    sv: &SkyVault,
    needed: bool,
    jobs: &[Job],
    now: Timestamp,
    config_checksum: &str,
) -> MigrationPlan {
    let image = sv.spec.image.as_str();
    let mut current: Vec<&Job> = jobs
        .iter()
        .filter(|j| annotation(j, IMAGE_ANNOTATION) == Some(image))
        .collect();
    current.sort_by_key(|j| std::cmp::Reverse(attempt_of(j)));
    let latest = current.first().copied();
    let name = |j: &Job| j.metadata.name.clone().unwrap_or_default();
    // Keep the latest attempt for this image (the record of the migration) and anything
    // still running; finished Jobs of other images and older attempts go.
    let delete = jobs
        .iter()
        .filter(|j| jobs::job_result(j) != JobResult::Running)
        .filter(|j| latest.is_none_or(|l| name(l) != name(j)))
        .map(name)
        .collect();
    let mut plan = MigrationPlan {
        state: Migration::NotNeeded,
        create: None,
        delete,
        requeue_after: None,
    };
    if !needed {
        return plan;
    }
    let Some(latest) = latest else {
        return create_attempt(plan, sv, 1, config_checksum);
    };
    let run = jobs::job_run(latest);
    plan.state = match run.result {
        JobResult::Succeeded => Migration::Succeeded { job: run.job_name },
        JobResult::Failed | JobResult::NothingToDo | JobResult::InputsClaimed => {
            let attempt = attempt_of(latest);
            let failed_at = run.completion_time.map_or(now, |t| t.0);
            let retry_at = failed_at + SignedDuration::try_from(retry_delay(attempt)).unwrap();
            if now >= retry_at {
                return create_attempt(plan, sv, attempt + 1, config_checksum);
            }
            plan.requeue_after = Some(Duration::try_from(retry_at - now).unwrap_or_default());
            Migration::Failed {
                job: run.job_name,
                message: run.message.unwrap_or_else(|| "no reason given".into()),
                retry_at,
            }
        }
        JobResult::Running => Migration::Running { job: run.job_name },
    };
    plan
}

fn create_attempt(
    mut plan: MigrationPlan,
    sv: &SkyVault,
    attempt: u32,
    checksum: &str,
) -> MigrationPlan {
    let job = migrate_job(sv, attempt, checksum);
    plan.state = Migration::Running {
        job: job.metadata.name.clone().unwrap_or_default(),
    };
    plan.create = Some(job);
    plan
}

/// The StatefulSets to apply, in [`Role::ALL`] order, and what the roll waits for.
#[derive(Clone, Debug, Default)]
pub struct RollPlan {
    pub stateful_sets: Vec<(Role, StatefulSet)>,
    /// Roles given the new image in this pass (one Event each).
    pub released: Vec<Role>,
    /// Roles kept on their old Pod template, with what they wait for.
    pub held: Vec<(Role, String)>,
}

/// Decide each StatefulSet's Pod template. A role whose stored template has another image
/// than the desired one takes the new template only when the migration is done and every
/// role before it in [`ROLL_ORDER`] has rolled out (observed generation, updated and ready
/// replicas, one revision); until then it keeps its stored template (everything else, e.g.
/// replicas, is applied). Roles keeping their image apply as built: a configuration change
/// rolls at once.
pub fn plan_roll(
    desired: &[(Role, StatefulSet)],
    stored: &[(Role, StatefulSet)],
    migration: &Migration,
) -> RollPlan {
    let find = |set: &[(Role, StatefulSet)], role| {
        set.iter().find(|(r, _)| *r == role).map(|(_, s)| s.clone())
    };
    let mut blocker = match migration {
        Migration::Running { job } => Some(format!("the schema migration Job {job}")),
        Migration::Failed { job, retry_at, .. } => Some(format!(
            "the schema migration (Job {job} failed; next attempt at {retry_at})"
        )),
        Migration::NotNeeded | Migration::Succeeded { .. } => None,
    };
    let mut plan = RollPlan::default();
    let mut chosen = Vec::new();
    for role in ROLL_ORDER {
        let Some(mut want) = find(desired, role) else {
            continue;
        };
        if let Some(old) = find(stored, role) {
            let replicas = want.spec.replicas.unwrap_or(1);
            let state = status::role_state(role, replicas, Some(&old));
            if image_of(&old) == image_of(&want) {
                if !state.rolled_out {
                    let why = format!("{} to roll out ({})", role.as_str(), state.waiting_for);
                    blocker.get_or_insert(why);
                }
            } else if let Some(why) = &blocker {
                hold(&mut want, &old);
                plan.held.push((role, why.clone()));
            } else {
                plan.released.push(role);
                blocker = Some(format!("{} to roll out to the new image", role.as_str()));
            }
        }
        chosen.push((role, want));
    }
    plan.stateful_sets = Role::ALL
        .iter()
        .filter_map(|r| chosen.iter().find(|(c, _)| c == r).cloned())
        .collect();
    plan
}

/// Keep the stored Pod template (its image and checksum: the Pods stay as they are).
fn hold(want: &mut StatefulSet, old: &StatefulSet) {
    want.spec.template = old.spec.template.clone();
}

/// What the conditions say about an upgrade in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeCondition {
    pub reason: &'static str,
    pub message: String,
    /// The migration failed: Degraded, and Progressing False.
    pub failed: bool,
}

/// The upgrade's part of Progressing/Degraded, or `None` when nothing is held.
pub fn condition(
    sv: &SkyVault,
    migration: &Migration,
    roll: &RollPlan,
) -> Option<UpgradeCondition> {
    let image = &sv.spec.image;
    let held = roll
        .held
        .iter()
        .map(|(r, _)| r.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match migration {
        Migration::Failed {
            job,
            message,
            retry_at,
        } => Some(UpgradeCondition {
            reason: reason::MIGRATION_FAILED,
            message: format!(
                "schema migration Job {job} for image {image} failed: {message}; {held} keep \
                 their Pods on the old image, and compaction and purge Jobs run it too; next \
                 attempt at {retry_at}"
            ),
            failed: true,
        }),
        Migration::Running { job } => Some(UpgradeCondition {
            reason: reason::MIGRATION_RUNNING,
            message: format!(
                "Job {job} migrates the schema for image {image}; {held} keep their Pods on \
                 the old image until it succeeds"
            ),
            failed: false,
        }),
        _ if !roll.held.is_empty() => {
            let waits: Vec<String> = roll
                .held
                .iter()
                .map(|(r, why)| format!("{} waits for {why}", r.as_str()))
                .collect();
            Some(UpgradeCondition {
                reason: reason::ROLLING_OUT,
                message: format!("upgrade to {image}, readers first: {}", waits.join("; ")),
                failed: false,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "upgrade_tests.rs"]
mod tests;
