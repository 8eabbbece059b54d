//! How the test's clients reach a Service's pods.
//!
//! On the harness's own node the test runs on the node itself and connects to the
//! Service's ClusterIP (kube-proxy picks a pod per connection), as a client in the
//! cluster would. On any other cluster the ClusterIPs are not routable from the test:
//! [`ServiceForwarder`] listens on loopback and carries each accepted connection through
//! the API server's port-forward (the kubelet's streaming endpoint) to a pod the Service
//! currently counts as ready, picked per connection like kube-proxy does. When that pod
//! goes away its stream ends, the client's connection breaks and its next connection
//! lands on a pod that is still ready: the same failure a client behind kube-proxy sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};

/// How clients reach Services.
#[derive(Clone)]
pub enum ServiceAccess {
    /// Connect to the ClusterIP (the test runs on a node of the cluster).
    ClusterIp,
    /// Through the API server's port-forward ([`ServiceForwarder`]).
    PortForward,
}

/// An address a client can dial, valid while this lives.
pub struct Reach {
    /// `HOST:PORT`.
    pub addr: String,
    _forwarder: Option<ServiceForwarder>,
}

impl ServiceAccess {
    /// Where a client reaches `port` of Service `namespace/name`.
    pub async fn reach(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
        port: u16,
    ) -> Result<Reach> {
        match self {
            ServiceAccess::ClusterIp => {
                let services: Api<Service> = Api::namespaced(client.clone(), namespace);
                let ip = services
                    .get(name)
                    .await?
                    .spec
                    .and_then(|s| s.cluster_ip)
                    .filter(|ip| !ip.is_empty() && ip != "None")
                    .with_context(|| format!("Service {name} has no ClusterIP"))?;
                Ok(Reach {
                    addr: format!("{ip}:{port}"),
                    _forwarder: None,
                })
            }
            ServiceAccess::PortForward => {
                let f = ServiceForwarder::start(client.clone(), namespace, name, port).await?;
                Ok(Reach {
                    addr: f.local_addr().to_string(),
                    _forwarder: Some(f),
                })
            }
        }
    }
}

/// A loopback listener forwarding each connection to a ready pod of a Service through the
/// API server (`pods/portforward`). Stops when dropped.
pub struct ServiceForwarder {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ServiceForwarder {
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        service: &str,
        port: u16,
    ) -> Result<Self> {
        // The Service port's name, to find the pods' port in the EndpointSlices.
        let services: Api<Service> = Api::namespaced(client.clone(), namespace);
        let svc = services.get(service).await?;
        let port_name = svc
            .spec
            .and_then(|s| s.ports)
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.port == i32::from(port))
            .with_context(|| format!("Service {service} has no port {port}"))?
            .name;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let target = Arc::new(Target {
            pods: Api::namespaced(client.clone(), namespace),
            slices: Api::namespaced(client, namespace),
            service: service.to_owned(),
            port_name,
            next: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
        });
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Err(e) = target.forward(inbound).await {
                        // The client sees its connection close and retries; say why, but
                        // not for every retry of a long outage.
                        let n = target.failures.fetch_add(1, Ordering::Relaxed);
                        if n < 3 || n.is_multiple_of(100) {
                            eprintln!(
                                "port-forward to {} (failure {}): {e:#}",
                                target.service,
                                n + 1
                            );
                        }
                    }
                });
            }
        });
        Ok(Self { addr, task })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Drop for ServiceForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Target {
    pods: Api<Pod>,
    slices: Api<EndpointSlice>,
    service: String,
    port_name: Option<String>,
    next: AtomicUsize,
    failures: AtomicUsize,
}

impl Target {
    /// Ready endpoints of the Service: (pod name, container port).
    async fn ready_pods(&self) -> Result<Vec<(String, u16)>> {
        let lp =
            ListParams::default().labels(&format!("kubernetes.io/service-name={}", self.service));
        let mut out = Vec::new();
        for slice in self.slices.list(&lp).await?.items {
            let Some(port) = slice
                .ports
                .unwrap_or_default()
                .into_iter()
                .find(|p| p.name == self.port_name)
                .and_then(|p| p.port)
            else {
                continue;
            };
            for ep in slice.endpoints.into_iter().flatten() {
                let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                let terminating = ep.conditions.as_ref().and_then(|c| c.terminating) == Some(true);
                let pod = ep
                    .target_ref
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| r.name);
                if let (true, false, Some(pod)) = (ready, terminating, pod) {
                    out.push((pod, u16::try_from(port)?));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Carries one connection to one ready pod (the next in turn; another one if the
    /// port-forward to it cannot be opened).
    async fn forward(&self, mut inbound: tokio::net::TcpStream) -> Result<()> {
        let pods = self.ready_pods().await?;
        if pods.is_empty() {
            bail!("no ready endpoint");
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last_err = None;
        for i in 0..pods.len() {
            let (pod, port) = &pods[(first + i) % pods.len()];
            let mut pf = match self.pods.portforward(pod, &[*port]).await {
                Ok(pf) => pf,
                Err(e) => {
                    last_err = Some(anyhow::anyhow!("{pod}: {e}"));
                    continue;
                }
            };
            let mut stream = pf.take_stream(*port).context("port-forward stream")?;
            let _ = inbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut stream).await;
            drop(stream);
            pf.abort();
            return Ok(());
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("no pod answered")))
    }
}
