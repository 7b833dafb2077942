//! The data dir's lock of a serving process: `<data dir>/crmhook.lock`, an exclusive `flock`
//! held for the life of the process, with its pid written in. It is taken before the port is
//! bound: a second `crmhook serve` on the same data dir exits at once (status 2), saying which
//! process holds it, and never holds the port meanwhile. sled's own lock (on its `db` file)
//! stays what protects the store; this one only makes a second server fail first and plainly.
//! A start that fails after it took the lock takes back what the lock made: the lock file and
//! the directories made for it, when they are still empty (docs/CONFIGURATION.md: a refused
//! start leaves nothing half-made).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;

/// The lock's file name in the data dir.
pub(crate) const LOCK_FILE: &str = "crmhook.lock";

/// Held while the process serves; the kernel lets go of it when the process ends, however.
pub(crate) struct DirLock {
    file: Option<File>,
    /// What taking the lock made: the directories (outermost first) and the lock file.
    made_dirs: Vec<PathBuf>,
    made_file: Option<PathBuf>,
}

impl DirLock {
    /// The start failed: removes the lock file and the directories taking the lock made, if
    /// nothing else was put in them meanwhile. The file is unlinked while still locked, so no
    /// other process can take it in between.
    pub(crate) fn take_back(mut self) {
        if let Some(path) = self.made_file.take() {
            let _ = std::fs::remove_file(path);
        }
        self.file = None;
        for dir in self.made_dirs.iter().rev() {
            // Fails, as it should, on a directory that is not empty.
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
}

/// Takes the data dir's lock. Another process holding it is an error that names it, as is a
/// data dir that cannot be made or written (a read-only one, a path through a file); a disk
/// with no room for the lock file is logged and the start goes on without it (the stand-in
/// then answers 503 until there is room, docs/RELIABILITY.md).
pub(crate) fn lock(dir: &Path) -> anyhow::Result<DirLock> {
    let made_dirs = missing_dirs(dir);
    let existed = dir.join(LOCK_FILE).exists();
    let mut file = match open(dir) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            tracing::warn!(dir = %dir.display(), error = %e, "no room for the data dir's lock file; starting without it");
            return Ok(DirLock { file: None, made_dirs: Vec::new(), made_file: None });
        }
        Err(e) => {
            // Nothing this start made is left behind.
            DirLock { file: None, made_dirs, made_file: None }.take_back();
            anyhow::bail!("cannot use the data dir {}: {e}", dir.display());
        }
    };
    let made_file = (!existed).then(|| dir.join(LOCK_FILE));
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {
            // Best effort: the pid is only what the next one says.
            let _ = file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id())).and_then(|()| file.flush());
            Ok(DirLock { file: Some(file), made_dirs, made_file })
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
            Ok(DirLock { file: Some(file), made_dirs, made_file })
        }
    }
}

/// The directories of `dir` (itself included) that do not exist yet, outermost first.
fn missing_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> =
        dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).map(Path::to_path_buf).collect();
    missing.reverse();
    missing
}

fn open(dir: &Path) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(LOCK_FILE))
}
