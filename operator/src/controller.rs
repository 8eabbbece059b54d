//! The reconcile loop: validate -> build -> apply -> status, in kube-rs controller style
//! (a small Context, one `reconcile` and one `error_policy`).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::children::{self, Children};
use crate::crd::{Endpoints, SkyVault, SkyVaultStatus};
use crate::debt::{self, FetchError, LsmDebt};
use crate::jobs::{self, JobKind};
use crate::maintenance;
use crate::metrics::Metrics;
use crate::naming::{self, FIELD_MANAGER, MANAGED_SELECTOR, Role};
use crate::security;
use crate::statefulset;
use crate::status::{self, ConditionInput, Problem, RoleState, reason};
use crate::upgrade::{self, Migration, UpgradeCondition};
use crate::validate;

#[path = "controller_upgrade.rs"]
mod upgrading;
use upgrading::plan_upgrade;

#[path = "controller_certificates.rs"]
mod issuing;
use issuing::ensure_certificates;

/// Longest wait between reconciles of a healthy SkyVault (a resync that catches anything a
/// watch missed, e.g. a Secret created later).
pub const RESYNC: Duration = Duration::from_secs(300);
/// Wait before retrying a SkyVault whose spec or Secrets are wrong.
pub const PROBLEM_RETRY: Duration = Duration::from_secs(60);
/// Wait before retrying after an API error.
pub const ERROR_RETRY: Duration = Duration::from_secs(15);

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Where each SkyVault's compaction debt is read: `{name}` and `{namespace}` are
    /// replaced (default [`naming::DEFAULT_LSM_URL_TEMPLATE`]).
    pub lsm_url_template: String,
}

/// Failures that end a reconcile early; the controller retries after `error_policy`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SkyVault has no namespace")]
    NoNamespace,
    #[error("apply {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
    #[error("issuing a certificate: {0}")]
    Certificate(String),
    #[error("generating the internal token: {0}")]
    Random(String),
}

impl Error {
    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoNamespace => "no_namespace",
            Error::Apply { .. } => "apply",
            Error::Kube(_) => "kube",
            Error::Schedule(_) => "schedule",
            Error::Random(_) => "random",
            Error::Certificate(_) => "certificate",
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// Bring one SkyVault's children and status in line with its spec.
pub async fn reconcile(sv: Arc<SkyVault>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.duration.start_timer();
    let result = reconcile_inner(&sv, &ctx).await;
    let outcome = if result.is_ok() { "success" } else { "error" };
    ctx.metrics
        .reconciliations
        .with_label_values(&[outcome])
        .inc();
    result
}

async fn reconcile_inner(sv: &SkyVault, ctx: &Context) -> Result<Action> {
    if sv.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children.
        return Ok(Action::await_change());
    }
    let ns = sv.namespace().ok_or(Error::NoNamespace)?;
    let now = Timestamp::now();

    // 1. Validate: nothing is applied for a spec the data plane could not run.
    // Certificates the operator issues come first: the Secret checks then find them.
    let checked = match validate::spec_problem(&validate::validate_spec(sv)) {
        Some(p) => Err(p),
        None => match ensure_certificates(sv, ctx, &ns, now).await? {
            Err(p) => Err(p),
            Ok(()) => check_secrets(sv, &ctx.client, &ns).await?,
        },
    };
    let secrets = match checked {
        Ok(secrets) => secrets,
        Err(problem) => {
            report_problem(sv, ctx, &ns, &problem, now).await?;
            return Ok(Action::requeue(PROBLEM_RETRY));
        }
    };

