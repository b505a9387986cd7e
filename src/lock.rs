//! Per-key locks, so that two `pipeline` processes on one artifacts directory never build the
//! same node at once, also from different hosts on a shared (possibly NFS) file system.
//!
//! A key's lock is two locks, taken in turn:
//! - a `flock` on `locks/<key>.lock`: exact on one host, released by the OS when its process
//!   dies, and it queues the processes of a host. Across NFS clients it may silently lock
//!   nothing (`nolock`, `local_lock=`, a server without a lock manager), so it is not trusted
//!   there;
//! - a lease, `leases/<key>.lease`: a file made with `link(2)`, which is atomic also on NFS,
//!   that names its holder (host, pid, Slurm job) and whose mtime is a heartbeat, refreshed by a
//!   thread while the lock is held. A lease is stale when its heartbeat is older than
//!   `PIPELINE_LOCK_STALE_SECONDS` (60 by default; the hosts' clocks must agree well within it),
//!   or when its holder was a process of this host that has ended; a stale lease is broken and
//!   taken over.
//!
//! Leases have their own directory because `pipeline gc` takes every file of `locks/` for a
//! lock (and removes those it can take).

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct KeyLock {
    // Dropped in this order: the heartbeat stops, the lease goes, then the flock.
    _heartbeat: Heartbeat,
    _lease: Lease,
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

/// Who holds a key's lock, as its lease says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// `SLURM_JOB_ID` of the holder, when it runs in a Slurm job.
    pub job: Option<String>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} on {}", self.pid, self.host)?;
        if let Some(job) = &self.job {
            write!(f, " (Slurm job {job})")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Options {
    /// A lease whose heartbeat is older is stale.
    stale: Duration,
    heartbeat: Duration,
    /// How often a waiter looks at a held lease again.
    poll: Duration,
    /// Off in tests only, to play hosts whose flocks do not see each other.
    flock: bool,
}

impl Options {
    fn from_env() -> Options {
        let stale = std::env::var("PIPELINE_LOCK_STALE_SECONDS")
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s.trim().parse().ok()?).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(60));
        let heartbeat = stale / 12;
        Options {
            stale,
            heartbeat,
            poll: heartbeat.min(Duration::from_millis(500)),
            flock: true,
        }
    }
}

/// This process as leases name it.
struct Me {
    host: String,
    /// Where our pids mean something: one boot of one kernel and one pid namespace (a host name
    /// alone may be shared, by containers for one); `None` where `/proc` does not tell.
    space: Option<String>,
}

fn me() -> &'static Me {
    static ME: OnceLock<Me> = OnceLock::new();
    ME.get_or_init(|| {
        let host = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok();
        let ns = fs::read_link("/proc/self/ns/pid").ok();
        let space = boot
            .zip(ns)
            .map(|(boot, ns)| format!("{}/{}", boot.trim(), ns.display()));
        Me { host, space }
    })
}

/// Whether process `pid` of our pid namespace still runs (a zombie does not).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) state …`, where comm may hold anything, parentheses too.
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].trim_start().chars().next());
            !matches!(state, Some('Z' | 'X'))
        }
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

type FileId = (u64, u64);

fn file_id(meta: &fs::Metadata) -> FileId {
    (meta.dev(), meta.ino())
}

fn append(path: &Path, tail: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(tail);
    s.into()
}

/// `path` with a suffix that no other process (on any host) or call uses.
pub(crate) fn unique(path: &Path) -> PathBuf {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let host: String = me()
        .host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let random = RandomState::new().hash_one(n);
    append(
        path,
        &format!(".{host}.{}.{n}.{random:016x}", std::process::id()),
    )
}

/// `locks/<key>.lock` → `leases/<key>.lease`.
fn lease_path(lock: &Path) -> PathBuf {
    let dir = lock.parent().unwrap_or(Path::new(""));
    let mut name = lock.file_stem().unwrap_or_default().to_owned();
    name.push(".lease");
    dir.parent().unwrap_or(dir).join("leases").join(name)
}

