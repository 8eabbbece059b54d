//! The filesystem's state: an inode table over a backing directory, and the
//! unsynced contents of files, held in this process's memory only.
//!
//! The model (what survives a power loss):
//! - File data reaches the backing directory only when the file is fsynced
//!   (`fsync` or `fdatasync`): a write, a truncate or an extension not yet
//!   fsynced lives here, and dies with the process.
//! - Namespace operations (create, mkdir, rename, unlink, rmdir) are applied
//!   to the backing directory at once: they survive, as on a journaling
//!   filesystem that commits metadata before data. So a file created and
//!   renamed without an fsync of its data survives empty or with old contents
//!   — the classic lost-fsync outcome, which the layer exists to expose.
//!   (Losing unsynced namespace changes too is not modelled.)

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const ROOT: u64 = 1;

pub struct Node {
    /// Relative to the backing directory; `None` once unlinked or replaced.
    pub path: Option<PathBuf>,
    pub is_dir: bool,
    /// Contents newer than the backing file's, not yet fsynced.
    dirty: Option<Dirty>,
}

struct Dirty {
    data: Vec<u8>,
    /// Lowest offset changed since the last fsync.
    from: usize,
}

pub struct State {
    backing: PathBuf,
    nodes: HashMap<u64, Node>,
    by_path: HashMap<PathBuf, u64>,
    next: u64,
    /// fsyncs that wrote data, for the exit report.
    pub syncs: u64,
}

impl State {
    pub fn new(backing: PathBuf) -> State {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                path: Some(PathBuf::new()),
                is_dir: true,
                dirty: None,
            },
        );
        let mut by_path = HashMap::new();
        by_path.insert(PathBuf::new(), ROOT);
        State {
            backing,
            nodes,
            by_path,
            next: ROOT + 1,
            syncs: 0,
        }
    }

    pub fn node(&self, ino: u64) -> io::Result<&Node> {
        self.nodes.get(&ino).ok_or_else(|| errno(libc::ENOENT))
    }

    /// The relative path of a linked inode.
    pub fn path(&self, ino: u64) -> io::Result<PathBuf> {
        self.node(ino)?
            .path
            .clone()
            .ok_or_else(|| errno(libc::ENOENT))
    }

    pub fn real(&self, rel: &Path) -> PathBuf {
        self.backing.join(rel)
    }

    /// The inode of `rel` (which exists in the backing directory), numbered
    /// on first sight.
    pub fn ino_of(&mut self, rel: &Path, is_dir: bool) -> u64 {
        if let Some(&ino) = self.by_path.get(rel) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(
            ino,
            Node {
                path: Some(rel.to_path_buf()),
                is_dir,
                dirty: None,
            },
        );
        self.by_path.insert(rel.to_path_buf(), ino);
        ino
    }

    /// The size a reader sees: the unsynced contents' if any.
    pub fn dirty_len(&self, ino: u64) -> Option<u64> {
        let dirty = self.nodes.get(&ino)?.dirty.as_ref()?;
        Some(dirty.data.len() as u64)
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let node = self.node(ino)?;
        if let Some(dirty) = &node.dirty {
            let start = (offset as usize).min(dirty.data.len());
            let end = start.saturating_add(size as usize).min(dirty.data.len());
            return Ok(dirty.data[start..end].to_vec());
        }
        let path = node.path.as_ref().ok_or_else(|| errno(libc::ENOENT))?;
        let file = File::open(self.real(path))?;
        let mut buf = vec![0; size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            let n = file.read_at(&mut buf[filled..], offset + filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// The node's unsynced contents, loaded from the backing file first.
    fn dirty(&mut self, ino: u64) -> io::Result<&mut Dirty> {
        let backing = self.backing.clone();
        let node = self
            .nodes
            .get_mut(&ino)
            .ok_or_else(|| errno(libc::ENOENT))?;
        if node.dirty.is_none() {
            let path = node.path.as_ref().ok_or_else(|| errno(libc::ENOENT))?;
            let data = std::fs::read(backing.join(path))?;
            let from = data.len();
            node.dirty = Some(Dirty { data, from });
        }
        Ok(node.dirty.as_mut().expect("just loaded"))
    }

    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> io::Result<()> {
        let dirty = self.dirty(ino)?;
        let start = offset as usize;
        let end = start + data.len();
        if dirty.data.len() < end {
            dirty.from = dirty.from.min(dirty.data.len());
            dirty.data.resize(end, 0);
        }
        dirty.data[start..end].copy_from_slice(data);
        dirty.from = dirty.from.min(start);
        Ok(())
    }

    pub fn truncate(&mut self, ino: u64, size: u64) -> io::Result<()> {
        let dirty = self.dirty(ino)?;
        let size = size as usize;
        dirty.from = dirty.from.min(size).min(dirty.data.len());
        dirty.data.resize(size, 0);
        Ok(())
    }

    /// fsync: the unsynced contents reach the backing file and its disk.
    pub fn sync(&mut self, ino: u64) -> io::Result<()> {
        let backing = self.backing.clone();
        let node = self
            .nodes
            .get_mut(&ino)
            .ok_or_else(|| errno(libc::ENOENT))?;
        let (Some(dirty), Some(path)) = (&node.dirty, &node.path) else {
            return Ok(());
        };
        let file = OpenOptions::new().write(true).open(backing.join(path))?;
        file.write_all_at(&dirty.data[dirty.from..], dirty.from as u64)?;
        file.set_len(dirty.data.len() as u64)?;
        file.sync_all()?;
        node.dirty = None;
        self.syncs += 1;
        Ok(())
    }

    /// Removes `rel` from the table (unlink, rmdir, or a rename's victim):
    /// its unsynced contents go with it.
    pub fn unlinked(&mut self, rel: &Path) {
        if let Some(ino) = self.by_path.remove(rel)
            && let Some(node) = self.nodes.get_mut(&ino)
        {
            node.path = None;
            node.dirty = None;
        }
    }

    /// Moves `from` (and, for a directory, everything below it) to `to`.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        self.unlinked(to);
        let moved: Vec<(PathBuf, u64)> = self
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, &ino)| (p.clone(), ino))
            .collect();
        for (old, ino) in moved {
            self.by_path.remove(&old);
            let rest = old.strip_prefix(from).expect("filtered on prefix");
            // (joining an empty rest would add a trailing slash)
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.path = Some(new.clone());
            }
            self.by_path.insert(new, ino);
        }
    }
}

