//! Metadata: the manifest of immutable files, in a relational database.
//!
//! One schema, two backends through sqlx (SQLite for the embedded default,
//! PostgreSQL for production). Migrations are embedded and run on open.
//! Every statement is written once, in `sql.rs`; `postgres.rs` and
//! `sqlite.rs` open their database and spell the few things that differ.
//!
//! Ordering model (see docs/decisions/0001-commit-sequence.md): every manifest
//! change takes the next `version` inside its transaction, so versions are
//! gapless and in commit order. A WAL file's `seq` is the version that
//! committed it and is what `BatchWrite` returns; readers catch up with
//! "changes with version > applied", which can never skip a commit.

#[doc(hidden)]
pub mod conformance;
pub mod postgres;
pub mod sql;
mod sqlite;

pub use postgres::PostgresMeta;
pub use sqlite::SqliteMeta;

use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A batcher's group-committed file.
    Wal,
    /// A compaction output: non-overlapping within its level.
    Run,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Wal => "wal",
            FileKind::Run => "run",
        }
    }

    pub fn parse(s: &str) -> Result<Self, MetaError> {
        match s {
            "wal" => Ok(FileKind::Wal),
            "run" => Ok(FileKind::Run),
            other => Err(MetaError::Corrupt(format!("unknown file kind {other:?}"))),
        }
    }
}

/// A file about to enter the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewFile {
    pub object: String,
    pub kind: FileKind,
    pub level: u32,
    pub min_key: Vec<u8>,
    pub max_key: Vec<u8>,
    pub entry_count: u64,
    /// Of `entry_count`, how many are tombstones.
    pub tombstone_count: u64,
    pub size_bytes: u64,
}

/// A file in the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    pub id: i64,
    pub object: String,
    pub kind: FileKind,
    pub level: u32,
    pub seq: u64,
    pub min_key: Vec<u8>,
    pub max_key: Vec<u8>,
    pub entry_count: u64,
    /// Of `entry_count`, how many are tombstones (0 for rows written before
    /// migration 0008).
    pub tombstone_count: u64,
    pub size_bytes: u64,
    pub added_version: u64,
    pub removed_version: Option<u64>,
    pub created_at_ms: i64,
    /// When it was replaced, by the database's clock; for rows an older
    /// binary stamped with its own clock, [`LEGACY_CLOCK_MARGIN`] later.
    pub removed_at_ms: Option<i64>,
}

/// Where batchers put their group commits (`wal/<ms>-<writer>-<n>.sst`).
pub const WAL_OBJECT_PREFIX: &str = "wal/";

impl FileRecord {
    /// Whether this row is in the WAL tier: a batcher's group commit not yet
    /// flushed into L0 (docs/decisions/0008-wal-tier.md). Intra-L0 outputs
    /// of earlier versions were also `kind = 'wal'` at level 0, but live
    /// under `run/`: they are L0 files.
    pub fn is_wal_tier(&self) -> bool {
        self.kind == FileKind::Wal && self.level == 0 && self.object.starts_with(WAL_OBJECT_PREFIX)
    }
}

/// A compaction's change to the manifest, applied in one transaction: every
/// input must still be live, every move's file still at its old level, and
/// the job's claim (if any) still held; otherwise nothing changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swap {
    /// Files the outputs replace (ids of live files).
    pub inputs: Vec<i64>,
    /// New files, all with data sequence `seq`.
    pub outputs: Vec<NewFile>,
    pub seq: u64,
    /// Trivial moves: (live file id, from level, to level), no rewrite.
    pub moves: Vec<(i64, u32, u32)>,
    /// The compaction job whose claim must still be live; it is released by the swap.
    pub claim: Option<String>,
}

/// A key range a running compaction holds on one level (inclusive bounds;
/// `max_key = None` is unbounded). See docs/decisions/0003-level-layout-and-claims.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRange {
    pub level: u32,
    pub min_key: Vec<u8>,
    pub max_key: Option<Vec<u8>>,
}

impl ClaimRange {
    pub fn overlaps(&self, other: &ClaimRange) -> bool {
        self.level == other.level
            && other.max_key.as_ref().is_none_or(|hi| &self.min_key <= hi)
            && self.max_key.as_ref().is_none_or(|hi| &other.min_key <= hi)
    }
}

/// Live files of the WAL tier and of L0 (docs/decisions/0008-wal-tier.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierCounts {
    pub wal_files: u64,
    pub wal_bytes: u64,
    pub l0_files: u64,
}

/// What changed in the manifest after a version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManifestDelta {
    /// The version the delta brings a reader to.
    pub version: u64,
    pub added: Vec<FileRecord>,
    pub removed_ids: Vec<i64>,
    /// `added` is the whole live manifest: the reader was behind a removal
    /// whose row purge has since forgotten, so it must replace what it has.
    pub full: bool,
}

