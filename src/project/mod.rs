//! A pipeline file with its store, and what each command asks of them: one call per command
//! (`status`, `plan`, `run`, `verify`, `show`, `metrics`, `gc`) that returns data for the
//! command line to render. The prelude they share (select, add what the selection needs,
//! assess against the stat cache, save the cache) is written once, here.

mod gc;
mod metrics;

use std::path::Path;

use pipeline_api::Registry;
use serde_json::json;

use crate::config::ConfigError;
use crate::events::RunEvents;
use crate::fingerprint::StatCache;
use crate::graph::Pipeline;
use crate::lock::{self, LockError};
use crate::remote::{RemoteCache, RemoteError, Upload};
use crate::scheduler::{self, Backend, RunOptions, RunReport, SchedulerError};
use crate::staleness::{self, InputError, NodeStatus, Staleness};
use crate::store::{Corruption, Manifest, Store};

pub use gc::{Collection, Removal};
pub use metrics::{MetricsQuery, MetricsRow, MetricsTable};

/// A loaded pipeline and the store it builds into.
#[derive(Debug)]
pub struct Project {
    pub pipeline: Pipeline,
    pub store: Store,
}

/// A mistake of the user (bad node name, bad flag value), as opposed to a failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
}

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }
}

/// Why a command could not do its work (a node's own failure is a [`scheduler::Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Run(#[from] SchedulerError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ProjectError {
    /// The user's mistake, when it is one.
    pub fn user(&self) -> Option<&UserError> {
        match self {
            ProjectError::User(u) => Some(u),
            _ => None,
        }
    }
}

/// Why `run_node` has no output.
#[derive(Debug, thiserror::Error)]
pub enum RunNodeError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error("{error:#}")]
    Failed {
        error: anyhow::Error,
        log: Result<std::path::PathBuf, String>,
    },
}

impl From<UserError> for RunNodeError {
    fn from(e: UserError) -> Self {
        RunNodeError::Project(e.into())
    }
}

impl From<InputError> for RunNodeError {
    fn from(e: InputError) -> Self {
        RunNodeError::Project(e.into())
    }
}

/// What a `push` or `pull` did for each node, in dependency order.
pub type Transfers<T> = Vec<(usize, Result<T, RemoteError>)>;

/// The nodes a command looks at with their status, in dependency order.
pub type Assessment = Vec<(usize, NodeStatus)>;

/// What `pipeline run` asks for.
#[derive(Debug, Clone, Default)]
pub struct RunTargets {
    /// Nodes or stages to bring up to date, with what they need; every node when empty.
    pub nodes: Vec<String>,
    /// Nodes or stages to rerun even when cached.
    pub force: Vec<String>,
}

/// This machine's share of a local run: CPU threads and GPUs.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub jobs: usize,
    pub gpus: usize,
}

/// What `pipeline verify` found for one node.
#[derive(Debug)]
pub enum Verification {
    /// Not checked: there is no current output to check.
    Stale(Staleness),
    /// Every file re-hashed to its manifest's digest.
    Intact { files: usize },
    /// A file did not; the object was withdrawn, so the next run rebuilds it.
    Corrupt(Corruption),
}

/// What `pipeline show` shows of one node.
#[derive(Debug)]
pub struct NodeView {
    pub node: usize,
    pub status: NodeStatus,
    /// The current output when up to date, else the last one built (if it still exists).
    pub manifest: Option<Manifest>,
    /// `metrics.json` of that output, with the run's measurements under `run`.
    pub metrics: Option<serde_json::Value>,
}

