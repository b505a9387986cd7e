//! The Slurm executor on a real one-node cluster (`scripts/one-node-slurm.sh`, started and
//! stopped by `tests/common/slurm.rs`): every stale node one job, published exactly as a local
//! run publishes it; failures named with the reason, the job id and the log; interrupted and
//! killed drivers; two drivers at once.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::slurm::Cluster;
use common::{Run, TestProject, counted};

/// How the test pipelines reach the cluster: quick polling, for short tests.
const SLURM: &str = r#"
[settings.executor]
kind = "slurm"
slurm = { poll_seconds = 0.2 }
"#;

/// A DAG of `command` nodes: `a` → `b`, and `c` on its own.
const DAG: &str = r#"
[stages.a]
kind = "command"
params = { run = "echo x >> \"$PROJECT/count.a\"; echo hello > a.txt" }

[stages.b]
kind = "command"
inputs = { a = "a" }
params = { run = "echo x >> \"$PROJECT/count.b\"; cat $IN_A/a.txt > b.txt; echo ::warning::b is careful" }

[stages.c]
kind = "command"
params = { run = "echo c > c.txt" }
"#;

fn on_slurm(toml: &str) -> TestProject {
    TestProject::new(&format!("{SLURM}{toml}"))
}

fn command(p: &TestProject, cluster: &Cluster, args: &[&str]) -> Command {
    let mut cmd = p.command(args);
    let (name, value) = cluster.env();
    cmd.env(name, value);
    cmd
}

fn run(p: &TestProject, cluster: &Cluster, args: &[&str]) -> Run {
    Run::from(command(p, cluster, args).output().expect("the binary runs"))
}

