//! Through a real mount: after a power loss only fsynced data is there.
//! Needs root and /dev/fuse (both present where the test suite runs).

use skyvault_lazyfs::Mount;
use std::io::Write;
use std::path::Path;

fn mount(dir: &Path) -> Mount {
    Mount::start(
        Path::new(env!("CARGO_BIN_EXE_skyvault-lazyfs")),
        &dir.join("backing"),
        &dir.join("mnt"),
    )
    .expect("mounting lazyfs (needs root and /dev/fuse)")
}

#[test]
fn a_power_loss_keeps_exactly_what_was_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let mut fs = mount(dir.path());
    let mnt = fs.mountpoint.clone();
    std::fs::create_dir(mnt.join("objects")).unwrap();

    // Durable: written, fsynced, renamed into place.
    let mut f = std::fs::File::create(mnt.join("objects/synced.tmp")).unwrap();
    f.write_all(b"durable bytes").unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::fs::rename(mnt.join("objects/synced.tmp"), mnt.join("objects/synced")).unwrap();
    // Not durable: the same without the fsync.
    let mut f = std::fs::File::create(mnt.join("objects/lazy.tmp")).unwrap();
    f.write_all(b"volatile bytes").unwrap();
    drop(f);
    std::fs::rename(mnt.join("objects/lazy.tmp"), mnt.join("objects/lazy")).unwrap();
    // An fsynced file extended without a second fsync.
    let mut f = std::fs::File::create(mnt.join("log")).unwrap();
    f.write_all(b"first;").unwrap();
    f.sync_data().unwrap();
    f.write_all(b"second;").unwrap();
    drop(f);
    // Before the crash every write is visible.
    assert_eq!(
        std::fs::read(mnt.join("objects/lazy")).unwrap(),
        b"volatile bytes"
    );
    assert_eq!(std::fs::read(mnt.join("log")).unwrap(), b"first;second;");

    fs.restart().unwrap();
    assert_eq!(
        std::fs::read(mnt.join("objects/synced")).unwrap(),
        b"durable bytes"
    );
    assert_eq!(
        std::fs::read(mnt.join("objects/lazy")).unwrap(),
        b"",
        "unsynced data survived a power loss"
    );
    assert_eq!(std::fs::read(mnt.join("log")).unwrap(), b"first;");
    fs.power_loss().unwrap();
    assert!(!skyvault_lazyfs::mount::is_mounted(&mnt).unwrap());
}
