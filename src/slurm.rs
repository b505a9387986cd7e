//! Running nodes as Slurm jobs (`pipeline run --executor slurm`, or `[settings.executor]
//! kind = "slurm"`).
//!
//! The driver submits one batch job per stale node as soon as its inputs are published, and
//! polls `scontrol`. The job runs `pipeline run-node`, which takes the key's lock, runs the node
//! and publishes into the shared store exactly as a local run does (temporary directory,
//! manifest last). The driver trusts a published, verified manifest, never the job's state
//! alone: the state only explains a failure. A record of each live submission
//! (`jobs/<key>.json`, written under the key's lock) lets a later driver adopt a job whose
//! driver died instead of submitting a duplicate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use pipeline_api::InputArtifact;
use serde::{Deserialize, Serialize};

use crate::config::{GpuFlag, SlurmSettings, StageResources};
use crate::events::{Finish, RunEvents};
use crate::graph::{Node, Pipeline};
use crate::lock;
use crate::scheduler::{Backend, Executed, Failure, Job};
use crate::store::{Manifest, Store, write_atomic};

/// How long a completed job's output may take to appear on a shared file system.
const NFS_PATIENCE: Duration = Duration::from_secs(30);

/// How long `scontrol` may keep failing (a controller restarting or failing over) before the
/// driver gives up on a job; the job itself goes on, and its record stays for the next driver.
const QUERY_PATIENCE: Duration = Duration::from_secs(300);

/// The Slurm backend of one driver.
#[derive(Debug)]
pub struct Slurm {
    settings: SlurmSettings,
    /// The pipeline file, absolute: jobs read the same one.
    pipeline_file: PathBuf,
    /// The `pipeline` binary the jobs run.
    binary: PathBuf,
    /// Jobs this driver submitted that have not ended: id → (key, the store). Cancelled on
    /// Ctrl-C.
    submitted: Mutex<BTreeMap<String, (String, Store)>>,
}

/// What `jobs/<key>.json` records of a live submission.
#[derive(Debug, Serialize, Deserialize)]
struct Submission {
    job_id: String,
    node: String,
}

/// A job's state as `scontrol show job -o` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `TIMEOUT`, ...
    pub state: String,
    pub reason: String,
    /// `<exit code>:<signal>`.
    pub exit_code: String,
    pub time_limit: String,
}

impl JobState {
    /// Parses one line of `scontrol show job -o`.
    pub fn parse(line: &str) -> Option<Self> {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_owned)
        };
        Some(Self {
            state: field("JobState")?,
            reason: field("Reason").unwrap_or_default(),
            exit_code: field("ExitCode").unwrap_or_default(),
            time_limit: field("TimeLimit").unwrap_or_default(),
        })
    }

    /// Whether the job will not run again (a requeued job goes back to `PENDING`).
    pub fn ended(&self) -> bool {
        matches!(
            self.state.as_str(),
            "COMPLETED"
                | "FAILED"
                | "TIMEOUT"
                | "OUT_OF_MEMORY"
                | "CANCELLED"
                | "NODE_FAIL"
                | "BOOT_FAIL"
                | "DEADLINE"
                | "PREEMPTED"
        )
    }

    /// Why the job's node has no output, as the end of a sentence starting "Slurm job N".
    fn failure(&self, resources: &StageResources) -> String {
        match self.state.as_str() {
            "COMPLETED" => "completed without publishing the node's output".into(),
            "FAILED" => match self.exit_code.split_once(':') {
                Some((_, signal)) if signal != "0" => format!("was killed by signal {signal}"),
                _ => format!("failed with exit code {}", self.exit_status()),
            },
            "TIMEOUT" => format!("hit its time limit ({})", self.time_limit),
            "OUT_OF_MEMORY" => match &resources.mem {
                Some(mem) => format!("ran out of memory (`mem = \"{mem}\"`)"),
                None => "ran out of memory (no `mem` set: the cluster's default)".into(),
            },
            "CANCELLED" => "was cancelled".into(),
            "NODE_FAIL" => "ended because its compute node failed".into(),
            "PREEMPTED" => "was preempted and not requeued".into(),
            other => format!("ended in state {other} ({})", self.reason),
        }
    }

    fn exit_status(&self) -> &str {
        self.exit_code.split(':').next().unwrap_or("?")
    }
}

