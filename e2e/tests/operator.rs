//! The real `skyvault-operator` binary against a real API server, running as
//! the chart's ServiceAccount with only the chart's RBAC. No kubelet or
//! workload controllers run: the tests write StatefulSet and Job status
//! themselves, and kube-controller-manager runs only the garbage collector.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use serde_json::{Value, json};
use skyvault_e2e::operator_env::{OperatorEnv, example_skyvault};
use skyvault_e2e::{holds_for, wait_for};

const T: Duration = Duration::from_secs(60);
const ROLES: [&str; 3] = ["batcher", "index", "cache"];

// ---------- helpers ----------

/// `(status, reason, message, observedGeneration)` of a condition.
fn condition(sv: &DynamicObject, type_: &str) -> Option<(String, String, String, i64)> {
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
async fn wait_condition(
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

fn check_owner(refs: Option<&Vec<OwnerReference>>, uid: &str, what: &str) -> Result<()> {
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

async fn wait_statefulset<F>(
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

fn replicas(sts: &StatefulSet) -> i32 {
    sts.spec.replicas.unwrap_or(-1)
}

fn template_annotation(sts: &StatefulSet, key: &str) -> Option<String> {
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
async fn printed_columns(env: &OperatorEnv, name: &str) -> Result<BTreeMap<String, String>> {
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

async fn set_all_ready(env: &OperatorEnv, sv: &str) -> Result<()> {
    for role in ROLES {
        let name = format!("{sv}-{role}");
        let sts: StatefulSet = env.api().get(&name).await?;
        env.set_statefulset_ready(&name, replicas(&sts)).await?;
    }
    Ok(())
}

async fn jobs_of_kind(env: &OperatorEnv, kind: &str) -> Result<Vec<Job>> {
    let api: Api<Job> = env.api();
    let mut jobs = api
        .list(&ListParams::default().labels(&format!("skyvault.io/job-kind={kind}")))
        .await?
        .items;
    jobs.sort_by_key(|j| j.metadata.creation_timestamp.clone().map(|t| t.0));
    Ok(jobs)
}

fn job_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

fn job_args(job: &Job) -> Vec<String> {
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

async fn warning_event(env: &OperatorEnv, sv: &str, reason: &str) -> Result<Event> {
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
fn small_skyvault(name: &str) -> Value {
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

// ---------- tests ----------

/// Applying the example creates every child with the expected fields and a
/// controller owner reference; `kubectl get sv` columns follow status.
#[tokio::test]
async fn example_creates_owned_children_and_printer_columns() -> Result<()> {
    let mut env = OperatorEnv::new("op-children").await?;
    env.start_operator("op-a", true).await?;
    let example = example_skyvault()?;
    let name = example["metadata"]["name"].as_str().unwrap().to_owned();
    let sv = env.apply_skyvault(&example).await?;
    let uid = sv.metadata.uid.clone().unwrap();
    let spec = &example["spec"];

    for role in ROLES {
        let want = spec[role]["replicas"].as_i64().unwrap_or(1) as i32;
        let sts = wait_statefulset(&env, &format!("{name}-{role}"), "created", |_| Ok(())).await?;
        check_owner(
            sts.metadata.owner_references.as_ref(),
            &uid,
            &format!("StatefulSet {role}"),
        )?;
        ensure!(
            replicas(&sts) == want,
            "{role}: replicas {} want {want}",
            replicas(&sts)
        );
        let labels = sts.metadata.labels.clone().unwrap_or_default();
        ensure!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some("skyvault-operator"),
            "{role}: labels {labels:?}"
        );
        ensure!(
            template_annotation(&sts, "skyvault.io/config-checksum").is_some_and(|c| !c.is_empty()),
            "{role}: no config checksum annotation on the Pod template"
        );
        let pod = sts.spec.template.spec.as_ref().context("no pod spec")?;
        let pod_labels = sts
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        ensure!(
            pod_labels.get("team").map(String::as_str) == Some("storage"),
            "{role}: pod.labels not applied: {pod_labels:?}"
        );
        ensure!(
            pod.node_selector
                .as_ref()
                .and_then(|n| n.get("kubernetes.io/os"))
                .map(String::as_str)
                == Some("linux"),
            "{role}: nodeSelector not applied"
        );
        let c = pod.containers.first().context("no container")?;
        ensure!(
            c.image.as_deref() == spec["image"].as_str(),
            "{role}: image {:?}",
            c.image
        );
        let cmd: Vec<String> = c
            .command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .cloned()
            .collect();
        ensure!(
            cmd.iter().any(|a| a == role),
            "{role}: command {cmd:?} does not run the role"
        );
        let sc = c
            .security_context
            .as_ref()
            .context("no container securityContext")?;
        ensure!(
            sc.read_only_root_filesystem == Some(true),
            "{role}: root filesystem not read-only"
        );
        ensure!(
            sc.allow_privilege_escalation == Some(false),
            "{role}: privilege escalation allowed"
        );
        let non_root = sc.run_as_non_root.or_else(|| {
            pod.security_context
                .as_ref()
                .and_then(|p| p.run_as_non_root)
        });
        ensure!(non_root == Some(true), "{role}: not runAsNonRoot");
        ensure!(
            c.readiness_probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .is_some_and(|h| h.path.as_deref() == Some("/readyz")),
            "{role}: readiness probe is not GET /readyz"
        );
        let env_refs: Vec<String> = c
            .env
            .iter()
            .flatten()
            .filter_map(|e| {
                e.value_from
                    .as_ref()?
                    .secret_key_ref
                    .as_ref()
                    .map(|s| format!("{}/{}", s.name, s.key))
            })
            .collect();
        if role == "batcher" || role == "index" {
            ensure!(
                env_refs.iter().any(|r| r == "skyvault-db/url"),
                "{role}: database Secret not referenced: {env_refs:?}"
            );
        }

        let headless: Service = env
            .api()
            .get(&format!("{name}-{role}-headless"))
            .await
            .with_context(|| format!("headless Service for {role}"))?;
        check_owner(
            headless.metadata.owner_references.as_ref(),
            &uid,
            &format!("headless Service {role}"),
        )?;
        ensure!(
            headless.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None"),
            "{role}: headless Service has a cluster IP"
        );

        let pdb: PodDisruptionBudget = env
            .api()
            .get(&format!("{name}-{role}"))
            .await
            .with_context(|| format!("PodDisruptionBudget for {role}"))?;
        check_owner(
            pdb.metadata.owner_references.as_ref(),
            &uid,
            &format!("PDB {role}"),
        )?;
    }
    for role in ["batcher", "index"] {
        let svc: Service = env
            .api()
            .get(&format!("{name}-{role}"))
            .await
            .with_context(|| format!("client Service for {role}"))?;
        check_owner(
            svc.metadata.owner_references.as_ref(),
            &uid,
            &format!("client Service {role}"),
        )?;
        let ports: Vec<i32> = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default()
            .iter()
            .map(|p| p.port)
            .collect();
        ensure!(
            ports.contains(&50051),
            "{role}: client Service ports {ports:?}"
        );
    }
    ensure!(
        env.api::<Service>()
            .get_opt(&format!("{name}-cache"))
            .await?
            .is_none(),
        "the cache tier must have no client Service"
    );
    let cm: ConfigMap = env
        .api()
        .get(&format!("{name}-config"))
        .await
        .context("ConfigMap")?;
    check_owner(cm.metadata.owner_references.as_ref(), &uid, "ConfigMap")?;
    ensure!(
        cm.data.as_ref().is_some_and(|d| !d.is_empty()),
        "ConfigMap has no data"
    );

    // Nothing is ready yet (no Pods exist): kubectl get sv says so.
    wait_condition(&env, &name, "Ready", "False", Some("ReplicasNotReady")).await?;
    let cols = printed_columns(&env, &name).await?;
    ensure!(
        cols.get("Ready").map(String::as_str) == Some("False"),
        "columns {cols:?}"
    );

    set_all_ready(&env, &name).await?;
    wait_condition(&env, &name, "Ready", "True", Some("AllReplicasReady")).await?;
    let cols = printed_columns(&env, &name).await?;
    for role in ROLES {
        let n = spec[role]["replicas"].as_i64().unwrap_or(1);
        let col = format!("{}{}", role[..1].to_uppercase(), &role[1..]);
        ensure!(
            cols.get(&col) == Some(&format!("{n}/{n}")),
            "column {col}: {cols:?}"
        );
    }
    ensure!(
        cols.get("Ready").map(String::as_str) == Some("True"),
        "columns {cols:?}"
    );
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// Scaling updates the StatefulSet, disabling a PDB deletes it, and a config
/// change changes the ConfigMap and the Pod templates' checksum annotation.
#[tokio::test]
async fn spec_changes_scale_remove_children_and_roll_config() -> Result<()> {
    let mut env = OperatorEnv::new("op-changes").await?;
    env.start_operator("op-a", true).await?;
    let mut sv = small_skyvault("changes");
    env.apply_skyvault(&sv).await?;
    let before = wait_statefulset(&env, "changes-batcher", "created", |_| Ok(())).await?;
    let checksum_before =
        template_annotation(&before, "skyvault.io/config-checksum").context("no checksum")?;
    let pdbs: Api<PodDisruptionBudget> = env.api();
    wait_for("the batcher PDB", T, || async {
        pdbs.get_opt("changes-batcher").await?.context("missing")
    })
    .await?;
    let cm_before: ConfigMap = env.api().get("changes-config").await?;

    // Scale.
    sv["spec"]["index"] = json!({ "replicas": 4 });
    env.apply_skyvault(&sv).await?;
    wait_statefulset(&env, "changes-index", "4 replicas", |s| {
        ensure!(replicas(s) == 4, "replicas {}", replicas(s));
        Ok(())
    })
    .await?;

    // Remove a child through the spec.
    sv["spec"]["batcher"] = json!({ "disruptionBudget": { "enabled": false } });
    env.apply_skyvault(&sv).await?;
    wait_for("the batcher PDB to be deleted", T, || async {
        match pdbs.get_opt("changes-batcher").await? {
            None => Ok(()),
            Some(_) => bail!("still there"),
        }
    })
    .await
    .with_context(|| env.operator_logs())?;
    ensure!(
        pdbs.get_opt("changes-index").await?.is_some(),
        "the index PDB must stay"
    );

    // Config change: the ConfigMap and the checksum on every role's template change.
    sv["spec"]["batcher"]["batchMaxBytes"] = json!(8 * 1024 * 1024);
    env.apply_skyvault(&sv).await?;
    let after = wait_statefulset(&env, "changes-batcher", "a new config checksum", |s| {
        let c = template_annotation(s, "skyvault.io/config-checksum");
        ensure!(
            c.as_deref() != Some(checksum_before.as_str()),
            "checksum unchanged"
        );
        Ok(())
    })
    .await?;
    let cm_after: ConfigMap = env.api().get("changes-config").await?;
    ensure!(
        cm_after.data != cm_before.data,
        "the ConfigMap data did not change"
    );
    let new_checksum = template_annotation(&after, "skyvault.io/config-checksum");
    ensure!(new_checksum.is_some(), "checksum removed");

    // Removing a pod label from the spec removes it from the template.
    sv["spec"]["pod"] = json!({ "labels": { "team": "storage" } });
    env.apply_skyvault(&sv).await?;
    wait_statefulset(&env, "changes-cache", "label team", |s| {
        let l = s
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        ensure!(
            l.get("team").map(String::as_str) == Some("storage"),
            "labels {l:?}"
        );
        Ok(())
    })
    .await?;
    sv["spec"].as_object_mut().unwrap().remove("pod");
    env.apply_skyvault(&sv).await?;
    wait_statefulset(&env, "changes-cache", "label team removed", |s| {
        let l = s
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        ensure!(!l.contains_key("team"), "labels {l:?}");
        Ok(())
    })
    .await?;
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// Conditions, ready counts and observedGeneration follow the StatefulSet
/// status the test writes and the spec generation.
#[tokio::test]
async fn status_follows_statefulsets_and_generation() -> Result<()> {
    let mut env = OperatorEnv::new("op-status").await?;
    env.start_operator("op-a", true).await?;
    let mut sv = small_skyvault("st");
    sv["spec"]["cache"] = json!({ "replicas": 2 });
    env.apply_skyvault(&sv).await?;
    for role in ROLES {
        wait_statefulset(&env, &format!("st-{role}"), "created", |_| Ok(())).await?;
    }
    let obj = wait_condition(&env, "st", "Ready", "False", Some("ReplicasNotReady")).await?;
    let generation = obj.metadata.generation.unwrap();
    ensure!(
        obj.data["status"]["observedGeneration"] == generation,
        "observedGeneration {}",
        obj.data["status"]["observedGeneration"]
    );
    ensure!(
        condition(&obj, "Ready").unwrap().3 == generation,
        "Ready's observedGeneration"
    );
    wait_condition(&env, "st", "Degraded", "False", None).await?;

    // One role ready, the others not.
    env.set_statefulset_ready("st-batcher", 1).await?;
    env.set_statefulset_ready("st-cache", 1).await?;
    wait_for("status counts", T, || async {
        let s = env.get_skyvault("st").await?;
        let st = &s.data["status"];
        ensure!(
            st["batcher"]["ready"] == 1 && st["batcher"]["desired"] == 1,
            "batcher {}",
            st["batcher"]
        );
        ensure!(
            st["cache"]["ready"] == 1 && st["cache"]["desired"] == 2,
            "cache {}",
            st["cache"]
        );
        ensure!(
            st["cache"]["summary"] == "1/2",
            "cache summary {}",
            st["cache"]["summary"]
        );
        ensure!(
            condition(&s, "Ready").is_some_and(|c| c.0 == "False"),
            "Ready must stay False"
        );
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;

    set_all_ready(&env, "st").await?;
    wait_condition(&env, "st", "Ready", "True", Some("AllReplicasReady")).await?;
    wait_condition(&env, "st", "Progressing", "False", Some("RolloutComplete")).await?;

    // A spec change bumps the generation; status follows it.
    sv["spec"]["cache"] = json!({ "replicas": 3 });
    let updated = env.apply_skyvault(&sv).await?;
    let new_gen = updated.metadata.generation.unwrap();
    ensure!(new_gen > generation, "generation did not increase");
    wait_for("observedGeneration to follow the spec", T, || async {
        let s = env.get_skyvault("st").await?;
        ensure!(
            s.data["status"]["observedGeneration"] == new_gen,
            "observedGeneration {}",
            s.data["status"]["observedGeneration"]
        );
        ensure!(
            s.data["status"]["cache"]["desired"] == 3,
            "cache {}",
            s.data["status"]["cache"]
        );
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;
    wait_condition(&env, "st", "Ready", "False", Some("ReplicasNotReady")).await?;
    wait_condition(&env, "st", "Progressing", "True", Some("RollingOut")).await?;
    env.set_statefulset_ready("st-cache", 3).await?;
    wait_condition(&env, "st", "Ready", "True", Some("AllReplicasReady")).await?;
    // Status writes by the operator must not bump the generation.
    let s = env.get_skyvault("st").await?;
    ensure!(
        s.metadata.generation == Some(new_gen),
        "status writes changed the generation"
    );
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// With a one-minute schedule a compaction Job appears with the right
/// command and owner; while it is active no second one is created; when it
/// completes the missed run starts; history is bounded; results reach status.
#[tokio::test]
async fn scheduled_compaction_jobs_forbid_overlap_and_bound_history() -> Result<()> {
    let mut env = OperatorEnv::new("op-sched").await?;
    env.start_operator("op-a", true).await?;
    let mut sv = small_skyvault("sched");
    sv["spec"]["compaction"] = json!({ "schedule": "* * * * *", "successfulJobsHistoryLimit": 1 });
    let uid = env.apply_skyvault(&sv).await?.metadata.uid.unwrap();

    let first = wait_for(
        "the first scheduled compaction Job",
        Duration::from_secs(100),
        || async {
            jobs_of_kind(&env, "compact")
                .await?
                .into_iter()
                .next()
                .context("none yet")
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    let first_name = first.metadata.name.clone().unwrap();
    ensure!(
        first_name.starts_with("sched-compact-"),
        "Job name {first_name}"
    );
    check_owner(
        first.metadata.owner_references.as_ref(),
        &uid,
        "compaction Job",
    )?;
    let args = job_args(&first);
    ensure!(args.iter().any(|a| a == "compact"), "Job command {args:?}");
    ensure!(
        jobs_of_kind(&env, "purge").await?.is_empty(),
        "purge is not due"
    );
    env.start_job(&first_name).await?;

    // The next schedule time passes while the first Job is active: no second Job.
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let past_next_minute = Duration::from_secs((60 - now.rem_euclid(60) + 10) as u64);
    holds_for(
        "only one compaction Job while it is active",
        past_next_minute,
        || async {
            let n = jobs_of_kind(&env, "compact").await?.len();
            ensure!(n == 1, "{n} compaction Jobs");
            Ok(())
        },
    )
    .await
    .with_context(|| env.operator_logs())?;

    env.finish_job(&first_name, true).await?;
    // The success reaches status (lastRun may already have moved on to the
    // missed run, which starts as soon as the first one is done).
    wait_for("status.compaction.lastSuccessfulTime", T, || async {
        let s = env.get_skyvault("sched").await?;
        let c = &s.data["status"]["compaction"];
        ensure!(c["lastSuccessfulTime"].is_string(), "compaction status {c}");
        let last = &c["lastRun"];
        ensure!(
            last["manual"] != true,
            "scheduled run marked manual: {last}"
        );
        ensure!(
            last["jobName"] != first_name.as_str() || last["result"] == "Succeeded",
            "lastRun {last}"
        );
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;

    // The run missed while the first was active starts now (Forbid semantics).
    let second = wait_for(
        "a second compaction Job",
        Duration::from_secs(90),
        || async {
            let jobs = jobs_of_kind(&env, "compact").await?;
            jobs.into_iter()
                .find(|j| j.metadata.name.as_deref() != Some(first_name.as_str()))
                .context("none yet")
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    let second_name = second.metadata.name.clone().unwrap();
    ensure!(
        job_args(&second).iter().any(|a| a == "compact"),
        "command {:?}",
        job_args(&second)
    );
    env.finish_job(&second_name, true).await?;

    // successfulJobsHistoryLimit 1: the older finished Job goes away.
    wait_for("history bounded to one successful Job", T, || async {
        let jobs = jobs_of_kind(&env, "compact").await?;
        let finished: Vec<_> = jobs
            .iter()
            .filter(|j| job_finished(j))
            .filter_map(|j| j.metadata.name.clone())
            .collect();
        ensure!(
            !finished.contains(&first_name),
            "the first Job is still kept: {finished:?}"
        );
        ensure!(finished.len() <= 1, "finished Jobs kept: {finished:?}");
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// The manual-trigger annotation runs one Job now (compaction and purge);
/// the same value runs nothing more; a failed Job degrades the SkyVault and
/// a later success clears it; failed history is bounded.
#[tokio::test]
async fn manual_triggers_run_jobs_and_results_reach_status() -> Result<()> {
    let mut env = OperatorEnv::new("op-trigger").await?;
    env.start_operator("op-a", true).await?;
    let mut sv = small_skyvault("trig");
    sv["spec"]["compaction"]["failedJobsHistoryLimit"] = json!(1);
    sv["spec"]["compaction"]["successfulJobsHistoryLimit"] = json!(1);
    let uid = env.apply_skyvault(&sv).await?.metadata.uid.unwrap();
    wait_statefulset(&env, "trig-batcher", "created", |_| Ok(())).await?;
    ensure!(
        jobs_of_kind(&env, "compact").await?.is_empty(),
        "no Job before a trigger"
    );

    env.merge_patch_skyvault(
        "trig",
        json!({"metadata": {"annotations": {"skyvault.io/trigger-compaction": "one"}}}),
    )
    .await?;
    let job = wait_for(
        "a triggered compaction Job",
        Duration::from_secs(30),
        || async {
            jobs_of_kind(&env, "compact")
                .await?
                .into_iter()
                .next()
                .context("none yet")
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    let job1 = job.metadata.name.clone().unwrap();
    check_owner(
        job.metadata.owner_references.as_ref(),
        &uid,
        "triggered Job",
    )?;
    ensure!(
        job_args(&job).iter().any(|a| a == "compact"),
        "command {:?}",
        job_args(&job)
    );
    wait_for("handledTrigger = one", T, || async {
        let s = env.get_skyvault("trig").await?;
        ensure!(
            s.data["status"]["compaction"]["handledTrigger"] == "one",
            "{}",
            s.data["status"]["compaction"]
        );
        ensure!(
            s.data["status"]["compaction"]["lastRun"]["manual"] == true,
            "lastRun {}",
            s.data["status"]["compaction"]["lastRun"]
        );
        Ok(())
    })
    .await?;

    // Failure is reflected in status and as Degraded.
    env.finish_job(&job1, false).await?;
    let s = wait_condition(&env, "trig", "Degraded", "True", Some("CompactionFailed")).await?;
    ensure!(
        s.data["status"]["compaction"]["lastRun"]["result"] == "Failed",
        "{}",
        s.data["status"]["compaction"]["lastRun"]
    );
    // Same trigger value: nothing new.
    holds_for(
        "no second Job for the same trigger value",
        Duration::from_secs(5),
        || async {
            let n = jobs_of_kind(&env, "compact").await?.len();
            ensure!(n == 1, "{n} Jobs");
            Ok(())
        },
    )
    .await?;

    // New value: one more Job; its success clears Degraded.
    env.merge_patch_skyvault(
        "trig",
        json!({"metadata": {"annotations": {"skyvault.io/trigger-compaction": "two"}}}),
    )
    .await?;
    let job2 = wait_for(
        "a second triggered Job",
        Duration::from_secs(30),
        || async {
            jobs_of_kind(&env, "compact")
                .await?
                .into_iter()
                .find(|j| !job_finished(j))
                .and_then(|j| j.metadata.name)
                .context("none yet")
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    env.finish_job(&job2, true).await?;
    wait_condition(&env, "trig", "Degraded", "False", None).await?;
    // `kubectl get sv` shows when the last compaction succeeded.
    wait_for("the Last Compaction column", T, || async {
        let cols = printed_columns(&env, "trig").await?;
        ensure!(
            cols.get("Last Compaction").is_some_and(|c| !c.is_empty()),
            "columns {cols:?}"
        );
        Ok(())
    })
    .await?;

    // Failed-history limit 1 and successful-history limit 1: a third failed run
    // replaces the first failed one.
    env.merge_patch_skyvault(
        "trig",
        json!({"metadata": {"annotations": {"skyvault.io/trigger-compaction": "three"}}}),
    )
    .await?;
    let job3 = wait_for("a third triggered Job", Duration::from_secs(30), || async {
        jobs_of_kind(&env, "compact")
            .await?
            .into_iter()
            .find(|j| !job_finished(j))
            .and_then(|j| j.metadata.name)
            .context("none yet")
    })
    .await?;
    env.finish_job(&job3, false).await?;
    wait_for("bounded Job history", T, || async {
        let names: Vec<String> = jobs_of_kind(&env, "compact")
            .await?
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect();
        ensure!(
            !names.contains(&job1),
            "the older failed Job is kept: {names:?}"
        );
        ensure!(
            names.len() == 2,
            "want one failed + one successful Job, have {names:?}"
        );
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;

    // Purge has its own trigger and command.
    env.merge_patch_skyvault(
        "trig",
        json!({"metadata": {"annotations": {"skyvault.io/trigger-purge": "p1"}}}),
    )
    .await?;
    let purge = wait_for("a triggered purge Job", Duration::from_secs(30), || async {
        jobs_of_kind(&env, "purge")
            .await?
            .into_iter()
            .next()
            .context("none yet")
    })
    .await?;
    ensure!(
        job_args(&purge).iter().any(|a| a == "purge"),
        "purge command {:?}",
        job_args(&purge)
    );
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// Specs only the operator can judge: Degraded naming the field, a Warning
/// Event, and nothing applied; fixing the spec recovers.
#[tokio::test]
async fn invalid_specs_degrade_with_warning_events() -> Result<()> {
    let mut env = OperatorEnv::new("op-invalid").await?;
    env.start_operator("op-a", true).await?;

    // Missing Secret.
    let mut missing = small_skyvault("nosecret");
    missing["spec"]["database"]["urlSecret"]["name"] = json!("does-not-exist");
    env.apply_skyvault(&missing).await?;
    let s = wait_condition(&env, "nosecret", "Degraded", "True", Some("SecretNotFound")).await?;
    let msg = condition(&s, "Degraded").unwrap().2;
    ensure!(
        msg.contains("spec.database.urlSecret"),
        "Degraded message does not name the field: {msg}"
    );
    warning_event(&env, "nosecret", "SecretNotFound").await?;
    ensure!(
        env.api::<StatefulSet>()
            .get_opt("nosecret-batcher")
            .await?
            .is_none(),
        "children were applied for a spec with a missing Secret"
    );

    // A cron expression that passes the schema's shape check but is not valid.
    let mut bad_cron = small_skyvault("badcron");
    bad_cron["spec"]["compaction"]["schedule"] = json!("61 * * * *");
    env.apply_skyvault(&bad_cron).await?;
    let s = wait_condition(&env, "badcron", "Degraded", "True", Some("InvalidSpec")).await?;
    let msg = condition(&s, "Degraded").unwrap().2;
    ensure!(
        msg.contains("spec.compaction.schedule"),
        "message does not name the field: {msg}"
    );
    warning_event(&env, "badcron", "InvalidSpec").await?;

    // A memory limit not above the cache capacity.
    let mut small_mem = small_skyvault("smallmem");
    small_mem["spec"]["cache"] = json!({
        "cacheCapacityBytes": 1073741824,
        "resources": { "limits": { "memory": "512Mi" } }
    });
    env.apply_skyvault(&small_mem).await?;
    let s = wait_condition(&env, "smallmem", "Degraded", "True", Some("InvalidSpec")).await?;
    let msg = condition(&s, "Degraded").unwrap().2;
    ensure!(
        msg.contains("spec.cache"),
        "message does not name the field: {msg}"
    );

    // Fixing the cron recovers.
    bad_cron["spec"]["compaction"]["schedule"] = json!("0 0 1 1 *");
    env.apply_skyvault(&bad_cron).await?;
    wait_condition(&env, "badcron", "Degraded", "False", None).await?;
    wait_statefulset(&env, "badcron-batcher", "created after the fix", |_| Ok(())).await?;
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// Two operators with leader election: only the Lease holder reconciles;
/// killing it (no graceful release) hands over to the other.
#[tokio::test]
async fn leader_election_only_leader_reconciles_and_hands_over() -> Result<()> {
    let mut env = OperatorEnv::new("op-leader").await?;
    let a = env.start_operator("op-a", true).await?;
    let b = env.start_operator("op-b", true).await?;
    let leases: Api<Lease> = env.api();
    let holder = wait_for("a Lease holder", T, || async {
        let list = leases.list(&ListParams::default()).await?.items;
        list.iter()
            .find_map(|l| l.spec.as_ref()?.holder_identity.clone())
            .context("no holder yet")
    })
    .await
    .with_context(|| env.operator_logs())?;
    let (leader, standby) = if holder == "op-a" {
        (a, b)
    } else if holder == "op-b" {
        (b, a)
    } else {
        bail!("unexpected holder {holder}");
    };
    wait_for("leader gauges", T, || async {
        let l = env
            .operator(leader)
            .metric("skyvault_operator_leader", &[])
            .await?;
        let s = env
            .operator(standby)
            .metric("skyvault_operator_leader", &[])
            .await?;
        ensure!(l == 1.0 && s == 0.0, "leader gauge {l}, standby gauge {s}");
        Ok(())
    })
    .await?;

    env.apply_skyvault(&small_skyvault("le")).await?;
    wait_statefulset(&env, "le-batcher", "created by the leader", |_| Ok(())).await?;
    wait_for("the leader to count its reconciles", T, || async {
        let n = env
            .operator(leader)
            .metric(
                "skyvault_operator_reconciliations_total",
                &[("outcome", "success")],
            )
            .await?;
        ensure!(
            n > 0.0,
            "leader reconciliations_total{{outcome=success}} = {n}"
        );
        Ok(())
    })
    .await?;
    let standby_reconciles = env
        .operator(standby)
        .metric("skyvault_operator_reconciliations_total", &[])
        .await?;
    ensure!(
        standby_reconciles == 0.0,
        "the standby reconciled {standby_reconciles} times"
    );

    // Kill -9 the leader: the Lease expires and the standby takes over.
    env.operator(leader).kill();
    let new_holder = env.operator(standby).identity().to_owned();
    wait_for(
        "the standby to hold the Lease",
        Duration::from_secs(45),
        || async {
            let list = leases.list(&ListParams::default()).await?.items;
            let h = list
                .iter()
                .find_map(|l| l.spec.as_ref()?.holder_identity.clone());
            ensure!(h.as_deref() == Some(new_holder.as_str()), "holder {h:?}");
            Ok(())
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    let mut sv = small_skyvault("le");
    sv["spec"]["index"] = json!({ "replicas": 3 });
    env.apply_skyvault(&sv).await?;
    wait_statefulset(&env, "le-index", "scaled by the new leader", |s| {
        ensure!(replicas(s) == 3, "replicas {}", replicas(s));
        Ok(())
    })
    .await?;
    ensure!(
        env.operator(standby)
            .metric("skyvault_operator_leader", &[])
            .await?
            == 1.0,
        "the new leader's gauge is not 1"
    );
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// Deleting the SkyVault deletes its children through their owner
/// references (kube-controller-manager's garbage collector runs here).
#[tokio::test]
async fn deleting_the_skyvault_garbage_collects_children() -> Result<()> {
    let mut env = OperatorEnv::new("op-delete").await?;
    env.start_operator("op-a", true).await?;
    env.apply_skyvault(&small_skyvault("gone")).await?;
    env.merge_patch_skyvault(
        "gone",
        json!({"metadata": {"annotations": {"skyvault.io/trigger-compaction": "x"}}}),
    )
    .await?;
    wait_statefulset(&env, "gone-cache", "created", |_| Ok(())).await?;
    wait_for("the triggered Job", T, || async {
        jobs_of_kind(&env, "compact")
            .await?
            .into_iter()
            .next()
            .context("none yet")
    })
    .await?;
    ensure!(
        env.cluster.has_garbage_collector(),
        "this cluster has no garbage collector"
    );

    env.skyvaults()
        .delete("gone", &DeleteParams::background())
        .await?;
    wait_for(
        "every child to be garbage-collected",
        Duration::from_secs(120),
        || async {
            let mut left = Vec::new();
            for role in ROLES {
                if env
                    .api::<StatefulSet>()
                    .get_opt(&format!("gone-{role}"))
                    .await?
                    .is_some()
                {
                    left.push(format!("statefulset/gone-{role}"));
                }
                if env
                    .api::<Service>()
                    .get_opt(&format!("gone-{role}-headless"))
                    .await?
                    .is_some()
                {
                    left.push(format!("service/gone-{role}-headless"));
                }
                if env
                    .api::<PodDisruptionBudget>()
                    .get_opt(&format!("gone-{role}"))
                    .await?
                    .is_some()
                {
                    left.push(format!("pdb/gone-{role}"));
                }
            }
            if env
                .api::<ConfigMap>()
                .get_opt("gone-config")
                .await?
                .is_some()
            {
                left.push("configmap/gone-config".into());
            }
            left.extend(
                jobs_of_kind(&env, "compact")
                    .await?
                    .into_iter()
                    .filter_map(|j| j.metadata.name),
            );
            ensure!(left.is_empty(), "still present: {left:?}");
            Ok(())
        },
    )
    .await?;
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// docs/operations.md: `Degraded=True CompactionFailed` "clears when a later
/// one succeeds" — not when a retry merely starts.
#[tokio::test]
async fn failed_compaction_stays_degraded_until_a_later_run_succeeds() -> Result<()> {
    let mut env = OperatorEnv::new("op-degraded").await?;
    env.start_operator("op-a", true).await?;
    env.apply_skyvault(&small_skyvault("deg")).await?;
    let trigger = |value: &'static str| json!({"metadata": {"annotations": {"skyvault.io/trigger-compaction": value}}});
    let running_job = || async {
        jobs_of_kind(&env, "compact")
            .await?
            .into_iter()
            .find(|j| !job_finished(j))
            .and_then(|j| j.metadata.name)
            .context("no running Job yet")
    };
    env.merge_patch_skyvault("deg", trigger("a")).await?;
    let first = wait_for("the first triggered Job", T, running_job).await?;
    env.finish_job(&first, false).await?;
    wait_condition(&env, "deg", "Degraded", "True", Some("CompactionFailed")).await?;

    env.merge_patch_skyvault("deg", trigger("b")).await?;
    let retry = wait_for("the retry Job", T, running_job).await?;
    wait_for("the operator to record the retry", T, || async {
        let s = env.get_skyvault("deg").await?;
        let c = &s.data["status"]["compaction"];
        ensure!(
            c["handledTrigger"] == "b" && c["lastRun"]["jobName"] == retry.as_str(),
            "{c}"
        );
        Ok(())
    })
    .await?;
    let s = env.get_skyvault("deg").await?;
    ensure!(
        condition(&s, "Degraded").is_some_and(|c| c.0 == "True" && c.1 == "CompactionFailed"),
        "Degraded cleared while the retry is still running: {:?}",
        condition(&s, "Degraded")
    );
    env.finish_job(&retry, true).await?;
    wait_condition(&env, "deg", "Degraded", "False", None).await?;
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// A stand-in for the index's `GET /lsm`: answers every request with the
/// current body (503 while it is empty) and remembers the last path asked for.
struct FakeIndex {
    addr: std::net::SocketAddr,
    body: std::sync::Arc<std::sync::Mutex<String>>,
    last_path: std::sync::Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeIndex {
    async fn start(body: &str) -> Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let body = std::sync::Arc::new(std::sync::Mutex::new(body.to_owned()));
        let last_path = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (b, p) = (body.clone(), last_path.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (b, p) = (b.clone(), p.clone());
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&req)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    *p.lock().unwrap() = line.split(' ').nth(1).unwrap_or("").to_owned();
                    let text = b.lock().unwrap().clone();
                    let (status, text) = if text.is_empty() {
                        ("503 Service Unavailable", "not ready".to_owned())
                    } else {
                        ("200 OK", text)
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Ok(Self {
            addr,
            body,
            last_path,
            task,
        })
    }

    fn set(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_owned();
    }

    fn last_path(&self) -> String {
        self.last_path.lock().unwrap().clone()
    }

    /// The operator flag pointing the debt reading here.
    fn url_flag(&self) -> String {
        format!(
            "--lsm-url-template=http://{}/{{namespace}}/{{name}}/lsm",
            self.addr
        )
    }
}

impl Drop for FakeIndex {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Level 0 over its trigger and level 1 three 64 MiB files over its target:
/// four pieces of work, more than the default two concurrent Jobs.
const HEAVY_DEBT: &str = r#"{"version":9,"l0_files":12,"l0_bytes":50331648,"pending_bytes":251658240,
  "score":3.0,"needs_compaction":true,
  "levels":[{"level":0,"files":12,"bytes":50331648,"target_bytes":0,"score":3.0},
            {"level":1,"files":7,"bytes":469762048,"target_bytes":268435456,"score":1.75},
                      {"level":6,"files":400,"bytes":26843545600,"target_bytes":26843545600,"score":1.0}]}"#;
const NO_DEBT: &str = r#"{"version":10,"l0_files":1,"l0_bytes":4096,"pending_bytes":0,
  "score":0.25,"needs_compaction":false,
  "levels":[{"level":0,"files":1,"bytes":4096,"target_bytes":0,"score":0.25}]}"#;

/// Issue 11, "it drives itself" and "honest outcomes": the debt the index
/// reports starts bounded compaction Jobs up to maxConcurrentJobs (the
/// schedule is a year away); Jobs ended by the pod failure policy on exit 3
/// or 4 are neither successes nor failures; a real success is recorded; an
/// index that stops answering falls back to the schedule with a condition and
/// one Warning, not an error loop.
#[tokio::test]
async fn compaction_debt_drives_jobs_and_idle_outcomes_count_as_neither() -> Result<()> {
    let index = FakeIndex::start(HEAVY_DEBT).await?;
    let mut env = OperatorEnv::new("op-debt").await?;
    env.start_operator_with("op-a", true, &[index.url_flag()])
        .await?;
    env.apply_skyvault(&small_skyvault("debt")).await?;

    let first = wait_for("two debt-driven compaction Jobs", T, || async {
        let jobs = jobs_of_kind(&env, "compact").await?;
        ensure!(jobs.len() == 2, "{} Jobs", jobs.len());
        Ok(jobs)
    })
    .await
    .with_context(|| env.operator_logs())?;
    ensure!(
        index.last_path() == format!("/{}/debt/lsm", env.namespace()),
        "debt read from {}",
        index.last_path()
    );
    for job in &first {
        let name = job.metadata.name.clone().unwrap_or_default();
        ensure!(
            name.starts_with("debt-compact-") && (name.ends_with("-d0") || name.ends_with("-d1")),
            "debt Job name {name}"
        );
        let note = job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("skyvault.io/debt"));
        ensure!(
            note.is_some_and(|n| n.contains("score 3.00")),
            "{name}: debt annotation {note:?}"
        );
        let policy = job
            .spec
            .as_ref()
            .and_then(|s| s.pod_failure_policy.as_ref())
            .with_context(|| format!("{name} has no podFailurePolicy"))?;
        let codes = policy.rules[0]
            .on_exit_codes
            .as_ref()
            .context("exit code rule")?;
        ensure!(
            policy.rules[0].action == "FailJob" && codes.values == vec![3, 4],
            "{name}: {policy:?}"
        );
    }
    wait_for("the debt in status and `kubectl get sv`", T, || async {
        let s = env.get_skyvault("debt").await?;
        let d = &s.data["status"]["compactionDebt"];
        ensure!(d["l0Files"] == 12 && d["needsCompaction"] == true, "{d}");
        ensure!(d["summary"] == "score 3.00, 240Mi pending", "{d}");
        let auto = condition(&s, "AutoCompaction");
        ensure!(
            auto.as_ref()
                .is_some_and(|c| c.0 == "True" && c.1 == "DebtObserved"),
            "AutoCompaction {auto:?}"
        );
        let cols = printed_columns(&env, "debt").await?;
        ensure!(
            cols.get("L0 Files").map(String::as_str) == Some("12"),
            "{cols:?}"
        );
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;
    holds_for(
        "no third Job while two run",
        Duration::from_secs(5),
        || async {
            let n = jobs_of_kind(&env, "compact").await?.len();
            ensure!(n == 2, "{n} compaction Jobs");
            Ok(())
        },
    )
    .await
    .with_context(|| env.operator_logs())?;

    // Exit 3 and exit 4: the Jobs end without a success or a failure.
    let names: Vec<String> = first
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    env.end_job_by_policy(&names[0], 3).await?;
    env.end_job_by_policy(&names[1], 4).await?;
    wait_for("idle outcomes in status", T, || async {
        let s = env.get_skyvault("debt").await?;
        let c = &s.data["status"]["compaction"];
        ensure!(c["lastRun"]["jobName"] == names[1].as_str(), "{c}");
        ensure!(c["lastRun"]["result"] == "InputsClaimed", "{c}");
        ensure!(c["lastRun"]["debt"] == true, "{c}");
        ensure!(
            c["lastSuccessfulTime"].is_null(),
            "idle counted as success: {c}"
        );
        ensure!(c["lastResult"].is_null(), "idle counted as a result: {c}");
        let degraded = condition(&s, "Degraded");
        ensure!(
            degraded.as_ref().is_some_and(|d| d.0 == "False"),
            "idle counted as failure: {degraded:?}"
        );
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;

    // After the 30 s hold the debt, still there, starts Jobs again.
    let second = wait_for(
        "debt Jobs again after the hold",
        Duration::from_secs(90),
        || async {
            let jobs = jobs_of_kind(&env, "compact").await?;
            let new: Vec<String> = jobs
                .iter()
                .filter_map(|j| j.metadata.name.clone())
                .filter(|n| !names.contains(n))
                .collect();
            ensure!(!new.is_empty(), "no new Job yet");
            Ok(new)
        },
    )
    .await
    .with_context(|| env.operator_logs())?;

    // The debt is paid: one Job did real work, no more Jobs start.
    index.set(NO_DEBT);
    wait_for("the paid debt in status", T, || async {
        let s = env.get_skyvault("debt").await?;
        let d = &s.data["status"]["compactionDebt"];
        ensure!(d["needsCompaction"] == false && d["l0Files"] == 1, "{d}");
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;
    for name in &second {
        env.finish_job(name, true).await?;
    }
    wait_for("a real success recorded", T, || async {
        let s = env.get_skyvault("debt").await?;
        let c = &s.data["status"]["compaction"];
        ensure!(c["lastSuccessfulTime"].is_string(), "{c}");
        ensure!(c["lastResult"]["result"] == "Succeeded", "{c}");
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;
    let count = jobs_of_kind(&env, "compact").await?.len();
    holds_for("no Jobs without debt", Duration::from_secs(12), || async {
        let n = jobs_of_kind(&env, "compact").await?.len();
        ensure!(n == count, "{n} compaction Jobs, had {count}");
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;

    // The index stops answering while its Pods are ready: schedule only, said once.
    index.set("");
    set_all_ready(&env, "debt").await?;
    let s = wait_condition(
        &env,
        "debt",
        "AutoCompaction",
        "False",
        Some("IndexUnreachable"),
    )
    .await?;
    let (_, _, message, _) = condition(&s, "AutoCompaction").unwrap_or_default();
    ensure!(message.contains("503"), "AutoCompaction message {message}");
    ensure!(
        s.data["status"]["compactionDebt"]["l0Files"] == 1,
        "the last reading stays: {}",
        s.data["status"]["compactionDebt"]
    );
    warning_event(&env, "debt", "CompactionDebtUnavailable").await?;
    wait_condition(&env, "debt", "Ready", "True", None).await?;
    env.assert_no_rbac_denials()?;
    Ok(())
}
