//! Status and conditions: following StatefulSets and the generation; specs only the
//! operator can judge.

use super::*;

/// Conditions, ready counts and observedGeneration follow the StatefulSet
/// status the test writes and the spec generation.
#[tokio::test]
async fn status_follows_statefulsets_and_generation() -> Result<()> {
    let mut env = OperatorEnv::new("op-status").await?;
    env.start_operator("op-a", true).await?;
    let mut sv = small_skyvault("st");
    sv["spec"]["cache"] = json!({ "replicas": 2 });
    env.apply_skyvault(&sv).await?;
    for role in ROLES {
        wait_statefulset(&env, &format!("st-{role}"), "created", |_| Ok(())).await?;
    }
    let obj = wait_condition(&env, "st", "Ready", "False", Some("ReplicasNotReady")).await?;
    let generation = obj.metadata.generation.unwrap();
    ensure!(
        obj.data["status"]["observedGeneration"] == generation,
        "observedGeneration {}",
        obj.data["status"]["observedGeneration"]
    );
    ensure!(
        condition(&obj, "Ready").unwrap().3 == generation,
        "Ready's observedGeneration"
    );
    wait_condition(&env, "st", "Degraded", "False", None).await?;

    // One role ready, the others not.
    env.set_statefulset_ready("st-batcher", 1).await?;
    env.set_statefulset_ready("st-cache", 1).await?;
    wait_for("status counts", T, || async {
        let s = env.get_skyvault("st").await?;
        let st = &s.data["status"];
        ensure!(
            st["batcher"]["ready"] == 1 && st["batcher"]["desired"] == 1,
            "batcher {}",
            st["batcher"]
        );
        ensure!(
            st["cache"]["ready"] == 1 && st["cache"]["desired"] == 2,
            "cache {}",
            st["cache"]
        );
        ensure!(
            st["cache"]["summary"] == "1/2",
            "cache summary {}",
            st["cache"]["summary"]
        );
        ensure!(
            condition(&s, "Ready").is_some_and(|c| c.0 == "False"),
            "Ready must stay False"
        );
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;

    set_all_ready(&env, "st").await?;
    wait_condition(&env, "st", "Ready", "True", Some("AllReplicasReady")).await?;
    wait_condition(&env, "st", "Progressing", "False", Some("RolloutComplete")).await?;

    // A spec change bumps the generation; status follows it.
    sv["spec"]["cache"] = json!({ "replicas": 3 });
    let updated = env.apply_skyvault(&sv).await?;
    let new_gen = updated.metadata.generation.unwrap();
    ensure!(new_gen > generation, "generation did not increase");
    wait_for("observedGeneration to follow the spec", T, || async {
        let s = env.get_skyvault("st").await?;
        ensure!(
            s.data["status"]["observedGeneration"] == new_gen,
            "observedGeneration {}",
            s.data["status"]["observedGeneration"]
        );
        ensure!(
            s.data["status"]["cache"]["desired"] == 3,
            "cache {}",
            s.data["status"]["cache"]
        );
        Ok(())
    })
    .await
    .with_context(|| env.operator_logs())?;
    wait_condition(&env, "st", "Ready", "False", Some("ReplicasNotReady")).await?;
    wait_condition(&env, "st", "Progressing", "True", Some("RollingOut")).await?;
    env.set_statefulset_ready("st-cache", 3).await?;
    wait_condition(&env, "st", "Ready", "True", Some("AllReplicasReady")).await?;
    // Status writes by the operator must not bump the generation.
    let s = env.get_skyvault("st").await?;
    ensure!(
        s.metadata.generation == Some(new_gen),
        "status writes changed the generation"
    );
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// Specs only the operator can judge: Degraded naming the field, a Warning
/// Event, and nothing applied; fixing the spec recovers.
#[tokio::test]
async fn invalid_specs_degrade_with_warning_events() -> Result<()> {
    let mut env = OperatorEnv::new("op-invalid").await?;
    env.start_operator("op-a", true).await?;

    // Missing Secret.
    let mut missing = small_skyvault("nosecret");
    missing["spec"]["database"]["urlSecret"]["name"] = json!("does-not-exist");
    env.apply_skyvault(&missing).await?;
    let s = wait_condition(&env, "nosecret", "Degraded", "True", Some("SecretNotFound")).await?;
    let msg = condition(&s, "Degraded").unwrap().2;
    ensure!(
        msg.contains("spec.database.urlSecret"),
        "Degraded message does not name the field: {msg}"
    );
    warning_event(&env, "nosecret", "SecretNotFound").await?;
    ensure!(
        env.api::<StatefulSet>()
            .get_opt("nosecret-batcher")
            .await?
            .is_none(),
        "children were applied for a spec with a missing Secret"
    );

    // A cron expression that passes the schema's shape check but is not valid.
    let mut bad_cron = small_skyvault("badcron");
    bad_cron["spec"]["compaction"]["schedule"] = json!("61 * * * *");
    env.apply_skyvault(&bad_cron).await?;
    let s = wait_condition(&env, "badcron", "Degraded", "True", Some("InvalidSpec")).await?;
    let msg = condition(&s, "Degraded").unwrap().2;
    ensure!(
        msg.contains("spec.compaction.schedule"),
        "message does not name the field: {msg}"
    );
    warning_event(&env, "badcron", "InvalidSpec").await?;

    // A memory limit not above the cache capacity.
    let mut small_mem = small_skyvault("smallmem");
    small_mem["spec"]["cache"] = json!({
        "cacheCapacityBytes": 1073741824,
        "resources": { "limits": { "memory": "512Mi" } }
    });
    env.apply_skyvault(&small_mem).await?;
    let s = wait_condition(&env, "smallmem", "Degraded", "True", Some("InvalidSpec")).await?;
    let msg = condition(&s, "Degraded").unwrap().2;
    ensure!(
        msg.contains("spec.cache"),
        "message does not name the field: {msg}"
    );

    // Fixing the cron recovers.
    bad_cron["spec"]["compaction"]["schedule"] = json!("0 0 1 1 *");
    env.apply_skyvault(&bad_cron).await?;
    wait_condition(&env, "badcron", "Degraded", "False", None).await?;
    wait_statefulset(&env, "badcron-batcher", "created after the fix", |_| Ok(())).await?;
    env.assert_no_rbac_denials()?;
    Ok(())
}
