//! The data dir's lock of a serving process: `<data dir>/crmhook.lock`, an exclusive `flock`
//! held for the life of the process, with its pid written in. It is taken before the port is
//! bound: a second `crmhook serve` on the same data dir exits at once (status 2), saying which
//! process holds it, and never holds the port meanwhile. sled's own lock (on its `db` file)
//! stays what protects the store; this one only makes a second server fail first and plainly.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use rustix::fs::FlockOperation;

/// The lock's file name in the data dir.
pub(crate) const LOCK_FILE: &str = "crmhook.lock";

/// Held while the process serves; the kernel lets go of it when the process ends, however.
pub(crate) struct DirLock {
    _file: Option<File>,
}

/// Takes the data dir's lock. Another process holding it is an error that names it; anything
/// else that keeps the lock from being taken (a disk with no room for the data dir, a
/// read-only one) is logged and the start goes on without it, as before this lock existed.
pub(crate) fn lock(dir: &Path) -> anyhow::Result<DirLock> {
    let mut file = match open(dir) {
        Ok(file) => file,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the data dir's lock file; starting without it");
            return Ok(DirLock { _file: None });
        }
    };
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            // Best effort: the pid is only what the next one says.
            let _ = file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id())).and_then(|()| file.flush());
            Ok(DirLock { _file: Some(file) })
        }
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut pid = String::new();
            let _ = file.rewind().and_then(|()| file.read_to_string(&mut pid));
            let holder = match pid.trim().parse::<u32>() {
                Ok(pid) => format!("process {pid} holds {}", dir.join(LOCK_FILE).display()),
                Err(_) => format!("a process holds {}", dir.join(LOCK_FILE).display()),
            };
            anyhow::bail!(
                "cannot open the data dir {}: {} ({holder}); stop it first",
                dir.display(),
                crmhook_store::StoreError::InUse
            )
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot lock the data dir's lock file; starting without it");
            Ok(DirLock { _file: None })
        }
    }
}

fn open(dir: &Path) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(LOCK_FILE))
}
