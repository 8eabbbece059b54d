//! Writer intents: purge never deletes an object a writer is about to commit
//! (invariant 7; issue 12 item 1, for flushes).
//!
//! A batcher PUTs each flush's file and commits its row afterwards. Purge
//! lists the store, so between the PUT and the commit the object looks like
//! an orphan; a commit slower than the grace period would lose it and then
//! commit a row pointing at nothing. Instead of trusting the grace period:
//!
//! - each batcher process holds one *intent* row (`writer_intents`, migration
//!   0004) under a random writer id, recorded before its first PUT and renewed
//!   in the background (one row per process, not one per flush: the hot path
//!   costs nothing but one indexed check per commit transaction);
//! - its WAL objects are named `wal/<ms>-<writer>-<n>.sst` ([`wal_object_name`]);
//! - purge keeps every unreferenced object whose writer's intent is live;
//! - a commit of such an object checks, last in its transaction, that the
//!   intent is still live for at least [`COMMIT_MARGIN`]; otherwise nothing is
//!   committed (`Conflict`, reported as "nothing was committed");
//! - an expired intent is never renewed again: the batcher takes a new id.
//!
//! Why that is enough: purge lists objects, then reads the live intents, then
//! the rows. If purge saw an object's intent expired, the intent was expired
//! for good, so any later commit of that object fails its check and purge may
//! delete it. If purge saw the intent live, it keeps the object. The margin
//! covers the moment between a commit's check and its COMMIT.

use crate::meta::{DynMeta, MetaResult};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long an intent lives without renewal.
pub const INTENT_TTL: Duration = Duration::from_secs(60);
/// How often a live intent is renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A commit needs its intent live at least this long after its check: far
/// longer than the check-to-COMMIT step of a transaction can take.
pub const COMMIT_MARGIN: Duration = Duration::from_secs(15);

/// `wal/<unix ms>-<writer>-<random>.sst`: time-ordered, collision-free, and
/// naming the writer whose intent protects it until it is committed.
pub fn wal_object_name(writer: &str) -> String {
    format!(
        "wal/{:013}-{writer}-{:016x}.sst",
        crate::meta::now_ms(),
        rand::random::<u64>()
    )
}

/// The writer named by a [`wal_object_name`] (None for other names, such as
/// WAL files written before intents existed: those rely on the grace period).
pub fn writer_of_wal(path: &str) -> Option<&str> {
    let name = path.strip_prefix("wal/")?.strip_suffix(".sst")?;
    let mut parts = name.split('-');
    let (_ms, writer, _n) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && writer.len() == 16
        && writer.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some(writer)
}

/// The distinct writers of a commit's files, for the commit's check.
pub fn writers_of<'a>(objects: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut writers: Vec<&str> = objects.into_iter().filter_map(writer_of_wal).collect();
    writers.sort_unstable();
    writers.dedup();
    writers
}

/// One process's intent: the writer id its flushes name objects with.
pub struct WriterIntent {
    meta: DynMeta,
    current: Mutex<Option<String>>,
    renewer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl WriterIntent {
    /// No row yet: the first [`WriterIntent::writer`] records it.
    pub fn new(meta: DynMeta) -> Arc<Self> {
        Arc::new(WriterIntent {
            meta,
            current: Mutex::new(None),
            renewer: Mutex::new(None),
        })
    }

    /// The live writer id to name the next object with; records a new
    /// intent first when there is none (at start, or after one expired).
    pub async fn writer(self: &Arc<Self>) -> MetaResult<String> {
        if let Some(writer) = self.current.lock().expect("intent lock").clone() {
            return Ok(writer);
        }
        let writer = format!("{:016x}", rand::random::<u64>());
        self.meta.register_writer(&writer, INTENT_TTL).await?;
        let mut current = self.current.lock().expect("intent lock");
        if let Some(other) = current.clone() {
            // A concurrent flush registered first: use its id, ours expires.
            return Ok(other);
        }
        *current = Some(writer.clone());
        let task = tokio::spawn(renew(Arc::downgrade(self), writer.clone()));
        if let Some(old) = self.renewer.lock().expect("intent lock").replace(task) {
            old.abort();
        }
        tracing::info!(%writer, "writer intent recorded");
        Ok(writer)
    }

    /// Forgets `writer` (its intent expired): the next flush takes a new id.
    fn expired(&self, writer: &str) {
        let mut current = self.current.lock().expect("intent lock");
        if current.as_deref() == Some(writer) {
            *current = None;
        }
    }
}

impl Drop for WriterIntent {
    fn drop(&mut self) {
        if let Some(task) = self.renewer.lock().expect("intent lock").take() {
            task.abort();
        }
    }
}

async fn renew(intent: std::sync::Weak<WriterIntent>, writer: String) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let Some(intent) = intent.upgrade() else {
            return;
        };
        match intent.meta.renew_writer(&writer, INTENT_TTL).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(%writer, "writer intent expired; uncommitted flushes of it fail, the next flush takes a new one");
                intent.expired(&writer);
                return;
            }
            // Retried on the next tick; commits fail on their own check if
            // the intent runs out meanwhile.
            Err(e) => tracing::warn!(%writer, error = %e, "renewing the writer intent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_names_carry_their_writer() {
        let name = wal_object_name("0123456789abcdef");
        assert_eq!(writer_of_wal(&name), Some("0123456789abcdef"));
        assert_eq!(
            writer_of_wal("wal/1796033117710-60e0d134f8959356.sst"),
            None
        );
        assert_eq!(writer_of_wal("wal/1-xyz-3.sst"), None);
        assert_eq!(writer_of_wal("run/1-0123456789abcdef-3.sst"), None);
        let a = wal_object_name("0123456789abcdef");
        let b = wal_object_name("fedcba9876543210");
        let writers = writers_of([a.as_str(), "wal/x.sst", b.as_str(), a.as_str()]);
        assert_eq!(writers, vec!["0123456789abcdef", "fedcba9876543210"]);
    }
}
