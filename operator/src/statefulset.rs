//! One StatefulSet per role. StatefulSets (not Deployments) because the cache ring is
//! addressed by stable Pod names, and batcher/index keep the same shape for uniformity.

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::crd::SkyVault;
use crate::memory;
use crate::naming::{self, Role};
use crate::pod::{self, ContainerPlan};

/// Memory the batcher needs beyond its in-flight batches.
const BATCHER_BASE_MEMORY: i64 = 128 * 1024 * 1024;

/// Desired replicas of a role.
pub fn replicas(sv: &SkyVault, role: Role) -> i32 {
    match role {
        Role::Batcher => sv.spec.batcher.replicas,
        Role::Index => sv.spec.index.replicas,
        Role::Cache => sv.spec.cache.replicas,
    }
}

/// Role-specific variables (not in the ConfigMap, so that e.g. scaling the cache rolls only
/// the index Pods, which hold the peer list).
pub fn role_env(sv: &SkyVault, role: Role) -> Vec<EnvVar> {
    match role {
        Role::Batcher => vec![],
        Role::Index => vec![
            pod::env_var("SKYVAULT_CACHE_PEERS", naming::cache_peers(sv)),
            pod::env_var(
                "SKYVAULT_CACHE_CAPACITY_BYTES",
                sv.spec.index.cache_capacity_bytes,
            ),
        ],
        Role::Cache => vec![pod::env_var(
            "SKYVAULT_CACHE_CAPACITY_BYTES",
            sv.spec.cache.cache_capacity_bytes,
        )],
    }
}

/// Resources with operator-sized memory where the user gave none. Cache-holding roles get a
/// limit equal to the request so the kubelet never evicts them for overshooting; their size
/// comes from measured RSS ([`memory::cache_role_memory`]), plus the index's WAL tier
/// ([`memory::index_memory`]).
pub fn role_resources(sv: &SkyVault, role: Role) -> ResourceRequirements {
    let spec = &sv.spec;
    match role {
        Role::Batcher => {
            let b = &spec.batcher;
            // The batch being collected, the flushes in flight and one being committed,
            // plus the full write queue (its budget already counts per-entry overhead),
            // plus the WAL flush: a streaming merge of at most 2 x walFlushBytes of input.
            let in_flight = b.batch_max_bytes * (i64::from(b.max_concurrent_flushes) + 2);
            let wal_flush = 2 * b.wal_flush_bytes;
            let memory = BATCHER_BASE_MEMORY + in_flight + b.queue_max_bytes + wal_flush;
            pod::fill_resources(b.resources.as_ref(), memory, None)
        }
        Role::Index => {
            let b = &spec.batcher;
            let mem = memory::index_memory(
                spec.index.cache_capacity_bytes,
                b.wal_stop_bytes,
                b.wal_flush_bytes,
            );
            pod::fill_resources(spec.index.resources.as_ref(), mem, Some(mem))
        }
        Role::Cache => {
            let mem = memory::cache_role_memory(role, spec.cache.cache_capacity_bytes);
            pod::fill_resources(spec.cache.resources.as_ref(), mem, Some(mem))
        }
    }
}

