//! The NetworkPolicies of one SkyVault (pure builders; docs/security.md):
//! - batcher and index: gRPC from `spec.networkPolicy.clients` (anyone when
//!   empty), HTTP (probes, metrics) from anyone;
//! - cache: gRPC from this SkyVault's index pods only, HTTP from anyone;
//! - Job pods (compaction, purge, migrate): no ingress at all;
//! - with `spec.networkPolicy.egress`: every pod may reach DNS, the other
//!   pods of this SkyVault and those peers (the database and the object
//!   store), nothing else.
//!
//! Enforcement is the CNI's: one that does not implement NetworkPolicy
//! (plain bridge, flannel) accepts them and enforces nothing.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec as PolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::collections::BTreeMap;

use crate::crd::SkyVault;
use crate::naming::{self, GRPC_PORT, HTTP_PORT, Role};

/// Components of the Job pods (see `jobs.rs` and `upgrade.rs`).
const JOB_COMPONENTS: [&str; 3] = ["compact", "purge", "migrate"];

/// Every policy the spec asks for (none when disabled).
pub fn network_policies(sv: &SkyVault) -> Vec<NetworkPolicy> {
    let spec = &sv.spec.network_policy;
    if !spec.enabled {
        return Vec::new();
    }
    let mut policies: Vec<NetworkPolicy> = Role::ALL
        .iter()
        .map(|role| {
            policy(
                sv,
                role.as_str(),
                role_selector(sv, *role),
                ingress(sv, *role),
                &[],
            )
        })
        .collect();
    policies.push(policy(
        sv,
        "jobs",
        jobs_selector(sv),
        Vec::new(),
        &["Ingress"],
    ));
    if !spec.egress.is_empty() {
        policies.push(egress_policy(sv));
    }
    policies
}

fn policy(
    sv: &SkyVault,
    suffix: &str,
    pods: LabelSelector,
    ingress: Vec<NetworkPolicyIngressRule>,
    extra_types: &[&str],
) -> NetworkPolicy {
    let mut types = vec!["Ingress".to_string()];
    types.extend(
        extra_types
            .iter()
            .filter(|t| **t != "Ingress")
            .map(|t| t.to_string()),
    );
    NetworkPolicy {
        metadata: naming::child_meta(sv, format!("{}-{suffix}", sv.name_any()), suffix),
        spec: Some(PolicySpec {
            pod_selector: Some(pods),
            ingress: Some(ingress),
            policy_types: Some(types),
            ..PolicySpec::default()
        }),
    }
}

fn ingress(sv: &SkyVault, role: Role) -> Vec<NetworkPolicyIngressRule> {
    let grpc_from = match role {
        Role::Cache => Some(vec![NetworkPolicyPeer {
            pod_selector: Some(role_selector(sv, Role::Index)),
            ..NetworkPolicyPeer::default()
        }]),
        _ => {
            let clients = &sv.spec.network_policy.clients;
            (!clients.is_empty()).then(|| clients.clone())
        }
    };
    vec![
        NetworkPolicyIngressRule {
            from: grpc_from,
            ports: Some(vec![tcp(GRPC_PORT)]),
        },
        // Probes come from the kubelet (allowed by most CNIs anyway), metrics from Prometheus.
        NetworkPolicyIngressRule {
            from: None,
            ports: Some(vec![tcp(HTTP_PORT)]),
        },
    ]
}

fn egress_policy(sv: &SkyVault) -> NetworkPolicy {
    let dns = NetworkPolicyEgressRule {
        to: None,
        ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
    };
    let siblings = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            pod_selector: Some(instance_selector(sv)),
            ..NetworkPolicyPeer::default()
        }]),
        ports: None,
    };
    let services = NetworkPolicyEgressRule {
        to: Some(sv.spec.network_policy.egress.clone()),
        ports: None,
    };
    let mut p = policy(sv, "egress", instance_selector(sv), Vec::new(), &[]);
    let spec = p.spec.as_mut().expect("built with a spec");
    // Egress only: ingress stays with the per-role policies.
    spec.ingress = None;
    spec.policy_types = Some(vec!["Egress".into()]);
    spec.egress = Some(vec![dns, siblings, services]);
    p
}

