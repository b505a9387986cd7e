//! Running the stale nodes: keys are computed as upstream outputs become known (so a rerun
//! that reproduces the same bytes leaves downstream cached), ready nodes start in dependency
//! order on a [`Backend`] (threads of this process within `--jobs` and `--gpus`, or cluster
//! jobs), a failure stops its dependents only, and every run publishes atomically under the
//! key's lock. What happens is reported to a [`RunEvents`]; nothing here prints.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use pipeline_api::{InputArtifact, RunContext};

use crate::events::{Finish, RunEvents};
use crate::fingerprint::{Fingerprint, StatCache};
use crate::graph::{Binding, Pipeline};
use crate::lock;
use crate::reporter::NodeReporter;
use crate::staleness::{self, InputError};
use crate::store::{Manifest, ManifestInput, NodeState, Store};

/// What `run` should do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// CPU thread budget.
    pub jobs: usize,
    /// GPUs of this machine, each given to one GPU node at a time.
    pub gpus: usize,
    /// Nodes to consider (targets and their ancestors).
    pub mask: Vec<bool>,
    /// Nodes to rerun even when cached.
    pub forced: Vec<bool>,
}

/// How a node ended.
#[derive(Debug)]
pub enum Outcome {
    Finished(Finish),
    Failed {
        error: anyhow::Error,
        /// The node's log, or why none could be kept.
        log: Result<PathBuf, String>,
    },
    /// Not run because an upstream node failed.
    Skipped {
        failed: String,
    },
}

#[derive(Debug)]
pub struct NodeResult {
    pub node: usize,
    pub outcome: Outcome,
    pub duration: Duration,
    /// What the run worked around ([`pipeline_api::Reporter::warn`]), for the summary.
    pub warnings: Vec<String>,
}

/// Results of every node in the mask, in completion order.
#[derive(Debug, Default)]
pub struct RunReport {
    pub results: Vec<NodeResult>,
}

impl RunReport {
    pub fn failures(&self) -> impl Iterator<Item = &NodeResult> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
    }
}

/// A stale node to bring up to date.
#[derive(Debug)]
pub struct Job {
    pub node: usize,
    pub fingerprint: Fingerprint,
    pub key: String,
    /// CPU threads the run may keep busy.
    pub threads: usize,
    /// Whether the run holds a GPU.
    pub gpu: bool,
    /// The GPU given to it on this machine (an index below [`RunOptions::gpus`]).
    pub gpu_slot: Option<usize>,
    /// Rerun even if the key is published.
    pub forced: bool,
}

/// Where stale nodes run: threads of this process ([`Local`]) or jobs of a cluster
/// ([`crate::slurm`]). Either way the output is published into the store under the key.
pub trait Backend: Sync {
    /// Brings `job`'s key to a published output: runs the node, or waits for whoever does.
    fn execute(
        &self,
        pipeline: &Pipeline,
        store: &Store,
        events: &dyn RunEvents,
        job: &Job,
        artifacts: BTreeMap<String, Vec<InputArtifact>>,
    ) -> Result<Executed, Failure>;

    /// Whether runs share this machine's thread and GPU budget (`--jobs`, `--gpus`).
    fn local(&self) -> bool {
        true
    }

    /// Ctrl-C or SIGTERM, just before the process exits: stop what was started elsewhere.
    fn interrupt(&self) {}
}

/// Runs each node on a thread of this process.
#[derive(Debug, Default)]
pub struct Local;

impl Backend for Local {
    fn execute(
        &self,
        pipeline: &Pipeline,
        store: &Store,
        events: &dyn RunEvents,
        job: &Job,
        artifacts: BTreeMap<String, Vec<InputArtifact>>,
    ) -> Result<Executed, Failure> {
        execute(pipeline, store, events, job, artifacts)
    }
}

/// A finished worker's message to the scheduler.
struct Done {
    job: Job,
    result: Result<Executed, Failure>,
    duration: Duration,
}

/// A published output: its manifest, how it came (ran here or in a job, reused, fetched), and
/// what the run warned about.
#[derive(Debug)]
pub struct Executed {
    pub manifest: Manifest,
    pub how: Finish,
    pub warnings: Vec<String>,
}

/// A failed run: the error and the node's log, or why none could be kept.
pub type Failure = (anyhow::Error, Result<PathBuf, String>);

/// Why a run could not go on (a node's own failure is an [`Outcome`], not this).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("cannot start a thread for node `{node}` ({threads} thread(s) budgeted by `--jobs`)")]
    Spawn {
        node: String,
        threads: usize,
        #[source]
        source: std::io::Error,
    },
}

