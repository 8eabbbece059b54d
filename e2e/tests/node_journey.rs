//! The user's journey on a real one-node cluster (kubelet, containerd, CNI,
//! kube-proxy, CoreDNS; `skyvault_e2e::node`): `helm install` the operator
//! chart, apply a SkyVault (2 batchers, 2 indexes, 3 caches) against a
//! PostgreSQL and an S3 server outside the cluster, wait for Ready from real
//! pod readiness, write and read through the Services with gRPC while a
//! batcher pod is deleted, a cache pod is killed and a spec change (tuning and
//! image tag) rolls every pod, then run compaction and purge as real Job pods
//! and delete the SkyVault. No acked write may be lost.
//!
//! Needs root (it creates a bridge, iptables rules and cgroups; all removed at
//! the end, which the test checks) and the binaries: `cargo build -p skyvault
//! --bin skyvault` first. One test per binary: the node starts once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use skyvault::api::proto::batcher::v1::{
    BatchWriteRequest, WriteRequest, batcher_service_client::BatcherServiceClient,
    write_request::Operation,
};
use skyvault::api::proto::index::v1::{BatchGetRequest, index_service_client::IndexServiceClient};
use skyvault_e2e::cluster::use_existing_cluster;
use skyvault_e2e::node::{self, NODE_IP, NodeCluster, NodeOptions};
use skyvault_e2e::operator_env::skyvault_resource;
use skyvault_e2e::services::postgres::PostgresServer;
use skyvault_e2e::services::s3::S3Server;
use skyvault_e2e::{helm, kubeconfig, wait_for};
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};

const NAME: &str = "journey";
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Pods starting on a loaded 2-core machine (image already local).
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest run of failed calls a client may see while a pod goes away: its
/// connection breaks, the next call reconnects through kube-proxy to a pod
/// that is still ready (docs/operations.md, "Clients during pod restarts").
const RETRY_WINDOW: Duration = Duration::from_secs(30);

fn channel(ip: &str) -> Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{ip}:50051"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(RPC_TIMEOUT)
        .connect_lazy())
}

/// What the clients saw.
#[derive(Default, Debug)]
struct Tally {
    /// key -> (value, sequence) of every acknowledged write.
    acked: BTreeMap<String, (String, u64)>,
    write_ok: u64,
    write_err: u64,
    read_ok: u64,
    read_err: u64,
    /// Longest time between the first failure of a run and the next success.
    worst_write_outage: Duration,
    worst_read_outage: Duration,
    last_errors: Vec<String>,
}

fn note_error(t: &mut Tally, e: String) {
    if t.last_errors.len() >= 20 {
        t.last_errors.remove(0);
    }
    t.last_errors.push(e);
}

