//! SQLite backend: the embedded default for `skyvault standalone`.
//!
//! One write connection (SQLite has one writer anyway; queuing in the pool is
//! cheaper than SQLITE_BUSY retries) and a small read pool, WAL journal mode,
//! `synchronous = FULL` so a committed WAL row survives power loss, not only a
//! process crash (invariant 1).

use super::{
    ClaimRange, FileKind, FileRecord, ManifestDelta, MetaError, MetaResult, MetaStore, NewFile,
    Swap, claims_conflict, delta_from_rows, intent_lapsed, now_ms,
};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::watch;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const FILE_COLUMNS: &str = "id, object, kind, level, seq, min_key, max_key, entry_count, \
     size_bytes, added_version, removed_version, created_at_ms, removed_at_ms";

pub struct SqliteMeta {
    url: String,
    writer: SqlitePool,
    reader: SqlitePool,
    notify: watch::Sender<u64>,
}

impl SqliteMeta {
    pub async fn open(url: &str) -> MetaResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| MetaError::BadUrl {
                url: url.into(),
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let meta = SqliteMeta {
            url: url.into(),
            writer,
            reader,
            notify: watch::channel(0).0,
        };
        let version = meta.current_version().await?;
        meta.notify.send_replace(version);
        Ok(meta)
    }

