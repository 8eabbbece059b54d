//! Leader election over a coordination.k8s.io/v1 Lease (kube-lease-manager), so two
//! operator replicas never reconcile at once. A replica that loses the Lease stops its
//! controller (letting in-flight reconciles finish) and stands by again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// Where the Lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// Seconds a Lease stays valid without renewal; a crashed leader is replaced after this.
    pub duration_secs: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace_secs: u64,
}

/// Run `work` whenever this replica holds the Lease, until `shutdown` turns true.
/// `work` receives a future that resolves when it must stop (leadership lost or shutdown).
pub async fn run_as_leader<W, Fut>(
    client: Client,
    cfg: LeaseConfig,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    mut work: W,
) -> anyhow::Result<()>
where
    W: FnMut(StopSignal) -> Fut,
    Fut: Future<Output = ()>,
{
    let manager = LeaseManagerBuilder::new(client, &cfg.name)
        .with_namespace(&cfg.namespace)
        .with_identity(&cfg.identity)
        .with_duration(cfg.duration_secs)
        .with_grace(cfg.grace_secs)
        .build()
        .await?;
    info!(lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity, "waiting for leadership");
    let (leader, task) = manager.watch().await;
    let outcome = lead_loop(leader.clone(), &metrics, shutdown, &mut work).await;
    // Closing the channel makes the manager release the Lease, so a standby takes over
    // at once instead of after the Lease expires.
    drop(leader);
    match task.await {
        Ok(Ok(_)) => info!("lease released"),
        Ok(Err(e)) => warn!(error = %e, "lease manager stopped with an error"),
        Err(e) => warn!(error = %e, "lease manager task failed"),
    }
    metrics.leader.set(0);
    outcome
}

async fn lead_loop<W, Fut>(
    leader: watch::Receiver<bool>,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
    work: &mut W,
) -> anyhow::Result<()>
where
    W: FnMut(StopSignal) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let mut waiting = leader.clone();
        tokio::select! {
            won = waiting.wait_for(|is_leader| *is_leader) => {
                won.map_err(|_| anyhow::anyhow!("lease manager stopped"))?;
            }
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        }
        info!("became leader");
        metrics.leader.set(1);
        work(stop_signal(Some(leader.clone()), shutdown.clone())).await;
        metrics.leader.set(0);
        if *shutdown.borrow() {
            return Ok(());
        }
        warn!("lost leadership; standing by");
    }
}

/// A future that resolves when the controller must stop. It is `Send + Sync`, as the
/// controller's graceful-shutdown hook requires.
pub struct StopSignal(futures::channel::oneshot::Receiver<()>);

impl Future for StopSignal {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Ok (signalled) and Err (watcher task gone) both mean stop.
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// Resolves when `shutdown` turns true or, if given, `leader` turns false.
pub fn stop_signal(
    leader: Option<watch::Receiver<bool>>,
    mut shutdown: watch::Receiver<bool>,
) -> StopSignal {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    tokio::spawn(async move {
        let lost = async {
            match leader {
                Some(mut l) => drop(l.wait_for(|is_leader| !*is_leader).await),
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = lost => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        let _ = tx.send(());
    });
    StopSignal(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn works_only_while_leader_and_stops_on_shutdown() {
        let metrics = Metrics::new();
        let (leader_tx, leader_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let runs = Arc::new(AtomicUsize::new(0));
        let runs2 = runs.clone();
        let mut work = move |stop: StopSignal| {
            runs2.fetch_add(1, Ordering::SeqCst);
            stop
        };
        let driver = async {
            leader_tx.send(true).unwrap();
            wait_until(|| runs.load(Ordering::SeqCst) == 1).await;
            // Lose and regain leadership: the work restarts.
            leader_tx.send(false).unwrap();
            wait_until(|| metrics.leader.get() == 0).await;
            leader_tx.send(true).unwrap();
            wait_until(|| runs.load(Ordering::SeqCst) == 2).await;
            stop_tx.send(true).unwrap();
        };
        let (result, ()) = tokio::join!(lead_loop(leader_rx, &metrics, stop_rx, &mut work), driver);
        result.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(metrics.leader.get(), 0);
    }

    #[tokio::test]
    async fn shutdown_while_standing_by_returns_without_working() {
        let metrics = Metrics::new();
        let (_leader_tx, leader_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut ran = false;
        let mut work = |stop: StopSignal| {
            ran = true;
            stop
        };
        stop_tx.send(true).unwrap();
        lead_loop(leader_rx, &metrics, stop_rx, &mut work)
            .await
            .unwrap();
        assert!(!ran);
    }

    async fn wait_until(cond: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !cond() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("condition within 5s");
    }
}
