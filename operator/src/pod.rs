//! The Pod template shared by the StatefulSets and the Jobs: one `skyvault` container,
//! hardened (non-root, read-only root filesystem, no capabilities) with the user's
//! overrides layered on top.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, LocalObjectReference, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecurityContext, Volume, VolumeMount,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::SkyVault;
use crate::naming::{self, GRPC_PORT, HTTP_PORT, RUN_AS_ID};

/// Name of the one container in every data-plane and Job Pod.
pub const CONTAINER_NAME: &str = "skyvault";

/// What differs between the roles' and the Jobs' containers.
pub struct ContainerPlan {
    /// `skyvault` subcommand: batcher, index, cache, compact, purge.
    pub subcommand: &'static str,
    /// Role-specific environment (wins over the ConfigMap's envFrom).
    pub env: Vec<EnvVar>,
    pub resources: ResourceRequirements,
    /// Servers get ports and probes; Jobs get neither.
    pub server: bool,
}

/// The `skyvault` container.
pub fn container(sv: &SkyVault, plan: ContainerPlan) -> Container {
    // The cache tier never opens the database: it gets no database Secret; `migrate` only
    // opens the database: it gets no store credentials.
    let mut env = match plan.subcommand {
        "cache" => s3_secret_env(sv),
        "migrate" => database_env(sv),
        _ => secret_env(sv),
    };
    env.extend(plan.env);
    Container {
        name: CONTAINER_NAME.into(),
        image: Some(sv.spec.image.clone()),
        image_pull_policy: sv.spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(vec![plan.subcommand.to_string()]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: naming::config_name(sv),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(env),
        resources: Some(plan.resources),
        ports: plan.server.then(server_ports),
        startup_probe: plan.server.then(|| http_probe(sv, "/healthz", 2, 60)),
        liveness_probe: plan.server.then(|| http_probe(sv, "/healthz", 10, 3)),
        readiness_probe: plan.server.then(|| http_probe(sv, "/readyz", 5, 3)),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        }]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

/// Secrets reach the container as env `valueFrom`, never through the ConfigMap.
pub fn secret_env(sv: &SkyVault) -> Vec<EnvVar> {
    let mut env = database_env(sv);
    env.extend(s3_secret_env(sv));
    env
}

/// The database URL, from its Secret.
fn database_env(sv: &SkyVault) -> Vec<EnvVar> {
    let db = &sv.spec.database.url_secret;
    vec![secret_var("SKYVAULT_METADATA_URL", &db.name, &db.key)]
}

/// The object store's credentials (none when the Pods use a cloud identity).
fn s3_secret_env(sv: &SkyVault) -> Vec<EnvVar> {
    let mut env = Vec::new();
    if let Some(creds) = &sv.spec.object_store.credentials_secret {
        env.push(secret_var(
            "AWS_ACCESS_KEY_ID",
            &creds.name,
            &creds.access_key_id_key,
        ));
        env.push(secret_var(
            "AWS_SECRET_ACCESS_KEY",
            &creds.name,
            &creds.secret_access_key_key,
        ));
    }
    env
}

fn secret_var(var: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: var.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// A plain `NAME=value` variable.
pub fn env_var(name: &str, value: impl ToString) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    }
}

fn server_ports() -> Vec<ContainerPort> {
    vec![
        ContainerPort {
            name: Some("grpc".into()),
            container_port: GRPC_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        },
        ContainerPort {
            name: Some("http".into()),
            container_port: HTTP_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        },
    ]
}

/// A probe of the HTTP listener: HTTPS when the SkyVault serves TLS (that listener then
/// speaks nothing else; the kubelet does not verify the certificate, and none is asked of it).
fn http_probe(sv: &SkyVault, path: &str, period: i32, failures: i32) -> Probe {
    let scheme = if sv.spec.tls.is_some() {
        "HTTPS"
    } else {
        "HTTP"
    };
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            scheme: Some(scheme.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        success_threshold: Some(1),
        ..Probe::default()
    }
}

