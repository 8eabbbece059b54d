//! Local-directory backend: one file per object under a root directory.
//!
//! `put` is atomic and durable: write a temporary file, fsync it, rename it
//! into place, fsync the directory. A crash leaves either the whole object or
//! only a temporary file, removed by a later `open` once provably abandoned.

use super::{BoxUpload, ObjectMeta, ObjectStore, StoreError, StoreResult, Upload, check_path};
use async_trait::async_trait;
use bytes::Bytes;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const TMP_DIR: &str = ".tmp";

#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn open(root: impl AsRef<Path>) -> std::io::Result<Self> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(root.join(TMP_DIR))?;
        // Leftovers of writes interrupted by a crash: never renamed, never
        // referenced. Another process may be writing into this directory
        // right now (`skyvault compact --data-dir` beside a running server):
        // its temporary files must survive.
        for entry in fs::read_dir(root.join(TMP_DIR))? {
            let entry = entry?;
            if abandoned(&entry) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(LocalStore { root })
    }

    fn object_path(&self, path: &str) -> StoreResult<PathBuf> {
        check_path(path)?;
        if path.split('/').next() == Some(TMP_DIR) {
            return Err(StoreError::InvalidPath {
                path: path.into(),
                reason: "reserved prefix",
            });
        }
        Ok(self.root.join(path))
    }
}

fn io_err(path: &str, source: std::io::Error) -> StoreError {
    match source.kind() {
        ErrorKind::NotFound => StoreError::NotFound { path: path.into() },
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => StoreError::NoSpace {
            path: path.into(),
            detail: source.to_string(),
        },
        _ => StoreError::Io {
            path: path.into(),
            source,
        },
    }
}

/// Runs blocking file I/O off the async runtime.
async fn blocking<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> StoreResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| io_err(path, e)),
        Err(join) => Err(StoreError::Unavailable(format!("I/O task failed: {join}"))),
    }
}