impl Slurm {
    /// A backend submitting jobs that run `pipeline_file` with `settings.binary` (default: this
    /// binary). Nothing is asked of Slurm until a node is stale.
    pub fn new(settings: SlurmSettings, pipeline_file: &Path) -> anyhow::Result<Self> {
        let binary = match &settings.binary {
            Some(b) => b.clone(),
            None => std::env::current_exe().context("cannot find this binary for the jobs")?,
        };
        let pipeline_file = std::path::absolute(pipeline_file)?;
        Ok(Self {
            settings,
            pipeline_file,
            binary,
            submitted: Mutex::new(BTreeMap::new()),
        })
    }

    fn submitted(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (String, Store)>> {
        self.submitted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `sbatch` arguments for `node` (before the script).
    fn sbatch_args(&self, node: &Node, output: &Path) -> Vec<String> {
        let r = node.resources.or(&self.settings.resources);
        let plan = node.plan.resources;
        let cpus = r.cpus.unwrap_or(if plan.threads == usize::MAX {
            1
        } else {
            plan.threads
        });
        let gpus = r.gpus.unwrap_or(usize::from(plan.gpu));
        let mut args = vec![
            "--parsable".to_owned(),
            format!("--job-name=pipeline:{}", node.name),
            format!("--output={}", output.display()),
            // A requeued job appends to the same file.
            "--open-mode=append".to_owned(),
            "--requeue".to_owned(),
            format!("--cpus-per-task={}", cpus.max(1)),
        ];
        if let Some(dir) = self.pipeline_file.parent() {
            args.push(format!("--chdir={}", dir.display()));
        }
        if let Some(mem) = &r.mem {
            args.push(format!("--mem={mem}"));
        }
        if let Some(time) = &r.time {
            args.push(format!("--time={time}"));
        }
        if gpus > 0 {
            args.push(match self.settings.gpu_flag {
                GpuFlag::Gres => format!("--gres=gpu:{gpus}"),
                GpuFlag::Gpus => format!("--gpus={gpus}"),
                GpuFlag::GpusPerNode => format!("--gpus-per-node={gpus}"),
            });
        }
        for (flag, value) in [
            ("partition", &r.partition),
            ("account", &r.account),
            ("qos", &r.qos),
        ] {
            if let Some(v) = value {
                args.push(format!("--{flag}={v}"));
            }
        }
        args.extend(r.sbatch.iter().cloned());
        args
    }

    /// Submits `job` and returns its id.
    fn submit(&self, store: &Store, node: &Node, job: &Job) -> anyhow::Result<String> {
        let dir = store.root.join("jobs");
        fs_err::create_dir_all(&dir)?;
        let script = dir.join(format!("{}.sh", job.key));
        let mut command = format!(
            "exec {} -f {} run-node {} --key {}",
            shell_quote(&self.binary.to_string_lossy()),
            shell_quote(&self.pipeline_file.to_string_lossy()),
            shell_quote(&node.name),
            job.key
        );
        if job.forced {
            command.push_str(" --force");
        }
        fs_err::write(
            &script,
            format!(
                "#!/bin/sh\n# node `{}`, key {}: submitted by `pipeline run --executor slurm`\n{command}\n",
                node.name, job.key
            ),
        )?;
        let output = dir.join(format!("{}-%j.out", job.key));
        let args = self.sbatch_args(node, &output);
        // Not probed before: a run with nothing stale costs what a local one does.
        let out = Command::new("sbatch")
            .args(&args)
            .arg(&script)
            .output()
            .context(
                "cannot run `sbatch`: the Slurm executor needs the Slurm client commands on \
                 `PATH`\nhint: `scripts/one-node-slurm.sh start DIR` starts a one-node cluster \
                 to try it",
            )?;
        if !out.status.success() {
            bail!(
                "`sbatch {}` refused the job: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = stdout
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            bail!(
                "`sbatch` printed no job id (it printed `{}`)",
                stdout.trim()
            );
        }
        Ok(id)
    }
}

/// The job's state, `None` when Slurm no longer knows it (purged after `MinJobAge`).
pub fn query(job_id: &str) -> anyhow::Result<Option<JobState>> {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", job_id])
        .output()
        .context("cannot run `scontrol`")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("Invalid job id") {
            return Ok(None);
        }
        bail!("`scontrol show job {job_id}` failed: {}", stderr.trim());
    }
    // A job array prints a line per task; ours are single jobs.
    Ok(stdout.lines().find_map(JobState::parse))
}

/// Removes what `jobs/` holds of job `job_id` of `key`: its output, and the record and script
/// unless a later submission of the key replaced them. Records are replaced only under the
/// key's lock, so they are removed only under it: the caller holds it (or may go without:
/// `held`), or it is taken here when free (when not, another job of the key runs, and the
/// record is left for later).
fn forget(store: &Store, key: &str, job_id: &str, held: bool) {
    let jobs = store.root.join("jobs");
    let _ = std::fs::remove_file(jobs.join(format!("{key}-{job_id}.out")));
    let _lock = if held {
        None
    } else {
        match lock::try_acquire(&store.lock_path(key)) {
            Ok(Some(lock)) => Some(lock),
            _ => return,
        }
    };
    let record = jobs.join(format!("{key}.json"));
    if let Ok(b) = std::fs::read(&record)
        && serde_json::from_slice::<Submission>(&b).is_ok_and(|s| s.job_id == job_id)
    {
        let _ = std::fs::remove_file(&record);
        let _ = std::fs::remove_file(jobs.join(format!("{key}.sh")));
    }
}

/// `s` as one word for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The published, verified output of `key`, if any.
fn published(store: &Store, key: &str) -> Option<Manifest> {
    store.manifest(key).filter(|m| store.verify(m).is_ok())
}

impl Backend for Slurm {
    fn local(&self) -> bool {
        false
    }

    fn interrupt(&self) {
        let submitted = std::mem::take(&mut *self.submitted());
        if submitted.is_empty() {
            return;
        }
        let cancelled = Command::new("scancel")
            .args(submitted.keys())
            .status()
            .is_ok_and(|s| s.success());
        if !cancelled {
            // The records stay: the next driver adopts the jobs that still run.
            let ids: Vec<&str> = submitted.keys().map(String::as_str).collect();
            tracing::warn!("`scancel {}` failed; the jobs may still run", ids.join(" "));
            return;
        }
        // Not under the lock: a cancelled job may hold it a moment longer, and the process
        // exits now. A record is replaced only by a driver that saw its job end.
        for (id, (key, store)) in &submitted {
            forget(store, key, id, true);
        }
    }

    fn execute(
        &self,
        pipeline: &Pipeline,
        store: &Store,
        events: &dyn RunEvents,
        job: &Job,
        _artifacts: BTreeMap<String, Vec<InputArtifact>>,
    ) -> Result<Executed, Failure> {
        let node = &pipeline.nodes[job.node];
        let fail = |e: anyhow::Error| (e, Err("the job did not start".into()));
        let jobs = store.root.join("jobs");
        let record = jobs.join(format!("{}.json", job.key));
        let submitted_at = SystemTime::now();
        // Under the key's lock: already published, a live job of an earlier driver to adopt, or
        // a new submission, recorded before the lock is released.
        let (job_id, adopted, before) = {
            let _lock = lock::acquire(&store.lock_path(&job.key), |holder| {
                events.waiting(&node.name, holder.as_ref());
            })
            .map_err(|e| fail(e.into()))?;
            let earlier = std::fs::read(&record)
                .ok()
                .and_then(|b| serde_json::from_slice::<Submission>(&b).ok());
            if !job.forced
                && let Some(manifest) = published(store, &job.key)
            {
                // Published (by an earlier driver's job, say): nobody needs to adopt that job.
                if let Some(s) = earlier {
                    forget(store, &job.key, &s.job_id, true);
                }
                return Ok(Executed {
                    manifest,
                    how: Finish::Reused,
                    warnings: Vec::new(),
                });
            }
            // The output a forced rerun replaces: any other one afterwards is the job's.
            let before = published(store, &job.key).map(|m| m.started_unix_s);
            // A forced run never adopts (the earlier job may not rerun the node). When Slurm
            // cannot be asked, the job is taken to be live: a duplicate costs more than a wait.
            let live = earlier.filter(|s| {
                !job.forced && !matches!(query(&s.job_id), Ok(Some(state)) if state.ended())
            });
            match live {
                Some(s) => (s.job_id, true, before),
                None => {
                    let id = self.submit(store, node, job).map_err(fail)?;
                    let entry = Submission {
                        job_id: id.clone(),
                        node: node.name.clone(),
                    };
                    let bytes = serde_json::to_vec(&entry).expect("serialisable");
                    if let Err(e) = write_atomic(&record, &bytes) {
                        // Unrecorded, the job could be neither adopted nor cancelled later.
                        let _ = Command::new("scancel").arg(&id).status();
                        return Err(fail(
                            anyhow::Error::from(e)
                                .context(format!("cannot record Slurm job {id} (cancelled it)")),
                        ));
                    }
                    (id, false, before)
                }
            }
        };
        if !adopted {
            self.submitted()
                .insert(job_id.clone(), (job.key.clone(), store.clone()));
        }
        events.queued(
            &node.name,
            &if adopted {
                format!("Slurm job {job_id} (submitted by an earlier run)")
            } else {
                format!("Slurm job {job_id}")
            },
        );
        let end = self.wait(events, &node.name, &job_id);
        self.submitted().remove(&job_id);
        let output = jobs.join(format!("{}-{job_id}.out", job.key));
        let job_output = std::fs::read_to_string(&output).unwrap_or_default();
        // The job is over (a failure keeps its output in `failed/<node>.log`); one we lost
        // track of keeps its record, for the next driver to adopt.
        if end.is_ok() {
            forget(store, &job.key, &job_id, false);
        }
        let fresh = |m: &Manifest| !job.forced || before != Some(m.started_unix_s);
        let mut found = published(store, &job.key).filter(fresh);
        // On NFS, what another host just published may take the attribute-cache time to
        // appear here: a completed job gets that long.
        let patience = std::time::Instant::now();
        while found.is_none()
            && matches!(&end, Ok(Some(state)) if state.state == "COMPLETED")
            && patience.elapsed() < NFS_PATIENCE
        {
            std::thread::sleep(Duration::from_millis(500));
            // Listing the directory makes an NFS client revalidate it.
            let _ = std::fs::read_dir(store.root.join("objects")).map(|d| d.count());
            found = published(store, &job.key).filter(fresh);
        }
        if let Some(manifest) = found {
            return Ok(Executed {
                warnings: manifest.warnings.clone(),
                manifest,
                how: Finish::Ran,
            });
        }
        let resources = node.resources.or(&self.settings.resources);
        let error = match end {
            Ok(Some(state)) => {
                let mut message = format!("Slurm job {job_id} {}", state.failure(&resources));
                // What `run-node` said last: the node's own failure, or why it refused to run.
                let prefix = format!("node `{}` failed: ", node.name);
                if let Some(cause) = job_output
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("error: "))
                {
                    let cause = cause.strip_prefix(&prefix).unwrap_or(cause);
                    message.push_str(&format!(": {cause}"));
                }
                anyhow!(message)
            }
            Ok(None) => {
                anyhow!("Slurm job {job_id} is no longer known to Slurm and published nothing")
            }
            Err(e) => e.context(format!("lost track of Slurm job {job_id}")),
        };
        let log = keep_failed_log(
            store,
            &node.name,
            &job.key,
            submitted_at,
            &job_id,
            &job_output,
        );
        Err((error, log))
    }
}

impl Slurm {
    /// Polls `job_id` until it ends; `started` is reported when it first runs.
    fn wait(
        &self,
        events: &dyn RunEvents,
        node: &str,
        job_id: &str,
    ) -> anyhow::Result<Option<JobState>> {
        // Quick looks first, for short jobs, backing off to `poll_seconds` for long ones (and
        // again after each change of state).
        let slowest = Duration::from_secs_f64(self.settings.poll_seconds.max(0.05));
        let quickest = Duration::from_millis(200).min(slowest);
        let mut poll = quickest;
        let (mut started, mut failing_since, mut last) = (false, None, String::new());
        loop {
            match query(job_id) {
                Ok(None) => return Ok(None),
                Ok(Some(state)) => {
                    failing_since = None;
                    if state.state != last {
                        poll = quickest;
                        last.clone_from(&state.state);
                    }
                    if state.ended() {
                        // A job that ended between two looks still ran.
                        if !started && state.state != "CANCELLED" {
                            events.started(node);
                        }
                        return Ok(Some(state));
                    }
                    if state.state == "RUNNING" && !started {
                        started = true;
                        events.started(node);
                    }
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= QUERY_PATIENCE {
                        return Err(e);
                    }
                    tracing::warn!("{e:#}; retrying");
                }
            }
            std::thread::sleep(poll);
            poll = (poll * 2).min(slowest);
        }
    }
}

/// `failed/<node>.log`: the node's own log (as its run kept it, or, for a job killed before it
/// could, from its working directory), then the job's output (what Slurm and `run-node`
/// printed).
fn keep_failed_log(
    store: &Store,
    node: &str,
    key: &str,
    submitted_at: SystemTime,
    job_id: &str,
    job_output: &str,
) -> Result<PathBuf, String> {
    let path = store.failed_log(node);
    let newer = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .filter(|t| *t >= submitted_at)
    };
    let killed_run = || {
        std::fs::read_dir(store.root.join("tmp"))
            .ok()?
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{key}-"))
            })
            .map(|e| e.path().join("log.txt"))
            .filter_map(|log| Some((newer(&log)?, log)))
            .max()
            .map(|(_, log)| log)
    };
    let own = if newer(&path).is_some() {
        Some(path.clone())
    } else {
        killed_run()
    };
    let own = own
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let text = format!("{own}\n--- output of Slurm job {job_id} ---\n{job_output}");
    fs_err::create_dir_all(store.root.join("failed"))
        .and_then(|()| fs_err::write(&path, text))
        .map(|()| path)
        .map_err(|e| format!("its log could not be kept ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scontrol_lines() {
        let line = "JobId=7 JobName=pipeline:b UserId=root(0) JobState=TIMEOUT Reason=TimeLimit \
                    Dependency=(null) ExitCode=0:15 RunTime=00:01:02 TimeLimit=00:01:00";
        let s = JobState::parse(line).unwrap();
        assert_eq!(s.state, "TIMEOUT");
        assert_eq!(s.reason, "TimeLimit");
        assert_eq!(s.exit_status(), "0");
        assert!(s.ended());
        assert_eq!(
            s.failure(&StageResources::default()),
            "hit its time limit (00:01:00)"
        );
        let killed =
            JobState::parse("JobId=9 JobState=FAILED Reason=JobLaunchFailure ExitCode=0:9");
        assert_eq!(
            killed.unwrap().failure(&StageResources::default()),
            "was killed by signal 9"
        );
        let pending = JobState::parse("JobId=8 JobState=PENDING Reason=Resources").unwrap();
        assert!(!pending.ended());
        assert_eq!(JobState::parse("no state here"), None);
    }

    #[test]
    fn quotes_for_sh() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
