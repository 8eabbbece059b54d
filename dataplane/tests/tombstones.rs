//! Tombstones do not linger (decision 0003, amendment of 2026-12-08): a
//! last-level file that is mostly tombstones is rewritten by itself through
//! the real engine, dropping them.

mod common;

use bytes::Bytes;
use skyvault::compaction::{self, CompactionConfig, Outcome};
use skyvault::sstable::Value;
use skyvault::standalone;

/// A last-level file that is mostly tombstones (as an older version's
/// trivial move could leave one) is rewritten by itself although no level
/// is over its target: the tombstones go, the live entries stay readable.
#[tokio::test]
async fn a_last_level_file_of_tombstones_is_cleaned_up() {
    use skyvault::meta::{FileKind, NewFile};
    let dir = tempfile::tempdir().unwrap();
    let parts = standalone::open(&common::quiet_config(dir.path()), None)
        .await
        .unwrap();
    let mut writer = skyvault::sstable::Writer::new(Default::default());
    let deleted = skyvault::lsm::DELETION_TRIGGER_TOMBSTONES + 500;
    for i in 0..deleted + 300 {
        let key = Bytes::from(format!("k{i:06}"));
        let value = if i < deleted {
            Value::Delete
        } else {
            Value::Put(Bytes::from_static(b"kept"))
        };
        writer.add(&key, &value).unwrap();
    }
    let (entries, tombstones) = (writer.entry_count(), writer.tombstone_count());
    let data = writer.finish(1, 1).unwrap();
    let object = "run/legacy-moved.sst".to_string();
    let size_bytes = data.len() as u64;
    parts.store.put(&object, data).await.unwrap();
    let file = NewFile {
        object,
        kind: FileKind::Run,
        level: skyvault::lsm::LAST_LEVEL,
        min_key: b"k000000".to_vec(),
        max_key: format!("k{:06}", deleted + 299).into_bytes(),
        entry_count: entries,
        tombstone_count: tombstones,
        size_bytes,
    };
    parts.meta.commit_wal(file).await.unwrap();
    parts.index.catch_up().await.unwrap();
    assert_eq!(parts.index.debt().tombstone_heavy_files, 1);

    let s = compaction::compact(&parts.store, &parts.meta, &CompactionConfig::default())
        .await
        .unwrap();
    assert_eq!(s.outcome, Outcome::Compacted, "{s:?}");
    assert_eq!(s.tombstones_dropped, deleted, "{s:?}");
    let live = parts.meta.live_files().await.unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!((live[0].entry_count, live[0].tombstone_count), (300, 0));
    parts.index.catch_up().await.unwrap();
    assert!(!parts.index.debt().needs_compaction, "nothing left to do");
    let keys = [format!("k{:06}", deleted), "k000000".to_string()];
    let keys: Vec<Bytes> = keys.iter().map(|k| Bytes::from(k.clone())).collect();
    let got = parts.index.get_many(&keys).await.unwrap();
    assert_eq!(got, vec![Some(Bytes::from_static(b"kept")), None]);
}
