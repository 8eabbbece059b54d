//! Point reads (chunked under the server's limits) and scans (a stream over
//! pages), with the session's consistency.

use super::call::{self, Kind};
use super::{Client, ClientError, ReadConsistency};
use crate::api::proto::index::v1::{
    BatchGetRequest, Consistency, ScanRequest, index_service_client::IndexServiceClient,
};
use crate::config::MAX_GRPC_MESSAGE_BYTES;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use tonic::transport::Channel;

type Stub = IndexServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, super::options::Headers>,
>;

/// Which keys a [`Client::scan`] returns: the intersection of a prefix and
/// a `[start, end)` range (each empty = unbounded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanRange {
    pub prefix: String,
    pub start: String,
    pub end: String,
}

impl ScanRange {
    /// Every key.
    pub fn all() -> Self {
        ScanRange::default()
    }

    /// Keys starting with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        ScanRange {
            prefix: prefix.into(),
            ..Default::default()
        }
    }

    /// Keys in `[start, end)`; an empty `end` means no upper bound.
    pub fn range(start: impl Into<String>, end: impl Into<String>) -> Self {
        ScanRange {
            start: start.into(),
            end: end.into(),
            ..Default::default()
        }
    }
}

impl Client {
    fn stub(&self, channel: Channel) -> Stub {
        IndexServiceClient::with_interceptor(channel, self.shared.options.interceptor())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
    }

    /// One read RPC with retries, each attempt carrying the time left.
    async fn read<Req, Resp, F, Fut>(&self, request: Req, rpc: F) -> Result<Resp, ClientError>
    where
        Req: Clone,
        F: Fn(Stub, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let options = &self.shared.options;
        call::with_retries(
            &self.shared.index,
            Kind::Read,
            self.timeout,
            &options.retry,
            |channel, left| {
                let mut request = tonic::Request::new(request.clone());
                request.set_timeout(left);
                let reply = rpc(self.stub(channel), request);
                async move { Ok(reply.await?.into_inner()) }
            },
        )
        .await
    }

    /// `min_sequence` and `consistency` of the next read.
    fn freshness(&self) -> (Option<u64>, i32) {
        let session = self.session_sequence();
        let floor = (session > 0).then_some(session);
        match self.consistency {
            ReadConsistency::Session => (floor, Consistency::Default.into()),
            ReadConsistency::Strong => (floor, Consistency::Strong.into()),
            ReadConsistency::Eventual => (None, Consistency::Default.into()),
        }
    }

