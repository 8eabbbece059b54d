//! The CRD committed in `crds/` against a real API server: accepted,
//! structural, documented in the published OpenAPI, printer columns, and
//! validation that rejects bad specs naming the field. No operator needed.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use skyvault_e2e::manifests::{install_crds, repo_crds};
use skyvault_e2e::{TestCluster, wait_for};

const CRD_NAME: &str = "skyvaults.skyvault.io";

fn skyvault_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("skyvault.io", "v1alpha1", "SkyVault"),
        "skyvaults",
    )
}

async fn cluster_with_crds() -> Result<(&'static TestCluster, kube::Client)> {
    let cluster = TestCluster::shared().await?;
    let client = cluster.admin_client().await?;
    let crds = repo_crds()?;
    install_crds(&client, &crds).await?;
    Ok((cluster, client))
}

/// A minimal valid SkyVault (only the required fields).
fn minimal_skyvault(name: &str) -> Value {
    json!({
        "apiVersion": "skyvault.io/v1alpha1",
        "kind": "SkyVault",
        "metadata": { "name": name },
        "spec": {
            "image": "skyvault:e2e",
            "objectStore": { "bucket": "skyvault-e2e" },
            "database": { "urlSecret": { "name": "skyvault-db" } }
        }
    })
}

#[tokio::test]
async fn crd_is_accepted_structural_and_established() -> Result<()> {
    let (_cluster, client) = cluster_with_crds().await?;
    let crd = Api::<CustomResourceDefinition>::all(client)
        .get(CRD_NAME)
        .await
        .with_context(|| format!("CRD {CRD_NAME} not found after applying crds/"))?;
    let conds = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let status_of = |t: &str| {
        conds
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
    };
    ensure!(
        status_of("Established").as_deref() == Some("True"),
        "conditions: {conds:?}"
    );
    ensure!(
        status_of("NamesAccepted").as_deref() == Some("True"),
        "conditions: {conds:?}"
    );
    ensure!(
        status_of("NonStructuralSchema").is_none(),
        "schema is not structural: {conds:?}"
    );

    let spec = &crd.spec;
    ensure!(spec.group == "skyvault.io");
    ensure!(spec.scope == "Namespaced", "scope {}", spec.scope);
    ensure!(spec.names.kind == "SkyVault");
    ensure!(
        spec.names
            .short_names
            .as_ref()
            .is_some_and(|s| s.iter().any(|n| n == "sv")),
        "short name sv missing: {:?}",
        spec.names.short_names
    );
    let v = spec
        .versions
        .iter()
        .find(|v| v.name == "v1alpha1")
        .context("no v1alpha1 version")?;
    ensure!(v.served && v.storage, "v1alpha1 must be served and stored");
    ensure!(
        v.subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "the status subresource must be enabled"
    );
    let columns: Vec<String> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    for want in ["Ready", "Batcher", "Index", "Cache", "Age"] {
        ensure!(
            columns.iter().any(|c| c == want),
            "printer column {want} missing: {columns:?}"
        );
    }
    Ok(())
}

/// Collects the paths of properties that have no description (what
/// `kubectl explain` would show empty).
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let p = format!("{path}.{name}");
            let prop = resolve_all_of(prop);
            if prop
                .get("description")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                out.push(p.clone());
            }
            undocumented(prop, &p, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(resolve_all_of(items), &format!("{path}[]"), out);
    }
}

/// The published OpenAPI v3 sometimes wraps a property as `allOf: [{...}]`.
fn resolve_all_of(v: &Value) -> &Value {
    match v.get("allOf").and_then(Value::as_array) {
        Some(all) if all.len() == 1 && v.get("description").is_none() => &all[0],
        _ => v,
    }
}

/// `kubectl explain sv.spec` reads the published OpenAPI: every field of the
/// spec and status must carry a description there.
#[tokio::test]
async fn crd_openapi_publishes_descriptions_like_kubectl_explain() -> Result<()> {
    let (_cluster, client) = cluster_with_crds().await?;
    let schema = wait_for(
        "the SkyVault schema in /openapi/v3",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let req =
                    http::Request::get("/openapi/v3/apis/skyvault.io/v1alpha1").body(Vec::new())?;
                let doc: Value = client.request(req).await?;
                doc["components"]["schemas"]["io.skyvault.v1alpha1.SkyVault"]
                    .as_object()
                    .cloned()
                    .map(Value::Object)
                    .context("schema io.skyvault.v1alpha1.SkyVault not published yet")
            }
        },
    )
    .await?;

    ensure!(
        schema["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "the SkyVault kind has no description"
    );
    for part in ["spec", "status"] {
        let s = resolve_all_of(&schema["properties"][part]);
        ensure!(
            s["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{part} has no description"
        );
        let mut missing = Vec::new();
        undocumented(s, part, &mut missing);
        ensure!(
            missing.is_empty(),
            "fields without a description: {missing:?}"
        );
    }
    // A field we know the meaning of shows its text (as `kubectl explain sv.spec.batcher.replicas`).
    let replicas = &resolve_all_of(
        &resolve_all_of(&schema["properties"]["spec"])["properties"]["batcher"],
    )["properties"]["replicas"];
    ensure!(
        replicas["description"]
            .as_str()
            .is_some_and(|d| d.to_lowercase().contains("batcher")),
        "spec.batcher.replicas description: {}",
        replicas["description"]
    );
    Ok(())
}

/// Sets (or with `None` removes) the value at a `/`-separated JSON pointer.
fn mutate(obj: &mut Value, pointer: &str, value: Option<Value>) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer has a parent");
    let mut cur = obj;
    for seg in parent.split('/').filter(|s| !s.is_empty()) {
        if cur.get(seg).is_none() {
            cur[seg] = json!({});
        }
        cur = cur.get_mut(seg).unwrap();
    }
    let map = cur.as_object_mut().expect("parent is an object");
    match value {
        Some(v) => {
            map.insert(key.to_owned(), v);
        }
        None => {
            map.remove(key);
        }
    }
}

