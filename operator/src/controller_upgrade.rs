//! The controller's edge for image upgrades: reads the StatefulSets and migrate Jobs,
//! carries out [`crate::upgrade`]'s plan (Job creates and deletes, Events) and hands the
//! StatefulSets the roll order allows back to the reconcile.

use super::*;
use crate::upgrade::{self, MigrationPlan};

/// Where an image upgrade stands after this reconcile's Job calls.
pub(super) struct UpgradeStep {
    pub state: Migration,
    pub requeue_after: Option<Duration>,
    pub condition: Option<UpgradeCondition>,
}

/// Read the StatefulSets and migrate Jobs, create or delete migrate Jobs, and replace the
/// desired StatefulSets by the ones the roll order allows now (held roles keep their
/// stored Pod template).
pub(super) async fn plan_upgrade(
    sv: &SkyVault,
    ctx: &Context,
    ns: &str,
    desired: &mut Children,
    now: Timestamp,
) -> Result<UpgradeStep> {
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let mut stored = Vec::new();
    for role in Role::ALL {
        if let Some(s) = sts_api.get_opt(&naming::role_name(sv, role)).await? {
            stored.push((role, s));
        }
    }
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let params = kube::api::ListParams::default().labels(&upgrade::selector(sv));
    let jobs: Vec<Job> = (jobs_api.list(&params).await?.items.into_iter())
        .filter(|j| children::owned_by(j, sv))
        .collect();
    let needed = upgrade::needed(sv, &stored);
    let plan = upgrade::plan_migration(sv, needed, &jobs, now, &desired.config_checksum);
    carry_out_migration(sv, ctx, &jobs_api, &plan).await?;
    let roll = upgrade::plan_roll(&desired.stateful_sets, &stored, &plan.state);
    for role in &roll.released {
        let after = match &plan.state {
            Migration::Succeeded { job } => format!(" (schema migrated by Job {job})"),
            _ => String::new(),
        };
        let note = format!(
            "rolling {} to image {}{after}",
            role.as_str(),
            sv.spec.image
        );
        info!(skyvault = %sv.name_any(), %note, "upgrade");
        publish(ctx, sv, EventType::Normal, "RollStarted", "Upgrade", note).await;
    }
    let condition = upgrade::condition(sv, &plan.state, &roll);
    desired.stateful_sets = roll.stateful_sets;
    Ok(UpgradeStep {
        state: plan.state,
        requeue_after: plan.requeue_after,
        condition,
    })
}

/// Create the next migrate Job, delete old ones, and tell the story in Events (a failure
/// once per Job).
async fn carry_out_migration(
    sv: &SkyVault,
    ctx: &Context,
    api: &Api<Job>,
    plan: &MigrationPlan,
) -> Result<()> {
    if let Some(job) = &plan.create {
        create_job(api, job).await?;
        let name = job.name_any();
        let note = format!(
            "created Job {name} to migrate the schema for image {}; the StatefulSets keep \
             their Pods until it succeeds",
            sv.spec.image
        );
        publish(
            ctx,
            sv,
            EventType::Normal,
            "MigrationStarted",
            "Upgrade",
            note,
        )
        .await;
    }
    for name in &plan.delete {
        children::delete_quietly(api, name).await?;
    }
    if let Migration::Failed { job, message, .. } = &plan.state {
        let reported = previous_conditions(sv).iter().any(|c| {
            c.type_ == status::DEGRADED
                && c.reason == reason::MIGRATION_FAILED
                && c.message.contains(job.as_str())
        });
        if !reported {
            warn!(skyvault = %sv.name_any(), %job, %message, "schema migration failed; Pods stay on the old image");
            let note =
                format!("schema migration Job {job} failed: {message}; old Pods keep serving");
            publish(
                ctx,
                sv,
                EventType::Warning,
                "MigrationFailed",
                "Upgrade",
                note,
            )
            .await;
        }
    }
    Ok(())
}