/// The content of a lease file.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    holder: Holder,
    /// Where `holder.pid` can be checked (see `Me::space`).
    space: Option<String>,
    /// File name of the holder's own link to the lease (`Lease::temp`), removed with a stale lease.
    temp: String,
}

/// A lease that we created; removed when dropped.
#[derive(Debug)]
struct Lease {
    path: PathBuf,
    /// Our own link to the lease, made first: what the heartbeat touches.
    temp: PathBuf,
    id: FileId,
}

impl Lease {
    /// Creates the lease at `path`, or `None` if one exists.
    fn create(path: &Path) -> io::Result<Option<Lease>> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let temp = unique(path);
        let record = Record {
            holder: Holder {
                host: me().host.clone(),
                pid: std::process::id(),
                job: std::env::var("SLURM_JOB_ID").ok(),
            },
            space: me().space.clone(),
            temp: temp
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        };
        let id = write_new(&temp, &record).inspect_err(|_| {
            let _ = fs::remove_file(&temp);
        })?;
        match fs::hard_link(&temp, path) {
            Ok(()) => {}
            // On NFS, a retransmitted `link` whose first reply was lost fails although the link
            // was made: the link count tells.
            Err(_) if fs::metadata(&temp).is_ok_and(|m| m.nlink() == 2) => {}
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return match e.kind() {
                    io::ErrorKind::AlreadyExists => Ok(None),
                    _ => Err(e),
                };
            }
        }
        Ok(Some(Lease {
            path: path.to_owned(),
            temp,
            id,
        }))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Err(e) = remove_if(&self.path, self.id) {
            tracing::warn!("cannot remove the lease `{}`: {e}", self.path.display());
        }
        let _ = fs::remove_file(&self.temp);
    }
}

/// Writes `record` to the new file `path`, closed on return (on NFS, its content reaches the
/// server before a link makes it visible).
fn write_new(path: &Path, record: &Record) -> io::Result<FileId> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(&serde_json::to_vec(record)?)?;
    // Every heartbeat comes from the holder's clock, this first one too (not the file server's).
    file.set_modified(SystemTime::now())?;
    Ok(file_id(&file.metadata()?))
}

/// Removes `path` if it is the file `id`. Checking, then unlinking, could remove a lease made
/// between the two; renaming first makes the file examined the one removed, and one that is not
/// `id` (a fresh lease) is put back.
fn remove_if(path: &Path, id: FileId) -> io::Result<bool> {
    let aside = unique(path);
    match fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    let same = fs::metadata(&aside).is_ok_and(|m| file_id(&m) == id);
    if !same && let Err(e) = fs::hard_link(&aside, path) {
        tracing::warn!("cannot put back the lease `{}`: {e}", path.display());
    }
    fs::remove_file(&aside)?;
    Ok(same)
}

/// A lease file as a contender sees it.
struct Seen {
    id: FileId,
    age: Duration,
    /// `None` if unreadable: then the heartbeat alone judges it.
    record: Option<Record>,
}

fn read(path: &Path) -> Option<Seen> {
    // Opening it (rather than `stat`) revalidates cached NFS attributes: the heartbeat is current.
    let mut file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let mut text = String::new();
    let record = file
        .read_to_string(&mut text)
        .ok()
        .and_then(|_| serde_json::from_str(&text).ok());
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    Some(Seen {
        id: file_id(&meta),
        age,
        record,
    })
}

impl Seen {
    /// Whether its holder is gone: silent for too long, or a process of ours that has ended.
    fn stale(&self, options: &Options) -> bool {
        self.age > options.stale
            || self.record.as_ref().is_some_and(|r| {
                r.space.is_some()
                    && r.space == me().space
                    && r.holder.host == me().host
                    && !alive(r.holder.pid)
            })
    }

