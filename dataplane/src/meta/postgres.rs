//! PostgreSQL backend: production metadata shared by every batcher, index and job.
//!
//! Same schema and semantics as `sqlite`: every manifest change bumps the one
//! `manifest_version` row inside its transaction. The row lock is held until
//! commit, so a second committer waits and takes the next number only after
//! the first is visible: versions are gapless and in commit order, and
//! catch-up by "version > applied" never skips a file (invariant 4).
//!
//! Change notification: the committing transaction sends
//! `NOTIFY skyvault_manifest '<version>'` (delivered only on commit); a
//! background `PgListener` feeds `subscribe()`. Notifications can be lost
//! while the listener reconnects, which is why the index also polls.

use super::{
    ClaimRange, FileKind, FileRecord, ManifestDelta, MetaError, MetaResult, MetaStore, NewFile,
    Swap, claims_conflict, delta_from_rows, intent_lapsed, now_ms,
};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::watch;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The LISTEN/NOTIFY channel carrying new manifest versions.
pub const CHANNEL: &str = "skyvault_manifest";

/// A request waiting this long for a connection fails as unavailable rather
/// than hanging: callers (BatchWrite) must answer before their deadline.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Bounds on every metadata transaction, set on each pooled connection (so
/// on every transaction, migrations and the listener included). A stalled
/// holder of the `manifest_version` row lock must not block every batcher
/// indefinitely, and no transaction may outlive purge's grace period (60 s at
/// the least, the CRD's minimum): a transaction waits at most
/// [`LOCK_TIMEOUT`] for a lock, each statement runs at most
/// [`STATEMENT_TIMEOUT`], and a session idle inside a transaction for
/// [`IDLE_IN_TRANSACTION_TIMEOUT`] is terminated by the server (its
/// transaction rolls back). Documented in docs/operations.md.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// See [`LOCK_TIMEOUT`].
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(20);
/// See [`LOCK_TIMEOUT`].
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The server-side settings applying the bounds above to a connection.
fn bounded(options: PgConnectOptions) -> PgConnectOptions {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    options.options([
        ("lock_timeout", ms(LOCK_TIMEOUT)),
        ("statement_timeout", ms(STATEMENT_TIMEOUT)),
        (
            "idle_in_transaction_session_timeout",
            ms(IDLE_IN_TRANSACTION_TIMEOUT),
        ),
    ])
}

const FILE_COLUMNS: &str = "id, object, kind, level, seq, min_key, max_key, entry_count, \
     size_bytes, added_version, removed_version, created_at_ms, removed_at_ms";

