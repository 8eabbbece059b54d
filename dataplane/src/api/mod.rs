//! The gRPC API: generated types, the service implementations and request
//! validation. Wire-compatible with the original SkyVault services.

mod batcher_service;
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

/// The client's deadline (grpc-timeout header), if it sent one.
pub(crate) fn request_deadline<T>(request: &tonic::Request<T>) -> Option<Duration> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}
