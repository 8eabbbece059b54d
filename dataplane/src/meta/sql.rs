//! Every metadata statement and transaction, written once for both backends.
//!
//! [`SqlMeta`] implements [`MetaStore`] over any sqlx database described by a
//! [`Dialect`]; `postgres.rs` and `sqlite.rs` only open it (pools, migrations,
//! TLS, LISTEN) and describe their dialect. Statements use `$N` placeholders,
//! which sqlx's SQLite driver binds to the Nth argument as PostgreSQL does, so
//! one text serves both. What differs in the SQL itself is a [`Dialect`]
//! constant or function, spliced in with `format!`: the database clock
//! ([`Dialect::NOW_MS`]), the larger of two values, membership in a bound
//! list, and the statements only one database needs (a snapshot, a table
//! lock, NOTIFY). To add a statement: write it here once with `$N`
//! placeholders, in the transaction that needs it; if it needs something the
//! databases spell differently, add that piece to [`Dialect`].

use super::{
    CLAIM_MARGIN, ClaimRange, FileKind, FileRecord, LEGACY_CLOCK_MARGIN, ManifestDelta, MetaError,
    MetaResult, MetaStore, NewFile, Swap, TierCounts, WAL_OBJECT_PREFIX, claims_conflict,
    delta_from_rows, intent_lapsed, now_ms,
};
use crate::writer_intent::{COMMIT_MARGIN, writers_of};
use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Transaction, Type,
};
use std::marker::PhantomData;
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::watch;

/// A query of dialect `D`'s database, before it runs.
pub type Statement<'q, D> =
    Query<'q, <D as Dialect>::DB, <<D as Dialect>::DB as Database>::Arguments<'q>>;

/// What the two databases spell differently; everything else is shared SQL.
pub trait Dialect: Send + Sync + 'static {
    type DB: Database;
    /// The database's clock in Unix milliseconds (an SQL expression): writer
    /// intents are timed by one clock shared by every batcher and purge,
    /// whatever their own clocks say.
    const NOW_MS: &'static str;
    /// The function returning the larger of its two arguments.
    const GREATEST: &'static str;
    /// Run first in `changes_since`'s read transaction, if the database needs
    /// it for the version and the rows to come from one snapshot.
    const SNAPSHOT: Option<&'static str>;
    /// Run first in `claim`'s transaction, if the database needs it for
    /// claimers to queue: none inserts between another's check and insert.
    const LOCK_CLAIMS: Option<&'static str>;
    /// Run inside every transaction that takes a version, with the version
    /// (text) as `$1`: announces it to other processes once it commits.
    const ANNOUNCE: Option<&'static str>;
    /// The condition "`column` is one of the list bound at `param`" (`$N`),
    /// a list bound by [`Dialect::bind_ids`] or [`Dialect::bind_names`].
    fn in_list(column: &str, param: &str) -> String;
    fn bind_ids<'q>(query: Statement<'q, Self>, ids: &'q [i64]) -> Statement<'q, Self>;
    fn bind_names<'q>(query: Statement<'q, Self>, names: &'q [&'q str]) -> Statement<'q, Self>;
    fn rows_affected(result: &<Self::DB as Database>::QueryResult) -> u64;
}

/// The metadata store over one database: `PostgresMeta` and `SqliteMeta`.
pub struct SqlMeta<D: Dialect> {
    describe: String,
    /// Reads that need no write lock (SQLite has a separate read pool).
    reader: Pool<D::DB>,
    /// Every transaction that writes.
    writer: Pool<D::DB>,
    notify: watch::Sender<u64>,
    /// A task serving this store (PostgreSQL's listener), stopped with it.
    background: Option<tokio::task::JoinHandle<()>>,
    dialect: PhantomData<D>,
}

impl<D: Dialect> Drop for SqlMeta<D> {
    fn drop(&mut self) {
        if let Some(task) = &self.background {
            task.abort();
        }
    }
}

impl<D: Dialect> SqlMeta<D> {
    /// The pool every writing transaction runs on.
    pub(crate) fn writer_pool(&self) -> &Pool<D::DB> {
        &self.writer
    }
}