/// Bad specs the schema (ranges, patterns, required fields, CEL) can catch are
/// rejected by the API server with 422 and a message naming the field.
#[tokio::test]
async fn invalid_skyvaults_are_rejected_naming_the_field() -> Result<()> {
    let (cluster, client) = cluster_with_crds().await?;
    let ns = cluster.namespace("crd-invalid").await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client, ns.name(), &skyvault_resource());

    // Positive control: the minimal spec is accepted, so rejections below are
    // caused by the mutation alone.
    let ok: DynamicObject = serde_json::from_value(minimal_skyvault("valid"))?;
    api.create(&PostParams::default(), &ok)
        .await
        .context("the minimal valid SkyVault was rejected")?;

    let cases: Vec<(&str, Option<Value>, &str)> = vec![
        (
            "/spec/batcher/replicas",
            Some(json!(0)),
            "spec.batcher.replicas",
        ),
        (
            "/spec/index/replicas",
            Some(json!(-1)),
            "spec.index.replicas",
        ),
        (
            "/spec/cache/replicas",
            Some(json!(1000)),
            "spec.cache.replicas",
        ),
        (
            "/spec/compaction/schedule",
            Some(json!("every minute")),
            "spec.compaction.schedule",
        ),
        (
            "/spec/purge/schedule",
            Some(json!("* * *")),
            "spec.purge.schedule",
        ),
        ("/spec/database/urlSecret", None, "spec.database.urlSecret"),
        (
            "/spec/database/urlSecret/name",
            Some(json!("")),
            "spec.database.urlSecret.name",
        ),
        (
            "/spec/objectStore/bucket",
            Some(json!("Not_A_Bucket")),
            "spec.objectStore.bucket",
        ),
        ("/spec/image", None, "spec.image"),
        (
            "/spec/pod/securityContext/runAsUser",
            Some(json!(0)),
            "spec.pod.securityContext",
        ),
        (
            "/spec/purge/gracePeriodSeconds",
            Some(json!(1)),
            "spec.purge.gracePeriodSeconds",
        ),
        // CEL on the write stall's triggers, against the defaults filled in by the server:
        // slowdown at the stop (36), and a stop at or below the compaction trigger.
        (
            "/spec/batcher/l0SlowdownFiles",
            Some(json!(36)),
            "l0SlowdownFiles must be below batcher.l0StopFiles",
        ),
        (
            "/spec/compaction/l0TriggerFiles",
            Some(json!(36)),
            "spec.batcher.l0StopFiles must be 0 (off) or more than",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (pointer, value, field)) in cases.iter().enumerate() {
        let mut obj = minimal_skyvault(&format!("bad-{i}"));
        mutate(&mut obj, pointer, value.clone());
        let obj: DynamicObject = serde_json::from_value(obj)?;
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => failures.push(format!("{pointer}={value:?} was accepted")),
            Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(field) => {}
            Err(e) => failures.push(format!(
                "{pointer}={value:?}: want 422 naming {field}, got {e}"
            )),
        }
    }
    ensure!(
        failures.is_empty(),
        "validation gaps:\n{}",
        failures.join("\n")
    );
    Ok(())
}

/// CEL transition rules: the bucket of an existing SkyVault cannot change.
#[tokio::test]
async fn object_store_bucket_is_immutable() -> Result<()> {
    let (cluster, client) = cluster_with_crds().await?;
    let ns = cluster.namespace("crd-immutable").await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client, ns.name(), &skyvault_resource());
    let obj: DynamicObject = serde_json::from_value(minimal_skyvault("sv"))?;
    let created = api.create(&PostParams::default(), &obj).await?;
    let change = |sv: &mut Value| sv["objectStore"]["bucket"] = json!("other-bucket");
    change_is_rejected(&api, &created, change, "objectStore.bucket", "bucket").await
}

/// The database Secret of an existing SkyVault cannot be swapped for
/// another: old and new pods would disagree about which store they serve.
#[tokio::test]
async fn database_url_secret_is_immutable() -> Result<()> {
    let (cluster, client) = cluster_with_crds().await?;
    let ns = cluster.namespace("crd-immutable-db").await?;
    let api: Api<DynamicObject> = Api::namespaced_with(client, ns.name(), &skyvault_resource());
    let obj: DynamicObject = serde_json::from_value(minimal_skyvault("sv"))?;
    let created = api.create(&PostParams::default(), &obj).await?;
    for (field, value) in [("name", "another-database"), ("key", "other-key")] {
        let change = |sv: &mut Value| sv["database"]["urlSecret"][field] = json!(value);
        let what = format!("database.urlSecret.{field}");
        change_is_rejected(&api, &created, change, &what, "urlSecret is immutable").await?;
    }
    Ok(())
}

/// Replacing `created` with `change` applied to its spec fails with 422 and a
/// message containing `want`.
async fn change_is_rejected(
    api: &Api<DynamicObject>,
    created: &DynamicObject,
    change: impl FnOnce(&mut Value),
    what: &str,
    want: &str,
) -> Result<()> {
    let mut changed = created.clone();
    change(&mut changed.data["spec"]);
    let name = created.metadata.name.as_deref().context("no name")?;
    match api.replace(name, &PostParams::default(), &changed).await {
        Ok(_) => bail!("changing spec.{what} was accepted"),
        Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(want) => Ok(()),
        Err(e) => bail!("changing spec.{what}: want 422 naming it ({want:?}), got {e}"),
    }
}
