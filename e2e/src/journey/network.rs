//! The operator's NetworkPolicies, enforced (docs/security.md): seen from pods, not read
//! back from the API. Two probe pods run the SkyVault image and are identical but for
//! their labels: one carries the index pods' selector labels (component `index`), the
//! other does not (component `netpol-probe`). Each runs `skyvault get`/`put` through
//! `kubectl exec`, with the SkyVault's CA and a client certificate, so the server
//! answers (a value, NotFound, Unimplemented, Unauthenticated...) when the connection
//! is let through, and the command fails with "cannot connect" when it is rejected.
//!
//! - every cache pod's gRPC port answers the index-labelled probe and refuses the
//!   other one (`NAME-cache`: gRPC from this SkyVault's index pods only);
//! - the batcher and index Services take the other probe's calls (`clients` empty:
//!   anyone), a write through the batcher included;
//! - with `spec.networkPolicy.clients` set to a pod label, the batcher and the index
//!   refuse the probe until it is given that label, then answer it; the field is then
//!   removed again.
//!
//! On the harness's own node kube-router's network policy controller enforces them
//! (`crate::node`); on an existing cluster the CNI must (a plain bridge or flannel does
//! not: `SKYVAULT_E2E_SKIP_NETWORK_POLICY=1` skips these checks there).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, AttachParams, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use serde_json::json;
use tokio::io::AsyncReadExt;

use super::SV_NAME;
use super::rollout::wait_ready;
use crate::wait_for;

/// Set to `1` to skip these checks on an existing cluster whose CNI does not enforce
/// NetworkPolicies.
pub const SKIP_ENV: &str = "SKYVAULT_E2E_SKIP_NETWORK_POLICY";
/// The label `spec.networkPolicy.clients` selects in the clients check.
const CLIENT_LABEL: &str = "skyvault-e2e/netpol-client";
const TOKEN_SECRET: &str = "netpol-probe-token";
const INDEX_PROBE: &str = "netpol-probe-index";
const OTHER_PROBE: &str = "netpol-probe-other";
/// How long a policy change may take to reach the node (operator, then the enforcer).
const PROPAGATION: Duration = Duration::from_secs(30);
/// The client flags of every probe call: TLS checked against the SkyVault's CA, the
/// journey's certificate as client identity (the caches ask for one), the write token.
const CLIENT_FLAGS: [&str; 4] = [
    "--server-ca-file=/tls/ca.crt",
    "--client-cert-file=/tls/tls.crt",
    "--client-key-file=/tls/tls.key",
    "--token-file=/token/token",
];

/// What the SkyVault looks like to the probes.
pub struct NetworkCheck<'a> {
    pub client: &'a kube::Client,
    pub svs: &'a Api<DynamicObject>,
    pub namespace: &'a str,
    pub image: &'a str,
    pub pull_policy: &'a str,
    /// Secret with `ca.crt`, `tls.crt`, `tls.key` (the SkyVault's spec.tls Secret).
    pub tls_secret: &'a str,
    /// A write token the batcher accepts.
    pub token: &'a str,
}

/// What a probe call came back with.
#[derive(Debug, PartialEq)]
enum Reach {
    /// The server answered (the command's output says how).
    Answered(String),
    /// No connection: rejected (or nothing there; the index-labelled twin tells which).
    Refused(String),
}