/// Wakes subscribers with `version` unless they already have a newer one.
pub(crate) fn publish(notify: &watch::Sender<u64>, version: u64) {
    notify.send_if_modified(|v| {
        let newer = version > *v;
        if newer {
            *v = version;
        }
        newer
    });
}

/// `removed_at_ms` as [`FileRecord`] defines it: rows stamped by an older
/// binary's process clock (migration 0007) count [`LEGACY_CLOCK_MARGIN`] later.
static FILE_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "id, object, kind, level, seq, min_key, max_key, entry_count, tombstone_count, \
         size_bytes, added_version, removed_version, created_at_ms, \
         CASE WHEN removed_by_db_clock = 1 THEN removed_at_ms \
              ELSE removed_at_ms + {} END AS removed_at_ms",
        LEGACY_CLOCK_MARGIN.as_millis()
    )
});

/// The columns a new file's row sets, and their parameters ([`SqlMeta::bind_file`]).
const INSERT_COLUMNS: &str = "object, kind, level, seq, min_key, max_key, entry_count, \
     size_bytes, added_version, created_at_ms, tombstone_count";
const INSERT_VALUES: &str = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11";

const CLAIM_COLUMNS: &str = "level, min_key, max_key";

/// A claim's expiry as purge must count it: claims an older binary stamped
/// with its own clock (migration 0007) count [`LEGACY_CLOCK_MARGIN`] later.
fn claim_expiry() -> String {
    format!(
        "(expires_at_ms + CASE WHEN db_clock = 1 THEN 0 ELSE {} END)",
        LEGACY_CLOCK_MARGIN.as_millis()
    )
}

