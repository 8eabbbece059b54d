//! What the operator tests (`e2e/tests/operator/`) look at on a SkyVault and its children:
//! conditions, owner references, StatefulSets, printer columns, Jobs and Events.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::{Value, json};

use crate::operator_env::OperatorEnv;
use crate::wait_for;

/// How long the operator tests wait for a reaction.
pub const T: Duration = Duration::from_secs(60);
pub const ROLES: [&str; 3] = ["batcher", "index", "cache"];

/// `(status, reason, message, observedGeneration)` of a condition.
pub fn condition(sv: &DynamicObject, type_: &str) -> Option<(String, String, String, i64)> {
    sv.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
                c["message"].as_str().unwrap_or_default().to_owned(),
                c["observedGeneration"].as_i64().unwrap_or(-1),
            )
        })
}

/// Waits until condition `type_` has `status` (and `reason`, when given).
pub async fn wait_condition(
    env: &OperatorEnv,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> Result<DynamicObject> {
    wait_for(
        &format!("SkyVault {name} condition {type_}={status} ({reason:?})"),
        T,
        || async {
            let sv = env.get_skyvault(name).await?;
            match condition(&sv, type_) {
                Some((s, r, _, _)) if s == status && reason.is_none_or(|want| want == r) => Ok(sv),
                other => bail!("{type_} is {other:?}"),
            }
        },
    )
    .await
    .with_context(|| env.operator_logs())
}

pub fn check_owner(refs: Option<&Vec<OwnerReference>>, uid: &str, what: &str) -> Result<()> {
    let refs = refs.with_context(|| format!("{what} has no owner references"))?;
    let r = refs
        .iter()
        .find(|r| r.uid == uid)
        .with_context(|| format!("{what} is not owned by the SkyVault: {refs:?}"))?;
    ensure!(r.kind == "SkyVault", "{what}: owner kind {}", r.kind);
    ensure!(
        r.api_version == "skyvault.io/v1alpha1",
        "{what}: owner apiVersion {}",
        r.api_version
    );
    ensure!(
        r.controller == Some(true),
        "{what}: owner reference is not the controller"
    );
    Ok(())
}

pub async fn wait_statefulset<F>(
    env: &OperatorEnv,
    name: &str,
    what: &str,
    pred: F,
) -> Result<StatefulSet>
where
    F: Fn(&StatefulSet) -> Result<()>,
{
    let api: Api<StatefulSet> = env.api();
    wait_for(&format!("StatefulSet {name}: {what}"), T, || async {
        let sts = api.get_opt(name).await?.context("not created yet")?;
        pred(&sts)?;
        Ok(sts)
    })
    .await
    .with_context(|| env.operator_logs())
}

pub fn replicas(sts: &StatefulSet) -> i32 {
    sts.spec.replicas.unwrap_or(-1)
}

pub fn template_annotation(sts: &StatefulSet, key: &str) -> Option<String> {
    sts.spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(key)
        .cloned()
}

/// `kubectl get sv NAME`: the Table the API server renders from the CRD's
/// printer columns, as column name → cell.
pub async fn printed_columns(env: &OperatorEnv, name: &str) -> Result<BTreeMap<String, String>> {
    let path = format!(
        "/apis/skyvault.io/v1alpha1/namespaces/{}/skyvaults/{name}",
        env.namespace()
    );
    let req = http::Request::get(path)
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())?;
    let table: Value = env.client.request(req).await?;
    let cols: Vec<String> = table["columnDefinitions"]
        .as_array()
        .context("no columnDefinitions")?
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    let cells = table["rows"][0]["cells"].as_array().context("no row")?;
    Ok(cols
        .into_iter()
        .zip(cells.iter().map(|c| match c {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }))
        .collect())
}

pub async fn set_all_ready(env: &OperatorEnv, sv: &str) -> Result<()> {
    for role in ROLES {
        let name = format!("{sv}-{role}");
        let sts: StatefulSet = env.api().get(&name).await?;
        env.set_statefulset_ready(&name, replicas(&sts)).await?;
    }
    Ok(())
}

pub async fn jobs_of_kind(env: &OperatorEnv, kind: &str) -> Result<Vec<Job>> {
    let api: Api<Job> = env.api();
    let mut jobs = api
        .list(&ListParams::default().labels(&format!("skyvault.io/job-kind={kind}")))
        .await?
        .items;
    jobs.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    Ok(jobs)
}

/// Waits for a Job of `kind` whose name is not in `known` (the first one, oldest first).
pub async fn wait_new_job(
    env: &OperatorEnv,
    kind: &str,
    known: &[&str],
    timeout: Duration,
) -> Result<Job> {
    wait_for(
        &format!("a new {kind} Job (known: {known:?})"),
        timeout,
        || async {
            let jobs = jobs_of_kind(env, kind).await?;
            jobs.into_iter()
                .find(|j| !known.contains(&j.metadata.name.as_deref().unwrap_or_default()))
                .context("none yet")
        },
    )
    .await
    .with_context(|| env.operator_logs())
}

pub fn job_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

pub fn job_args(job: &Job) -> Vec<String> {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .map(|c| {
            c.command
                .iter()
                .flatten()
                .chain(c.args.iter().flatten())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

pub async fn warning_event(env: &OperatorEnv, sv: &str, reason: &str) -> Result<Event> {
    let api: Api<Event> = env.api();
    wait_for(&format!("a Warning Event {reason} on {sv}"), T, || async {
        let events = api.list(&ListParams::default()).await?.items;
        events
            .into_iter()
            .find(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some(reason)
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(sv)
            })
            .context("no such Event yet")
    })
    .await
    .with_context(|| env.operator_logs())
}

/// A small valid SkyVault with maintenance Jobs effectively off (a schedule
/// far in the future) unless a test changes it.
pub fn small_skyvault(name: &str) -> Value {
    json!({
        "apiVersion": "skyvault.io/v1alpha1",
        "kind": "SkyVault",
        "metadata": { "name": name },
        "spec": {
            "image": "skyvault:e2e",
            "objectStore": { "bucket": "skyvault-e2e", "endpoint": "http://s3.local:9000", "pathStyle": true },
            "database": { "urlSecret": { "name": "skyvault-db" } },
            "compaction": { "schedule": "0 0 1 1 *" },
            "purge": { "schedule": "0 0 1 1 *" }
        }
    })
}