/// Builds `changes_since(version)` from the rows changed after `since` (=
/// `version`, or 0 when the reader is behind the forgotten watermark, which
/// yields every live file): one implementation for both backends.
pub(crate) fn delta_from_rows(
    version: u64,
    since: u64,
    current: u64,
    rows: Vec<FileRecord>,
) -> ManifestDelta {
    let mut delta = ManifestDelta {
        version: current,
        full: since < version,
        ..Default::default()
    };
    for file in rows {
        match file.removed_version {
            // Added and removed since `since`: the reader never needs it.
            Some(_) if file.added_version > since => {}
            Some(_) => delta.removed_ids.push(file.id),
            None => delta.added.push(file),
        }
    }
    delta
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("metadata migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("metadata is inconsistent: {0}")]
    Corrupt(String),
    /// The database refused the statement for want of space (SQLite's
    /// `SQLITE_FULL`, PostgreSQL's `disk_full`): it rolled back, and
    /// retrying helps only once space is freed.
    #[error("metadata database out of space: {0}")]
    NoSpace(String),
    #[error("manifest changed concurrently: {0}")]
    Conflict(String),
    #[error("invalid metadata URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The server was reached but TLS failed: retrying the same settings
    /// does not help until the certificate, the CA or `sslmode` changes.
    #[error(
        "TLS to the metadata database failed: {0} (check the URL's sslmode and sslrootcert, \
         and that the server's certificate names the host in the URL)"
    )]
    Tls(String),
}

impl From<sqlx::Error> for MetaError {
    fn from(e: sqlx::Error) -> Self {
        if out_of_space(&e) {
            return MetaError::NoSpace(e.to_string());
        }
        match tls_failure(&e) {
            Some(reason) => MetaError::Tls(reason),
            None => MetaError::Unavailable(e),
        }
    }
}

/// SQLite's result code 13 (`SQLITE_FULL`, "database or disk is full") and
/// PostgreSQL's SQLSTATE 53100 (`disk_full`); the two never collide, as
/// SQLSTATEs have five characters.
fn out_of_space(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("13" | "53100")),
        sqlx::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ),
        _ => false,
    }
}

/// The TLS problem behind a connection error, if that is what it is: sqlx
/// reports a refused upgrade as `Tls` and a failed certificate check as an
/// I/O error from inside the handshake.
fn tls_failure(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Tls(inner) => Some(inner.to_string()),
        sqlx::Error::Io(io) => {
            let inner = io.get_ref()?;
            inner
                .downcast_ref::<tokio_rustls::rustls::Error>()
                .map(|tls| tls.to_string())
        }
        _ => None,
    }
}

pub type MetaResult<T> = Result<T, MetaError>;

#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Adds WAL files in one transaction (one fsync for a whole group of
    /// flushes), each taking the next version in order; returns their commit
    /// sequences. A file named by a writer intent (`crate::writer_intent`)
    /// commits only while that intent is live: else nothing does (`Conflict`).
    async fn commit_wals(&self, files: Vec<NewFile>) -> MetaResult<Vec<u64>>;
    /// Adds one WAL file in its own transaction; returns its commit sequence.
    async fn commit_wal(&self, file: NewFile) -> MetaResult<u64> {
        self.commit_wals(vec![file])
            .await?
            .pop()
            .ok_or_else(|| MetaError::Corrupt("a commit of one file returned no sequence".into()))
    }
    /// The manifest changes after `version` (removals of files added later are folded away).
    async fn changes_since(&self, version: u64) -> MetaResult<ManifestDelta>;
    /// Live files, for tools and jobs.
    async fn live_files(&self) -> MetaResult<Vec<FileRecord>>;
    /// Applies a compaction's result in one transaction (see [`Swap`]); returns the new version.
    async fn swap(&self, swap: Swap) -> MetaResult<u64>;
    /// Records `ranges` for `job` until `ttl` from now, unless a live claim of
    /// another job overlaps one of them (then nothing is recorded: `false`).
    async fn claim(
        &self,
        job: &str,
        ranges: &[ClaimRange],
        ttl: std::time::Duration,
    ) -> MetaResult<bool>;
    /// Extends `job`'s claim; `false` when it had already expired (or never existed).
    async fn renew_claim(&self, job: &str, ttl: std::time::Duration) -> MetaResult<bool>;
    async fn release_claim(&self, job: &str) -> MetaResult<()>;
    /// Jobs whose claim has not been dead for [`CLAIM_MARGIN`] yet: purge
    /// keeps their uploaded but not yet installed outputs (see `purge`).
    async fn live_claim_jobs(&self) -> MetaResult<Vec<String>>;
    /// Every unexpired claim: the picker leaves held L0 files to their job and
    /// merges the newer ones among themselves (see `compaction::picker`).
    async fn live_claims(&self) -> MetaResult<Vec<ClaimRange>>;
    /// Records a writer intent live for `ttl` (see `crate::writer_intent`);
    /// also drops intents expired long ago.
    async fn register_writer(&self, writer: &str, ttl: std::time::Duration) -> MetaResult<()>;
    /// Extends a live intent; `false` once it has expired (never revived).
    async fn renew_writer(&self, writer: &str, ttl: std::time::Duration) -> MetaResult<bool>;
    /// Writers whose intent is live: purge keeps their uncommitted objects.
    async fn live_writers(&self) -> MetaResult<Vec<String>>;
    /// Live L0 files (for write stalls).
    async fn l0_file_count(&self) -> MetaResult<u64>;
    /// Bytes of replaced files purge has not deleted yet: space the store
    /// takes beyond its live files (see `crate::purge`).
    async fn dead_bytes(&self) -> MetaResult<u64>;
    /// The WAL tier and L0 at a glance: what write stalls and the flush
    /// trigger poll (see `crate::write_stall`).
    async fn tier_counts(&self) -> MetaResult<TierCounts> {
        let levels = crate::lsm::Levels::new(self.live_files().await?);
        Ok(TierCounts {
            wal_files: levels.wal.len() as u64,
            wal_bytes: levels.wal_bytes(),
            l0_files: levels.l0.len() as u64,
        })
    }
    /// Every row, live or replaced, for purge.
    async fn all_files(&self) -> MetaResult<Vec<FileRecord>>;
    /// Deletes rows of replaced files whose objects are gone.
    async fn forget_files(&self, ids: &[i64]) -> MetaResult<()>;
    /// Takes or renews the named lease for `ttl` unless another live holder has it.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> MetaResult<bool>;
    async fn release_lease(&self, name: &str, holder: &str) -> MetaResult<()>;
    /// The store id recorded in this database (see `crate::store_identity`).
    async fn store_id(&self) -> MetaResult<Option<String>>;
    /// Records `id` unless an id is already recorded; returns the recorded one
    /// (so of two processes starting at once, both learn the same winner).
    async fn init_store_id(&self, id: &str) -> MetaResult<String>;
    /// The newest committed version.
    async fn current_version(&self) -> MetaResult<u64>;
    /// The database's clock in Unix milliseconds: the one clock that claims,
    /// writer intents, removal times and purge's cutoffs are measured by.
    async fn clock_ms(&self) -> MetaResult<i64>;
    /// Wakes in-process readers right after a commit; remote readers poll or LISTEN.
    fn subscribe(&self) -> watch::Receiver<u64>;
    fn describe(&self) -> String;
}

