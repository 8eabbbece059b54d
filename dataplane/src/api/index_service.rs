//! `index.v1.IndexService`: point reads and scans over the index.

use super::proto::index::v1::{
    BatchGetRequest, BatchGetResponse, Consistency, KeyValue, ScanRequest, ScanResponse,
    index_service_server::IndexService,
};
use super::{headers, observe, request_deadline, validate};
use crate::cache::ReadError;
use crate::config::Limits;
use crate::index::{Index, IndexError, KeyRange, PageLimits};
use crate::objstore::StoreError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

pub struct IndexApi {
    index: Arc<Index>,
    limits: Limits,
    /// The latest version committed by this process's own writers (the
    /// metadata store's commit notifications), when every commit is made in
    /// this process (`skyvault standalone`): then every read waits for it.
    local_commits: Option<watch::Receiver<u64>>,
}

/// What a read must have applied before it is answered.
struct Freshness {
    min_sequence: Option<u64>,
    consistency: Consistency,
}

impl IndexApi {
    /// An index whose default reads are served from whatever it has applied
    /// (the distributed `skyvault index`: other processes commit).
    pub fn new(index: Arc<Index>, limits: Limits) -> Self {
        IndexApi {
            index,
            limits,
            local_commits: None,
        }
    }

    /// An index in the same process as every writer of its metadata store
    /// (`skyvault standalone`): every read, with or without extension fields,
    /// waits until the index has applied every commit acknowledged before the
    /// read started (`commits` is the store's `MetaStore::subscribe`).
    pub fn read_after_write(mut self, commits: watch::Receiver<u64>) -> Self {
        self.local_commits = Some(commits);
        self
    }

    /// Waits until the index has applied what the read asks for, bounded by
    /// the client's deadline (or the default wait when it set none). The
    /// wait ends a margin before the client's deadline so that the client
    /// receives our DEADLINE_EXCEEDED rather than cancelling the call itself.
    async fn wait_for(&self, deadline: Option<Duration>, want: Freshness) -> Result<(), Status> {
        let started = Instant::now();
        let wait = match deadline {
            Some(deadline) => deadline.saturating_sub(reply_margin(deadline)),
            None => self.limits.default_read_wait,
        };
        let floor = match (&self.local_commits, want.consistency) {
            // Every commit happens in this process: its latest is exact and free.
            (Some(commits), _) => Some(*commits.borrow()),
            (None, Consistency::Strong) => {
                let committed = tokio::time::timeout(wait, self.index.latest_committed()).await;
                Some(committed.map_err(|_| {
                    Status::deadline_exceeded(
                        "strong read: the latest committed sequence was not learned before the deadline",
                    )
                })??)
            }
            (None, Consistency::Default) => None,
        };
        let Some(sequence) = want.min_sequence.max(floor) else {
            return Ok(());
        };
        let left = wait.saturating_sub(started.elapsed());
        match self.index.wait_for(sequence, left).await {
            Err(e @ IndexError::NotYetApplied { .. }) => Err(not_yet_applied(&e, deadline)),
            other => Ok(other?),
        }
    }
}

/// Time kept back from a client's deadline to send the answer: a quarter of
/// it, at least 10 ms and at most 250 ms.
fn reply_margin(deadline: Duration) -> Duration {
    (deadline / 4).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

/// This index has not applied the sequence a read needs. DEADLINE_EXCEEDED
/// when the client's deadline is what ran out (it gets our answer before its
/// own timer fires), UNAVAILABLE when only our default wait did; marked
/// either way, so a client may try another index.
fn not_yet_applied(e: &IndexError, deadline: Option<Duration>) -> Status {
    let status = match deadline {
        Some(_) => Status::deadline_exceeded(e.to_string()),
        None => Status::unavailable(e.to_string()),
    };
    headers::mark(status, headers::READ_ERROR_HEADER, headers::NOT_YET_APPLIED)
}

impl From<IndexError> for Status {
    fn from(e: IndexError) -> Status {
        match &e {
            IndexError::NotYetApplied { .. } => not_yet_applied(&e, None),
            IndexError::Stale { .. } | IndexError::Committed(_) => {
                Status::unavailable(e.to_string())
            }
            IndexError::Read(read) => match read.as_ref() {
                ReadError::Corrupt { .. } | ReadError::TooShort { .. } => {
                    Status::data_loss(e.to_string())
                }
                ReadError::Store(StoreError::NotFound { .. }) => Status::internal(e.to_string()),
                ReadError::Store(_) => Status::unavailable(e.to_string()),
            },
        }
    }
}

/// Page tokens are the hex of the last key returned; the next page starts
/// strictly after it.
fn decode_token(token: &str) -> Result<Option<Vec<u8>>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Status::invalid_argument("page_token is not a token returned by Scan");
    if !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, Status>>()
        .map(Some)
}

