//! The control plane itself: it comes up, enforces RBAC, and is cleaned up
//! even when the test that owns it panics.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use skyvault_e2e::{ControlPlaneOptions, TestCluster, kubeconfig, wait_for};

fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

fn pid_exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Starts a private control plane on another thread, panics there while it is
/// running, and checks that its processes and temp dir are gone afterwards.
#[test]
fn control_plane_starts_serves_and_is_cleaned_up_after_a_panic() -> Result<()> {
    if skyvault_e2e::cluster::use_existing_cluster() {
        eprintln!("existing cluster: the local control-plane lifecycle is not under test");
        return Ok(());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let cluster = TestCluster::start(ControlPlaneOptions::default())
                .await
                .expect("control plane starts");
            let cp = cluster.control_plane().expect("local control plane");
            let client = cluster.admin_client().await.expect("admin client");

            let req = http::Request::get("/version").body(Vec::new()).unwrap();
            let version: serde_json::Value = client.request(req).await.expect("GET /version");
            let readyz = client
                .request_text(http::Request::get("/readyz").body(Vec::new()).unwrap())
                .await
                .expect("GET /readyz");
            let ns = cluster
                .namespace("lifecycle")
                .await
                .expect("create namespace");

            tx.send((
                version,
                readyz,
                ns.name().to_owned(),
                cp.dir().to_path_buf(),
                cp.apiserver().pid(),
            ))
            .unwrap();
            panic!("deliberate panic while the control plane is running");
        })
    });
    let joined = handle.join();
    ensure!(joined.is_err(), "the thread was supposed to panic");
    let (version, readyz, ns, dir, apiserver_pid) = rx
        .recv()
        .context("the control plane never came up (see the panic above)")?;

    let expected = tools_kube_version();
    ensure!(
        version["gitVersion"] == expected.as_str(),
        "/version reports {}, want {expected}",
        version["gitVersion"]
    );
    ensure!(readyz.trim() == "ok", "/readyz said {readyz:?}");
    ensure!(ns.starts_with("lifecycle-"), "namespace {ns}");
    ensure!(!dir.exists(), "temp dir {} was not removed", dir.display());
    ensure!(
        !pid_exists(apiserver_pid),
        "kube-apiserver (pid {apiserver_pid}) still runs after the panic"
    );
    Ok(())
}

/// The version pinned in e2e/controlplane/kubernetes/go.mod (what we built),
/// unless the binaries come from elsewhere.
fn tools_kube_version() -> String {
    let gomod = std::fs::read_to_string(
        skyvault_e2e::tools::repo_root().join("e2e/controlplane/kubernetes/go.mod"),
    )
    .expect("read go.mod");
    let pinned = gomod
        .lines()
        .find_map(|l| l.trim().strip_prefix("require k8s.io/kubernetes "))
        .expect("go.mod requires k8s.io/kubernetes")
        .trim()
        .to_owned();
    std::env::var("SKYVAULT_E2E_EXPECT_KUBE_VERSION").unwrap_or(pinned)
}

/// A ServiceAccount with no grants is forbidden; a Role grants exactly what
/// it lists and nothing more.
#[tokio::test]
async fn rbac_is_enforced_for_service_accounts() -> Result<()> {
    let cluster = TestCluster::shared().await?;
    let ns = cluster.namespace("rbac").await?;
    let admin = cluster.admin_client().await?;

    // Admin can do anything.
    Api::<Secret>::namespaced(admin.clone(), ns.name())
        .list(&ListParams::default())
        .await
        .context("admin lists secrets")?;

    let kc = cluster
        .service_account_kubeconfig(ns.name(), "nobody")
        .await?;
    let sa = kubeconfig::client_from_file(&kc).await?;

    let secrets = Api::<Secret>::namespaced(sa.clone(), ns.name());
    let err = secrets
        .list(&ListParams::default())
        .await
        .expect_err("a ServiceAccount without grants must not list secrets");
    ensure!(is_forbidden(&err), "expected 403, got {err}");
    let configmaps = Api::<ConfigMap>::namespaced(sa.clone(), ns.name());
    let err = configmaps
        .list(&ListParams::default())
        .await
        .expect_err("a ServiceAccount without grants must not list configmaps");
    ensure!(is_forbidden(&err), "expected 403, got {err}");

    // Grant list on configmaps only.
    let role = Role {
        metadata: ObjectMeta {
            name: Some("read-configmaps".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["list".into()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &role)
        .await?;
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("read-configmaps".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "read-configmaps".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "nobody".into(),
            namespace: Some(ns.name().into()),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), ns.name())
        .create(&PostParams::default(), &binding)
        .await?;

    wait_for(
        "the RoleBinding to take effect",
        Duration::from_secs(30),
        || {
            let configmaps = configmaps.clone();
            async move {
                configmaps.list(&ListParams::default()).await?;
                Ok(())
            }
        },
    )
    .await?;
    // Still nothing beyond the grant: no secrets, no create.
    let err = secrets.list(&ListParams::default()).await.unwrap_err();
    ensure!(is_forbidden(&err), "expected 403 for secrets, got {err}");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("x".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let err = configmaps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap_err();
    ensure!(is_forbidden(&err), "expected 403 for create, got {err}");
    Ok(())
}