    // 2. Build, 3. apply, then delete what the spec no longer asks for. A changed Secret
    // value changes the Pods' checksum (seen at the next reconcile; Secrets are read, not
    // watched).
    let mut desired = children::build_with_secrets(sv, &secrets.digest);
    // An image change waits for its schema migration and rolls readers first: the
    // StatefulSets to apply come from the upgrade plan (decision 0005).
    let staged = async {
        ensure_internal_token(sv, &ctx.client, &ns).await?;
        let upgrade = plan_upgrade(sv, ctx, &ns, &mut desired, now).await?;
        let applied = apply_all(&ctx.client, &ns, &desired).await?;
        Ok::<_, Error>((upgrade, applied))
    };
    let (upgrade, applied) = match staged.await {
        Ok(done) => done,
        Err(e) => {
            let problem = Problem {
                reason: reason::APPLY_FAILED,
                message: e.to_string(),
            };
            report_problem(sv, ctx, &ns, &problem, now).await?;
            return Err(e);
        }
    };
    prune_all(sv, ctx, &ns, &desired).await?;
    if newly_applied(sv) {
        let note = format!("applied generation {}", sv.metadata.generation.unwrap_or(0));
        publish(ctx, sv, EventType::Normal, "Applied", "Apply", note).await;
    }

    // Compaction debt from the index; an index that does not answer leaves the schedule
    // as the only driver (a condition says so), never an error.
    let reading = read_debt(sv, ctx, secrets.tls_ca.as_deref()).await;

    // Maintenance Jobs, then 4. status.
    let mut status = SkyVaultStatus::default();
    let mut requeue = upgrade.requeue_after.unwrap_or(RESYNC).min(RESYNC);
    // New Jobs run the batchers' image, and wait only where that cannot start (their last
    // results stay in status meanwhile).
    let batcher = desired
        .stateful_sets
        .iter()
        .find(|(r, _)| *r == Role::Batcher);
    let image = upgrade::maintenance_image(sv, &upgrade.state, batcher.map(|(_, s)| s));
    let jobs_sv = image.map(|image| with_image(sv, image));
    if jobs_sv.is_none() {
        let old = sv.status.clone().unwrap_or_default();
        status.compaction = old.compaction;
        status.purge = old.purge;
    }
    for (kind, jobs_sv) in JobKind::ALL
        .into_iter()
        .filter_map(|k| Some((k, jobs_sv.as_ref()?)))
    {
        let debt = match kind {
            JobKind::Compact => reading.as_ref().ok(),
            JobKind::Purge => None,
        };
        let plan = run_jobs(jobs_sv, ctx, &ns, kind, now, &desired.config_checksum, debt).await?;
        requeue = requeue.min(plan.requeue_after.unwrap_or(RESYNC));
        match kind {
            JobKind::Compact => status.compaction = Some(plan.status),
            JobKind::Purge => status.purge = Some(plan.status),
        }
    }
    let states = role_states(sv, &applied);
    fill_status(
        sv,
        &mut status,
        &states,
        (None, upgrade.condition.as_ref()),
        now,
    );
    status.compaction_debt = match &reading {
        Ok(d) => Some(debt::status(d, now)),
        // The last reading stays, with its observedAt; the condition says it is stale.
        Err(_) => sv.status.as_ref().and_then(|s| s.compaction_debt.clone()),
    };
    let index_ready = states.iter().any(|r| r.role == Role::Index && r.ready > 0);
    let auto = debt::condition(
        debt::switched_off(&sv.spec.compaction),
        reading.as_ref(),
        index_ready,
    );
    report_unreachable(sv, ctx, &auto).await;
    status.conditions.push(status::condition_at(
        debt::AUTO_COMPACTION,
        auto,
        sv.metadata.generation,
        &previous_conditions(sv),
        now,
    ));
    write_status(&ctx.client, sv, &ns, &status).await?;
    Ok(Action::requeue(requeue))
}

/// `sv` as its compaction and purge Jobs are built: with `image` (see
/// [`upgrade::maintenance_image`]).
fn with_image(sv: &SkyVault, image: String) -> SkyVault {
    let mut sv = sv.clone();
    sv.spec.image = image;
    sv
}

/// `GET /lsm` on the index (over TLS trusting `tls_ca` when the SkyVault serves TLS);
/// counted in `skyvault_operator_debt_readings_total`.
async fn read_debt(
    sv: &SkyVault,
    ctx: &Context,
    tls_ca: Option<&[u8]>,
) -> Result<LsmDebt, FetchError> {
    let url = naming::lsm_url(&ctx.lsm_url_template, sv);
    let reading = debt::fetch_lsm(&url, tls_ca, debt::FETCH_TIMEOUT).await;
    let label = if reading.is_ok() { "ok" } else { "error" };
    ctx.metrics.debt_readings.with_label_values(&[label]).inc();
    if let Err(e) = &reading {
        tracing::debug!(skyvault = %sv.name_any(), error = %e, "compaction debt not read");
    }
    reading
}