/// Non-root, read-only root filesystem, no capabilities, no privilege escalation. The
/// user and group come from the Pod's security context (65532 unless the user sets
/// `pod.securityContext`, e.g. an OpenShift-assigned uid), never pinned per container.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// The operator's Pod security defaults with the user's fields laid over them.
pub fn pod_security_context(sv: &SkyVault) -> PodSecurityContext {
    let defaults = PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_ID),
        run_as_group: Some(RUN_AS_ID),
        fs_group: Some(RUN_AS_ID),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..PodSecurityContext::default()
    };
    match &sv.spec.pod.security_context {
        Some(user) => overlay(&defaults, user),
        None => defaults,
    }
}

/// Top-level fields set in `over` replace those of `base`. Done on JSON so new fields of
/// PodSecurityContext are covered without listing them.
fn overlay<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(base: &T, over: &T) -> T {
    let (Ok(serde_json::Value::Object(mut b)), Ok(serde_json::Value::Object(o))) =
        (serde_json::to_value(base), serde_json::to_value(over))
    else {
        return over.clone();
    };
    b.extend(o.into_iter().filter(|(_, v)| !v.is_null()));
    serde_json::from_value(serde_json::Value::Object(b)).unwrap_or_else(|_| over.clone())
}

/// The Pod template: labels, annotations (with the config checksum), scheduling and security.
pub fn pod_template(
    sv: &SkyVault,
    component: &str,
    checksum: &str,
    container: Container,
    restart_policy: Option<&str>,
) -> PodTemplateSpec {
    let pod = &sv.spec.pod;
    let mut labels = pod.labels.clone();
    labels.extend(naming::common_labels(sv, component));
    let mut annotations = pod.annotations.clone();
    annotations.insert(naming::CONFIG_CHECKSUM_ANNOTATION.into(), checksum.into());
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: restart_policy.map(str::to_string),
            service_account_name: pod.service_account_name.clone(),
            // The data plane never talks to the Kubernetes API.
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(pod_security_context(sv)),
            node_selector: non_empty_map(&pod.node_selector),
            tolerations: (!pod.tolerations.is_empty()).then(|| pod.tolerations.clone()),
            affinity: Some(
                pod.affinity
                    .clone()
                    .unwrap_or_else(|| spread(sv, component)),
            ),
            priority_class_name: pod.priority_class_name.clone(),
            image_pull_secrets: image_pull_secrets(sv),
            termination_grace_period_seconds: Some(30),
            volumes: Some(vec![Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity("1Gi".into())),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
    }
}

fn non_empty_map(m: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!m.is_empty()).then(|| m.clone())
}

fn image_pull_secrets(sv: &SkyVault) -> Option<Vec<LocalObjectReference>> {
    let names = &sv.spec.image_pull_secrets;
    (!names.is_empty()).then(|| {
        names
            .iter()
            .map(|n| LocalObjectReference { name: n.clone() })
            .collect()
    })
}

/// Default affinity: prefer one Pod of a role per node, so a node loss takes out one replica.
fn spread(sv: &SkyVault, component: &str) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(naming::selector_labels(sv, component)),
                            match_expressions: None,
                        }),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            required_during_scheduling_ignored_during_execution: None,
        }),
        ..Affinity::default()
    }
}

const MIB: i64 = 1024 * 1024;

/// Quantity for a byte count, rounded up to whole MiB.
pub fn mib_quantity(bytes: i64) -> Quantity {
    Quantity(format!("{}Mi", (bytes + MIB - 1) / MIB))
}

/// The user's resources with the blanks filled: a CPU request, and a memory request (and,
/// when `memory_limit` is given, limit) sized by the operator from the role's settings.
pub fn fill_resources(
    user: Option<&ResourceRequirements>,
    memory_request: i64,
    memory_limit: Option<i64>,
) -> ResourceRequirements {
    let mut res = user.cloned().unwrap_or_default();
    let user_sets_memory = has_key(&res.requests, "memory") || has_key(&res.limits, "memory");
    let requests = res.requests.get_or_insert_with(BTreeMap::new);
    requests
        .entry("cpu".into())
        .or_insert_with(|| Quantity("100m".into()));
    if !user_sets_memory {
        requests.insert("memory".into(), mib_quantity(memory_request));
        if let Some(limit) = memory_limit {
            res.limits
                .get_or_insert_with(BTreeMap::new)
                .insert("memory".into(), mib_quantity(limit));
        }
    }
    res
}

fn has_key(map: &Option<BTreeMap<String, Quantity>>, key: &str) -> bool {
    map.as_ref().is_some_and(|m| m.contains_key(key))
}
