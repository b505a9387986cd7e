//! A real one-node Slurm cluster for integration tests, started by `scripts/one-node-slurm.sh`.
//!
//! ```ignore
//! let cluster = Cluster::shared();            // or Cluster::start() for a private one
//! let id = cluster.sbatch(&["--wrap", "echo hi"]);
//! let job = cluster.wait_finished(&id, Duration::from_secs(60));
//! assert_eq!(job.state(), "COMPLETED");
//! Command::new(env!("CARGO_BIN_EXE_pipeline")).env(cluster.env().0, cluster.env().1);
//! ```
//!
//! Lifetime: a `Cluster` is stopped (`one-node-slurm.sh stop`: its jobs cancelled, its daemons
//! and its private munged stopped and waited for) when it is dropped, also when a test panics.
//! Statics are never dropped, so the cluster shared by the tests of one binary lives in an
//! `Arc` that the tests hold: [`Cluster::shared`] hands out the running one (a `Weak` in a
//! static) or starts one, and the last test to finish with it stops it (keeping its directory,
//! logs included, when one of its tests panicked). Tests of one binary
//! running at the same time share one cluster; a test that starts after the others let go of it
//! gets a fresh one (a start costs about a second). A process killed before its drops ran
//! (Ctrl-C, SIGKILL) leaves its clusters running: the next `Cluster` start stops every cluster
//! whose owning process is gone (the directory names carry the owner's pid).
//!
//! Each cluster lives in its own directory under `$CARGO_TARGET_TMPDIR/slurm-clusters/`, with
//! free ports chosen by the script; starts are serialised across test processes by a file lock,
//! so two clusters never pick the same ports. Needs root (the CI machines are; the script
//! installs Slurm and MUNGE with apt-get when missing).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The script that starts and stops the clusters.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/one-node-slurm.sh");

/// CPUs the test node claims (more than a CI machine has: the jobs of tests mostly sleep, and
/// parallel tests should not queue behind each other). Memory: 4000 MB, split evenly.
pub const CPUS: u32 = 8;

/// Job states after which a job no longer changes (unless requeued).
pub const FINISHED: &[&str] = &[
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
];

#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    /// A test using it panicked: keep the directory (logs) when stopping.
    keep: AtomicBool,
}

/// A handle on the shared cluster ([`Cluster::shared`]); derefs to [`Cluster`].
#[derive(Debug)]
pub struct Shared(Arc<Cluster>);

impl std::ops::Deref for Shared {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.0
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if std::thread::panicking() || self.keep.load(Ordering::Relaxed) {
            self.0.keep.store(true, Ordering::Relaxed);
        }
    }
}

static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn base_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("slurm-clusters")
}

/// `bash one-node-slurm.sh CMD DIR` (bash: independent of the file's exec bit).
fn script(cmd: &str, dir: &Path) -> Output {
    let mut c = Command::new("bash");
    c.arg(SCRIPT).arg(cmd).arg(dir);
    hermetic(&mut c);
    c.output()
        .unwrap_or_else(|e| panic!("running bash {SCRIPT}: {e}"))
}

/// Removes the Slurm variables of the test's own environment (CI may itself run in a Slurm
/// job; `SBATCH_*` and `SQUEUE_*` variables act as options).
fn hermetic(c: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if [
            "SLURM_",
            "SBATCH_",
            "SQUEUE_",
            "SCONTROL_",
            "SALLOC_",
            "SRUN_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
        {
            c.env_remove(k.as_ref());
        }
    }
}

