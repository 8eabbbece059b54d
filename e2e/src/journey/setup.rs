//! Where the journey runs and what it installs there.
//!
//! [`JourneyEnv::on_node`]: the harness's own node; the fixed names of a fresh cluster
//! (`journey`, the operator in `skyvault-system` watching every namespace), the image
//! imported into the node's containerd, ClusterIPs for the clients.
//!
//! [`JourneyEnv::existing`] (`SKYVAULT_E2E_USE_EXISTING_CLUSTER=1`): the cluster in
//! `KUBECONFIG`, which may hold other things. Every name gets a random suffix (the user's
//! namespace `journey-<hex>`, the operator's `skyvault-e2e-<hex>`, the release), the
//! operator watches only the journey's namespace, and [`JourneyEnv::clean_up`] removes all
//! of it (and the CRD, if the journey installed it). The images come from the environment
//! (they must already be on the cluster's nodes), the clients use port-forwards, and the
//! pods reach the database and S3 that run on this machine through an address of this
//! machine that routes to the nodes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};

use super::access::ServiceAccess;
use crate::node::{NODE_IP, NodeCluster};
use crate::process::random_hex;
use crate::{helm, kubeconfig};

/// The image to run (already on the nodes) in an existing cluster.
pub const IMAGE_ENV: &str = "SKYVAULT_E2E_IMAGE";
/// A second tag of the same image, for the rolling update.
pub const ROLL_IMAGE_ENV: &str = "SKYVAULT_E2E_ROLL_IMAGE";
/// `imagePullPolicy` in an existing cluster (default `IfNotPresent`).
pub const PULL_POLICY_ENV: &str = "SKYVAULT_E2E_IMAGE_PULL_POLICY";
/// This machine's address the pods reach the database and S3 on (default: the source
/// address of the route to the first node's InternalIP).
pub const HOST_ADDR_ENV: &str = "SKYVAULT_E2E_HOST_ADDR";

const CRD_NAME: &str = "skyvaults.skyvault.io";

/// A cluster for the journey and the names it uses there.
pub struct JourneyEnv {
    pub client: kube::Client,
    pub kubeconfig: PathBuf,
    /// The user's namespace: Secrets and the SkyVault.
    pub namespace: String,
    pub operator_namespace: String,
    pub release: String,
    /// The operator watches only this namespace (existing clusters).
    pub watch_namespace: Option<String>,
    pub image: String,
    /// Another tag of `image`, for the rolling change.
    pub roll_image: String,
    pub pull_policy: String,
    /// Where pods reach services running on this machine.
    pub host_addr: IpAddr,
    pub access: ServiceAccess,
    /// The harness's own node (its cgroups and leftovers can be checked).
    pub own_node: bool,
    installed_crd: bool,
}

impl JourneyEnv {
    /// The harness's own node.
    pub async fn on_node(node: &NodeCluster) -> Result<Self> {
        let image = node.images().skyvault.clone();
        let roll_image = format!("{image}-b");
        node.tag_image(&image, &roll_image)?;
        Ok(Self {
            client: kubeconfig::client_from_file(node.admin_kubeconfig()).await?,
            kubeconfig: node.admin_kubeconfig().to_path_buf(),
            namespace: super::SV_NAME.into(),
            operator_namespace: "skyvault-system".into(),
            release: "skyvault-operator".into(),
            watch_namespace: None,
            image,
            roll_image,
            pull_policy: "Never".into(),
            host_addr: NODE_IP.parse()?,
            access: ServiceAccess::ClusterIp,
            own_node: true,
            installed_crd: false,
        })
    }

    /// The cluster in `KUBECONFIG`.
    pub async fn existing() -> Result<Self> {
        let kc_env = std::env::var_os("KUBECONFIG")
            .context("SKYVAULT_E2E_USE_EXISTING_CLUSTER=1 needs KUBECONFIG set")?;
        let kubeconfig = std::env::split_paths(&kc_env)
            .next()
            .context("KUBECONFIG is empty")?;
        let need = |var: &str| {
            std::env::var(var).with_context(|| {
                format!(
                    "the journey on an existing cluster needs {var}: the SkyVault image, already \
                     on the nodes, under two tags ({IMAGE_ENV}, {ROLL_IMAGE_ENV}); see e2e/README.md"
                )
            })
        };
        let image = need(IMAGE_ENV)?;
        let roll_image = need(ROLL_IMAGE_ENV)?;
        if image == roll_image {
            bail!("{IMAGE_ENV} and {ROLL_IMAGE_ENV} must differ (the rolling change changes it)");
        }
        let client = kubeconfig::client_from_file(&kubeconfig).await?;
        let host_addr = match std::env::var(HOST_ADDR_ENV) {
            Ok(a) => a.parse().with_context(|| format!("{HOST_ADDR_ENV}={a}"))?,
            Err(_) => address_towards_nodes(&client).await?,
        };
        let suffix = random_hex(3);
        let namespace = format!("{}-{suffix}", super::SV_NAME);
        Ok(Self {
            client,
            kubeconfig,
            watch_namespace: Some(namespace.clone()),
            namespace,
            operator_namespace: format!("skyvault-e2e-{suffix}"),
            release: format!("skyvault-e2e-{suffix}"),
            image,
            roll_image,
            pull_policy: std::env::var(PULL_POLICY_ENV).unwrap_or_else(|_| "IfNotPresent".into()),
            host_addr,
            access: ServiceAccess::PortForward,
            own_node: false,
            installed_crd: false,
        })
    }

