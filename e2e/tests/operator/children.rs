//! The children a SkyVault becomes: created with owner references and printer columns,
//! changed by spec changes, garbage-collected with the SkyVault.

use super::*;

/// Applying the example creates every child with the expected fields and a
/// controller owner reference; `kubectl get sv` columns follow status.
#[tokio::test]
async fn example_creates_owned_children_and_printer_columns() -> Result<()> {
    let mut env = OperatorEnv::new("op-children").await?;
    env.start_operator("op-a", true).await?;
    let example = example_skyvault()?;
    let name = example["metadata"]["name"].as_str().unwrap().to_owned();
    let sv = env.apply_skyvault(&example).await?;
    let uid = sv.metadata.uid.clone().unwrap();
    let spec = &example["spec"];

    for role in ROLES {
        let want = spec[role]["replicas"].as_i64().unwrap_or(1) as i32;
        let sts = wait_statefulset(&env, &format!("{name}-{role}"), "created", |_| Ok(())).await?;
        check_owner(
            sts.metadata.owner_references.as_ref(),
            &uid,
            &format!("StatefulSet {role}"),
        )?;
        ensure!(
            replicas(&sts) == want,
            "{role}: replicas {} want {want}",
            replicas(&sts)
        );
        let labels = sts.metadata.labels.clone().unwrap_or_default();
        ensure!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some("skyvault-operator"),
            "{role}: labels {labels:?}"
        );
        ensure!(
            template_annotation(&sts, "skyvault.io/config-checksum").is_some_and(|c| !c.is_empty()),
            "{role}: no config checksum annotation on the Pod template"
        );
        let pod = sts.spec.template.spec.as_ref().context("no pod spec")?;
        let pod_labels = sts
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        ensure!(
            pod_labels.get("team").map(String::as_str) == Some("storage"),
            "{role}: pod.labels not applied: {pod_labels:?}"
        );
        ensure!(
            pod.node_selector
                .as_ref()
                .and_then(|n| n.get("kubernetes.io/os"))
                .map(String::as_str)
                == Some("linux"),
            "{role}: nodeSelector not applied"
        );
        let c = pod.containers.first().context("no container")?;
        ensure!(
            c.image.as_deref() == spec["image"].as_str(),
            "{role}: image {:?}",
            c.image
        );
        let cmd: Vec<String> = c
            .command
            .iter()
            .flatten()
            .chain(c.args.iter().flatten())
            .cloned()
            .collect();
        ensure!(
            cmd.iter().any(|a| a == role),
            "{role}: command {cmd:?} does not run the role"
        );
        let sc = c
            .security_context
            .as_ref()
            .context("no container securityContext")?;
        ensure!(
            sc.read_only_root_filesystem == Some(true),
            "{role}: root filesystem not read-only"
        );
        ensure!(
            sc.allow_privilege_escalation == Some(false),
            "{role}: privilege escalation allowed"
        );
        let non_root = sc.run_as_non_root.or_else(|| {
            pod.security_context
                .as_ref()
                .and_then(|p| p.run_as_non_root)
        });
        ensure!(non_root == Some(true), "{role}: not runAsNonRoot");
        ensure!(
            c.readiness_probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .is_some_and(|h| h.path.as_deref() == Some("/readyz")),
            "{role}: readiness probe is not GET /readyz"
        );
        let env_refs: Vec<String> = c
            .env
            .iter()
            .flatten()
            .filter_map(|e| {
                e.value_from
                    .as_ref()?
                    .secret_key_ref
                    .as_ref()
                    .map(|s| format!("{}/{}", s.name, s.key))
            })
            .collect();
        if role == "batcher" || role == "index" {
            ensure!(
                env_refs.iter().any(|r| r == "skyvault-db/url"),
                "{role}: database Secret not referenced: {env_refs:?}"
            );
        }

        let headless: Service = env
            .api()
            .get(&format!("{name}-{role}-headless"))
            .await
            .with_context(|| format!("headless Service for {role}"))?;
        check_owner(
            headless.metadata.owner_references.as_ref(),
            &uid,
            &format!("headless Service {role}"),
        )?;
        ensure!(
            headless.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None"),
            "{role}: headless Service has a cluster IP"
        );

        // Applied after every StatefulSet in the same reconcile: on a loaded
        // machine the test can see the StatefulSets first.
        let pdb_name = format!("{name}-{role}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let pdb: PodDisruptionBudget = loop {
            match env.api().get_opt(&pdb_name).await? {
                Some(pdb) => break pdb,
                None if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await
                }
                None => anyhow::bail!("PodDisruptionBudget for {role} never appeared"),
            }
        };
        check_owner(
            pdb.metadata.owner_references.as_ref(),
            &uid,
            &format!("PDB {role}"),
        )?;
    }
    for role in ["batcher", "index"] {
        let svc: Service = env
            .api()
            .get(&format!("{name}-{role}"))
            .await
            .with_context(|| format!("client Service for {role}"))?;
        check_owner(
            svc.metadata.owner_references.as_ref(),
            &uid,
            &format!("client Service {role}"),
        )?;
        let ports: Vec<i32> = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default()
            .iter()
            .map(|p| p.port)
            .collect();
        ensure!(
            ports.contains(&50051),
            "{role}: client Service ports {ports:?}"
        );
    }
    ensure!(
        env.api::<Service>()
            .get_opt(&format!("{name}-cache"))
            .await?
            .is_none(),
        "the cache tier must have no client Service"
    );
    let cm: ConfigMap = env
        .api()
        .get(&format!("{name}-config"))
        .await
        .context("ConfigMap")?;
    check_owner(cm.metadata.owner_references.as_ref(), &uid, "ConfigMap")?;
    ensure!(
        cm.data.as_ref().is_some_and(|d| !d.is_empty()),
        "ConfigMap has no data"
    );

    // Nothing is ready yet (no Pods exist): kubectl get sv says so.
    wait_condition(&env, &name, "Ready", "False", Some("ReplicasNotReady")).await?;
    let cols = printed_columns(&env, &name).await?;
    ensure!(
        cols.get("Ready").map(String::as_str) == Some("False"),
        "columns {cols:?}"
    );

    set_all_ready(&env, &name).await?;
    wait_condition(&env, &name, "Ready", "True", Some("AllReplicasReady")).await?;
    let cols = printed_columns(&env, &name).await?;
    for role in ROLES {
        let n = spec[role]["replicas"].as_i64().unwrap_or(1);
        let col = format!("{}{}", role[..1].to_uppercase(), &role[1..]);
        ensure!(
            cols.get(&col) == Some(&format!("{n}/{n}")),
            "column {col}: {cols:?}"
        );
    }
    ensure!(
        cols.get("Ready").map(String::as_str) == Some("True"),
        "columns {cols:?}"
    );
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// Scaling updates the StatefulSet, disabling a PDB deletes it, and a config
/// change changes the ConfigMap and the Pod templates' checksum annotation.
#[tokio::test]
async fn spec_changes_scale_remove_children_and_roll_config() -> Result<()> {
    let mut env = OperatorEnv::new("op-changes").await?;
    env.start_operator("op-a", true).await?;
    let mut sv = small_skyvault("changes");
    env.apply_skyvault(&sv).await?;
    let before = wait_statefulset(&env, "changes-batcher", "created", |_| Ok(())).await?;
    let checksum_before =
        template_annotation(&before, "skyvault.io/config-checksum").context("no checksum")?;
    let pdbs: Api<PodDisruptionBudget> = env.api();
    wait_for("the batcher PDB", T, || async {
        pdbs.get_opt("changes-batcher").await?.context("missing")
    })
    .await?;
    let cm_before: ConfigMap = env.api().get("changes-config").await?;

    // Scale.
    sv["spec"]["index"] = json!({ "replicas": 4 });
    env.apply_skyvault(&sv).await?;
    wait_statefulset(&env, "changes-index", "4 replicas", |s| {
        ensure!(replicas(s) == 4, "replicas {}", replicas(s));
        Ok(())
    })
    .await?;

    // Remove a child through the spec.
    sv["spec"]["batcher"] = json!({ "disruptionBudget": { "enabled": false } });
    env.apply_skyvault(&sv).await?;
    wait_for("the batcher PDB to be deleted", T, || async {
        match pdbs.get_opt("changes-batcher").await? {
            None => Ok(()),
            Some(_) => bail!("still there"),
        }
    })
    .await
    .with_context(|| env.operator_logs())?;
    ensure!(
        pdbs.get_opt("changes-index").await?.is_some(),
        "the index PDB must stay"
    );

    // Config change: the ConfigMap and the checksum on every role's template change.
    sv["spec"]["batcher"]["batchMaxBytes"] = json!(8 * 1024 * 1024);
    env.apply_skyvault(&sv).await?;
    let after = wait_statefulset(&env, "changes-batcher", "a new config checksum", |s| {
        let c = template_annotation(s, "skyvault.io/config-checksum");
        ensure!(
            c.as_deref() != Some(checksum_before.as_str()),
            "checksum unchanged"
        );
        Ok(())
    })
    .await?;
    let cm_after: ConfigMap = env.api().get("changes-config").await?;
    ensure!(
        cm_after.data != cm_before.data,
        "the ConfigMap data did not change"
    );
    let new_checksum = template_annotation(&after, "skyvault.io/config-checksum");
    ensure!(new_checksum.is_some(), "checksum removed");

    // Removing a pod label from the spec removes it from the template.
    sv["spec"]["pod"] = json!({ "labels": { "team": "storage" } });
    env.apply_skyvault(&sv).await?;
    wait_statefulset(&env, "changes-cache", "label team", |s| {
        let l = s
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        ensure!(
            l.get("team").map(String::as_str) == Some("storage"),
            "labels {l:?}"
        );
        Ok(())
    })
    .await?;
    sv["spec"].as_object_mut().unwrap().remove("pod");
    env.apply_skyvault(&sv).await?;
    wait_statefulset(&env, "changes-cache", "label team removed", |s| {
        let l = s
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        ensure!(!l.contains_key("team"), "labels {l:?}");
        Ok(())
    })
    .await?;
    env.assert_no_rbac_denials()?;
    Ok(())
}

