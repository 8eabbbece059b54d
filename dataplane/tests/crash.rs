//! Invariant 1 (durable ack): a `skyvault standalone` process killed with
//! SIGKILL while writes are in flight loses only un-acked writes; restarted
//! on the same directory it serves every acked one.

mod common;

use skyvault::api::proto::batcher::v1::{
    BatchWriteRequest, batcher_service_client::BatcherServiceClient,
};
use skyvault::api::proto::index::v1::{BatchGetRequest, index_service_client::IndexServiceClient};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A server process; killed with SIGKILL when dropped.
struct Process {
    child: Child,
    addr: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `skyvault standalone` on free ports and waits for its "serving" log line.
fn spawn_standalone(dir: &Path) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_skyvault"))
        .args(["standalone", "--data-dir"])
        .arg(dir)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn skyvault");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("grpc_addr=").nth(1) {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("standalone logs its gRPC address");
    Process { child, addr }
}

fn kill9(mut p: Process) {
    p.child.kill().expect("SIGKILL");
    p.child.wait().unwrap();
}

#[tokio::test]
async fn acked_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_standalone(dir.path());
    let channel = skyvault::cli::connect(&server.addr).await.unwrap();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let progress = Arc::new(tokio::sync::Notify::new());
    let mut writers = Vec::new();
    for w in 0..8 {
        let (channel, acked, progress) = (channel.clone(), acked.clone(), progress.clone());
        writers.push(tokio::spawn(async move {
            let mut client = BatcherServiceClient::new(channel);
            for i in 0.. {
                let pairs: Vec<(String, String)> = (0..5)
                    .map(|j| (format!("w{w}/{i}/{j}"), format!("v{i}.{j}")))
                    .collect();
                let writes = pairs.iter().map(|(k, v)| common::put(k, v)).collect();
                match client.batch_write(BatchWriteRequest { writes }).await {
                    Ok(_) => {
                        acked.lock().unwrap().extend(pairs);
                        progress.notify_waiters();
                    }
                    Err(_) => return, // the server died under us: this batch was never acked
                }
            }
        }));
    }
    // Kill while writes are certainly in flight: after enough acks, not after a pause.
    let enough_acks = async {
        loop {
            let acked_more = progress.notified();
            if acked.lock().unwrap().len() >= 2_000 {
                return;
            }
            acked_more.await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), enough_acks)
        .await
        .expect("writes are not being acked");
    kill9(server);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let server = spawn_standalone(dir.path());
    let mut index = IndexServiceClient::new(skyvault::cli::connect(&server.addr).await.unwrap());
    for chunk in acked.chunks(500) {
        let keys = chunk.iter().map(|(k, _)| k.clone()).collect();
        let got = index
            .batch_get(BatchGetRequest {
                keys,
                min_sequence: None,
                consistency: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .results;
        for (k, v) in chunk {
            assert_eq!(
                got.get(k).map(|b| b.as_ref()),
                Some(v.as_bytes()),
                "acked key {k} lost"
            );
        }
    }
}

#[tokio::test]
async fn readme_put_kill_get() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_skyvault");
    let server = spawn_standalone(dir.path());
    let out = Command::new(bin)
        .args(["put", "a", "1", "--addr", &server.addr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kill9(server);
    let server = spawn_standalone(dir.path());
    let out = Command::new(bin)
        .args(["get", "a", "--addr", &server.addr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    let out = Command::new(bin)
        .args(["get", "missing", "--addr", &server.addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found: missing"));
    drop(server);
    let out = Command::new(bin)
        .args(["get", "a", "--addr", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