pub struct PostgresMeta {
    describe: String,
    pool: PgPool,
    notify: watch::Sender<u64>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresMeta {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresMeta {
    /// Connects, runs the embedded migrations and starts listening.
    pub async fn open(url: &str) -> MetaResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| MetaError::BadUrl {
            url: redact(url),
            reason: e.to_string(),
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(bounded(options))
            .await?;
        MIGRATOR.run(&pool).await?;
        let notify = watch::channel(0).0;
        let listener = tokio::spawn(listen(pool.clone(), notify.clone()));
        let meta = PostgresMeta {
            describe: redact(url),
            pool,
            notify,
            listener,
        };
        let version = meta.current_version().await?;
        meta.published(version);
        Ok(meta)
    }

    /// The pool, for tests that interleave transactions by hand.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Takes the next manifest version inside `tx` and announces it on commit.
    async fn next_version(tx: &mut Transaction<'_, Postgres>) -> MetaResult<u64> {
        let version: i64 = sqlx::query_scalar(
            "UPDATE manifest_version SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut **tx)
        .await?;
        // Transactional: delivered only if (and when) `tx` commits.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(version.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(version as u64)
    }

    async fn insert_file(
        tx: &mut Transaction<'_, Postgres>,
        file: &NewFile,
        seq: u64,
        version: u64,
    ) -> MetaResult<()> {
        let sql = format!("INSERT INTO files ({INSERT_COLUMNS}) VALUES ({INSERT_VALUES})");
        bind_file(sqlx::query(&sql), file, seq, version)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    fn published(&self, version: u64) {
        publish(&self.notify, version);
    }
}

fn claim_from_row(row: &PgRow) -> MetaResult<ClaimRange> {
    Ok(ClaimRange {
        level: row.try_get::<i64, _>("level")? as u32,
        min_key: row.try_get("min_key")?,
        max_key: row.try_get("max_key")?,
    })
}

/// Inside a swap: fails unless `job` still holds a live claim, then drops it.
async fn take_claim(tx: &mut Transaction<'_, Postgres>, job: &str) -> MetaResult<()> {
    let live = sqlx::query("DELETE FROM compaction_claims WHERE job = $1 AND expires_at_ms > $2")
        .bind(job)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    if live.rows_affected() == 0 {
        return Err(MetaError::Conflict(format!(
            "compaction {job} lost its claim"
        )));
    }
    sqlx::query("DELETE FROM compaction_claims WHERE job = $1")
        .bind(job)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn publish(notify: &watch::Sender<u64>, version: u64) {
    notify.send_if_modified(|v| {
        let newer = version > *v;
        if newer {
            *v = version;
        }
        newer
    });
}

/// Feeds `notify` from LISTEN until the store is dropped, reconnecting with
/// backoff; after a reconnect it publishes the current version, covering
/// notifications sent while it was away.
async fn listen(pool: PgPool, notify: watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection failed; index falls back to polling");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN {CHANNEL} failed");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            continue;
        }
        if let Ok(v) =
            sqlx::query_scalar::<_, i64>("SELECT version FROM manifest_version WHERE id = 1")
                .fetch_one(&pool)
                .await
        {
            publish(&notify, v as u64);
        }
        backoff = Duration::from_millis(100);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match n.payload().parse::<u64>() {
                    Ok(v) => publish(&notify, v),
                    Err(_) => tracing::warn!(payload = n.payload(), "bad {CHANNEL} payload"),
                },
                // The connection was lost: reconnect and re-read the version.
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection lost");
                    break;
                }
            }
        }
    }
}

/// Hides a password in a URL for logs and errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn file_from_row(row: &PgRow) -> MetaResult<FileRecord> {
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
        size_bytes: row.try_get::<i64, _>("size_bytes")? as u64,
        added_version: row.try_get::<i64, _>("added_version")? as u64,
        removed_version: removed.map(|v| v as u64),
        created_at_ms: row.try_get("created_at_ms")?,
        removed_at_ms: row.try_get("removed_at_ms")?,
    })
}

/// The database's clock in Unix milliseconds: writer intents are timed by
/// one clock shared by every batcher and purge, whatever their own clocks say.
const DB_NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Every writer intent of `files` is live for at least the commit margin
/// (see `crate::writer_intent`); else the error names the lapsed one.
async fn check_intents(tx: &mut Transaction<'_, Postgres>, files: &[NewFile]) -> MetaResult<()> {
    let writers = crate::writer_intent::writers_of(files.iter().map(|f| f.object.as_str()));
    if writers.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT writer FROM writer_intents WHERE writer = ANY($1) AND expires_at_ms > {DB_NOW_MS} + $2"
    );
    let live: Vec<String> = sqlx::query_scalar(&sql)
        .bind(&writers)
        .bind(crate::writer_intent::COMMIT_MARGIN.as_millis() as i64)
        .fetch_all(&mut **tx)
        .await?;
    match writers.iter().find(|w| !live.iter().any(|l| l == *w)) {
        Some(lapsed) => Err(intent_lapsed(lapsed)),
        None => Ok(()),
    }
}

/// The columns a new file's row sets, and their parameters ([`bind_file`]).
const INSERT_COLUMNS: &str = "object, kind, level, seq, min_key, max_key, entry_count, \
     size_bytes, added_version, created_at_ms";
const INSERT_VALUES: &str = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10";

/// Binds a new file's row ($1..$10 of [`INSERT_VALUES`]).
fn bind_file<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    file: &'q NewFile,
    seq: u64,
    version: u64,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&file.object)
        .bind(file.kind.as_str())
        .bind(file.level as i64)
        .bind(seq as i64)
        .bind(&file.min_key)
        .bind(&file.max_key)
        .bind(file.entry_count as i64)
        .bind(file.size_bytes as i64)
        .bind(version as i64)
        .bind(now_ms())
}

