//! The per-key lock across processes: a holder killed by SIGKILL (an OOM kill, `scancel`, a
//! crash) leaves its lease behind; the next process of the same host takes it over at once,
//! rather than after the heartbeat timeout.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pipeline::lock;

/// Set for the child process: the lock it holds until killed.
const HOLD: &str = "PIPELINE_TEST_LOCK_HOLD";

/// The child process (a no-op in a plain test run).
#[test]
fn hold_until_killed() {
    let Some(path) = std::env::var_os(HOLD) else {
        return;
    };
    let _held = lock::acquire(path.as_ref(), |_| panic!("free")).unwrap();
    println!("lock held");
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Kills the child even when an assertion fails first.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_lease_of_a_killed_holder_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks/k.lock");
    let mut child = Killed(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "hold_until_killed", "--nocapture"])
            .env(HOLD, &path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = BufReader::new(child.0.stdout.take().unwrap());
    assert!(
        out.lines().any(|l| l.unwrap().contains("lock held")),
        "the child did not take the lock"
    );
    assert_eq!(lock::holder_info(&path).map(|h| h.pid), Some(child.0.id()));
    assert!(lock::try_acquire(&path).unwrap().is_none());
    drop(child);
    let leases = dir.path().join("leases");
    assert!(leases.join("k.lease").exists(), "SIGKILL leaves the lease");
    let start = Instant::now();
    let held = lock::acquire(&path, |_| panic!("its holder is gone")).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        lock::holder_info(&path).map(|h| h.pid),
        Some(std::process::id())
    );
    drop(held);
    assert_eq!(
        std::fs::read_dir(&leases).unwrap().count(),
        0,
        "no leftover of either holder"
    );
}
