//! Invariant 8: a corrupted file is detected on read and reported as
//! DATA_LOSS, never returned as data — whichever byte is damaged, in a WAL
//! object (read whole into the index's memory) or in an L0 file (read by
//! block through the cache).

mod common;

use common::{put, start};
use tonic::Code;

#[tokio::test]
async fn every_flipped_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    // No block survives between reads: each read goes to the damaged file.
    config.cache.capacity_bytes = 1;
    let s = start(config, None).await;
    let seq = s
        .write(vec![put("alpha", "one"), put("beta", "two")])
        .await
        .unwrap();
    assert_eq!(
        s.try_get(&["alpha"], Some(seq)).await.unwrap()["alpha"],
        b"one"
    );
    s.stop().await;

    flip_every_byte(dir.path(), "wal").await;
    // Now the same data flushed into an L0 file.
    {
        let parts = skyvault::standalone::open(&common::config(dir.path()), None)
            .await
            .unwrap();
        let limits = skyvault::wal_flush::DEFAULT_LIMITS;
        let config = skyvault::compaction::CompactionConfig::default();
        let s = skyvault::compaction::flush(&parts.store, &parts.meta, &config, &limits, true)
            .await
            .unwrap();
        assert_eq!(s.outputs.len(), 1, "{s:?}");
    }
    flip_every_byte(dir.path(), "run").await;
}

/// Flips each byte of the one object under `objects/<sub>` in turn; a fresh
/// server must answer DATA_LOSS every time.
async fn flip_every_byte(dir: &std::path::Path, sub: &str) {
    let file = std::fs::read_dir(dir.join("objects").join(sub))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let original = std::fs::read(&file).unwrap();
    for at in 0..original.len() {
        let mut damaged = original.clone();
        damaged[at] ^= 0x40;
        std::fs::write(&file, &damaged).unwrap();
        // A fresh server holds nothing in memory from before the damage.
        let mut config = common::config(dir);
        config.cache.capacity_bytes = 1;
        let s = start(config, None).await;
        match s.try_get(&["alpha", "beta"], None).await {
            Err(status) => assert_eq!(status.code(), Code::DataLoss, "{sub} byte {at}: {status:?}"),
            Ok(got) => panic!("{sub} byte {at} flipped yet the read returned {got:?}"),
        }
        s.stop().await;
    }
    std::fs::write(&file, &original).unwrap();
}
