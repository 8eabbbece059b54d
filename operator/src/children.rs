//! The full set of children a spec asks for, built in one pure step, and the API calls that
//! apply them (server-side apply) and delete the ones no longer asked for.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::configmap;
use crate::crd::SkyVault;
use crate::naming::{self, FIELD_MANAGER, Role};
use crate::network_policy;
use crate::pdb;
use crate::service;
use crate::statefulset;

/// Everything desired for one SkyVault except the Jobs.
#[derive(Clone, Debug)]
pub struct Children {
    pub config_map: ConfigMap,
    pub config_checksum: String,
    pub services: Vec<Service>,
    pub stateful_sets: Vec<(Role, StatefulSet)>,
    pub pdbs: Vec<PodDisruptionBudget>,
    pub network_policies: Vec<NetworkPolicy>,
}

/// Build every child from the spec. Pure.
pub fn build(sv: &SkyVault) -> Children {
    build_with_secrets(sv, "")
}

/// Like [`build`], with a digest of the referenced Secrets' values
/// ([`crate::validate::secrets_digest`]) folded into the config checksum, so a changed
/// database URL or S3 key rolls the Pods like a changed ConfigMap does.
pub fn build_with_secrets(sv: &SkyVault, secrets_digest: &str) -> Children {
    let config_map = configmap::config_map(sv);
    let mut checksummed = config_map.data.clone().expect("built with data");
    if !secrets_digest.is_empty() {
        // Not a valid env name, so it cannot collide with a ConfigMap key.
        checksummed.insert("secrets/digest".into(), secrets_digest.into());
    }
    let config_checksum = configmap::checksum(&checksummed);
    let stateful_sets = Role::ALL
        .iter()
        .map(|r| (*r, statefulset::stateful_set(sv, *r, &config_checksum)))
        .collect();
    Children {
        config_map,
        config_checksum,
        services: service::services(sv),
        stateful_sets,
        pdbs: pdb::pod_disruption_budgets(sv),
        network_policies: network_policy::network_policies(sv),
    }
}

fn names<K: ResourceExt>(objs: impl IntoIterator<Item = K>) -> BTreeSet<String> {
    objs.into_iter().map(|o| o.name_any()).collect()
}

/// Names of the children of each kind: what the pruner keeps.
impl Children {
    pub fn service_names(&self) -> BTreeSet<String> {
        names(self.services.iter().cloned())
    }
    pub fn stateful_set_names(&self) -> BTreeSet<String> {
        names(self.stateful_sets.iter().map(|(_, s)| s.clone()))
    }
    pub fn pdb_names(&self) -> BTreeSet<String> {
        names(self.pdbs.iter().cloned())
    }
    pub fn network_policy_names(&self) -> BTreeSet<String> {
        names(self.network_policies.iter().cloned())
    }
    pub fn config_map_names(&self) -> BTreeSet<String> {
        names([self.config_map.clone()])
    }
}

/// Server-side apply of one namespaced object under the operator's field manager. `force`
/// takes over fields another manager (e.g. a `kubectl edit`) changed: the spec is the truth.
pub async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&obj.name_any(), &params, &Patch::Apply(obj))
        .await
}

/// Whether the SkyVault is the controlling owner of `obj`.
pub fn owned_by(obj: &impl Resource, sv: &SkyVault) -> bool {
    let uid = sv.meta().uid.as_deref();
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

/// Delete this SkyVault's children of kind K whose names are not in `keep`; returns their names.
pub async fn prune<K>(
    client: &Client,
    sv: &SkyVault,
    ns: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let existing = api
        .list(&ListParams::default().labels(&naming::instance_selector(sv)))
        .await?;
    let mut deleted = Vec::new();
    for obj in existing
        .items
        .iter()
        .filter(|o| owned_by(*o, sv) && !keep.contains(&o.name_any()))
    {
        delete_quietly(&api, &obj.name_any()).await?;
        deleted.push(obj.name_any());
    }
    Ok(deleted)
}

/// Delete in the background (dependents such as a Job's Pods go too); gone already is fine.
pub async fn delete_quietly<K>(api: &Api<K>, name: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A 404 from the API server.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A 409 AlreadyExists / Conflict from the API server.
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::sample;

    #[test]
    fn builds_every_child_with_the_same_checksum() {
        let c = build(&sample());
        assert_eq!(
            c.config_map_names(),
            BTreeSet::from(["vault-config".to_string()])
        );
        assert_eq!(c.stateful_set_names().len(), 3);
        assert_eq!(c.service_names().len(), 5);
        assert_eq!(c.pdb_names().len(), 3);
        for (_, sts) in &c.stateful_sets {
            let ann = sts
                .spec
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap();
            assert_eq!(ann[naming::CONFIG_CHECKSUM_ANNOTATION], c.config_checksum);
        }
    }

    #[test]
    fn every_child_is_owned_by_the_skyvault() {
        let sv = sample();
        let c = build(&sv);
        assert!(owned_by(&c.config_map, &sv));
        assert!(c.services.iter().all(|s| owned_by(s, &sv)));
        assert!(c.stateful_sets.iter().all(|(_, s)| owned_by(s, &sv)));
        assert!(c.pdbs.iter().all(|p| owned_by(p, &sv)));
        let mut other = sv.clone();
        other.metadata.uid = Some("another".into());
        assert!(!owned_by(&c.config_map, &other));
    }

    #[test]
    fn disabling_a_budget_drops_it_from_the_keep_set() {
        let mut sv = sample();
        sv.spec.batcher.disruption_budget.enabled = false;
        let keep = build(&sv).pdb_names();
        assert!(!keep.contains("vault-batcher"));
        assert!(keep.contains("vault-cache"));
    }

    #[test]
    fn apply_bodies_carry_api_version_and_kind() {
        // Server-side apply rejects bodies without them.
        let c = build(&sample());
        let sts = serde_json::to_value(&c.stateful_sets[0].1).unwrap();
        assert_eq!(
            (sts["apiVersion"].as_str(), sts["kind"].as_str()),
            (Some("apps/v1"), Some("StatefulSet"))
        );
        let pdb = serde_json::to_value(&c.pdbs[0]).unwrap();
        assert_eq!(pdb["apiVersion"], "policy/v1");
        let cm = serde_json::to_value(&c.config_map).unwrap();
        assert_eq!(cm["kind"], "ConfigMap");
    }
}
