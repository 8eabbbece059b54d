//! The Python example client (examples/python) against a real `skyvault
//! standalone`: stubs generated from proto/ with grpcio-tools, then its
//! checks (read-after-write without extension fields, strong reads,
//! min_sequence sessions, deletes, paged scans, INVALID_ARGUMENT naming the
//! field). grpcio-tools comes from PyPI into a virtualenv cached under
//! `${SKYVAULT_TOOLS_DIR:-~/.cache/skyvault/tools}`, keyed by the pinned
//! requirements. Skipped, saying so, only when `python3` is missing.
//!
//! Needs the binary: `cargo build -p skyvault --bin skyvault` first.

use anyhow::{Context, Result, bail};
use skyvault_e2e::process::{ManagedProcess, free_port};
use skyvault_e2e::services::{http_get_status, skyvault_binary};
use skyvault_e2e::tools::repo_root;
use skyvault_e2e::wait_for;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{cmd:?} failed ({}):\n{text}", out.status);
    }
    Ok(text)
}

fn tools_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SKYVAULT_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap_or_default()));
    Path::new(&cache).join("skyvault/tools")
}

/// A virtualenv with the example's pinned requirements, built once per
/// requirements file (built aside, then renamed: a half-built one is never used).
fn venv(requirements: &Path) -> Result<PathBuf> {
    let pins = std::fs::read(requirements)?;
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        pins.hash(&mut h);
        format!("{:016x}", h.finish())
    };
    let dir = tools_dir().join(format!("python-grpc-{key}"));
    if dir.join("bin/python").exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(tools_dir())?;
    let building = tools_dir().join(format!("python-grpc-{key}.building-{}", std::process::id()));
    run(Command::new("python3").args(["-m", "venv"]).arg(&building))?;
    run(Command::new(building.join("bin/pip"))
        .args(["install", "--quiet", "-r"])
        .arg(requirements))
    .context("installing grpcio-tools from PyPI")?;
    // venv scripts name their own directory: rebuild at the final path
    // instead of moving when another run got there first.
    if std::fs::rename(&building, &dir).is_err() && !dir.join("bin/python").exists() {
        bail!("could not install the virtualenv at {}", dir.display());
    }
    let _ = std::fs::remove_dir_all(&building);
    Ok(dir)
}

#[tokio::test]
async fn the_python_example_client_passes_its_checks_against_standalone() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 not found; install python3 to run the Python example client");
        return;
    }
    let example = repo_root().join("examples/python");
    let venv = venv(&example.join("requirements.txt")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let gen_dir = work.path().join("gen");
    run(Command::new("bash")
        .arg(example.join("generate.sh"))
        .arg(&gen_dir)
        .env("PYTHON", venv.join("bin/python")))
    .unwrap();

    let (grpc, http) = (free_port().unwrap(), free_port().unwrap());
    let mut cmd = Command::new(skyvault_binary().unwrap());
    cmd.arg("standalone")
        .arg("--data-dir")
        .arg(work.path().join("data"))
        .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
        .args(["--http-addr", &format!("127.0.0.1:{http}")]);
    let server =
        ManagedProcess::spawn("standalone", cmd, &work.path().join("standalone.log")).unwrap();
    let http_addr = format!("127.0.0.1:{http}");
    wait_for("standalone /readyz", Duration::from_secs(60), || async {
        server.ensure_running()?;
        match http_get_status(&http_addr, "/readyz")? {
            200 => Ok(()),
            s => bail!("HTTP {s}"),
        }
    })
    .await
    .unwrap();

    let output = run(Command::new(venv.join("bin/python"))
        .arg(example.join("skyvault_example.py"))
        .arg(format!("127.0.0.1:{grpc}"))
        .env("PYTHONPATH", &gen_dir));
    server.stop(Duration::from_secs(5));
    let output = output.unwrap();
    eprintln!("{output}");
    assert!(output.contains("0 stale"), "{output}");
    assert!(output.contains("all checks passed"), "{output}");
}
