//! Running the filesystem as its own process, for tests and the chaos
//! campaign: mount, power loss (kill -9 + detach), mount again.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `skyvault-lazyfs` process serving `backing` at `mountpoint`.
pub struct Mount {
    binary: PathBuf,
    pub backing: PathBuf,
    pub mountpoint: PathBuf,
    child: Option<Child>,
}

impl Mount {
    /// Starts the binary at `binary` and waits until the mount is live.
    pub fn start(binary: &Path, backing: &Path, mountpoint: &Path) -> io::Result<Mount> {
        std::fs::create_dir_all(backing)?;
        std::fs::create_dir_all(mountpoint)?;
        let mut mount = Mount {
            binary: binary.to_path_buf(),
            backing: backing.canonicalize()?,
            mountpoint: mountpoint.canonicalize()?,
            child: None,
        };
        mount.spawn()?;
        Ok(mount)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg(&self.backing)
            .arg(&self.mountpoint)
            .stdin(Stdio::null());
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child
        // before exec. The filesystem dies with the thread that started it
        // (a test's runtime thread), so a killed test leaves no mount served.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(&self.mountpoint)? {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "skyvault-lazyfs exited before mounting {}: {status}",
                    self.mountpoint.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "{} not mounted after 20 s",
                    self.mountpoint.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Power loss: the filesystem process dies at once (losing every unsynced
    /// write) and the mount is detached, dropping the kernel's caches of it.
    /// Processes using the mount must be dead already (or they see errors).
    pub fn power_loss(&mut self) -> io::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        detach(&self.mountpoint)
    }

    /// Mounts `backing` again after a power loss: the machine rebooted.
    pub fn restart(&mut self) -> io::Result<()> {
        self.power_loss()?;
        self.spawn()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.power_loss();
    }
}

/// Whether `path` is a mount point of a FUSE filesystem right now.
pub fn is_mounted(path: &Path) -> io::Result<bool> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let wanted = path.to_string_lossy();
    Ok(mounts.lines().any(|line| {
        let mut fields = line.split(' ');
        let point = fields.nth(4).unwrap_or_default();
        point == wanted && line.contains(" - fuse")
    }))
}

/// Lazily unmounts `path` (umount2 MNT_DETACH) if it is mounted.
fn detach(path: &Path) -> io::Result<()> {
    while is_mounted(path)? {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(io::Error::other)?;
        // SAFETY: a valid NUL-terminated path; umount2 has no other preconditions.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
