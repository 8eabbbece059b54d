//! Waiting for rollouts the way a user reads them: `kubectl get sv` Ready at the current
//! generation, every StatefulSet rolled to its latest revision, pods replaced.

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;

use super::{ROLLOUT_TIMEOUT, SV_NAME};
use crate::wait_for;

/// `(status, reason, message)` of a condition of the SkyVault.
pub fn condition(sv: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    sv.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_owned(),
                c["reason"].as_str().unwrap_or("").to_owned(),
                c["message"].as_str().unwrap_or("").to_owned(),
            )
        })
}

/// Ready=True at the current generation with every role's pods ready and
/// updated (what `kubectl get sv` shows as healthy).
pub async fn wait_ready(svs: &Api<DynamicObject>, what: &str) -> Result<DynamicObject> {
    wait_for(what, ROLLOUT_TIMEOUT, || async {
        let sv = svs.get(SV_NAME).await?;
        let generation = sv.metadata.generation.unwrap_or(0);
        let observed = sv.data["status"]["observedGeneration"]
            .as_i64()
            .unwrap_or(-1);
        if observed != generation {
            bail!("observedGeneration {observed} != generation {generation}");
        }
        for role in ["batcher", "index", "cache"] {
            let r = &sv.data["status"][role];
            let (desired, ready, updated) = (
                r["desired"].as_i64(),
                r["ready"].as_i64(),
                r["updated"].as_i64(),
            );
            if desired.is_none() || desired != ready || desired != updated {
                bail!("{role}: {r}");
            }
        }
        match condition(&sv, "Ready") {
            Some((s, _, _)) if s == "True" => Ok(sv),
            c => bail!("Ready condition {c:?}"),
        }
    })
    .await
}

/// Every StatefulSet has seen its latest template and rolled all its pods to it.
pub async fn wait_rolled(stss: &Api<StatefulSet>, what: &str) -> Result<()> {
    wait_for(what, ROLLOUT_TIMEOUT, || async {
        for sts in stss.list(&ListParams::default()).await?.items {
            let name = sts.metadata.name.clone().unwrap_or_default();
            let generation = sts.metadata.generation;
            let want = sts.spec.replicas.unwrap_or(1);
            let st = sts.status.unwrap_or_default();
            let rolled = st.observed_generation == generation
                && st.update_revision.is_some()
                && st.current_revision == st.update_revision
                && st.updated_replicas == Some(want)
                && st.ready_replicas == Some(want);
            if !rolled {
                bail!(
                    "{name}: observed {:?}/{generation:?}, revisions {:?} -> {:?}, updated {:?}, ready {:?} of {want}",
                    st.observed_generation,
                    st.current_revision,
                    st.update_revision,
                    st.updated_replicas,
                    st.ready_replicas
                );
            }
        }
        Ok(())
    })
    .await
}

/// The pod's UID (to tell a replacement from the original).
pub async fn pod_uid(pods: &Api<Pod>, name: &str) -> Result<String> {
    pods.get(name)
        .await?
        .metadata
        .uid
        .with_context(|| format!("pod {name} has no uid"))
}
