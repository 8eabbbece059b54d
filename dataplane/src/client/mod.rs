//! A SkyVault client for Rust programs: writes, point reads and scans over
//! gRPC, doing what every client would otherwise re-invent.
//!
//! - **Session consistency**: the client remembers the highest commit
//!   sequence it wrote or read and sends it as `min_sequence`, so it always
//!   reads its own writes and never goes back in time, whichever index
//!   replica answers. [`ReadConsistency::Strong`] asks for a linearizable read
//!   instead (sees every write acknowledged to anyone before it started);
//!   [`ReadConsistency::Eventual`] for the cheapest.
//! - **Retries** with exponential backoff and full jitter on `UNAVAILABLE`
//!   and `RESOURCE_EXHAUSTED`, within one deadline per operation. A write is
//!   retried only when it certainly wrote nothing; when its outcome is
//!   unknown (the connection broke after it was sent, the server said
//!   "outcome unknown") it fails with [`ClientError::WriteOutcomeUnknown`]
//!   and is never silently repeated.
//! - **Load balancing** over several endpoints: each name is resolved to
//!   all its addresses (a Kubernetes headless Service: one per ready Pod),
//!   re-resolved periodically, calls spread round-robin, and an address whose
//!   connection failed is skipped for a while.
//! - **Large reads**: [`Client::get_many`] splits a read into RPCs under the
//!   server's key limit (and again when an answer would exceed its byte
//!   budget); [`Client::scan`] is a stream that follows page tokens.
//!
//! ```no_run
//! # async fn demo() -> Result<(), skyvault::client::ClientError> {
//! use futures::TryStreamExt;
//! use skyvault::client::{Client, ReadConsistency, ScanRange};
//!
//! let client = Client::connect("127.0.0.1:50051").await?;
//! let sequence = client.put("user/1", "ada").await?;
//! // Session consistency: this read waits, if need be, for `sequence`.
//! assert_eq!(client.get("user/1").await?.as_deref(), Some(&b"ada"[..]));
//!
//! // A linearizable read, e.g. after another process's write.
//! let strong = client.with_consistency(ReadConsistency::Strong);
//! let _ = strong.get("user/1").await?;
//!
//! // Every pair under a prefix, page after page.
//! let users: Vec<(String, bytes::Bytes)> =
//!     client.scan(ScanRange::prefix("user/")).try_collect().await?;
//!
//! // Continue the session in another process: hand over the sequence.
//! let token = client.session_sequence();
//! let other = Client::connect("127.0.0.1:50051").await?;
//! other.observe_sequence(token);
//! # let _ = (sequence, users); Ok(()) }
//! ```

mod call;
mod options;
mod pool;
mod reads;

pub use crate::api::headers::{NOT_APPLIED, WRITE_OUTCOME_HEADER};
pub use options::{ClientOptions, Headers, RetryPolicy};
pub use pool::{DnsResolver, Resolve};
pub use reads::ScanRange;

use crate::api::proto::batcher::v1::{
    BatchWriteRequest, WriteRequest, batcher_service_client::BatcherServiceClient,
    write_request::Operation,
};
use crate::config::MAX_GRPC_MESSAGE_BYTES;
use bytes::Bytes;
use call::Kind;
use pool::Pool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A setting or endpoint address that cannot work.
    #[error("invalid client option: {0}")]
    InvalidOption(String),
    /// The server's (or the transport's) final answer, after any retries.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(tonic::Status),
    /// The write was sent but its outcome is unknown: it may or may not be
    /// committed. It was not retried, because a retry may apply it twice;
    /// read the keys back (a strong read) to find out, or retry if applying
    /// it twice is harmless.
    #[error("write outcome unknown (not retried): {}: {}", code_name(.0.code()), .0.message())]
    WriteOutcomeUnknown(tonic::Status),
}

impl ClientError {
    /// The gRPC code of the failure (`InvalidArgument` for a bad option).
    pub fn code(&self) -> tonic::Code {
        match self {
            ClientError::InvalidOption(_) => tonic::Code::InvalidArgument,
            ClientError::Status(s) | ClientError::WriteOutcomeUnknown(s) => s.code(),
        }
    }
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

/// One write of a [`Client::write`] batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Put { key: String, value: Bytes },
    Delete { key: String },
}

