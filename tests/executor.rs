//! End-to-end tests of the executor through the `pipeline` binary, and of the events a run
//! reports to a library caller, with the built-in `command` kind only.

mod common;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use common::{TestProject, counted, wait_for};
use pipeline::events::{Finish, RunEvents};
use pipeline::project::{Budget, Project, RunTargets};
use pipeline::scheduler::Local;

/// data (external dir) -> a -> b -> c, and an independent d.
fn chain(b_run: &str) -> String {
    format!(
        r#"
[stages.a]
kind = "command"
params = {{ run = '{a}' }}
inputs = {{ raw = {{ path = "data" }} }}

[stages.b]
kind = "command"
params = {{ run = '{b}' }}
inputs = {{ a = "a" }}

[stages.c]
kind = "command"
params = {{ run = '{c}' }}
inputs = {{ b = "b" }}

[stages.d]
kind = "command"
params = {{ run = '{d}' }}
"#,
        a = counted("a", "cat $IN_RAW/* > a.txt"),
        b = counted("b", b_run),
        c = counted("c", "cat $IN_B/b.txt > c.txt"),
        d = counted("d", "echo d > d.txt"),
    )
}

fn project(b_run: &str) -> TestProject {
    let p = TestProject::new(&chain(b_run));
    p.write("data/1.txt", "one\n");
    p.write("data/2.txt", "two\n");
    p
}

fn counts(p: &TestProject) -> [usize; 4] {
    [p.runs("a"), p.runs("b"), p.runs("c"), p.runs("d")]
}

#[test]
fn first_run_builds_everything_and_second_is_a_no_op() {
    let p = project("cat $IN_A/a.txt > b.txt");
    let r = p.run(&["run"]).ok();
    assert!(r.stderr.contains("ran"), "{}", r.stderr);
    assert_eq!(counts(&p), [1, 1, 1, 1]);
    assert_eq!(
        std::fs::read_to_string(p.latest("c").join("c.txt")).unwrap(),
        "one\ntwo\n"
    );
    let r = p.run(&["run"]).ok();
    assert_eq!(r.stderr, "everything is up to date (4 nodes)\n");
    assert_eq!(counts(&p), [1, 1, 1, 1]);
    assert_eq!(
        p.status(),
        "a  up to date\nb  up to date\nc  up to date\nd  up to date\n"
    );
}

#[test]
fn key_ignores_toml_formatting_but_follows_params_and_input_content() {
    let p = project("cat $IN_A/a.txt > b.txt");
    p.run(&["run"]).ok();
    // Same pipeline, other key order, table syntax and whitespace.
    let reformatted = chain("cat $IN_A/a.txt > b.txt")
        .replace(
            "[stages.d]\nkind = \"command\"\nparams = {",
            "[stages.d]\nparams = {",
        )
        .replace(
            "[stages.d]\n",
            "[stages.d]\nkind   =   \"command\"   # the same kind\n",
        )
        + "\n[settings]\nartifacts = \"artifacts\"\n";
    assert_ne!(reformatted, chain("cat $IN_A/a.txt > b.txt"));
    p.write_config(&reformatted);
    assert_eq!(
        p.run(&["run"]).ok().stderr,
        "everything is up to date (4 nodes)\n"
    );

    // Same content under another mtime: still cached.
    p.write("data/1.txt", "one\n");
    assert_eq!(
        p.run(&["run"]).ok().stderr,
        "everything is up to date (4 nodes)\n"
    );

    // Input content changes the key of `a`.
    p.write("data/2.txt", "TWO\n");
    assert!(p.status().starts_with("a  stale: input `raw` changed\n"));
    p.run(&["run"]).ok();
    assert_eq!(counts(&p), [2, 2, 2, 1]);
}

