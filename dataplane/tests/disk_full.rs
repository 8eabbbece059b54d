//! A full disk (issue 23 item 6), on a real small filesystem: a tmpfs of a
//! few MiB mounted for the test (the test runs as root, as the test command
//! does on its machine). Writes are refused `RESOURCE_EXHAUSTED` naming the
//! cause, with nothing written; the batcher's readiness says so while reads
//! keep being served; once space returns the store accepts writes again by
//! itself; nothing acked is lost, across a restart.

mod common;

use common::{http_get, put, start};
use skyvault::objstore::{DynStore, LocalStore};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::Code;

/// A tmpfs of `mib` MiB at a fresh directory, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u64) -> SmallDisk {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(
            mounted.success(),
            "mounting a {mib} MiB tmpfs at {} failed: this test needs root (the test command runs as root)",
            path.display()
        );
        SmallDisk {
            path,
            _parent: parent,
        }
    }

    /// Fills what is left with a balloon file, until the filesystem says it
    /// is full.
    fn fill(&self) {
        use std::io::Write;
        let mut balloon = std::fs::File::create(self.balloon()).unwrap();
        let chunk = vec![0u8; 64 << 10];
        loop {
            match balloon.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the small disk: {e}"),
            }
        }
        // A failed partial write may leave room for a few bytes; take them.
        while balloon.write_all(&[0u8; 512]).is_ok() {}
        let _ = balloon.write_all(&[0u8]);
    }

    fn free(&self) {
        std::fs::remove_file(self.balloon()).unwrap();
    }

    fn balloon(&self) -> PathBuf {
        self.path.join("balloon")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

fn config(dir: &Path) -> skyvault::standalone::StandaloneConfig {
    let mut config = common::config(dir);
    // The WAL tier stays in memory and in its WAL objects: nothing else
    // writes in the background while the test fills the disk.
    config.maintenance = None;
    config.batcher.wal_flush = None;
    config
}

/// Writes new keys until one is refused `RESOURCE_EXHAUSTED`; returns the
/// refusal, the refused key, and the keys acked meanwhile (a database may
/// still fit a commit into space it had already taken: those are real).
async fn write_until_refused(
    server: &common::Server,
    acked: &mut Vec<String>,
) -> (tonic::Status, String) {
    for i in 0..100 {
        let key = format!("full-{i}");
        match server.write(vec![put(&key, "v")]).await {
            Ok(_) => acked.push(key),
            Err(status) if status.code() == Code::ResourceExhausted => return (status, key),
            Err(status) => panic!("a full disk answered {status:?}"),
        }
    }
    panic!("no write was refused RESOURCE_EXHAUSTED on a full disk");
}

async fn wait_for_write(server: &common::Server, key: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match server.write(vec![put(key, "after")]).await {
            Ok(sequence) => return sequence,
            Err(status) => assert!(
                Instant::now() < deadline,
                "writes never came back after space returned: {status:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_ready(http: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = http_get(http, "/readyz").await;
        if answer.starts_with("HTTP/1.1 200") {
            return;
        }
        assert!(Instant::now() < deadline, "never ready again: {answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whole scenario on a store whose `full` part lives on the small disk.
async fn full_then_freed(disk: &SmallDisk, data_dir: &Path, store: Option<DynStore>) {
    let server = start(config(data_dir), store.clone()).await;
    let mut acked: Vec<String> = (0..20).map(|i| format!("before-{i}")).collect();
    for key in &acked {
        server.write(vec![put(key, "v")]).await.expect("write");
    }

    disk.fill();
    let (refused, refused_key) = write_until_refused(&server, &mut acked).await;
    assert!(
        refused.message().contains("out of space"),
        "the refusal names the cause: {refused:?}"
    );
    assert_eq!(
        refused
            .metadata()
            .get(skyvault::api::headers::WRITE_OUTCOME_HEADER)
            .map(|v| v.to_str().unwrap()),
        Some(skyvault::api::headers::NOT_APPLIED),
        "nothing was written, and the status says so"
    );
    let http = server.running.http_addr;
    let readyz = http_get(http, "/readyz").await;
    assert!(
        readyz.starts_with("HTTP/1.1 503") && readyz.contains("out of space"),
        "readiness says why: {readyz}"
    );
    let keys: Vec<&str> = acked.iter().map(String::as_str).collect();
    assert_eq!(
        server.get(&keys).await.len(),
        acked.len(),
        "reads are served"
    );
    assert!(
        http_get(http, "/metrics")
            .await
            .contains("skyvault_storage_full 1")
    );

    disk.free();
    wait_ready(http).await;
    let after = wait_for_write(&server, "after").await;
    assert!(after > 0);
    assert!(
        server.get(&[refused_key.as_str()]).await.is_empty(),
        "the refused write is not there"
    );
    server.stop().await;

    // Nothing acked is lost: every acked key is there after a restart.
    let server = start(config(data_dir), store).await;
    let mut all: Vec<&str> = acked.iter().map(String::as_str).collect();
    all.push("after");
    assert_eq!(server.get(&all).await.len(), all.len());
    server.stop().await;
}

/// Objects and the database on one small disk (standalone's layout): the
/// object PUT is what fails first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_directory_refuses_writes_until_space_returns() {
    let disk = SmallDisk::mount(16);
    full_then_freed(&disk, &disk.path, None).await;
}

/// Objects elsewhere, the database on the small disk: the commit is what
/// fails (SQLite's "database or disk is full"), and it rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_metadata_database_refuses_writes_until_space_returns() {
    let disk = SmallDisk::mount(16);
    let objects = tempfile::tempdir().unwrap();
    let store: DynStore = std::sync::Arc::new(LocalStore::open(objects.path()).unwrap());
    full_then_freed(&disk, &disk.path, Some(store)).await;
}