/// Writes batches of 4 fresh keys until `stop`, recording what was acked.
async fn writer(batcher_ip: String, tally: Arc<Mutex<Tally>>, stop: Arc<AtomicBool>) {
    let mut client = BatcherServiceClient::new(channel(&batcher_ip).expect("endpoint"));
    let mut i = 0u64;
    let mut failing_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let writes: Vec<WriteRequest> = (0..4)
            .map(|j| WriteRequest {
                key: format!("w{i:07}-{j}"),
                operation: Some(Operation::Put(Bytes::from(format!("v{i}-{j}")))),
            })
            .collect();
        let keys: Vec<(String, String)> = (0..4)
            .map(|j| (format!("w{i:07}-{j}"), format!("v{i}-{j}")))
            .collect();
        let result = client.batch_write(BatchWriteRequest { writes }).await;
        let mut t = tally.lock().await;
        match result {
            Ok(r) => {
                let seq = r.into_inner().sequence;
                t.write_ok += 1;
                for (k, v) in keys {
                    t.acked.insert(k, (v, seq));
                }
                if let Some(since) = failing_since.take() {
                    t.worst_write_outage = t.worst_write_outage.max(since.elapsed());
                }
            }
            Err(status) => {
                t.write_err += 1;
                failing_since.get_or_insert_with(Instant::now);
                note_error(&mut t, format!("write: {status}"));
                drop(t);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        drop(t);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads back recently acked keys (read-your-writes through `min_sequence`)
/// until `stop`; a wrong value fails the test at once.
async fn reader(index_ip: String, tally: Arc<Mutex<Tally>>, stop: Arc<AtomicBool>) {
    let mut client = IndexServiceClient::new(channel(&index_ip).expect("endpoint"));
    let mut failing_since: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let sample: Vec<(String, String, u64)> = {
            let t = tally.lock().await;
            t.acked
                .iter()
                .rev()
                .step_by(3)
                .take(16)
                .map(|(k, (v, s))| (k.clone(), v.clone(), *s))
                .collect()
        };
        if sample.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let min_sequence = sample.iter().map(|s| s.2).max();
        let result = client
            .batch_get(BatchGetRequest {
                keys: sample.iter().map(|s| s.0.clone()).collect(),
                min_sequence,
            })
            .await;
        let mut t = tally.lock().await;
        match result {
            Ok(r) => {
                let got = r.into_inner().results;
                for (k, v, _) in &sample {
                    let have = got.get(k).map(|b| String::from_utf8_lossy(b).into_owned());
                    assert_eq!(
                        have.as_deref(),
                        Some(v.as_str()),
                        "read-your-writes broken for acked key {k}"
                    );
                }
                t.read_ok += 1;
                if let Some(since) = failing_since.take() {
                    t.worst_read_outage = t.worst_read_outage.max(since.elapsed());
                }
            }
            Err(status) => {
                t.read_err += 1;
                failing_since.get_or_insert_with(Instant::now);
                note_error(&mut t, format!("read: {status}"));
                drop(t);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        drop(t);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acked key reads back with its value.
async fn verify_all(index_ip: &str, acked: &BTreeMap<String, (String, u64)>) -> Result<()> {
    let mut client = IndexServiceClient::new(channel(index_ip)?);
    let max_seq = acked.values().map(|v| v.1).max().unwrap_or(0);
    let keys: Vec<&String> = acked.keys().collect();
    for chunk in keys.chunks(500) {
        let got = wait_for("a BatchGet of acked keys", Duration::from_secs(60), || {
            let mut client = client.clone();
            let keys: Vec<String> = chunk.iter().map(|k| (*k).clone()).collect();
            async move {
                Ok(client
                    .batch_get(BatchGetRequest {
                        keys,
                        min_sequence: Some(max_seq),
                    })
                    .await?
                    .into_inner()
                    .results)
            }
        })
        .await?;
        for k in chunk {
            let want = &acked[*k].0;
            let have = got.get(*k).map(|b| String::from_utf8_lossy(b).into_owned());
            if have.as_deref() != Some(want.as_str()) {
                bail!("acked key {k} lost: want {want}, read {have:?}");
            }
        }
    }
    client = client.clone();
    drop(client);
    Ok(())
}

async fn cluster_ip(services: &Api<Service>, name: &str) -> Result<String> {
    services
        .get(name)
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .filter(|ip| !ip.is_empty() && ip != "None")
        .with_context(|| format!("Service {name} has no ClusterIP"))
}

fn condition(sv: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    sv.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_owned(),
                c["reason"].as_str().unwrap_or("").to_owned(),
                c["message"].as_str().unwrap_or("").to_owned(),
            )
        })
}

/// Ready=True at the current generation with every role's pods ready and
/// updated (what `kubectl get sv` shows as healthy).
async fn wait_ready(svs: &Api<DynamicObject>, what: &str) -> Result<DynamicObject> {
    wait_for(what, ROLLOUT_TIMEOUT, || async {
        let sv = svs.get(NAME).await?;
        let generation = sv.metadata.generation.unwrap_or(0);
        let observed = sv.data["status"]["observedGeneration"]
            .as_i64()
            .unwrap_or(-1);
        if observed != generation {
            bail!("observedGeneration {observed} != generation {generation}");
        }
        for role in ["batcher", "index", "cache"] {
            let r = &sv.data["status"][role];
            let (desired, ready, updated) = (
                r["desired"].as_i64(),
                r["ready"].as_i64(),
                r["updated"].as_i64(),
            );
            if desired.is_none() || desired != ready || desired != updated {
                bail!("{role}: {r}");
            }
        }
        match condition(&sv, "Ready") {
            Some((s, _, _)) if s == "True" => Ok(sv),
            c => bail!("Ready condition {c:?}"),
        }
    })
    .await
}

/// Triggers a manual `kind` Job through its annotation and waits until the
/// SkyVault's status reports it succeeded; returns the Job's name.
async fn run_manual_job(
    svs: &Api<DynamicObject>,
    jobs: &Api<Job>,
    kind: &str,
    annotation: &str,
    trigger: &str,
) -> Result<(String, Value)> {
    svs.patch(
        NAME,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {annotation: trigger}}})),
    )
    .await?;
    wait_for(
        &format!("the {kind} Job triggered by {trigger} to succeed"),
        ROLLOUT_TIMEOUT,
        || async {
            let sv = svs.get(NAME).await?;
            let st = &sv.data["status"][kind];
            let run = &st["lastRun"];
            let job_name = run["jobName"].as_str().unwrap_or("");
            if run["manual"] != true || job_name.is_empty() {
                bail!("{kind} status: {st}");
            }
            // The Job this status names must be the one our trigger started.
            let job = jobs.get(job_name).await?;
            let started_by = job
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("skyvault.io/trigger"))
                .cloned();
            if started_by.as_deref() != Some(trigger) {
                bail!("{job_name} was started by {started_by:?}");
            }
            match run["result"].as_str() {
                Some("Succeeded") => Ok((job_name.to_owned(), run.clone())),
                _ => bail!("{kind} status: {st}"),
            }
        },
    )
    .await
}