fn previous_conditions(sv: &SkyVault) -> Vec<Condition> {
    sv.status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default()
}

/// A Warning Event when the index stops answering (once per outage, not per reconcile).
async fn report_unreachable(sv: &SkyVault, ctx: &Context, auto: &(bool, &str, String)) {
    let (_, reason, message) = auto;
    if *reason != debt::reason::INDEX_UNREACHABLE {
        return;
    }
    let previous = previous_conditions(sv);
    let already = previous
        .iter()
        .any(|c| c.type_ == debt::AUTO_COMPACTION && c.reason == debt::reason::INDEX_UNREACHABLE);
    if already {
        return;
    }
    warn!(skyvault = %sv.name_any(), %message, "compaction debt unavailable; falling back to the schedule");
    publish(
        ctx,
        sv,
        EventType::Warning,
        "CompactionDebtUnavailable",
        "ReadDebt",
        message.clone(),
    )
    .await;
}

/// A new generation, or the first apply after a problem blocked this one: worth an Event.
fn newly_applied(sv: &SkyVault) -> bool {
    let status = sv.status.as_ref();
    let new_generation = status.and_then(|s| s.observed_generation) != sv.metadata.generation;
    let blocking = [
        reason::INVALID_SPEC,
        reason::SECRET_NOT_FOUND,
        reason::APPLY_FAILED,
    ];
    let was_blocked = status.is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == status::DEGRADED
                && c.status == "True"
                && blocking.contains(&c.reason.as_str())
        })
    });
    new_generation || was_blocked
}

/// Retry soon after an error; the error is counted and logged, never fatal.
pub fn error_policy(sv: Arc<SkyVault>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failures.with_label_values(&[err.kind()]).inc();
    warn!(skyvault = %sv.name_any(), namespace = ?sv.namespace(), error = %err, "reconcile failed");
    Action::requeue(ERROR_RETRY)
}

/// The digest of the referenced Secrets' values, or the first missing Secret or key as a
/// problem; API errors other than 404 are errors.
/// What the operator takes from the referenced Secrets.
struct SecretsRead {
    /// Of the values the pods read at start ([`validate::secrets_digest`]).
    digest: String,
    /// `ca.crt` of `spec.tls.secretName`: verifies the index when reading `/lsm`.
    tls_ca: Option<Vec<u8>>,
}

async fn check_secrets(
    sv: &SkyVault,
    client: &Client,
    ns: &str,
) -> Result<Result<SecretsRead, Problem>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let refs = validate::secret_refs(sv);
    let secrets = match fetch_checked(&api, &refs).await? {
        Ok(secrets) => secrets,
        Err(p) => return Ok(Err(p)),
    };
    // Files the pods reload themselves: checked, but not part of the digest.
    let reloaded_refs = validate::reloaded_secret_refs(sv);
    let reloaded = match fetch_checked(&api, &reloaded_refs).await? {
        Ok(reloaded) => reloaded,
        Err(p) => return Ok(Err(p)),
    };
    let tls_ca = reloaded_refs
        .iter()
        .zip(&reloaded)
        .find(|((field, _, _), _)| *field == validate::TLS_SECRET_FIELD)
        .and_then(|(_, secret)| secret.data.as_ref()?.get("ca.crt"))
        .map(|ca| ca.0.clone());
    let secrets: Vec<&Secret> = secrets.iter().collect();
    let digest = validate::secrets_digest(&refs, &secrets);
    Ok(Ok(SecretsRead { digest, tls_ca }))
}

