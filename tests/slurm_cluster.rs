//! Smoke tests of the one-node Slurm cluster (scripts/one-node-slurm.sh, tests/common/slurm.rs):
//! real jobs through sbatch, and the states Slurm reports for them, which is what the Slurm
//! executor reads. `cargo test --test slurm_cluster -- --nocapture` prints each job's
//! `scontrol show job -o` fields.

mod common {
    pub mod slurm;
}

use std::time::Duration;

use common::slurm::{Cluster, Job};

const WAIT: Duration = Duration::from_secs(60);

fn show(case: &str, job: &Job) {
    println!(
        "{case}: JobId={} JobState={} Reason={} ExitCode={} Restarts={} TimeLimit={}",
        job.get("JobId"),
        job.state(),
        job.reason(),
        job.exit_code(),
        job.restarts(),
        job.get("TimeLimit")
    );
}

/// Whether `ExitCode` is that of a batch script ended by Slurm's SIGTERM. Slurm signals the
/// job's processes one by one: the script's shell is either killed itself ("0:15") or first
/// sees its `sleep` die and exits with 128 + 15 ("143:0"); both were seen here.
fn ended_by_sigterm(exit_code: &str) -> bool {
    matches!(exit_code, "0:15" | "143:0")
}

#[test]
fn cpu_job_completes() {
    let c = Cluster::shared();
    let id = c.sbatch(&["-c1", "--mem=100M", "--wrap", "echo hi from $SLURM_JOB_ID"]);
    let job = c.wait_finished(&id, WAIT);
    show("completed", &job);
    assert_eq!(
        (job.state(), job.reason(), job.exit_code()),
        ("COMPLETED", "None", "0:0")
    );
    assert_eq!(c.output_of(&id).trim(), format!("hi from {id}"));
    // squeue sees finished jobs too (--states=all), for MinJobAge = 300 s
    assert_eq!(c.squeue_state(&id).as_deref(), Some("COMPLETED"));
}

#[test]
fn gpu_job_sees_its_gpu() {
    let c = Cluster::shared();
    let id = c.sbatch(&[
        "--gres=gpu:1",
        "-c1",
        "--mem=100M",
        "--wrap",
        "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES",
    ]);
    let job = c.wait_finished(&id, WAIT);
    show("gpu", &job);
    assert_eq!(job.state(), "COMPLETED");
    assert_eq!(job.get("TresPerNode"), "gres:gpu:1");
    assert_eq!(c.output_of(&id).trim(), "CUDA_VISIBLE_DEVICES=0");
}

#[test]
fn nonzero_exit_fails() {
    let c = Cluster::shared();
    let id = c.sbatch(&["--wrap", "echo failing; exit 3"]);
    let job = c.wait_finished(&id, WAIT);
    show("exit 3", &job);
    assert_eq!(
        (job.state(), job.reason(), job.exit_code()),
        ("FAILED", "NonZeroExitCode", "3:0")
    );
    assert_eq!(c.squeue_state(&id).as_deref(), Some("FAILED"));
}

#[test]
fn killed_processes_fail() {
    let c = Cluster::shared();
    // a process of the job killed by SIGKILL (as by the OOM killer): the script exits 137
    let child = c.sbatch(&["--wrap", "sh -c 'kill -9 $$'"]);
    // the batch script itself killed
    let script = c.sbatch(&["--wrap", "kill -9 $$"]);
    let child = c.wait_finished(&child, WAIT);
    let script = c.wait_finished(&script, WAIT);
    show("child killed by SIGKILL", &child);
    show("batch script killed by SIGKILL", &script);
    assert_eq!(
        (child.state(), child.reason(), child.exit_code()),
        ("FAILED", "NonZeroExitCode", "137:0")
    );
    assert_eq!((script.state(), script.exit_code()), ("FAILED", "0:9"));
}

#[test]
fn scancel_cancels() {
    let c = Cluster::shared();
    let running = c.sbatch(&["--wrap", "sleep 300"]);
    let held = c.sbatch(&["--hold", "--wrap", "sleep 300"]);
    let job = c.wait_state(&running, "RUNNING", WAIT);
    show("running", &job);
    let job = c.wait_state(&held, "PENDING", WAIT);
    show("held (pending)", &job);
    assert_eq!(job.reason(), "JobHeldUser");
    c.run("scancel", &[&running, &held]);
    let job = c.wait_finished(&running, WAIT);
    show("cancelled while running", &job);
    assert_eq!(job.state(), "CANCELLED");
    assert!(ended_by_sigterm(job.exit_code()), "{}", job.exit_code());
    let job = c.wait_finished(&held, WAIT);
    show("cancelled while pending", &job);
    assert_eq!((job.state(), job.exit_code()), ("CANCELLED", "0:0"));
}