/// Memory of each pod in the namespace: the summed VmRSS and VmHWM (peak) of the
/// processes in its cgroups (v1, kubelet's cgroupfs layout under the node's cgroup root).
async fn pod_memory(pods: &Api<Pod>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in pods.list(&ListParams::default()).await?.items {
        let (Some(name), Some(uid)) = (p.metadata.name, p.metadata.uid) else {
            continue;
        };
        let base = "/sys/fs/cgroup/memory/skyvault-e2e/kubepods";
        let dir = ["", "burstable/", "besteffort/"]
            .iter()
            .map(|q| format!("{base}/{q}pod{uid}"))
            .find(|d| std::path::Path::new(d).is_dir());
        let Some(dir) = dir else { continue };
        let mut dirs = vec![std::path::PathBuf::from(&dir)];
        for e in std::fs::read_dir(&dir)?.flatten() {
            if e.file_type()?.is_dir() {
                dirs.push(e.path());
            }
        }
        let kib = |status: &str, field: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let (mut rss, mut hwm) = (0u64, 0u64);
        for d in &dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines() {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                rss += kib(&status, "VmRSS:");
                hwm += kib(&status, "VmHWM:");
            }
        }
        out.push(format!(
            "{name} rss {} MiB peak {} MiB",
            rss >> 10,
            hwm >> 10
        ));
    }
    Ok(out)
}

/// Every StatefulSet has seen its latest template and rolled all its pods to it.
async fn wait_rolled(stss: &Api<StatefulSet>, what: &str) -> Result<()> {
    wait_for(what, ROLLOUT_TIMEOUT, || async {
        for sts in stss.list(&ListParams::default()).await?.items {
            let name = sts.metadata.name.clone().unwrap_or_default();
            let generation = sts.metadata.generation;
            let want = sts.spec.replicas.unwrap_or(1);
            let st = sts.status.unwrap_or_default();
            let rolled = st.observed_generation == generation
                && st.update_revision.is_some()
                && st.current_revision == st.update_revision
                && st.updated_replicas == Some(want)
                && st.ready_replicas == Some(want);
            if !rolled {
                bail!(
                    "{name}: observed {:?}/{generation:?}, revisions {:?} -> {:?}, updated {:?}, ready {:?} of {want}",
                    st.observed_generation,
                    st.current_revision,
                    st.update_revision,
                    st.updated_replicas,
                    st.ready_replicas
                );
            }
        }
        Ok(())
    })
    .await
}

