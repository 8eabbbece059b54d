//! The client commands of the `skyvault` binary: put, get, delete, scan.

use crate::client::{Client, ClientError, ClientOptions, ReadConsistency, ScanRange, Write};
use anyhow::{Context, bail};
use futures::TryStreamExt;
use std::io::Write as _;
use tonic::transport::Channel;

/// Connects one plain channel to a SkyVault gRPC endpoint (for tools and
/// tests that use the generated stubs directly; the commands below use
/// [`crate::client`]). Fails at once when nothing listens there.
pub async fn connect(addr: &str) -> anyhow::Result<Channel> {
    let options = ClientOptions::new(addr);
    let endpoint = options.endpoint(&uri(addr))?;
    endpoint.connect().await.with_context(|| not_running(addr))
}

fn uri(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

fn not_running(addr: &str) -> String {
    format!(
        "cannot connect to SkyVault at {addr}: is `skyvault standalone` (or the service) running? \
         Pass --addr HOST:PORT or set SKYVAULT_ADDR"
    )
}

/// `session`, `strong` or `eventual` (the `--consistency` flag).
pub fn parse_consistency(s: &str) -> Result<ReadConsistency, String> {
    match s {
        "session" => Ok(ReadConsistency::Session),
        "strong" => Ok(ReadConsistency::Strong),
        "eventual" => Ok(ReadConsistency::Eventual),
        other => Err(format!(
            "unknown consistency {other:?}: expected session, strong or eventual"
        )),
    }
}

/// A client for one command: the address (a name resolving to several
/// addresses spreads the calls over all of them).
async fn client(addr: &str) -> anyhow::Result<Client> {
    // Fail fast with a helpful message when nothing listens (the client
    // itself connects lazily and would retry until its deadline).
    connect(addr).await?;
    Ok(ClientOptions::new(addr).connect().await?)
}

fn describe(e: ClientError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub async fn write(addr: &str, writes: Vec<Write>) -> anyhow::Result<u64> {
    client(addr).await?.write(writes).await.map_err(describe)
}

pub async fn put(addr: &str, key: String, value: String) -> anyhow::Result<()> {
    let sequence = write(addr, vec![Write::put(key, value.into_bytes())]).await?;
    println!("OK sequence={sequence}");
    Ok(())
}

pub async fn delete(addr: &str, keys: Vec<String>) -> anyhow::Result<()> {
    let sequence = write(addr, keys.into_iter().map(Write::delete).collect()).await?;
    println!("OK sequence={sequence}");
    Ok(())
}

/// Prints the value of one key, or `KEY<TAB>VALUE` lines for several;
/// fails (exit status 1) if any key is absent.
pub async fn get(
    addr: &str,
    keys: Vec<String>,
    min_sequence: Option<u64>,
    consistency: ReadConsistency,
) -> anyhow::Result<()> {
    let client = client(addr).await?.with_consistency(consistency);
    client.observe_sequence(min_sequence.unwrap_or(0));
    let results = client.get_many(keys.clone()).await.map_err(describe)?;
    let mut out = std::io::stdout().lock();
    let mut missing = Vec::new();
    for key in &keys {
        match results.get(key) {
            Some(value) if keys.len() == 1 => out.write_all(value)?,
            Some(value) => {
                out.write_all(key.as_bytes())?;
                out.write_all(b"\t")?;
                out.write_all(value)?;
            }
            None => {
                missing.push(key.as_str());
                continue;
            }
        }
        out.write_all(b"\n")?;
    }
    if !missing.is_empty() {
        bail!("not found: {}", missing.join(", "));
    }
    Ok(())
}

pub struct ScanArgs {
    pub prefix: String,
    pub start: String,
    pub end: String,
    /// Total pairs to print (across pages); 0 prints everything.
    pub limit: u64,
    pub consistency: ReadConsistency,
}

/// Prints `KEY<TAB>VALUE` lines in key order, following page tokens.
pub async fn scan(addr: &str, args: ScanArgs) -> anyhow::Result<()> {
    let client = client(addr).await?.with_consistency(args.consistency);
    let range = ScanRange {
        prefix: args.prefix,
        start: args.start,
        end: args.end,
    };
    let limit = if args.limit == 0 {
        u64::MAX
    } else {
        args.limit
    };
    let mut pairs = std::pin::pin!(client.scan(range));
    let mut out = std::io::stdout().lock();
    let mut printed = 0;
    while printed < limit {
        let Some((key, value)) = pairs.try_next().await.map_err(describe)? else {
            break;
        };
        out.write_all(key.as_bytes())?;
        out.write_all(b"\t")?;
        out.write_all(&value)?;
        out.write_all(b"\n")?;
        printed += 1;
    }
    Ok(())
}
