//! What `spec.tls`, `spec.auth` and `spec.networkPolicy` become, applied by the
//! operator with the chart's RBAC: NetworkPolicies the API server accepts,
//! the internal-token Secret, Secret volumes on the pods (docs/security.md).

use super::*;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use std::collections::BTreeSet;

async fn policy_names(env: &OperatorEnv) -> Result<BTreeSet<String>> {
    let api: Api<NetworkPolicy> = env.api();
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect())
}

#[tokio::test]
async fn network_policies_internal_token_and_secret_volumes_follow_the_spec() -> Result<()> {
    let mut env = OperatorEnv::new("op-security").await?;
    env.start_operator("op-sec", true).await?;
    let mut example = example_skyvault()?;
    let name = example["metadata"]["name"].as_str().unwrap().to_owned();
    example["spec"]["tls"] = json!({"secretName": "sv-tls"});
    example["spec"]["auth"] = json!({"tokensSecretName": "sv-tokens"});
    example["spec"]["networkPolicy"] = json!({
        "clients": [{"namespaceSelector": {"matchLabels": {"team": "apps"}}}],
        "egress": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
    });
    env.apply_skyvault(&example).await?;
    // Missing TLS Secret: reported, nothing rolled out.
    let s = wait_condition(&env, &name, "Degraded", "True", Some("SecretNotFound")).await?;
    let (_, _, message, _) = condition(&s, "Degraded").context("no Degraded condition")?;
    ensure!(message.contains("spec.tls.secretName"), "{message}");
    let cert = [("tls.crt", "c"), ("tls.key", "k"), ("ca.crt", "a")];
    env.create_secret("sv-tls", &cert).await?;
    env.create_secret("sv-tokens", &[("tokens", "read reader-token-0123456789")])
        .await?;

    let want: BTreeSet<String> = ["batcher", "index", "cache", "jobs", "egress"]
        .iter()
        .map(|s| format!("{name}-{s}"))
        .collect();
    wait_for("the NetworkPolicies", Duration::from_secs(60), || async {
        let got = policy_names(&env).await?;
        ensure!(got == want, "policies {got:?}, want {want:?}");
        Ok(())
    })
    .await?;

    let secrets: Api<Secret> = env.api();
    let token = secrets.get(&format!("{name}-internal-token")).await?;
    let value = token
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .context("no token key")?;
    ensure!(
        value.0.len() == 64,
        "internal token of {} bytes",
        value.0.len()
    );
    ensure!(
        token.metadata.owner_references.is_some(),
        "not owned by the SkyVault"
    );

    let index = wait_statefulset(&env, &format!("{name}-index"), "created", |_| Ok(())).await?;
    let pod = index.spec.template.spec.context("no pod spec")?;
    let secrets_mounted: BTreeSet<String> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
        .collect();
    for secret in ["sv-tls", "sv-tokens", &format!("{name}-internal-token")] {
        ensure!(
            secrets_mounted.contains(secret),
            "index mounts {secrets_mounted:?}, not {secret}"
        );
    }

    // Opting out removes them.
    env.merge_patch_skyvault(
        &name,
        json!({"spec": {"networkPolicy": {"enabled": false}}}),
    )
    .await?;
    wait_for(
        "the NetworkPolicies removed",
        Duration::from_secs(60),
        || async {
            let got = policy_names(&env).await?;
            ensure!(got.is_empty(), "still {got:?}");
            Ok(())
        },
    )
    .await?;
    env.assert_no_rbac_denials()
}
