//! `skyvault-lazyfs BACKING MOUNTPOINT`: serves BACKING at MOUNTPOINT, losing
//! every write not fsynced when killed (see the library's docs).

use fuser::{Config, MountOption};
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backing, mountpoint] = args.as_slice() else {
        eprintln!("usage: skyvault-lazyfs BACKING MOUNTPOINT");
        std::process::exit(2);
    };
    let backing = PathBuf::from(backing);
    if !backing.is_dir() {
        eprintln!("skyvault-lazyfs: backing directory {backing:?} does not exist");
        std::process::exit(2);
    }
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("lazyfs".into()),
        MountOption::Subtype("skyvault-lazyfs".into()),
        MountOption::RW,
    ];
    let fs = skyvault_lazyfs::LazyFs::new(backing);
    if let Err(e) = fuser::mount2(fs, mountpoint, &config) {
        eprintln!("skyvault-lazyfs: mounting at {mountpoint:?}: {e}");
        std::process::exit(1);
    }
}