/// Each referenced Secret, checked to exist with its keys (the first problem otherwise).
async fn fetch_checked(
    api: &Api<Secret>,
    refs: &[(&'static str, String, Vec<String>)],
) -> Result<Result<Vec<Secret>, Problem>> {
    let mut secrets = Vec::new();
    for (field, name, keys) in refs {
        let secret = api.get_opt(name).await?;
        if let Err(p) = validate::check_secret(field, name, keys, secret.as_ref()) {
            return Ok(Err(p));
        }
        secrets.push(secret.expect("checked above"));
    }
    Ok(Ok(secrets))
}

/// Creates the roles' internal token (index → cache) once; never rotated by the
/// operator: deleting the Secret makes a new one, which the pods pick up from the files.
async fn ensure_internal_token(sv: &SkyVault, client: &Client, ns: &str) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let name = security::internal_token_secret_name(sv);
    if api.get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let token = security::random_token().map_err(|e| Error::Random(e.to_string()))?;
    let secret = security::internal_token_secret(sv, &token);
    match api.create(&kube::api::PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        // Another reconcile (or operator replica) created it first: keep theirs.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Status and a Warning Event for a problem; existing children are left as they are.
async fn report_problem(
    sv: &SkyVault,
    ctx: &Context,
    ns: &str,
    problem: &Problem,
    now: Timestamp,
) -> Result<()> {
    let previous = sv
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::DEGRADED));
    let already_reported = previous.is_some_and(|c| c.message == problem.message)
        && sv.status.as_ref().and_then(|s| s.observed_generation) == sv.metadata.generation;
    if !already_reported {
        warn!(skyvault = %sv.name_any(), namespace = ns, reason = problem.reason, message = %problem.message, "spec cannot be applied");
        publish(
            ctx,
            sv,
            EventType::Warning,
            problem.reason,
            "Validate",
            problem.message.clone(),
        )
        .await;
    }
    let mut sets = Vec::new();
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    for role in Role::ALL {
        if let Some(s) = api.get_opt(&naming::role_name(sv, role)).await? {
            sets.push((role, s));
        }
    }
    let old = sv.status.clone().unwrap_or_default();
    let mut status = SkyVaultStatus {
        compaction: old.compaction,
        compaction_debt: old.compaction_debt,
        purge: old.purge,
        ..SkyVaultStatus::default()
    };
    fill_status(
        sv,
        &mut status,
        &role_states(sv, &sets),
        (Some(problem), None),
        now,
    );
    status.conditions.extend(
        old.conditions
            .into_iter()
            .filter(|c| c.type_ == debt::AUTO_COMPACTION),
    );
    write_status(&ctx.client, sv, ns, &status).await
}

/// Apply ConfigMap, Services, StatefulSets and PDBs; returns the StatefulSets as stored
/// (the apply response carries their status).
async fn apply_all(
    client: &Client,
    ns: &str,
    desired: &Children,
) -> Result<Vec<(Role, StatefulSet)>> {
    let wrap = |kind: &'static str, name: String| move |source| Error::Apply { kind, name, source };
    let cm = &desired.config_map;
    children::apply(client, ns, cm)
        .await
        .map_err(wrap("ConfigMap", cm.name_any()))?;
    for svc in &desired.services {
        children::apply(client, ns, svc)
            .await
            .map_err(wrap("Service", svc.name_any()))?;
    }
    let mut applied = Vec::new();
    for (role, sts) in &desired.stateful_sets {
        let stored = children::apply(client, ns, sts)
            .await
            .map_err(wrap("StatefulSet", sts.name_any()))?;
        applied.push((*role, stored));
    }
    for pdb in &desired.pdbs {
        children::apply(client, ns, pdb)
            .await
            .map_err(wrap("PodDisruptionBudget", pdb.name_any()))?;
    }
    for policy in &desired.network_policies {
        children::apply(client, ns, policy)
            .await
            .map_err(wrap("NetworkPolicy", policy.name_any()))?;
    }
    Ok(applied)
}

/// Delete owned children that the spec no longer asks for (e.g. a PDB switched off).
async fn prune_all(sv: &SkyVault, ctx: &Context, ns: &str, desired: &Children) -> Result<()> {
    let c = &ctx.client;
    let mut deleted = Vec::new();
    for name in children::prune::<PodDisruptionBudget>(c, sv, ns, &desired.pdb_names()).await? {
        deleted.push(format!("PodDisruptionBudget {name}"));
    }
    let policies = desired.network_policy_names();
    for name in children::prune::<NetworkPolicy>(c, sv, ns, &policies).await? {
        deleted.push(format!("NetworkPolicy {name}"));
    }
    for name in children::prune::<Service>(c, sv, ns, &desired.service_names()).await? {
        deleted.push(format!("Service {name}"));
    }
    for name in children::prune::<StatefulSet>(c, sv, ns, &desired.stateful_set_names()).await? {
        deleted.push(format!("StatefulSet {name}"));
    }
    for name in children::prune::<ConfigMap>(c, sv, ns, &desired.config_map_names()).await? {
        deleted.push(format!("ConfigMap {name}"));
    }
    for what in deleted {
        info!(skyvault = %sv.name_any(), namespace = ns, %what, "deleted child no longer in the spec");
        publish(
            ctx,
            sv,
            EventType::Normal,
            "Deleted",
            "Prune",
            format!("deleted {what}: no longer in the spec"),
        )
        .await;
    }
    Ok(())
}

/// Plan one kind of maintenance Job and carry the plan out.
async fn run_jobs(
    sv: &SkyVault,
    ctx: &Context,
    ns: &str,
    kind: JobKind,
    now: Timestamp,
    checksum: &str,
    debt: Option<&LsmDebt>,
) -> Result<maintenance::JobPlan> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let listed = api
        .list(&kube::api::ListParams::default().labels(&kind.selector(sv)))
        .await?;
    let jobs: Vec<Job> = listed
        .items
        .into_iter()
        .filter(|j| children::owned_by(j, sv))
        .collect();
    // Schedules were validated before anything was applied; an error here is still
    // reported, not a panic.
    let plan = maintenance::plan(sv, kind, &jobs, now, checksum, debt)?;
    for job in &plan.create {
        create_job(&api, job).await?;
        let trigger = if jobs::trigger_value(job).is_some() {
            "manual"
        } else if jobs::is_debt(job) {
            "debt"
        } else {
            "schedule"
        };
        ctx.metrics
            .jobs_created
            .with_label_values(&[kind.as_str(), trigger])
            .inc();
    }
    for name in &plan.delete {
        children::delete_quietly(&api, name).await?;
    }
    for event in &plan.events {
        job_event(sv, ctx, kind, event).await;
    }
    Ok(plan)
}

