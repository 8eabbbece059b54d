//! What `spec.tls`, `spec.auth` and `spec.networkPolicy` become, applied by the
//! operator with the chart's RBAC: NetworkPolicies the API server accepts,
//! the internal-token Secret, Secret volumes on the pods (docs/security.md).

use super::*;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use std::collections::BTreeSet;

const NO_DEBT: &str = r#"{"version":3,"l0_files":1,"l0_bytes":4096,"pending_bytes":0,
  "score":0.25,"needs_compaction":false,
  "levels":[{"level":0,"files":1,"bytes":4096,"target_bytes":0,"score":0.25}]}"#;

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
    // The index's HTTP listener serves TLS with a certificate of the SkyVault's CA;
    // the operator reads the debt there trusting that CA's ca.crt from the Secret.
    let ca = skyvault_e2e::certs::TestCa::new("op-security-ca")?;
    let leaf = ca.issue(&["127.0.0.1"])?;
    let dir = tempfile::tempdir()?;
    let (crt, key) = leaf.write(dir.path(), "tls")?;
    let served = skyvault::tls::server_configs(&crt, &key, None)?;
    let fake_index = FakeIndex::start_tls(NO_DEBT, served.http).await?;
    let mut env = OperatorEnv::new("op-security").await?;
    env.start_operator_with("op-sec", true, &[fake_index.url_flag()])
        .await?;
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
    let ca_pem = ca.cert_pem();
    let cert = [
        ("tls.crt", leaf.cert_pem.as_str()),
        ("tls.key", leaf.key_pem.as_str()),
        ("ca.crt", ca_pem.as_str()),
    ];
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

    // HTTPS probes, and the debt read over TLS (the URL flag says http://).
    let probe = pod.containers[0].readiness_probe.as_ref();
    let scheme = probe.and_then(|p| p.http_get.as_ref()?.scheme.clone());
    ensure!(
        scheme.as_deref() == Some("HTTPS"),
        "readiness probe {probe:?}"
    );
    wait_for(
        "the debt read over TLS",
        Duration::from_secs(60),
        || async {
            let s = env.get_skyvault(&name).await?;
            let debt = &s.data["status"]["compactionDebt"];
            ensure!(debt["l0Files"] == 1, "compactionDebt {debt}");
            Ok(())
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    ensure!(fake_index.last_path() == format!("/{}/{name}/lsm", env.namespace()));

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

/// `spec.tls: {}`: the operator creates a CA and a certificate for every name the
/// clients and roles dial, mounts it, re-issues a damaged one, and never takes over a
/// Secret of that name it does not own.
#[tokio::test]
async fn the_operator_issues_the_certificate_when_spec_tls_names_no_secret() -> Result<()> {
    let mut env = OperatorEnv::new("op-certs").await?;
    env.start_operator("op-certs", true).await?;
    let mut example = example_skyvault()?;
    let name = example["metadata"]["name"].as_str().unwrap().to_owned();
    example["spec"]["tls"] = json!({});
    env.apply_skyvault(&example).await?;

    let secrets: Api<Secret> = env.api();
    let issued = wait_for(
        "the issued certificate",
        Duration::from_secs(60),
        || async {
            let cert = secrets.get_opt(&format!("{name}-tls")).await?;
            let ca = secrets.get_opt(&format!("{name}-tls-ca")).await?;
            ensure!(cert.is_some() && ca.is_some(), "not yet");
            Ok(cert.unwrap())
        },
    )
    .await
    .with_context(|| env.operator_logs())?;
    ensure!(
        issued.metadata.owner_references.is_some(),
        "not owned by the SkyVault"
    );
    let ns = env.namespace().to_owned();
    for server_name in [
        format!("{name}-index.{ns}.svc"),
        format!("{name}-batcher.{ns}.svc.cluster.local"),
        format!("{name}-cache-1.{name}-cache-headless.{ns}.svc"),
    ] {
        handshake(&issued, &server_name).await?;
    }
    ensure!(
        handshake(&issued, &format!("{name}-index.elsewhere.svc"))
            .await
            .is_err(),
        "a name of another namespace verified"
    );
    let index = wait_statefulset(&env, &format!("{name}-index"), "created", |_| Ok(())).await?;
    let mounted = index
        .spec
        .template
        .spec
        .context("no pod spec")?
        .volumes
        .unwrap_or_default()
        .iter()
        .any(|v| {
            v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(&format!("{name}-tls"))
        });
    ensure!(mounted, "the index does not mount {name}-tls");

    // A damaged certificate is re-issued at the next reconcile (here: a touched spec).
    let mut damaged = issued.clone();
    let data = damaged.data.as_mut().context("no data")?;
    data.insert(
        "tls.crt".into(),
        k8s_openapi::ByteString(b"not a certificate".to_vec()),
    );
    secrets
        .replace(&format!("{name}-tls"), &Default::default(), &damaged)
        .await?;
    env.merge_patch_skyvault(&name, json!({"metadata": {"annotations": {"touch": "1"}}}))
        .await?;
    wait_for(
        "the certificate re-issued",
        Duration::from_secs(60),
        || async {
            let now = secrets.get(&format!("{name}-tls")).await?;
            handshake(&now, &format!("{name}-index.{ns}.svc")).await
        },
    )
    .await
    .with_context(|| env.operator_logs())?;

    // Someone else's Secret under the issued name is left alone and reported.
    let mut other = example_skyvault()?;
    other["metadata"]["name"] = json!("other");
    other["spec"]["tls"] = json!({});
    env.create_secret("other-tls", &[("tls.crt", "mine")])
        .await?;
    env.apply_skyvault(&other).await?;
    let s = wait_condition(&env, "other", "Degraded", "True", Some("CertificateFailed")).await?;
    let (_, _, message, _) = condition(&s, "Degraded").context("no Degraded condition")?;
    ensure!(message.contains("spec.tls.secretName"), "{message}");
    let kept = secrets.get("other-tls").await?;
    ensure!(
        kept.data.unwrap_or_default()["tls.crt"].0 == b"mine",
        "the user's Secret was changed"
    );
    env.assert_no_rbac_denials()
}

/// A TLS handshake with a server holding `secret`'s pair, by a client trusting only
/// its `ca.crt` and checking `server_name`.
async fn handshake(secret: &Secret, server_name: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = secret.data.as_ref().context("no data")?;
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        let value = data.get(key).with_context(|| format!("no {key}"))?;
        std::fs::write(dir.path().join(key), &value.0)?;
    }
    let path = |k: &str| dir.path().join(k);
    let served = skyvault::tls::server_configs(&path("tls.crt"), &path("tls.key"), None)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        tokio_rustls::TlsAcceptor::from(served.grpc)
            .accept(tcp)
            .await?;
        anyhow::Ok(())
    });
    let client = skyvault::tls::client_config(Some(&path("ca.crt")), None)?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(server_name.to_owned())?;
    let result = tokio_rustls::TlsConnector::from(client)
        .connect(name, tcp)
        .await;
    server.abort();
    result.with_context(|| format!("handshake as {server_name}"))?;
    Ok(())
}