    /// The value of `key`, `None` when absent (never written, or deleted).
    ///
    /// ```no_run
    /// # async fn demo(client: skyvault::client::Client) -> Result<(), skyvault::client::ClientError> {
    /// if let Some(value) = client.get("k").await? {
    ///     println!("{}", String::from_utf8_lossy(&value));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: impl Into<String>) -> Result<Option<Bytes>, ClientError> {
        let key = key.into();
        let mut found = self.get_many([key.clone()]).await?;
        Ok(found.remove(&key))
    }

    /// The values of `keys` that exist. Any number of keys: they go in RPCs
    /// of at most `max_keys_per_get`, a few at a time, and an RPC whose
    /// answer would exceed the server's byte budget is split in two. Each RPC
    /// has the requested consistency, but together they are not one
    /// snapshot: a write landing meanwhile may be seen by some RPCs only.
    ///
    /// ```no_run
    /// # async fn demo(client: skyvault::client::Client) -> Result<(), skyvault::client::ClientError> {
    /// let keys: Vec<String> = (0..5_000).map(|i| format!("item/{i}")).collect();
    /// let found = client.get_many(keys).await?; // 5 RPCs
    /// println!("{} of 5000 exist", found.len());
    /// # Ok(()) }
    /// ```
    pub async fn get_many<I, K>(&self, keys: I) -> Result<HashMap<String, Bytes>, ClientError>
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        let per_rpc = self.shared.options.max_keys_per_get;
        let chunks: Vec<Vec<String>> = keys.chunks(per_rpc).map(<[String]>::to_vec).collect();
        let mut pages = futures::stream::iter(chunks)
            .map(|chunk| self.get_chunk(chunk))
            .buffer_unordered(self.shared.options.get_parallelism.max(1));
        let mut found = HashMap::with_capacity(keys.len());
        while let Some(page) = pages.next().await {
            found.extend(page?);
        }
        Ok(found)
    }

    /// One chunk, halved for as long as the server says the answer is over
    /// its byte budget (one key always fits: values are ≤ 1 MiB).
    async fn get_chunk(&self, chunk: Vec<String>) -> Result<HashMap<String, Bytes>, ClientError> {
        let mut found = HashMap::new();
        let mut todo = vec![chunk];
        while let Some(keys) = todo.pop() {
            match self.batch_get(keys.clone()).await {
                Ok(results) => found.extend(results),
                Err(ClientError::Status(s)) if call::is_budget(&s) && keys.len() > 1 => {
                    let (a, b) = keys.split_at(keys.len() / 2);
                    todo.push(a.to_vec());
                    todo.push(b.to_vec());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    async fn batch_get(&self, keys: Vec<String>) -> Result<HashMap<String, Bytes>, ClientError> {
        let (min_sequence, consistency) = self.freshness();
        let request = BatchGetRequest {
            keys,
            min_sequence,
            consistency,
        };
        let response = self
            .read(
                request,
                |mut stub, r| async move { stub.batch_get(r).await },
            )
            .await?;
        self.shared
            .session
            .fetch_max(response.sequence, Ordering::SeqCst);
        Ok(response.results)
    }

    /// Every pair in `range`, in key order, as a stream that asks for the
    /// next page when the previous one is consumed. Each page has the
    /// client's consistency and never goes back in time from the previous
    /// one; the whole scan is not one snapshot.
    ///
    /// ```no_run
    /// # async fn demo(client: skyvault::client::Client) -> Result<(), skyvault::client::ClientError> {
    /// use futures::TryStreamExt;
    /// use skyvault::client::ScanRange;
    /// let mut pairs = std::pin::pin!(client.scan(ScanRange::prefix("user/")));
    /// while let Some((key, value)) = pairs.try_next().await? {
    ///     println!("{key} = {} bytes", value.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn scan(
        &self,
        range: ScanRange,
    ) -> impl Stream<Item = Result<(String, Bytes), ClientError>> + Send + 'static {
        let client = self.clone();
        let pages = futures::stream::try_unfold(Some(String::new()), move |token| {
            let (client, range) = (client.clone(), range.clone());
            async move {
                let Some(token) = token else { return Ok(None) };
                let (items, next) = client.scan_page(&range, token).await?;
                let next = (!next.is_empty()).then_some(next);
                Ok(Some((items, next)))
            }
        });
        pages
            .map_ok(|items| futures::stream::iter(items.into_iter().map(Ok)))
            .try_flatten()
    }

    /// One page: its pairs and the token of the next ("" at the end).
    async fn scan_page(
        &self,
        range: &ScanRange,
        page_token: String,
    ) -> Result<(Vec<(String, Bytes)>, String), ClientError> {
        let (min_sequence, consistency) = self.freshness();
        let request = ScanRequest {
            start_key: range.start.clone(),
            end_key: range.end.clone(),
            prefix: range.prefix.clone(),
            limit: self.shared.options.scan_page,
            page_token,
            min_sequence,
            consistency,
        };
        let page = self
            .read(request, |mut stub, r| async move { stub.scan(r).await })
            .await?;
        self.shared
            .session
            .fetch_max(page.sequence, Ordering::SeqCst);
        let items = page.items.into_iter().map(|kv| (kv.key, kv.value));
        Ok((items.collect(), page.next_page_token))
    }
}