/// Last in a commit: inserts `file` (of sequence `version`) only if every
/// one of `writers` holds an intent live for at least the commit margin;
/// false (nothing inserted) otherwise.
async fn insert_if_intents_live(
    tx: &mut Transaction<'_, Postgres>,
    file: &NewFile,
    version: u64,
    writers: &[&str],
) -> MetaResult<bool> {
    let sql = format!(
        "WITH live AS (SELECT count(*) AS n FROM writer_intents \
           WHERE writer = ANY($11) AND expires_at_ms > {DB_NOW_MS} + $12) \
         INSERT INTO files ({INSERT_COLUMNS}) SELECT {INSERT_VALUES} FROM live WHERE live.n = $13"
    );
    let done = bind_file(sqlx::query(&sql), file, version, version)
        .bind(writers)
        .bind(crate::writer_intent::COMMIT_MARGIN.as_millis() as i64)
        .bind(writers.len() as i64)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl MetaStore for PostgresMeta {
    async fn commit_wals(&self, files: Vec<NewFile>) -> MetaResult<Vec<u64>> {
        let mut tx = self.pool.begin().await?;
        let mut versions = Vec::with_capacity(files.len());
        let writers = crate::writer_intent::writers_of(files.iter().map(|f| f.object.as_str()));
        for (i, file) in files.iter().enumerate() {
            let version = Self::next_version(&mut tx).await?;
            if i + 1 == files.len() && !writers.is_empty() {
                // The intent check rides on the last insert: no extra round trip.
                if !insert_if_intents_live(&mut tx, file, version, &writers).await? {
                    check_intents(&mut tx, &files).await?;
                    return Err(intent_lapsed(writers[0]));
                }
            } else {
                Self::insert_file(&mut tx, file, version, version).await?;
            }
            versions.push(version);
        }
        tx.commit().await?;
        if let Some(&last) = versions.last() {
            self.published(last);
        }
        Ok(versions)
    }

    async fn changes_since(&self, version: u64) -> MetaResult<ManifestDelta> {
        // REPEATABLE READ: the version and the rows come from one snapshot
        // (READ COMMITTED would take a new snapshot per statement).
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
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
             OR level_version > $1 ORDER BY added_version, id"
        );
        let rows = sqlx::query(&sql)
            .bind(since as i64)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let files = rows
            .iter()
            .map(file_from_row)
            .collect::<MetaResult<Vec<_>>>()?;
        Ok(delta_from_rows(version, since, current as u64, files))
    }

    async fn live_files(&self) -> MetaResult<Vec<FileRecord>> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE removed_version IS NULL ORDER BY seq DESC, id DESC"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(file_from_row).collect()
    }

    async fn swap(&self, swap: Swap) -> MetaResult<u64> {
        let mut tx = self.pool.begin().await?;
        let version = Self::next_version(&mut tx).await?;
        // Every early return drops `tx`, which rolls everything back, the
        // version bump and NOTIFY included.
        if let Some(job) = &swap.claim {
            take_claim(&mut tx, job).await?;
        }
        for id in &swap.inputs {
            let done = sqlx::query(
                "UPDATE files SET removed_version = $1, removed_at_ms = $2 \
                 WHERE id = $3 AND removed_version IS NULL",
            )
            .bind(version as i64)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(MetaError::Conflict(format!(
                    "input file {id} is no longer live"
                )));
            }
        }
        for &(id, from, to) in &swap.moves {
            let done = sqlx::query(
                "UPDATE files SET level = $1, level_version = $2 \
                 WHERE id = $3 AND level = $4 AND removed_version IS NULL",
            )
            .bind(to as i64)
            .bind(version as i64)
            .bind(id)
            .bind(from as i64)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(MetaError::Conflict(format!(
                    "file {id} is no longer live at level {from}"
                )));
            }
        }
        for file in &swap.outputs {
            Self::insert_file(&mut tx, file, swap.seq, version).await?;
        }
        tx.commit().await?;
        self.published(version);
        Ok(version)
    }

    async fn claim(&self, job: &str, ranges: &[ClaimRange], ttl: Duration) -> MetaResult<bool> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // Claimers queue on this lock, so none inserts between another's check
        // and insert; renewals and swaps wait only for this short transaction.
        sqlx::query("LOCK TABLE compaction_claims IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM compaction_claims WHERE expires_at_ms <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let rows =
            sqlx::query("SELECT level, min_key, max_key FROM compaction_claims WHERE job <> $1")
                .bind(job)
                .fetch_all(&mut *tx)
                .await?;
        let held = rows
            .iter()
            .map(claim_from_row)
            .collect::<MetaResult<Vec<_>>>()?;
        if claims_conflict(&held, ranges) {
            return Ok(false);
        }
        for r in ranges {
            sqlx::query(
                "INSERT INTO compaction_claims (job, level, min_key, max_key, expires_at_ms) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(job)
            .bind(r.level as i64)
            .bind(&r.min_key)
            .bind(&r.max_key)
            .bind(now + ttl.as_millis() as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn renew_claim(&self, job: &str, ttl: Duration) -> MetaResult<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE compaction_claims SET expires_at_ms = $1 WHERE job = $2 AND expires_at_ms > $3",
        )
        .bind(now + ttl.as_millis() as i64)
        .bind(job)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn register_writer(&self, writer: &str, ttl: Duration) -> MetaResult<()> {
        let mut tx = self.pool.begin().await?;
        // Intents expired an hour ago protect nothing: drop them.
        let sql = format!("DELETE FROM writer_intents WHERE expires_at_ms < {DB_NOW_MS} - 3600000");
        sqlx::query(&sql).execute(&mut *tx).await?;
        let sql = format!(
            "INSERT INTO writer_intents (writer, expires_at_ms) VALUES ($1, {DB_NOW_MS} + $2)"
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
            "UPDATE writer_intents SET expires_at_ms = {DB_NOW_MS} + $1 \
             WHERE writer = $2 AND expires_at_ms > {DB_NOW_MS}"
        );
        let done = sqlx::query(&sql)
            .bind(ttl.as_millis() as i64)
            .bind(writer)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn store_id(&self) -> MetaResult<Option<String>> {
        let id = sqlx::query_scalar("SELECT store_id FROM store_identity WHERE id = 1")
            .fetch_optional(&self.pool)
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
        .execute(&self.pool)
        .await?;
        let recorded = sqlx::query_scalar("SELECT store_id FROM store_identity WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(recorded)
    }

    async fn live_writers(&self) -> MetaResult<Vec<String>> {
        let sql = format!("SELECT writer FROM writer_intents WHERE expires_at_ms > {DB_NOW_MS}");
        Ok(sqlx::query_scalar(&sql).fetch_all(&self.pool).await?)
    }

    async fn live_claim_jobs(&self) -> MetaResult<Vec<String>> {
        let jobs = sqlx::query_scalar(
            "SELECT DISTINCT job FROM compaction_claims WHERE expires_at_ms > $1",
        )
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        Ok(jobs)
    }

    async fn live_claims(&self) -> MetaResult<Vec<ClaimRange>> {
        let rows = sqlx::query(
            "SELECT level, min_key, max_key FROM compaction_claims WHERE expires_at_ms > $1",
        )
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(claim_from_row).collect()
    }

    async fn release_claim(&self, job: &str) -> MetaResult<()> {
        sqlx::query("DELETE FROM compaction_claims WHERE job = $1")
            .bind(job)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn l0_file_count(&self) -> MetaResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM files WHERE level = 0 AND removed_version IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    async fn all_files(&self) -> MetaResult<Vec<FileRecord>> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM files ORDER BY id");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(file_from_row).collect()
    }

    async fn forget_files(&self, ids: &[i64]) -> MetaResult<()> {
        let mut tx = self.pool.begin().await?;
        // Raise the watermark in the same transaction (see migration 0003):
        // readers behind these removals will reload the whole manifest.
        sqlx::query(
            "UPDATE manifest_version SET forgotten_version = GREATEST(forgotten_version, \
             COALESCE((SELECT max(removed_version) FROM files WHERE id = ANY($1) \
             AND removed_version IS NOT NULL), 0)) WHERE id = 1",
        )
        .bind(ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM files WHERE id = ANY($1) AND removed_version IS NOT NULL")
            .bind(ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> MetaResult<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms <= $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl.as_millis() as i64)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> MetaResult<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn current_version(&self) -> MetaResult<u64> {
        let v: i64 = sqlx::query_scalar("SELECT version FROM manifest_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(v as u64)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://sv:secret@db:5432/sv"),
            "postgres://sv:***@db:5432/sv"
        );
        assert_eq!(redact("postgres://db/sv"), "postgres://db/sv");
        assert_eq!(redact("postgres://sv@db/sv"), "postgres://sv@db/sv");
    }
}