impl Project {
    /// Reads and validates the pipeline file; its store is the `artifacts` it declares.
    pub fn open(file: &Path, registry: &Registry) -> Result<Self, ConfigError> {
        let pipeline = Pipeline::load(file, registry)?;
        let namespace = file.file_name().map_or_else(
            || "pipeline.toml".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let store = Store::new(pipeline.config.artifacts.clone(), namespace);
        Ok(Self { pipeline, store })
    }

    /// Whether each node is up to date, for `nodes` and what they need (every node when empty).
    pub fn status(&self, nodes: &[String]) -> Result<Assessment, ProjectError> {
        let mask = self.selection(nodes)?;
        let status = self.assess(&mask, &self.none())?;
        Ok(self.in_order(status))
    }

    /// What `run` would do: the status of what it looks at, the forced nodes stale.
    pub fn plan(&self, targets: &RunTargets) -> Result<Assessment, ProjectError> {
        let (mask, forced) = self.targets(targets)?;
        let status = self.assess(&mask, &forced)?;
        Ok(self.in_order(status))
    }

    /// Runs the stale nodes of `targets` on `jobs` threads, reporting to `events`. Ctrl-C or
    /// SIGTERM (as Slurm sends at a time limit) ends the process with status 130 once `events`
    /// has been told: a running stage cannot be called back, and nothing half-written is ever
    /// published, so the next run cleans up and resumes.
    pub fn run(
        &self,
        targets: &RunTargets,
        budget: Budget,
        backend: &dyn Backend,
        events: &dyn RunEvents,
    ) -> Result<RunReport, ProjectError> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let (mask, forced) = self.targets(targets)?;
        let mut cache = StatCache::load(&self.store.stat_cache_path());
        let opts = RunOptions {
            jobs: budget.jobs,
            gpus: budget.gpus,
            mask,
            forced,
        };
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        std::thread::scope(|s| {
            let _unwatch = Unwatch(handle);
            std::thread::Builder::new()
                .name("signals".into())
                .spawn_scoped(s, move || {
                    if signals.forever().next().is_some() {
                        backend.interrupt();
                        events.interrupted();
                        std::process::exit(130);
                    }
                })?;
            Ok(scheduler::run(
                &self.pipeline,
                &self.store,
                &mut cache,
                events,
                backend,
                &opts,
            )?)
        })
    }

    /// Runs one node in this process, as a cluster job does (`pipeline run-node`): its inputs
    /// must be published, and its key must still be `key`, the one the job was submitted for.
    pub fn run_node(
        &self,
        name: &str,
        key: &str,
        forced: bool,
        threads: usize,
        events: &dyn RunEvents,
    ) -> Result<scheduler::Executed, RunNodeError> {
        let pipeline = &self.pipeline;
        let i = pipeline
            .node_index(name)
            .ok_or_else(|| UserError::new(format!("no node `{name}` in this pipeline")))?;
        let mut status = self.assess(&pipeline.with_ancestors(&[i]), &self.none())?;
        let mut outputs = vec![None; pipeline.nodes.len()];
        for j in pipeline.nodes[i].deps() {
            match &status[j] {
                Some(NodeStatus::UpToDate { key, manifest, .. }) => {
                    outputs[j] = Some((key.clone(), manifest.output_hash.clone()));
                }
                other => {
                    let why = match other {
                        Some(NodeStatus::Stale { reason, .. }) => reason.to_string(),
                        _ => "not assessed".into(),
                    };
                    return Err(UserError::new(format!(
                        "input node `{}` of `{name}` is not built ({why})",
                        pipeline.nodes[j].name
                    ))
                    .into());
                }
            }
        }
        let fingerprint = match status[i].take() {
            Some(NodeStatus::UpToDate { fingerprint, .. })
            | Some(NodeStatus::Stale {
                fingerprint: Some(fingerprint),
                ..
            }) => fingerprint,
            _ => unreachable!("every input of `{name}` is built"),
        };
        let current = fingerprint.key();
        if current != key {
            return Err(UserError::new(format!(
                "node `{name}` now has key {current}, not {key}: the pipeline or its inputs \
                 changed since this job was submitted"
            ))
            .into());
        }
        let resources = pipeline.nodes[i].plan.resources;
        let job = scheduler::Job {
            node: i,
            fingerprint,
            key: current,
            threads,
            gpu: resources.gpu,
            // A cluster job sees the GPUs it was given from ordinal 0 (`CUDA_VISIBLE_DEVICES`).
            gpu_slot: resources.gpu.then_some(0),
            forced,
        };
        let artifacts = scheduler::input_artifacts(pipeline, &self.store, i, &outputs);
        scheduler::execute(pipeline, &self.store, events, &job, artifacts)
            .map_err(|(error, log)| RunNodeError::Failed { error, log })
    }

    /// The remote cache of `[settings.cache]`, if the file has one.
    pub fn remote(&self) -> Result<Option<RemoteCache>, UserError> {
        self.pipeline
            .config
            .cache
            .as_ref()
            .map(|settings| {
                RemoteCache::new(settings).map_err(|e| UserError {
                    message: format!("`[settings.cache]`: {e:#}"),
                    hint: None,
                })
            })
            .transpose()
    }