fn role_selector(sv: &SkyVault, role: Role) -> LabelSelector {
    LabelSelector {
        match_labels: Some(naming::selector_labels(sv, role.as_str())),
        match_expressions: None,
    }
}

fn instance_selector(sv: &SkyVault) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "skyvault".to_string()),
            ("app.kubernetes.io/instance".to_string(), sv.name_any()),
        ])),
        match_expressions: None,
    }
}

fn jobs_selector(sv: &SkyVault) -> LabelSelector {
    let mut selector = instance_selector(sv);
    selector.match_expressions = Some(vec![LabelSelectorRequirement {
        key: "app.kubernetes.io/component".into(),
        operator: "In".into(),
        values: Some(JOB_COMPONENTS.iter().map(|c| c.to_string()).collect()),
    }]);
    selector
}

fn tcp(n: i32) -> NetworkPolicyPort {
    port(n, "TCP")
}

fn port(n: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(n)),
        protocol: Some(protocol.into()),
        end_port: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::sample;

    fn by_name(policies: &[NetworkPolicy], name: &str) -> PolicySpec {
        policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no policy {name}"))
            .spec
            .clone()
            .unwrap()
    }

    #[test]
    fn only_the_indexes_reach_the_caches_grpc_port() {
        let policies = network_policies(&sample());
        let cache = by_name(&policies, "vault-cache");
        let grpc = &cache.ingress.as_ref().unwrap()[0];
        assert_eq!(
            grpc.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(GRPC_PORT))
        );
        let from = grpc.from.as_ref().expect("restricted");
        let labels = from[0]
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap();
        assert_eq!(labels["app.kubernetes.io/component"], "index");
        assert_eq!(labels["app.kubernetes.io/instance"], "vault");
    }

    #[test]
    fn clients_are_whoever_the_spec_names_and_job_pods_take_no_traffic() {
        let mut sv = sample();
        let open = network_policies(&sv);
        assert!(
            by_name(&open, "vault-batcher").ingress.unwrap()[0]
                .from
                .is_none(),
            "anyone"
        );
        let jobs = by_name(&open, "vault-jobs");
        assert_eq!(jobs.ingress, Some(vec![]), "deny all ingress");
        assert!(
            open.iter()
                .all(|p| p.metadata.name.as_deref() != Some("vault-egress"))
        );

        let clients = NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("team".into(), "apps".into())])),
                match_expressions: None,
            }),
            ..NetworkPolicyPeer::default()
        };
        sv.spec.network_policy.clients = vec![clients.clone()];
        let restricted = network_policies(&sv);
        for role in ["vault-batcher", "vault-index"] {
            let grpc = &by_name(&restricted, role).ingress.unwrap()[0];
            assert_eq!(grpc.from.as_deref(), Some(&[clients.clone()][..]), "{role}");
        }
    }

    #[test]
    fn egress_allows_dns_siblings_and_the_named_services_only() {
        let mut sv = sample();
        let db = NetworkPolicyPeer {
            ip_block: Some(k8s_openapi::api::networking::v1::IPBlock {
                cidr: "10.1.2.3/32".into(),
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        };
        sv.spec.network_policy.egress = vec![db.clone()];
        let egress = by_name(&network_policies(&sv), "vault-egress");
        assert_eq!(egress.policy_types, Some(vec!["Egress".to_string()]));
        let rules = egress.egress.unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[2].to.as_deref(), Some(&[db][..]));
    }

    #[test]
    fn disabled_means_none() {
        let mut sv = sample();
        sv.spec.network_policy.enabled = false;
        assert!(network_policies(&sv).is_empty());
    }
}
