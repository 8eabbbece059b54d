//! Per-test environment for operator tests: a namespace on the shared
//! cluster, the CRDs, the chart's RBAC for a fresh release, the Secrets the
//! example references, and operator processes running as the chart's
//! ServiceAccount (so they have exactly the chart's permissions).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::cluster::{TestCluster, TestNamespace};
use crate::manifests::{
    ClusterScopedCleanup, FIELD_MANAGER, apply_manifests, install_crds, read_yaml_file, repo_crds,
};
use crate::operator::{Operator, OperatorOptions};
use crate::process::random_hex;
use crate::tools::repo_root;
use crate::{helm, kubeconfig};

/// Kinds of the chart's RBAC objects (what the operator identity gets).
pub const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// The chart directory (`$SKYVAULT_E2E_CHART_DIR` overrides it, to try a modified chart).
pub fn chart_dir() -> PathBuf {
    std::env::var_os("SKYVAULT_E2E_CHART_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(helm::operator_chart_dir)
}

/// The example SkyVault shipped with the chart.
pub fn example_skyvault() -> Result<Value> {
    let path = repo_root().join("charts/skyvault-operator/examples/skyvault.yaml");
    let mut docs = read_yaml_file(&path)?;
    let i = docs
        .iter()
        .position(|d| d["kind"] == "SkyVault")
        .with_context(|| format!("no SkyVault in {}", path.display()))?;
    Ok(docs.swap_remove(i))
}

/// `skyvault.io/v1alpha1` `SkyVault`.
pub fn skyvault_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("skyvault.io", "v1alpha1", "SkyVault"),
        "skyvaults",
    )
}

pub struct OperatorEnv {
    pub cluster: &'static TestCluster,
    pub ns: TestNamespace,
    /// Admin client (the test's own view; the operator uses its SA).
    pub client: kube::Client,
    /// Helm release name the RBAC was rendered for.
    pub release: String,
    /// The rendered chart (all documents).
    pub rendered: Vec<Value>,
    /// Kubeconfig of the chart's ServiceAccount.
    pub operator_kubeconfig: PathBuf,
    _cluster_scoped: ClusterScopedCleanup,
    operators: Vec<Operator>,
}

impl OperatorEnv {
    /// Namespace + CRDs + chart RBAC (default values) + example Secrets.
    pub async fn new(prefix: &str) -> Result<Self> {
        Self::with_chart_values(prefix, &[]).await
    }

