//! The end-of-campaign check: reads every key any client wrote (carrying the
//! highest acked sequence) and judges the history against it.

use super::workload::{History, KEYS_PER_BATCH, Outcome, batch_key, batch_value, register_key};
use anyhow::{Context, Result};
use bytes::Bytes;
use skyvault::api::proto::index::v1::{BatchGetRequest, index_service_client::IndexServiceClient};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Request};

#[derive(Debug, Default)]
pub struct Verdict {
    pub acked: u64,
    /// Acked batches not fully readable with their values.
    pub lost: u64,
    /// Every other violation: partial batches, writes promised not written
    /// but visible, wrong values, a register at an uncommitted batch, reads
    /// that went back.
    pub wrong: u64,
    pub not_written: u64,
    pub unknown: u64,
    pub unknown_committed: u64,
    /// Keys whose final read failed (counted as absent).
    pub unreadable: u64,
    pub details: Vec<String>,
}

impl Verdict {
    fn fail(&mut self, lost: bool, detail: String) {
        if lost {
            self.lost += 1;
        } else {
            self.wrong += 1;
        }
        if self.details.len() < 20 {
            self.details.push(detail);
        }
    }
}

/// One BatchGet, retried while the index is down or catching up.
async fn get(
    client: &mut IndexServiceClient<Channel>,
    keys: &[String],
    min_sequence: u64,
) -> Result<HashMap<String, Bytes>, tonic::Status> {
    let mut attempts = 0;
    loop {
        let mut request = Request::new(BatchGetRequest {
            keys: keys.to_vec(),
            min_sequence: Some(min_sequence),
            consistency: 0,
        });
        request.set_timeout(Duration::from_secs(10));
        match client.batch_get(request).await {
            Ok(reply) => return Ok(reply.into_inner().results),
            // Down or restarting; a deadline is retried a few times only: a
            // store whose sequence went back never reaches `min_sequence`.
            Err(e)
                if (attempts < 30 && e.code() == Code::Unavailable)
                    || (attempts < 3 && e.code() == Code::DeadlineExceeded) =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Every key's value; a key whose read fails for good (say, DATA_LOSS from
/// a file that lost its contents) counts as absent, and why is recorded.
async fn read_all(
    index: Channel,
    keys: Vec<String>,
    min_sequence: u64,
    unreadable: &mut Vec<String>,
) -> Result<HashMap<String, Bytes>> {
    let mut client = IndexServiceClient::new(index);
    let mut found = HashMap::new();
    for chunk in keys.chunks(200) {
        match get(&mut client, chunk, min_sequence).await {
            Ok(values) => found.extend(values),
            Err(e) if matches!(e.code(), Code::Unavailable | Code::DeadlineExceeded) => {
                return Err(e).context("final read: the index never answered");
            }
            Err(_) => {
                for key in chunk {
                    match get(&mut client, std::slice::from_ref(key), min_sequence).await {
                        Ok(values) => found.extend(values),
                        Err(e) => unreadable.push(format!("{key}: {} {}", e.code(), e.message())),
                    }
                }
            }
        }
    }
    Ok(found)
}

pub async fn verify(history: &History, index: Channel) -> Result<Verdict> {
    let batches: BTreeMap<usize, Vec<Outcome>> =
        history.batches.lock().expect("history lock").clone();
    let mut keys = Vec::new();
    for (&client, outcomes) in &batches {
        keys.push(register_key(client));
        for i in 1..=outcomes.len() as u64 {
            keys.extend((0..KEYS_PER_BATCH).map(|j| batch_key(client, i, j)));
        }
    }
    let min_sequence = history.max_acked_sequence.load(Ordering::SeqCst);
    let mut unreadable = Vec::new();
    // Every acked sequence must still be there: a store that lost commits
    // never reaches the highest one (reads would wait forever).
    let mut probe = IndexServiceClient::new(index.clone());
    let regressed = match get(&mut probe, &keys[..1], min_sequence).await {
        Err(e) if e.code() == Code::DeadlineExceeded => Some(e),
        _ => None,
    };
    let floor = if regressed.is_some() { 0 } else { min_sequence };
    let found = read_all(index, keys, floor, &mut unreadable).await?;
    let mut v = Verdict {
        wrong: history.wrong_reads.load(Ordering::SeqCst),
        details: history.wrong_details.lock().expect("history lock").clone(),
        unreadable: unreadable.len() as u64,
        ..Default::default()
    };
    v.details.extend(
        unreadable
            .into_iter()
            .take(5)
            .map(|u| format!("unreadable {u}")),
    );
    if let Some(e) = regressed {
        v.fail(
            false,
            format!(
                "the store never reached acked sequence {min_sequence}: {}",
                e.message()
            ),
        );
    }
    for (&c, outcomes) in &batches {
        let n = outcomes.len() as u64;
        let outcome = |i: u64| outcomes[(i - 1) as usize];
        let mut committed = vec![false; n as usize + 3];
        for i in 1..=n {
            let present = |j: usize| found.get(&batch_key(c, i, j));
            for j in 0..KEYS_PER_BATCH {
                if let Some(value) = present(j)
                    && *value != batch_value(c, i, j)
                {
                    v.fail(
                        false,
                        format!("client {c} batch {i} key {j}: wrong value {value:?}"),
                    );
                }
            }
            // Keys 1.. are never deleted: all there or none.
            let there = (1..KEYS_PER_BATCH)
                .filter(|&j| present(j).is_some())
                .count();
            let whole = there == KEYS_PER_BATCH - 1;
            committed[i as usize] = whole;
            match outcome(i) {
                Outcome::Acked(_) => v.acked += 1,
                Outcome::NotWritten => v.not_written += 1,
                Outcome::Unknown => v.unknown += 1,
            }
            match outcome(i) {
                Outcome::Acked(seq) if !whole => v.fail(
                    true,
                    format!("client {c} batch {i} acked at {seq}: {there} of its keys readable"),
                ),
                Outcome::NotWritten if there > 0 => v.fail(
                    false,
                    format!(
                        "client {c} batch {i} refused as not written, yet {there} keys visible"
                    ),
                ),
                Outcome::Unknown if there > 0 && !whole => v.fail(
                    false,
                    format!("client {c} batch {i} (outcome unknown) partially visible"),
                ),
                Outcome::Unknown if whole => v.unknown_committed += 1,
                _ => {}
            }
        }
        // Key 0 of batch i is there iff batch i committed and batch i+2
        // (which deletes it) did not.
        for i in 1..=n {
            let deleted = i + 2 <= n && committed[(i + 2) as usize];
            let want = committed[i as usize] && !deleted;
            let there = found.contains_key(&batch_key(c, i, 0));
            if there != want {
                let acked = |k: u64| k <= n && matches!(outcome(k), Outcome::Acked(_));
                let lost = (want && acked(i)) || (deleted && acked(i + 2));
                v.fail(
                    lost,
                    format!(
                        "client {c} batch {i} key 0: visible {there}, expected {want} \
                         (batch {} committed: {deleted})",
                        i + 2
                    ),
                );
            }
        }
        // The register names the last committed batch.
        let last_committed = (1..=n).rev().find(|&i| committed[i as usize]);
        let register = found
            .get(&register_key(c))
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok());
        if register != last_committed {
            let last_acked = (1..=n)
                .rev()
                .find(|&i| matches!(outcome(i), Outcome::Acked(_)));
            let lost = last_acked.is_some_and(|a| register.is_none_or(|r| r < a));
            v.fail(
                lost,
                format!(
                    "client {c}: register {register:?}, last committed batch {last_committed:?}"
                ),
            );
        }
    }
    Ok(v)
}
