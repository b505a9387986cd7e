//! The executor under a demanding user: relocatable keys, measurements kept out of the hashed
//! outputs, closed pipes, interruptions, corrupt manifests, silent edits, shared stores and
//! mistakes in the pipeline file. Built-in `command` kind only.

mod common;

use std::time::Duration;

use common::{TestProject, counted, wait_for};

/// a (reads an external dir) -> b -> c.
fn chain() -> String {
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
"#,
        // `a` measures something that differs on every run: it must not reach a key.
        a = counted(
            "a",
            "cat $IN_RAW/* > a.txt; echo ::measure seconds=$(date +%s%N)"
        ),
        b = counted("b", "cat $IN_A/a.txt > b.txt"),
        c = counted("c", "cat $IN_B/b.txt > c.txt"),
    )
}

fn project() -> TestProject {
    let p = TestProject::new(&chain());
    p.write("data/1.txt", "one\n");
    p
}

fn counts(p: &TestProject) -> [usize; 3] {
    [p.runs("a"), p.runs("b"), p.runs("c")]
}

/// `pipeline show --json NODE` as JSON.
fn show(p: &TestProject, node: &str) -> serde_json::Value {
    serde_json::from_str(&p.run(&["show", "--json", node]).ok().stdout).unwrap()
}

fn key(p: &TestProject, node: &str) -> String {
    show(p, node)["key"].as_str().unwrap().to_owned()
}

#[test]
fn the_same_pipeline_in_two_directories_has_the_same_keys() {
    let (one, two) = (project(), project());
    one.run(&["run", "-q"]).ok();
    two.run(&["run", "-q"]).ok();
    for node in ["a", "b", "c"] {
        assert_eq!(key(&one, node), key(&two, node), "{node}");
    }
}

#[test]
fn measurements_go_to_the_manifest_and_a_forced_rerun_leaves_dependents_cached() {
    let p = project();
    p.run(&["run", "-q"]).ok();
    let first = show(&p, "a");
    let seconds = &first["manifest"]["measurements"]["seconds"];
    assert!(seconds.as_f64().is_some_and(|s| s > 0.0), "{first:#}");
    assert_eq!(first["metrics"]["run"]["seconds"], *seconds);
    // Rebuilding `a` measures another value but publishes the same bytes: b and c stay cached.
    std::thread::sleep(Duration::from_millis(5));
    let r = p.run(&["run", "--force", "a"]).ok();
    assert_eq!(counts(&p), [2, 1, 1], "{}", r.stderr);
    let second = show(&p, "a");
    assert_ne!(second["manifest"]["measurements"]["seconds"], *seconds);
    assert_eq!(
        first["manifest"]["output_hash"],
        second["manifest"]["output_hash"]
    );
    assert_eq!(second["status"], "up to date");
}

#[test]
fn warnings_are_summarised_at_the_end_of_the_run_even_when_quiet() {
    let p = TestProject::new(
        r#"
[stages.data]
kind = "command"
params = { run = 'echo ::warning::rows.csv line 3: empty caption, skipped; echo ok > out.txt' }
"#,
    );
    let r = p.run(&["run", "-q"]).ok();
    assert_eq!(
        r.stderr,
        "warning: `data`: rows.csv line 3: empty caption, skipped\n"
    );
    // The warning is kept in the node's log too.
    let log = p
        .path()
        .join("artifacts/objects")
        .join(key(&p, "data"))
        .join("log.txt");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains("warning: rows.csv line 3: empty caption, skipped"),
        "{log}"
    );
}

