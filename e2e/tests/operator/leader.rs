//! Leader election between two operator processes.

use super::*;

/// Two operators with leader election: only the Lease holder reconciles;
/// killing it (no graceful release) hands over to the other.
#[tokio::test]
async fn leader_election_only_leader_reconciles_and_hands_over() -> Result<()> {
    let mut env = OperatorEnv::new("op-leader").await?;
    let a = env.start_operator("op-a", true).await?;
    let b = env.start_operator("op-b", true).await?;
    let leases: Api<Lease> = env.api();
    let holder = wait_for("a Lease holder", T, || async {
        let list = leases.list(&ListParams::default()).await?.items;
        list.iter()
            .find_map(|l| l.spec.as_ref()?.holder_identity.clone())
            .context("no holder yet")
    })
    .await
    .with_context(|| env.operator_logs())?;
    let (leader, standby) = if holder == "op-a" {
        (a, b)
    } else if holder == "op-b" {
        (b, a)
    } else {
        bail!("unexpected holder {holder}");
    };
    wait_for("leader gauges", T, || async {
        let l = env
            .operator(leader)
            .metric("skyvault_operator_leader", &[])
            .await?;
        let s = env
            .operator(standby)
            .metric("skyvault_operator_leader", &[])
            .await?;
        ensure!(l == 1.0 && s == 0.0, "leader gauge {l}, standby gauge {s}");
        Ok(())
    })
    .await?;

    env.apply_skyvault(&small_skyvault("le")).await?;
    wait_statefulset(&env, "le-batcher", "created by the leader", |_| Ok(())).await?;
    wait_for("the leader to count its reconciles", T, || async {
        let n = env
            .operator(leader)
            .metric(
                "skyvault_operator_reconciliations_total",
                &[("outcome", "success")],
            )
            .await?;
        ensure!(
            n > 0.0,
            "leader reconciliations_total{{outcome=success}} = {n}"
        );
        Ok(())
    })
    .await?;
    let standby_reconciles = env
        .operator(standby)
        .metric("skyvault_operator_reconciliations_total", &[])
        .await?;
    ensure!(
        standby_reconciles == 0.0,
        "the standby reconciled {standby_reconciles} times"
    );

    // Kill -9 the leader: the Lease expires and the standby takes over.
    env.operator(leader).kill();
    let new_holder = env.operator(standby).identity().to_owned();
    wait_for(
        "the standby to hold the Lease",
        Duration::from_secs(45),
        || async {
            let list = leases.list(&ListParams::default()).await?.items;
            let h = list
                .iter()
                .find_map(|l| l.spec.as_ref()?.holder_identity.clone());
            ensure!(h.as_deref() == Some(new_holder.as_str()), "holder {h:?}");
            Ok(())
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    let mut sv = small_skyvault("le");
    sv["spec"]["index"] = json!({ "replicas": 3 });
    env.apply_skyvault(&sv).await?;
    wait_statefulset(&env, "le-index", "scaled by the new leader", |s| {
        ensure!(replicas(s) == 3, "replicas {}", replicas(s));
        Ok(())
    })
    .await?;
    ensure!(
        env.operator(standby)
            .metric("skyvault_operator_leader", &[])
            .await?
            == 1.0,
        "the new leader's gauge is not 1"
    );
    env.assert_no_rbac_denials()?;
    Ok(())
}