    /// Uploads the up-to-date outputs of `nodes` and what they need (every node when empty)
    /// to `cache`, in dependency order. Stale nodes are left out.
    pub fn push(
        &self,
        nodes: &[String],
        cache: &RemoteCache,
    ) -> Result<Transfers<Upload>, ProjectError> {
        Ok(self
            .status(nodes)?
            .into_iter()
            .filter_map(|(i, s)| match s {
                NodeStatus::UpToDate { manifest, .. } => {
                    Some((i, cache.upload(&self.store, &manifest)))
                }
                NodeStatus::Stale { .. } => None,
            })
            .collect())
    }

    /// Fetches the stale nodes of `nodes` and what they need (every node when empty) from
    /// `cache`, in dependency order: a fetched node gives its dependents their keys. Returns
    /// what was tried for each node: fetched (`true`), not in the cache (`false`), or why not.
    pub fn pull(
        &self,
        nodes: &[String],
        cache: &RemoteCache,
    ) -> Result<Transfers<bool>, ProjectError> {
        let mut tried = vec![false; self.pipeline.nodes.len()];
        let mut out = Vec::new();
        loop {
            let mut progress = false;
            for (i, s) in self.status(nodes)? {
                let NodeStatus::Stale { key: Some(key), .. } = s else {
                    continue;
                };
                if std::mem::replace(&mut tried[i], true) {
                    continue;
                }
                let fetched = lock::acquire(&self.store.lock_path(&key), |_| {})
                    .map_err(|e| RemoteError::Io(e.to_string()))
                    .and_then(|_lock| {
                        // Published by another process while this one waited: nothing to do.
                        let here = self.store.manifest(&key);
                        if here.is_some_and(|m| self.store.verify(&m).is_ok()) {
                            return Ok(true);
                        }
                        Ok(cache.fetch(&self.store, &key)?.is_some())
                    })
                    .and_then(|fetched| {
                        if fetched {
                            self.record(i, &key)
                                .map_err(|e| RemoteError::Io(e.to_string()))?;
                        }
                        Ok(fetched)
                    });
                progress |= matches!(fetched, Ok(true));
                out.push((i, fetched));
            }
            if !progress {
                return Ok(out);
            }
        }
    }

    /// Records `key` as node `i`'s current output (its state and `latest/` link), as a run
    /// does.
    fn record(&self, i: usize, key: &str) -> Result<(), ProjectError> {
        let node = &self.pipeline.nodes[i].name;
        let status = self.assess(&self.pipeline.with_ancestors(&[i]), &self.none())?;
        if let Some(NodeStatus::UpToDate { fingerprint, .. }) = &status[i] {
            let state = crate::store::NodeState {
                key: key.to_owned(),
                fingerprint: fingerprint.clone(),
                input_nodes: staleness::input_nodes(&self.pipeline, i),
            };
            self.store.set_state(node, &state)?;
            self.store.set_latest(node, key)?;
        }
        Ok(())
    }

    /// Re-hashes every published output of `nodes` and what they need (every node when
    /// empty), byte for byte, and withdraws the corrupted ones.
    pub fn verify(&self, nodes: &[String]) -> Result<Vec<(usize, Verification)>, ProjectError> {
        let mut out = Vec::new();
        for (i, s) in self.status(nodes)? {
            let v = match s {
                NodeStatus::Stale { reason, .. } => Verification::Stale(reason),
                NodeStatus::UpToDate { key, manifest, .. } => {
                    match self.store.verify_fully(&manifest) {
                        Ok(()) => Verification::Intact {
                            files: manifest.files.len(),
                        },
                        Err(c) => {
                            self.store.mark_corrupt(&key, &c)?;
                            Verification::Corrupt(c)
                        }
                    }
                }
            };
            out.push((i, v));
        }
        Ok(out)
    }