/// The StatefulSet `NAME-ROLE`, governed by the headless Service `NAME-ROLE-headless`.
pub fn stateful_set(sv: &SkyVault, role: Role, config_checksum: &str) -> StatefulSet {
    let component = role.as_str();
    let container = pod::container(
        sv,
        ContainerPlan {
            subcommand: component,
            env: role_env(sv, role),
            resources: role_resources(sv, role),
            server: true,
        },
    );
    StatefulSet {
        metadata: naming::child_meta(sv, naming::role_name(sv, role), component),
        spec: StatefulSetSpec {
            replicas: Some(replicas(sv, role)),
            selector: LabelSelector {
                match_labels: Some(naming::selector_labels(sv, component)),
                match_expressions: None,
            },
            service_name: Some(naming::headless_name(sv, role)),
            // Replicas share nothing on disk, so start and stop them all at once.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    max_unavailable: None,
                    partition: Some(0),
                }),
            }),
            revision_history_limit: Some(5),
            template: crate::security::secured(
                sv,
                role,
                pod::pod_template(sv, component, config_checksum, container, None),
            ),
            ..StatefulSetSpec::default()
        },
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::sample;
    use k8s_openapi::api::core::v1::Container;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use std::collections::BTreeMap;

    fn container_of(sts: &StatefulSet) -> &Container {
        &sts.spec.template.spec.as_ref().unwrap().containers[0]
    }

    fn env_map(c: &Container) -> BTreeMap<String, Option<String>> {
        c.env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect()
    }

    #[test]
    fn batcher_statefulset_has_selector_service_and_replicas() {
        let mut sv = sample();
        sv.spec.batcher.replicas = 3;
        let sts = stateful_set(&sv, Role::Batcher, "abc");
        assert_eq!(sts.metadata.name.as_deref(), Some("vault-batcher"));
        let spec = &sts.spec;
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("vault-batcher-headless"));
        let sel = spec.selector.match_labels.as_ref().unwrap();
        assert_eq!(sel["app.kubernetes.io/component"], "batcher");
        assert_eq!(sel["app.kubernetes.io/instance"], "vault");
        // Every selector label is on the Pod template, or the API server rejects it.
        let pod_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        for (k, v) in sel {
            assert_eq!(pod_labels.get(k), Some(v), "{k}");
        }
        assert_eq!(
            container_of(&sts).args.as_ref().unwrap(),
            &vec!["batcher".to_string()]
        );
    }

    #[test]
    fn pod_template_carries_config_checksum() {
        let sts = stateful_set(&sample(), Role::Cache, "deadbeef");
        let ann = sts.spec.template.metadata.unwrap().annotations.unwrap();
        assert_eq!(ann[naming::CONFIG_CHECKSUM_ANNOTATION], "deadbeef");
    }

    #[test]
    fn index_gets_cache_peers_in_ring_order() {
        let mut sv = sample();
        sv.spec.cache.replicas = 3;
        let sts = stateful_set(&sv, Role::Index, "x");
        let env = env_map(container_of(&sts));
        assert_eq!(
            env["SKYVAULT_CACHE_PEERS"].as_deref(),
            Some(
                "vault-cache-0.vault-cache-headless.prod.svc:50051,\
                 vault-cache-1.vault-cache-headless.prod.svc:50051,\
                 vault-cache-2.vault-cache-headless.prod.svc:50051"
            )
        );
        assert_eq!(
            env["SKYVAULT_CACHE_CAPACITY_BYTES"].as_deref(),
            Some("67108864")
        );
    }

    #[test]
    fn cache_memory_is_sized_from_capacity_when_not_given() {
        let mut sv = sample();
        sv.spec.cache.cache_capacity_bytes = 1024 * 1024 * 1024;
        let sts = stateful_set(&sv, Role::Cache, "x");
        let c = container_of(&sts);
        assert_eq!(
            env_map(c)["SKYVAULT_CACHE_CAPACITY_BYTES"].as_deref(),
            Some("1073741824")
        );
        let res = c.resources.as_ref().unwrap();
        // (64 MiB + 1 GiB x 1.1 + 4 x 12 MiB replies) x 1.1, see memory.rs.
        assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "1363Mi");
        assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "1363Mi");
        assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "100m");
    }

    #[test]
    fn user_memory_is_kept_as_given() {
        let mut sv = sample();
        sv.spec.cache.resources = Some(
            serde_json::from_value(serde_json::json!({
                "limits": {"memory": "2Gi", "cpu": "2"}
            }))
            .unwrap(),
        );
        let res = role_resources(&sv, Role::Cache);
        assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "2Gi");
        assert_eq!(res.limits.as_ref().unwrap()["cpu"].0, "2");
        assert!(!res.requests.as_ref().unwrap().contains_key("memory"));
    }

    #[test]
    fn batcher_memory_request_covers_in_flight_batches_the_queue_and_the_wal_flush() {
        let mut sv = sample();
        let res = role_resources(&sv, Role::Batcher);
        // 128 MiB + 4 MiB x (4 flushes + 2) + a 64 MiB queue + 2 x 64 MiB of WAL flush
        // input, no limit.
        assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "344Mi");
        assert!(res.limits.is_none());
        sv.spec.batcher.queue_max_bytes = 1 << 30;
        let res = role_resources(&sv, Role::Batcher);
        assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "1304Mi");
        sv.spec.batcher.wal_flush_bytes = 256 << 20;
        let res = role_resources(&sv, Role::Batcher);
        assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "1688Mi");
    }

    #[test]
    fn index_memory_covers_its_cache_and_the_decoded_wal_tier() {
        let mut sv = sample();
        let res = role_resources(&sv, Role::Index);
        // (64 MiB + 64 MiB x 1.1 + 4 x 8 MiB replies) x 1.1 + 3 x the 256 MiB WAL stop,
        // request = limit.
        assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "952Mi");
        assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "952Mi");
        sv.spec.batcher.wal_stop_bytes = 128 << 20;
        let res = role_resources(&sv, Role::Index);
        assert_eq!(res.requests.as_ref().unwrap()["memory"].0, "568Mi");
        assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "568Mi");
        // The batcher and the cache do not hold the WAL tier.
        assert_eq!(
            role_resources(&sv, Role::Cache).requests.unwrap()["memory"].0,
            role_resources(&sample(), Role::Cache).requests.unwrap()["memory"].0
        );
    }

    #[test]
    fn container_is_hardened_and_probed() {
        let sts = stateful_set(&sample(), Role::Batcher, "x");
        let c = container_of(&sts);
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
            &vec!["ALL".to_string()]
        );
        let live = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(live.path.as_deref(), Some("/healthz"));
        let ready = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(ready.path.as_deref(), Some("/readyz"));
        assert_eq!(ready.port, IntOrString::String("http".into()));
        let ports: Vec<_> = c
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.container_port)
            .collect();
        assert_eq!(ports, vec![50051, 9090]);
        let mounts = c.volume_mounts.as_ref().unwrap();
        assert_eq!(mounts[0].mount_path, "/tmp");
        let pod = sts.spec.template.spec.as_ref().unwrap();
        assert!(pod.volumes.as_ref().unwrap()[0].empty_dir.is_some());
        assert_eq!(pod.automount_service_account_token, Some(false));
    }

    #[test]
    fn secrets_come_from_secret_refs_and_config_from_envfrom() {
        let sts = stateful_set(&sample(), Role::Batcher, "x");
        let c = container_of(&sts);
        let env = c.env.as_ref().unwrap();
        let url = env
            .iter()
            .find(|e| e.name == "SKYVAULT_METADATA_URL")
            .unwrap();
        let sel = url
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("pg", "url"));
        let key = env
            .iter()
            .find(|e| e.name == "AWS_SECRET_ACCESS_KEY")
            .unwrap();
        let sel = key
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (sel.name.as_str(), sel.key.as_str()),
            ("s3-creds", "AWS_SECRET_ACCESS_KEY")
        );
        let from = &c.env_from.as_ref().unwrap()[0];
        assert_eq!(from.config_map_ref.as_ref().unwrap().name, "vault-config");
    }

    #[test]
    fn cache_pods_get_the_store_credentials_but_not_the_database() {
        let sts = stateful_set(&sample(), Role::Cache, "x");
        let env = env_map(container_of(&sts));
        assert!(!env.contains_key("SKYVAULT_METADATA_URL"));
        assert!(env.contains_key("AWS_ACCESS_KEY_ID"));
        for role in [Role::Batcher, Role::Index] {
            let sts = stateful_set(&sample(), role, "x");
            assert!(env_map(container_of(&sts)).contains_key("SKYVAULT_METADATA_URL"));
        }
    }

    #[test]
    fn no_credentials_secret_means_no_aws_env() {
        let mut sv = sample();
        sv.spec.object_store.credentials_secret = None;
        let sts = stateful_set(&sv, Role::Index, "x");
        assert!(
            !env_map(container_of(&sts))
                .keys()
                .any(|k| k.starts_with("AWS_"))
        );
    }

    #[test]
    fn pod_overrides_are_applied() {
        let mut sv = sample();
        sv.spec.pod.labels.insert("team".into(), "storage".into());
        sv.spec
            .pod
            .annotations
            .insert("prometheus.io/scrape".into(), "true".into());
        sv.spec
            .pod
            .node_selector
            .insert("disk".into(), "ssd".into());
        sv.spec.pod.priority_class_name = Some("high".into());
        sv.spec.pod.security_context = Some(
            serde_json::from_value(serde_json::json!({"runAsUser": 1000, "fsGroup": 2000}))
                .unwrap(),
        );
        sv.spec.pod.tolerations =
            vec![serde_json::from_value(serde_json::json!({
            "key": "dedicated", "operator": "Equal", "value": "skyvault", "effect": "NoSchedule"
        })).unwrap()];
        let sts = stateful_set(&sv, Role::Index, "x");
        let tpl = sts.spec.template;
        let meta = tpl.metadata.unwrap();
        assert_eq!(meta.labels.unwrap()["team"], "storage");
        assert_eq!(meta.annotations.unwrap()["prometheus.io/scrape"], "true");
        let pod = tpl.spec.unwrap();
        assert_eq!(pod.node_selector.unwrap()["disk"], "ssd");
        assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
        assert_eq!(
            pod.tolerations.unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        let container_sc = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(
            (container_sc.run_as_user, container_sc.run_as_group),
            (None, None),
            "the container does not pin a uid over the Pod's"
        );
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_user, Some(1000), "user value wins");
        assert_eq!(psc.fs_group, Some(2000));
        assert_eq!(psc.run_as_non_root, Some(true), "operator default kept");
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    }

    #[test]
    fn default_affinity_spreads_a_role_over_nodes() {
        let sts = stateful_set(&sample(), Role::Cache, "x");
        let aff = sts.spec.template.spec.unwrap().affinity.unwrap();
        let terms = aff
            .pod_anti_affinity
            .unwrap()
            .preferred_during_scheduling_ignored_during_execution
            .unwrap();
        assert_eq!(
            terms[0].pod_affinity_term.topology_key,
            "kubernetes.io/hostname"
        );
        let sel = terms[0]
            .pod_affinity_term
            .label_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap();
        assert_eq!(sel["app.kubernetes.io/component"], "cache");
    }

    #[test]
    fn serialized_statefulset_has_no_nulls_or_empty_selector() {
        // Server-side apply treats null as "delete this field"; empty atomic objects are errors.
        let json = serde_json::to_string(&stateful_set(&sample(), Role::Batcher, "x")).unwrap();
        assert!(!json.contains("null"), "{json}");
        assert!(!json.contains("\"selector\":{}"), "{json}");
    }
}