fn put_durably(root: &Path, target: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(root);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(data)?;
        publish(file, &tmp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `.tmp/<writer pid>-<random>`: the pid tells a later `open` whether the
/// writer may still be running.
fn tmp_path(root: &Path) -> PathBuf {
    root.join(TMP_DIR).join(format!(
        "{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ))
}

/// A temporary file not modified for this long has no live writer: writes
/// append continuously, and a writer that did stall this long would only see
/// its rename fail (the write errors; nothing acked is lost).
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// Whether a temporary file is provably abandoned: its writer (named by the
/// pid in its name) is not running, or nothing touched it for
/// [`ABANDONED_AFTER`]. Files of this process are never abandoned (another
/// store in this process may be writing them); unknown names and unknown
/// ages count as live unless stale.
fn abandoned(entry: &fs::DirEntry) -> bool {
    let stale = entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= ABANDONED_AFTER);
    let writer = entry
        .file_name()
        .to_str()
        .and_then(|name| name.split_once('-'))
        .and_then(|(pid, _)| pid.parse::<u32>().ok());
    match writer {
        Some(pid) if pid == std::process::id() => false,
        Some(pid) => stale || !process_alive(pid),
        None => stale,
    }
}

/// Whether `pid` runs in this pid namespace; unknowable (no /proc) counts as
/// running.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Makes a fully written temporary file the object, durably: fsync the data,
/// rename it into place, fsync the directory.
fn publish(file: File, tmp: &Path, target: &Path) -> std::io::Result<()> {
    file.sync_all()?;
    let dir = target.parent().expect("object paths have a parent");
    fs::create_dir_all(dir)?;
    fs::rename(tmp, target)?;
    File::open(dir)?.sync_all()
}

/// A streamed write into a temporary file, renamed into place by `finish`.
struct LocalUpload {
    path: String,
    tmp: PathBuf,
    target: PathBuf,
    file: Option<File>,
}

#[async_trait]
impl Upload for LocalUpload {
    async fn write(&mut self, data: Bytes) -> StoreResult<()> {
        let mut file = self.file.take().ok_or_else(|| {
            StoreError::Unavailable(format!("upload of {:?} failed earlier", self.path))
        })?;
        let file = blocking(&self.path, move || file.write_all(&data).map(|()| file)).await?;
        self.file = Some(file);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> StoreResult<()> {
        let file = self.file.take().ok_or_else(|| {
            StoreError::Unavailable(format!("upload of {:?} failed earlier", self.path))
        })?;
        let (tmp, target) = (self.tmp.clone(), self.target.clone());
        let result = blocking(&self.path, move || publish(file, &tmp, &target)).await;
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }

    async fn abort(self: Box<Self>) {
        drop(self.file);
        let _ = fs::remove_file(&self.tmp);
    }
}

fn read_range(file: &Path, start: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let file = File::open(file)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, start)?;
    Ok(buf)
}

fn list_dir(root: &Path, prefix: &str) -> std::io::Result<Vec<ObjectMeta>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            let path = entry.path();
            let rel = path.strip_prefix(root).expect("under root");
            let rel = rel.to_string_lossy().into_owned();
            if rel == TMP_DIR {
                continue;
            }
            if meta.is_dir() {
                stack.push(path);
            } else if rel.starts_with(prefix) {
                out.push(ObjectMeta {
                    path: rel,
                    size: meta.len(),
                    last_modified: meta.modified()?,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, path: &str, data: Bytes) -> StoreResult<()> {
        let target = self.object_path(path)?;
        let root = self.root.clone();
        blocking(path, move || put_durably(&root, &target, &data)).await
    }

    async fn upload<'a>(&'a self, path: &str) -> StoreResult<BoxUpload<'a>> {
        let target = self.object_path(path)?;
        let tmp = tmp_path(&self.root);
        let created = tmp.clone();
        let file = blocking(path, move || File::create(&created)).await?;
        Ok(Box::new(LocalUpload {
            path: path.into(),
            tmp,
            target,
            file: Some(file),
        }))
    }

    async fn get(&self, path: &str) -> StoreResult<Bytes> {
        let file = self.object_path(path)?;
        blocking(path, move || fs::read(file))
            .await
            .map(Bytes::from)
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> StoreResult<Bytes> {
        let file = self.object_path(path)?;
        let size = blocking(path, {
            let file = file.clone();
            move || fs::metadata(file).map(|m| m.len())
        })
        .await?;
        if range.start > range.end || range.end > size {
            return Err(StoreError::BadRange {
                path: path.into(),
                start: range.start,
                end: range.end,
                size,
            });
        }
        let len = (range.end - range.start) as usize;
        blocking(path, move || read_range(&file, range.start, len))
            .await
            .map(Bytes::from)
    }

    async fn get_suffix(&self, path: &str, len: u64) -> StoreResult<(Bytes, u64)> {
        let file = self.object_path(path)?;
        blocking(path, move || {
            let size = fs::metadata(&file)?.len();
            let start = size.saturating_sub(len);
            Ok((read_range(&file, start, (size - start) as usize)?, size))
        })
        .await
        .map(|(data, size)| (Bytes::from(data), size))
    }

    async fn delete(&self, path: &str) -> StoreResult<()> {
        let file = self.object_path(path)?;
        blocking(path, move || match fs::remove_file(file) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            other => other,
        })
        .await
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let prefix_owned = prefix.to_string();
        blocking(prefix, move || list_dir(&root, &prefix_owned)).await
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_range_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store
            .put("wal/a.sst", Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        assert_eq!(store.get("wal/a.sst").await.unwrap(), "hello world");
        assert_eq!(store.get_range("wal/a.sst", 6..11).await.unwrap(), "world");
        let (tail, size) = store.get_suffix("wal/a.sst", 5).await.unwrap();
        assert_eq!((tail.as_ref(), size), (&b"world"[..], 11));
        assert!(matches!(
            store.get_range("wal/a.sst", 6..12).await,
            Err(StoreError::BadRange { .. })
        ));
        let listed = store.list("wal/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].path.as_str(), listed[0].size), ("wal/a.sst", 11));
        assert!(store.list("run/").await.unwrap().is_empty());
        store.delete("wal/a.sst").await.unwrap();
        store.delete("wal/a.sst").await.unwrap();
        assert!(matches!(
            store.get("wal/a.sst").await,
            Err(StoreError::NotFound { .. })
        ));
    }

    /// Opening a store removes only temporary files that are provably
    /// abandoned, never those another live writer is filling.
    #[tokio::test]
    async fn open_keeps_temp_files_of_live_writers() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalStore::open(dir.path()).unwrap();
        let mut upload = first.upload("run/streamed.sst").await.unwrap();
        upload.write(Bytes::from_static(b"part 1,")).await.unwrap();

        let tmp = dir.path().join(TMP_DIR);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let touch = |name: &str| {
            let path = tmp.join(name);
            File::create(&path).unwrap();
            path
        };
        let of_dead_writer = touch(&format!("{dead}-00000000000000aa"));
        let of_live_writer = touch("1-00000000000000bb"); // init runs
        let unknown_fresh = touch("00000000000000cc");
        let unknown_stale = touch("00000000000000dd");
        let stale_time = std::time::SystemTime::now() - ABANDONED_AFTER * 2;
        File::options()
            .write(true)
            .open(&unknown_stale)
            .unwrap()
            .set_modified(stale_time)
            .unwrap();

        // A second process (here: a second store) opens the same directory.
        let second = LocalStore::open(dir.path()).unwrap();
        assert!(
            !of_dead_writer.exists(),
            "a dead writer's file is abandoned"
        );
        assert!(!unknown_stale.exists(), "an hour-old file is abandoned");
        assert!(of_live_writer.exists(), "a live writer's file is kept");
        assert!(
            unknown_fresh.exists(),
            "a fresh file of unknown origin is kept"
        );

        // The first store's streamed upload and a plain put both complete.
        upload.write(Bytes::from_static(b"part 2")).await.unwrap();
        upload.finish().await.unwrap();
        assert_eq!(
            second.get("run/streamed.sst").await.unwrap(),
            "part 1,part 2"
        );
        first
            .put("wal/a.sst", Bytes::from_static(b"a"))
            .await
            .unwrap();
        assert_eq!(second.get("wal/a.sst").await.unwrap(), "a");
    }

    #[tokio::test]
    async fn rejects_escaping_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        for path in ["", "/etc/passwd", "../x", "a//b", ".tmp/x", "a/./b"] {
            let err = store.put(path, Bytes::new()).await.unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidPath { .. }),
                "{path}: {err}"
            );
        }
    }
}