    /// Like [`OperatorEnv::new`] with `--set` values for the chart;
    /// `{namespace}` in a value stands for the test's namespace.
    pub async fn with_chart_values(prefix: &str, set: &[&str]) -> Result<Self> {
        let cluster = TestCluster::shared().await?;
        let client = cluster.admin_client().await?;
        install_crds(&client, &repo_crds()?).await?;
        let ns = cluster.namespace(prefix).await?;
        let release = format!("skyvault-operator-{}", random_hex(3));

        let chart = chart_dir();
        let rendered = tokio::task::spawn_blocking({
            let (release, ns, set) = (
                release.clone(),
                ns.name().to_owned(),
                set.iter()
                    .map(|s| s.replace("{namespace}", ns.name()))
                    .collect::<Vec<_>>(),
            );
            move || {
                let set: Vec<&str> = set.iter().map(String::as_str).collect();
                helm::template(&chart, &release, &ns, &set)
            }
        })
        .await??;
        let rbac: Vec<Value> = helm::of_kinds(&rendered, &RBAC_KINDS).cloned().collect();
        if !rbac
            .iter()
            .any(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        {
            bail!("the chart rendered no (Cluster)Role");
        }
        apply_manifests(&client, &rbac, ns.name()).await?;
        let cluster_scoped = ClusterScopedCleanup::for_documents(&rbac, !cluster.is_local());
        let sa = rbac
            .iter()
            .find(|d| d["kind"] == "ServiceAccount")
            .and_then(|d| d["metadata"]["name"].as_str())
            .context("the chart rendered no ServiceAccount")?
            .to_owned();
        let operator_kubeconfig = cluster.service_account_kubeconfig(ns.name(), &sa).await?;

        let env = Self {
            cluster,
            ns,
            client,
            release,
            rendered,
            operator_kubeconfig,
            _cluster_scoped: cluster_scoped,
            operators: Vec::new(),
        };
        env.create_example_secrets().await?;
        Ok(env)
    }

    pub fn namespace(&self) -> &str {
        self.ns.name()
    }

    /// The Secrets the example SkyVault references.
    pub async fn create_example_secrets(&self) -> Result<()> {
        self.create_secret(
            "skyvault-db",
            &[("url", "postgres://skyvault:pw@postgres.db:5432/skyvault")],
        )
        .await?;
        self.create_secret(
            "skyvault-s3",
            &[
                ("AWS_ACCESS_KEY_ID", "e2e-access-key"),
                ("AWS_SECRET_ACCESS_KEY", "e2e-secret-key"),
            ],
        )
        .await
    }

    pub async fn create_secret(&self, name: &str, data: &[(&str, &str)]) -> Result<()> {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            string_data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        Api::<Secret>::namespaced(self.client.clone(), self.namespace())
            .create(&PostParams::default(), &secret)
            .await
            .with_context(|| format!("create Secret {name}"))?;
        Ok(())
    }

    /// Starts an operator as the chart's ServiceAccount, watching only this
    /// test's namespace, with its Lease there too.
    pub async fn start_operator(&mut self, identity: &str, leader_election: bool) -> Result<usize> {
        self.start_operator_with(identity, leader_election, &[])
            .await
    }

    /// [`Self::start_operator`] with more `run` flags.
    pub async fn start_operator_with(
        &mut self,
        identity: &str,
        leader_election: bool,
        extra_args: &[String],
    ) -> Result<usize> {
        let options = OperatorOptions {
            kubeconfig: self.operator_kubeconfig.clone(),
            watch_namespace: Some(self.namespace().to_owned()),
            leader_election,
            lease_namespace: Some(self.namespace().to_owned()),
            lease_name: None,
            lease_duration_secs: 6,
            identity: identity.to_owned(),
            log_path: self
                .cluster
                .work_dir()
                .join(format!("operator-{}-{identity}.log", self.namespace())),
            extra_args: extra_args.to_vec(),
        };
        let op = Operator::start(&options)?;
        op.wait_healthy().await?;
        self.operators.push(op);
        Ok(self.operators.len() - 1)
    }

    pub fn operator(&self, i: usize) -> &Operator {
        &self.operators[i]
    }

    pub fn operators(&self) -> &[Operator] {
        &self.operators
    }

    /// The last log lines of every operator (for error messages).
    pub fn operator_logs(&self) -> String {
        self.operators
            .iter()
            .map(|o| format!("---- {} ----\n{}", o.identity(), o.log_tail(25)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Fails if any operator logged an authorization failure: the chart's
    /// RBAC must cover every call the operator makes (including the ones
    /// whose failure it only logs, such as publishing Events).
    pub fn assert_no_rbac_denials(&self) -> Result<()> {
        let mut denials = Vec::new();
        for op in &self.operators {
            let path = op.process().log_path();
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            denials.extend(
                text.lines()
                    .filter(|l| {
                        let l = l.to_ascii_lowercase();
                        l.contains("forbidden") || l.contains(" 403")
                    })
                    .take(5)
                    .map(|l| format!("{}: {l}", op.identity())),
            );
        }
        if !denials.is_empty() {
            bail!("the operator was denied by RBAC:\n{}", denials.join("\n"));
        }
        Ok(())
    }

    pub fn skyvaults(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), self.namespace(), &skyvault_resource())
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), self.namespace())
    }

