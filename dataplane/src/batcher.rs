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
//!    SSTable and PUTs it;
//! 4. [`commit_in_order`] commits the uploaded files' metadata rows in batch
//!    order, every file that is ready in one transaction, and only then is
//!    each request of those batches acked.
//!
//! A crash anywhere before the commit loses only un-acked writes; an object
//! PUT without its commit is an orphan that purge removes later. Purge never
//! takes an object a flush is about to commit: the process's writer intent
//! (`writer_intent`) protects every object it names until the commit.

use crate::meta::{DynMeta, FileKind, MetaError, MetaResult, NewFile};
use crate::metrics::metrics;
use crate::objstore::{DynStore, StoreError};
use crate::space::SpaceWatch;
use crate::sstable::{Entry, Value, Writer, WriterOptions};
use crate::writer_intent::{WriterIntent, wal_object_name};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// RocksDB's `level0_slowdown_writes_trigger` and `level0_stop_writes_trigger`:
/// L0 files are flushes of the WAL tier (tens of MiB each), so reaching them
/// means compaction is really behind.
pub const DEFAULT_L0_SLOWDOWN_FILES: u64 = 20;
pub const DEFAULT_L0_STOP_FILES: u64 = 36;
/// Four flushes' worth of WAL (see `wal_flush::DEFAULT_LIMITS`).
pub const DEFAULT_WAL_STOP_BYTES: u64 = 256 << 20;

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
    /// Memory of the requests waiting to be flushed, as [`queued_cost`]
    /// counts it; a request that would take the queue past it gets
    /// RESOURCE_EXHAUSTED, except into an empty queue, so the largest
    /// BatchWrite is always accepted.
    pub queue_max_bytes: usize,
    /// Flushes space out from this many L0 files on; 0 never slows down.
    pub l0_slowdown_files: u64,
    /// Writes wait (at most `stall_max_wait`, then RESOURCE_EXHAUSTED) while
    /// L0 holds this many files; 0 never stalls (see `write_stall`).
    pub l0_stop_files: u64,
    /// Writes wait while the WAL tier (group commits not yet flushed into
    /// L0, held in every index's memory) holds this many bytes; 0 never.
    pub wal_stop_bytes: u64,
    pub stall_max_wait: Duration,
    /// This process flushes the WAL tier into L0 when due (`None`: another
    /// process does; see `wal_flush`).
    pub wal_flush: Option<crate::wal_flush::WalFlushConfig>,
    pub writer: WriterOptions,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig {
            max_batch_bytes: 4 << 20,
            max_batch_age: Duration::from_millis(5),
            max_concurrent_flushes: 4,
            queue_capacity: 4096,
            queue_max_bytes: 256 << 20,
            l0_slowdown_files: DEFAULT_L0_SLOWDOWN_FILES,
            l0_stop_files: DEFAULT_L0_STOP_FILES,
            wal_stop_bytes: DEFAULT_WAL_STOP_BYTES,
            stall_max_wait: Duration::from_secs(2),
            wal_flush: Some(Default::default()),
            writer: WriterOptions::default(),
        }
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("write queue is full ({0} requests waiting); retry with backoff")]
    Overloaded(usize),
    #[error(
        "write queue is full ({queued} bytes waiting, this request {request} bytes, \
         limit {limit} bytes); retry with backoff"
    )]
    OverloadedBytes {
        queued: usize,
        request: usize,
        limit: usize,
    },
    #[error("write failed, nothing was committed: {0}")]
    Unavailable(String),
    /// The commit was sent but its reply never came (connection lost, or a
    /// reply that is not the database's own refusal): the write may or may
    /// not be committed. A client retrying it may write it twice.
    #[error("write outcome unknown: the commit may or may not have been applied: {0}")]
    OutcomeUnknown(String),
    #[error("batcher is shutting down")]
    ShuttingDown,
    #[error("write stalled: {0}; nothing was written, retry with backoff")]
    Stalled(String),
    /// The object store or the database has no room (see `crate::space`).
    #[error(
        "write refused for want of space, nothing was written: {0}; free space or raise the \
         quota, writes are accepted again by themselves once there is room"
    )]
    NoSpace(String),
}

