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

use super::sql::{Dialect, SqlMeta, Statement, publish};
use super::{MetaError, MetaResult};
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgQueryResult};
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

/// PostgreSQL's spelling of the shared statements (`sql.rs`).
pub struct PgDialect;

impl Dialect for PgDialect {
    type DB = Postgres;
    const NOW_MS: &'static str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";
    const GREATEST: &'static str = "GREATEST";
    // READ COMMITTED would take a new snapshot per statement.
    const SNAPSHOT: Option<&'static str> =
        Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    // Renewals and swaps wait only for this short transaction.
    const LOCK_CLAIMS: Option<&'static str> =
        Some("LOCK TABLE compaction_claims IN SHARE ROW EXCLUSIVE MODE");
    // Transactional: delivered only if (and when) the transaction commits.
    const ANNOUNCE: Option<&'static str> = Some("SELECT pg_notify('skyvault_manifest', $1)");

    fn in_list(column: &str, param: &str) -> String {
        format!("{column} = ANY({param})")
    }

    fn bind_ids<'q>(query: Statement<'q, Self>, ids: &'q [i64]) -> Statement<'q, Self> {
        query.bind(ids)
    }

    fn bind_names<'q>(query: Statement<'q, Self>, names: &'q [&'q str]) -> Statement<'q, Self> {
        query.bind(names)
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}

/// The production metadata store (see the module docs).
pub type PostgresMeta = SqlMeta<PgDialect>;

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
        SqlMeta::start(redact(url), pool.clone(), pool, notify, Some(listener)).await
    }

    /// The pool, for tests that interleave transactions by hand.
    pub fn pool(&self) -> &PgPool {
        self.writer_pool()
    }
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

#[cfg(test)]
mod tests {
    use super::{CHANNEL, Dialect, PgDialect, redact};

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://sv:secret@db:5432/sv"),
            "postgres://sv:***@db:5432/sv"
        );
        assert_eq!(redact("postgres://db/sv"), "postgres://db/sv");
        assert_eq!(redact("postgres://sv@db/sv"), "postgres://sv@db/sv");
    }

    #[test]
    fn commits_announce_on_the_listened_channel() {
        let announce = PgDialect::ANNOUNCE.unwrap();
        assert!(announce.contains(&format!("'{CHANNEL}'")), "{announce}");
    }
}