#[test]
fn a_closed_stderr_never_stops_the_work() {
    // `pipeline run 2>&1 | head -1`: the first status line is read, then the pipe closes.
    let p = TestProject::new(
        r#"
[stages.a]
kind = "command"
params = { run = "sleep 0.3; echo a > a.txt" }

[stages.b]
kind = "command"
params = { run = "sleep 0.3; cat $IN_A/a.txt > b.txt" }
inputs = { a = "a" }
"#,
    );
    let mut child = p
        .command(&["run", "--jobs", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    assert!(first.starts_with("started `a`"), "{first}");
    drop(stderr);
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(p.read("artifacts/latest/b/b.txt"), "a\n");
}

#[test]
fn jobs_are_capped_at_the_cores() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let p = TestProject::new(
        r#"
[stages.wide]
kind = "command"
params = { run = "echo $THREADS > threads.txt", threads = 100000 }
"#,
    );
    let r = p.run(&["run", "--jobs", "1000000"]).ok();
    assert!(
        r.stderr.contains(&format!(
            "note: `--jobs 1000000` is more than the {cores} core(s) of this machine; using {cores}"
        )),
        "{}",
        r.stderr
    );
    assert_eq!(
        p.read("artifacts/latest/wide/threads.txt"),
        format!("{cores}\n")
    );
}

#[test]
fn a_file_without_stages_is_an_error() {
    let p = TestProject::new("# nothing here yet\n[settings]\nartifacts = \"artifacts\"\n");
    let r = p.run(&["run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("error: pipeline.toml: declares no stages"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("hint: add a `[stages.<name>]` table"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_failed_node_names_only_a_log_that_exists() {
    let p = TestProject::new(
        r#"
[stages.bad]
kind = "command"
params = { run = "echo about to fail; exit 3" }
"#,
    );
    // `failed/` cannot be created (a file is in the way): the log cannot be kept.
    p.write("artifacts/failed", "not a directory");
    let r = p.run(&["run", "-q"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("error: node `bad` failed: command"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("  no log: its log could not be kept ("),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("log: `"), "{}", r.stderr);
    // With a writable store the log is named, and it exists.
    std::fs::remove_file(p.path().join("artifacts/failed")).unwrap();
    let r = p.run(&["run", "-q"]);
    assert!(
        r.stderr.contains("  log: `artifacts/failed/bad.log`"),
        "{}",
        r.stderr
    );
    assert!(p.read("artifacts/failed/bad.log").contains("about to fail"));
}

#[test]
fn a_truncated_manifest_is_reported_as_such() {
    let p = project();
    p.run(&["run", "-q"]).ok();
    let manifest = p
        .path()
        .join("artifacts/objects")
        .join(key(&p, "b"))
        .join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    let status = p.status();
    assert!(
        status.contains("b  stale: output file `manifest.json` cannot be parsed ("),
        "{status}"
    );
    p.run(&["run", "-q"]).ok();
    assert_eq!(counts(&p), [1, 2, 1]);
}

#[test]
fn pipeline_files_sharing_a_store_explain_their_own_changes() {
    let p = TestProject::new(
        r#"
[stages.x]
kind = "command"
params = { run = "cat $IN_RAW > x.txt", flavour = "a" }
inputs = { raw = { path = "in-a.txt" } }
"#,
    );
    p.write(
        "b.toml",
        r#"
[stages.x]
kind = "command"
params = { run = "cat $IN_RAW > x.txt", flavour = "b" }
inputs = { raw = { path = "in-b.txt" } }
"#,
    );
    p.write("in-a.txt", "a\n");
    p.write("in-b.txt", "b\n");
    p.run(&["run", "-q"]).ok();
    p.run(&["-f", "b.toml", "run", "-q"]).ok();
    p.write("in-a.txt", "a, edited\n");
    assert_eq!(p.status(), "x  stale: input `raw` changed\n");
    assert_eq!(
        p.run(&["-f", "b.toml", "status"]).ok().stdout,
        "x  up to date\n"
    );
}

#[test]
fn status_exit_code_says_whether_anything_is_stale() {
    let p = project();
    assert_eq!(p.run(&["status", "--exit-code"]).code, 1);
    assert_eq!(p.run(&["status"]).code, 0);
    p.run(&["run", "-q"]).ok();
    assert_eq!(p.run(&["status", "--exit-code"]).code, 0);
}

#[test]
fn verify_finds_a_same_size_edit_with_its_mtime_restored() {
    let p = project();
    p.run(&["run", "-q"]).ok();
    let file = p
        .path()
        .join("artifacts/objects")
        .join(key(&p, "a"))
        .join("out/a.txt");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, "ONE\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    // The fast check (size, mtime, inode) cannot see it.
    assert_eq!(p.status(), "a  up to date\nb  up to date\nc  up to date\n");
    let r = p.run(&["verify"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("a  CORRUPT: output file `a.txt` was modified"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("b  ok (1 files)"), "{}", r.stdout);
    assert!(
        p.status().starts_with(
            "a  stale: output file `a.txt` was modified (found by `pipeline verify`)\n"
        ),
        "{}",
        p.status()
    );
    // The rebuild reproduces the original bytes: nothing downstream reruns.
    p.run(&["run", "-q"]).ok();
    assert_eq!(counts(&p), [2, 1, 1]);
    assert_eq!(p.run(&["verify"]).code, 0);
}

#[test]
fn ctrl_c_prints_what_finished_and_what_was_interrupted() {
    use std::os::unix::process::CommandExt;
    let p = TestProject::new(
        r#"
[stages.quick]
kind = "command"
params = { run = "echo q > q.txt" }

[stages.slow]
kind = "command"
params = { run = 'if [ ! -e "$PROJECT/started" ]; then touch "$PROJECT/started"; sleep 30; fi; cat $IN_Q/q.txt > s.txt' }
inputs = { q = "quick" }
"#,
    );
    let child = p
        .command(&["run"])
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for(&p.path().join("started"));
    // As a terminal does: SIGINT to the whole foreground process group.
    let kill = std::process::Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted\n  finished (1): `quick`\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  interrupted (1): `slow` (nothing of theirs was published)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the next `pipeline run` keeps what finished and resumes the rest"),
        "{stderr}"
    );
    let r = p.run(&["run"]).ok();
    assert!(r.stderr.contains("quick  cached"), "{}", r.stderr);
    assert_eq!(p.read("artifacts/latest/slow/s.txt"), "q\n");
}
