//! Names, labels and ports shared by every child object, so builders, the pruner and the
//! status code agree on them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::SkyVault;

/// Field manager for every server-side apply and create.
pub const FIELD_MANAGER: &str = "skyvault-operator";
/// Value of `app.kubernetes.io/managed-by` on every child; watches select on it.
pub const MANAGED_BY: &str = "skyvault-operator";
/// Label selector matching everything this operator manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=skyvault-operator";
/// Annotation on Pod templates with the ConfigMap's checksum: a config change rolls the Pods.
pub const CONFIG_CHECKSUM_ANNOTATION: &str = "skyvault.io/config-checksum";
/// Annotation that asks for one compaction now; each new value runs one Job.
pub const TRIGGER_COMPACTION_ANNOTATION: &str = "skyvault.io/trigger-compaction";
/// Annotation that asks for one purge now; each new value runs one Job.
pub const TRIGGER_PURGE_ANNOTATION: &str = "skyvault.io/trigger-purge";
/// Annotation on Jobs: the schedule time (RFC 3339) the Job was created for.
pub const SCHEDULED_TIME_ANNOTATION: &str = "skyvault.io/scheduled-time";
/// Annotation on manual Jobs: the trigger value that started it.
pub const TRIGGER_VALUE_ANNOTATION: &str = "skyvault.io/trigger";
/// Annotation on compaction Jobs started for compaction debt: the debt when it was created.
pub const DEBT_ANNOTATION: &str = "skyvault.io/debt";
/// On a debt-driven compaction Job: the level-0 file count the index reported when it was
/// created (a running Job holds at most that many, the oldest; see `l0_jobs`).
pub const L0_FILES_ANNOTATION: &str = "skyvault.io/l0-files";
/// On a debt-driven compaction Job: the fingerprint of the LSM's shape it was created for
/// (`debt::shape`); after an idle outcome no debt Job starts until the shape changes.
pub const LSM_SHAPE_ANNOTATION: &str = "skyvault.io/lsm-shape";
/// Label on Jobs: `compact` or `purge`.
pub const JOB_KIND_LABEL: &str = "skyvault.io/job-kind";

/// gRPC port of batcher, index and cache (also serves grpc.health.v1).
pub const GRPC_PORT: i32 = 50051;
/// HTTP port with /healthz, /readyz and /metrics.
pub const HTTP_PORT: i32 = 9090;
/// uid/gid the image runs as.
pub const RUN_AS_ID: i64 = 65532;

/// A long-running data-plane tier, each a StatefulSet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Batcher,
    Index,
    Cache,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Batcher, Role::Index, Role::Cache];

    /// The `skyvault` subcommand and the name suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Batcher => "batcher",
            Role::Index => "index",
            Role::Cache => "cache",
        }
    }

    /// Whether clients reach this role through a ClusterIP Service (the cache is internal).
    pub fn has_client_service(self) -> bool {
        matches!(self, Role::Batcher | Role::Index)
    }
}

/// The StatefulSet (and PodDisruptionBudget, and client Service) name of a role.
pub fn role_name(sv: &SkyVault, role: Role) -> String {
    format!("{}-{}", sv.name_any(), role.as_str())
}

/// The headless Service of a role, giving each Pod a stable DNS name.
pub fn headless_name(sv: &SkyVault, role: Role) -> String {
    format!("{}-{}-headless", sv.name_any(), role.as_str())
}

/// The shared ConfigMap.
pub fn config_name(sv: &SkyVault) -> String {
    format!("{}-config", sv.name_any())
}

/// Labels that select one role's Pods. Never change these: StatefulSet selectors are immutable.
pub fn selector_labels(sv: &SkyVault, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "skyvault".to_string()),
        ("app.kubernetes.io/instance".to_string(), sv.name_any()),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
    ])
}

/// Labels on every child object.
pub fn common_labels(sv: &SkyVault, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(sv, component);
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    labels.insert("app.kubernetes.io/part-of".into(), "skyvault".into());
    labels
}

/// Label selector for every child of one SkyVault (used when pruning).
pub fn instance_selector(sv: &SkyVault) -> String {
    format!(
        "{MANAGED_SELECTOR},app.kubernetes.io/instance={}",
        sv.name_any()
    )
}

/// The owner reference that makes the SkyVault the controller of a child (and lets the
/// garbage collector delete children with it).
pub fn owner_ref(sv: &SkyVault) -> OwnerReference {
    // controller_owner_ref is None only for an object without a uid, which never comes
    // from the API server; builders are also called in tests with a uid set.
    sv.controller_owner_ref(&())
        .unwrap_or_else(|| OwnerReference {
            api_version: "skyvault.io/v1alpha1".into(),
            kind: "SkyVault".into(),
            name: sv.name_any(),
            uid: sv.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
}

/// Metadata of a child: name, namespace, labels, owner.
pub fn child_meta(sv: &SkyVault, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: sv.namespace(),
        labels: Some(common_labels(sv, component)),
        owner_references: Some(vec![owner_ref(sv)]),
        ..ObjectMeta::default()
    }
}

/// `host:port` of every cache replica in ring order, through the headless Service's
/// stable per-Pod DNS names (no Kubernetes API access needed by the index).
pub fn cache_peers(sv: &SkyVault) -> String {
    let ns = sv.namespace().unwrap_or_else(|| "default".into());
    let sts = role_name(sv, Role::Cache);
    let svc = headless_name(sv, Role::Cache);
    (0..sv.spec.cache.replicas.max(0))
        .map(|i| format!("{sts}-{i}.{svc}.{ns}.svc:{GRPC_PORT}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Where the operator reads compaction debt by default: `GET /lsm` on the HTTP port of the
/// index's client Service (any ready index answers; each follows the manifest).
pub const DEFAULT_LSM_URL_TEMPLATE: &str = "http://{name}-index.{namespace}.svc:9090/lsm";

/// The debt URL of a SkyVault: `{name}` and `{namespace}` in the template replaced, and
/// `http://` made `https://` when the SkyVault serves TLS (its HTTP listener is TLS only).
pub fn lsm_url(template: &str, sv: &SkyVault) -> String {
    let ns = sv.namespace().unwrap_or_else(|| "default".into());
    let url = template
        .replace("{name}", &sv.name_any())
        .replace("{namespace}", &ns);
    match (sv.spec.tls.is_some(), url.strip_prefix("http://")) {
        (true, Some(rest)) => format!("https://{rest}"),
        _ => url,
    }
}

/// In-cluster gRPC address of a role's client Service.
pub fn client_endpoint(sv: &SkyVault, role: Role) -> String {
    let ns = sv.namespace().unwrap_or_else(|| "default".into());
    format!("{}.{ns}.svc:{GRPC_PORT}", role_name(sv, role))
}
