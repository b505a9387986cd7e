//! Commands of the domain (`pipeline search`): registered like kinds, so that the executor
//! parses nothing of them but their name and gives them a read-only view of the project.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// A subcommand of `pipeline` that a stage crate provides.
pub trait DomainCommand: Send + Sync + 'static {
    /// Its name, help text and arguments (`clap::Command::new(name)`).
    fn command(&self) -> clap::Command;

    /// Runs it. Return a [`UsageError`] for bad arguments or a project that cannot answer
    /// (exit status 2); any other error is a failure (exit status 1).
    fn run(&self, args: &clap::ArgMatches, project: &dyn ProjectView) -> anyhow::Result<()>;
}

/// What a domain command may read of the project.
pub trait ProjectView {
    /// Every node of the pipeline, in file order, with its status.
    fn nodes(&self) -> anyhow::Result<Vec<NodeInfo>>;

    /// A directory for caches derived from published artifacts (created; safe to delete;
    /// `pipeline gc` keeps it).
    fn cache_dir(&self, namespace: &str) -> anyhow::Result<PathBuf>;
}

/// One node as a domain command sees it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// `"train.seed-1"`.
    pub name: String,
    pub stage: String,
    pub kind: String,
    /// Canonical parameters (what [`crate::StageKind::plan`] returned).
    pub params: serde_json::Value,
    /// Per input: the producing nodes' names, or external paths.
    pub inputs: BTreeMap<String, Vec<InputRef>>,
    /// The node's key: what its output is a function of.
    pub key: String,
    /// The published output directory when the node is up to date; `None` when stale.
    pub out_dir: Option<PathBuf>,
}

/// What an input of a [`NodeInfo`] is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputRef {
    Node(String),
    Path(PathBuf),
}

/// A user's mistake or a question the project cannot answer yet: printed as one message,
/// exit status 2.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