/// Runs every stale node of `opts.mask`.
pub fn run(
    pipeline: &Pipeline,
    store: &Store,
    cache: &mut StatCache,
    events: &dyn RunEvents,
    backend: &dyn Backend,
    opts: &RunOptions,
) -> Result<RunReport, SchedulerError> {
    let n = pipeline.nodes.len();
    let jobs = opts.jobs.max(1);
    store.clean_tmp();
    let deps: Vec<Vec<usize>> = (0..n).map(|i| pipeline.nodes[i].deps()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut remaining: Vec<usize> = (0..n)
        .map(|i| deps[i].iter().filter(|&&d| opts.mask[d]).count())
        .collect();
    let mut outputs: Vec<Option<(String, String)>> = vec![None; n]; // (key, output hash)
    let mut finished = vec![false; n];
    let mut ready: VecDeque<usize> = pipeline
        .order
        .iter()
        .copied()
        .filter(|&i| opts.mask[i] && remaining[i] == 0)
        .collect();
    let mut queue: Vec<Job> = Vec::new();
    let mut report = RunReport::default();
    let (mut used, mut running) = (0usize, 0usize);
    // Which of this machine's GPUs are taken (a cluster backend has its own).
    let mut gpu_taken = vec![false; opts.gpus.max(1)];

    let record = |i: usize, fp: &Fingerprint, key: &str| {
        let node = &pipeline.nodes[i].name;
        let state = NodeState {
            key: key.to_owned(),
            fingerprint: fp.clone(),
            input_nodes: staleness::input_nodes(pipeline, i),
        };
        if let Err(e) = store
            .set_state(node, &state)
            .and_then(|()| store.set_latest(node, key))
        {
            tracing::warn!("cannot record the state of `{node}`: {e}");
        }
    };

    std::thread::scope(|s| -> Result<(), SchedulerError> {
        let (tx, rx) = mpsc::channel::<Done>();
        loop {
            // Key every ready node; cached ones complete at once.
            while let Some(i) = ready.pop_front() {
                let upstream = |j: usize| outputs[j].as_ref().map(|(_, h)| h.clone());
                let inputs = match staleness::input_hashes(pipeline, i, upstream, cache) {
                    Ok(inputs) => inputs,
                    Err(Err(e)) => return Err(e.into()),
                    Err(Ok(_)) => unreachable!("ready nodes have their inputs"),
                };
                let fp = staleness::fingerprint(pipeline, i, inputs);
                let key = fp.key();
                if !opts.forced[i]
                    && let Some(m) = store.manifest(&key)
                    && store.verify(&m).is_ok()
                {
                    record(i, &fp, &key);
                    outputs[i] = Some((key, m.output_hash));
                    finished[i] = true;
                    events.finished(&pipeline.nodes[i].name, Finish::Cached, Duration::ZERO);
                    report.results.push(NodeResult {
                        node: i,
                        outcome: Outcome::Finished(Finish::Cached),
                        duration: Duration::ZERO,
                        warnings: Vec::new(),
                    });
                    release(
                        i,
                        &dependents,
                        &opts.mask,
                        &mut remaining,
                        &mut ready,
                        &pipeline.order,
                    );
                    continue;
                }
                let res = pipeline.nodes[i].plan.resources;
                queue.push(Job {
                    node: i,
                    fingerprint: fp,
                    key,
                    threads: res.threads.clamp(1, jobs),
                    gpu: res.gpu,
                    gpu_slot: None,
                    forced: opts.forced[i],
                });
            }
            // Start what fits.
            let mut k = 0;
            while k < queue.len() {
                let job = &queue[k];
                let free_gpu = gpu_taken.iter().position(|taken| !taken);
                let fits = !backend.local()
                    || (used + job.threads <= jobs && (!job.gpu || free_gpu.is_some()));
                if fits || running == 0 {
                    let mut job = queue.remove(k);
                    if backend.local() {
                        used += job.threads;
                        if job.gpu {
                            // With nothing running, a GPU is free.
                            let slot = free_gpu.unwrap_or(0);
                            gpu_taken[slot] = true;
                            job.gpu_slot = Some(slot);
                        }
                    }
                    running += 1;
                    let tx = tx.clone();
                    let artifacts = input_artifacts(pipeline, store, job.node, &outputs);
                    let name = pipeline.nodes[job.node].name.clone();
                    let threads = job.threads;
                    std::thread::Builder::new()
                        .name(format!("node {name}"))
                        .spawn_scoped(s, move || {
                            let start = Instant::now();
                            // A panic must still report, or the scheduler would wait forever.
                            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                backend.execute(pipeline, store, events, &job, artifacts)
                            }))
                            .unwrap_or_else(|payload| {
                                let error = anyhow::anyhow!(
                                    "the executor panicked: {}",
                                    panic_message(&*payload)
                                );
                                Err((error, Err("the executor panicked".into())))
                            });
                            let _ = tx.send(Done {
                                job,
                                result,
                                duration: start.elapsed(),
                            });
                        })
                        .map_err(|source| SchedulerError::Spawn {
                            node: name,
                            threads,
                            source,
                        })?;
                } else {
                    k += 1;
                }
            }
            if running == 0 {
                break;
            }
            let Done {
                job,
                result,
                duration,
            } = rx.recv().expect("a worker reports");
            let Job {
                node: i,
                fingerprint: fp,
                key,
                threads,
                gpu_slot,
                ..
            } = job;
            running -= 1;
            if backend.local() {
                used -= threads;
            }
            if let Some(slot) = gpu_slot {
                gpu_taken[slot] = false;
            }
            finished[i] = true;
            let name = &pipeline.nodes[i].name;
            match result {
                Ok(Executed {
                    manifest,
                    how,
                    warnings,
                }) => {
                    record(i, &fp, &key);
                    outputs[i] = Some((key, manifest.output_hash));
                    events.finished(name, how, duration);
                    report.results.push(NodeResult {
                        node: i,
                        outcome: Outcome::Finished(how),
                        duration,
                        warnings,
                    });
                    release(
                        i,
                        &dependents,
                        &opts.mask,
                        &mut remaining,
                        &mut ready,
                        &pipeline.order,
                    );
                }
                Err((error, log)) => {
                    events.failed(name, &error, &log, duration);
                    report.results.push(NodeResult {
                        node: i,
                        outcome: Outcome::Failed { error, log },
                        duration,
                        warnings: Vec::new(),
                    });
                    // Skip everything downstream.
                    let mut stack = dependents[i].clone();
                    while let Some(d) = stack.pop() {
                        if opts.mask[d] && !finished[d] {
                            finished[d] = true;
                            remaining[d] = usize::MAX;
                            report.results.push(NodeResult {
                                node: d,
                                outcome: Outcome::Skipped {
                                    failed: name.clone(),
                                },
                                duration: Duration::ZERO,
                                warnings: Vec::new(),
                            });
                            stack.extend(dependents[d].iter().copied());
                        }
                    }
                }
            }
        }
        Ok(())
    })?;
    if let Err(e) = cache.save() {
        tracing::warn!("cannot save the stat cache: {e}");
    }
    Ok(report)
}

