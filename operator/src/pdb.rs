//! PodDisruptionBudgets: at most `maxUnavailable` Pods of a role drained at once.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::{DisruptionBudgetSpec, SkyVault};
use crate::naming::{self, Role};

fn budget_spec(sv: &SkyVault, role: Role) -> &DisruptionBudgetSpec {
    match role {
        Role::Batcher => &sv.spec.batcher.disruption_budget,
        Role::Index => &sv.spec.index.disruption_budget,
        Role::Cache => &sv.spec.cache.disruption_budget,
    }
}

/// The PDB `NAME-ROLE`, or None when disabled (the pruner then deletes an existing one).
pub fn pod_disruption_budget(sv: &SkyVault, role: Role) -> Option<PodDisruptionBudget> {
    let budget = budget_spec(sv, role);
    if !budget.enabled {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: naming::child_meta(sv, naming::role_name(sv, role), role.as_str()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(budget.max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(naming::selector_labels(sv, role.as_str())),
                match_expressions: None,
            }),
            // Let a drain evict Pods that never became ready (a broken rollout must not block it).
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

/// The PDBs the spec asks for.
pub fn pod_disruption_budgets(sv: &SkyVault) -> Vec<PodDisruptionBudget> {
    Role::ALL
        .iter()
        .filter_map(|r| pod_disruption_budget(sv, *r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::sample;

    #[test]
    fn one_budget_per_role_by_default() {
        let pdbs = pod_disruption_budgets(&sample());
        let names: Vec<_> = pdbs
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, vec!["vault-batcher", "vault-index", "vault-cache"]);
        let spec = pdbs[2].spec.as_ref().unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert!(spec.min_available.is_none(), "never both");
        let sel = spec
            .selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap();
        assert_eq!(sel["app.kubernetes.io/component"], "cache");
    }

    #[test]
    fn disabled_budget_is_not_built() {
        let mut sv = sample();
        sv.spec.index.disruption_budget.enabled = false;
        sv.spec.cache.disruption_budget.max_unavailable = 2;
        assert!(pod_disruption_budget(&sv, Role::Index).is_none());
        let cache = pod_disruption_budget(&sv, Role::Cache).unwrap();
        assert_eq!(
            cache.spec.unwrap().max_unavailable,
            Some(IntOrString::Int(2))
        );
        assert_eq!(pod_disruption_budgets(&sv).len(), 2);
    }

    #[test]
    fn serialized_budget_has_no_null() {
        let json = serde_json::to_string(&pod_disruption_budgets(&sample())).unwrap();
        assert!(!json.contains("null"), "{json}");
    }
}