/// Create a Job; deterministic names make a second create (another replica, an earlier
/// reconcile) a harmless conflict.
async fn create_job(api: &Api<Job>, job: &Job) -> Result<()> {
    let params = kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, job).await {
        Ok(_) => Ok(()),
        Err(e) if children::is_conflict(&e) => Ok(()),
        Err(source) => Err(Error::Apply {
            kind: "Job",
            name: job.name_any(),
            source,
        }),
    }
}

async fn job_event(sv: &SkyVault, ctx: &Context, kind: JobKind, event: &maintenance::JobEvent) {
    use maintenance::JobEvent as E;
    let noun = kind.noun();
    let (type_, reason, note) = match event {
        E::Created {
            job,
            manual,
            missed,
        } => {
            let how = if *manual {
                "on request (trigger annotation)"
            } else {
                "on schedule"
            };
            let skipped = if *missed > 0 {
                format!("; {missed} earlier schedule times skipped")
            } else {
                String::new()
            };
            (
                EventType::Normal,
                format!("{noun}Started"),
                format!("created Job {job} {how}{skipped}"),
            )
        }
        E::MissedDeadline { at } => (
            EventType::Warning,
            format!("{noun}Missed"),
            format!("schedule time {at} skipped: older than startingDeadlineSeconds"),
        ),
        E::Failed { job, message } => (
            EventType::Warning,
            format!("{noun}Failed"),
            format!("Job {job} failed: {message}"),
        ),
        E::Blocked { running } => {
            info!(skyvault = %sv.name_any(), %running, "{noun} due but the previous Job still runs");
            return;
        }
        E::Covered { at, running } => {
            info!(skyvault = %sv.name_any(), %at, running, "{noun} schedule time covered by the debt-driven Jobs running");
            return;
        }
        E::DebtJobs { jobs, debt } => (
            EventType::Normal,
            format!("{noun}Started"),
            format!(
                "created Job{} {} for compaction debt ({debt})",
                if jobs.len() == 1 { "" } else { "s" },
                jobs.join(", ")
            ),
        ),
    };
    info!(skyvault = %sv.name_any(), %reason, %note, "maintenance");
    publish(ctx, sv, type_, &reason, noun, note).await;
}

