//! A FUSE filesystem for crash tests that loses everything not fsynced when
//! its process dies, in the spirit of Jepsen's LazyFS.
//!
//! `skyvault-lazyfs BACKING MOUNTPOINT` serves BACKING at MOUNTPOINT. File
//! data written through the mount stays in the process's memory until the
//! file is fsynced; only then does it reach BACKING (see [`state`] for the
//! exact model). A power loss is `kill -9` of this process: whatever was not
//! fsynced is gone, the kernel's caches of the mount go with the mount
//! ([`Mount::power_loss`] detaches it), and a new process over the same
//! BACKING shows exactly what was durable.

pub mod fs;
pub mod mount;
pub mod state;

pub use fs::LazyFs;
pub use mount::Mount;