    /// Removes this stale lease, at `path`, and its holder's own link.
    fn discard(&self, path: &Path) -> io::Result<()> {
        let prefix = format!(
            "{}.",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        if remove_if(path, self.id)?
            && let Some(r) = &self.record
            && r.temp.starts_with(&prefix)
            && !r.temp.contains('/')
            && let Some(dir) = path.parent()
        {
            let _ = fs::remove_file(dir.join(&r.temp));
        }
        Ok(())
    }
}

/// Breaks the lease at `path` if it is stale. Breakers take turns through a second lease,
/// `<path>.break`: two that saw the same stale lease would otherwise both break it, the second
/// one the fresh lease of the first.
fn break_stale(path: &Path, options: &Options) -> io::Result<()> {
    let turn = append(path, ".break");
    let Some(_turn) = Lease::create(&turn)? else {
        // Another process is breaking it, which takes milliseconds; one that died meanwhile
        // left its turn, which goes stale like a lease.
        if let Some(seen) = read(&turn)
            && seen.stale(options)
        {
            seen.discard(&turn)?;
        }
        return Ok(());
    };
    if let Some(seen) = read(path)
        && seen.stale(options)
    {
        seen.discard(path)?;
    }
    Ok(())
}

/// Takes the lease at `path`, breaking a stale one; otherwise says who holds it.
fn take_lease(path: &Path, options: &Options) -> io::Result<Result<Lease, Option<Holder>>> {
    // Twice: again once a stale lease is broken, or if it went as we looked.
    for _ in 0..2 {
        if let Some(lease) = Lease::create(path)? {
            return Ok(Ok(lease));
        }
        match read(path) {
            None => {}
            Some(seen) if seen.stale(options) => break_stale(path, options)?,
            Some(seen) => return Ok(Err(seen.record.map(|r| r.holder))),
        }
    }
    Ok(Err(None))
}

/// Refreshes a lease's heartbeat (its mtime) until dropped.
#[derive(Debug)]
struct Heartbeat {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    fn start(lease: &Lease, every: Duration) -> io::Result<Heartbeat> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (flag, temp, path, id) = (
            stop.clone(),
            lease.temp.clone(),
            lease.path.clone(),
            lease.id,
        );
        let thread = std::thread::Builder::new()
            .name("lock heartbeat".to_owned())
            .spawn(move || {
                let (stopped, wake) = &*flag;
                let mut stopped = stopped.lock().unwrap_or_else(PoisonError::into_inner);
                let mut warned = false;
                loop {
                    stopped = wake
                        .wait_timeout_while(stopped, every, |s| !*s)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                    if *stopped {
                        return;
                    }
                    let beat = File::open(&temp).and_then(|f| f.set_modified(SystemTime::now()));
                    let ours = fs::metadata(&path).is_ok_and(|m| file_id(&m) == id);
                    if (beat.is_err() || !ours) && !warned {
                        warned = true;
                        tracing::warn!(
                            "lost the lease `{}` (was this process stopped, or the file system \
                             away?): another process may build the same node",
                            path.display()
                        );
                    }
                }
            })?;
        Ok(Heartbeat {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
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

/// The holder of the lock at `path`, as its lease names it.
pub fn holder_info(path: &Path) -> Option<Holder> {
    read(&lease_path(path))?.record.map(|r| r.holder)
}

/// Whether the locked `file` is still the one at `path` (`pipeline gc` may have removed the
/// lock file between our open and our lock; then the lock protects nothing and we retry).
fn still_linked(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

impl KeyLock {
    fn new(file: File, lease: Lease, path: &Path, options: &Options) -> io::Result<KeyLock> {
        Ok(KeyLock {
            _heartbeat: Heartbeat::start(&lease, options.heartbeat)?,
            _lease: lease,
            _file: file,
            path: path.to_owned(),
        })
    }
}

/// Takes the lock at `path`, calling `on_wait(holder)` first if another process holds it.
pub fn acquire(path: &Path, on_wait: impl FnOnce(Option<Holder>)) -> Result<KeyLock, LockError> {
    acquire_with(path, &Options::from_env(), on_wait)
}

fn acquire_with(
    path: &Path,
    options: &Options,
    on_wait: impl FnOnce(Option<Holder>),
) -> Result<KeyLock, LockError> {
    let err = |source| LockError {
        path: path.to_owned(),
        source,
    };
    let lease_path = lease_path(path);
    let mut on_wait = Some(on_wait);
    let mut wait = |holder| {
        if let Some(f) = on_wait.take() {
            f(holder);
        }
    };
    loop {
        let file = open(path).map_err(err)?;
        if options.flock {
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    wait(holder_info(path));
                    file.lock().map_err(err)?;
                }
                Err(TryLockError::Error(e)) => return Err(err(e)),
            }
        }
        // Holding the flock meanwhile: the other waiters of this host queue on it.
        let lease = loop {
            match take_lease(&lease_path, options).map_err(err)? {
                Ok(lease) => break lease,
                Err(other) => {
                    wait(other);
                    std::thread::sleep(options.poll);
                }
            }
        };
        if still_linked(&file, path) {
            return KeyLock::new(file, lease, path, options).map_err(err);
        }
    }
}

/// Takes the lock at `path` only if it is free.
pub fn try_acquire(path: &Path) -> Result<Option<KeyLock>, LockError> {
    try_acquire_with(path, &Options::from_env())
}

fn try_acquire_with(path: &Path, options: &Options) -> Result<Option<KeyLock>, LockError> {
    let err = |source| LockError {
        path: path.to_owned(),
        source,
    };
    let lease_path = lease_path(path);
    loop {
        let file = open(path).map_err(err)?;
        if options.flock {
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Ok(None),
                Err(TryLockError::Error(e)) => return Err(err(e)),
            }
        }
        let Ok(lease) = take_lease(&lease_path, options).map_err(err)? else {
            return Ok(None);
        };
        if still_linked(&file, path) {
            return KeyLock::new(file, lease, path, options)
                .map(Some)
                .map_err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    fn holder_pid(path: &Path) -> Option<u32> {
        holder_info(path).map(|h| h.pid)
    }

    fn fast(flock: bool) -> Options {
        Options {
            stale: Duration::from_secs(30),
            heartbeat: Duration::from_millis(20),
            poll: Duration::from_millis(5),
            flock,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn age(path: &Path, by: Duration) {
        let file = File::open(path).unwrap();
        file.set_modified(SystemTime::now() - by).unwrap();
    }

    /// Leaves the lease of `holder` for the lock at `lock`, as a holder that vanished would.
    fn plant(lock: &Path, holder: Holder, space: Option<String>) -> Record {
        let lease = lease_path(lock);
        fs::create_dir_all(lease.parent().unwrap()).unwrap();
        let temp = append(&lease, ".planted");
        let record = Record {
            holder,
            space,
            temp: temp.file_name().unwrap().to_string_lossy().into_owned(),
        };
        write_new(&temp, &record).unwrap();
        fs::hard_link(&temp, &lease).unwrap();
        record
    }

    #[test]
    fn second_holder_is_refused_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/k.lock");
        let held = acquire(&path, |_| panic!("free")).unwrap();
        assert_eq!(holder_pid(&path), Some(std::process::id()));
        assert!(try_acquire(&path).unwrap().is_none());
        drop(held);
        assert!(try_acquire(&path).unwrap().is_some());
    }

    #[test]
    fn leases_exclude_where_flock_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/k.lock");
        let options = fast(false);
        let inside = AtomicBool::new(false);
        let waits = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..10 {
                        let _held = acquire_with(&path, &options, |pid| {
                            assert!(pid.is_none_or(|h| h.pid == std::process::id()));
                            waits.fetch_add(1, Ordering::Relaxed);
                        })
                        .unwrap();
                        assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                        assert!(try_acquire_with(&path, &options).unwrap().is_none());
                        std::thread::sleep(Duration::from_millis(2));
                        inside.store(false, Ordering::SeqCst);
                    }
                });
            }
        });
        assert!(waits.load(Ordering::Relaxed) > 0);
        assert!(names(&dir.path().join("leases")).is_empty());
    }

    #[test]
    fn a_silent_lease_of_another_host_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/k.lock");
        let elsewhere = Holder {
            host: "elsewhere".to_owned(),
            pid: 1,
            job: Some("42".to_owned()),
        };
        let record = plant(&path, elsewhere, Some("another boot".to_owned()));
        assert_eq!(
            holder_info(&path).unwrap().to_string(),
            "pid 1 on elsewhere (Slurm job 42)"
        );
        assert!(
            try_acquire_with(&path, &fast(true)).unwrap().is_none(),
            "a live lease is respected"
        );
        age(&lease_path(&path), Duration::from_secs(31));
        let held = acquire_with(&path, &fast(true), |_| panic!("stale")).unwrap();
        assert_eq!(holder_pid(&path), Some(std::process::id()));
        let leases = dir.path().join("leases");
        assert!(!leases.join(&record.temp).exists(), "its own link goes too");
        drop(held);
        assert!(names(&leases).is_empty());
    }

    #[test]
    fn a_lease_of_an_ended_process_of_this_host_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let ended = child.id();
        child.wait().unwrap();
        assert!(alive(std::process::id()) && !alive(ended));
        let local = |pid| Holder {
            host: me().host.clone(),
            pid,
            job: None,
        };
        let live = dir.path().join("locks/live.lock");
        plant(&live, local(std::process::id()), me().space.clone());
        assert!(try_acquire_with(&live, &fast(true)).unwrap().is_none());
        let dead = dir.path().join("locks/dead.lock");
        plant(&dead, local(ended), me().space.clone());
        let held = try_acquire_with(&dead, &fast(true)).unwrap();
        assert!(held.is_some(), "the lease of pid {ended} is broken");
        assert_eq!(holder_pid(&dead), Some(std::process::id()));
    }

    #[test]
    fn the_lease_goes_with_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/k.lock");
        let leases = dir.path().join("leases");
        let held = acquire_with(&path, &fast(true), |_| panic!("free")).unwrap();
        let [lease, temp] = &names(&leases)[..] else {
            panic!("{:?}", names(&leases))
        };
        assert_eq!(lease, "k.lease");
        assert!(temp.starts_with("k.lease."), "{temp}");
        drop(held);
        assert!(names(&leases).is_empty());
        assert!(path.exists(), "the lock file stays (gc removes it)");
    }

    #[test]
    fn the_heartbeat_refreshes_a_held_lease() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/k.lock");
        let _held = acquire_with(&path, &fast(true), |_| panic!("free")).unwrap();
        let lease = lease_path(&path);
        age(&lease, Duration::from_secs(3600));
        assert!(read(&lease).unwrap().age > Duration::from_secs(3000));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while read(&lease).unwrap().age > Duration::from_secs(60) {
            assert!(std::time::Instant::now() < deadline, "no heartbeat");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_breaker_puts_back_a_lease_that_is_not_the_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let (lease, other) = (dir.path().join("k.lease"), dir.path().join("other"));
        fs::write(&lease, "fresh").unwrap();
        fs::write(&other, "").unwrap();
        let id = |p: &Path| file_id(&fs::metadata(p).unwrap());
        let fresh = id(&lease);
        assert!(!remove_if(&lease, id(&other)).unwrap());
        assert_eq!(id(&lease), fresh);
        assert_eq!(names(dir.path()), ["k.lease", "other"]);
        assert!(remove_if(&lease, fresh).unwrap());
        assert_eq!(names(dir.path()), ["other"]);
    }

    #[test]
    fn the_turn_of_a_breaker_that_died_goes_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/k.lock");
        let gone = Holder {
            host: "elsewhere".to_owned(),
            pid: 1,
            job: None,
        };
        plant(&path, gone.clone(), None);
        let lease = lease_path(&path);
        let turn = append(&lease, ".break");
        let temp = append(&turn, ".planted");
        let record = Record {
            holder: gone,
            space: None,
            temp: temp.file_name().unwrap().to_string_lossy().into_owned(),
        };
        write_new(&temp, &record).unwrap();
        fs::hard_link(&temp, &turn).unwrap();
        age(&lease, Duration::from_secs(31));
        age(&turn, Duration::from_secs(31));
        let held = acquire_with(&path, &fast(true), |_| {}).unwrap();
        assert_eq!(holder_pid(&path), Some(std::process::id()));
        drop(held);
        assert!(names(&dir.path().join("leases")).is_empty());
    }
}