fn spawn(p: &TestProject, cluster: &Cluster, args: &[&str]) -> Child {
    command(p, cluster, args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// The ids of the jobs of `p`'s node `node` that the cluster knows, in any state (tests share
/// the cluster: jobs are told apart by their working directory).
fn jobs_of(cluster: &Cluster, p: &TestProject, node: &str) -> Vec<String> {
    let dir = p.path().to_string_lossy().into_owned();
    cluster
        .run(
            "squeue",
            &[
                "--states=all",
                "-h",
                "-o",
                "%i %Z",
                &format!("--name=pipeline:{node}"),
            ],
        )
        .lines()
        .filter_map(|l| {
            let (id, workdir) = l.split_once(' ')?;
            (workdir.trim() == dir).then(|| id.to_owned())
        })
        .collect()
}

/// Polls until `cond` holds (not a timing assertion: the test fails only if it never does).
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(120), "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn job_files(p: &TestProject) -> Vec<String> {
    std::fs::read_dir(p.path().join("artifacts/jobs"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_dag_through_slurm_publishes_what_a_local_run_does_and_resources_rerun_nothing() {
    let cluster = Cluster::shared();
    let remote = on_slurm(DAG);
    let local = TestProject::new(DAG);
    let r = run(&remote, &cluster, &["run"]).ok();
    assert!(r.stderr.contains("queued `a`: Slurm job"), "{}", r.stderr);
    // The job's warning reaches the driver's summary.
    assert!(
        r.stderr.contains("warning: `b`: b is careful"),
        "{}",
        r.stderr
    );
    local.run(&["run", "-q"]).ok();
    assert_eq!(remote.objects(), local.objects(), "the same keys");
    for node in ["a", "b", "c"] {
        assert_eq!(remote.files(node), local.files(node), "{node}");
    }
    assert_eq!(jobs_of(&cluster, &remote, "b").len(), 1);
    assert!(job_files(&remote).is_empty(), "{:?}", job_files(&remote));

    // Cached nodes never become jobs; resources are not part of any key.
    let r = run(&remote, &cluster, &["run"]).ok();
    assert!(
        r.stderr.contains("everything is up to date"),
        "{}",
        r.stderr
    );
    remote.write_config(&format!(
        "{SLURM}{}",
        DAG.replace(
            "inputs = { a = \"a\" }",
            "inputs = { a = \"a\" }\nresources = { cpus = 2, mem = \"200M\", time = \"10\", gpus = 1 }"
        )
    ));
    let r = run(&remote, &cluster, &["run"]).ok();
    assert!(
        r.stderr.contains("everything is up to date"),
        "{}",
        r.stderr
    );
    assert_eq!(jobs_of(&cluster, &remote, "b").len(), 1);
    assert_eq!((remote.runs("a"), remote.runs("b")), (1, 1));
    // `status` agrees, and the local executor sees the same store as built.
    assert!(!remote.status().contains("stale"), "{}", remote.status());
    let r = run(&remote, &cluster, &["run", "--executor", "local"]).ok();
    assert!(
        r.stderr.contains("everything is up to date"),
        "{}",
        r.stderr
    );
    // A forced rerun through Slurm replaces the output (same bytes, a new run).
    let r = run(&remote, &cluster, &["run", "--force", "b"]).ok();
    assert!(r.stderr.contains("b     ran"), "{}", r.stderr);
    assert_eq!(remote.runs("b"), 2);
    assert_eq!(jobs_of(&cluster, &remote, "b").len(), 2);
}

#[test]
fn a_failing_job_names_its_reason_id_and_log_and_independent_branches_go_on() {
    let cluster = Cluster::shared();
    let p = on_slurm(
        r#"
[stages.bad]
kind = "command"
params = { run = "echo oops >&2; exit 3" }

[stages.after-bad]
kind = "command"
inputs = { bad = "bad" }
params = { run = "true" }

[stages.good]
kind = "command"
params = { run = "echo fine > g.txt" }
"#,
    );
    let r = run(&p, &cluster, &["run"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("error: node `bad` failed"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(
        line.contains("Slurm job ")
            && line.contains("failed with exit code 1")
            && line.contains("exit status: 3"),
        "{line}"
    );
    assert!(r.stderr.contains("skipped (`bad` failed)"), "{}", r.stderr);
    assert!(p.latest("good").join("g.txt").exists());
    let log = p.read("artifacts/failed/bad.log");
    assert!(log.contains("oops"), "{log}");
    assert!(log.contains("--- output of Slurm job"), "{log}");
}

#[test]
fn a_cancelled_job_and_a_time_limit_fail_their_nodes_with_the_reason() {
    let cluster = Cluster::shared();
    let p = on_slurm(
        r#"
[stages.cancelled]
kind = "command"
params = { run = "touch \"$PROJECT/started\"; sleep 60" }

[stages.slow]
kind = "command"
params = { run = "touch \"$PROJECT/slow\"; sleep 300" }
resources = { time = "1" }
"#,
    );
    let driver = spawn(&p, &cluster, &["run"]);
    common::wait_for_long(&p.path().join("started"));
    let id = jobs_of(&cluster, &p, "cancelled").pop().unwrap();
    cluster.run("scancel", &[&id]);
    // `time` reached the job; then the limit is made overdue, as Slurm's limits are minutes.
    common::wait_for_long(&p.path().join("slow"));
    let slow = jobs_of(&cluster, &p, "slow").pop().unwrap();
    assert_eq!(
        cluster.show_job(&slow).unwrap().get("TimeLimit"),
        "00:01:00"
    );
    cluster.run(
        "scontrol",
        &["update", &format!("JobId={slow}"), "TimeLimit=0"],
    );
    let out = driver.wait_with_output_stderr();
    assert_eq!(out.0, Some(1), "{}", out.1);
    assert!(
        out.1.contains("node `cancelled` failed: Slurm job ") && out.1.contains("was cancelled"),
        "{}",
        out.1
    );
    assert!(
        out.1.contains("node `slow` failed: Slurm job ") && out.1.contains("hit its time limit"),
        "{}",
        out.1
    );
    assert!(p.path().join("artifacts/failed/slow.log").exists());
}

#[test]
fn a_requeued_job_still_publishes_once() {
    let cluster = Cluster::shared();
    // The command resumes: a second start (after the requeue) finds its scratch mark.
    let p = on_slurm(&format!(
        r#"
[stages.train]
kind = "command"
params = {{ run = '{}' }}
"#,
        counted(
            "train",
            "if [ -e \"$SCRATCH/half\" ]; then echo resumed > out.txt; else touch \"$SCRATCH/half\"; touch \"$PROJECT/running\"; sleep 60; fi"
        )
    ));
    let driver = spawn(&p, &cluster, &["run"]);
    common::wait_for_long(&p.path().join("running"));
    let id = jobs_of(&cluster, &p, "train").pop().unwrap();
    cluster.run("scontrol", &["requeue", &id]);
    let out = driver.wait_with_output_stderr();
    assert_eq!(out.0, Some(0), "{}", out.1);
    assert_eq!(p.read("artifacts/latest/train/out.txt"), "resumed\n");
    assert_eq!(p.runs("train"), 2, "one start, one resumed start");
    assert_eq!(jobs_of(&cluster, &p, "train"), vec![id], "the same job");
}

#[test]
fn ctrl_c_cancels_the_submitted_jobs() {
    let cluster = Cluster::shared();
    let p = on_slurm(
        r#"
[stages.long]
kind = "command"
params = { run = "touch \"$PROJECT/running\"; sleep 120" }
"#,
    );
    let driver = spawn(&p, &cluster, &["run"]);
    common::wait_for_long(&p.path().join("running"));
    let id = jobs_of(&cluster, &p, "long").pop().unwrap();
    signal(driver.id(), "INT");
    let out = driver.wait_with_output_stderr();
    assert_eq!(out.0, Some(130), "{}", out.1);
    eventually("the job is cancelled", || {
        cluster.squeue_state(&id).as_deref() == Some("CANCELLED")
    });
    assert!(job_files(&p).is_empty(), "{:?}", job_files(&p));
}

#[test]
fn a_killed_driver_leaves_a_job_that_the_next_driver_adopts() {
    let cluster = Cluster::shared();
    let p = on_slurm(&format!(
        r#"
[stages.slow]
kind = "command"
params = {{ run = '{}' }}

[stages.after]
kind = "command"
inputs = {{ slow = "slow" }}
params = {{ run = "cat $IN_SLOW/s.txt > t.txt" }}
"#,
        counted(
            "slow",
            "touch \"$PROJECT/running\"; sleep 3; echo s > s.txt"
        )
    ));
    let mut driver = spawn(&p, &cluster, &["run"]);
    common::wait_for_long(&p.path().join("running"));
    driver.kill().unwrap();
    driver.wait().unwrap();
    // A second driver, while the first one's job still runs: no second job for `slow`.
    run(&p, &cluster, &["run"]).ok();
    assert_eq!(jobs_of(&cluster, &p, "slow").len(), 1);
    assert_eq!(p.runs("slow"), 1);
    assert_eq!(p.read("artifacts/latest/after/t.txt"), "s\n");
    assert!(job_files(&p).is_empty(), "{:?}", job_files(&p));
}

#[test]
fn two_drivers_at_once_run_each_node_once() {
    let cluster = Cluster::shared();
    let p = on_slurm(&format!(
        r#"
[stages.a]
kind = "command"
params = {{ run = '{}' }}

[stages.b]
kind = "command"
inputs = {{ a = "a" }}
params = {{ run = '{}' }}
"#,
        counted("a", "sleep 2; echo a > a.txt"),
        counted("b", "cat $IN_A/a.txt > b.txt")
    ));
    let first = spawn(&p, &cluster, &["run"]);
    let second = spawn(&p, &cluster, &["run"]);
    for driver in [first, second] {
        let out = driver.wait_with_output_stderr();
        assert_eq!(out.0, Some(0), "{}", out.1);
    }
    assert_eq!((p.runs("a"), p.runs("b")), (1, 1));
    assert_eq!(jobs_of(&cluster, &p, "a").len(), 1);
    assert_eq!(p.read("artifacts/latest/b/b.txt"), "a\n");
}

#[test]
fn the_method_runs_through_slurm_as_it_runs_locally() {
    let cluster = Cluster::shared();
    let tiny = include_str!("data/tiny.toml");
    let remote = on_slurm(tiny);
    let local = TestProject::new(tiny);
    run(&remote, &cluster, &["run", "-q"]).ok();
    local.run(&["run", "-q"]).ok();
    assert_eq!(remote.objects(), local.objects(), "the same keys");
    for node in ["features", "correspondences", "report"] {
        assert_eq!(remote.files(node), local.files(node), "{node}");
    }
    assert!(!jobs_of(&cluster, &remote, "train.seed-1").is_empty());
}

/// Sends signal `sig` (`INT`) to `pid`.
fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

trait WaitStderr {
    /// The exit code and what the process wrote to stderr.
    fn wait_with_output_stderr(self) -> (Option<i32>, String);
}

impl WaitStderr for Child {
    fn wait_with_output_stderr(self) -> (Option<i32>, String) {
        let out = self.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}