    /// Creates the user's namespace (before the operator: a namespaced operator gets its
    /// Role there).
    pub async fn create_namespace(&self) -> Result<()> {
        Api::<Namespace>::all(self.client.clone())
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta {
                        name: Some(self.namespace.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await?;
        Ok(())
    }

    /// `helm install` of the operator chart with the journey's image, waiting for it.
    pub async fn install_operator(&mut self) -> Result<()> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        self.installed_crd = crds.get_opt(CRD_NAME).await?.is_none();
        let (repo, tag) = self.image.rsplit_once(':').context("image tag")?;
        let mut args: Vec<String> = [
            "install",
            &self.release,
            &helm::operator_chart_dir().display().to_string(),
            "--kubeconfig",
            &self.kubeconfig.display().to_string(),
            "--namespace",
            &self.operator_namespace,
            "--create-namespace",
            "--set",
            &format!("image.repository={repo}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            &format!("image.pullPolicy={}", self.pull_policy),
            "--set",
            "logFormat=text",
            "--wait",
            "--timeout",
            "5m",
        ]
        .map(String::from)
        .into();
        if let Some(ns) = &self.watch_namespace {
            args.extend(["--set".into(), format!("watchNamespace={ns}")]);
        }
        tokio::task::spawn_blocking(move || {
            helm::helm(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await??;
        Ok(())
    }

    /// Creates a Secret in the user's namespace.
    pub async fn create_secret(&self, name: &str, data: &[(&str, String)]) -> Result<()> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        secrets
            .create(
                &PostParams::default(),
                &Secret {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        ..Default::default()
                    },
                    string_data: Some(
                        data.iter()
                            .map(|(k, v)| ((*k).to_owned(), v.clone()))
                            .collect(),
                    ),
                    ..Default::default()
                },
            )
            .await?;
        Ok(())
    }

    /// On an existing cluster: uninstalls the release and deletes the namespaces (and the
    /// CRD when the journey installed it), waiting until they are gone. Nothing to do on
    /// the own node, which goes away as a whole.
    pub async fn clean_up(&self) -> Result<()> {
        if self.own_node {
            return Ok(());
        }
        let (release, ns, kc) = (
            self.release.clone(),
            self.operator_namespace.clone(),
            self.kubeconfig.display().to_string(),
        );
        let uninstall = tokio::task::spawn_blocking(move || {
            helm::helm(&[
                "uninstall",
                &release,
                "--kubeconfig",
                &kc,
                "--namespace",
                &ns,
                "--ignore-not-found",
                "--wait",
            ])
        })
        .await?;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for ns in [&self.namespace, &self.operator_namespace] {
            if let Err(e) = namespaces.delete(ns, &DeleteParams::default()).await
                && !matches!(&e, kube::Error::Api(s) if s.code == 404)
            {
                return Err(e.into());
            }
        }
        if self.installed_crd {
            let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
            crds.delete(CRD_NAME, &DeleteParams::default()).await?;
        }
        crate::wait_for(
            "the journey's namespaces to be gone",
            super::ROLLOUT_TIMEOUT,
            || async {
                for ns in [&self.namespace, &self.operator_namespace] {
                    if namespaces.get_opt(ns).await?.is_some() {
                        bail!("namespace {ns} still there");
                    }
                }
                Ok(())
            },
        )
        .await?;
        uninstall?;
        Ok(())
    }
}

/// The source address of this machine's route to the first node's InternalIP: where the
/// nodes (and, through them, the pods) reach this machine (kind, minikube: the Docker
/// network's gateway; the harness's node: its bridge address).
async fn address_towards_nodes(client: &kube::Client) -> Result<IpAddr> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node_ip = nodes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .flat_map(|n| n.status.and_then(|s| s.addresses).unwrap_or_default())
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address)
        .context("no node has an InternalIP")?;
    let out = Command::new("ip")
        .args(["-o", "route", "get", &node_ip])
        .output()
        .context("run ip route get")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let src = text
        .split_whitespace()
        .skip_while(|w| *w != "src")
        .nth(1)
        .with_context(|| format!("no source address in `ip route get {node_ip}`: {text}"))?;
    src.parse()
        .with_context(|| format!("source address {src} towards node {node_ip}"))
}
