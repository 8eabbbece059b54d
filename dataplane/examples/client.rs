//! Using SkyVault from Rust with `skyvault::client`.
//!
//! ```sh
//! cargo run -p skyvault --example client                  # starts its own in-process store
//! cargo run -p skyvault --example client -- 127.0.0.1:50051   # or talks to a running one
//! ```
//!
//! Distributed: `-- BATCHER:PORT INDEX:PORT` (an index name resolving to
//! several addresses, e.g. a headless Service, spreads reads over all of them).

use futures::TryStreamExt;
use skyvault::client::{Client, ClientError, ClientOptions, ReadConsistency, ScanRange, Write};
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = tempfile::tempdir()?;
    let (batcher, index, server) = match args.as_slice() {
        [] => {
            let mut config = skyvault::standalone::StandaloneConfig::new(dir.path());
            config.grpc_addr = "127.0.0.1:0".into();
            config.http_addr = "127.0.0.1:0".into();
            let server = skyvault::standalone::start(config, None).await?;
            let addr = server.grpc_addr.to_string();
            (addr.clone(), addr, Some(server))
        }
        [addr] => (addr.clone(), addr.clone(), None),
        [batcher, index, ..] => (batcher.clone(), index.clone(), None),
    };
    let client = ClientOptions::new(batcher)
        .with_index_endpoints([index])
        .with_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    tour(&client).await?;
    if let Some(server) = server {
        server.shutdown().await?;
    }
    Ok(())
}

async fn tour(client: &Client) -> Result<(), ClientError> {
    // Writes return their commit sequence; the client remembers the highest.
    let seq = client
        .write(vec![
            Write::put("fruit/apple", "red"),
            Write::put("fruit/banana", "yellow"),
            Write::put("fruit/cherry", "dark red"),
        ])
        .await?;
    println!("wrote 3 keys at sequence {seq}");

    // Session consistency (the default): reads see this client's writes.
    let apple = client.get("fruit/apple").await?;
    println!(
        "fruit/apple = {:?}",
        apple.as_deref().map(String::from_utf8_lossy)
    );

    // A strong read sees every write acknowledged before it, by anyone.
    let strong = client.with_consistency(ReadConsistency::Strong);
    let banana = strong.get("fruit/banana").await?;
    println!(
        "fruit/banana (strong) = {:?}",
        banana.as_deref().map(String::from_utf8_lossy)
    );

    // Any number of keys: split into RPCs under the server's limits.
    let keys: Vec<String> = (0..2_500).map(|i| format!("fruit/none-{i}")).collect();
    let found = client.get_many(keys).await?;
    println!("2500 absent keys read in 3 RPCs: {} found", found.len());

    // A scan is a stream that follows page tokens.
    let pairs: Vec<(String, bytes::Bytes)> = client
        .scan(ScanRange::prefix("fruit/"))
        .try_collect()
        .await?;
    for (key, value) in &pairs {
        println!("  {key} = {}", String::from_utf8_lossy(value));
    }

    // Deletes are writes too.
    client.delete("fruit/apple").await?;
    println!(
        "fruit/apple after delete = {:?}",
        client.get("fruit/apple").await?
    );

    // Continue the session elsewhere: hand over the sequence.
    println!(
        "session sequence to hand over: {}",
        client.session_sequence()
    );
    Ok(())
}
