//! Strong (linearizable) reads, batched like etcd's ReadIndex.
//!
//! A strong read must see every write acknowledged before it started. The
//! index learns the latest committed sequence from the metadata database —
//! the only place every batcher's commits meet — and answers once it has
//! applied it. Asking once per read would put one query per read on the
//! database, so reads queue here and one task serves them in rounds: a round
//! takes every read queued so far, asks the database once (and catches up
//! once if the index is behind), and answers them all. Reads arriving while a
//! round runs wait for the next one, because a round that started before a
//! read arrived may miss a write acknowledged just before that read.

use super::Index;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};

/// One queued strong read: where to send the sequence it must wait for.
pub(super) type Waiter = oneshot::Sender<Result<u64, String>>;

pub(super) fn channel() -> (
    mpsc::UnboundedSender<Waiter>,
    mpsc::UnboundedReceiver<Waiter>,
) {
    mpsc::unbounded_channel()
}

/// Serves rounds until the index is dropped.
pub(super) async fn serve(index: Weak<Index>, mut queue: mpsc::UnboundedReceiver<Waiter>) {
    while let Some(first) = queue.recv().await {
        let mut waiters = vec![first];
        while let Ok(next) = queue.try_recv() {
            waiters.push(next);
        }
        let Some(index) = index.upgrade() else { return };
        index
            .read_index_queued
            .fetch_sub(waiters.len(), Ordering::SeqCst);
        let result = round(&index).await;
        for waiter in waiters {
            // A read whose client gave up has dropped its receiver.
            let _ = waiter.send(result.clone());
        }
    }
}

/// One database question for every read queued before it started.
async fn round(index: &Index) -> Result<u64, String> {
    index.read_index_rounds.fetch_add(1, Ordering::SeqCst);
    crate::metrics::metrics().index_read_index_rounds.inc();
    let committed = index
        .meta
        .current_version()
        .await
        .map_err(|e| e.to_string())?;
    // Usually the follow task has applied it already; if not, one catch-up
    // here spares every read of the round from waiting for the next poll
    // (other processes' commits reach us by NOTIFY or the poll otherwise).
    if index.applied_sequence() < committed {
        index.catch_up().await.map_err(|e| e.to_string())?;
    }
    Ok(committed)
}
