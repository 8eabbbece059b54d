//! Real backing services for the data-plane tests, on loopback and free
//! ports: PostgreSQL from Debian's binaries and an S3 HTTP server
//! (`moto_server` by default). Each is stopped and its files removed on Drop.
//!
//! A missing binary is an error naming the command that installs it: tests
//! never skip silently.

pub mod dataplane;
pub mod postgres;
pub mod s3;

pub use postgres::PostgresServer;
pub use s3::S3Server;

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

/// The first of `candidates` that exists, else an error with `install`.
fn find_binary(name: &str, extra_dirs: &[&str], install: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(extra_dirs.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("`{name}` not found on PATH or in {extra_dirs:?}; install it with: {install}")
}

/// The `skyvault` binary of this build (`SKYVAULT_BIN` overrides it).
///
/// Cargo does not build another package's binary for this crate's tests, and
/// building it from inside a running test would wait on cargo's own lock, so
/// the test command builds it first: `cargo build -p skyvault --bin skyvault`.
pub fn skyvault_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SKYVAULT_BIN") {
        return Ok(PathBuf::from(path));
    }
    // target/<profile>/deps/<test exe> -> target/<profile>/skyvault; a harness binary
    // (skyvault-e2e-cluster) is in target/<profile> itself.
    let exe = std::env::current_exe().context("locate the test executable")?;
    let dir = exe.parent().context("executable without a directory")?;
    let profile_dir = if dir.ends_with("deps") {
        dir.parent()
            .context("test executable is not under target/<profile>/deps")?
    } else {
        dir
    };
    let bin = profile_dir.join("skyvault");
    if !bin.is_file() {
        bail!(
            "{} is missing: build it first with `cargo build -p skyvault --bin skyvault` \
             (same profile and CARGO_TARGET_DIR as the tests), or set SKYVAULT_BIN",
            bin.display()
        );
    }
    let (bin_time, exe_time) = (bin.metadata()?.modified()?, exe.metadata()?.modified()?);
    if bin_time + Duration::from_secs(3600) < exe_time {
        eprintln!(
            "warning: {} is much older than this test; rebuild it with `cargo build -p skyvault --bin skyvault`",
            bin.display()
        );
    }
    Ok(bin)
}

/// The HTTP status of `GET path` on `addr` (e.g. a role's `/readyz`).
pub fn http_get_status(addr: &str, path: &str) -> Result<u16> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad HTTP response from {addr}: {response:.200}"))
}
