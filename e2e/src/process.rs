//! Child processes that never outlive the test process.
//!
//! Every child is spawned from one long-lived "spawner" thread with
//! `PR_SET_PDEATHSIG = SIGKILL`: Linux sends the signal when the *thread* that
//! forked the child exits, so forking from a short-lived test thread would kill
//! the child as soon as that test ends. The spawner thread lives until the
//! process exits, so a test binary that panics, aborts or is killed still takes
//! its etcd and kube-apiserver down with it. Orderly shutdown (SIGTERM, then
//! SIGKILL after a grace period) happens on [`Drop`] or [`ManagedProcess::stop`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("e2e-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop ends only with the process.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the e2e spawner thread");
        Mutex::new(tx)
    })
}

/// Spawns `cmd` so that it is SIGKILLed when this process dies.
fn spawn_tied_to_process(mut cmd: Command) -> std::io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure only calls async-signal-safe libc functions.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("e2e spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("e2e spawner thread did not answer"))?
}

/// A child process whose stdout and stderr go to a log file.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    pid: u32,
    child: Mutex<Option<Child>>,
    log_path: PathBuf,
}

impl ManagedProcess {
    /// Starts `cmd`, appending its output to `log_path`.
    pub fn spawn(name: &str, mut cmd: Command, log_path: &Path) -> Result<Self> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("open log file {}", log_path.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child =
            spawn_tied_to_process(cmd).with_context(|| format!("start {name} ({program})"))?;
        Ok(Self {
            name: name.to_owned(),
            pid: child.id(),
            child: Mutex::new(Some(child)),
            log_path: log_path.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// `Some(status)` once the process has exited (and been reaped).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            None => None,
            Some(child) => child.try_wait().ok().flatten(),
        }
    }

    /// Errors (with the end of the log) if the process has exited.
    pub fn ensure_running(&self) -> Result<()> {
        if let Some(status) = self.exit_status() {
            bail!(
                "{} exited unexpectedly ({status}); last log lines:\n{}",
                self.name,
                self.log_tail(40)
            );
        }
        Ok(())
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&self) {
        self.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`.
    pub fn stop(&self, grace: Duration) {
        if !self.signal_and_wait(libc::SIGTERM, grace) {
            self.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
        }
    }

    /// Returns true when the process has been reaped.
    fn signal_and_wait(&self, signal: libc::c_int, timeout: Duration) -> bool {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let Some(child) = guard.as_mut() else {
            return true;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        // SAFETY: plain kill(2) on the pid of a child we have not reaped yet,
        // so the pid cannot have been reused.
        unsafe {
            libc::kill(child.id() as libc::pid_t, signal);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return true,
                Ok(None) if Instant::now() >= deadline => return false,
                // Polling a child's exit with a deadline; there is no portable
                // waitpid-with-timeout.
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}), last lines ----\n{}",
                self.name,
                self.log_path.display(),
                self.log_tail(30)
            );
        }
        self.stop(Duration::from_secs(10));
    }
}

/// The last `lines` lines of a file (reads at most its last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::from("<no log>");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Ports are handed out from the ephemeral range by the kernel; there is a
/// small window in which another process can take one, which the callers handle
/// by retrying a start that fails.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Random hex string (from the kernel's CSPRNG) for tokens and names.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Minimal plain-HTTP/1.0 GET to `127.0.0.1:port` (health and metrics
/// endpoints); returns the status code and the body.
pub async fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let io = async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        get_on(stream, path).await
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .context("HTTP GET timed out")?
}

/// [`http_get`] over TLS, trusting only the PEM bundle `ca`; the certificate
/// must name `localhost` (as the test certificates do).
pub async fn https_get(port: u16, path: &str, ca: &Path) -> Result<(u16, String)> {
    let mut config = (*skyvault::tls::client_config(Some(ca), None)?).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let io = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost")?;
        let tls = connector
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        get_on(tls, path).await
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .context("HTTPS GET timed out")?
}

/// `GET path` (HTTP/1.0, so the server closes) on an open connection.
async fn get_on<S>(mut stream: S, path: &str) -> Result<(u16, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status code")?;
    Ok((code, body.to_owned()))
}