/// Deleting the SkyVault deletes its children through their owner
/// references (kube-controller-manager's garbage collector runs here).
#[tokio::test]
async fn deleting_the_skyvault_garbage_collects_children() -> Result<()> {
    let mut env = OperatorEnv::new("op-delete").await?;
    env.start_operator("op-a", true).await?;
    env.apply_skyvault(&small_skyvault("gone")).await?;
    env.merge_patch_skyvault(
        "gone",
        json!({"metadata": {"annotations": {"skyvault.io/trigger-compaction": "x"}}}),
    )
    .await?;
    wait_statefulset(&env, "gone-cache", "created", |_| Ok(())).await?;
    wait_for("the triggered Job", T, || async {
        jobs_of_kind(&env, "compact")
            .await?
            .into_iter()
            .next()
            .context("none yet")
    })
    .await?;
    ensure!(
        env.cluster.has_garbage_collector(),
        "this cluster has no garbage collector"
    );

    env.skyvaults()
        .delete("gone", &DeleteParams::background())
        .await?;
    wait_for(
        "every child to be garbage-collected",
        Duration::from_secs(120),
        || async {
            let mut left = Vec::new();
            for role in ROLES {
                if env
                    .api::<StatefulSet>()
                    .get_opt(&format!("gone-{role}"))
                    .await?
                    .is_some()
                {
                    left.push(format!("statefulset/gone-{role}"));
                }
                if env
                    .api::<Service>()
                    .get_opt(&format!("gone-{role}-headless"))
                    .await?
                    .is_some()
                {
                    left.push(format!("service/gone-{role}-headless"));
                }
                if env
                    .api::<PodDisruptionBudget>()
                    .get_opt(&format!("gone-{role}"))
                    .await?
                    .is_some()
                {
                    left.push(format!("pdb/gone-{role}"));
                }
            }
            if env
                .api::<ConfigMap>()
                .get_opt("gone-config")
                .await?
                .is_some()
            {
                left.push("configmap/gone-config".into());
            }
            left.extend(
                jobs_of_kind(&env, "compact")
                    .await?
                    .into_iter()
                    .filter_map(|j| j.metadata.name),
            );
            ensure!(left.is_empty(), "still present: {left:?}");
            Ok(())
        },
    )
    .await?;
    env.assert_no_rbac_denials()?;
    Ok(())
}
