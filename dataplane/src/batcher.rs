//! The write path: group commit of client writes into immutable files.
//!
//! Read this file top to bottom:
//! 1. [`Batcher::write`] queues one request (bounded queue: overload is
//!    rejected at once, never buffered without limit);
//! 2. [`collect`] groups queued requests into a batch and decides when to
//!    flush: at once when no flush is running (low latency at low load), when
//!    the batch reaches `max_batch_bytes`, or when its oldest request has
//!    waited `max_batch_age` while other flushes run (large batches under
//!    load), with at most `max_concurrent_flushes` flushes in flight;
//! 3. [`flush`] keeps the last write per key in request order, builds one
//!    SSTable, PUTs it, commits its metadata row (in batch order, after the
//!    previous flush), and only then acks every request of the batch.
//!
//! A crash anywhere before the commit loses only un-acked writes; an object
//! PUT without its commit is an orphan that purge removes later.

use crate::meta::{DynMeta, FileKind, NewFile};
use crate::metrics::metrics;
use crate::objstore::DynStore;
use crate::sstable::{Entry, Value, Writer, WriterOptions};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

#[derive(Clone, Debug)]
pub struct BatcherConfig {
    /// Flush once a batch holds this many key+value bytes.
    pub max_batch_bytes: usize,
    /// Longest a request waits for company while other flushes are running.
    pub max_batch_age: Duration,
    /// Flushes (build + PUT + commit) running at once.
    pub max_concurrent_flushes: usize,
    /// Requests waiting to be flushed; beyond it writes get RESOURCE_EXHAUSTED.
    pub queue_capacity: usize,
    pub writer: WriterOptions,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig {
            max_batch_bytes: 4 << 20,
            max_batch_age: Duration::from_millis(5),
            max_concurrent_flushes: 4,
            queue_capacity: 4096,
            writer: WriterOptions::default(),
        }
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("write queue is full ({0} requests waiting); retry with backoff")]
    Overloaded(usize),
    #[error("write failed, nothing was committed: {0}")]
    Unavailable(String),
    #[error("batcher is shutting down")]
    ShuttingDown,
}

type Reply = oneshot::Sender<Result<u64, WriteError>>;

/// One client request waiting for its batch.
struct Pending {
    entries: Vec<Entry>,
    bytes: usize,
    queued_at: Instant,
    reply: Reply,
}

#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Pending>,
    capacity: usize,
}

impl Batcher {
    /// Starts the collector task; it stops once every `Batcher` clone is dropped
    /// and the queued requests are flushed.
    pub fn start(
        config: BatcherConfig,
        store: DynStore,
        meta: DynMeta,
    ) -> (Batcher, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let capacity = config.queue_capacity;
        let task = tokio::spawn(collect(config, store, meta, rx));
        (
            Batcher {
                queue: tx,
                capacity,
            },
            task,
        )
    }

    /// Queues the entries (already validated, in request order) and waits
    /// until they are durable and committed. Returns the commit sequence.
    pub async fn write(&self, entries: Vec<Entry>) -> Result<u64, WriteError> {
        let bytes = entries.iter().map(entry_bytes).sum();
        let (reply, done) = oneshot::channel();
        let pending = Pending {
            entries,
            bytes,
            queued_at: Instant::now(),
            reply,
        };
        self.queue.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => WriteError::Overloaded(self.capacity),
            mpsc::error::TrySendError::Closed(_) => WriteError::ShuttingDown,
        })?;
        metrics().batcher_queue.inc();
        done.await.unwrap_or(Err(WriteError::ShuttingDown))
    }
}

fn entry_bytes(e: &Entry) -> usize {
    e.key.len()
        + match &e.value {
            Value::Put(v) => v.len(),
            Value::Delete => 0,
        }
}

#[derive(Default)]
struct Batch {
    requests: Vec<Pending>,
    bytes: usize,
}

impl Batch {
    fn push(&mut self, p: Pending) {
        metrics().batcher_queue.dec();
        self.bytes += p.bytes;
        self.requests.push(p);
    }

    fn oldest(&self) -> Option<Instant> {
        self.requests.first().map(|p| p.queued_at)
    }
}

