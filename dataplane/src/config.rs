//! Limits and tuning shared by the roles. Every default here is documented in
//! the README (section "Limits") and docs/operations.md; keep them in sync.

use std::time::Duration;

/// Request limits enforced by the API before anything is queued or written.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Sum of key and value bytes in one BatchWrite.
    pub max_batch_bytes: usize,
    pub max_writes_per_batch: usize,
    pub max_keys_per_get: usize,
    pub max_scan_limit: u32,
    pub default_scan_limit: u32,
    /// A scan page stops early (with a page token) past this many bytes.
    pub max_scan_page_bytes: usize,
    /// Keys + values of one BatchGet response at most; past it the request
    /// fails with RESOURCE_EXHAUSTED (ask for fewer keys) instead of a
    /// response too large for gRPC.
    pub max_get_response_bytes: usize,
    /// How long a read with `min_sequence` waits when the client sets no deadline.
    pub default_read_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 1024,
            max_value_bytes: 1 << 20,
            max_batch_bytes: 4 << 20,
            max_writes_per_batch: 10_000,
            max_keys_per_get: 1_000,
            max_scan_limit: 10_000,
            default_scan_limit: 1_000,
            max_scan_page_bytes: 4 << 20,
            max_get_response_bytes: 8 << 20,
            default_read_wait: Duration::from_secs(5),
        }
    }
}

/// gRPC messages up to this size are decoded; the request limits above are
/// checked after decoding so that clients get a precise error naming the
/// field rather than a generic "message too large".
pub const MAX_GRPC_MESSAGE_BYTES: usize = 16 << 20;

/// Value bytes of one cache-tier reply at most (plus a few bytes per
/// result): comfortably inside [`MAX_GRPC_MESSAGE_BYTES`], so a replica
/// answers RESOURCE_EXHAUSTED itself rather than failing to encode.
pub const MAX_CACHE_REPLY_BYTES: usize = 12 << 20;
