//! A throwaway PostgreSQL server: `initdb` on a temp dir, `postgres` on
//! 127.0.0.1 and a free port (unix sockets inside the temp dir, so nothing
//! touches /var/run), one database created for the test.
//!
//! PostgreSQL refuses to run as root. When the tests run as root the server
//! runs as the `postgres` user (or `nobody`): the temp dir is chowned to it and
//! the child calls setuid/setgid itself before exec (no `su`/`runuser`
//! wrapper, so the kill-on-parent-death signal survives and SIGTERM reaches
//! the postmaster directly).

use super::find_binary;
use crate::process::{ManagedProcess, free_port};
use anyhow::{Context, Result, bail};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN_DIRS: &[&str] = &["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin"];
const INSTALL: &str = "apt-get install -y postgresql";
const SUPERUSER: &str = "skyvault";

pub struct PostgresServer {
    // Declared before `dir` so the server stops before its files go away.
    process: Option<ManagedProcess>,
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    database: String,
    /// With TLS: `ssl=on` with this certificate and key (under `dir`).
    tls: Option<(PathBuf, PathBuf)>,
}

impl PostgresServer {
    /// Initialises a cluster, starts it and creates database `skyvault`.
    pub fn start() -> Result<Self> {
        Self::start_with_tls(None)
    }

    /// Like [`start`](Self::start); with `tls`, the server also accepts TLS
    /// (`ssl=on`) with that certificate and key. Clients still choose: the
    /// server does not require TLS.
    pub fn start_with_tls(tls: Option<&crate::certs::Leaf>) -> Result<Self> {
        let initdb = find_binary("initdb", BIN_DIRS, INSTALL)?;
        // /usr/local/bin may hold symlinks to only some of the tools: use the
        // real directory, which has pg_isready and createdb too.
        let initdb = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        let bin = initdb
            .parent()
            .expect("binary has a directory")
            .to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("skyvault-pg-")
            .tempdir()
            .context("create PostgreSQL temp dir")?;
        let run_as = unprivileged_user()?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("chown the PostgreSQL dir to the server's user")?;
        }
        let mut init = Command::new(&initdb);
        init.args([
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "-U",
            SUPERUSER,
            "-D",
        ])
        .arg(dir.path().join("data"));
        if let Some((uid, gid)) = run_as {
            init.uid(uid).gid(gid);
        }
        let out = init.output().context("run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tls = match tls {
            Some(leaf) => Some(write_tls_pair(dir.path(), leaf, run_as)?),
            None => None,
        };
        let mut server = PostgresServer {
            process: None,
            dir,
            bin,
            port: 0,
            run_as,
            database: "skyvault".into(),
            tls,
        };
        server.start_server(Duration::from_secs(30))?;
        let out = Command::new(server.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &server.port.to_string(),
                "-U",
                SUPERUSER,
            ])
            .arg(&server.database)
            .output()
            .context("run createdb")?;
        if !out.status.success() {
            bail!("createdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(server)
    }

    /// `postgres://skyvault@127.0.0.1:PORT/skyvault`
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{}",
            self.port, self.database
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server with a fast shutdown (SIGINT: disconnect clients,
    /// checkpoint, exit). SIGTERM would be a "smart" shutdown that waits for
    /// every pooled client to leave, and SIGKILL would orphan the backends.
    /// `restart` brings it back on the same port.
    pub fn stop(&mut self) {
        let Some(process) = self.process.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child, which is not reaped yet.
        unsafe {
            libc::kill(process.pid() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while process.exit_status().is_none() && Instant::now() < deadline {
            // Waiting for the child's exit with a deadline.
            std::thread::sleep(Duration::from_millis(20));
        }
        // Already exited: this only reaps; otherwise SIGTERM then SIGKILL.
        process.stop(Duration::from_secs(5));
    }

    /// Starts the stopped server again with the same data and port.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.start_server(Duration::from_secs(30))
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    fn start_server(&mut self, timeout: Duration) -> Result<()> {
        // A port taken between free_port() and bind makes the start fail: retry.
        let mut last = None;
        for _ in 0..3 {
            let port = if self.port == 0 {
                free_port()?
            } else {
                self.port
            };
            match self.try_start(port, timeout) {
                Ok(()) => {
                    self.port = port;
                    return Ok(());
                }
                Err(e) if self.port == 0 => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn try_start(&mut self, port: u16, timeout: Duration) -> Result<()> {
        let data = self.dir.path().join("data");
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            // Test data only: durability across an OS crash is not under test.
            .args(["-c", "fsync=off", "-c", "max_connections=300"]);
        if let Some((cert, key)) = &self.tls {
            cmd.args(["-c", "ssl=on", "-c"])
                .arg(format!("ssl_cert_file={}", cert.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()));
        }
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let log = self.dir.path().join("postgres.log");
        let process = ManagedProcess::spawn("postgres", cmd, &log)?;
        let deadline = Instant::now() + timeout;
        loop {
            process.ensure_running()?;
            if self.ready(port) {
                self.process = Some(process);
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "PostgreSQL not ready on port {port} after {timeout:?}:\n{}",
                    process.log_tail(20)
                );
            }
            // Polling readiness with a deadline (pg_isready exits at once).
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `pg_isready` exits 0 once the server accepts connections (a missing
    /// binary counts as not ready, so the deadline names the problem).
    fn ready(&self, port: u16) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", SUPERUSER, "-d", "postgres"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes the server's TLS pair where the server's user can read it; the key
/// must be private to that user or PostgreSQL refuses to start.
fn write_tls_pair(
    dir: &Path,
    leaf: &crate::certs::Leaf,
    run_as: Option<(u32, u32)>,
) -> Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let (cert, key) = leaf.write(dir, "server")?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    if let Some((uid, gid)) = run_as {
        for file in [&cert, &key] {
            std::os::unix::fs::chown(file, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", file.display()))?;
        }
    }
    Ok((cert, key))
}

/// `Some((uid, gid))` of the user to run as when we are root.
fn unprivileged_user() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        let cname = std::ffi::CString::new(name).expect("no NUL");
        // SAFETY: getpwnam returns a pointer to static storage or null; we
        // copy the two ids out at once (tests start servers one at a time per
        // thread, and the ids are the same for every caller).
        let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
        if !pw.is_null() {
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Ok(Some((uid, gid)));
        }
    }
    bail!(
        "running as root and neither user `postgres` nor `nobody` exists; create one with: useradd --system postgres"
    )
}
