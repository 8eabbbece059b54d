//! Writing kubeconfig files and turning them into clients.

use std::path::Path;

use anyhow::{Context, Result};
use kube::config::{Cluster, KubeConfigOptions, Kubeconfig};

/// Writes a kubeconfig with one cluster, one bearer-token user and one
/// context, and returns the parsed file.
pub fn write_token_kubeconfig(
    path: &Path,
    cluster: &Cluster,
    user: &str,
    token: &str,
    namespace: Option<&str>,
) -> Result<Kubeconfig> {
    let mut context = serde_json::json!({ "cluster": "skyvault-e2e", "user": user });
    if let Some(ns) = namespace {
        context["namespace"] = ns.into();
    }
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "skyvault-e2e", "cluster": serde_json::to_value(cluster)? }],
        "users": [{ "name": user, "user": { "token": token } }],
        "contexts": [{ "name": user, "context": context }],
        "current-context": user,
    });
    let yaml = serde_yaml::to_string(&doc)?;
    write_private(path, yaml.as_bytes())?;
    Kubeconfig::from_yaml(&yaml).context("parse the kubeconfig we just wrote")
}

/// Writes `contents` to `path` readable only by the owner (it holds a token).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}

/// A client for the current context of a kubeconfig file.
pub async fn client_from_file(path: &Path) -> Result<kube::Client> {
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("read kubeconfig {}", path.display()))?;
    client_from_kubeconfig(kc).await
}

/// A client for the current context of a parsed kubeconfig.
pub async fn client_from_kubeconfig(kc: Kubeconfig) -> Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .context("load kubeconfig")?;
    kube::Client::try_from(config).context("build kube client")
}

/// The cluster entry (server and CA settings) of a kubeconfig's current context.
pub fn current_cluster(kc: &Kubeconfig) -> Result<Cluster> {
    let ctx_name = kc
        .current_context
        .as_deref()
        .context("kubeconfig has no current-context")?;
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.as_ref())
        .with_context(|| format!("kubeconfig has no context {ctx_name}"))?;
    kc.clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.clone())
        .with_context(|| format!("kubeconfig has no cluster {}", ctx.cluster))
}
