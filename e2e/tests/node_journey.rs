//! The user's journey on a cluster whose pods really run: `helm install` the operator
//! chart, apply a SkyVault (2 batchers, 2 indexes, 3 caches) against a PostgreSQL and an
//! S3 server outside the cluster, wait for Ready from real pod readiness, write and read
//! through the Services with gRPC while a batcher pod is deleted, a cache pod is killed, a
//! spec change (tuning and image tag: a migrate Job first, then cache, index, batcher in
//! that order) and a rotated Secret roll every pod, then run
//! compaction and purge as real Job pods and delete the SkyVault. No acked write may be
//! lost. Every role serves TLS (a certificate from a test CA in a Secret, as cert-manager
//! would write it), the index reads through the caches over mTLS, and the clients present
//! a bearer token. The operator's NetworkPolicies are enforced (kube-router on the own
//! node): probe pods show a cache refusing a pod that is not an index pod, and
//! `spec.networkPolicy.clients` deciding who reaches the batcher and the index.
//!
//! By default on the harness's own one-node cluster (`skyvault_e2e::node`: kubelet,
//! containerd, CNI, kube-proxy, CoreDNS), started here: needs root (it creates a bridge,
//! iptables rules and cgroups; all removed at the end, which the test checks) and the
//! binaries (`cargo build -p skyvault --bin skyvault` first). One test per binary: the
//! node starts once. With `SKYVAULT_E2E_USE_EXISTING_CLUSTER=1` the same journey runs on
//! the cluster in `KUBECONFIG` (kind, k3d, minikube, or `skyvault-e2e-cluster --node`):
//! see `skyvault_e2e::journey::setup` and e2e/README.md.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::DynamicObject;
use serde_json::json;
use skyvault_e2e::cluster::use_existing_cluster;
use skyvault_e2e::journey::clients::{JourneyTls, Tally, reader, use_tls, verify_all, writer};
use skyvault_e2e::journey::jobs::run_manual_job;
use skyvault_e2e::journey::memory::pod_memory;
use skyvault_e2e::journey::network::NetworkCheck;
use skyvault_e2e::journey::rollout::{pod_uid, wait_ready, wait_rolled};
use skyvault_e2e::journey::setup::JourneyEnv;
use skyvault_e2e::journey::upgrade::check_upgrade_order;
use skyvault_e2e::journey::{RETRY_WINDOW, ROLLOUT_TIMEOUT, SV_NAME};
use skyvault_e2e::node::{self, NodeCluster, NodeOptions};
use skyvault_e2e::operator_env::skyvault_resource;
use skyvault_e2e::services::postgres::PostgresServer;
use skyvault_e2e::services::s3::S3Server;
use skyvault_e2e::wait_for;
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_journey_on_a_real_node() -> Result<()> {
    let started = Instant::now();
    let pg = PostgresServer::start()?;
    let s3 = S3Server::start()?;
    if use_existing_cluster() {
        let mut env = JourneyEnv::existing().await?;
        eprintln!(
            "journey: existing cluster in {}, namespaces {} and {}, image {}, pods reach this \
             machine on {}",
            env.kubeconfig.display(),
            env.namespace,
            env.operator_namespace,
            env.image,
            env.host_addr
        );
        let result = journey(&mut env, &pg, &s3).await;
        if result.is_err() {
            eprintln!(
                "pods:\n{}",
                node::describe_pods(&env.client, &env.namespace).await
            );
        }
        let cleaned = env.clean_up().await;
        eprintln!("journey: total {:.1}s", started.elapsed().as_secs_f64());
        result?;
        return cleaned.context("clean-up of the existing cluster");
    }
    let node = NodeCluster::start(NodeOptions::from_harness()?).await?;
    let bring_up = started.elapsed();
    let mut env = JourneyEnv::on_node(&node).await?;
    let result = journey(&mut env, &pg, &s3).await;
    if result.is_err() {
        eprintln!(
            "pods:\n{}",
            node::describe_pods(&env.client, &env.namespace).await
        );
        eprintln!(
            "operator pods:\n{}",
            node::describe_pods(&env.client, &env.operator_namespace).await
        );
        eprintln!("state and logs: {}", node.run_dir().display());
    }
    let t = Instant::now();
    node.shutdown();
    let tear_down = t.elapsed();
    eprintln!(
        "node: bring-up {:.1}s (incl. PostgreSQL and S3), tear-down {:.1}s, total {:.1}s",
        bring_up.as_secs_f64(),
        tear_down.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    result?;
    node::check_no_leftovers().context("tear-down left something behind")?;
    Ok(())
}

async fn journey(env: &mut JourneyEnv, pg: &PostgresServer, s3: &S3Server) -> Result<()> {
    let client = env.client.clone();
    let ns = env.namespace.clone();
    // The database and the bucket live outside the cluster, reachable from pods
    // on an address of this machine (like a managed database and S3 would be).
    let (pg_port, _pg_fwd) = node::expose_on(env.host_addr, pg.port()).await?;
    let s3_port = s3
        .endpoint()
        .rsplit(':')
        .next()
        .context("S3 port")?
        .parse::<u16>()?;
    let (s3_fwd_port, _s3_fwd) = node::expose_on(env.host_addr, s3_port).await?;
    let host = match env.host_addr {
        std::net::IpAddr::V6(a) => format!("[{a}]"),
        a => a.to_string(),
    };

    // 1. helm install the operator chart, image loaded into the node.
    let t = Instant::now();
    env.create_namespace().await?;
    env.install_operator().await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &env.operator_namespace);
    let operator_ready = deployments
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|d| {
            d.status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0)
        })
        .sum::<i32>();
    assert!(operator_ready >= 1, "operator Deployment has no ready pod");
    eprintln!(
        "journey: operator installed and ready in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // 2. The user's Secrets and SkyVault.
    env.create_secret(
        "skyvault-db",
        &[(
            "url",
            format!("postgres://skyvault@{host}:{pg_port}/skyvault"),
        )],
    )
    .await?;
    env.create_secret(
        "skyvault-s3",
        &[
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ],
    )
    .await?;
    // TLS on every role with the certificate the operator issues (`tls: {}`: its own CA,
    // names for every Service and pod), and client tokens.
    let token = "journey-writer-token-0123456789".to_string();
    env.create_secret("skyvault-tokens", &[("tokens", format!("write {token}\n"))])
        .await?;
    let small = json!({"requests": {"cpu": "50m"}});
    let sv = json!({
        "apiVersion": "skyvault.io/v1alpha1",
        "kind": "SkyVault",
        "metadata": {"name": SV_NAME, "namespace": ns},
        "spec": {
            "image": env.image,
            "imagePullPolicy": env.pull_policy,
            "objectStore": {
                "bucket": s3.bucket(),
                "prefix": "journey/",
                "endpoint": format!("http://{host}:{s3_fwd_port}"),
                "region": "us-east-1",
                "pathStyle": true,
                "credentialsSecret": {"name": "skyvault-s3"},
            },
            "database": {"urlSecret": {"name": "skyvault-db", "key": "url"}},
            "tls": {},
            "auth": {"tokensSecretName": "skyvault-tokens"},
            "batcher": {"replicas": 2, "resources": small},
            "index": {"replicas": 2, "cacheCapacityBytes": 33554432, "resources": small},
            "cache": {"replicas": 3, "cacheCapacityBytes": 33554432, "resources": small},
            "compaction": {"suspend": true},
            "purge": {"suspend": true, "gracePeriodSeconds": 60},
        },
    });
    let svs: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &skyvault_resource());
    let t = Instant::now();
    svs.patch(
        SV_NAME,
        &PatchParams::apply("skyvault-e2e-user").force(),
        &Patch::Apply(&sv),
    )
    .await?;

    // 3. Ready from real pod readiness.
    wait_ready(&svs, "the SkyVault to be Ready").await?;
    // Clients trust the CA the operator created, as a user would take it from the Secret.
    let tls_secret = format!("{SV_NAME}-tls");
    let issued: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let ca_pem = issued
        .get(&tls_secret)
        .await?
        .data
        .and_then(|d| d.get("ca.crt").cloned())
        .context("no ca.crt in the issued certificate's Secret")?;
    let ca_dir = tempfile::tempdir()?;
    let ca_file = ca_dir.path().join("ca.crt");
    std::fs::write(&ca_file, &ca_pem.0)?;
    use_tls(JourneyTls {
        config: skyvault::tls::client_config(Some(&ca_file), None)?,
        namespace: ns.clone(),
        token: token.clone(),
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let running = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    assert_eq!(running, 7, "2 batchers + 2 indexes + 3 caches ready");
    eprintln!(
        "journey: SkyVault Ready (7 pods) in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    // Readiness came from HTTPS probes; the operator's pod reads the compaction debt
    // from the index Service over TLS, checking its name against the SkyVault's CA.
    wait_for(
        "the compaction debt read over TLS by the operator",
        Duration::from_secs(90),
        || async {
            let sv = svs.get(SV_NAME).await?;
            let debt = &sv.data["status"]["compactionDebt"];
            ensure!(debt["observedAt"].is_string(), "compactionDebt {debt}");
            Ok(())
        },
    )
    .await?;

    // 3b. The NetworkPolicies are enforced: seen from probe pods (journey::network).
    let summary = NetworkCheck {
        client: &client,
        svs: &svs,
        namespace: &ns,
        image: &env.image,
        pull_policy: &env.pull_policy,
        tls_secret: &tls_secret,
        token: &token,
    }
    .run()
    .await?;
    eprintln!("journey: NetworkPolicies enforced: {summary}");

    // 4. gRPC through the Services, under load while pods come and go.
    let batcher = env
        .access
        .reach(&client, &ns, &format!("{SV_NAME}-batcher"), 50051)
        .await?;
    let index = env
        .access
        .reach(&client, &ns, &format!("{SV_NAME}-index"), 50051)
        .await?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let load_started = Instant::now();
    let w = tokio::spawn(writer(batcher.addr.clone(), tally.clone(), stop.clone()));
    let r = tokio::spawn(reader(index.addr.clone(), tally.clone(), stop.clone()));
    wait_for(
        "the first acked writes and reads",
        Duration::from_secs(60),
        || async {
            let t = tally.lock().await;
            if t.write_ok >= 20 && t.read_ok >= 5 {
                Ok(())
            } else {
                bail!(
                    "{} writes, {} reads ok; errors: {:?}",
                    t.write_ok,
                    t.read_ok,
                    t.last_errors
                )
            }
        },
    )
    .await?;

    // 4a. Delete a batcher pod (graceful), 4b. kill a cache pod (no grace).
    let victims = [format!("{SV_NAME}-batcher-0"), format!("{SV_NAME}-cache-1")];
    let mut old_uids = Vec::new();
    for v in &victims {
        old_uids.push(pod_uid(&pods, v).await?);
    }
    pods.delete(&victims[0], &DeleteParams::default()).await?;
    pods.delete(
        &victims[1],
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await?;
    // The StatefulSets bring new pods (new UIDs) under the same names.
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "batcher-0 and cache-1 replaced by new ready pods",
        ROLLOUT_TIMEOUT,
        || async {
            for (v, old) in victims.iter().zip(&old_uids) {
                let pod = pods.get(v).await?;
                if pod.metadata.uid.as_ref() == Some(old) {
                    bail!("{v} not replaced yet");
                }
                let ready = pod
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                if !ready {
                    bail!("new {v} not ready");
                }
            }
            Ok(())
        },
    )
    .await?;
    wait_ready(&svs, "Ready again after the pod deletions").await?;
    {
        let t = tally.lock().await;
        eprintln!(
            "journey: after pod deletions: writes {} ok / {} failed, reads {} ok / {} failed",
            t.write_ok, t.write_err, t.read_ok, t.read_err
        );
    }

    // 4c. A rolling change: a tuning field and the image tag.
    let new_image = env.roll_image.clone();
    let t = Instant::now();
    svs.patch(
        SV_NAME,
        &PatchParams::apply("skyvault-e2e-user").force(),
        &Patch::Apply(&json!({
            "apiVersion": "skyvault.io/v1alpha1",
            "kind": "SkyVault",
            "metadata": {"name": SV_NAME, "namespace": ns},
            "spec": {
                "image": new_image,
                "imagePullPolicy": env.pull_policy,
                "objectStore": sv["spec"]["objectStore"],
                "database": sv["spec"]["database"],
                "tls": sv["spec"]["tls"],
                "auth": sv["spec"]["auth"],
                "batcher": {"replicas": 2, "resources": small, "batchMaxAgeMs": 10},
                "index": sv["spec"]["index"],
                "cache": sv["spec"]["cache"],
                "compaction": sv["spec"]["compaction"],
                "purge": sv["spec"]["purge"],
            },
        })),
    )
    .await?;
    wait_for(
        "every pod to run the new image",
        ROLLOUT_TIMEOUT,
        || async {
            let list = pods.list(&ListParams::default()).await?;
            let old: Vec<String> = list
                .items
                .iter()
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.containers.first())
                        .and_then(|c| c.image.as_deref())
                        != Some(new_image.as_str())
                })
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            if old.is_empty() {
                Ok(())
            } else {
                bail!("still on the old image: {old:?}")
            }
        },
    )
    .await?;
    wait_rolled(&stss, "every StatefulSet rolled to the change").await?;
    wait_ready(&svs, "Ready after the rolling change").await?;
    eprintln!(
        "journey: rolling change done in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let order = check_upgrade_order(&client, &ns, &new_image).await?;
    eprintln!("journey: image roll in order: {order}");
    // Let the clients run on the new pods for a moment, then stop them.
    let before = tally.lock().await.write_ok;
    wait_for(
        "writes on the rolled pods",
        Duration::from_secs(60),
        || async {
            let t = tally.lock().await;
            if t.write_ok >= before + 20 {
                Ok(())
            } else {
                bail!("{} writes; errors: {:?}", t.write_ok, t.last_errors)
            }
        },
    )
    .await?;
    stop.store(true, Ordering::Relaxed);
    if env.own_node {
        eprintln!(
            "journey: pod memory after the load (debug build): {:?}",
            pod_memory(&pods).await?
        );
    }
    w.await?;
    r.await?;
    let tally = Arc::try_unwrap(tally)
        .expect("clients stopped")
        .into_inner();
    eprintln!(
        "journey: load for {:.1}s: {} writes ok / {} failed ({} keys acked), {} reads ok / {} failed; \
         longest write outage {:.1}s, read outage {:.1}s; last errors: {:?}",
        load_started.elapsed().as_secs_f64(),
        tally.write_ok,
        tally.write_err,
        tally.acked.len(),
        tally.read_ok,
        tally.read_err,
        tally.worst_write_outage.as_secs_f64(),
        tally.worst_read_outage.as_secs_f64(),
        tally.last_errors
    );
    assert!(
        tally.worst_write_outage < RETRY_WINDOW && tally.worst_read_outage < RETRY_WINDOW,
        "clients failed for longer than {RETRY_WINDOW:?}"
    );
    verify_all(&index.addr, &tally.acked).await?;
    eprintln!("journey: all {} acked keys read back", tally.acked.len());

    // Events tell the story.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("SkyVault"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(!reasons.is_empty(), "no Events on the SkyVault");
    eprintln!("journey: SkyVault events: {reasons:?}");

    // 4d. A changed Secret value (new S3 keys; moto takes any) rolls the pods too, once the
    // operator reconciles (Secrets are read, not watched: a touch annotation nudges it).
    let checksums = || async {
        let mut out = BTreeMap::new();
        for sts in stss.list(&ListParams::default()).await?.items {
            let sum = sts
                .spec
                .template
                .metadata
                .and_then(|m| m.annotations)
                .and_then(|a| a.get("skyvault.io/config-checksum").cloned())
                .unwrap_or_default();
            out.insert(sts.metadata.name.unwrap_or_default(), sum);
        }
        anyhow::Ok(out)
    };
    let before = checksums().await?;
    let t = Instant::now();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .patch(
            "skyvault-s3",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"AWS_ACCESS_KEY_ID": "rotated"}})),
        )
        .await?;
    svs.patch(
        SV_NAME,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"skyvault.io/touch": "secret-rotated"}}}),
        ),
    )
    .await?;
    wait_for(
        "every StatefulSet's checksum to follow the Secret",
        ROLLOUT_TIMEOUT,
        || async {
            let now = checksums().await?;
            let unchanged: Vec<&String> = now
                .iter()
                .filter(|(name, sum)| before.get(*name) == Some(sum))
                .map(|(name, _)| name)
                .collect();
            if unchanged.is_empty() {
                Ok(())
            } else {
                bail!("unchanged: {unchanged:?}")
            }
        },
    )
    .await?;
    wait_rolled(&stss, "every StatefulSet rolled after the Secret rotation").await?;
    wait_ready(&svs, "Ready after the Secret rotation").await?;
    verify_all(&index.addr, &tally.acked).await?;
    eprintln!(
        "journey: a rotated S3 Secret rolled every pod in {:.1}s; acked keys still read back",
        t.elapsed().as_secs_f64()
    );

    // 5. Compaction and purge as real Job pods, results into status.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    for (kind, annotation) in [
        ("compaction", "skyvault.io/trigger-compaction"),
        ("purge", "skyvault.io/trigger-purge"),
    ] {
        let t = Instant::now();
        let trigger = format!("journey-{kind}");
        let (job_name, run) = run_manual_job(&svs, &jobs, kind, annotation, &trigger).await?;
        let job = jobs.get(&job_name).await?;
        let succeeded = job.status.and_then(|s| s.succeeded).unwrap_or(0);
        assert!(succeeded >= 1, "Job {job_name} has no succeeded pod");
        let job_pods = pods
            .list(&ListParams::default().labels(&format!("job-name={job_name}")))
            .await?;
        assert!(
            job_pods
                .items
                .iter()
                .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")),
            "no pod of Job {job_name} ran to completion"
        );
        eprintln!(
            "journey: {kind} Job {job_name} ran as a pod and succeeded in {:.1}s: {run}",
            t.elapsed().as_secs_f64()
        );
    }
    verify_all(&index.addr, &tally.acked).await?;
    eprintln!("journey: all acked keys read back after compaction and purge");

    // 6. kubectl delete sv: everything it created goes away.
    svs.delete(SV_NAME, &DeleteParams::foreground()).await?;
    wait_for(
        "the SkyVault's pods and StatefulSets to be gone",
        ROLLOUT_TIMEOUT,
        || async {
            let left_pods = pods.list(&ListParams::default()).await?.items.len();
            let left_sts = stss.list(&ListParams::default()).await?.items.len();
            let left_sv = svs.get_opt(SV_NAME).await?.is_some();
            if left_pods == 0 && left_sts == 0 && !left_sv {
                Ok(())
            } else {
                bail!("{left_pods} pods, {left_sts} StatefulSets, SkyVault present: {left_sv}")
            }
        },
    )
    .await?;
    eprintln!("journey: SkyVault deleted, its pods and StatefulSets gone");
    Ok(())
}
