//! Maintenance Jobs as a user starts them: the trigger annotation, then the SkyVault's
//! status naming the Job and its result.

use anyhow::{Result, bail};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};

use super::{ROLLOUT_TIMEOUT, SV_NAME};
use crate::wait_for;

/// Triggers a manual `kind` Job through its annotation and waits until the
/// SkyVault's status reports it succeeded; returns the Job's name.
pub async fn run_manual_job(
    svs: &Api<DynamicObject>,
    jobs: &Api<Job>,
    kind: &str,
    annotation: &str,
    trigger: &str,
) -> Result<(String, Value)> {
    svs.patch(
        SV_NAME,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {annotation: trigger}}})),
    )
    .await?;
    wait_for(
        &format!("the {kind} Job triggered by {trigger} to succeed"),
        ROLLOUT_TIMEOUT,
        || async {
            let sv = svs.get(SV_NAME).await?;
            let st = &sv.data["status"][kind];
            let run = &st["lastRun"];
            let job_name = run["jobName"].as_str().unwrap_or("");
            if run["manual"] != true || job_name.is_empty() {
                bail!("{kind} status: {st}");
            }
            // The Job this status names must be the one our trigger started.
            let job = jobs.get(job_name).await?;
            let started_by = job
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("skyvault.io/trigger"))
                .cloned();
            if started_by.as_deref() != Some(trigger) {
                bail!("{job_name} was started by {started_by:?}");
            }
            // The status records the value as handled (one value, one Job).
            if st["handledTrigger"] != trigger {
                bail!(
                    "{kind} handledTrigger is {}, not {trigger}",
                    st["handledTrigger"]
                );
            }
            match run["result"].as_str() {
                Some("Succeeded") => Ok((job_name.to_owned(), run.clone())),
                _ => bail!("{kind} status: {st}"),
            }
        },
    )
    .await
}
