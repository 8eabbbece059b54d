//! The client commands of the `skyvault` binary: put, get, delete, scan.

use crate::client::{Client, ClientError, ClientOptions, ReadConsistency, ScanRange, Write};
use anyhow::{Context, bail};
use futures::TryStreamExt;
use std::io::Write as _;
use std::path::PathBuf;
use tonic::transport::Channel;

/// TLS and token flags of the client commands and `skyvault bench`
/// (docs/security.md). Named apart from the roles' own `--tls-*` flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClientSecurityArgs {
    /// PEM CA bundle that verifies the server's certificate: connect over TLS.
    #[arg(long, env = "SKYVAULT_SERVER_CA_FILE")]
    pub server_ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that require one (mTLS).
    #[arg(long, env = "SKYVAULT_CLIENT_CERT_FILE", requires_all = ["client_key_file", "server_ca_file"])]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `--client-cert-file`.
    #[arg(long, env = "SKYVAULT_CLIENT_KEY_FILE", requires = "client_cert_file")]
    pub client_key_file: Option<PathBuf>,
    /// File holding the bearer token sent with every call.
    #[arg(long, env = "SKYVAULT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// The settings of this process's client commands (set once by `main`).
static SECURITY: std::sync::OnceLock<ClientSecurityArgs> = std::sync::OnceLock::new();

/// Makes the commands below connect with `args` (TLS, token).
pub fn use_security(args: &ClientSecurityArgs) {
    let _ = SECURITY.set(args.clone());
}

/// Client options for `addr` with the configured TLS and token.
pub fn options(addr: &str) -> anyhow::Result<ClientOptions> {
    let mut options = ClientOptions::new(addr);
    let Some(args) = SECURITY.get() else {
        return Ok(options);
    };
    if let Some(ca) = &args.server_ca_file {
        let identity = args
            .client_cert_file
            .as_deref()
            .zip(args.client_key_file.as_deref());
        options = options.with_tls(crate::tls::client_config(Some(ca), identity)?);
    }
    if let Some(path) = &args.token_file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?;
        options = options.with_bearer_token(&token)?;
    }
    Ok(options)
}

/// Connects one channel to a SkyVault gRPC endpoint (for tools and tests that
/// use the generated stubs directly; the commands below use
/// [`crate::client`]). Fails at once when nothing listens there.
pub async fn connect(addr: &str) -> anyhow::Result<Channel> {
    options(addr)?
        .connect_now(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| not_running(addr))
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
    Ok(options(addr)?.connect().await?)
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
