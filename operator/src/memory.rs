//! Memory of the roles that hold a block cache (index, cache replica) when the spec gives
//! none, from their measured RSS (docs/benchmarks.md, "Index and cache memory"; e2e/
//! bench-role-memory.sh): under read and scan load with the cache full, peak RSS was
//! 38-44 MiB + 1.05-1.11 x the cached bytes, at 128 MiB, 512 MiB and 1 GiB caches.
//!
//! ```text
//! memory = (base + capacity x 1.10 + replies) x 1.10
//! ```
//!
//! The request is also the limit: a cache-holding Pod is never evicted for overshooting its
//! request, and its cache can never push it past its limit.
//!
//! An index also holds the WAL tier decoded in memory (docs/decisions/0008-wal-tier.md): at
//! most `walStopBytes` of WAL objects, each decoding to about [`WAL_TIER_MEMORY_FACTOR`]
//! times its size, added on top:
//!
//! ```text
//! index memory = (base + capacity x 1.10 + replies) x 1.10 + 3 x walStopBytes
//! ```

use crate::naming::Role;

const MIB: i64 = 1024 * 1024;
/// Runtime, listeners, the object-store client and the manifest: measured 38-44 MiB idle
/// plus what a store with many more live files adds.
pub const BASE_MEMORY: i64 = 64 * MIB;
/// Percent on top of each cached byte: moka's entries and `Arc` headers, the keys, and the
/// allocator's fragmentation (measured 5-11 %).
pub const CACHE_OVERHEAD_PERCENT: i64 = 10;
/// Percent of headroom on the whole, for what the benchmark did not cover (larger bloom
/// filters, bursts of connections).
pub const HEADROOM_PERCENT: i64 = 10;
/// Largest reply of each role, built in memory before it is sent: an index `BatchGet`
/// answer (8 MiB of keys and values) and a cache replica's `CacheService/Get` answer
/// (12 MiB of values).
pub const INDEX_MAX_REPLY: i64 = 8 * MIB;
pub const CACHE_MAX_REPLY: i64 = 12 * MIB;
/// Maximal replies budgeted as in flight at once (small replies are the common case; many
/// concurrent maximal ones need explicit resources).
pub const REPLIES_IN_FLIGHT: i64 = 4;

/// Bytes of memory per byte of WAL object once the index has decoded it into the WAL tier's
/// map (keys, values and ~96 bytes per entry): the decoded-to-object ratio measured in
/// docs/benchmarks.md.
pub const WAL_TIER_MEMORY_FACTOR: i64 = 3;

/// Memory (request = limit) of an index Pod holding `cache_capacity_bytes` of cache and at
/// most `wal_stop_bytes` of WAL objects in its WAL tier. With the stall off
/// (`wal_stop_bytes` = 0) the tier is bounded only by its flush keeping up: it is budgeted
/// at two flushes' worth, `2 x wal_flush_bytes` (the most one flush takes in).
pub fn index_memory(cache_capacity_bytes: i64, wal_stop_bytes: i64, wal_flush_bytes: i64) -> i64 {
    let wal_tier = if wal_stop_bytes > 0 {
        wal_stop_bytes
    } else {
        wal_flush_bytes.saturating_mul(2)
    };
    cache_role_memory(Role::Index, cache_capacity_bytes)
        .saturating_add(wal_tier.saturating_mul(WAL_TIER_MEMORY_FACTOR))
}

/// Memory (request = limit) of an index or cache Pod holding `cache_capacity_bytes`, before
/// the index's WAL tier ([`index_memory`]).
pub fn cache_role_memory(role: Role, cache_capacity_bytes: i64) -> i64 {
    let reply = match role {
        Role::Cache => CACHE_MAX_REPLY,
        Role::Index | Role::Batcher => INDEX_MAX_REPLY,
    };
    let cache = percent_more(cache_capacity_bytes, CACHE_OVERHEAD_PERCENT);
    let subtotal = cache.saturating_add(BASE_MEMORY + REPLIES_IN_FLIGHT * reply);
    percent_more(subtotal, HEADROOM_PERCENT)
}

fn percent_more(bytes: i64, percent: i64) -> i64 {
    bytes.saturating_add(bytes / 100 * percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_covers_the_measured_peaks_with_headroom() {
        // Peak RSS measured at each capacity with the cache full (docs/benchmarks.md);
        // the metadata quarter of the cache was not full there, so add it at 1.11 x.
        for (capacity_mib, index_peak, cache_peak, cached) in [
            (128, 151, 144, 101),
            (512, 485, 465, 389),
            (1024, 861, 850, 773),
        ] {
            let unfilled = (capacity_mib - cached) as f64 * 1.11;
            for (role, peak) in [(Role::Index, index_peak), (Role::Cache, cache_peak)] {
                let worst = (peak as f64 + unfilled) as i64 * MIB;
                let sized = cache_role_memory(role, capacity_mib * MIB);
                assert!(
                    sized > worst + worst / 20,
                    "{role:?} at {capacity_mib} MiB: {} MiB sized for {} MiB measured",
                    sized / MIB,
                    worst / MIB
                );
            }
        }
    }

    #[test]
    fn the_formula_is_base_cache_replies_and_headroom() {
        // (64 + 1024 x 1.1 + 4 x 12) x 1.1 MiB.
        let gib = 1024 * MIB;
        assert_eq!(cache_role_memory(Role::Cache, gib) / MIB, 1362);
        // Index: 4 x 8 MiB replies instead.
        assert_eq!(cache_role_memory(Role::Index, gib) / MIB, 1344);
        // The default index cache (64 MiB): 183 MiB.
        assert_eq!(cache_role_memory(Role::Index, 64 * MIB) / MIB, 183);
        // No cache at all: base and replies with headroom, 123 MiB.
        assert_eq!(cache_role_memory(Role::Cache, 0) / MIB, 123);
    }

    #[test]
    fn the_index_adds_its_decoded_wal_tier() {
        // The default cache (183 MiB) + 3 x the default 256 MiB WAL stop.
        assert_eq!(index_memory(64 * MIB, 256 * MIB, 64 * MIB) / MIB, 183 + 768);
        // A smaller stop bound means a smaller index.
        assert_eq!(index_memory(64 * MIB, 128 * MIB, 64 * MIB) / MIB, 183 + 384);
        // No stall: the tier is budgeted at two flushes, 3 x 2 x 64 MiB.
        assert_eq!(index_memory(64 * MIB, 0, 64 * MIB) / MIB, 183 + 384);
        assert!(index_memory(i64::MAX, i64::MAX, i64::MAX) > 0);
    }

    #[test]
    fn it_grows_with_the_capacity_and_never_overflows() {
        let small = cache_role_memory(Role::Cache, MIB);
        let large = cache_role_memory(Role::Cache, 1 << 40);
        assert!(small < large);
        assert!(cache_role_memory(Role::Cache, i64::MAX) > 0);
    }
}