impl<D: Dialect> SqlMeta<D>
where
    for<'c> &'c mut <D::DB as Database>::Connection: Executor<'c, Database = D::DB>,
    for<'q> <D::DB as Database>::Arguments<'q>: IntoArguments<'q, D::DB>,
    for<'q> i64: Encode<'q, D::DB> + Decode<'q, D::DB> + Type<D::DB>,
    for<'q> String: Encode<'q, D::DB> + Decode<'q, D::DB> + Type<D::DB>,
    for<'q> Vec<u8>: Encode<'q, D::DB> + Decode<'q, D::DB> + Type<D::DB>,
    for<'q> Option<Vec<u8>>: Encode<'q, D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'a> &'a str: ColumnIndex<<D::DB as Database>::Row>,
    usize: ColumnIndex<<D::DB as Database>::Row>,
{
    /// The store over migrated pools; publishes the current version.
    pub(crate) async fn start(
        describe: String,
        reader: Pool<D::DB>,
        writer: Pool<D::DB>,
        notify: watch::Sender<u64>,
        background: Option<tokio::task::JoinHandle<()>>,
    ) -> MetaResult<Self> {
        let meta = SqlMeta {
            describe,
            reader,
            writer,
            notify,
            background,
            dialect: PhantomData,
        };
        let version = meta.current_version().await?;
        publish(&meta.notify, version);
        Ok(meta)
    }

    fn file_from_row(row: &<D::DB as Database>::Row) -> MetaResult<FileRecord> {
        let kind: String = row.try_get("kind")?;
        let removed: Option<i64> = row.try_get("removed_version")?;
        Ok(FileRecord {
            id: row.try_get("id")?,
            object: row.try_get("object")?,
            kind: FileKind::parse(&kind)?,
            level: row.try_get::<i64, _>("level")? as u32,
            seq: row.try_get::<i64, _>("seq")? as u64,
            min_key: row.try_get("min_key")?,
            max_key: row.try_get("max_key")?,
            entry_count: row.try_get::<i64, _>("entry_count")? as u64,
            tombstone_count: row.try_get::<i64, _>("tombstone_count")? as u64,
            size_bytes: row.try_get::<i64, _>("size_bytes")? as u64,
            added_version: row.try_get::<i64, _>("added_version")? as u64,
            removed_version: removed.map(|v| v as u64),
            created_at_ms: row.try_get("created_at_ms")?,
            removed_at_ms: row.try_get("removed_at_ms")?,
        })
    }

    fn claim_from_row(row: &<D::DB as Database>::Row) -> MetaResult<ClaimRange> {
        Ok(ClaimRange {
            level: row.try_get::<i64, _>("level")? as u32,
            min_key: row.try_get("min_key")?,
            max_key: row.try_get("max_key")?,
        })
    }

    /// The files of the rows `sql` (selecting [`FILE_COLUMNS`]) returns.
    async fn files(&self, sql: &str) -> MetaResult<Vec<FileRecord>> {
        let rows = sqlx::query(sql).fetch_all(&self.reader).await?;
        rows.iter().map(Self::file_from_row).collect()
    }

    /// Takes the next manifest version inside `tx` (see the module docs of
    /// `meta`): the `manifest_version` row stays locked until `tx` ends, so
    /// versions are gapless and in commit order.
    async fn next_version(tx: &mut Transaction<'_, D::DB>) -> MetaResult<u64> {
        let version: i64 = sqlx::query_scalar(
            "UPDATE manifest_version SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut **tx)
        .await?;
        if let Some(announce) = D::ANNOUNCE {
            // Transactional: delivered only if (and when) `tx` commits.
            sqlx::query(announce)
                .bind(version.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(version as u64)
    }

    /// Binds a new file's row ($1..$11 of [`INSERT_VALUES`]).
    fn bind_file<'q>(
        query: Statement<'q, D>,
        file: &'q NewFile,
        seq: u64,
        version: u64,
    ) -> Statement<'q, D> {
        query
            .bind(file.object.as_str())
            .bind(file.kind.as_str())
            .bind(file.level as i64)
            .bind(seq as i64)
            .bind(&file.min_key)
            .bind(&file.max_key)
            .bind(file.entry_count as i64)
            .bind(file.size_bytes as i64)
            .bind(version as i64)
            .bind(now_ms())
            .bind(file.tombstone_count as i64)
    }

    async fn insert_file(
        tx: &mut Transaction<'_, D::DB>,
        file: &NewFile,
        seq: u64,
        version: u64,
    ) -> MetaResult<()> {
        let sql = format!("INSERT INTO files ({INSERT_COLUMNS}) VALUES ({INSERT_VALUES})");
        Self::bind_file(sqlx::query(&sql), file, seq, version)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Last in a commit: inserts `file` (of sequence `version`) only if every
    /// one of `writers` holds an intent live for at least the commit margin;
    /// false (nothing inserted) otherwise.
    async fn insert_if_intents_live(
        tx: &mut Transaction<'_, D::DB>,
        file: &NewFile,
        version: u64,
        writers: &[&str],
    ) -> MetaResult<bool> {
        let sql = format!(
            "WITH live AS (SELECT count(*) AS n FROM writer_intents \
               WHERE {} AND expires_at_ms > {} + $13) \
             INSERT INTO files ({INSERT_COLUMNS}) SELECT {INSERT_VALUES} FROM live WHERE live.n = $14",
            D::in_list("writer", "$12"),
            D::NOW_MS,
        );
        let query = Self::bind_file(sqlx::query(&sql), file, version, version);
        let done = D::bind_names(query, writers)
            .bind(COMMIT_MARGIN.as_millis() as i64)
            .bind(writers.len() as i64)
            .execute(&mut **tx)
            .await?;
        Ok(D::rows_affected(&done) == 1)
    }

    /// The error naming the first of `writers` whose intent is not live for
    /// the commit margin (after [`Self::insert_if_intents_live`] refused).
    async fn lapsed(tx: &mut Transaction<'_, D::DB>, writers: &[&str]) -> MetaResult<MetaError> {
        let sql = format!(
            "SELECT writer FROM writer_intents WHERE {} AND expires_at_ms > {} + $2",
            D::in_list("writer", "$1"),
            D::NOW_MS,
        );
        let live: Vec<String> = D::bind_names(sqlx::query(&sql), writers)
            .bind(COMMIT_MARGIN.as_millis() as i64)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;
        let lapsed = writers.iter().find(|w| !live.iter().any(|l| l == *w));
        Ok(intent_lapsed(lapsed.unwrap_or(&writers[0])))
    }

    /// Inside a swap: fails unless `job` still holds a live claim, then drops it.
    async fn take_claim(tx: &mut Transaction<'_, D::DB>, job: &str) -> MetaResult<()> {
        // Live for the margin by the database's clock: purge counts a claim
        // dead only a margin after it expires (`live_claim_jobs`), so the
        // outputs this swap installs cannot have been purged as orphans.
        let sql = format!(
            "DELETE FROM compaction_claims WHERE job = $1 AND expires_at_ms > {} + $2",
            D::NOW_MS
        );
        let live = sqlx::query(&sql)
            .bind(job)
            .bind(CLAIM_MARGIN.as_millis() as i64)
            .execute(&mut **tx)
            .await?;
        if D::rows_affected(&live) == 0 {
            return Err(MetaError::Conflict(format!(
                "compaction {job} lost its claim (or it expires within {} s)",
                CLAIM_MARGIN.as_secs()
            )));
        }
        sqlx::query("DELETE FROM compaction_claims WHERE job = $1")
            .bind(job)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Inside a swap, before the version is taken: locks the inputs' rows
    /// and stamps their removal time, failing unless every one is live.
    async fn lock_inputs(tx: &mut Transaction<'_, D::DB>, ids: &[i64]) -> MetaResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE files SET removed_at_ms = {}, removed_by_db_clock = 1 \
             WHERE {} AND removed_version IS NULL",
            D::NOW_MS,
            D::in_list("id", "$1"),
        );
        let done = D::bind_ids(sqlx::query(&sql), ids)
            .execute(&mut **tx)
            .await?;
        let live = D::rows_affected(&done);
        if live != ids.len() as u64 {
            return Err(MetaError::Conflict(format!(
                "{} of the swap's {} input files are no longer live",
                ids.len() as u64 - live,
                ids.len()
            )));
        }
        Ok(())
    }

    /// Inside a swap, before the version is taken: moves the live files
    /// `ids` from level `from` to `to`, failing unless every one is there.
    async fn move_files(
        tx: &mut Transaction<'_, D::DB>,
        ids: &[i64],
        (from, to): (u32, u32),
    ) -> MetaResult<()> {
        let sql = format!(
            "UPDATE files SET level = $2 WHERE {} AND level = $3 AND removed_version IS NULL",
            D::in_list("id", "$1"),
        );
        let done = D::bind_ids(sqlx::query(&sql), ids)
            .bind(to as i64)
            .bind(from as i64)
            .execute(&mut **tx)
            .await?;
        if D::rows_affected(&done) != ids.len() as u64 {
            return Err(MetaError::Conflict(format!(
                "files to move are no longer all live at level {from}"
            )));
        }
        Ok(())
    }

    /// Inside a swap, after the version is taken: sets `column` of the rows
    /// `ids` to `version`, in one statement.
    async fn stamp_version(
        tx: &mut Transaction<'_, D::DB>,
        column: &str,
        ids: &[i64],
        version: u64,
    ) -> MetaResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE files SET {column} = $2 WHERE {}",
            D::in_list("id", "$1")
        );
        D::bind_ids(sqlx::query(&sql), ids)
            .bind(version as i64)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// A swap's trivial moves grouped by (from, to) level: one statement each.
fn moves_by_levels(moves: &[(i64, u32, u32)]) -> std::collections::BTreeMap<(u32, u32), Vec<i64>> {
    let mut grouped = std::collections::BTreeMap::<_, Vec<i64>>::new();
    for &(id, from, to) in moves {
        grouped.entry((from, to)).or_default().push(id);
    }
    grouped
}

#[async_trait]
impl<D: Dialect> MetaStore for SqlMeta<D>
where
    for<'c> &'c mut <D::DB as Database>::Connection: Executor<'c, Database = D::DB>,
    for<'q> <D::DB as Database>::Arguments<'q>: IntoArguments<'q, D::DB>,
    for<'q> i64: Encode<'q, D::DB> + Decode<'q, D::DB> + Type<D::DB>,
    for<'q> String: Encode<'q, D::DB> + Decode<'q, D::DB> + Type<D::DB>,
    for<'q> Vec<u8>: Encode<'q, D::DB> + Decode<'q, D::DB> + Type<D::DB>,
    for<'q> Option<Vec<u8>>: Encode<'q, D::DB>,
    for<'q> &'q str: Encode<'q, D::DB> + Type<D::DB>,
    for<'a> &'a str: ColumnIndex<<D::DB as Database>::Row>,
    usize: ColumnIndex<<D::DB as Database>::Row>,
{
    async fn commit_wals(&self, files: Vec<NewFile>) -> MetaResult<Vec<u64>> {
        let mut tx = self.writer.begin().await?;
        let mut versions = Vec::with_capacity(files.len());
        let writers = writers_of(files.iter().map(|f| f.object.as_str()));
        for (i, file) in files.iter().enumerate() {
            let version = Self::next_version(&mut tx).await?;
            if i + 1 == files.len() && !writers.is_empty() {
                // The intent check rides on the last insert: no extra round trip.
                if !Self::insert_if_intents_live(&mut tx, file, version, &writers).await? {
                    return Err(Self::lapsed(&mut tx, &writers).await?);
                }
            } else {
                Self::insert_file(&mut tx, file, version, version).await?;
            }
            versions.push(version);
        }
        tx.commit().await?;
        if let Some(&last) = versions.last() {
            publish(&self.notify, last);
        }
        Ok(versions)
    }

    async fn changes_since(&self, version: u64) -> MetaResult<ManifestDelta> {
        // One read transaction: the version and the rows are one snapshot.
        let mut tx = self.reader.begin().await?;
        if let Some(snapshot) = D::SNAPSHOT {
            sqlx::query(snapshot).execute(&mut *tx).await?;
        }
        let (current, forgotten): (i64, i64) =
            sqlx::query_as("SELECT version, forgotten_version FROM manifest_version WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
        // Behind a forgotten removal: only the whole live manifest is right.
        let since = if version < forgotten as u64 {
            0
        } else {
            version
        };
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE added_version > $1 OR removed_version > $1 \
             OR level_version > $1 ORDER BY added_version, id",
            FILE_COLUMNS = &*FILE_COLUMNS
        );
        let rows = sqlx::query(&sql)
            .bind(since as i64)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let files = rows
            .iter()
            .map(Self::file_from_row)
            .collect::<MetaResult<Vec<_>>>()?;
        Ok(delta_from_rows(version, since, current as u64, files))
    }

    async fn live_files(&self) -> MetaResult<Vec<FileRecord>> {
        self.files(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE removed_version IS NULL ORDER BY seq DESC, id DESC",
            FILE_COLUMNS = &*FILE_COLUMNS
        ))
        .await
    }

    async fn swap(&self, swap: Swap) -> MetaResult<u64> {
        let mut tx = self.writer.begin().await?;
        // Every check that can refuse the swap, and every row lock it needs,
        // comes before the manifest row's lock, which batcher commits queue
        // behind: that lock is taken last and held for a few set-based
        // statements, however many files the swap replaces (issue 23 item 5).
        // Every early return drops `tx`, which rolls everything back.
        if let Some(job) = &swap.claim {
            Self::take_claim(&mut tx, job).await?;
        }
        let mut inputs = swap.inputs.clone();
        inputs.sort_unstable();
        inputs.dedup();
        Self::lock_inputs(&mut tx, &inputs).await?;
        let moves = moves_by_levels(&swap.moves);
        for (&levels, ids) in &moves {
            Self::move_files(&mut tx, ids, levels).await?;
        }
        let version = Self::next_version(&mut tx).await?;
        Self::stamp_version(&mut tx, "removed_version", &inputs, version).await?;
        let moved: Vec<i64> = moves.into_values().flatten().collect();
        Self::stamp_version(&mut tx, "level_version", &moved, version).await?;
        // A job's outputs are few (its input bytes ÷ the target file size).
        for file in &swap.outputs {
            Self::insert_file(&mut tx, file, swap.seq, version).await?;
        }
        tx.commit().await?;
        publish(&self.notify, version);
        Ok(version)
    }

    async fn claim(&self, job: &str, ranges: &[ClaimRange], ttl: Duration) -> MetaResult<bool> {
        let mut tx = self.writer.begin().await?;
        if let Some(lock) = D::LOCK_CLAIMS {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        // Expired claims conflict with nothing; their rows go once purge has
        // stopped protecting their outputs too (see `live_claim_jobs`).
        let sql = format!(
            "DELETE FROM compaction_claims WHERE {} <= {} - $1",
            claim_expiry(),
            D::NOW_MS
        );
        sqlx::query(&sql)
            .bind(CLAIM_MARGIN.as_millis() as i64)
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "SELECT {CLAIM_COLUMNS} FROM compaction_claims WHERE job <> $1 AND expires_at_ms > {}",
            D::NOW_MS
        );
        let rows = sqlx::query(&sql).bind(job).fetch_all(&mut *tx).await?;
        let held = rows
            .iter()
            .map(Self::claim_from_row)
            .collect::<MetaResult<Vec<_>>>()?;
        if claims_conflict(&held, ranges) {
            return Ok(false);
        }
        for r in ranges {
            let sql = format!(
                "INSERT INTO compaction_claims (job, level, min_key, max_key, expires_at_ms, db_clock) \
                 VALUES ($1, $2, $3, $4, {} + $5, 1)",
                D::NOW_MS
            );
            sqlx::query(&sql)
                .bind(job)
                .bind(r.level as i64)
                .bind(&r.min_key)
                .bind(&r.max_key)
                .bind(ttl.as_millis() as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn renew_claim(&self, job: &str, ttl: Duration) -> MetaResult<bool> {
        // Never revives an expired claim: purge may already treat it as dead.
        let sql = format!(
            "UPDATE compaction_claims SET expires_at_ms = {now} + $1, db_clock = 1 \
             WHERE job = $2 AND expires_at_ms > {now}",
            now = D::NOW_MS
        );
        let done = sqlx::query(&sql)
            .bind(ttl.as_millis() as i64)
            .bind(job)
            .execute(&self.writer)
            .await?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn release_claim(&self, job: &str) -> MetaResult<()> {
        sqlx::query("DELETE FROM compaction_claims WHERE job = $1")
            .bind(job)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn live_claim_jobs(&self) -> MetaResult<Vec<String>> {
        let sql = format!(
            "SELECT DISTINCT job FROM compaction_claims WHERE {} > {} - $1",
            claim_expiry(),
            D::NOW_MS
        );
        let jobs = sqlx::query_scalar(&sql)
            .bind(CLAIM_MARGIN.as_millis() as i64)
            .fetch_all(&self.reader)
            .await?;
        Ok(jobs)
    }

    async fn live_claims(&self) -> MetaResult<Vec<ClaimRange>> {
        let sql = format!(
            "SELECT {CLAIM_COLUMNS} FROM compaction_claims WHERE expires_at_ms > {}",
            D::NOW_MS
        );
        let rows = sqlx::query(&sql).fetch_all(&self.reader).await?;
        rows.iter().map(Self::claim_from_row).collect()
    }

    async fn register_writer(&self, writer: &str, ttl: Duration) -> MetaResult<()> {
        let mut tx = self.writer.begin().await?;
        // Intents expired an hour ago protect nothing: drop them.
        let sql = format!(
            "DELETE FROM writer_intents WHERE expires_at_ms < {} - 3600000",
            D::NOW_MS
        );
        sqlx::query(&sql).execute(&mut *tx).await?;
        let sql = format!(
            "INSERT INTO writer_intents (writer, expires_at_ms) VALUES ($1, {} + $2)",
            D::NOW_MS
        );
        sqlx::query(&sql)
            .bind(writer)
            .bind(ttl.as_millis() as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn renew_writer(&self, writer: &str, ttl: Duration) -> MetaResult<bool> {
        let sql = format!(
            "UPDATE writer_intents SET expires_at_ms = {now} + $1 \
             WHERE writer = $2 AND expires_at_ms > {now}",
            now = D::NOW_MS
        );
        let done = sqlx::query(&sql)
            .bind(ttl.as_millis() as i64)
            .bind(writer)
            .execute(&self.writer)
            .await?;
        Ok(D::rows_affected(&done) > 0)
    }

    async fn live_writers(&self) -> MetaResult<Vec<String>> {
        let sql = format!(
            "SELECT writer FROM writer_intents WHERE expires_at_ms > {}",
            D::NOW_MS
        );
        Ok(sqlx::query_scalar(&sql).fetch_all(&self.reader).await?)
    }

    async fn l0_file_count(&self) -> MetaResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM files WHERE level = 0 AND removed_version IS NULL",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(n as u64)
    }

    async fn dead_bytes(&self) -> MetaResult<u64> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM files \
             WHERE removed_version IS NOT NULL",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(bytes.max(0) as u64)
    }

    async fn tier_counts(&self) -> MetaResult<TierCounts> {
        // One row from the partial index over live rows (migration 0006).
        // The WAL tier is what `FileRecord::is_wal_tier` says: batchers'
        // objects of kind 'wal'; older intra-L0 outputs are 'wal' under run/.
        let wal = format!("kind = 'wal' AND object LIKE '{WAL_OBJECT_PREFIX}%'");
        let row = sqlx::query(&format!(
            "SELECT CAST(COALESCE(SUM(CASE WHEN {wal} THEN 1 ELSE 0 END), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(CASE WHEN {wal} THEN size_bytes ELSE 0 END), 0) AS BIGINT), \
                    CAST(COALESCE(SUM(CASE WHEN {wal} THEN 0 ELSE 1 END), 0) AS BIGINT) \
             FROM files WHERE level = 0 AND removed_version IS NULL"
        ))
        .fetch_one(&self.reader)
        .await?;
        let count = |i: usize| -> MetaResult<u64> { Ok(row.try_get::<i64, _>(i)?.max(0) as u64) };
        Ok(TierCounts {
            wal_files: count(0)?,
            wal_bytes: count(1)?,
            l0_files: count(2)?,
        })
    }

    async fn all_files(&self) -> MetaResult<Vec<FileRecord>> {
        self.files(&format!(
            "SELECT {FILE_COLUMNS} FROM files ORDER BY id",
            FILE_COLUMNS = &*FILE_COLUMNS
        ))
        .await
    }

    async fn forget_files(&self, ids: &[i64]) -> MetaResult<()> {
        let mut tx = self.writer.begin().await?;
        // Raise the watermark in the same transaction (see migration 0003):
        // readers behind these removals will reload the whole manifest.
        let sql = format!(
            "UPDATE manifest_version SET forgotten_version = {}(forgotten_version, \
             COALESCE((SELECT max(removed_version) FROM files WHERE {} \
             AND removed_version IS NOT NULL), 0)) WHERE id = 1",
            D::GREATEST,
            D::in_list("id", "$1"),
        );
        D::bind_ids(sqlx::query(&sql), ids)
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "DELETE FROM files WHERE {} AND removed_version IS NOT NULL",
            D::in_list("id", "$1")
        );
        D::bind_ids(sqlx::query(&sql), ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> MetaResult<bool> {
        let sql = format!(
            "INSERT INTO leases (name, holder, expires_at_ms) VALUES ($1, $2, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms <= {now}",
            now = D::NOW_MS
        );
        let done = sqlx::query(&sql)
            .bind(name)
            .bind(holder)
            .bind(ttl.as_millis() as i64)
            .execute(&self.writer)
            .await?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> MetaResult<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn store_id(&self) -> MetaResult<Option<String>> {
        let id = sqlx::query_scalar("SELECT store_id FROM store_identity WHERE id = 1")
            .fetch_optional(&self.reader)
            .await?;
        Ok(id)
    }

    async fn init_store_id(&self, id: &str) -> MetaResult<String> {
        // Two statements: after a conflict (another process inserted first and
        // committed), the SELECT's fresh snapshot sees that process's row.
        sqlx::query(
            "INSERT INTO store_identity (id, store_id, created_at_ms) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        let recorded = sqlx::query_scalar("SELECT store_id FROM store_identity WHERE id = 1")
            .fetch_one(&self.writer)
            .await?;
        Ok(recorded)
    }

    async fn current_version(&self) -> MetaResult<u64> {
        let v: i64 = sqlx::query_scalar("SELECT version FROM manifest_version WHERE id = 1")
            .fetch_one(&self.reader)
            .await?;
        Ok(v as u64)
    }

    async fn clock_ms(&self) -> MetaResult<i64> {
        let sql = format!("SELECT {}", D::NOW_MS);
        Ok(sqlx::query_scalar(&sql).fetch_one(&self.reader).await?)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