/// Stops the clusters whose owning test process is gone (killed before its drops ran).
fn reap_orphans(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let out = script("stop", &e.path());
        eprintln!(
            "stopped the orphaned Slurm cluster {}: {}",
            e.path().display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if out.status.success() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Cluster {
    /// Starts a private cluster (stopped when dropped); panics with the script's output
    /// (errors, log tails) if it cannot.
    pub fn start() -> Cluster {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The cluster shared by the tests of this binary that run at the same time (see the
    /// module documentation).
    pub fn shared() -> Shared {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = shared.upgrade() {
            return Shared(c);
        }
        let c = Arc::new(Self::start());
        *shared = Arc::downgrade(&c);
        Shared(c)
    }

    pub fn try_start() -> Result<Cluster, String> {
        let base = base_dir();
        std::fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
        // One start at a time across test processes: ports are chosen free, then bound.
        let lock = File::create(base.join(".lock"))
            .map_err(|e| format!("creating {}/.lock: {e}", base.display()))?;
        lock.lock()
            .map_err(|e| format!("locking {}/.lock: {e}", base.display()))?;
        reap_orphans(&base);
        let dir = base.join(format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // left by an earlier process that had our pid (so the reaper skipped it)
        if dir.exists() {
            script("stop", &dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
        let mut c = Command::new("bash");
        c.arg(SCRIPT)
            .arg("start")
            .arg(&dir)
            .env("ONE_NODE_SLURM_CPUS", CPUS.to_string());
        hermetic(&mut c);
        let out = c
            .output()
            .map_err(|e| format!("running bash {SCRIPT}: {e}"))?;
        drop(lock);
        let cluster = Cluster {
            conf: dir.join("slurm.conf"),
            dir,
            keep: AtomicBool::new(false),
        };
        if !out.status.success() {
            // dropping `cluster` stops what did start
            return Err(format!(
                "{SCRIPT} start {} failed ({}):\n{}{}",
                cluster.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(cluster)
    }

    /// The cluster's directory (config, `log/`, state); a good place for job output files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `("SLURM_CONF", path of slurm.conf)`: what Slurm commands (and the executor) need.
    pub fn env(&self) -> (&'static str, &Path) {
        ("SLURM_CONF", &self.conf)
    }

    /// A Slurm command (sbatch, squeue, scontrol, scancel, sinfo...) talking to this cluster.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        hermetic(&mut c);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// Runs a Slurm command; panics unless it succeeds; its stdout.
    #[track_caller]
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `sbatch --parsable ARGS`: the job id. Output goes to `dir()/job.%j.out` unless ARGS
    /// name `-o`/`--output`.
    #[track_caller]
    pub fn sbatch(&self, args: &[&str]) -> String {
        let out_default = format!("--output={}/job.%j.out", self.dir.display());
        let mut all = vec!["--parsable"];
        if !args.iter().any(|a| *a == "-o" || a.starts_with("--output")) {
            all.push(&out_default);
        }
        all.extend_from_slice(args);
        let id = self.run("sbatch", &all);
        // --parsable: "id" or "id;cluster"
        id.trim().split(';').next().unwrap_or_default().to_owned()
    }

    /// The default output file of a job submitted by [`Cluster::sbatch`].
    pub fn output_of(&self, id: &str) -> String {
        let p = self.dir.join(format!("job.{id}.out"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    }

    /// `scontrol show job -o ID`, parsed; `None` once Slurm no longer knows the job (never
    /// submitted, or finished more than MinJobAge = 300 s ago).
    pub fn show_job(&self, id: &str) -> Option<Job> {
        let out = self
            .command("scontrol")
            .args(["show", "job", "-o", id])
            .output()
            .expect("running scontrol");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("JobId="))?;
        out.status.success().then(|| Job::parse(line))
    }

    /// `squeue --states=all -h -j ID -o %T`: the state, or `None` for a job Slurm no longer
    /// knows.
    pub fn squeue_state(&self, id: &str) -> Option<String> {
        let out = self
            .command("squeue")
            .args(["--states=all", "-h", "-j", id, "-o", "%T"])
            .output()
            .expect("running squeue");
        let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !s.is_empty()).then_some(s)
    }

    /// Polls `scontrol show job` until `done` holds; panics after `timeout` with the job's last
    /// fields and the daemons' log tails.
    #[track_caller]
    pub fn wait_job(&self, id: &str, timeout: Duration, mut done: impl FnMut(&Job) -> bool) -> Job {
        let t0 = Instant::now();
        let mut last = None;
        while t0.elapsed() < timeout {
            if let Some(job) = self.show_job(id) {
                if done(&job) {
                    return job;
                }
                last = Some(job);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "job {id}: condition not met after {timeout:?}; last seen: {}\n{}",
            last.map_or_else(|| "unknown to Slurm".to_owned(), |j| j.line),
            self.log_tails()
        );
    }

    /// Waits until the job is in `state` (e.g. "RUNNING").
    #[track_caller]
    pub fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Job {
        self.wait_job(id, timeout, |j| j.state() == state)
    }

    /// Waits until the job is in one of the [`FINISHED`] states.
    #[track_caller]
    pub fn wait_finished(&self, id: &str, timeout: Duration) -> Job {
        self.wait_job(id, timeout, |j| FINISHED.contains(&j.state()))
    }

    /// The last lines of the daemons' logs, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut s = String::new();
        for name in ["slurmctld.log", "slurmd.log"] {
            let p = self.dir.join("log").join(name);
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            s += &format!("--- last lines of {}:\n", p.display());
            for l in &lines[lines.len().saturating_sub(20)..] {
                s += l;
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = script("stop", &self.dir);
        if !out.status.success() {
            eprintln!(
                "stopping the Slurm cluster in {} failed ({}):\n{}",
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        if std::thread::panicking() || self.keep.load(Ordering::Relaxed) {
            // keep config and logs for the post-mortem (the next test run removes them)
            eprintln!(
                "Slurm cluster stopped; its logs: {}/log",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One line of `scontrol show job -o`, as `Key=Value` fields.
#[derive(Debug, Clone)]
pub struct Job {
    pub line: String,
    pub fields: BTreeMap<String, String>,
}

impl Job {
    /// Splits at the spaces that precede a `Key=` (values such as paths may hold spaces).
    pub fn parse(line: &str) -> Job {
        let mut fields = BTreeMap::new();
        let mut key: Option<String> = None;
        let mut value = String::new();
        for token in line.trim().split(' ') {
            let starts_field = token.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.starts_with(|c: char| c.is_ascii_alphabetic())
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_:/".contains(c))
            });
            if starts_field {
                if let Some(k) = key.take() {
                    fields.insert(k, std::mem::take(&mut value));
                }
                let (k, v) = token.split_once('=').unwrap();
                key = Some(k.to_owned());
                value = v.to_owned();
            } else if key.is_some() {
                value.push(' ');
                value += token;
            }
        }
        if let Some(k) = key {
            fields.insert(k, value);
        }
        Job {
            line: line.trim().to_owned(),
            fields,
        }
    }

    /// A field's value ("" when absent).
    pub fn get(&self, key: &str) -> &str {
        self.fields.get(key).map_or("", String::as_str)
    }

    /// `JobState`: PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    pub fn state(&self) -> &str {
        self.get("JobState")
    }

    pub fn reason(&self) -> &str {
        self.get("Reason")
    }

    /// `ExitCode`: "status:signal", e.g. "3:0" (exit 3) or "0:15" (killed by SIGTERM).
    pub fn exit_code(&self) -> &str {
        self.get("ExitCode")
    }

    pub fn restarts(&self) -> u32 {
        self.get("Restarts").parse().unwrap_or(0)
    }
}
