//! Reading YAML manifests and applying them with server-side apply.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Discovery, Scope};
use serde::Deserialize;

use crate::tools::repo_root;
use crate::wait::wait_for;

/// The field manager the harness applies with.
pub const FIELD_MANAGER: &str = "skyvault-e2e";

/// Every non-empty YAML document in `text`, as JSON values.
pub fn parse_yaml_documents(text: &str) -> Result<Vec<serde_json::Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_json::Value::deserialize(doc).context("parse YAML document")?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Documents of one YAML file.
pub fn read_yaml_file(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    parse_yaml_documents(&text).with_context(|| format!("parse {}", path.display()))
}

/// The CRDs committed in `crds/` (every `*.yaml`/`*.yml` file), or in
/// `$SKYVAULT_E2E_CRDS_DIR` when set (to try a modified CRD).
pub fn repo_crds() -> Result<Vec<CustomResourceDefinition>> {
    let dir = std::env::var_os("SKYVAULT_E2E_CRDS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("crds"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut crds = Vec::new();
    for f in &files {
        for doc in read_yaml_file(f)? {
            if doc["kind"] == "CustomResourceDefinition" {
                crds.push(
                    serde_json::from_value(doc)
                        .with_context(|| format!("{} is not a valid CRD", f.display()))?,
                );
            }
        }
    }
    if crds.is_empty() {
        bail!(
            "no CustomResourceDefinition in {}: the operator's `skyvault-operator crd` output \
             must be committed there (`just crds`)",
            dir.display()
        );
    }
    Ok(crds)
}

/// Applies CRDs (server-side apply) and waits until each is Established.
pub async fn install_crds(client: &kube::Client, crds: &[CustomResourceDefinition]) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        let mut crd = crd.clone();
        crd.metadata.managed_fields = None;
        crd.metadata.resource_version = None;
        crd.status = None;
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(api_message)
        .with_context(|| format!("the API server rejected CRD {name}"))?;
    }
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        wait_crd_established(&api, &name).await?;
    }
    Ok(())
}

/// Waits for `Established=True` and fails fast on `NonStructuralSchema`.
pub async fn wait_crd_established(api: &Api<CustomResourceDefinition>, name: &str) -> Result<()> {
    wait_for(
        &format!("CRD {name} to be Established"),
        Duration::from_secs(60),
        || async {
            let crd = api.get(name).await?;
            let conds = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            if let Some(c) = conds
                .iter()
                .find(|c| c.type_ == "NonStructuralSchema" && c.status == "True")
            {
                // Not retryable, but reported through the same error path.
                bail!(
                    "CRD {name} has a non-structural schema: {}",
                    c.message.clone().unwrap_or_default()
                );
            }
            match conds.iter().find(|c| c.type_ == "Established") {
                Some(c) if c.status == "True" => Ok(()),
                other => bail!("Established condition: {other:?}"),
            }
        },
    )
    .await
}

/// Server-side applies arbitrary manifests (resolving kinds through
/// discovery). `default_namespace` is used for namespaced objects without one.
pub async fn apply_manifests(
    client: &kube::Client,
    docs: &[serde_json::Value],
    default_namespace: &str,
) -> Result<()> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .context("API discovery")?;
    for doc in docs {
        let obj: DynamicObject = serde_json::from_value(doc.clone())
            .with_context(|| format!("not a Kubernetes object: {doc}"))?;
        let tm = obj
            .types
            .clone()
            .context("object without apiVersion/kind")?;
        let gvk = GroupVersionKind::try_from(&tm)?;
        let (ar, caps) = discovery
            .resolve_gvk(&gvk)
            .with_context(|| format!("the cluster does not serve {gvk:?}"))?;
        let name = obj.metadata.name.clone().context("object without a name")?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = obj
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| default_namespace.to_owned());
                Api::namespaced_with(client.clone(), &ns, &ar)
            }
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(doc),
        )
        .await
        .map_err(api_message)
        .with_context(|| format!("apply {} {name}", tm.kind))?;
    }
    Ok(())
}

/// Turns an API error into just the server's message (kube's `Display` of an
/// API error repeats the whole `Status` object).
pub fn api_message(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => anyhow::anyhow!("{} ({}): {}", s.code, s.reason, s.message),
        other => other.into(),
    }
}

/// Deletes the cluster-scoped objects among some documents (ClusterRoles,
/// ClusterRoleBindings) when dropped. Only used on an existing cluster: a
/// local control plane is thrown away whole.
#[derive(Debug, Default)]
pub struct ClusterScopedCleanup {
    objects: Vec<(String, String, String)>,
}

impl ClusterScopedCleanup {
    pub fn for_documents(docs: &[serde_json::Value], enabled: bool) -> Self {
        if !enabled {
            return Self::default();
        }
        let objects = docs
            .iter()
            .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "ClusterRoleBinding")
            .filter_map(|d| {
                Some((
                    d["apiVersion"].as_str()?.to_owned(),
                    d["kind"].as_str()?.to_owned(),
                    d["metadata"]["name"].as_str()?.to_owned(),
                ))
            })
            .collect();
        Self { objects }
    }
}

impl Drop for ClusterScopedCleanup {
    fn drop(&mut self) {
        if self.objects.is_empty() || std::env::var("SKYVAULT_E2E_KEEP").as_deref() == Ok("1") {
            return;
        }
        let objects = std::mem::take(&mut self.objects);
        // Drop cannot be async, and may run inside a runtime: use a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let client = kube::Client::try_from(kube::Config::infer().await?)?;
                for (api_version, kind, name) in objects {
                    let (group, version) =
                        api_version.rsplit_once('/').unwrap_or(("", &api_version));
                    let ar = kube::core::ApiResource::from_gvk(&GroupVersionKind::gvk(
                        group, version, &kind,
                    ));
                    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
                    let _ = api.delete(&name, &kube::api::DeleteParams::default()).await;
                }
                anyhow::Ok(())
            })
        })
        .join();
    }
}