#[test]
fn parameter_edit_reruns_that_node_and_downstream_only_when_its_output_changes() {
    let p = project("cat $IN_A/a.txt > b.txt");
    p.run(&["run"]).ok();
    // A new command that writes the same bytes: b reruns, c stays cached (early cutoff).
    p.write_config(&chain("cat $IN_A/a.txt > b.txt # same output"));
    assert_eq!(
        p.status(),
        "a  up to date\n\
         b  stale: parameter `run` changed from \"echo x >> \\\"$PROJECT/count.b\\\"; cat $IN_A/a.txt > b.txt\" to \"echo x >> \\\"$PROJECT/count.b\\\"; cat $IN_A/a.txt > b.txt # same output\"\n\
         c  stale: upstream node `b` is stale\n\
         d  up to date\n"
    );
    p.run(&["run"]).ok();
    assert_eq!(counts(&p), [1, 2, 1, 1]);
    // A command with another output: c reruns too.
    p.write_config(&chain("tac $IN_A/a.txt > b.txt"));
    p.run(&["run"]).ok();
    assert_eq!(counts(&p), [1, 3, 2, 1]);
    assert_eq!(
        std::fs::read_to_string(p.latest("c").join("c.txt")).unwrap(),
        "two\none\n"
    );
    // Reverting finds the earlier artifacts without running anything.
    p.write_config(&chain("cat $IN_A/a.txt > b.txt"));
    assert_eq!(
        p.run(&["run"]).ok().stderr,
        "everything is up to date (4 nodes)\n"
    );
    assert_eq!(counts(&p), [1, 3, 2, 1]);
    assert_eq!(
        std::fs::read_to_string(p.latest("c").join("c.txt")).unwrap(),
        "one\ntwo\n"
    );
}