/// The pod's UID (to tell a replacement from the original).
async fn pod_uid(pods: &Api<Pod>, name: &str) -> Result<String> {
    pods.get(name)
        .await?
        .metadata
        .uid
        .with_context(|| format!("pod {name} has no uid"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_journey_on_a_real_node() -> Result<()> {
    if use_existing_cluster() {
        // The journey needs the node's in-machine addresses for its clients
        // and services; see e2e/README.md.
        eprintln!(
            "node_journey runs on the harness's own node only; skipped on an existing cluster"
        );
        return Ok(());
    }
    let started = Instant::now();
    let pg = PostgresServer::start()?;
    let s3 = S3Server::start()?;
    let node = NodeCluster::start(NodeOptions::from_harness()?).await?;
    let bring_up = started.elapsed();
    let result = journey(&node, &pg, &s3).await;
    if result.is_err() {
        let client = kubeconfig::client_from_file(node.admin_kubeconfig()).await?;
        eprintln!("pods:\n{}", node::describe_pods(&client, NAME).await);
        eprintln!(
            "operator pods:\n{}",
            node::describe_pods(&client, "skyvault-system").await
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

async fn journey(node: &NodeCluster, pg: &PostgresServer, s3: &S3Server) -> Result<()> {
    let kc = node.admin_kubeconfig().display().to_string();
    let client = kubeconfig::client_from_file(node.admin_kubeconfig()).await?;
    // The database and the bucket live outside the cluster, reachable from pods
    // on the bridge address (like a managed database and S3 would be).
    let (pg_port, _pg_fwd) = node::expose_to_pods(pg.port()).await?;
    let s3_port = s3
        .endpoint()
        .rsplit(':')
        .next()
        .context("S3 port")?
        .parse::<u16>()?;
    let (s3_fwd_port, _s3_fwd) = node::expose_to_pods(s3_port).await?;

    // 1. helm install the operator chart, image loaded into the node.
    let image = node.images().skyvault.clone();
    let (repo, tag) = image.rsplit_once(':').context("image tag")?;
    let t = Instant::now();
    let chart = helm::operator_chart_dir().display().to_string();
    let (kc2, repo2, tag2) = (kc.clone(), repo.to_owned(), tag.to_owned());
    tokio::task::spawn_blocking(move || {
        helm::helm(&[
            "install",
            "skyvault-operator",
            &chart,
            "--kubeconfig",
            &kc2,
            "--namespace",
            "skyvault-system",
            "--create-namespace",
            "--set",
            &format!("image.repository={repo2}"),
            "--set",
            &format!("image.tag={tag2}"),
            "--set",
            "image.pullPolicy=Never",
            "--set",
            "logFormat=text",
            "--wait",
            "--timeout",
            "5m",
        ])
    })
    .await??;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "skyvault-system");
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

    // 2. The user's namespace, Secrets and SkyVault.
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAME);
    for (name, data) in [
        (
            "skyvault-db",
            vec![(
                "url",
                format!("postgres://skyvault@{NODE_IP}:{pg_port}/skyvault"),
            )],
        ),
        (
            "skyvault-s3",
            vec![
                ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ],
        ),
    ] {
        secrets
            .create(
                &PostParams::default(),
                &Secret {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        ..Default::default()
                    },
                    string_data: Some(data.into_iter().map(|(k, v)| (k.into(), v)).collect()),
                    ..Default::default()
                },
            )
            .await?;
    }
    let small = json!({"requests": {"cpu": "50m"}});
    let sv = json!({
        "apiVersion": "skyvault.io/v1alpha1",
        "kind": "SkyVault",
        "metadata": {"name": NAME, "namespace": NAME},
        "spec": {
            "image": image,
            "imagePullPolicy": "Never",
            "objectStore": {
                "bucket": s3.bucket(),
                "prefix": "journey/",
                "endpoint": format!("http://{NODE_IP}:{s3_fwd_port}"),
                "region": "us-east-1",
                "pathStyle": true,
                "credentialsSecret": {"name": "skyvault-s3"},
            },
            "database": {"urlSecret": {"name": "skyvault-db", "key": "url"}},
            "batcher": {"replicas": 2, "resources": small},
            "index": {"replicas": 2, "cacheCapacityBytes": 33554432, "resources": small},
            "cache": {"replicas": 3, "cacheCapacityBytes": 33554432, "resources": small},
            "compaction": {"suspend": true},
            "purge": {"suspend": true, "gracePeriodSeconds": 60},
        },
    });
    let svs: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAME, &skyvault_resource());
    let t = Instant::now();
    svs.patch(
        NAME,
        &PatchParams::apply("skyvault-e2e-user").force(),
        &Patch::Apply(&sv),
    )
    .await?;

    // 3. Ready from real pod readiness.
    wait_ready(&svs, "the SkyVault to be Ready").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAME);
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

    // 4. gRPC through the Services, under load while pods come and go.
    let services: Api<Service> = Api::namespaced(client.clone(), NAME);
    let batcher_ip = cluster_ip(&services, &format!("{NAME}-batcher")).await?;
    let index_ip = cluster_ip(&services, &format!("{NAME}-index")).await?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let load_started = Instant::now();
    let w = tokio::spawn(writer(batcher_ip.clone(), tally.clone(), stop.clone()));
    let r = tokio::spawn(reader(index_ip.clone(), tally.clone(), stop.clone()));
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
    let victims = [format!("{NAME}-batcher-0"), format!("{NAME}-cache-1")];
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
    let stss: Api<StatefulSet> = Api::namespaced(client.clone(), NAME);
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
    let new_image = format!("{repo}:{tag}-b");
    node.tag_image(&image, &new_image)?;
    let t = Instant::now();
    svs.patch(
        NAME,
        &PatchParams::apply("skyvault-e2e-user").force(),
        &Patch::Apply(&json!({
            "apiVersion": "skyvault.io/v1alpha1",
            "kind": "SkyVault",
            "metadata": {"name": NAME, "namespace": NAME},
            "spec": {
                "image": new_image,
                "imagePullPolicy": "Never",
                "objectStore": sv["spec"]["objectStore"],
                "database": sv["spec"]["database"],
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
                bail!("{} writes", t.write_ok)
            }
        },
    )
    .await?;
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "journey: pod memory after the load (debug build): {:?}",
        pod_memory(&pods).await?
    );
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
    verify_all(&index_ip, &tally.acked).await?;
    eprintln!("journey: all {} acked keys read back", tally.acked.len());

    // Events tell the story.
    let events: Api<Event> = Api::namespaced(client.clone(), NAME);
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
    secrets
        .patch(
            "skyvault-s3",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"AWS_ACCESS_KEY_ID": "rotated"}})),
        )
        .await?;
    svs.patch(
        NAME,
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
    verify_all(&index_ip, &tally.acked).await?;
    eprintln!(
        "journey: a rotated S3 Secret rolled every pod in {:.1}s; acked keys still read back",
        t.elapsed().as_secs_f64()
    );

    // 5. Compaction and purge as real Job pods, results into status.
    let jobs: Api<Job> = Api::namespaced(client.clone(), NAME);
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
    verify_all(&index_ip, &tally.acked).await?;
    eprintln!("journey: all acked keys read back after compaction and purge");

    // 6. kubectl delete sv: everything it created goes away.
    svs.delete(NAME, &DeleteParams::foreground()).await?;
    wait_for(
        "the SkyVault's pods and StatefulSets to be gone",
        ROLLOUT_TIMEOUT,
        || async {
            let left_pods = pods.list(&ListParams::default()).await?.items.len();
            let left_sts = stss.list(&ListParams::default()).await?.items.len();
            let left_sv = svs.get_opt(NAME).await?.is_some();
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
