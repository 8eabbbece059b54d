//! Image upgrades: a migrate Job gates every StatefulSet, a failed one keeps the old Pod
//! templates and is retried, then the roles take the new image one at a time, readers
//! first (decision 0005). No kubelet here: the test writes the Job and StatefulSet statuses.

use super::*;
use k8s_openapi::api::batch::v1::Job;

const OLD_IMAGE: &str = "skyvault:e2e";
const NEW_IMAGE: &str = "skyvault:e2e-next";

fn sts_image(sts: &StatefulSet) -> Option<&str> {
    let pod = sts.spec.template.spec.as_ref()?;
    pod.containers.first()?.image.as_deref()
}

/// The image each role's StatefulSet template has now.
async fn images(env: &OperatorEnv, sv: &str) -> Result<Vec<(String, String)>> {
    let api: Api<StatefulSet> = env.api();
    let mut out = Vec::new();
    for role in ROLES {
        let sts = api.get(&format!("{sv}-{role}")).await?;
        out.push((
            role.to_owned(),
            sts_image(&sts).unwrap_or_default().to_owned(),
        ));
    }
    Ok(out)
}

/// Fails unless exactly `new_roles` have the new image and the others the old one.
async fn expect_images(env: &OperatorEnv, sv: &str, new_roles: &[&str]) -> Result<()> {
    for (role, image) in images(env, sv).await? {
        let want = if new_roles.contains(&role.as_str()) {
            NEW_IMAGE
        } else {
            OLD_IMAGE
        };
        ensure!(image == want, "{role} has image {image}, want {want}");
    }
    Ok(())
}

async fn wait_image(env: &OperatorEnv, name: &str) -> Result<StatefulSet> {
    wait_statefulset(env, name, "the new image", |s| {
        ensure!(sts_image(s) == Some(NEW_IMAGE), "image {:?}", sts_image(s));
        Ok(())
    })
    .await
}

fn check_migrate_job(job: &Job) -> Result<()> {
    ensure!(job_args(job) == ["migrate"], "command {:?}", job_args(job));
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .context("no pod spec")?;
    let c = &pod.containers[0];
    ensure!(c.image.as_deref() == Some(NEW_IMAGE), "image {:?}", c.image);
    let env: Vec<_> = c.env.iter().flatten().collect();
    ensure!(
        env.len() == 1 && env[0].name == "SKYVAULT_METADATA_URL",
        "env {env:?}"
    );
    let from = env[0]
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref());
    ensure!(
        from.is_some_and(|k| k.name == "skyvault-db"),
        "the database URL does not come from the Secret: {from:?}"
    );
    Ok(())
}

#[tokio::test]
async fn image_upgrade_waits_for_its_migration_and_rolls_readers_first() -> Result<()> {
    let mut env = OperatorEnv::new("op-upgrade").await?;
    env.start_operator("op-a", true).await?;
    let mut sv = small_skyvault("up");
    let uid = env.apply_skyvault(&sv).await?.metadata.uid.unwrap();
    for role in ROLES {
        wait_statefulset(&env, &format!("up-{role}"), "created", |_| Ok(())).await?;
    }
    set_all_ready(&env, "up").await?;
    wait_condition(&env, "up", "Ready", "True", None).await?;
    ensure!(
        jobs_of_kind(&env, "migrate").await?.is_empty(),
        "a new store's Pods migrate on start: no Job"
    );

    // A new image: a migrate Job, and every StatefulSet keeps its Pods.
    sv["spec"]["image"] = json!(NEW_IMAGE);
    env.apply_skyvault(&sv).await?;
    let first = wait_new_job(&env, "migrate", &[], T).await?;
    let first_name = first.metadata.name.clone().unwrap();
    check_migrate_job(&first)?;
    check_owner(
        first.metadata.owner_references.as_ref(),
        &uid,
        "migrate Job",
    )?;
    let s = wait_condition(&env, "up", "Progressing", "True", Some("MigrationRunning")).await?;
    let msg = condition(&s, "Progressing").unwrap().2;
    ensure!(msg.contains(&first_name), "Progressing: {msg}");
    expect_images(&env, "up", &[]).await?;

    // It fails: Degraded names the Job, a Warning Event, the old templates stay.
    env.finish_job(&first_name, false).await?;
    let s = wait_condition(&env, "up", "Degraded", "True", Some("MigrationFailed")).await?;
    let msg = condition(&s, "Degraded").unwrap().2;
    ensure!(msg.contains(&first_name), "Degraded: {msg}");
    let event = warning_event(&env, "up", "MigrationFailed").await?;
    let note = event.note.unwrap_or_default();
    ensure!(note.contains(&first_name), "Event: {note}");
    expect_images(&env, "up", &[]).await?;
    ensure!(
        msg.contains("compaction and purge Jobs run it too"),
        "Degraded: {msg}"
    );

    // Meanwhile the old batchers keep writing, so compaction keeps running, with their
    // image (issue 23): a Job started now runs the old one.
    env.merge_patch_skyvault(
        "up",
        json!({"metadata": {"annotations": {"skyvault.io/trigger-compaction": "mid-upgrade"}}}),
    )
    .await?;
    let compact = wait_new_job(&env, "compact", &[], T).await?;
    let pod = compact.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let image = pod.and_then(|p| p.containers[0].image.as_deref());
    ensure!(
        image == Some(OLD_IMAGE),
        "compaction Job during a failed migration runs {image:?}"
    );

    // The retry after the backoff (30 s after the failure) succeeds.
    let retry = wait_new_job(&env, "migrate", &[&first_name], Duration::from_secs(120)).await?;
    let retry_name = retry.metadata.name.clone().unwrap();
    ensure!(
        retry_name.ends_with("-2"),
        "second attempt named {retry_name}"
    );
    env.finish_job(&retry_name, true).await?;

    // Readers first, each after the one before has rolled out.
    wait_image(&env, "up-cache").await?;
    expect_images(&env, "up", &["cache"]).await?;
    env.set_statefulset_ready("up-cache", 1).await?;
    wait_image(&env, "up-index").await?;
    expect_images(&env, "up", &["cache", "index"]).await?;
    env.set_statefulset_ready("up-index", 1).await?;
    wait_image(&env, "up-batcher").await?;
    env.set_statefulset_ready("up-batcher", 1).await?;
    wait_condition(&env, "up", "Progressing", "False", Some("RolloutComplete")).await?;
    wait_condition(&env, "up", "Degraded", "False", None).await?;
    wait_for("the failed attempt to be deleted", T, || async {
        let names: Vec<_> = (jobs_of_kind(&env, "migrate").await?.into_iter())
            .filter_map(|j| j.metadata.name)
            .collect();
        ensure!(names == [retry_name.clone()], "migrate Jobs {names:?}");
        Ok(())
    })
    .await?;
    env.assert_no_rbac_denials()?;
    Ok(())
}
