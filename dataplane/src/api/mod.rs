//! The gRPC API: generated types, the service implementations and request
//! validation. Wire-compatible with the original SkyVault services.

mod batcher_service;
pub mod headers;
mod index_service;
mod validate;

pub use batcher_service::BatcherApi;
pub use index_service::IndexApi;

pub mod proto {
    pub mod batcher {
        pub mod v1 {
            tonic::include_proto!("batcher.v1");
        }
    }
    pub mod index {
        pub mod v1 {
            tonic::include_proto!("index.v1");
        }
    }
    pub mod cache {
        pub mod v1 {
            tonic::include_proto!("cache.v1");
        }
    }
    /// Serialized descriptors of every service, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/skyvault_descriptor.bin"));
}

use crate::metrics::metrics;
use std::time::{Duration, Instant};
use tonic::{Code, Status};

/// Records one RPC's outcome and latency.
pub(crate) fn observe<T>(rpc: &str, started: Instant, result: &Result<T, Status>) {
    let code = match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    let m = metrics();
    m.rpc_requests
        .with_label_values(&[rpc, code_name(code)])
        .inc();
    m.rpc_latency
        .with_label_values(&[rpc])
        .observe(started.elapsed().as_secs_f64());
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::Unavailable => "UNAVAILABLE",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::DataLoss => "DATA_LOSS",
        Code::Internal => "INTERNAL",
        _ => "OTHER",
    }
}

/// The client's deadline (grpc-timeout header), if it sent one. Values too
/// large for a `Duration` (the header allows any digits here) saturate to
/// `Duration::MAX`, i.e. "no practical deadline", instead of overflowing.
pub(crate) fn request_deadline<T>(request: &tonic::Request<T>) -> Option<Duration> {
    parse_grpc_timeout(request.metadata().get("grpc-timeout")?.to_str().ok()?)
}

fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than a u64 holds: far beyond any real deadline.
    let n: u64 = digits.parse().unwrap_or(u64::MAX);
    let secs = |per: u64| Duration::from_secs(n.saturating_mul(per));
    Some(match unit {
        "H" => secs(3600),
        "M" => secs(60),
        "S" => secs(1),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_and_huge_ones_saturate() {
        assert_eq!(parse_grpc_timeout("200m"), Some(Duration::from_millis(200)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout("3H"),
            Some(Duration::from_secs(3 * 3600))
        );
        for bad in ["", "m", "12", "-1S", "1x", "+5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
        // n * 3600 and n * 60 overflow u64 here.
        let huge = u64::MAX / 2;
        assert_eq!(
            parse_grpc_timeout(&format!("{huge}H")),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_grpc_timeout(&format!("{huge}M")),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_grpc_timeout("99999999999999999999999S"),
            Some(Duration::from_secs(u64::MAX))
        );
    }
}
