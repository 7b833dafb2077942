//! Secrets at rest, as [`crate::Server::start`] prepares them before it serves: the data dir's
//! permissions, the key file that seals the store's secrets, and the tokens kept only as hashes.
//!
//! - The data dir is this user's alone: created 0700; an existing one that group or others may
//!   write to is refused (someone else could have changed its records); one they may only read
//!   (a data dir of an earlier build, 0755 with 0644 files) is tightened: the dir and the
//!   directories in it to 0700, its files to 0600. `crmhook serve` also sets the umask to 077,
//!   so the files sled creates later are 0600.
//! - The key file (`key_file`, default `<data_dir>.key`, beside the data dir, never in it) holds
//!   the key that seals targets' and sources' secrets (`crmhook_store::SealKey`). It is created
//!   0600 on the first start. A data dir whose secrets are sealed does not start without its
//!   key, or with another one.
//! - Tokens are kept in the store as `sha256:<hex>` (`M admin_token`, `M ingest_token`); a
//!   token an earlier build kept in clear is replaced by its hash at start-up. Requests are
//!   checked by hashing the token presented and comparing the hashes in constant time.

use std::path::{Path, PathBuf};

use crmhook_store::{SealKey, StoreError};
use sha2::{Digest, Sha256};

/// How a token is kept: this prefix, then the hex SHA-256 of the token.
const HASHED: &str = "sha256:";

/// Why the data dir or the key file cannot be used, in words for the operator.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) message: String,
    /// The disk had no room (ENOSPC, EDQUOT, EFBIG): freeing space is all the next try needs.
    pub(crate) no_room: bool,
}

impl Refused {
    fn new(message: String) -> Refused {
        Refused { message, no_room: false }
    }

    fn io(message: String, e: &std::io::Error) -> Refused {
        Refused { message, no_room: crmhook_store::no_room(e.kind()) }
    }
}

impl From<Refused> for crate::ServerError {
    fn from(r: Refused) -> Self {
        if r.no_room {
            crate::ServerError::NoRoom(r.message)
        } else {
            crate::ServerError::AtRest(r.message)
        }
    }
}

/// The SHA-256 of a token: what is kept, and what a presented token is compared by.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A token's hash as the store keeps it.
pub(crate) fn kept_form(hash: &[u8; 32]) -> String {
    format!("{HASHED}{}", hex::encode(hash))
}

/// What the store keeps under a token's name, read: `Ok(hash, true)` for a hash, `Ok(hash,
/// false)` for a token an earlier build kept in clear (to be replaced by its hash).
pub(crate) fn read_kept(name: &str, kept: &str) -> Result<([u8; 32], bool), StoreError> {
    match kept.strip_prefix(HASHED) {
        Some(h) => hex::decode(h)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .map(|hash| (hash, true))
            .ok_or_else(|| StoreError::Codec(format!("`M {name}` is not a SHA-256 in hex"))),
        None => Ok((token_hash(kept), false)),
    }
}

/// The default key file of a data dir: `<data_dir>.key`, beside it (`./data/db` →
/// `./data/db.key`). None for a data dir without a last component (`/`, `..`).
pub fn default_key_file(data_dir: &Path) -> Option<PathBuf> {
    let name = data_dir.file_name()?;
    if data_dir.ends_with("..") {
        return None;
    }
    let mut file = name.to_owned();
    file.push(".key");
    Some(data_dir.with_file_name(file))
}

/// Creates the data dir (0700), or checks an existing one: refused when group or others may
/// write to it, tightened when they may read it. Answers whether it existed.
pub(crate) fn prepare_data_dir(dir: &Path) -> Result<bool, Refused> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(Refused::new(format!("the data dir {} is not a directory", dir.display()))),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o022 != 0 {
                return Err(Refused::new(format!(
                    "the data dir {} is writable by its group or by others (mode {mode:04o}); crmhook keeps its \
                     records and secrets there and will not use it: check nobody changed it, then `chmod 700 {}` \
                     and start again",
                    dir.display(),
                    dir.display()
                )));
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Refused::io(format!("cannot create the data dir {}: {e}", dir.display()), &e))?;
            Ok(false)
        }
        Err(e) => Err(Refused::io(format!("cannot read the data dir {}: {e}", dir.display()), &e)),
    }
}