    /// Server-side applies a SkyVault as the test's field manager.
    pub async fn apply_skyvault(&self, sv: &Value) -> Result<DynamicObject> {
        let name = sv["metadata"]["name"]
            .as_str()
            .context("SkyVault without a name")?;
        self.skyvaults()
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(sv),
            )
            .await
            .map_err(crate::manifests::api_message)
            .with_context(|| format!("apply SkyVault {name}"))
    }

    /// JSON merge patch of a SkyVault's spec/metadata.
    pub async fn merge_patch_skyvault(&self, name: &str, patch: Value) -> Result<DynamicObject> {
        self.skyvaults()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(crate::manifests::api_message)
            .with_context(|| format!("patch SkyVault {name}"))
    }

    pub async fn get_skyvault(&self, name: &str) -> Result<DynamicObject> {
        Ok(self.skyvaults().get(name).await?)
    }

    /// Writes a StatefulSet's status the way the StatefulSet controller would
    /// once `ready` Pods run the current revision (no kubelet here).
    pub async fn set_statefulset_ready(&self, name: &str, ready: i32) -> Result<()> {
        let api: Api<StatefulSet> = self.api();
        let sts = api.get(name).await?;
        let replicas = sts.spec.replicas.unwrap_or(1);
        let generation = sts.metadata.generation.unwrap_or(1);
        let status = json!({
            "status": {
                "observedGeneration": generation,
                "replicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "currentReplicas": replicas,
                "updatedReplicas": replicas,
                "currentRevision": format!("{name}-rev{generation}"),
                "updateRevision": format!("{name}-rev{generation}"),
            }
        });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(crate::manifests::api_message)
            .with_context(|| format!("write status of StatefulSet {name}"))?;
        Ok(())
    }

    /// Marks a Job finished the way the Job controller would.
    pub async fn finish_job(&self, name: &str, succeeded: bool) -> Result<()> {
        let api: Api<Job> = self.api();
        let job = api.get(name).await?;
        let now = chrono_like_now();
        let start = job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| now.clone());
        let cond = |t: &str, reason: &str| {
            json!({"type": t, "status": "True", "reason": reason, "message": "set by the e2e test",
                   "lastProbeTime": now, "lastTransitionTime": now})
        };
        let status = if succeeded {
            json!({"status": {
                "startTime": start, "completionTime": now, "active": 0, "ready": 0,
                "succeeded": 1, "terminating": 0,
                "conditions": [cond("SuccessCriteriaMet", "CompletionsReached"),
                               cond("Complete", "CompletionsReached")],
            }})
        } else {
            json!({"status": {
                "startTime": start, "active": 0, "ready": 0, "failed": 1, "terminating": 0,
                "conditions": [cond("FailureTarget", "BackoffLimitExceeded"),
                               cond("Failed", "BackoffLimitExceeded")],
            }})
        };
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(crate::manifests::api_message)
            .with_context(|| format!("write status of Job {name}"))?;
        Ok(())
    }

    /// Marks a Job ended by its pod failure policy on `exit_code`, the way the Job
    /// controller does (FailJob rule at index 0).
    pub async fn end_job_by_policy(&self, name: &str, exit_code: i32) -> Result<()> {
        let api: Api<Job> = self.api();
        let now = chrono_like_now();
        let message = format!(
            "Container skyvault for pod {}/{name}-x7k2p failed with exit code {exit_code} matching FailJob rule at index 0",
            self.namespace()
        );
        let cond = |t: &str| {
            json!({"type": t, "status": "True", "reason": "PodFailurePolicy", "message": message,
                   "lastProbeTime": now, "lastTransitionTime": now})
        };
        let status = json!({"status": {
            "startTime": now, "active": 0, "ready": 0, "failed": 1, "terminating": 0,
            "conditions": [cond("FailureTarget"), cond("Failed")],
        }});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(crate::manifests::api_message)
            .with_context(|| format!("write status of Job {name}"))?;
        Ok(())
    }

    /// Marks a Job as started (one active Pod).
    pub async fn start_job(&self, name: &str) -> Result<()> {
        let api: Api<Job> = self.api();
        let status = json!({"status": {"startTime": chrono_like_now(), "active": 1}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(crate::manifests::api_message)
            .with_context(|| format!("write status of Job {name}"))?;
        Ok(())
    }

    /// A client authenticated as the operator's ServiceAccount.
    pub async fn operator_client(&self) -> Result<kube::Client> {
        kubeconfig::client_from_file(&self.operator_kubeconfig).await
    }
}

impl Drop for OperatorEnv {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.operator_logs());
        }
        // Stop operators before their RBAC goes away (field drop order).
        self.operators.clear();
    }
}

/// Current UTC time as RFC 3339 with second precision (what metav1.Time holds).
pub fn chrono_like_now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
