//! What an image change must look like on a real node (decision 0005): the migrate Job ran
//! as a pod and completed before the first new batcher pod was created, and the roles took
//! the new image readers first (cache, then index, then batcher), each starting only once
//! every pod of the one before was ready on it.

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

use super::SV_NAME;

/// Creation time, and when it turned Ready, of a role's pods running `image`.
async fn role_pods(
    pods: &Api<Pod>,
    role: &str,
    image: &str,
) -> Result<Vec<(Timestamp, Timestamp)>> {
    let selector =
        format!("app.kubernetes.io/instance={SV_NAME},app.kubernetes.io/component={role}");
    let mut out = Vec::new();
    for p in pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        let name = p.metadata.name.clone().unwrap_or_default();
        let spec_image = p
            .spec
            .as_ref()
            .and_then(|s| s.containers.first()?.image.clone());
        if spec_image.as_deref() != Some(image) {
            continue;
        }
        let created = p
            .metadata
            .creation_timestamp
            .context("no creationTimestamp")?
            .0;
        let ready = p
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.status == "True")
            .and_then(|c| c.last_transition_time)
            .with_context(|| format!("pod {name} is not ready"))?
            .0;
        out.push((created, ready));
    }
    ensure!(!out.is_empty(), "no {role} pod runs {image}");
    Ok(out)
}

/// Checks the order of an image roll that has completed; returns a one-line summary.
/// Timestamps have whole seconds, so "after" allows the same second.
pub async fn check_upgrade_order(client: &kube::Client, ns: &str, image: &str) -> Result<String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let migrate = jobs
        .list(&ListParams::default().labels("skyvault.io/job-kind=migrate"))
        .await?
        .items
        .into_iter()
        .find(|j| {
            let ann = j.metadata.annotations.as_ref();
            ann.and_then(|a| a.get("skyvault.io/image"))
                .map(String::as_str)
                == Some(image)
        })
        .with_context(|| format!("no migrate Job for image {image}"))?;
    let name = migrate.metadata.name.clone().unwrap_or_default();
    let status = migrate.status.unwrap_or_default();
    ensure!(
        status.succeeded.unwrap_or(0) >= 1,
        "migrate Job {name} did not succeed: {status:?}"
    );
    let migrated = status.completion_time.context("no completionTime")?.0;

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut previous: Option<(&str, Timestamp)> = None;
    let mut summary = format!("migrate Job {name} completed {migrated}");
    for role in ["cache", "index", "batcher"] {
        let role_pods = role_pods(&pods, role, image).await?;
        let first_created = role_pods.iter().map(|(c, _)| *c).min().expect("non-empty");
        let last_ready = role_pods.iter().map(|(_, r)| *r).max().expect("non-empty");
        ensure!(
            first_created >= migrated,
            "{role} pod on {image} created {first_created}, before the migrate Job {name} completed {migrated}"
        );
        if let Some((before, ready)) = previous {
            ensure!(
                first_created >= ready,
                "{role} pod on {image} created {first_created}, before every {before} pod was ready ({ready})"
            );
        }
        summary.push_str(&format!("; {role} {first_created}..{last_ready}"));
        previous = Some((role, last_ready));
    }
    Ok(summary)
}