/// Takes group and other permissions away from `dir` (0700) and everything in it: directories
/// 0700, files 0600 (their owner's bits are left alone). Symbolic links are not followed.
/// Answers how many it changed.
pub(crate) fn tighten(dir: &Path) -> std::io::Result<usize> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir)?;
    let mut changed = 0;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        changed += 1;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            changed += tighten(&entry.path())?;
        } else if kind.is_file() {
            let mode = entry.metadata()?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode & 0o700))?;
                changed += 1;
            }
        }
    }
    Ok(changed)
}

/// The key in `path`; or, when there is no such file, a new key written there (0600, synced)
/// and `true`. A key file that could not be written whole is removed: the next start makes it
/// again (an empty one left by a full disk would be refused as "not a crmhook key").
pub(crate) fn load_or_create_key(path: &Path) -> Result<(SealKey, bool), Refused> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = SealKey::from_text(&text)
                .map_err(|e| Refused::new(format!("the key file {} is not a crmhook key: {e}", path.display())))?;
            tighten_key_file(path)?;
            Ok((key, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, text) = SealKey::generate().map_err(|e| Refused::new(e.to_string()))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Refused::io(format!("cannot create the key file {}: {e}", path.display()), &e))?;
            let mut write = || -> std::io::Result<()> {
                file.write_all(text.as_bytes())?;
                file.sync_all()?;
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::File::open(parent)?.sync_all()?;
                }
                Ok(())
            };
            write().map_err(|e| {
                let _ = std::fs::remove_file(path);
                Refused::io(format!("cannot create the key file {}: {e}", path.display()), &e)
            })?;
            Ok((key, true))
        }
        Err(e) => Err(Refused::io(format!("cannot read the key file {}: {e}", path.display()), &e)),
    }
}

/// An existing key file's mode, as for the data dir: refused when its group or others may write
/// to it (the key could have been replaced), tightened to 0600 when they may read it (since
/// 2026-12-07; before, a key file of any mode was used as it was).
fn tighten_key_file(path: &Path) -> Result<(), Refused> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Refused::io(format!("cannot read the key file {}: {e}", path.display()), &e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(Refused::new(format!(
            "the key file {} is writable by its group or by others (mode {mode:04o}); it opens the data dir's \
             secrets and crmhook will not use it: check nobody changed it, then `chmod 600 {}` and start again",
            path.display(),
            path.display()
        )));
    }
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Refused::io(format!("cannot make the key file {} 0600: {e}", path.display()), &e))?;
        tracing::warn!(key_file = %path.display(), "the key file was readable by its group or by others (mode {mode:04o}): it is 0600 now");
    }
    Ok(())
}

/// Refuses a key file inside the data dir: a copy or backup of the data dir would then hold the
/// key that opens its secrets, which is what keeping them apart is for (docs/SECURITY.md). Both
/// paths are compared as the file system resolves them (links, `..`), as far as they exist.
pub fn check_key_place(key_file: &Path, data_dir: &Path) -> Result<(), String> {
    if resolved(key_file).starts_with(resolved(data_dir)) {
        return Err(format!(
            "the key file {} is inside the data dir {}: a backup of the data dir would hold the key to its \
             secrets; keep it beside the data dir (the default is {})",
            key_file.display(),
            data_dir.display(),
            default_key_file(data_dir).map_or_else(|| "<data dir>.key".to_owned(), |p| p.display().to_string())
        ));
    }
    Ok(())
}

/// `path` with its longest existing ancestor resolved by the file system (absolute).
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut at = absolute.as_path();
    loop {
        if let Ok(real) = at.canonicalize() {
            return rest.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                at = parent;
            }
            _ => return absolute,
        }
    }
}

/// Checks, creating nothing, that `load_or_create_key` can use `path`: an existing file must
/// hold a key; a missing one needs its directory (where it would be created).
pub fn check_key_file(path: &Path) -> Result<(), String> {
    match std::fs::read_to_string(path) {
        Ok(text) => SealKey::from_text(&text)
            .map(drop)
            .map_err(|e| format!("the key file {} is not a crmhook key: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => {
                    Err(format!("cannot create the key file {}: {} is not a directory", path.display(), dir.display()))
                }
                Err(e) => Err(format!("cannot create the key file {}: {}: {e}", path.display(), dir.display())),
            }
        }
        Err(e) => Err(format!("cannot read the key file {}: {e}", path.display())),
    }
}

