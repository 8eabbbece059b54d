//! Invariant 8: a corrupted file is detected on read and reported as
//! DATA_LOSS, never returned as data — whichever byte is damaged.

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

    let wal_dir = dir.path().join("objects/wal");
    let file = std::fs::read_dir(&wal_dir)
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
        let mut config = common::config(dir.path());
        config.cache.capacity_bytes = 1;
        let s = start(config, None).await;
        match s.try_get(&["alpha", "beta"], None).await {
            Err(status) => assert_eq!(status.code(), Code::DataLoss, "byte {at}: {status:?}"),
            Ok(got) => panic!("byte {at} flipped yet the read returned {got:?}"),
        }
        s.stop().await;
    }
    std::fs::write(&file, &original).unwrap();
}