pub type DynMeta = Arc<dyn MetaStore>;

/// Whether any of `wanted` overlaps any of `held` (claims of other jobs).
pub fn claims_conflict(held: &[ClaimRange], wanted: &[ClaimRange]) -> bool {
    wanted.iter().any(|w| held.iter().any(|h| h.overlaps(w)))
}

/// The error of a commit whose writer intent is no longer live.
pub(crate) fn intent_lapsed(writer: &str) -> MetaError {
    MetaError::Conflict(format!(
        "writer intent {writer} expired (or expires within {} s): its objects may be purged",
        crate::writer_intent::COMMIT_MARGIN.as_secs()
    ))
}

/// A swap installs only if its job's claim stays live for at least this long
/// by the database's clock, and purge counts a claim as dead only this long
/// after it expired: a job that has stopped renewing and purge that has seen
/// its claim die can never both act on the same outputs.
pub const CLAIM_MARGIN: std::time::Duration = std::time::Duration::from_secs(15);

/// How much a process clock of an older binary (rows with a zero
/// `removed_by_db_clock` / `db_clock`, migration 0007) may lag the database's:
/// purge counts those timestamps this much later, so a rolling upgrade stays
/// safe while old compaction jobs still stamp rows with their own clocks.
pub const LEGACY_CLOCK_MARGIN: std::time::Duration = std::time::Duration::from_secs(600);

/// This process's clock in Unix milliseconds (plus [`set_clock_skew_ms`]).
/// Only names (object names, the store identity's creation time) use it;
/// everything that decides deletion or ownership reads the database's clock
/// ([`MetaStore::clock_ms`] and the SQL in `sql.rs`).
pub fn now_ms() -> i64 {
    let real = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    real + CLOCK_SKEW_MS.load(std::sync::atomic::Ordering::Relaxed)
}

static CLOCK_SKEW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Fault injection for tests: shifts this process's [`now_ms`] by `skew_ms`,
/// as a machine whose clock is off would. Safety must not depend on it.
pub fn set_clock_skew_ms(skew_ms: i64) {
    CLOCK_SKEW_MS.store(skew_ms, std::sync::atomic::Ordering::Relaxed);
}

/// Opens the database named by a URL (`sqlite://PATH` or
/// `postgres://USER:PASSWORD@HOST:PORT/DB`), creating (SQLite) and migrating it.
pub async fn open_url(url: &str) -> MetaResult<DynMeta> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteMeta::open(url).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresMeta::open(url).await?));
    }
    Err(MetaError::BadUrl {
        url: url.split('@').next_back().unwrap_or_default().into(),
        reason: "expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB".into(),
    })
}
