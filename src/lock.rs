//! Per-key file locks, so that two `pipeline` processes on one artifacts directory never build
//! the same node at once. The OS releases a lock when its process dies, so a lock left by a
//! killed run is simply taken over; the holder's pid is written in the file for messages.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot lock `{}`", path.display())]
pub struct LockError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{}", std::process::id())
}

/// The pid written by the current holder, if readable.
pub fn holder(path: &Path) -> Option<u32> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

/// Whether the locked `file` is still the one at `path` (`pipeline gc` may have removed the
/// lock file between our open and our lock; then the lock protects nothing and we retry).
fn still_linked(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Takes the lock at `path`, calling `on_wait(holder pid)` first if another process holds it.
pub fn acquire(path: &Path, on_wait: impl FnOnce(Option<u32>)) -> Result<KeyLock, LockError> {
    let err = |source| LockError {
        path: path.to_owned(),
        source,
    };
    let mut on_wait = Some(on_wait);
    loop {
        let mut file = open(path).map_err(err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                if let Some(f) = on_wait.take() {
                    f(holder(path));
                }
                file.lock().map_err(err)?;
            }
            Err(TryLockError::Error(e)) => return Err(err(e)),
        }
        if still_linked(&file, path) {
            write_pid(&mut file).map_err(err)?;
            return Ok(KeyLock {
                _file: file,
                path: path.to_owned(),
            });
        }
    }
}

/// Takes the lock at `path` only if it is free.
pub fn try_acquire(path: &Path) -> Result<Option<KeyLock>, LockError> {
    let err = |source| LockError {
        path: path.to_owned(),
        source,
    };
    loop {
        let file = open(path).map_err(err)?;
        match file.try_lock() {
            Ok(()) if still_linked(&file, path) => {
                return Ok(Some(KeyLock {
                    _file: file,
                    path: path.to_owned(),
                }));
            }
            Ok(()) => continue,
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/k.lock");
        let held = acquire(&path, |_| panic!("free")).unwrap();
        assert_eq!(holder(&path), Some(std::process::id()));
        assert!(try_acquire(&path).unwrap().is_none());
        drop(held);
        assert!(try_acquire(&path).unwrap().is_some());
    }
}
