//! The campaign's clients: each writes numbered batches with recorded
//! outcomes, and after every ack reads its own writes back carrying the ack's
//! sequence as `min_sequence`.
//!
//! Batch `i` of client `c` puts `b/c/i/0..3` (value `c.i.j`), puts the
//! client's register `r/c = i`, and deletes `b/c/(i-2)/0`. So the final
//! state says, for every batch, whether it committed (its keys 1 and 2), and
//! checks it committed whole (keys 1 and 2 together, key 0 unless batch i+2
//! deleted it, the register never pointing at a batch that did not commit).

use bytes::Bytes;
use skyvault::api::proto::batcher::v1::{
    BatchWriteRequest, WriteRequest, batcher_service_client::BatcherServiceClient,
    write_request::Operation,
};
use skyvault::api::proto::index::v1::{BatchGetRequest, index_service_client::IndexServiceClient};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Request};

pub const KEYS_PER_BATCH: usize = 3;
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client learned about one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged with this sequence: must be durable.
    Acked(u64),
    /// Refused in a way that promises nothing was written.
    NotWritten,
    /// Failed without that promise (connection lost, outcome unknown…).
    Unknown,
}

pub fn batch_key(client: usize, batch: u64, j: usize) -> String {
    format!("b/{client}/{batch}/{j}")
}

pub fn batch_value(client: usize, batch: u64, j: usize) -> Bytes {
    Bytes::from(format!("{client}.{batch}.{j}"))
}

pub fn register_key(client: usize) -> String {
    format!("r/{client}")
}

fn batch(client: usize, i: u64) -> Vec<WriteRequest> {
    let mut writes: Vec<WriteRequest> = (0..KEYS_PER_BATCH)
        .map(|j| WriteRequest {
            key: batch_key(client, i, j),
            operation: Some(Operation::Put(batch_value(client, i, j))),
        })
        .collect();
    writes.push(WriteRequest {
        key: register_key(client),
        operation: Some(Operation::Put(Bytes::from(i.to_string()))),
    });
    if i > 2 {
        writes.push(WriteRequest {
            key: batch_key(client, i - 2, 0),
            operation: Some(Operation::Delete(true)),
        });
    }
    writes
}

/// Everything the clients recorded, and violations seen while running.
#[derive(Default)]
pub struct History {
    /// Per client, per batch number (from 1).
    pub batches: Mutex<BTreeMap<usize, Vec<Outcome>>>,
    pub max_acked_sequence: AtomicU64,
    /// Reads after an ack that did not show the acked batch, or went back.
    pub wrong_reads: AtomicU64,
    pub reads_checked: AtomicU64,
    pub wrong_details: Mutex<Vec<String>>,
}

impl History {
    fn record(&self, client: usize, outcome: Outcome) {
        self.batches
            .lock()
            .expect("history lock")
            .entry(client)
            .or_default()
            .push(outcome);
        if let Outcome::Acked(seq) = outcome {
            self.max_acked_sequence.fetch_max(seq, Ordering::SeqCst);
        }
    }

    pub fn wrong(&self, detail: String) {
        let mut details = self.wrong_details.lock().expect("history lock");
        if details.len() < 20 {
            details.push(detail);
        }
    }
}

fn classify(status: &tonic::Status) -> Outcome {
    let promised = match status.code() {
        Code::InvalidArgument | Code::ResourceExhausted => true,
        Code::Unavailable => status.message().contains("nothing was committed"),
        _ => false,
    };
    if promised {
        Outcome::NotWritten
    } else {
        Outcome::Unknown
    }
}

/// One client: writes batches until `stop`, recording each outcome.
pub async fn client(
    id: usize,
    batcher: Channel,
    index: Channel,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) {
    let mut writer = BatcherServiceClient::new(batcher);
    let mut reader = IndexServiceClient::new(index);
    // The highest sequence this client has seen acked, and the register value
    // its reads have shown: reads carrying the former never show less than
    // the latter.
    let mut floor = 0u64;
    let mut register_seen = 0u64;
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let mut request = Request::new(BatchWriteRequest {
            writes: batch(id, i),
        });
        request.set_timeout(RPC_TIMEOUT);
        let outcome = match writer.batch_write(request).await {
            Ok(reply) => Outcome::Acked(reply.into_inner().sequence),
            Err(status) => classify(&status),
        };
        history.record(id, outcome);
        let Outcome::Acked(seq) = outcome else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        floor = floor.max(seq);
        // Read-your-writes across crashes: with min_sequence = the ack's
        // sequence, the register is this batch and its keys are there.
        let keys = vec![register_key(id), batch_key(id, i, 1)];
        let mut request = Request::new(BatchGetRequest {
            keys,
            min_sequence: Some(floor),
            consistency: 0,
        });
        request.set_timeout(RPC_TIMEOUT);
        let Ok(reply) = reader.batch_get(request).await else {
            continue; // the index is down or catching up: checked at the end
        };
        history.reads_checked.fetch_add(1, Ordering::Relaxed);
        let got = reply.into_inner().results;
        let register = got
            .get(&register_key(id))
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
        let key_ok = got.get(&batch_key(id, i, 1)) == Some(&batch_value(id, i, 1));
        if register != Some(i) || !key_ok || register.unwrap_or(0) < register_seen {
            history.wrong_reads.fetch_add(1, Ordering::Relaxed);
            history.wrong(format!(
                "client {id} batch {i} (seq {seq}): read with min_sequence {floor} saw register \
                 {register:?} (seen before: {register_seen}), batch key ok: {key_ok}"
            ));
        }
        register_seen = register_seen.max(register.unwrap_or(0));
    }
}