type Reply = oneshot::Sender<Result<u64, WriteError>>;

/// One client request waiting for its batch.
struct Pending {
    entries: Vec<Entry>,
    /// Key + value bytes: what batches are sized by.
    bytes: usize,
    /// Its share of the queue's byte budget ([`queued_cost`]).
    cost: usize,
    queued_at: Instant,
    reply: Reply,
}

#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Pending>,
    capacity: usize,
    queued_bytes: Arc<AtomicUsize>,
    max_queued_bytes: usize,
    stall: Option<crate::write_stall::WriteStall>,
    tiers: crate::write_stall::TierWatch,
    space: Arc<SpaceWatch>,
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
        let max_queued_bytes = config.queue_max_bytes;
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let limits = crate::write_stall::StallLimits {
            slowdown_files: config.l0_slowdown_files,
            stop_files: config.l0_stop_files,
            wal_stop_bytes: config.wal_stop_bytes,
        };
        let tiers = crate::write_stall::TierWatch::start(meta.clone());
        let stall =
            crate::write_stall::WriteStall::new(tiers.clone(), limits, config.stall_max_wait);
        let watched = tiers.clone();
        if let Some(flush) = config.wal_flush.clone() {
            // Stops with the batcher: once every sender of the queue is gone.
            let queue = tx.downgrade();
            let alive = move || queue.upgrade().is_some();
            tokio::spawn(crate::wal_flush::run(
                store.clone(),
                meta.clone(),
                tiers,
                flush,
                alive,
            ));
        }
        let space = SpaceWatch::new();
        space.spawn_probe(store.clone(), meta.clone());
        let task = tokio::spawn(collect(
            config,
            store,
            meta,
            rx,
            queued_bytes.clone(),
            stall.clone(),
            space.clone(),
        ));
        (
            Batcher {
                queue: tx,
                capacity,
                queued_bytes,
                max_queued_bytes,
                stall,
                tiers: watched,
                space,
            },
            task,
        )
    }

    /// Why writes fail for want of space, while they do (`crate::space`).
    pub fn out_of_space(&self) -> Option<String> {
        self.space.full()
    }

    /// The WAL-tier and L0 counts as this batcher last polled them.
    pub fn tier_counts(&self) -> crate::meta::TierCounts {
        self.tiers.get()
    }

    /// The current least gap between flush starts (write slowdown; zero when off).
    pub fn flush_gap(&self) -> Duration {
        self.stall
            .as_ref()
            .map_or(Duration::ZERO, |s| s.flush_gap())
    }

    /// False once the collector task is gone (it panicked or stopped): every
    /// write would then fail, so readiness must say so.
    pub fn is_alive(&self) -> bool {
        !self.queue.is_closed()
    }

    /// Resolves when the collector task is gone.
    pub async fn stopped(&self) {
        self.queue.closed().await
    }

    /// Reserves `bytes` of the queue's byte budget, or says how full it is.
    /// An empty queue takes any request, so no valid request is refused
    /// forever.
    fn reserve(&self, bytes: usize) -> Result<(), WriteError> {
        self.queued_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |queued| {
                let total = queued.checked_add(bytes)?;
                (queued == 0 || total <= self.max_queued_bytes).then_some(total)
            })
            .map(|_| metrics().batcher_queued_bytes.add(bytes as i64))
            .map_err(|queued| WriteError::OverloadedBytes {
                queued,
                request: bytes,
                limit: self.max_queued_bytes,
            })
    }

    /// Queues the entries (already validated, in request order) and waits
    /// until they are durable and committed. Returns the commit sequence.
    pub async fn write(&self, entries: Vec<Entry>) -> Result<u64, WriteError> {
        if let Some(stall) = &self.stall {
            stall.admit().await?;
        }
        let bytes = entries.iter().map(entry_bytes).sum();
        let cost = queued_cost(bytes, entries.len());
        let (reply, done) = oneshot::channel();
        let pending = Pending {
            entries,
            bytes,
            cost,
            queued_at: Instant::now(),
            reply,
        };
        self.reserve(cost)?;
        self.queue.try_send(pending).map_err(|e| {
            unreserve(&self.queued_bytes, cost);
            match e {
                mpsc::error::TrySendError::Full(_) => WriteError::Overloaded(self.capacity),
                mpsc::error::TrySendError::Closed(_) => WriteError::ShuttingDown,
            }
        })?;
        metrics().batcher_queue.inc();
        done.await.unwrap_or(Err(WriteError::ShuttingDown))
    }
}