pub fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fsynced_data_reaches_the_backing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"old contents").unwrap();
        let mut state = State::new(dir.path().to_path_buf());
        let ino = state.ino_of(Path::new("f"), false);
        state.write(ino, 0, b"NEW").unwrap();
        state.write(ino, 12, b"+tail").unwrap();
        assert_eq!(state.read(ino, 0, 100).unwrap(), b"NEW contents+tail");
        assert_eq!(
            std::fs::read(dir.path().join("f")).unwrap(),
            b"old contents"
        );
        state.sync(ino).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("f")).unwrap(),
            b"NEW contents+tail"
        );
        state.truncate(ino, 3).unwrap();
        state.write(ino, 5, b"x").unwrap();
        assert_eq!(state.read(ino, 0, 100).unwrap(), b"NEW\0\0x");
        assert_eq!(state.dirty_len(ino), Some(6));
        state.sync(ino).unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"NEW\0\0x");
        assert_eq!(state.dirty_len(ino), None);
    }

    #[test]
    fn renames_carry_unsynced_contents_and_unlinks_drop_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/tmp"), b"").unwrap();
        let mut state = State::new(dir.path().to_path_buf());
        let d = state.ino_of(Path::new("d"), true);
        let tmp = state.ino_of(Path::new("d/tmp"), false);
        state.write(tmp, 0, b"data").unwrap();
        std::fs::rename(dir.path().join("d"), dir.path().join("e")).unwrap();
        state.renamed(Path::new("d"), Path::new("e"));
        assert_eq!(state.path(d).unwrap(), Path::new("e"));
        assert_eq!(state.path(tmp).unwrap().as_os_str(), "e/tmp");
        state.renamed(Path::new("e/tmp"), Path::new("e/final"));
        std::fs::rename(dir.path().join("e/tmp"), dir.path().join("e/final")).unwrap();
        assert_eq!(state.path(tmp).unwrap().as_os_str(), "e/final");
        state.sync(tmp).unwrap();
        assert_eq!(std::fs::read(dir.path().join("e/final")).unwrap(), b"data");
        state.write(tmp, 0, b"more").unwrap();
        state.unlinked(Path::new("e/final"));
        assert!(state.path(tmp).is_err());
        assert_eq!(state.dirty_len(tmp), None);
    }
}
