//! SQLite backend: the embedded default for `skyvault standalone`.
//!
//! One write connection (SQLite has one writer anyway; queuing in the pool is
//! cheaper than SQLITE_BUSY retries) and a small read pool, WAL journal mode,
//! `synchronous = FULL` so a committed WAL row survives power loss, not only a
//! process crash (invariant 1).

use super::sql::{Dialect, SqlMeta, Statement};
use super::{MetaError, MetaResult};
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::watch;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// SQLite's spelling of the shared statements (`sql.rs`).
pub struct SqliteDialect;

impl Dialect for SqliteDialect {
    type DB = Sqlite;
    /// The host's clock, as SQLite reads it (to the millisecond, like `now_ms`).
    const NOW_MS: &'static str = "CAST(ROUND(unixepoch('subsec') * 1000) AS INTEGER)";
    const GREATEST: &'static str = "MAX";
    /// A read transaction already reads one snapshot (WAL mode).
    const SNAPSHOT: Option<&'static str> = None;
    /// `claim` writes first (it deletes expired claims), which takes SQLite's
    /// one write lock: no other process can claim between its read of the
    /// held ranges and its insert.
    const LOCK_CLAIMS: Option<&'static str> = None;
    /// Readers in other processes poll.
    const ANNOUNCE: Option<&'static str> = None;

    /// Lists travel as JSON arrays (SQLite has no array type).
    fn in_list(column: &str, param: &str) -> String {
        format!("{column} IN (SELECT value FROM json_each({param}))")
    }

    fn bind_ids<'q>(query: Statement<'q, Self>, ids: &'q [i64]) -> Statement<'q, Self> {
        query.bind(json_array(ids))
    }

    fn bind_names<'q>(query: Statement<'q, Self>, names: &'q [&'q str]) -> Statement<'q, Self> {
        query.bind(json_array(names))
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

fn json_array<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).expect("a list of numbers or strings serializes")
}

/// The embedded metadata store (see the module docs).
pub type SqliteMeta = SqlMeta<SqliteDialect>;

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
        SqlMeta::start(url.into(), reader, writer, watch::channel(0).0, None).await
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

    #[tokio::test]
    async fn tier_counts_follow_the_wal_tier_rule() {
        let (_dir, meta) = fresh().await;
        conformance::tier_counts_follow_the_wal_tier_rule(&meta).await;
    }

    #[tokio::test]
    async fn claims_and_removals_follow_the_database_clock() {
        let (_dir, meta) = fresh().await;
        conformance::claims_and_removals_follow_the_database_clock(&meta).await;
    }

    /// Rows an older binary stamped with its own clock (migration 0007 left
    /// their flags 0) count `LEGACY_CLOCK_MARGIN` later for purge.
    #[tokio::test]
    async fn rows_stamped_by_process_clocks_get_the_legacy_margin() {
        use crate::meta::{LEGACY_CLOCK_MARGIN, MetaStore};
        let (_dir, meta) = fresh().await;
        let now = meta.clock_ms().await.unwrap();
        let expired = now - 60_000;
        sqlx::query(
            "INSERT INTO compaction_claims (job, level, min_key, max_key, expires_at_ms) \
             VALUES ('old', 1, x'', NULL, $1)",
        )
        .bind(expired)
        .execute(meta.writer_pool())
        .await
        .unwrap();
        assert_eq!(
            meta.live_claim_jobs().await.unwrap(),
            vec!["old".to_string()]
        );
        assert!(
            meta.live_claims().await.unwrap().is_empty(),
            "expired for pickers"
        );
        sqlx::query(
            "INSERT INTO files (object, kind, level, seq, min_key, max_key, entry_count, \
             size_bytes, added_version, created_at_ms, removed_version, removed_at_ms) \
             VALUES ('run/x.sst', 'run', 1, 1, x'61', x'62', 1, 1, 1, 0, 2, $1)",
        )
        .bind(expired)
        .execute(meta.writer_pool())
        .await
        .unwrap();
        let row = meta.all_files().await.unwrap().remove(0);
        assert_eq!(
            row.removed_at_ms,
            Some(expired + LEGACY_CLOCK_MARGIN.as_millis() as i64)
        );
    }
}
