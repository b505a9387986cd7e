//! What a run tells its caller while it goes. The scheduler reports each node's start, wait,
//! progress and end to a [`RunEvents`], as ripgrep's searcher reports to a sink, and knows
//! nothing of terminals: the binary renders the events (progress bars, status lines), a test
//! records them.

use std::path::PathBuf;
use std::time::Duration;

use pipeline_api::StepProgress;

use crate::lock::Holder;

/// How a node that did not fail got its artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Its key was already published.
    Cached,
    /// It ran and published its output.
    Ran,
    /// Another process built it while this one waited for the lock.
    Reused,
    /// Downloaded from the remote cache, verified, and published here.
    Fetched,
}

/// Receives the events of a run, from the scheduler's and the nodes' threads. Every method
/// ignores its event unless implemented, so that an implementation names only what it shows.
pub trait RunEvents: Sync {
    /// `node` holds its key's lock and starts running.
    fn started(&self, _node: &str) {}

    /// `node` waits for its key's lock: another process (`holder`, when its lease names it) is
    /// building the same artifact.
    fn waiting(&self, _node: &str, _holder: Option<&Holder>) {}

    /// `node` waits to run outside this process: `what` says where (`Slurm job 12 pending`).
    fn queued(&self, _node: &str, _what: &str) {}

    /// A line that the running `node` wrote to its log.
    fn log(&self, _node: &str, _line: &str) {}

    /// The running `node` starts a step of `total` units; the step ends when the handle drops.
    fn step(&self, _node: &str, _label: &str, _total: u64) -> Box<dyn StepProgress> {
        Box::new(Unobserved)
    }

    /// `node` has its artifact, after `duration` (zero when cached).
    fn finished(&self, _node: &str, _how: Finish, _duration: Duration) {}

    /// `node` failed after `duration`; `log` is its kept log, or why none could be kept.
    fn failed(
        &self,
        _node: &str,
        _error: &anyhow::Error,
        _log: &Result<PathBuf, String>,
        _duration: Duration,
    ) {
    }

    /// Ctrl-C or SIGTERM: the process exits with status 130 as soon as this returns.
    fn interrupted(&self) {}
}

/// The step of an implementation that does not show steps.
struct Unobserved;

impl StepProgress for Unobserved {
    fn inc(&self, _delta: u64) {}
    fn set_message(&self, _message: &str) {}
}
