//! The Helm chart against a real API server: every rendered object is
//! accepted, and the operator works with the namespaced-Role variant of the
//! chart's RBAC too (the default ClusterRole variant is what tests/operator.rs
//! runs with).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use skyvault_e2e::manifests::{ClusterScopedCleanup, apply_manifests, install_crds, repo_crds};
use skyvault_e2e::operator_env::{OperatorEnv, chart_dir};
use skyvault_e2e::process::random_hex;
use skyvault_e2e::{TestCluster, TestNamespace, helm, wait_for};

/// Renders the chart with `set` and applies everything but the CRD (installed
/// from crds/) and the ServiceMonitor (its CRD is not in a bare cluster).
async fn apply_rendered(set: &[&str]) -> Result<(Vec<Value>, TestNamespace, ClusterScopedCleanup)> {
    let cluster = TestCluster::shared().await?;
    let client = cluster.admin_client().await?;
    install_crds(&client, &repo_crds()?).await?;
    let ns = cluster.namespace("chart").await?;
    let release = format!("skyvault-operator-{}", random_hex(3));
    let set: Vec<String> = set
        .iter()
        .map(|s| s.replace("{namespace}", ns.name()))
        .collect();
    let docs = tokio::task::spawn_blocking({
        let (release, ns) = (release.clone(), ns.name().to_owned());
        move || {
            let set: Vec<&str> = set.iter().map(String::as_str).collect();
            helm::template(&chart_dir(), &release, &ns, &set)
        }
    })
    .await??;
    let objects: Vec<Value> = docs
        .iter()
        .filter(|d| d["kind"] != "CustomResourceDefinition" && d["kind"] != "ServiceMonitor")
        .cloned()
        .collect();
    ensure!(!objects.is_empty(), "the chart rendered nothing");
    let cleanup = ClusterScopedCleanup::for_documents(&objects, !cluster.is_local());
    apply_manifests(&client, &objects, ns.name()).await?;

    // The Deployment is stored as rendered (no controllers run here).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    let list = deployments.list(&ListParams::default()).await?.items;
    ensure!(
        list.len() == 1,
        "want one operator Deployment, got {}",
        list.len()
    );
    Ok((docs, ns, cleanup))
}

#[tokio::test]
async fn chart_with_default_values_is_accepted_by_the_api_server() -> Result<()> {
    let (docs, _ns, _cleanup) = apply_rendered(&[]).await?;
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for want in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        ensure!(
            kinds.contains(&want),
            "the default rendering has no {want}: {kinds:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn chart_with_non_default_values_is_accepted_by_the_api_server() -> Result<()> {
    let (docs, ns, _cleanup) = apply_rendered(&[
        "replicaCount=2",
        "watchNamespace={namespace}",
        "logFormat=text",
        "metrics.service.type=NodePort",
        "podLabels.team=storage",
        "priorityClassName=",
    ])
    .await?;
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    ensure!(
        kinds.contains(&"PodDisruptionBudget"),
        "two replicas need a PDB: {kinds:?}"
    );
    ensure!(
        !kinds.contains(&"ClusterRole"),
        "watchNamespace must give a Role, not a ClusterRole"
    );
    let client = TestCluster::shared().await?.admin_client().await?;
    let roles: Api<Role> = Api::namespaced(client, ns.name());
    let names: Vec<String> = roles
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    ensure!(
        names.len() == 2,
        "want the operator Role and the leader-election Role in {ns}: {names:?}"
    );
    Ok(())
}

/// With `watchNamespace` the operator gets a Role instead of a ClusterRole;
/// it must still do its whole job in that namespace.
#[tokio::test]
async fn operator_works_with_the_namespaced_role_variant() -> Result<()> {
    let mut env =
        OperatorEnv::with_chart_values("chart-ns", &["watchNamespace={namespace}"]).await?;
    ensure!(
        !env.rendered.iter().any(|d| d["kind"] == "ClusterRole"),
        "watchNamespace rendered a ClusterRole"
    );
    let cluster_roles: Api<ClusterRole> = Api::all(env.client.clone());
    ensure!(
        cluster_roles.get_opt(&env.release).await?.is_none(),
        "a ClusterRole exists for this release"
    );
    env.start_operator("op-a", true).await?;
    env.apply_skyvault(&json!({
        "apiVersion": "skyvault.io/v1alpha1",
        "kind": "SkyVault",
        "metadata": { "name": "nsrole" },
        "spec": {
            "image": "skyvault:e2e",
            "objectStore": { "bucket": "skyvault-e2e" },
            "database": { "urlSecret": { "name": "skyvault-db" } },
            "compaction": { "schedule": "0 0 1 1 *" },
            "purge": { "schedule": "0 0 1 1 *" }
        }
    }))
    .await?;
    let sts: Api<StatefulSet> = env.api();
    wait_for(
        "children and status with the namespaced Role",
        Duration::from_secs(60),
        || async {
            sts.get_opt("nsrole-batcher")
                .await?
                .context("no StatefulSet yet")?;
            let sv = env.get_skyvault("nsrole").await?;
            ensure!(sv.data["status"]["conditions"].is_array(), "no status yet");
            Ok(())
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    env.assert_no_rbac_denials()?;
    Ok(())
}
