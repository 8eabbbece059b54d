//! Out of space: a full disk or an exhausted quota under the object store or
//! the metadata database (issue 23 item 6).
//!
//! A write that meets it fails `RESOURCE_EXHAUSTED` naming the cause, with
//! nothing written (the object PUT failed, or the database refused and rolled
//! back the commit). The batcher remembers the cause in a [`SpaceWatch`]:
//! its readiness says so, and while it is set a probe retries a small write
//! of each kind every [`PROBE_EVERY`]. The first flush or probe that succeeds
//! clears it, so the store recovers by itself once space returns, even when
//! an unready batcher gets no traffic to try with.

use crate::meta::DynMeta;
use crate::metrics::metrics;
use crate::objstore::DynStore;
use bytes::Bytes;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often a full batcher checks whether space has returned.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// The probe object: a write of about one small flush, deleted again.
const PROBE_OBJECT: &str = "_skyvault/space-probe";
const PROBE_BYTES: usize = 64 << 10;

/// Whatever failed for want of space, and why; clears on the first success.
#[derive(Default)]
pub struct SpaceWatch {
    cause: Mutex<Option<String>>,
}

impl SpaceWatch {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The cause while out of space.
    pub fn full(&self) -> Option<String> {
        self.cause.lock().expect("space lock").clone()
    }

    pub fn mark_full(&self, cause: &str) {
        let mut current = self.cause.lock().expect("space lock");
        if current.is_none() {
            tracing::error!(%cause, "out of space: writes fail RESOURCE_EXHAUSTED until space returns");
        }
        *current = Some(cause.to_string());
        metrics().storage_full.set(1);
    }

    /// Called after every successful flush: does nothing unless marked.
    pub fn clear(&self) {
        if self.cause.lock().expect("space lock").take().is_some() {
            tracing::info!("space returned: writes accepted again");
            metrics().storage_full.set(0);
        }
    }

    /// While out of space, probes every [`PROBE_EVERY`] until a probe
    /// succeeds; stops when the watch is dropped.
    pub fn spawn_probe(self: &Arc<Self>, store: DynStore, meta: DynMeta) {
        tokio::spawn(probe_while_full(Arc::downgrade(self), store, meta));
    }
}

async fn probe_while_full(watch: Weak<SpaceWatch>, store: DynStore, meta: DynMeta) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(watch) = watch.upgrade() else {
            return;
        };
        if watch.full().is_none() {
            continue;
        }
        // A probe failing for another reason (the store unreachable) keeps
        // the cause: only a success says space is back.
        match probe(&store, &meta).await {
            Ok(()) => watch.clear(),
            Err(e) => tracing::debug!(error = %e, "space probe failed"),
        }
    }
}

/// A small real write to each: an object PUT (then deleted) and an insert
/// into the database (a one-second writer intent, cleaned up with the
/// others an hour after it expires).
async fn probe(store: &DynStore, meta: &DynMeta) -> Result<(), String> {
    let put = store
        .put(PROBE_OBJECT, Bytes::from(vec![0u8; PROBE_BYTES]))
        .await;
    if let Err(e) = put {
        return Err(e.to_string());
    }
    let _ = store.delete(PROBE_OBJECT).await;
    let writer = format!("{:016x}", rand::random::<u64>());
    meta.register_writer(&writer, Duration::from_secs(1))
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_kept_until_cleared() {
        let watch = SpaceWatch::new();
        assert_eq!(watch.full(), None);
        watch.mark_full("disk full");
        watch.mark_full("still full");
        assert_eq!(watch.full().as_deref(), Some("still full"));
        watch.clear();
        assert_eq!(watch.full(), None);
    }
}