fn encode_token(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

impl IndexApi {
    fn scan_range(&self, req: &ScanRequest) -> Result<(KeyRange, PageLimits), Status> {
        for (field, value) in [
            ("start_key", &req.start_key),
            ("end_key", &req.end_key),
            ("prefix", &req.prefix),
        ] {
            if value.len() > self.limits.max_key_bytes {
                return Err(Status::invalid_argument(format!(
                    "{field} is {} bytes; the limit is {} bytes",
                    value.len(),
                    self.limits.max_key_bytes
                )));
            }
        }
        if req.limit > self.limits.max_scan_limit {
            return Err(Status::invalid_argument(format!(
                "limit is {}; the maximum is {}",
                req.limit, self.limits.max_scan_limit
            )));
        }
        let end = (!req.end_key.is_empty()).then_some(req.end_key.as_bytes());
        let mut range = KeyRange::new(req.start_key.as_bytes(), end, req.prefix.as_bytes());
        if let Some(mut after) = decode_token(&req.page_token)? {
            after.push(0); // the smallest key greater than the last one returned
            range.start = range.start.max(after);
        }
        let max_items = match req.limit {
            0 => self.limits.default_scan_limit,
            n => n,
        } as usize;
        let limits = PageLimits {
            max_items,
            max_bytes: self.limits.max_scan_page_bytes,
        };
        Ok((range, limits))
    }
}

#[tonic::async_trait]
impl IndexService for IndexApi {
    async fn batch_get(
        &self,
        request: Request<BatchGetRequest>,
    ) -> Result<Response<BatchGetResponse>, Status> {
        let started = Instant::now();
        let result = async {
            let deadline = request_deadline(&request);
            let req = request.into_inner();
            let want = Freshness {
                min_sequence: req.min_sequence,
                consistency: validate::consistency(req.consistency)?,
            };
            let keys = validate::batch_get_keys(req.keys, &self.limits)?;
            self.wait_for(deadline, want).await?;
            let (sequence, values) = self.index.get_many_at(&keys).await?;
            let budget = self.limits.max_get_response_bytes;
            let mut bytes = 0usize;
            let mut results = std::collections::HashMap::new();
            for (i, (k, v)) in keys.into_iter().zip(values).enumerate() {
                let Some(v) = v else { continue };
                bytes += k.len() + v.len();
                if bytes > budget {
                    let status = Status::resource_exhausted(format!(
                        "BatchGet response over its budget of {budget} bytes of keys and values \
                         (reached at keys[{i}]); ask for fewer keys per request"
                    ));
                    return Err(headers::mark(
                        status,
                        headers::READ_ERROR_HEADER,
                        headers::RESPONSE_BUDGET,
                    ));
                }
                results.insert(String::from_utf8_lossy(&k).into_owned(), v);
            }
            Ok(Response::new(BatchGetResponse { results, sequence }))
        }
        .await;
        observe("BatchGet", started, &result);
        result
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let started = Instant::now();
        let result = async {
            let (range, limits) = self.scan_range(request.get_ref())?;
            let want = Freshness {
                min_sequence: request.get_ref().min_sequence,
                consistency: validate::consistency(request.get_ref().consistency)?,
            };
            self.wait_for(request_deadline(&request), want).await?;
            let page = self.index.scan(&range, limits).await?;
            let items = page
                .items
                .into_iter()
                .map(|(k, v)| KeyValue {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    value: v,
                })
                .collect();
            let next_page_token = page
                .resume_after
                .map(|k| encode_token(&k))
                .unwrap_or_default();
            Ok(Response::new(ScanResponse {
                items,
                next_page_token,
                sequence: page.version,
            }))
        }
        .await;
        observe("Scan", started, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let key = b"k\x00\xffz";
        assert_eq!(
            decode_token(&encode_token(key)).unwrap(),
            Some(key.to_vec())
        );
        assert_eq!(decode_token("").unwrap(), None);
        for bad in ["abc", "zz", "é0"] {
            assert_eq!(
                decode_token(bad).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
    }
}