    /// One node (or the single member of a stage): its status, output and metrics.
    pub fn show(&self, name: &str) -> Result<NodeView, ProjectError> {
        let pipeline = &self.pipeline;
        let node = match pipeline.node_index(name) {
            Some(i) => i,
            None => match self
                .select(std::slice::from_ref(&name.to_owned()))?
                .as_slice()
            {
                [one] => *one,
                many => {
                    let names: Vec<_> = many
                        .iter()
                        .map(|&j| pipeline.nodes[j].name.as_str())
                        .collect();
                    return Err(UserError {
                        message: format!("stage `{name}` has {} members", many.len()),
                        hint: Some(format!("name one of: {}", names.join(", "))),
                    }
                    .into());
                }
            },
        };
        let (status, manifest) = self
            .current(&pipeline.with_ancestors(&[node]))?
            .swap_remove(node)
            .expect("in the mask");
        let metrics = manifest.as_ref().and_then(|m| self.metrics_of(m));
        Ok(NodeView {
            node,
            status,
            manifest,
            metrics,
        })
    }

    /// Node indices named by `names` (a stage name selects all its members).
    fn select(&self, names: &[String]) -> Result<Vec<usize>, UserError> {
        self.pipeline.select(names).map_err(UserError::new)
    }

    /// `nodes` and what they need as a mask; every node when empty.
    fn selection(&self, nodes: &[String]) -> Result<Vec<bool>, UserError> {
        if nodes.is_empty() {
            return Ok(vec![true; self.pipeline.nodes.len()]);
        }
        Ok(self.pipeline.with_ancestors(&self.select(nodes)?))
    }

    /// The nodes `run` looks at (the targets, the forced ones and what they need) and the
    /// forced ones.
    fn targets(&self, targets: &RunTargets) -> Result<(Vec<bool>, Vec<bool>), UserError> {
        let n = self.pipeline.nodes.len();
        let mask = if targets.nodes.is_empty() {
            vec![true; n]
        } else {
            let mut t = self.select(&targets.nodes)?;
            t.extend(self.select(&targets.force)?);
            self.pipeline.with_ancestors(&t)
        };
        let mut forced = vec![false; n];
        for i in self.select(&targets.force)? {
            forced[i] = true;
        }
        Ok((mask, forced))
    }

    /// No node forced.
    fn none(&self) -> Vec<bool> {
        vec![false; self.pipeline.nodes.len()]
    }

    /// The status of every node in `mask` (others `None`), through the stat cache.
    fn assess(
        &self,
        mask: &[bool],
        forced: &[bool],
    ) -> Result<Vec<Option<NodeStatus>>, InputError> {
        let mut cache = StatCache::load(&self.store.stat_cache_path());
        let status = staleness::assess(&self.pipeline, &self.store, &mut cache, mask, forced)?;
        // A cache that cannot be saved only costs the next command some hashing.
        let _ = cache.save();
        Ok(status)
    }

    /// The assessed nodes of `status`, in dependency order.
    fn in_order(&self, mut status: Vec<Option<NodeStatus>>) -> Assessment {
        self.pipeline
            .order
            .iter()
            .filter_map(|&i| Some((i, status[i].take()?)))
            .collect()
    }

    /// The output to show for each node of `mask`: the current one when up to date, else the
    /// last one built (if it still exists), with the status.
    fn current(&self, mask: &[bool]) -> Result<Vec<Option<Current>>, InputError> {
        let status = self.assess(mask, &self.none())?;
        Ok(status
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let s = s?;
                let manifest = match &s {
                    NodeStatus::UpToDate { manifest, .. } => Some((**manifest).clone()),
                    NodeStatus::Stale { .. } => self
                        .store
                        .state(&self.pipeline.nodes[i].name)
                        .and_then(|st| self.store.manifest(&st.key)),
                };
                Some((s, manifest))
            })
            .collect())
    }

    /// `metrics.json` of a published object, with what the run measured of itself (kept in
    /// the manifest, outside the hashed files) under `run`. `None` when there is neither.
    fn metrics_of(&self, m: &Manifest) -> Option<serde_json::Value> {
        let file = std::fs::read(self.store.out_dir(&m.key).join(pipeline_api::METRICS_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
        if m.measurements.is_empty() {
            return file;
        }
        let mut value = file.unwrap_or_else(|| json!({}));
        if let Some(map) = value.as_object_mut() {
            map.insert("run".into(), json!(m.measurements));
        }
        Some(value)
    }
}

/// A node's status and the output to show for it.
type Current = (NodeStatus, Option<Manifest>);

/// Ends the watch for signals when the run ends, however it ends: the scope that runs the
/// watcher would otherwise wait for a signal forever.
struct Unwatch(signal_hook::iterator::Handle);

impl Drop for Unwatch {
    fn drop(&mut self) {
        self.0.close();
    }
}