impl<'a> NetworkCheck<'a> {
    /// Runs every check and removes the probes; returns a one-line summary.
    pub async fn run(&self) -> Result<String> {
        if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
            return Ok(format!("skipped ({SKIP_ENV}=1)"));
        }
        let started = Instant::now();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.namespace);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace);
        let token: Secret = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": TOKEN_SECRET},
            "stringData": {"token": self.token},
        }))?;
        secrets.create(&PostParams::default(), &token).await?;
        for (name, component) in [(INDEX_PROBE, "index"), (OTHER_PROBE, "netpol-probe")] {
            pods.create(&PostParams::default(), &self.probe_pod(name, component)?)
                .await
                .with_context(|| format!("create pod {name}"))?;
        }
        for name in [INDEX_PROBE, OTHER_PROBE] {
            wait_for(
                &format!("probe pod {name} to run"),
                Duration::from_secs(120),
                || async {
                    let pod = pods.get(name).await?;
                    let running = pod
                        .status
                        .and_then(|s| s.container_statuses)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
                    ensure!(running, "not running yet");
                    Ok(())
                },
            )
            .await?;
        }
        let result = self.checks(&pods).await;
        let cleaned = self.remove_probes(&pods, &secrets).await;
        let summary = result?;
        cleaned?;
        Ok(format!(
            "{summary} ({:.1}s)",
            started.elapsed().as_secs_f64()
        ))
    }

    async fn checks(&self, pods: &Api<Pod>) -> Result<String> {
        let ns = self.namespace;
        // 1. The caches' gRPC port: the index-labelled probe gets an answer from every
        //    cache pod, the other probe (same pod spec, other component label) is refused.
        let caches = pods
            .list(&ListParams::default().labels(&format!(
                "app.kubernetes.io/instance={SV_NAME},app.kubernetes.io/component=cache"
            )))
            .await?;
        let mut cache_addrs: Vec<String> = caches
            .items
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .map(|name| format!("{name}.{SV_NAME}-cache-headless.{ns}.svc:50051"))
            .collect();
        cache_addrs.sort();
        ensure!(!cache_addrs.is_empty(), "no cache pods");
        let mut cache_answer = String::new();
        for addr in &cache_addrs {
            let get = ["get", "--addr", addr.as_str(), "netpol-probe"];
            cache_answer = self
                .until(pods, INDEX_PROBE, &get, true, "the index-labelled probe")
                .await
                .with_context(|| {
                    format!("a pod with the index pods' labels cannot reach the cache at {addr}")
                })?;
            self.until(pods, OTHER_PROBE, &get, false, "the other probe")
                .await
                .with_context(|| {
                    format!(
                        "a pod that is not an index pod reaches the cache at {addr}: NetworkPolicy \
                         {SV_NAME}-cache not enforced"
                    )
                })?;
        }
        // 2. The Services stay open to anyone while `clients` is empty.
        let batcher = format!("{SV_NAME}-batcher.{ns}.svc:50051");
        let index = format!("{SV_NAME}-index.{ns}.svc:50051");
        let put = [
            "put",
            "--addr",
            batcher.as_str(),
            "netpol-probe",
            "from-a-pod",
        ];
        let get = ["get", "--addr", index.as_str(), "netpol-probe"];
        let wrote = match self.call(pods, OTHER_PROBE, &put).await? {
            Reach::Answered(out) if out.contains("OK sequence=") => out,
            other => bail!("a pod's write through {batcher}: {other:?}"),
        };
        let read = match self.call(pods, OTHER_PROBE, &get).await? {
            Reach::Answered(out) => out,
            other => bail!("a pod's read through {index}: {other:?}"),
        };
        // 3. `clients` set to a pod label: the probe without it is refused by both
        //    Services, the same pod once labelled gets through.
        self.set_clients(json!([{"podSelector": {"matchLabels": {CLIENT_LABEL: "true"}}}]))
            .await?;
        for call in [&put[..], &get[..]] {
            self.until(pods, OTHER_PROBE, call, false, "the unlabelled probe")
                .await?;
        }
        pods.patch(
            OTHER_PROBE,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {CLIENT_LABEL: "true"}}})),
        )
        .await?;
        for call in [&put[..], &get[..]] {
            self.until(pods, OTHER_PROBE, call, true, "the labelled probe")
                .await?;
        }
        self.set_clients(serde_json::Value::Null).await?;
        Ok(format!(
            "{n} cache pods answer an index-labelled pod ({cache_answer:?}) and refuse its twin \
             labelled otherwise; a pod writes through the batcher ({wrote:?}) and reads through \
             the index ({read:?}); with clients set, both refuse it until it has the label",
            n = cache_addrs.len()
        ))
    }

    /// `spec.networkPolicy.clients` (`null`: back to the default, anyone), then waits for
    /// the operator to have written it into the batcher's and the index's policies.
    async fn set_clients(&self, clients: serde_json::Value) -> Result<()> {
        let patch = if clients.is_null() {
            json!({"spec": {"networkPolicy": null}})
        } else {
            json!({"spec": {"networkPolicy": {"clients": clients}}})
        };
        self.svs
            .patch(SV_NAME, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        let restricted = !clients.is_null();
        let policies: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), self.namespace);
        wait_for(
            "the operator to update the batcher's and the index's NetworkPolicies",
            PROPAGATION,
            || async {
                for role in ["batcher", "index"] {
                    let p = policies.get(&format!("{SV_NAME}-{role}")).await?;
                    let from = p
                        .spec
                        .and_then(|s| s.ingress)
                        .and_then(|i| i.into_iter().next())
                        .and_then(|rule| rule.from);
                    ensure!(from.is_some() == restricted, "{role}: from {from:?}");
                }
                Ok(())
            },
        )
        .await?;
        if !restricted {
            wait_ready(self.svs, "Ready after networkPolicy.clients was removed").await?;
        }
        Ok(())
    }

    /// Repeats `args` in `pod` until it is answered (`answered`) or refused, for as long as
    /// a policy change may take to be enforced, then once more: it must stay so (a steady
    /// state, not a moment). Returns the last output.
    async fn until(
        &self,
        pods: &Api<Pod>,
        pod: &str,
        args: &[&str],
        answered: bool,
        who: &str,
    ) -> Result<String> {
        let want = if answered { "answered" } else { "refused" };
        let what = format!("{who} to be {want}: skyvault {}", args.join(" "));
        let check = || async {
            match self.call(pods, pod, args).await? {
                Reach::Answered(out) if answered => Ok(out),
                Reach::Refused(out) if !answered => Ok(out),
                other => bail!("{other:?}"),
            }
        };
        wait_for(&what, PROPAGATION, check).await?;
        check().await.with_context(|| format!("{what}, again"))
    }

    /// `skyvault ARGS` with the client flags, run in `pod`.
    async fn call(&self, pods: &Api<Pod>, pod: &str, args: &[&str]) -> Result<Reach> {
        let command: Vec<String> = std::iter::once("skyvault")
            .chain(args.iter().copied())
            .chain(CLIENT_FLAGS)
            .map(str::to_string)
            .collect();
        let (ok, out) = tokio::time::timeout(Duration::from_secs(30), exec(pods, pod, &command))
            .await
            .with_context(|| format!("exec in {pod} timed out: {}", command.join(" ")))??;
        if out.contains("cannot connect to SkyVault at") {
            return Ok(Reach::Refused(out));
        }
        // A failure that is not the server's answer (the exec itself, a bad flag) is
        // neither.
        ensure!(
            ok || out.starts_with("error: "),
            "{pod}: {}: {out}",
            command.join(" ")
        );
        Ok(Reach::Answered(out))
    }

    fn probe_pod(&self, name: &str, component: &str) -> Result<Pod> {
        let labels = BTreeMap::from([
            ("app.kubernetes.io/name", "skyvault"),
            ("app.kubernetes.io/instance", SV_NAME),
            ("app.kubernetes.io/component", component),
            ("skyvault-e2e/netpol-probe", "true"),
        ]);
        Ok(serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": false,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [{
                    "name": "probe",
                    "image": self.image,
                    "imagePullPolicy": self.pull_policy,
                    // Something to exec in: a store on loopback only, serving nobody.
                    "args": [
                        "standalone",
                        "--data-dir=/tmp/probe",
                        "--grpc-addr=127.0.0.1:50051",
                        "--http-addr=127.0.0.1:9090",
                        "--maintenance-interval-secs=0",
                    ],
                    // Never ready: the index-labelled probe must not become an endpoint
                    // of the index Services (the other one carries the same probe).
                    "readinessProbe": {"tcpSocket": {"port": 1}, "periodSeconds": 60},
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "tls", "mountPath": "/tls", "readOnly": true},
                        {"name": "token", "mountPath": "/token", "readOnly": true},
                    ],
                }],
                "volumes": [
                    {"name": "tls", "secret": {"secretName": self.tls_secret}},
                    {"name": "token", "secret": {"secretName": TOKEN_SECRET}},
                ],
            },
        }))?)
    }

    async fn remove_probes(&self, pods: &Api<Pod>, secrets: &Api<Secret>) -> Result<()> {
        let now = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        for name in [INDEX_PROBE, OTHER_PROBE] {
            let _ = pods.delete(name, &now).await;
        }
        let _ = secrets.delete(TOKEN_SECRET, &DeleteParams::default()).await;
        wait_for(
            "the probe pods to be gone",
            Duration::from_secs(60),
            || async {
                for name in [INDEX_PROBE, OTHER_PROBE] {
                    ensure!(pods.get_opt(name).await?.is_none(), "{name} still there");
                }
                Ok(())
            },
        )
        .await
    }
}

/// Runs `command` in the first container of `pod`: (exited 0, stdout + stderr).
async fn exec(pods: &Api<Pod>, pod: &str, command: &[String]) -> Result<(bool, String)> {
    let mut process = pods
        .exec(
            pod,
            command.to_vec(),
            &AttachParams::default()
                .stdin(false)
                .stdout(true)
                .stderr(true),
        )
        .await
        .with_context(|| format!("exec in {pod}"))?;
    let mut stdout = process.stdout().context("exec stdout")?;
    let mut stderr = process.stderr().context("exec stderr")?;
    let status = process.take_status().context("exec status")?;
    let (mut out, mut err) = (String::new(), String::new());
    tokio::try_join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    )?;
    let status = status.await;
    process.join().await.context("exec")?;
    let ok = status.and_then(|s| s.status).as_deref() == Some("Success");
    let both = [out.trim(), err.trim()];
    Ok((
        ok,
        both.iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}
