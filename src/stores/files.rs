//! How every file the module persists is written and watched.
//!
//! A reader (radiusd's OpenSSL, a restarted module, an operator's tool) must see either
//! the old file or the new one, complete: content goes to a hidden temp name in the same
//! directory, is fsynced, and is renamed over the final name. A watcher notices a new
//! version by its [`FileStamp`], whichever way it was replaced.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Temp files start with this, so a crash's leftovers are recognised and removed.
const TMP_PREFIX: &str = ".rlm_rust-tmp.";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether `file_name` is one of our temp files (left behind by a crash mid-write).
pub fn is_temp_name(file_name: &str) -> bool {
    file_name.starts_with(TMP_PREFIX)
}

/// Atomically replaces `path` with what `fill` writes: a temp file in the same directory
/// (created new, `mode` set explicitly whatever the umask), fsynced, renamed into place.
/// The temp file is removed on failure. The rename is made durable with [`sync_dir`].
pub fn replace_with(path: &Path, mode: u32, fill: impl FnOnce(&mut fs::File) -> io::Result<()>) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!("{TMP_PREFIX}{}.{}", std::process::id(), TMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        fill(&mut f)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes the renames in `dir` durable: a crash after a write was reported must not lose it.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all())
}

/// Identity of one version of a file: a rename (new inode) or a rewrite (size, mtime)
/// changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

impl FileStamp {
    /// The stamp of `path` now; None when it does not exist (or cannot be stat()ed).
    pub fn of(path: &Path) -> Option<FileStamp> {
        let m = fs::metadata(path).ok()?;
        Some(FileStamp { ino: m.ino(), len: m.len(), mtime: m.modified().ok() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replace_leaves_the_new_content_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "old").unwrap();
        let before = FileStamp::of(&path);
        replace_with(&path, 0o640, |f| io::Write::write_all(f, b"new content")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new content");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert_ne!(FileStamp::of(&path), before, "a replaced file has a new stamp");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left behind");
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file_and_removes_the_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "old").unwrap();
        let e = replace_with(&path, 0o644, |_| Err(io::Error::other("disk full"))).unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["f"]);
        assert!(is_temp_name(".rlm_rust-tmp.1.2") && !is_temp_name("f"));
    }
}