async fn collect(
    config: BatcherConfig,
    store: DynStore,
    meta: DynMeta,
    mut queue: mpsc::Receiver<Pending>,
) {
    let mut batch = Batch::default();
    let mut flushes = JoinSet::new();
    // Each flush commits only after the previous one did, so commit sequence
    // order is batch order.
    let mut previous_commit: Option<oneshot::Receiver<()>> = None;
    let mut open = true;
    loop {
        while batch.bytes < config.max_batch_bytes {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let slot_free = flushes.len() < config.max_concurrent_flushes;
        let aged = batch
            .oldest()
            .is_some_and(|t| t.elapsed() >= config.max_batch_age);
        let due = flushes.is_empty() || aged || batch.bytes >= config.max_batch_bytes || !open;
        if !batch.requests.is_empty() && slot_free && due {
            let (committed, next) = oneshot::channel();
            let wait_for = previous_commit.replace(next);
            let ctx = FlushContext {
                store: store.clone(),
                meta: meta.clone(),
                writer: config.writer.clone(),
            };
            flushes.spawn(flush(ctx, std::mem::take(&mut batch), wait_for, committed));
            continue;
        }
        if !open && batch.requests.is_empty() {
            break;
        }
        let deadline = batch
            .oldest()
            .map(|t| tokio::time::Instant::from_std(t + config.max_batch_age));
        tokio::select! {
            received = queue.recv(), if open && batch.bytes < config.max_batch_bytes => match received {
                Some(p) => batch.push(p),
                None => open = false,
            },
            Some(_) = flushes.join_next(), if !flushes.is_empty() => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                if deadline.is_some() && slot_free => {}
        }
    }
    while flushes.join_next().await.is_some() {}
}

struct FlushContext {
    store: DynStore,
    meta: DynMeta,
    writer: WriterOptions,
}

async fn flush(
    ctx: FlushContext,
    batch: Batch,
    previous_commit: Option<oneshot::Receiver<()>>,
    committed: oneshot::Sender<()>,
) {
    let started = Instant::now();
    if let Some(oldest) = batch.oldest() {
        metrics()
            .batch_age
            .observe(started.duration_since(oldest).as_secs_f64());
    }
    let (requests, entries) = last_write_wins(batch.requests);
    let result = write_and_commit(&ctx, entries, previous_commit).await;
    // Dropping `committed` (also on error) lets the next flush commit.
    drop(committed);
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics().flushes.with_label_values(&[outcome]).inc();
    metrics()
        .flush_duration
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        tracing::warn!(error = %e, requests = requests.len(), "flush failed; requests not acked");
    }
    for reply in requests {
        let _ = reply.send(result.clone());
    }
}

/// Merges the batch's requests in arrival order into one sorted map: a later
/// write to a key (in a later request, or later in the same request) wins.
fn last_write_wins(requests: Vec<Pending>) -> (Vec<Reply>, BTreeMap<Bytes, Value>) {
    let mut merged = BTreeMap::new();
    let mut replies = Vec::with_capacity(requests.len());
    for p in requests {
        for e in p.entries {
            merged.insert(e.key, e.value);
        }
        replies.push(p.reply);
    }
    (replies, merged)
}

async fn write_and_commit(
    ctx: &FlushContext,
    entries: BTreeMap<Bytes, Value>,
    previous_commit: Option<oneshot::Receiver<()>>,
) -> Result<u64, WriteError> {
    let unavailable =
        |what: &str, e: &dyn std::fmt::Display| WriteError::Unavailable(format!("{what}: {e}"));
    let new_file = {
        let first = entries.keys().next().cloned().unwrap_or_default();
        let last = entries.keys().next_back().cloned().unwrap_or_default();
        let count = entries.len() as u64;
        let opts = ctx.writer.clone();
        let data = tokio::task::spawn_blocking(move || build_file(opts, entries))
            .await
            .map_err(|e| unavailable("building file", &e))?
            .map_err(|e| unavailable("building file", &e))?;
        metrics().batch_writes.observe(count as f64);
        metrics().batch_bytes.observe(data.len() as f64);
        let object = wal_object_name();
        let size_bytes = data.len() as u64;
        ctx.store
            .put(&object, data)
            .await
            .map_err(|e| unavailable("object store", &e))?;
        NewFile {
            object,
            kind: FileKind::Wal,
            level: 0,
            min_key: first.to_vec(),
            max_key: last.to_vec(),
            entry_count: count,
            size_bytes,
        }
    };
    if let Some(previous) = previous_commit {
        let _ = previous.await;
    }
    ctx.meta
        .commit_wal(new_file)
        .await
        .map_err(|e| unavailable("metadata", &e))
}

/// WAL files carry sequence 0 in their properties: the commit sequence is
/// only known at commit, and the metadata row is authoritative for it.
fn build_file(
    opts: WriterOptions,
    entries: BTreeMap<Bytes, Value>,
) -> Result<Bytes, crate::sstable::FormatError> {
    let mut writer = Writer::new(opts);
    for (key, value) in &entries {
        writer.add(key, value)?;
    }
    writer.finish(0, 0)
}

/// Time-ordered, collision-free names: `wal/<unix ms>-<random>.sst`.
fn wal_object_name() -> String {
    format!(
        "wal/{:013}-{:016x}.sst",
        crate::meta::now_ms(),
        rand::random::<u64>()
    )
}