fn role_states(sv: &SkyVault, sets: &[(Role, StatefulSet)]) -> Vec<RoleState> {
    Role::ALL
        .iter()
        .map(|r| {
            let sts = sets.iter().find(|(role, _)| role == r).map(|(_, s)| s);
            status::role_state(*r, statefulset::replicas(sv, *r), sts)
        })
        .collect()
}

/// Everything but the Job sections, which the caller already set.
fn fill_status(
    sv: &SkyVault,
    status: &mut SkyVaultStatus,
    states: &[RoleState],
    (problem, upgrade): (Option<&Problem>, Option<&UpgradeCondition>),
    now: Timestamp,
) {
    let previous = sv
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    status.conditions = status::conditions(&ConditionInput {
        generation: sv.metadata.generation,
        problem,
        roles: states,
        last_compaction: status
            .compaction
            .as_ref()
            .and_then(|c| c.last_result.as_ref()),
        last_purge: status.purge.as_ref().and_then(|c| c.last_result.as_ref()),
        upgrade,
        previous: &previous,
        now,
    });
    status.observed_generation = sv.metadata.generation;
    for s in states {
        let rs = Some(status::role_status(s));
        match s.role {
            Role::Batcher => status.batcher = rs,
            Role::Index => status.index = rs,
            Role::Cache => status.cache = rs,
        }
    }
    status.endpoints = Some(Endpoints {
        batcher: naming::client_endpoint(sv, Role::Batcher),
        index: naming::client_endpoint(sv, Role::Index),
    });
}

/// Server-side apply of the status subresource; skipped when nothing changed, so an idle
/// store causes no writes.
async fn write_status(
    client: &Client,
    sv: &SkyVault,
    ns: &str,
    status: &SkyVaultStatus,
) -> Result<()> {
    if sv.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<SkyVault> = Api::namespaced(client.clone(), ns);
    let body =
        json!({ "apiVersion": "skyvault.io/v1alpha1", "kind": "SkyVault", "status": status });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&sv.name_any(), &params, &Patch::Apply(body))
        .await?;
    Ok(())
}

/// Publish an Event on the SkyVault; a failure to publish is logged, never fatal.
async fn publish(
    ctx: &Context,
    sv: &SkyVault,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(truncate(note, 1000)),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &sv.object_ref(&())).await {
        warn!(skyvault = %sv.name_any(), error = %e, "could not publish event");
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// An Api over one namespace, or all of them.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Run the controller until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let (reader, writer) = reflector::store();
    // Status writes bump only resourceVersion: filtering on generation (and annotations, for
    // the trigger annotations) keeps the controller from reconciling its own status updates.
    let skyvaults = watcher(scoped::<SkyVault>(&client, ns), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::annotations),
            Default::default(),
        );
    // Only our children: the label keeps the caches small and the RBAC story simple.
    let owned = || watcher::Config::default().labels(MANAGED_SELECTOR);
    Controller::for_stream(skyvaults, reader)
        .owns(scoped::<StatefulSet>(&client, ns), owned())
        .owns(scoped::<Service>(&client, ns), owned())
        .owns(scoped::<ConfigMap>(&client, ns), owned())
        .owns(scoped::<PodDisruptionBudget>(&client, ns), owned())
        .owns(scoped::<Job>(&client, ns), owned())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => {
                    tracing::debug!(skyvault = %obj.name, namespace = ?obj.namespace, "reconciled")
                }
                Err(e) => tracing::debug!(error = %e, "reconcile not completed"),
            }
        })
        .await;
    info!("controller stopped");
}