    /// Takes the next manifest version inside `tx` (see the module docs of `meta`).
    pub(crate) async fn next_version(tx: &mut Transaction<'_, Sqlite>) -> MetaResult<u64> {
        let version: i64 = sqlx::query_scalar(
            "UPDATE manifest_version SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut **tx)
        .await?;
        Ok(version as u64)
    }

    pub(crate) async fn insert_file(
        tx: &mut Transaction<'_, Sqlite>,
        file: &NewFile,
        seq: u64,
        version: u64,
    ) -> MetaResult<()> {
        sqlx::query(
            "INSERT INTO files (object, kind, level, seq, min_key, max_key, entry_count, \
             size_bytes, added_version, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
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
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    fn published(&self, version: u64) {
        self.notify.send_if_modified(|v| {
            let newer = version > *v;
            if newer {
                *v = version;
            }
            newer
        });
    }
}

fn file_from_row(row: &SqliteRow) -> MetaResult<FileRecord> {
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

fn claim_from_row(row: &SqliteRow) -> MetaResult<ClaimRange> {
    Ok(ClaimRange {
        level: row.try_get::<i64, _>("level")? as u32,
        min_key: row.try_get("min_key")?,
        max_key: row.try_get("max_key")?,
    })
}

/// Inside a swap: fails unless `job` still holds a live claim, then drops it.
async fn take_claim(tx: &mut Transaction<'_, Sqlite>, job: &str) -> MetaResult<()> {
    let live = sqlx::query("DELETE FROM compaction_claims WHERE job = ? AND expires_at_ms > ?")
        .bind(job)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    if live.rows_affected() == 0 {
        return Err(MetaError::Conflict(format!(
            "compaction {job} lost its claim"
        )));
    }
    sqlx::query("DELETE FROM compaction_claims WHERE job = ?")
        .bind(job)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Last in a commit: every writer intent of `files` is live for at least
/// the commit margin (see `crate::writer_intent`), else nothing commits.
async fn check_intents(tx: &mut Transaction<'_, Sqlite>, files: &[NewFile]) -> MetaResult<()> {
    let until = now_ms() + crate::writer_intent::COMMIT_MARGIN.as_millis() as i64;
    for writer in crate::writer_intent::writers_of(files.iter().map(|f| f.object.as_str())) {
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM writer_intents WHERE writer = ? AND expires_at_ms > ?",
        )
        .bind(writer)
        .bind(until)
        .fetch_optional(&mut **tx)
        .await?;
        if live.is_none() {
            return Err(intent_lapsed(writer));
        }
    }
    Ok(())
}

#[async_trait]
impl MetaStore for SqliteMeta {
    async fn commit_wals(&self, files: Vec<NewFile>) -> MetaResult<Vec<u64>> {
        let mut tx = self.writer.begin().await?;
        let mut versions = Vec::with_capacity(files.len());
        for file in &files {
            let version = Self::next_version(&mut tx).await?;
            Self::insert_file(&mut tx, file, version, version).await?;
            versions.push(version);
        }
        check_intents(&mut tx, &files).await?;
        tx.commit().await?;
        if let Some(&last) = versions.last() {
            self.published(last);
        }
        Ok(versions)
    }

    async fn changes_since(&self, version: u64) -> MetaResult<ManifestDelta> {
        // One read transaction, so the version and the rows are one snapshot.
        let mut tx = self.reader.begin().await?;
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
            "SELECT {FILE_COLUMNS} FROM files WHERE added_version > ?1 OR removed_version > ?1 \
             OR level_version > ?1 ORDER BY added_version, id"
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
        let rows = sqlx::query(&sql).fetch_all(&self.reader).await?;
        rows.iter().map(file_from_row).collect()
    }

    async fn swap(&self, swap: Swap) -> MetaResult<u64> {
        let mut tx = self.writer.begin().await?;
        let version = Self::next_version(&mut tx).await?;
        // Every early return drops `tx`, which rolls everything back, the version bump included.
        if let Some(job) = &swap.claim {
            take_claim(&mut tx, job).await?;
        }
        for id in &swap.inputs {
            let done = sqlx::query(
                "UPDATE files SET removed_version = ?, removed_at_ms = ? \
                 WHERE id = ? AND removed_version IS NULL",
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
                "UPDATE files SET level = ?, level_version = ? \
                 WHERE id = ? AND level = ? AND removed_version IS NULL",
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

    async fn l0_file_count(&self) -> MetaResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM files WHERE level = 0 AND removed_version IS NULL",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(n as u64)
    }

    async fn all_files(&self) -> MetaResult<Vec<FileRecord>> {
        let sql = format!("SELECT {FILE_COLUMNS} FROM files ORDER BY id");
        let rows = sqlx::query(&sql).fetch_all(&self.reader).await?;
        rows.iter().map(file_from_row).collect()
    }

    async fn forget_files(&self, ids: &[i64]) -> MetaResult<()> {
        let mut tx = self.writer.begin().await?;
        for id in ids {
            // Raise the watermark first (see migration 0003): readers behind
            // this removal will reload the whole manifest.
            sqlx::query(
                "UPDATE manifest_version SET forgotten_version = MAX(forgotten_version, \
                 COALESCE((SELECT removed_version FROM files WHERE id = ? \
                 AND removed_version IS NOT NULL), 0)) WHERE id = 1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM files WHERE id = ? AND removed_version IS NOT NULL")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> MetaResult<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_at_ms <= ?4",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl.as_millis() as i64)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn claim(&self, job: &str, ranges: &[ClaimRange], ttl: Duration) -> MetaResult<bool> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        // Write first: it takes SQLite's write lock, so no other process can
        // claim between our read of the held ranges and our insert.
        sqlx::query("DELETE FROM compaction_claims WHERE expires_at_ms <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let rows =
            sqlx::query("SELECT level, min_key, max_key FROM compaction_claims WHERE job <> ?")
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
                 VALUES (?, ?, ?, ?, ?)",
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
            "UPDATE compaction_claims SET expires_at_ms = ? WHERE job = ? AND expires_at_ms > ?",
        )
        .bind(now + ttl.as_millis() as i64)
        .bind(job)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn register_writer(&self, writer: &str, ttl: Duration) -> MetaResult<()> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        // Intents expired an hour ago protect nothing: drop them.
        sqlx::query("DELETE FROM writer_intents WHERE expires_at_ms < ?")
            .bind(now - 3_600_000)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO writer_intents (writer, expires_at_ms) VALUES (?, ?)")
            .bind(writer)
            .bind(now + ttl.as_millis() as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn renew_writer(&self, writer: &str, ttl: Duration) -> MetaResult<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE writer_intents SET expires_at_ms = ? WHERE writer = ? AND expires_at_ms > ?",
        )
        .bind(now + ttl.as_millis() as i64)
        .bind(writer)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn store_id(&self) -> MetaResult<Option<String>> {
        let id = sqlx::query_scalar("SELECT store_id FROM store_identity WHERE id = 1")
            .fetch_optional(&self.reader)
            .await?;
        Ok(id)
    }

    async fn init_store_id(&self, id: &str) -> MetaResult<String> {
        sqlx::query(
            "INSERT INTO store_identity (id, store_id, created_at_ms) VALUES (1, ?, ?) \
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

    async fn live_writers(&self) -> MetaResult<Vec<String>> {
        let writers =
            sqlx::query_scalar("SELECT writer FROM writer_intents WHERE expires_at_ms > ?")
                .bind(now_ms())
                .fetch_all(&self.reader)
                .await?;
        Ok(writers)
    }

    async fn live_claim_jobs(&self) -> MetaResult<Vec<String>> {
        let jobs = sqlx::query_scalar(
            "SELECT DISTINCT job FROM compaction_claims WHERE expires_at_ms > ?",
        )
        .bind(now_ms())
        .fetch_all(&self.reader)
        .await?;
        Ok(jobs)
    }

    async fn live_claims(&self) -> MetaResult<Vec<ClaimRange>> {
        let rows = sqlx::query(
            "SELECT level, min_key, max_key FROM compaction_claims WHERE expires_at_ms > ?",
        )
        .bind(now_ms())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(claim_from_row).collect()
    }

    async fn release_claim(&self, job: &str) -> MetaResult<()> {
        sqlx::query("DELETE FROM compaction_claims WHERE job = ?")
            .bind(job)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> MetaResult<()> {
        sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn current_version(&self) -> MetaResult<u64> {
        let v: i64 = sqlx::query_scalar("SELECT version FROM manifest_version WHERE id = 1")
            .fetch_one(&self.reader)
            .await?;
        Ok(v as u64)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::SqliteMeta;
    use crate::meta::{DynMeta, conformance};
    use std::sync::Arc;

    async fn fresh() -> (tempfile::TempDir, SqliteMeta) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/meta.db", dir.path().display());
        let meta = SqliteMeta::open(&url).await.unwrap();
        (dir, meta)
    }

    #[tokio::test]
    async fn commits_are_sequenced_and_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/meta.db", dir.path().display());
        let open = async || {
            let meta: DynMeta = Arc::new(SqliteMeta::open(&url).await.unwrap());
            meta
        };
        conformance::commits_are_sequenced_and_caught_up(open).await;
    }

    #[tokio::test]
    async fn a_group_commit_takes_consecutive_versions_in_order() {
        let (_dir, meta) = fresh().await;
        conformance::a_group_commit_takes_consecutive_versions_in_order(&meta).await;
    }

    #[tokio::test]
    async fn swap_replaces_live_inputs_once() {
        let (_dir, meta) = fresh().await;
        conformance::swap_replaces_live_inputs_once(&meta).await;
    }

    #[tokio::test]
    async fn leases_exclude_until_expiry() {
        let (_dir, meta) = fresh().await;
        conformance::leases_exclude_until_expiry(&meta).await;
    }

    #[tokio::test]
    async fn duplicate_object_is_rejected_without_a_version_bump() {
        let (_dir, meta) = fresh().await;
        conformance::duplicate_object_is_rejected_without_a_version_bump(&meta).await;
    }

    #[tokio::test]
    async fn claims_exclude_and_swaps_check_them() {
        let (_dir, meta) = fresh().await;
        conformance::claims_exclude_and_swaps_check_them(&meta).await;
    }

    #[tokio::test]
    async fn moves_change_levels_and_are_reported() {
        let (_dir, meta) = fresh().await;
        conformance::moves_change_levels_and_are_reported(&meta).await;
    }

    #[tokio::test]
    async fn forgotten_removals_force_a_full_reload() {
        let (_dir, meta) = fresh().await;
        conformance::forgotten_removals_force_a_full_reload(&meta).await;
    }

    #[tokio::test]
    async fn writer_intents_gate_commits() {
        let (_dir, meta) = fresh().await;
        conformance::writer_intents_gate_commits(&meta).await;
    }

    #[tokio::test]
    async fn store_id_is_recorded_once() {
        let (_dir, meta) = fresh().await;
        conformance::store_id_is_recorded_once(&meta).await;
    }
}