#[test]
fn run_node_runs_only_what_it_needs_and_force_reruns() {
    let p = project("cat $IN_A/a.txt > b.txt");
    p.run(&["run", "b"]).ok();
    assert_eq!(counts(&p), [1, 1, 0, 0]);
    assert_eq!(
        p.run(&["run", "--dry-run"]).ok().stdout,
        "would run `c`: never built\nwould run `d`: never built\n"
    );
    p.run(&["run", "d"]).ok();
    assert_eq!(counts(&p), [1, 1, 0, 1]);
    // `--force` with targets: only those; without: everything stale plus the forced node.
    p.run(&["run", "--force", "b", "b"]).ok();
    assert_eq!(counts(&p), [1, 2, 0, 1]);
    assert_eq!(
        p.run(&["run", "--dry-run", "--force", "a"]).ok().stdout,
        "would run `a`: forced with `--force`\nwould run `b`: upstream node `a` is stale\nwould run `c`: upstream node `b` is stale\n"
    );
    p.run(&["run", "--force", "a"]).ok();
    assert_eq!(counts(&p), [2, 2, 1, 1]);
    let r = p.run(&["run", "nope"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: no stage or node named `nope` in `pipeline.toml`\n"
    );
}

#[test]
fn scheduler_respects_the_thread_budget() {
    // Each node marks itself running and fails if a node it must not overlap with is running.
    let node = |name: &str, threads: usize, exclusive_with: &str| {
        format!(
            r#"
[stages.{name}]
kind = "command"
params = {{ run = 'touch "$PROJECT/{name}.on"; for o in {exclusive_with}; do [ ! -e "$PROJECT/$o.on" ] || exit 9; done; sleep 0.2; for o in {exclusive_with}; do [ ! -e "$PROJECT/$o.on" ] || exit 9; done; rm "$PROJECT/{name}.on"', threads = {threads} }}
"#
        )
    };
    // With 2 threads: `wide` (2 threads) never overlaps anything; `x` and `y` may overlap.
    let config = node("x", 1, "wide")
        + &node("y", 1, "wide")
        + &node("wide", 2, "x y")
        + &node("huge", 8, "x y wide");
    let p = TestProject::new(&config);
    let r = p.run(&["run", "--jobs", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // With 1 thread nothing overlaps.
    let config = node("x", 1, "y") + &node("y", 1, "x") + &node("z", 1, "x y");
    let p = TestProject::new(&config);
    let r = p.run(&["run", "--jobs", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn each_gpu_of_the_machine_runs_one_gpu_node() {
    // Each node waits (a bounded time) for the other to start, notes whether it is running
    // (started, not ended), and records its device.
    let node = |name: &str, other: &str| {
        format!(
            r#"
[stages.{name}]
kind = "command"
params = {{ run = 'touch "$PROJECT/{name}.on"; for i in $(seq 40); do [ -e "$PROJECT/{other}.on" ] && break; sleep 0.05; done; if [ -e "$PROJECT/{other}.on" ] && [ ! -e "$PROJECT/{other}.off" ]; then echo together > t.txt; fi; sleep 0.3; echo $CUDA_VISIBLE_DEVICES > device.txt; touch "$PROJECT/{name}.off"', gpu = true }}
"#
        )
    };
    let config = node("g1", "g2") + &node("g2", "g1");
    let devices = |p: &TestProject| {
        let mut d: Vec<String> = ["g1", "g2"]
            .iter()
            .map(|n| std::fs::read_to_string(p.latest(n).join("device.txt")).unwrap())
            .collect();
        d.sort();
        d
    };
    // Two GPUs: both run at once, on different devices.
    let p = TestProject::new(&config);
    p.run(&["run", "--jobs", "2", "--gpus", "2"]).ok();
    assert_eq!(devices(&p), ["0\n", "1\n"]);
    assert!(p.latest("g1").join("t.txt").exists());
    assert!(p.latest("g2").join("t.txt").exists());
    // One GPU: one after the other, on device 0.
    let p = TestProject::new(&config);
    p.run(&["run", "--jobs", "2", "--gpus", "1"]).ok();
    assert_eq!(devices(&p), ["0\n", "0\n"]);
    assert!(!p.latest("g1").join("t.txt").exists());
    assert!(!p.latest("g2").join("t.txt").exists());
}

#[test]
fn verbose_prints_node_logs_and_status_lines() {
    let p = TestProject::new(
        "[stages.a]\nkind = \"command\"\nparams = { run = \"echo hello from a\" }\n",
    );
    let r = p.run(&["run", "-v"]).ok();
    assert!(
        r.stderr
            .starts_with("started `a`\n[a] hello from a\nfinished `a` in "),
        "{}",
        r.stderr
    );
    assert!(
        p.read(&format!("artifacts/objects/{}/log.txt", p.objects()[0]))
            .contains("hello from a\n")
    );
    assert_eq!(r.stdout, "");
}

#[test]
fn status_explains_each_kind_of_staleness() {
    let p = project("cat $IN_A/a.txt > b.txt");
    assert_eq!(
        p.status(),
        "a  stale: never built\nb  stale: upstream node `a` is stale\nc  stale: upstream node `b` is stale\nd  stale: never built\n"
    );
    p.run(&["run"]).ok();
    // Output edited, truncated, deleted; artifact removed.
    std::fs::write(p.latest("a").join("a.txt"), "one\nTWO\n").unwrap();
    std::fs::write(p.latest("b").join("b.txt"), "").unwrap();
    std::fs::remove_file(p.latest("c").join("c.txt")).unwrap();
    let d_object = std::fs::canonicalize(p.latest("d")).unwrap();
    std::fs::remove_dir_all(d_object.parent().unwrap()).unwrap();
    assert_eq!(
        p.status(),
        "a  stale: output file `a.txt` was modified\n\
         b  stale: upstream node `a` is stale\n\
         c  stale: upstream node `b` is stale\n\
         d  stale: output is missing\n"
    );
    p.run(&["run"]).ok();
    assert_eq!(counts(&p), [2, 2, 2, 2]);
    assert_eq!(
        std::fs::read_to_string(p.latest("c").join("c.txt")).unwrap(),
        "one\ntwo\n"
    );
    // A truncated file, alone.
    std::fs::write(p.latest("c").join("c.txt"), "one\n").unwrap();
    assert_eq!(
        p.run(&["status", "c"]).ok().stdout,
        "a  up to date\nb  up to date\nc  stale: output file `c.txt` changed size from 8 to 4 bytes\n"
    );
    p.run(&["run"]).ok();
    assert_eq!(counts(&p), [2, 2, 3, 2]);
    assert_eq!(
        std::fs::read_to_string(p.latest("c").join("c.txt")).unwrap(),
        "one\ntwo\n"
    );
}

#[test]
fn config_errors_name_file_line_and_key() {
    let cases = [
        (
            "[stages.a]\nkind = \"command\"\nparamz = { run = \"true\" }\n",
            "error: pipeline.toml:3:1: stage `a`: unknown field `paramz`, expected one of `kind`, `params`, `inputs`, `matrix`, `foreach`, `resources`\n",
        ),
        (
            "[stages.a]\nkind = \"command\"\nparams = { run = \"true\" }\n\n[stages.b]\nkind = \"command\"\nparams = { run = \"true\" }\ninputs = { x = \"aa\" }\n",
            "error: pipeline.toml:8:16: stage `b`: inputs.`x`: no stage or node named `aa`\n",
        ),
        (
            "[stages.a]\nkind = \"command\"\nparams = { run = \"true\" }\ninputs = { x = \"c\" }\n\n\
             [stages.b]\nkind = \"command\"\nparams = { run = \"true\" }\ninputs = { x = \"a\" }\n\n\
             [stages.c]\nkind = \"command\"\nparams = { run = \"true\" }\ninputs = { x = \"b\" }\n",
            "error: pipeline.toml:4:12: stage `a`: dependency cycle: a -> c -> b -> a\n",
        ),
        (
            "[stages.a]\nkind = \"command\"\nparams = { run = \"true\", threads = \"x\" }\n",
            "error: pipeline.toml:3:26: stage `a`: params.`threads`: invalid type: string \"x\", expected usize\n",
        ),
        (
            "[settings.executor.slurm]\npoll_seconds = inf\n\n[stages.a]\nkind = \"command\"\nparams = { run = \"true\" }\n",
            "error: pipeline.toml: `settings.executor.slurm.poll_seconds` must be a positive number of seconds (got inf)\n",
        ),
        (
            "[stages.a]\nkind = \"command\"\nmatrix = { seed = [1, 2] }\nparams = { run = \"true\", threads = 0 }\n",
            "error: pipeline.toml:4:26: stage `a` (node `a.seed-1`): params.`threads`: must be at least 1\n",
        ),
        (
            "[stages.a]\nkind = \"command\"\nparams = { run = \"true\" }\ninputs = { x = { path = \"missing\" } }\n",
            "error: pipeline.toml:4:16: stage `a`: inputs.`x`: path `missing` does not exist\n",
        ),
    ];
    for (toml, expected) in cases {
        let p = TestProject::new(toml);
        let r = p.run(&["status"]);
        assert_eq!(r.code, 2, "{toml}");
        assert_eq!(r.stderr, expected, "{toml}");
        assert_eq!(r.stdout, "");
    }
    // Unknown kinds list the known ones (more with the domain stages compiled in).
    let p = TestProject::new("[stages.a]\nkind = \"comand\"\n");
    let r = p.run(&["run"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.starts_with(
            "error: pipeline.toml:2:8: stage `a`: unknown kind `comand`\nhint: known kinds: "
        ) && r.stderr.contains("command"),
        "{}",
        r.stderr
    );
    // A typo gets a hint.
    let p = TestProject::new(
        "[stages.train]\nkind = \"command\"\nparams = { run = \"true\" }\n[stages.b]\nkind = \"command\"\nparams = { run = \"true\" }\ninputs = { m = \"trian\" }\n",
    );
    let r = p.run(&["run"]);
    assert_eq!(
        r.stderr,
        "error: pipeline.toml:7:16: stage `b`: inputs.`m`: no stage or node named `trian`\nhint: did you mean `train`?\n"
    );
}

#[test]
fn matrix_and_foreach_bind_member_wise() {
    let p = TestProject::new(
        r#"
[stages.prep]
kind = "command"
params = { run = "echo prep > p.txt" }

[stages.train]
kind = "command"
matrix = { seed = [1, 2], lr = [0.5] }
params = { run = "echo seed=$PARAM_SEED lr=$PARAM_LR > model.txt" }
inputs = { features = "prep" }

[stages.embed]
kind = "command"
foreach = "train"
params = { run = "cat $IN_MODEL/model.txt > e.txt" }
inputs = { model = "train", features = "prep" }

[stages.report]
kind = "command"
params = { run = "for d in $(echo $IN_E | tr : ' '); do cat $d/*.txt; done > r.txt" }
inputs = { e = ["embed", "train.seed-1.lr-0_5"] }
"#,
    );
    assert_eq!(
        p.run(&["dag"]).ok().stdout,
        "prep (command)\n\
         train.seed-1.lr-0_5 (command)\n  features <- prep\n\
         train.seed-2.lr-0_5 (command)\n  features <- prep\n\
         embed.seed-1.lr-0_5 (command)\n  model <- train.seed-1.lr-0_5\n  features <- prep\n\
         embed.seed-2.lr-0_5 (command)\n  model <- train.seed-2.lr-0_5\n  features <- prep\n\
         report (command)\n  e <- embed.seed-1.lr-0_5, embed.seed-2.lr-0_5, train.seed-1.lr-0_5\n"
    );
    p.run(&["run"]).ok();
    assert_eq!(
        std::fs::read_to_string(p.latest("report").join("r.txt")).unwrap(),
        "seed=1 lr=0.5\nseed=2 lr=0.5\nseed=1 lr=0.5\n"
    );
    let r = p.run(&["run", "--dry-run", "embed"]).ok();
    assert_eq!(r.stdout, "everything is up to date\n");
}

#[test]
fn failed_node_keeps_its_log_stops_dependents_and_lets_others_finish() {
    let p = TestProject::new(
        r#"
[stages.bad]
kind = "command"
params = { run = "echo about to fail; exit 3" }

[stages.after]
kind = "command"
params = { run = "true" }
inputs = { x = "bad" }

[stages.other]
kind = "command"
params = { run = "echo fine > f.txt" }
"#,
    );
    let r = p.run(&["run"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "error: node `bad` failed: command `echo about to fail; exit 3` failed (exit status: 3)\n  log: `artifacts/failed/bad.log`\n"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("skipped (`bad` failed)"), "{}", r.stderr);
    assert!(
        r.stderr.ends_with("error: 1 node(s) failed: `bad`\n"),
        "{}",
        r.stderr
    );
    let log = p.read("artifacts/failed/bad.log");
    assert!(log.contains("about to fail\n"), "{log}");
    assert!(log.contains("failed after"), "{log}");
    assert!(p.latest("other").join("f.txt").exists());
    assert!(
        std::fs::read_dir(p.path().join("artifacts/tmp"))
            .unwrap()
            .next()
            .is_none()
    );
}

fn kill_group(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn kill_9_in_the_middle_of_writing_is_recovered_by_the_next_run() {
    use std::os::unix::process::CommandExt;
    // The first attempt writes half its output and hangs; later attempts finish at once.
    let p = TestProject::new(
        r#"
[stages.slow]
kind = "command"
params = { run = 'echo partial > out.txt; if [ ! -e "$PROJECT/started" ]; then touch "$PROJECT/started"; sleep 30; fi; echo complete >> out.txt' }

[stages.next]
kind = "command"
params = { run = "cat $IN_X/out.txt > n.txt" }
inputs = { x = "slow" }
"#,
    );
    let mut child = p
        .command(&["run", "--quiet"])
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for(&p.path().join("started"));
    kill_group(&child);
    child.wait().unwrap();
    assert_eq!(
        p.status(),
        "slow  stale: never built\nnext  stale: upstream node `slow` is stale\n"
    );
    p.run(&["run"]).ok();
    assert_eq!(p.read("artifacts/latest/next/n.txt"), "partial\ncomplete\n");
    assert!(
        std::fs::read_dir(p.path().join("artifacts/tmp"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(
        std::fs::read_dir(p.path().join("artifacts/scratch"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn two_concurrent_runs_build_each_node_once() {
    let p = TestProject::new(&format!(
        r#"
[stages.shared]
kind = "command"
params = {{ run = '{}' }}

[stages.down]
kind = "command"
params = {{ run = '{}' }}
inputs = {{ x = "shared" }}
"#,
        counted("shared", "sleep 0.3; echo s > s.txt"),
        counted("down", "cat $IN_X/s.txt > d.txt"),
    ));
    let a = p.command(&["run", "--quiet"]).spawn().unwrap();
    let b = p.command(&["run", "--quiet"]).spawn().unwrap();
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
    }
    assert_eq!((p.runs("shared"), p.runs("down")), (1, 1));
    assert_eq!(p.status(), "shared  up to date\ndown    up to date\n");
}

#[test]
fn gc_removes_what_is_not_referenced_and_never_what_is_in_use() {
    let config = |v: &str| {
        format!(
            r#"
[stages.a]
kind = "command"
params = {{ run = "echo {v} > a.txt" }}

[stages.wait]
kind = "command"
params = {{ run = 'touch "$PROJECT/waiting"; while [ ! -e "$PROJECT/go" ]; do sleep 0.02; done' }}
"#
        )
    };
    let p = TestProject::new(&config("v1"));
    p.run(&["run", "a"]).ok();
    let v1 = p.objects();
    p.write_config(&config("v2"));
    p.run(&["run", "a"]).ok();
    assert_eq!(p.objects().len(), 2);
    // Start `wait` and let gc run while it is in progress.
    let child = p.command(&["run", "--quiet", "wait"]).spawn().unwrap();
    wait_for(&p.path().join("waiting"));
    let r = p.run(&["gc"]).ok();
    assert!(
        r.stdout
            .contains(&format!("removed object `artifacts/objects/{}`", v1[0])),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("in use by a running process"),
        "{}",
        r.stderr
    );
    let tmp: Vec<_> = std::fs::read_dir(p.path().join("artifacts/tmp"))
        .unwrap()
        .collect();
    assert_eq!(tmp.len(), 1, "the running node's directory is kept");
    std::fs::write(p.path().join("go"), "").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(p.status(), "a     up to date\nwait  up to date\n");
    // Removing a stage makes its artifacts, state and link garbage.
    p.write_config("[stages.a]\nkind = \"command\"\nparams = { run = \"echo v2 > a.txt\" }\n");
    let r = p.run(&["gc", "--dry-run"]).ok();
    assert!(
        r.stdout
            .contains("would remove state `artifacts/state/pipeline.toml/wait.json`"),
        "{}",
        r.stdout
    );
    assert_eq!(p.objects().len(), 2);
    p.run(&["gc"]).ok();
    assert_eq!(p.objects().len(), 1);
    assert!(!p.latest("wait").exists());
    assert_eq!(
        p.run(&["run"]).ok().stderr,
        "everything is up to date (1 nodes)\n"
    );
}

#[test]
fn show_and_metrics_read_the_artifact() {
    let p = TestProject::new(
        r#"
[stages.eval]
kind = "command"
matrix = { seed = [1, 2] }
params = { run = 'echo "{\"test\": {\"t2a_map10\": 0.3$PARAM_SEED, \"n\": 100}, \"loss\": 0.00001}" > metrics.json' }
"#,
    );
    p.run(&["run"]).ok();
    assert_eq!(
        p.run(&["metrics"]).ok().stdout,
        "node         loss       test.n  test.t2a_map10\neval.seed-1  1.000e-5   100     0.3100\neval.seed-2  1.000e-5   100     0.3200\n"
            .replace("loss       test.n", "loss      test.n")
            .replace("1.000e-5   100", "1.000e-5  100")
    );
    let json: serde_json::Value =
        serde_json::from_str(&p.run(&["show", "eval.seed-2", "--json"]).ok().stdout).unwrap();
    assert_eq!(json["status"], "up to date");
    assert_eq!(json["metrics"]["test"]["n"], 100);
    assert_eq!(json["params"]["seed"], 2);
    assert_eq!(json["manifest"]["files"][0]["path"], "metrics.json");
    // The view declared in `[settings.metrics]`: rows and columns in the declared order.
    p.write_config(&format!(
        "[settings.metrics]\nnodes = [\"eval.seed-2\", \"eval\"]\ncolumns = [\"test.*\", \"loss\"]\n{}",
        p.read("pipeline.toml")
    ));
    assert_eq!(
        p.run(&["metrics"]).ok().stdout,
        "node         test.n  test.t2a_map10  loss\neval.seed-2  100     0.3200          1.000e-5\neval.seed-1  100     0.3100          1.000e-5\n"
    );
    assert_eq!(
        p.run(&["metrics", "eval.seed-1", "-c", "*map10"])
            .ok()
            .stdout,
        "node         test.t2a_map10\neval.seed-1  0.3100\n"
    );
    assert_eq!(p.run(&["metrics", "--all"]).ok().stdout.lines().count(), 3);
    // After an edit, the last built metrics stay visible but are marked.
    p.write_config(&p.read("pipeline.toml").replace("100", "101"));
    let stale = p.run(&["metrics", "--all"]).ok().stdout;
    assert!(
        stale.contains("eval.seed-1 (stale)  1.000e-5  100"),
        "{stale}"
    );
    let r = p.run(&["show", "eval"]);
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr,
        "error: stage `eval` has 2 members\nhint: name one of: eval.seed-1, eval.seed-2\n"
    );
}

#[test]
fn dag_formats_and_kinds() {
    let p = TestProject::new(
        "[stages.a]\nkind = \"command\"\nparams = { run = \"true\" }\ninputs = { raw = { path = \"raw.txt\" } }\n\
         [stages.b]\nkind = \"command\"\nparams = { run = \"true\" }\ninputs = { a = \"a\" }\n",
    );
    p.write("raw.txt", "x");
    assert_eq!(
        p.run(&["dag", "--format", "mermaid"]).ok().stdout,
        "flowchart TD\n  n0[\"a (command)\"]\n  n1[\"b (command)\"]\n  p0[(\"raw.txt\")] -->|raw| n0\n  n0 -->|a| n1\n"
    );
    assert_eq!(
        p.run(&["dag", "--format", "dot"]).ok().stdout,
        "digraph pipeline {\n  rankdir=LR;\n  \"a\" [shape=box];\n  \"b\" [shape=box];\n  \"{path = raw.txt}\" -> \"a\" [label=\"raw\"];\n  \"a\" -> \"b\" [label=\"a\"];\n}\n"
    );
    let kinds = p.run(&["kinds"]).ok().stdout;
    // Other kinds are listed too when the domain stages are compiled in.
    assert!(kinds.starts_with("kind "), "{kinds}");
    let command = kinds
        .lines()
        .find(|l| l.starts_with("command "))
        .expect("the command kind");
    assert!(
        command.contains(" 1 ") && command.contains("Runs a shell command"),
        "{command}"
    );
}

/// The events of a run, one line each, as a caller other than the terminal receives them.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn push(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }
}

impl RunEvents for Recorder {
    fn started(&self, node: &str) {
        self.push(format!("started {node}"));
    }
    fn log(&self, node: &str, line: &str) {
        self.push(format!("log {node}: {line}"));
    }
    fn finished(&self, node: &str, how: Finish, _: Duration) {
        self.push(format!("finished {node}: {how:?}"));
    }
    fn failed(
        &self,
        node: &str,
        error: &anyhow::Error,
        log: &Result<PathBuf, String>,
        _: Duration,
    ) {
        let log = log.as_ref().unwrap();
        self.push(format!("failed {node}: {error:#}; log {}", log.display()));
    }
}

#[test]
fn a_run_reports_started_finished_cached_and_failed_nodes_to_its_events() {
    let p = TestProject::new(
        r#"
[stages.good]
kind = "command"
params = { run = "echo hello; echo hello > out.txt" }

[stages.bad]
kind = "command"
params = { run = "echo about to fail; exit 3" }
inputs = { x = "good" }
"#,
    );
    let project = Project::open(
        &p.path().join("pipeline.toml"),
        &pipeline::builtin_registry(),
    )
    .unwrap();
    let run = || {
        let events = Recorder::default();
        let budget = Budget { jobs: 1, gpus: 1 };
        let report = project
            .run(&RunTargets::default(), budget, &Local, &events)
            .unwrap();
        assert_eq!(report.failures().count(), 1);
        events.0.into_inner().unwrap()
    };
    let failed = format!(
        "failed bad: command `echo about to fail; exit 3` failed (exit status: 3); log {}",
        p.path().join("artifacts/failed/bad.log").display()
    );
    assert_eq!(
        run(),
        [
            "started good",
            "log good: hello",
            "finished good: Ran",
            "started bad",
            "log bad: about to fail",
            &failed,
        ]
    );
    // The second run finds `good` cached and tries `bad` again.
    assert_eq!(
        run(),
        [
            "finished good: Cached",
            "started bad",
            "log bad: about to fail",
            &failed,
        ]
    );
}
