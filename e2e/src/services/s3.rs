//! An S3 HTTP server on loopback for tests: `moto_server` (PyPI
//! `moto[server]`) on 127.0.0.1 and a free port, with one bucket created.
//!
//! `SKYVAULT_TEST_S3` selects the server: `moto` (the default; slow, ~450
//! GETs/s, fine for tests) or `s3s-fs` (crates.io `s3s-fs` 0.14, objects on
//! disk; fast; it answers suffix-range GETs with 500, which `S3Store` works
//! around with HEAD + range, and treats a missing bucket differently from
//! S3); binary from `SKYVAULT_S3S_FS_BIN` or
//! `~/.cache/skyvault/tools/s3s-fs-0.14.1/bin/s3s-fs`, installed by
//! `e2e/bench-sustained.sh`). Anything else fails loudly.

use super::find_binary;
use crate::process::{ManagedProcess, free_port, random_hex};
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

pub const INSTALL_MOTO: &str = "pip install 'moto[server]'";
/// Moto accepts any credentials; these are what the clients sign with.
pub const ACCESS_KEY: &str = "skyvault-test";
pub const SECRET_KEY: &str = "skyvault-test-secret";

pub struct S3Server {
    process: Option<ManagedProcess>,
    _dir: tempfile::TempDir,
    port: u16,
    bucket: String,
}

impl S3Server {
    /// Starts the server selected by `SKYVAULT_TEST_S3` and creates a bucket.
    pub fn start() -> Result<Self> {
        match std::env::var("SKYVAULT_TEST_S3").as_deref() {
            Err(_) | Ok("") | Ok("moto") => Self::start_moto(),
            Ok("s3s-fs") => Self::start_s3s_fs(),
            Ok(other) => bail!(
                "SKYVAULT_TEST_S3={other:?} is not supported by this harness (`moto` or `s3s-fs`)"
            ),
        }
    }

    fn start_moto() -> Result<Self> {
        let home = std::env::var("HOME").unwrap_or_default();
        let shims = format!("{home}/.pyenv/shims");
        let bin = find_binary("moto_server", &[&shims], INSTALL_MOTO)?;
        let dir = tempfile::Builder::new().prefix("skyvault-s3-").tempdir()?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            let process = ManagedProcess::spawn("moto_server", cmd, &dir.path().join("moto.log"))?;
            match wait_ready(&process, port, Duration::from_secs(30)) {
                Ok(()) => {
                    let server = S3Server {
                        process: Some(process),
                        _dir: dir,
                        port,
                        bucket: format!("skyvault-{}", random_hex(4)),
                    };
                    server.create_bucket(&server.bucket)?;
                    return Ok(server);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("one attempt"))
    }

    fn start_s3s_fs() -> Result<Self> {
        let home = std::env::var("HOME").unwrap_or_default();
        let bin = std::env::var("SKYVAULT_S3S_FS_BIN")
            .unwrap_or_else(|_| format!("{home}/.cache/skyvault/tools/s3s-fs-0.14.1/bin/s3s-fs"));
        if !std::path::Path::new(&bin).exists() {
            bail!(
                "s3s-fs not found at {bin}: cargo install s3s-fs --version 0.14.1 --features binary \
                 --locked --root ~/.cache/skyvault/tools/s3s-fs-0.14.1"
            );
        }
        let dir = tempfile::Builder::new().prefix("skyvault-s3-").tempdir()?;
        let bucket = format!("skyvault-{}", random_hex(4));
        // A bucket is a directory under the root.
        std::fs::create_dir_all(dir.path().join("root").join(&bucket))?;
        let port = free_port()?;
        let mut cmd = Command::new(&bin);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path().join("root"));
        let process = ManagedProcess::spawn("s3s-fs", cmd, &dir.path().join("s3s-fs.log"))?;
        wait_ready(&process, port, Duration::from_secs(30))?;
        Ok(S3Server {
            process: Some(process),
            _dir: dir,
            port,
            bucket,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// `s3://BUCKET/PREFIX`
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The environment a SkyVault process needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SKYVAULT_S3_ENDPOINT", self.endpoint()),
            ("SKYVAULT_S3_REGION", "us-east-1".into()),
            ("SKYVAULT_S3_PATH_STYLE", "true".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ]
    }

    /// Sets [`Self::env`] in this process (for in-process stores).
    pub fn export_env(&self) {
        for (k, v) in self.env() {
            // SAFETY: tests call this before starting threads that read the
            // environment concurrently (the SDK reads it when a store opens).
            unsafe { std::env::set_var(k, v) };
        }
    }

    /// Creates a bucket (path-style PUT; moto does not check signatures).
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        let (status, body) = http(self.port, "PUT", &format!("/{name}"))?;
        if !(200..300).contains(&status) {
            bail!("creating bucket {name} failed: HTTP {status}: {body}");
        }
        Ok(())
    }

    /// Stops the server (for outage tests).
    pub fn stop(&mut self) {
        if let Some(p) = self.process.take() {
            p.stop(Duration::from_secs(10));
        }
    }

    /// Starts a stopped server again on the same port with the same (now
    /// empty: moto keeps objects in memory) bucket.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let home = std::env::var("HOME").unwrap_or_default();
        let shims = format!("{home}/.pyenv/shims");
        let bin = find_binary("moto_server", &[&shims], INSTALL_MOTO)?;
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()]);
        let log = self._dir.path().join("moto-restarted.log");
        let process = ManagedProcess::spawn("moto_server", cmd, &log)?;
        wait_ready(&process, self.port, Duration::from_secs(30))?;
        self.process = Some(process);
        self.create_bucket(&self.bucket.clone())
    }
}

fn wait_ready(process: &ManagedProcess, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        process.ensure_running()?;
        // Any HTTP answer will do: s3s-fs refuses the unsigned request.
        if http(port, "GET", "/").is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "S3 server not ready after {timeout:?}:\n{}",
                process.log_tail(20)
            );
        }
        // Polling readiness with a deadline.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal HTTP/1.1 request without a body; returns (status, body).
fn http(port: u16, method: &str, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).context("connect to S3 server")?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad HTTP response: {response:.200}"))?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}