/// What one queued entry holds beyond its key and value bytes: its [`Entry`]
/// (key and value are `Bytes` slices of the decoded request's buffer, which
/// stays alive while any of them does) and the protobuf framing of the entry
/// in that buffer (tags and lengths, at most 16 bytes).
pub const QUEUED_ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 16;

/// The memory a request of `entries` entries holding `bytes` key + value
/// bytes keeps while it waits: what the queue's byte budget counts, so that
/// many tiny entries cannot hold far more memory than the budget says.
pub fn queued_cost(bytes: usize, entries: usize) -> usize {
    bytes.saturating_add(entries.saturating_mul(QUEUED_ENTRY_OVERHEAD))
}

/// Gives `cost` back to the queue's byte budget.
fn unreserve(queued_bytes: &AtomicUsize, cost: usize) {
    queued_bytes.fetch_sub(cost, Ordering::SeqCst);
    metrics().batcher_queued_bytes.sub(cost as i64);
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
    /// Takes a request off the queue (freeing its share of the byte budget).
    fn push(&mut self, p: Pending, queued_bytes: &AtomicUsize) {
        unreserve(queued_bytes, p.cost);
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
    queued_bytes: Arc<AtomicUsize>,
    stall: Option<crate::write_stall::WriteStall>,
    space: Arc<SpaceWatch>,
) {
    let mut batch = Batch::default();
    let mut flushes = JoinSet::new();
    let (ready, ready_rx) = mpsc::unbounded_channel();
    let intent = WriterIntent::new(meta.clone());
    let committer = tokio::spawn(commit_in_order(meta, ready_rx));
    let mut next_ticket = 0u64;
    let mut open = true;
    let mut last_flush = tokio::time::Instant::now();
    loop {
        while batch.bytes < config.max_batch_bytes {
            match queue.try_recv() {
                Ok(p) => batch.push(p, &queued_bytes),
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
        // Not "as soon as a slot is free": on one disk, an upload's fsyncs
        // overlapping another flush's commit slow both down (measured in
        // docs/benchmarks.md), so batches grow while a flush runs instead.
        let due = flushes.is_empty() || aged || batch.bytes >= config.max_batch_bytes || !open;
        // While compaction is behind, fewer and larger group commits (each is an L0 file).
        let paced_until = last_flush + stall.as_ref().map_or(Duration::ZERO, |s| s.flush_gap());
        let paced = !open || tokio::time::Instant::now() >= paced_until;
        if !batch.requests.is_empty() && slot_free && due && paced {
            last_flush = tokio::time::Instant::now();
            let ticket = Ticket::new(next_ticket, ready.clone());
            next_ticket += 1;
            let ctx = FlushContext {
                store: store.clone(),
                writer: config.writer.clone(),
                intent: intent.clone(),
                space: space.clone(),
            };
            flushes.spawn(flush(ctx, std::mem::take(&mut batch), ticket));
            continue;
        }
        if !open && batch.requests.is_empty() {
            break;
        }
        let deadline = batch
            .oldest()
            .map(|t| tokio::time::Instant::from_std(t + config.max_batch_age).max(paced_until));
        tokio::select! {
            received = queue.recv(), if open && batch.bytes < config.max_batch_bytes => match received {
                Some(p) => batch.push(p, &queued_bytes),
                None => open = false,
            },
            Some(_) = flushes.join_next(), if !flushes.is_empty() => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                if deadline.is_some() && slot_free => {}
        }
    }
    while flushes.join_next().await.is_some() {}
    drop(ready);
    let _ = committer.await;
}

struct FlushContext {
    store: DynStore,
    writer: WriterOptions,
    intent: Arc<WriterIntent>,
    space: Arc<SpaceWatch>,
}

async fn flush(ctx: FlushContext, batch: Batch, ticket: Ticket) {
    let started = Instant::now();
    if let Some(oldest) = batch.oldest() {
        metrics()
            .batch_age
            .observe(started.duration_since(oldest).as_secs_f64());
    }
    let (requests, entries) = last_write_wins(batch.requests);
    let uploaded = upload_file(&ctx, entries, batch.bytes).await;
    let result = match uploaded {
        Ok(file) => ticket.commit(file).await,
        // Dropping the ticket tells the committer to skip this batch.
        Err(e) => Err(e),
    };
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics().flushes.with_label_values(&[outcome]).inc();
    metrics()
        .flush_duration
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => ctx.space.clear(),
        Err(WriteError::NoSpace(cause)) => ctx.space.mark_full(cause),
        Err(_) => {}
    }
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

fn unavailable(what: &str, e: &dyn std::fmt::Display) -> WriteError {
    WriteError::Unavailable(format!("{what}: {e}"))
}

/// Builds the batch's file and PUTs it; the result is ready to commit.
async fn upload_file(
    ctx: &FlushContext,
    entries: BTreeMap<Bytes, Value>,
    batch_bytes: usize,
) -> Result<NewFile, WriteError> {
    let first = entries.keys().next().cloned().unwrap_or_default();
    let last = entries.keys().next_back().cloned().unwrap_or_default();
    let count = entries.len() as u64;
    let tombstones = entries
        .values()
        .filter(|v| matches!(v, Value::Delete))
        .count() as u64;
    let opts = ctx.writer.clone();
    // A small batch builds in microseconds: cheaper here than a thread hop.
    let data = if batch_bytes < INLINE_BUILD_BYTES {
        build_file(opts, entries)
    } else {
        tokio::task::spawn_blocking(move || build_file(opts, entries))
            .await
            .map_err(|e| unavailable("building file", &e))?
    }
    .map_err(|e| unavailable("building file", &e))?;
    metrics().batch_writes.observe(count as f64);
    metrics().batch_bytes.observe(data.len() as f64);
    // The intent is recorded before the PUT: purge keeps the object from then on.
    let writer = ctx.intent.writer().await.map_err(|e| match e {
        MetaError::NoSpace(_) => WriteError::NoSpace(e.to_string()),
        e => unavailable("metadata (writer intent)", &e),
    })?;
    let object = wal_object_name(&writer);
    let size_bytes = data.len() as u64;
    ctx.store.put(&object, data).await.map_err(|e| match e {
        StoreError::NoSpace { .. } => WriteError::NoSpace(e.to_string()),
        e => unavailable("object store", &e),
    })?;
    Ok(NewFile {
        object,
        kind: FileKind::Wal,
        level: 0,
        min_key: first.to_vec(),
        max_key: last.to_vec(),
        entry_count: count,
        tombstone_count: tombstones,
        size_bytes,
    })
}

const INLINE_BUILD_BYTES: usize = 64 << 10;

type CommitReply = oneshot::Sender<Result<u64, WriteError>>;

/// A batch's place in commit order. Every ticket reaches the committer
/// exactly once: with a file to commit, or (dropped) as a batch to skip.
struct Ticket {
    number: u64,
    ready: mpsc::UnboundedSender<Ready>,
    sent: bool,
}

struct Ready {
    ticket: u64,
    commit: Option<(NewFile, CommitReply)>,
}

impl Ticket {
    fn new(number: u64, ready: mpsc::UnboundedSender<Ready>) -> Self {
        Ticket {
            number,
            ready,
            sent: false,
        }
    }

    async fn commit(mut self, file: NewFile) -> Result<u64, WriteError> {
        let (reply, done) = oneshot::channel();
        self.send(Some((file, reply)));
        // The committer holds the reply while the commit runs: gone without
        // answering, it may have committed.
        done.await.unwrap_or_else(|_| {
            Err(WriteError::OutcomeUnknown(
                "the committer stopped before answering".into(),
            ))
        })
    }

    fn send(&mut self, commit: Option<(NewFile, CommitReply)>) {
        self.sent = true;
        let ticket = self.number;
        let _ = self.ready.send(Ready { ticket, commit });
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.sent {
            self.send(None);
        }
    }
}

/// Commits uploaded files in ticket (= batch) order, so sequence order is
/// batch order. Whatever is ready when a commit starts goes into that one
/// transaction: under load, several flushes share one metadata fsync.
async fn commit_in_order(meta: impl CommitWals, mut ready: mpsc::UnboundedReceiver<Ready>) {
    let mut next = 0u64;
    let mut waiting = BTreeMap::new();
    while let Some(r) = ready.recv().await {
        waiting.insert(r.ticket, r.commit);
        while let Ok(r) = ready.try_recv() {
            waiting.insert(r.ticket, r.commit);
        }
        let mut group = Vec::new();
        while let Some(commit) = waiting.remove(&next) {
            next += 1;
            group.extend(commit);
        }
        if !group.is_empty() {
            commit_group(&meta, group).await;
        }
    }
}

/// What the committer needs of the metadata store (a seam for tests that
/// lose a commit's reply).
#[async_trait::async_trait]
trait CommitWals: Send + Sync + 'static {
    async fn commit_wals(&self, files: Vec<NewFile>) -> MetaResult<Vec<u64>>;
}

#[async_trait::async_trait]
impl CommitWals for DynMeta {
    async fn commit_wals(&self, files: Vec<NewFile>) -> MetaResult<Vec<u64>> {
        (**self).commit_wals(files).await
    }
}

async fn commit_group(meta: &impl CommitWals, group: Vec<(NewFile, CommitReply)>) {
    metrics().commit_group.observe(group.len() as f64);
    let (files, replies): (Vec<NewFile>, Vec<CommitReply>) = group.into_iter().unzip();
    let started = Instant::now();
    let committed = meta.commit_wals(files).await;
    metrics()
        .commit_duration
        .observe(started.elapsed().as_secs_f64());
    let results: Vec<Result<u64, WriteError>> = match committed {
        Ok(seqs) if seqs.len() == replies.len() => seqs.into_iter().map(Ok).collect(),
        Ok(seqs) => {
            let e = format!(
                "metadata: committed, but {} sequences for {} files",
                seqs.len(),
                replies.len()
            );
            vec![Err(WriteError::OutcomeUnknown(e)); replies.len()]
        }
        Err(e) => vec![Err(commit_failed(&e)); replies.len()],
    };
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

/// A failed commit is "nothing was committed" only when that is certain: the
/// database itself refused the transaction (an error reply rolls it back),
/// no connection was had, or the manifest conflicted. Anything else (the
/// connection broke, the reply was lost or garbled) may have happened after
/// the database committed: its outcome is unknown.
fn commit_failed(e: &MetaError) -> WriteError {
    if let MetaError::NoSpace(_) = e {
        return WriteError::NoSpace(e.to_string());
    }
    let certain = matches!(
        e,
        MetaError::Unavailable(sqlx::Error::Database(_))
            | MetaError::Unavailable(sqlx::Error::PoolTimedOut)
            | MetaError::Unavailable(sqlx::Error::PoolClosed)
            | MetaError::Conflict(_)
            | MetaError::BadUrl { .. }
    );
    if certain {
        unavailable("metadata", e)
    } else {
        WriteError::OutcomeUnknown(format!("metadata: {e}"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::SqliteMeta;

    fn file(name: &str) -> NewFile {
        NewFile {
            object: format!("wal/{name}.sst"),
            kind: FileKind::Wal,
            level: 0,
            min_key: b"a".to_vec(),
            max_key: b"z".to_vec(),
            entry_count: 1,
            tombstone_count: 0,
            size_bytes: 1,
        }
    }

    /// Commits through SQLite, then fails as if the reply had been lost
    /// (`lost`) or fails before anything is sent (not `lost`).
    struct Flaky {
        meta: DynMeta,
        lost: bool,
    }

    #[async_trait::async_trait]
    impl CommitWals for Flaky {
        async fn commit_wals(&self, files: Vec<NewFile>) -> MetaResult<Vec<u64>> {
            if !self.lost {
                return Err(MetaError::Unavailable(sqlx::Error::PoolTimedOut));
            }
            self.meta.commit_wals(files).await?;
            let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
            Err(MetaError::Unavailable(sqlx::Error::Io(reset)))
        }
    }

    /// A commit whose reply is lost is reported as "outcome unknown"
    /// (UNAVAILABLE), never as "nothing was committed": here it was.
    #[tokio::test]
    async fn a_lost_commit_reply_is_an_unknown_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/meta.db", dir.path().display());
        let meta: DynMeta = Arc::new(SqliteMeta::open(&url).await.unwrap());
        for lost in [true, false] {
            let flaky = Flaky {
                meta: meta.clone(),
                lost,
            };
            let (reply, done) = oneshot::channel();
            commit_group(&flaky, vec![(file(&format!("lost-{lost}")), reply)]).await;
            let err = done.await.unwrap().unwrap_err();
            let status = tonic::Status::from(err.clone());
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            if lost {
                assert!(matches!(err, WriteError::OutcomeUnknown(_)), "{err:?}");
                assert!(status.message().contains("outcome unknown"), "{status:?}");
                assert!(!status.message().contains("nothing was committed"));
            } else {
                assert!(matches!(err, WriteError::Unavailable(_)), "{err:?}");
                assert!(status.message().contains("nothing was committed"));
            }
        }
        // The lost reply's file is in fact committed.
        let live = meta.live_files().await.unwrap();
        let objects: Vec<&str> = live.iter().map(|f| f.object.as_str()).collect();
        assert_eq!(objects, vec!["wal/lost-true.sst"]);
    }

    /// Tickets arriving out of order commit in ticket order; a dropped
    /// ticket (a failed upload) is skipped instead of stalling the rest.
    #[tokio::test]
    async fn commits_follow_ticket_order_and_skip_failed_batches() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/meta.db", dir.path().display());
        let meta: DynMeta = Arc::new(SqliteMeta::open(&url).await.unwrap());
        let (ready, ready_rx) = mpsc::unbounded_channel();
        let committer = tokio::spawn(commit_in_order(meta.clone(), ready_rx));
        let tickets: Vec<Ticket> = (0..4).map(|n| Ticket::new(n, ready.clone())).collect();
        let mut tickets = tickets.into_iter();
        let (t0, t1, t2, t3) = (
            tickets.next().unwrap(),
            tickets.next().unwrap(),
            tickets.next().unwrap(),
            tickets.next().unwrap(),
        );
        let third = tokio::spawn(t3.commit(file("third")));
        let second = tokio::spawn(t2.commit(file("second")));
        tokio::task::yield_now().await;
        drop(t1);
        let first = t0.commit(file("first")).await.unwrap();
        let second = second.await.unwrap().unwrap();
        let third = third.await.unwrap().unwrap();
        assert_eq!((first, second, third), (1, 2, 3));
        drop(ready);
        committer.await.unwrap();
        let live = meta.live_files().await.unwrap();
        let by_seq: Vec<(u64, &str)> = live.iter().map(|f| (f.seq, f.object.as_str())).collect();
        assert_eq!(
            by_seq,
            vec![
                (3, "wal/third.sst"),
                (2, "wal/second.sst"),
                (1, "wal/first.sst")
            ]
        );
    }
}