/// Slurm's time limits are whole minutes (`--time=0:05` is 1 minute) and slurmctld enforces
/// them every 30 s. A test does not wait for a minute: once the job runs, `scontrol update
/// TimeLimit=0` makes it overdue, and the next check (at most 30 s later) ends it.
#[test]
fn time_limit_times_out() {
    let c = Cluster::shared();
    let id = c.sbatch(&["--time=0:05", "--wrap", "sleep 300"]);
    let job = c.wait_state(&id, "RUNNING", WAIT);
    show("--time=0:05", &job);
    assert_eq!(job.get("TimeLimit"), "00:01:00", "rounded up to a minute");
    c.run(
        "scontrol",
        &["update", &format!("JobId={id}"), "TimeLimit=0"],
    );
    let job = c.wait_finished(&id, Duration::from_secs(90));
    show("time limit", &job);
    assert_eq!((job.state(), job.reason()), ("TIMEOUT", "TimeLimit"));
    assert!(ended_by_sigterm(job.exit_code()), "{}", job.exit_code());
    assert_eq!(c.squeue_state(&id).as_deref(), Some("TIMEOUT"));
}

/// `scontrol requeue` keeps the job id, counts `Restarts`, and the rerun sees
/// `SLURM_RESTART_COUNT`.
#[test]
fn requeue_keeps_the_job_id() {
    let c = Cluster::shared();
    let out = c.dir().join("requeue.out");
    let id = c.sbatch(&[
        "--open-mode=append",
        &format!("--output={}", out.display()),
        "--wrap",
        "echo run ${SLURM_RESTART_COUNT:-unset} job $SLURM_JOB_ID; \
         [ -n \"$SLURM_RESTART_COUNT\" ] || sleep 300",
    ]);
    c.wait_state(&id, "RUNNING", WAIT);
    c.run("scontrol", &["requeue", &id]);
    // the states seen while polling (every 0.2 s, so short ones may be missed)
    let mut seen: Vec<String> = Vec::new();
    let job = c.wait_job(&id, WAIT, |j| {
        let s = format!("{} ({}, Restarts={})", j.state(), j.reason(), j.restarts());
        if seen.last() != Some(&s) {
            println!("requeue: {s} ExitCode={}", j.exit_code());
            seen.push(s);
        }
        j.state() == "COMPLETED"
    });
    assert!(
        seen.iter().any(|s| s.starts_with("PENDING")),
        "a requeued job pends before it runs again: {seen:?}"
    );
    show("requeued, then completed", &job);
    assert_eq!(job.get("JobId"), id);
    assert_eq!(job.restarts(), 1);
    // stdout and stderr of both runs, appended: slurmstepd notes the requeue in between
    let text = std::fs::read_to_string(&out).unwrap();
    println!("requeued job's output:\n{text}");
    let runs: Vec<&str> = text.lines().filter(|l| l.starts_with("run ")).collect();
    assert_eq!(
        runs,
        [format!("run unset job {id}"), format!("run 1 job {id}")]
    );
    assert!(text.contains("DUE TO JOB REQUEUE"), "{text}");
}

#[test]
fn unknown_jobs_and_impossible_requests() {
    let c = Cluster::shared();
    assert!(c.show_job("999999").is_none());
    assert_eq!(c.squeue_state("999999"), None);
    // more than the node has: refused at submission, not left pending
    let out = c
        .command("sbatch")
        .args(["--parsable", "--gres=gpu:2", "--wrap", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    println!("sbatch --gres=gpu:2: {}", err.trim());
    assert!(
        err.contains("Requested node configuration is not available"),
        "{err}"
    );
}

/// Two clusters side by side (own ports, own munged): stopping one leaves the other working.
#[test]
fn clusters_are_independent() {
    let shared = Cluster::shared();
    let private = Cluster::start();
    assert_ne!(shared.env().1, private.env().1);
    let id = private.sbatch(&["--wrap", "echo private"]);
    assert_eq!(private.wait_finished(&id, WAIT).state(), "COMPLETED");
    let dir = private.dir().to_owned();
    drop(private);
    assert!(!dir.exists(), "a cluster's directory goes with it");
    let id = shared.sbatch(&["--wrap", "echo shared"]);
    assert_eq!(shared.wait_finished(&id, WAIT).state(), "COMPLETED");
}
