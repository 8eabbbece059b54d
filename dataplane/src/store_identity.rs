//! The store's identity: one random id recorded both in the metadata
//! database (`store_identity`, migration 0005) and in a marker object under
//! the object-store prefix (`_skyvault/identity`).
//!
//! Why: purge deletes every object the database does not reference. A role
//! pointed at another store's database — or an empty, reset one — with this
//! store's bucket (or two stores sharing one bucket and prefix) would let the
//! next purge delete a whole store. With the id in both places, every role and
//! job checks that they name the same store before it does anything, and
//! refuses with a message naming both when they do not (docs/security.md).
//!
//! The first process to start a new store writes the id (database first, so
//! of two processes starting at once both adopt the database's winner, then
//! the marker). A store created before identities existed is adopted the same
//! way, after checking that the bucket really holds the database's files.

use crate::meta::{DynMeta, MetaError, now_ms};
use crate::objstore::{DynStore, StoreError};
use crate::purge::OBJECT_PREFIXES;
use serde::{Deserialize, Serialize};

/// The marker object, outside the prefixes purge manages.
pub const MARKER: &str = "_skyvault/identity";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "the metadata database belongs to store {database} but the object store to store \
         {object_store}: the metadata URL and the object-store URL (bucket and prefix) must \
         name the same store; refusing to run"
    )]
    Mismatch {
        database: String,
        object_store: String,
    },
    #[error(
        "the object store belongs to store {object_store} but the metadata database has no \
         store identity: is the metadata URL this store's database (an empty or reset database \
         would let purge delete the store's data)? refusing to run"
    )]
    DatabaseMissing { object_store: String },
    #[error(
        "the metadata database is empty but the object store already holds data ({example}): \
         is the metadata URL this store's database, or does another store use this bucket and \
         prefix? refusing to run"
    )]
    EmptyDatabaseOverData { example: String },
    #[error(
        "the metadata database (store {database}) names {files} live files but the object store \
         has no identity marker {MARKER}: is the object-store URL this store's bucket and \
         prefix? refusing to run"
    )]
    MarkerMissing { database: String, files: usize },
    #[error(
        "the metadata database names {object} but the object store does not hold it: is the \
         object-store URL this store's bucket and prefix? refusing to run"
    )]
    FilesMissing { object: String },
    #[error(
        "this store has no identity yet (a batcher, index or standalone process records it when \
         it first starts); refusing to run a job before that"
    )]
    NotEstablished,
    #[error("identity marker {MARKER} is unreadable: {0}")]
    BadMarker(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IdentityError {
    /// The records looked incomplete (rather than naming another store, or
    /// failing to be read): what a store's first process leaves half-way.
    fn is_refusal(&self) -> bool {
        matches!(
            self,
            IdentityError::DatabaseMissing { .. }
                | IdentityError::EmptyDatabaseOverData { .. }
                | IdentityError::MarkerMissing { .. }
                | IdentityError::NotEstablished
        )
    }
}

#[derive(Serialize, Deserialize)]
struct Marker {
    store_id: String,
    created_at_ms: i64,
}

/// For roles: checks the identity, recording a new one for a new (or a
/// pre-identity) store. Returns the store id.
pub async fn establish(store: &DynStore, meta: &DynMeta) -> Result<String, IdentityError> {
    twice_if_refused(|| establish_once(store, meta)).await
}

/// For jobs: both records must exist and agree (or the store is new and
/// empty: then the id is empty). Jobs never create an identity.
pub async fn verify(store: &DynStore, meta: &DynMeta) -> Result<String, IdentityError> {
    twice_if_refused(|| verify_once(store, meta)).await
}

/// Runs a check again when it refused the store. Roles of a new store start
/// at once, and the first one records the identity (database row, then
/// marker) and flushes files while the others look: a look in the middle of
/// that sees a row without a marker, or data without either record (seen in
/// CI). A refusal writes nothing. By the second look the first process has
/// written what the first look missed (the marker precedes any file), so a
/// role decides on the records as they are; a job may still refuse a store
/// whose first role sits between row and marker — safe, it runs again.
async fn twice_if_refused<F, Fut>(check: F) -> Result<String, IdentityError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<String, IdentityError>>,
{
    match check().await {
        Err(e) if e.is_refusal() => {
            tracing::debug!(error = %e, "store identity refused; looking once more");
            check().await
        }
        checked => checked,
    }
}

async fn establish_once(store: &DynStore, meta: &DynMeta) -> Result<String, IdentityError> {
    match read_both(store, meta).await? {
        (Some(d), Some(m)) => same(d, m),
        (None, Some(m)) => Err(IdentityError::DatabaseMissing { object_store: m }),
        (Some(d), None) => {
            // A process stopped between recording the id and writing the
            // marker leaves a store without files: finish its work. Files in
            // the database and none of this store's markers: another bucket.
            let files = meta.live_files().await?.len();
            if files > 0 {
                return Err(IdentityError::MarkerMissing { database: d, files });
            }
            write_marker(store, &d).await?;
            Ok(d)
        }
        (None, None) => {
            check_unclaimed_store_matches(store, meta).await?;
            let id = meta.init_store_id(&new_id()).await?;
            write_marker(store, &id).await?;
            tracing::info!(store_id = %id, "store identity recorded");
            Ok(id)
        }
    }
}

async fn verify_once(store: &DynStore, meta: &DynMeta) -> Result<String, IdentityError> {
    match read_both(store, meta).await? {
        (Some(d), Some(m)) => same(d, m),
        (None, Some(m)) => Err(IdentityError::DatabaseMissing { object_store: m }),
        (Some(d), None) => Err(IdentityError::MarkerMissing {
            database: d,
            files: meta.live_files().await?.len(),
        }),
        // A new store nothing has written to: nothing to protect yet (and a
        // job on it has nothing to do). Any data, or any commit, needs an identity.
        (None, None) if meta.current_version().await? == 0 => {
            check_unclaimed_store_matches(store, meta).await?;
            Ok(String::new())
        }
        (None, None) => Err(IdentityError::NotEstablished),
    }
}

/// The database's id and the marker's, read marker first: identities are
/// written database first, so a marker seen implies its row is committed
/// and a first look during a store's creation refuses less often (the second
/// look of [`twice_if_refused`] is what makes it safe either way).
async fn read_both(
    store: &DynStore,
    meta: &DynMeta,
) -> Result<(Option<String>, Option<String>), IdentityError> {
    let marked = read_marker(store).await?;
    let recorded = meta.store_id().await?;
    Ok((recorded, marked))
}

fn same(database: String, object_store: String) -> Result<String, IdentityError> {
    if database == object_store {
        Ok(database)
    } else {
        Err(IdentityError::Mismatch {
            database,
            object_store,
        })
    }
}

/// Before adopting a store without identity: an empty database must not sit
/// over a bucket with data, and a non-empty one's files must be in this bucket.
async fn check_unclaimed_store_matches(
    store: &DynStore,
    meta: &DynMeta,
) -> Result<(), IdentityError> {
    let files = meta.live_files().await?;
    match files.first() {
        None if meta.current_version().await? == 0 => {
            for prefix in OBJECT_PREFIXES {
                if let Some(object) = store.list(prefix).await?.into_iter().next() {
                    return Err(IdentityError::EmptyDatabaseOverData {
                        example: object.path,
                    });
                }
            }
            Ok(())
        }
        None => Ok(()),
        Some(file) => match store.get_range(&file.object, 0..1).await {
            Ok(_) => Ok(()),
            Err(StoreError::NotFound { .. }) => Err(IdentityError::FilesMissing {
                object: file.object.clone(),
            }),
            Err(e) => Err(e.into()),
        },
    }
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

async fn read_marker(store: &DynStore) -> Result<Option<String>, IdentityError> {
    match store.get(MARKER).await {
        Ok(bytes) => serde_json::from_slice::<Marker>(&bytes)
            .map(|m| Some(m.store_id))
            .map_err(|e| IdentityError::BadMarker(e.to_string())),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn write_marker(store: &DynStore, id: &str) -> Result<(), IdentityError> {
    let marker = Marker {
        store_id: id.to_string(),
        created_at_ms: now_ms(),
    };
    let json = serde_json::to_vec(&marker).expect("a marker serialises");
    store.put(MARKER, json.into()).await?;
    Ok(())
}