impl Write {
    pub fn put(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Write::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn delete(key: impl Into<String>) -> Self {
        Write::Delete { key: key.into() }
    }

    fn into_request(self) -> WriteRequest {
        match self {
            Write::Put { key, value } => WriteRequest {
                key,
                operation: Some(Operation::Put(value)),
            },
            Write::Delete { key } => WriteRequest {
                key,
                operation: Some(Operation::Delete(true)),
            },
        }
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Sees this client's own writes and never anything older than what it
    /// already read (`min_sequence` = the session's highest sequence).
    #[default]
    Session,
    /// Linearizable: sees every write acknowledged (to any client) before
    /// the read started. Costs the index a database round trip, shared with
    /// the strong reads arriving at the same time.
    Strong,
    /// Whatever the answering index has applied (distributed: may be a few
    /// ms behind; standalone still gives read-after-write).
    Eventual,
}

/// A handle on a SkyVault deployment; cheap to clone. Clones share the
/// connections and the session (their sequences), and may differ in
/// deadline and read consistency (see [`Client::with_timeout`],
/// [`Client::with_consistency`]). Create another `Client` for an
/// independent session.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    timeout: Duration,
    consistency: ReadConsistency,
}

struct Shared {
    options: ClientOptions,
    batcher: Arc<Pool>,
    index: Arc<Pool>,
    /// The highest commit sequence written or read in this session.
    session: AtomicU64,
}

impl Client {
    /// Connects to one endpoint for writes and reads, with default options.
    pub async fn connect(addr: impl Into<String>) -> Result<Client, ClientError> {
        ClientOptions::new(addr).connect().await
    }

    pub(super) async fn from_options(options: ClientOptions) -> Result<Client, ClientError> {
        let batcher = Pool::start(&options.batcher, &options).await?;
        let index = Pool::start(&options.index, &options).await?;
        Ok(Client {
            timeout: options.timeout,
            consistency: ReadConsistency::Session,
            shared: Arc::new(Shared {
                options,
                batcher,
                index,
                session: AtomicU64::new(0),
            }),
        })
    }

    /// This client with another deadline per operation.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            timeout,
            ..self.clone()
        }
    }

    /// This client reading with another consistency.
    pub fn with_consistency(&self, consistency: ReadConsistency) -> Client {
        Client {
            consistency,
            ..self.clone()
        }
    }

    /// The session's highest commit sequence: hand it to another process
    /// (which calls [`Client::observe_sequence`]) to continue the session
    /// there.
    pub fn session_sequence(&self) -> u64 {
        self.shared.session.load(Ordering::SeqCst)
    }

    /// Raises the session to `sequence` (never lowers it): later reads see
    /// at least every commit up to it.
    pub fn observe_sequence(&self, sequence: u64) {
        self.shared.session.fetch_max(sequence, Ordering::SeqCst);
    }

    /// The addresses reads currently go to (after resolution).
    pub fn index_addresses(&self) -> Vec<String> {
        self.shared.index.addresses_in_use()
    }

    /// Resolves the endpoint names again now (it also happens periodically).
    pub async fn refresh(&self) -> Result<(), ClientError> {
        self.shared.batcher.refresh().await?;
        self.shared.index.refresh().await
    }

    /// Writes `value` under `key`; returns the commit sequence.
    ///
    /// ```no_run
    /// # async fn demo(client: skyvault::client::Client) -> Result<(), skyvault::client::ClientError> {
    /// let sequence = client.put("k", "v").await?;
    /// # let _ = sequence; Ok(()) }
    /// ```
    pub async fn put(
        &self,
        key: impl Into<String>,
        value: impl Into<Bytes>,
    ) -> Result<u64, ClientError> {
        self.write(vec![Write::put(key, value)]).await
    }

    /// Deletes `key` (a tombstone); returns the commit sequence.
    pub async fn delete(&self, key: impl Into<String>) -> Result<u64, ClientError> {
        self.write(vec![Write::delete(key)]).await
    }

    /// Writes a batch atomically (all visible together, the last write to a
    /// key wins); returns its commit sequence. Retried only when the server
    /// says nothing was written (or the connection was refused); otherwise a
    /// lost answer is [`ClientError::WriteOutcomeUnknown`].
    ///
    /// ```no_run
    /// # async fn demo(client: skyvault::client::Client) -> Result<(), skyvault::client::ClientError> {
    /// use skyvault::client::{ClientError, Write};
    /// match client.write(vec![Write::put("a", "1"), Write::delete("b")]).await {
    ///     Ok(sequence) => println!("committed at {sequence}"),
    ///     Err(ClientError::WriteOutcomeUnknown(status)) => {
    ///         // Maybe committed, maybe not: check with a strong read.
    ///         eprintln!("unknown: {}", status.message());
    ///     }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn write(&self, writes: Vec<Write>) -> Result<u64, ClientError> {
        let request = BatchWriteRequest {
            writes: writes.into_iter().map(Write::into_request).collect(),
        };
        let headers = self.shared.options.interceptor();
        let sequence = call::with_retries(
            &self.shared.batcher,
            Kind::Write,
            self.timeout,
            &self.shared.options.retry,
            |channel, left| {
                let mut stub = BatcherServiceClient::with_interceptor(channel, headers.clone())
                    .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
                let mut request = tonic::Request::new(request.clone());
                request.set_timeout(left);
                async move { Ok(stub.batch_write(request).await?.into_inner().sequence) }
            },
        )
        .await?;
        self.observe_sequence(sequence);
        Ok(sequence)
    }
}

#[cfg(test)]
mod tests;