/// The message for a store that refused its key (`StoreError::Key` at open).
pub(crate) fn key_refused(data_dir: &Path, key_file: &Path, created: bool, why: &StoreError) -> String {
    if created {
        format!(
            "the data dir {} holds secrets sealed with a key, and its key file {} is missing: restore the key \
             file from your backup, or set `key_file` (CRMHOOK_KEY_FILE) to where it is (see docs/SECURITY.md)",
            data_dir.display(),
            key_file.display()
        )
    } else {
        format!(
            "the key file {} does not open the secrets sealed in the data dir {} ({why}): restore the data dir's \
             own key file from your backup (see docs/SECURITY.md)",
            key_file.display(),
            data_dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn the_key_file_sits_beside_the_data_dir() {
        assert_eq!(default_key_file(Path::new("./data/db")), Some(PathBuf::from("./data/db.key")));
        assert_eq!(default_key_file(Path::new("/var/lib/crmhook/db/")), Some(PathBuf::from("/var/lib/crmhook/db.key")));
        assert_eq!(default_key_file(Path::new("db")), Some(PathBuf::from("db.key")));
        assert_eq!(default_key_file(Path::new("/")), None);
        assert_eq!(default_key_file(Path::new("a/..")), None);
    }

    #[test]
    fn tokens_are_kept_as_hashes_and_clear_ones_are_recognised() {
        let hash = token_hash("adm_abc");
        let kept = kept_form(&hash);
        assert!(kept.starts_with("sha256:") && !kept.contains("adm_abc"), "{kept}");
        assert_eq!(read_kept("admin_token", &kept).expect("hash"), (hash, true));
        assert_eq!(read_kept("admin_token", "adm_abc").expect("clear"), (hash, false));
        assert!(read_kept("admin_token", "sha256:zz").is_err());
    }

    #[test]
    fn a_new_data_dir_is_0700_a_readable_one_is_tightened_a_writable_one_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let fresh = root.path().join("a/db");
        assert!(!prepare_data_dir(&fresh).expect("created"));
        assert_eq!(mode(&fresh), 0o700);

        let old = root.path().join("old");
        std::fs::create_dir_all(old.join("blobs")).expect("dirs");
        std::fs::write(old.join("db"), b"x").expect("file");
        for (p, m) in [(old.clone(), 0o755), (old.join("blobs"), 0o755), (old.join("db"), 0o644)] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).expect("chmod");
        }
        assert!(prepare_data_dir(&old).expect("readable is accepted"));
        assert_eq!(tighten(&old).expect("tighten"), 3);
        assert_eq!((mode(&old), mode(&old.join("blobs")), mode(&old.join("db"))), (0o700, 0o700, 0o600));
        assert_eq!(tighten(&old).expect("again"), 0);

        for m in [0o775, 0o757, 0o777] {
            std::fs::set_permissions(&old, std::fs::Permissions::from_mode(m)).expect("chmod");
            let e = prepare_data_dir(&old).expect_err("writable is refused").message;
            assert!(e.contains("writable by its group or by others") && e.contains("chmod 700"), "{e}");
        }
    }

    #[test]
    fn the_key_file_is_created_0600_then_read_back() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("db.key");
        let (_, created) = load_or_create_key(&path).expect("created");
        assert!(created);
        assert_eq!(mode(&path), 0o600);
        let (_, created) = load_or_create_key(&path).expect("read");
        assert!(!created);
        std::fs::write(&path, "not a key\n").expect("write");
        let e = load_or_create_key(&path).expect_err("refused").message;
        assert!(e.contains("is not a crmhook key"), "{e}");
    }

    #[test]
    fn a_key_file_is_checked_without_creating_anything() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("db.key");
        check_key_file(&path).expect("a new key file in an existing directory");
        assert!(!path.exists());
        let e = check_key_file(&root.path().join("none/db.key")).expect_err("no such directory");
        assert!(e.contains("cannot create the key file") && e.contains("none"), "{e}");
        assert!(!root.path().join("none").exists());
        load_or_create_key(&path).expect("created");
        check_key_file(&path).expect("a key");
        std::fs::write(&path, "not a key\n").expect("write");
        assert!(check_key_file(&path).expect_err("refused").contains("is not a crmhook key"));
    }
}