fn release(
    i: usize,
    dependents: &[Vec<usize>],
    mask: &[bool],
    remaining: &mut [usize],
    ready: &mut VecDeque<usize>,
    order: &[usize],
) {
    let mut newly = Vec::new();
    for &d in &dependents[i] {
        if mask[d] && remaining[d] != usize::MAX {
            remaining[d] -= 1;
            if remaining[d] == 0 {
                newly.push(d);
            }
        }
    }
    newly.sort_by_key(|d| order.iter().position(|o| o == d));
    ready.extend(newly);
}

/// The artifacts bound to node `i`'s inputs, from the keys of its finished upstream nodes.
pub fn input_artifacts(
    pipeline: &Pipeline,
    store: &Store,
    i: usize,
    outputs: &[Option<(String, String)>],
) -> BTreeMap<String, Vec<InputArtifact>> {
    pipeline.nodes[i]
        .inputs
        .iter()
        .map(|input| {
            let artifacts = input
                .bindings
                .iter()
                .map(|b| match b {
                    Binding::Node(j) => InputArtifact {
                        node: Some(pipeline.nodes[*j].name.clone()),
                        path: store.out_dir(&outputs[*j].as_ref().expect("upstream done").0),
                    },
                    Binding::Path(p) => InputArtifact {
                        node: None,
                        path: p.clone(),
                    },
                })
                .collect();
            (input.name.clone(), artifacts)
        })
        .collect()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs one node in this process under its key's lock and publishes its output (`Reused` when
/// another process published it meanwhile). A cluster job does this too
/// (`pipeline run-node`).
pub fn execute(
    pipeline: &Pipeline,
    store: &Store,
    events: &dyn RunEvents,
    job: &Job,
    artifacts: BTreeMap<String, Vec<InputArtifact>>,
) -> Result<Executed, Failure> {
    let forced = job.forced;
    let node = &pipeline.nodes[job.node];
    let failed_log = store.failed_log(&node.name);
    let fail = |e: anyhow::Error| (e, Err("the node did not start".into()));
    let _lock = lock::acquire(&store.lock_path(&job.key), |holder| {
        events.waiting(&node.name, holder.as_ref());
    })
    .map_err(|e| fail(e.into()))?;
    if !forced
        && let Some(m) = store.manifest(&job.key)
        && store.verify(&m).is_ok()
    {
        return Ok(Executed {
            manifest: m,
            how: Finish::Reused,
            warnings: Vec::new(),
        });
    }
    // We hold the lock: any other working directory of this key is a dead run's leftover.
    store.remove_tmp_of(&job.key);
    let tmp = store.tmp_dir(&job.key);
    let out_dir = tmp.join("out");
    let scratch = store.scratch_dir(&job.key);
    let setup = || -> std::io::Result<std::fs::File> {
        fs_err::create_dir_all(&out_dir)?;
        fs_err::create_dir_all(&scratch)?;
        Ok(fs_err::File::create(tmp.join("log.txt"))?.into())
    };
    let log = setup().map_err(|e| {
        fail(anyhow::Error::from(e).context(format!("cannot prepare `{}`", tmp.display())))
    })?;
    events.started(&node.name);
    let reporter = NodeReporter::new(&node.name, events, log);
    let started_unix = unix_now();
    let start = Instant::now();
    reporter.log_quiet(&format!(
        "node `{}` (kind `{}` v{}), key {}, {} thread(s)",
        node.name,
        node.kind.name(),
        node.kind.version(),
        job.key,
        job.threads
    ));
    reporter.log_quiet(&format!(
        "params: {}",
        crate::fingerprint::canonical_json(&node.plan.params)
    ));
    for (name, list) in &artifacts {
        for a in list {
            reporter.log_quiet(&format!("input {name}: {}", a.path.display()));
        }
    }
    let ctx = RunContext {
        node: &node.name,
        params: &node.plan.params,
        inputs: &artifacts,
        out_dir: &out_dir,
        scratch_dir: &scratch,
        threads: job.threads,
        gpu: job.gpu_slot,
        reporter: &reporter,
    };
    let result = match std::panic::catch_unwind(AssertUnwindSafe(|| node.kind.run(&ctx))) {
        Ok(r) => r,
        Err(payload) => Err(anyhow::anyhow!(
            "the stage panicked: {}",
            panic_message(&*payload)
        )),
    };
    let elapsed = start.elapsed();
    match result {
        Ok(()) => {
            reporter.log_quiet(&format!("finished in {:.2}s", elapsed.as_secs_f64()));
            let notes = reporter.notes();
            drop(reporter);
            let manifest = Manifest {
                format: crate::store::MANIFEST_FORMAT,
                key: job.key.clone(),
                node: node.name.clone(),
                kind: node.kind.name().to_owned(),
                kind_version: node.kind.version(),
                executor_version: crate::EXECUTOR_VERSION.to_owned(),
                params: node.plan.params.clone(),
                inputs: staleness::input_nodes(pipeline, job.node)
                    .into_iter()
                    .map(|(name, nodes)| ManifestInput {
                        hashes: job
                            .fingerprint
                            .inputs
                            .get(&name)
                            .cloned()
                            .unwrap_or_default(),
                        name,
                        nodes,
                    })
                    .collect(),
                files: Vec::new(),
                output_hash: String::new(),
                started_unix_s: started_unix,
                duration_s: elapsed.as_secs_f64(),
                measurements: notes.measurements,
                warnings: notes.warnings.clone(),
            };
            let manifest = store.publish(&tmp, manifest).map_err(|e| fail(e.into()))?;
            let _ = std::fs::remove_dir_all(&scratch);
            let _ = std::fs::remove_file(&failed_log);
            Ok(Executed {
                manifest,
                how: Finish::Ran,
                warnings: notes.warnings,
            })
        }
        Err(error) => {
            reporter.log_quiet(&format!(
                "failed after {:.2}s: {error:#}",
                elapsed.as_secs_f64()
            ));
            drop(reporter);
            let copied = fs_err::create_dir_all(store.root.join("failed"))
                .and_then(|()| fs_err::copy(tmp.join("log.txt"), &failed_log).map(|_| ()));
            let _ = std::fs::remove_dir_all(&tmp);
            match copied {
                Ok(()) => Err((error, Ok(failed_log))),
                Err(e) => Err((error, Err(format!("its log could not be kept ({e})")))),
            }
        }
    }
}
