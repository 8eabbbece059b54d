//! The cache tier as its own role (`skyvault cache`): replicas that answer
//! point lookups for the files they own, so an index's working set is spread
//! over (and survives in) several processes' memory.
//!
//! - [`ring`]: which replica owns an object (rendezvous hashing).
//! - [`service`]: `cache.v1.CacheService` on a replica.
//! - [`client`]: the index side — one RPC per replica per read, with a local
//!   fallback when a replica fails.
//! - [`role`]: the `skyvault cache` process.

pub mod client;
pub mod ring;
pub mod role;
pub mod service;

pub use client::{CachePeers, PeerError};
pub use ring::Ring;
pub use role::{CacheArgs, CacheRoleConfig};
pub use service::CacheApi;

#[cfg(test)]
mod tests;
