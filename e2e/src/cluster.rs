//! The cluster a test runs against: a local control plane started by the
//! harness, or — with `SKYVAULT_E2E_USE_EXISTING_CLUSTER=1` and `KUBECONFIG`
//! set — any existing cluster (kind, k3d, minikube), unchanged tests.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use crate::controlplane::{ControlPlane, ControlPlaneOptions, new_temp_dir};
use crate::kubeconfig;
use crate::process::random_hex;

/// Env var that switches the suite to the cluster in `KUBECONFIG`.
pub const USE_EXISTING_CLUSTER: &str = "SKYVAULT_E2E_USE_EXISTING_CLUSTER";

#[derive(Debug)]
pub struct TestCluster {
    control_plane: Option<ControlPlane>,
    admin_kubeconfig: PathBuf,
    cluster: kube::config::Cluster,
    /// Holds generated kubeconfigs etc.; removed on shutdown.
    work_dir: Mutex<Option<tempfile::TempDir>>,
    work_path: PathBuf,
}

pub fn use_existing_cluster() -> bool {
    matches!(
        std::env::var(USE_EXISTING_CLUSTER).as_deref(),
        Ok("1") | Ok("true")
    )
}

impl TestCluster {
    /// A cluster owned by the caller: stopped and cleaned up when dropped.
    pub async fn start(options: ControlPlaneOptions) -> Result<Self> {
        let work = new_temp_dir()?;
        let work_path = work.path().to_path_buf();
        if use_existing_cluster() {
            let kc_env = std::env::var_os("KUBECONFIG")
                .with_context(|| format!("{USE_EXISTING_CLUSTER}=1 needs KUBECONFIG set"))?;
            let kc = kube::config::Kubeconfig::read().context("read KUBECONFIG")?;
            let cluster = kubeconfig::current_cluster(&kc)?;
            // Use the first file for tools that take one path (the operator).
            let first = std::env::split_paths(&kc_env)
                .next()
                .context("KUBECONFIG is empty")?;
            return Ok(Self {
                control_plane: None,
                admin_kubeconfig: first,
                cluster,
                work_dir: Mutex::new(Some(work)),
                work_path,
            });
        }
        let cp = ControlPlane::start(options).await?;
        Ok(Self {
            admin_kubeconfig: cp.admin_kubeconfig().to_path_buf(),
            cluster: cp.cluster().clone(),
            control_plane: Some(cp),
            work_dir: Mutex::new(Some(work)),
            work_path,
        })
    }

    /// One cluster shared by all tests of a test binary, started on first use
    /// and stopped when the process exits. Tests isolate themselves with
    /// their own namespaces. The garbage collector runs in it.
    pub async fn shared() -> Result<&'static TestCluster> {
        static SHARED: tokio::sync::OnceCell<TestCluster> = tokio::sync::OnceCell::const_new();
        extern "C" fn shutdown_shared() {
            if let Some(c) = SHARED.get() {
                c.shutdown();
            }
        }
        SHARED
            .get_or_try_init(|| async {
                let c = TestCluster::start(ControlPlaneOptions {
                    garbage_collector: true,
                    ..Default::default()
                })
                .await?;
                // Statics are never dropped; stop the processes at exit instead.
                // SAFETY: registering a plain extern "C" fn.
                unsafe {
                    libc::atexit(shutdown_shared);
                }
                Ok(c)
            })
            .await
    }

    /// Whether the harness started this cluster (false: existing cluster).
    pub fn is_local(&self) -> bool {
        self.control_plane.is_some()
    }

    pub fn control_plane(&self) -> Option<&ControlPlane> {
        self.control_plane.as_ref()
    }

    /// Whether owner references lead to deletion (always on a real cluster).
    pub fn has_garbage_collector(&self) -> bool {
        self.control_plane
            .as_ref()
            .is_none_or(|cp| cp.has_garbage_collector())
    }

    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// Scratch directory that lives as long as the cluster.
    pub fn work_dir(&self) -> &Path {
        &self.work_path
    }

    /// A client with cluster-admin rights.
    pub async fn admin_client(&self) -> Result<kube::Client> {
        if let Some(cp) = &self.control_plane {
            cp.ensure_running()?;
        }
        if self.control_plane.is_none() {
            // Honour every file in KUBECONFIG, like kubectl.
            let config = kube::Config::infer().await.context("load KUBECONFIG")?;
            return kube::Client::try_from(config).context("build kube client");
        }
        kubeconfig::client_from_file(&self.admin_kubeconfig).await
    }

    /// Creates a uniquely named namespace; it is deleted when the guard is
    /// dropped (which matters on a long-lived existing cluster).
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        let client = self.admin_client().await?;
        let name = format!("{prefix}-{}", &random_hex(4));
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("skyvault.io/e2e".to_owned(), "true".to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client)
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("create namespace {name}"))?;
        Ok(TestNamespace {
            name,
            delete_on_drop: !self.is_local(),
        })
    }

    /// Creates (if needed) ServiceAccount `namespace/name`, mints a token for
    /// it through the TokenRequest API and writes a kubeconfig that
    /// authenticates as `system:serviceaccount:<namespace>:<name>`.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let client = self.admin_client().await?;
        let sas: Api<ServiceAccount> = Api::namespaced(client, namespace);
        if sas.get_opt(name).await?.is_none() {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    ..Default::default()
                },
                ..Default::default()
            };
            sas.create(&PostParams::default(), &sa)
                .await
                .with_context(|| format!("create ServiceAccount {namespace}/{name}"))?;
        }
        let tr = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: None,
                expiration_seconds: Some(4 * 3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let tr = sas
            .create_token_request(name, &PostParams::default(), &tr)
            .await
            .with_context(|| format!("TokenRequest for ServiceAccount {namespace}/{name}"))?;
        let token = tr
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .context("TokenRequest returned no token")?;
        let path = self.work_path.join(format!(
            "sa-{namespace}-{name}-{}.kubeconfig",
            random_hex(3)
        ));
        let user = format!("system:serviceaccount:{namespace}:{name}");
        kubeconfig::write_token_kubeconfig(&path, &self.cluster, &user, &token, Some(namespace))?;
        Ok(path)
    }

    /// Stops a local control plane and removes the scratch directory.
    pub fn shutdown(&self) {
        if let Some(cp) = &self.control_plane {
            cp.shutdown();
        }
        if let Some(dir) = self
            .work_dir
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = dir.close();
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A namespace created for one test.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
    delete_on_drop: bool,
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if !self.delete_on_drop || std::env::var("SKYVAULT_E2E_KEEP").as_deref() == Ok("1") {
            return;
        }
        // Drop cannot be async, and may run inside a runtime: use a thread.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let config = kube::Config::infer().await?;
                let client = kube::Client::try_from(config)?;
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
    }
}
