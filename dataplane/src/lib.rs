//! SkyVault: a key-value store whose data lives in an object store.
//!
//! Start reading at `batcher` (the write path) and `index` (the read path);
//! `sstable` is the file format, `meta` the manifest in a database,
//! `objstore` the object store, `cache` the block cache, `cache_tier`
//! the cache replicas the index can read through.

pub mod api;
pub mod auth;
pub mod batcher;
pub mod bench;
pub mod byte_size;
pub mod cache;
pub mod cache_tier;
pub mod cli;
pub mod client;
pub mod compaction;
pub mod config;
pub mod index;
pub mod lsm;
pub mod lsm_sim;
pub mod meta;
pub mod metrics;
pub mod objstore;
pub mod purge;
pub mod reload;
pub mod roles;
pub mod security;
pub mod server;
pub mod space;
pub mod sstable;
pub mod standalone;
pub mod store_identity;
pub mod tls;
pub mod wal_flush;
pub mod write_stall;
pub mod writer_intent;
