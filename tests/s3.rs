//! The remote cache against a real S3-compatible server (moto, `tests/common/s3.rs`): a second
//! store fetches instead of running, with identical outputs; a half-finished upload, a tampered
//! entry, a corrupted or missing blob are rejected and the node runs here; an unreachable
//! server is a warning unless the cache is required; `push` and `pull` move artifacts.

mod common;

#[path = "common/s3.rs"]
mod s3;

use common::{Run, TestProject, counted};
use s3::S3Server;

/// Three independent nodes and one downstream of `a`.
fn dag() -> String {
    format!(
        r#"
[stages.a]
kind = "command"
params = {{ run = '{}' }}

[stages.b]
kind = "command"
inputs = {{ a = "a" }}
params = {{ run = '{}' }}

[stages.c]
kind = "command"
params = {{ run = '{}' }}

[stages.d]
kind = "command"
params = {{ run = '{}', size = 1 }}
"#,
        counted(
            "a",
            "echo a > a.txt; mkdir -p sub; echo deep > sub/deep.txt"
        ),
        counted("b", "cat $IN_A/a.txt > b.txt; echo ::warning::b is careful"),
        counted("c", "echo c > c.txt"),
        counted("d", "head -c $((PARAM_SIZE * 1000)) /dev/zero > d.bin"),
    )
}

/// A fifth node, for a fifth way of tampering.
const E: &str = r#"
[stages.e]
kind = "command"
params = { run = "echo e > e.txt" }
"#;

fn cached(bucket: &str, mode: &str, toml: &str) -> TestProject {
    TestProject::new(&format!(
        r#"
[settings.cache]
url = "s3://{bucket}/team"
mode = "{mode}"
allow_http = true
timeout_seconds = 2
retries = 1
{toml}"#
    ))
}

fn run(p: &TestProject, server: &S3Server, args: &[&str]) -> Run {
    Run::from(
        p.command(args)
            .envs(server.env())
            .output()
            .expect("the binary runs"),
    )
}

/// Node → how the run's summary says it ended (`ran`, `fetched`, `cached`, ...).
fn results(run: &Run) -> std::collections::BTreeMap<String, String> {
    run.stderr
        .lines()
        .skip_while(|l| !l.starts_with("node "))
        .skip(1)
        .take_while(|l| !l.starts_with("warning") && !l.starts_with("error"))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// The object directory of `node`'s current output.
fn object_dir(p: &TestProject, node: &str) -> std::path::PathBuf {
    std::fs::canonicalize(p.latest(node))
        .unwrap()
        .parent()
        .unwrap()
        .to_owned()
}

/// The entry of `node` (as built in `p`) in the bucket.
fn entry_key(p: &TestProject, node: &str) -> String {
    let key = object_dir(p, node).file_name().unwrap().to_owned();
    format!("team/nodes/{}.json", key.to_string_lossy())
}

#[test]
fn a_second_store_fetches_everything_and_runs_nothing_then_an_edit_runs_and_uploads_one_node() {
    let server = S3Server::shared();
    let bucket = server.new_bucket("fetch");
    let a = cached(&bucket, "read-write", &dag());
    let first = run(&a, &server, &["run"]).ok();
    assert!(
        results(&first).values().all(|r| r == "ran"),
        "{}",
        first.stderr
    );
    assert_eq!(server.list(&bucket, "team/nodes/").len(), 4);

    let b = cached(&bucket, "read-write", &dag());
    let status = run(&b, &server, &["status"]).ok();
    assert!(
        status
            .stdout
            .contains("a  stale: never built; available in the remote cache"),
        "{}",
        status.stdout
    );
    let fetched = run(&b, &server, &["run"]).ok();
    assert!(
        results(&fetched).values().all(|r| r == "fetched"),
        "{}",
        fetched.stderr
    );
    assert_eq!(["a", "b", "c", "d"].map(|n| b.runs(n)), [0; 4]);
    assert_eq!(b.objects(), a.objects());
    for node in ["a", "b", "c", "d"] {
        assert_eq!(b.files(node), a.files(node), "{node}");
    }
    // The run's log came along with it.
    assert!(
        std::fs::read_to_string(object_dir(&b, "b").join("log.txt"))
            .unwrap()
            .contains("b is careful")
    );
    assert!(!b.status().contains("stale"), "{}", b.status());

    // An edit in B runs that node only, and uploads it: identical files are not sent again.
    b.write_config(
        &std::fs::read_to_string(b.path().join("pipeline.toml"))
            .unwrap()
            .replace("size = 1", "size = 2"),
    );
    let edit = run(&b, &server, &["run"]).ok();
    assert_eq!(results(&edit)["d"], "ran", "{}", edit.stderr);
    assert_eq!(b.runs("d"), 1);
    assert_eq!(server.list(&bucket, "team/nodes/").len(), 5);
}

#[test]
fn half_finished_uploads_tampered_entries_and_bad_blobs_are_rejected_and_run_here() {
    let server = S3Server::shared();
    let bucket = server.new_bucket("untrusted");
    let config = format!("{}{E}", dag());
    let a = cached(&bucket, "read-write", &config);
    run(&a, &server, &["run", "-q"]).ok();

    // `e`: the entry of another key under its name.
    server.put_object(
        &bucket,
        &entry_key(&a, "e"),
        server.get_object(&bucket, &entry_key(&a, "c")).unwrap(),
    );
    // `a`: an entry that names a path outside the node's directory.
    let name = entry_key(&a, "a");
    let mut entry: serde_json::Value =
        serde_json::from_slice(&server.get_object(&bucket, &name).unwrap()).unwrap();
    entry["manifest"]["files"][0]["path"] = "../../escape.txt".into();
    server.put_object(&bucket, &name, serde_json::to_vec(&entry).unwrap());
    // `c`: a corrupted blob; `d`: a missing one.
    let blob = |node: &str| {
        let entry: serde_json::Value =
            serde_json::from_slice(&server.get_object(&bucket, &entry_key(&a, node)).unwrap())
                .unwrap();
        format!(
            "team/blobs/{}",
            entry["manifest"]["files"][0]["hash"].as_str().unwrap()
        )
    };
    // Same size as `c\n`, so that only its hash tells.
    server.put_object(&bucket, &blob("c"), b"x\n");
    server.delete_object(&bucket, &blob("d"));
    // `b`: blobs uploaded, entry not (an upload killed before its last step).
    server.delete_object(&bucket, &entry_key(&a, "b"));

    let b = cached(&bucket, "read", &config);
    let r = run(&b, &server, &["run"]).ok();
    let res = results(&r);
    for node in ["a", "b", "c", "d", "e"] {
        assert_eq!(res[node], "ran", "{node}: {}", r.stderr);
    }
    for (node, why) in [
        (
            "a",
            "file path `../../escape.txt` is not a plain relative path",
        ),
        ("c", "its content hashes to"),
        ("d", "is missing"),
        ("e", "it is the entry of another key"),
    ] {
        assert!(
            r.stderr.lines().any(|l| l
                .starts_with(&format!("warning: `{node}`: remote cache not used"))
                && l.contains(why)),
            "{node}: {}",
            r.stderr
        );
    }
    assert!(!b.path().join("escape.txt").exists());
    assert!(!b.path().parent().unwrap().join("escape.txt").exists());
    assert_eq!(b.objects(), a.objects(), "recomputed to the same keys");
    assert!(!b.status().contains("stale"), "{}", b.status());
}

#[test]
fn an_unreachable_server_is_a_warning_unless_the_cache_is_required() {
    let mut server = S3Server::start();
    let bucket = server.new_bucket("down");
    server.stop();
    let p = cached(&bucket, "read-write", &dag());
    let r = run(&p, &server, &["run", "--require-cache"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("`--require-cache`: the remote cache could not be used"),
        "{}",
        r.stderr
    );
    assert_eq!(
        ["a", "b", "c", "d"].map(|n| p.runs(n)),
        [0; 4],
        "{}",
        r.stderr
    );
    let secret = "do-not-print-this-secret";
    let r = Run::from(
        p.command(&["run"])
            .envs(server.env())
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .output()
            .unwrap(),
    )
    .ok();
    assert!(results(&r).values().all(|v| v == "ran"), "{}", r.stderr);
    assert!(r.stderr.contains("remote cache not used"), "{}", r.stderr);
    assert!(!r.stderr.contains(secret), "{}", r.stderr);
}

#[test]
fn push_and_pull_move_built_artifacts() {
    let server = S3Server::shared();
    let bucket = server.new_bucket("push-pull");
    let a = cached(&bucket, "read", &dag());
    run(&a, &server, &["run", "-q"]).ok();
    assert!(
        server.list(&bucket, "team/").is_empty(),
        "read mode uploads nothing"
    );
    // A published file edited in place (same size, mtime put back) is not uploaded under its
    // old hash.
    let c = object_dir(&a, "c").join("out/c.txt");
    let mtime = std::fs::metadata(&c).unwrap().modified().unwrap();
    std::fs::write(&c, "x\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&c)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let push = run(&a, &server, &["push"]);
    assert_eq!(push.code, 1, "{}", push.stderr);
    assert!(push.stderr.contains("pushed `a`"), "{}", push.stderr);
    assert!(
        push.stderr.contains("error: `c` not pushed:")
            && push.stderr.contains("changed since it was published"),
        "{}",
        push.stderr
    );
    assert_eq!(server.list(&bucket, "team/nodes/").len(), 3);
    run(&a, &server, &["verify", "c"]);
    run(&a, &server, &["run", "-q", "c"]).ok();
    run(&a, &server, &["push", "c"]).ok();
    assert_eq!(server.list(&bucket, "team/nodes/").len(), 4);
    // What the bucket has is not sent again.
    let again = run(&a, &server, &["push", "b"]).ok();
    assert!(again.stderr.contains("0 file(s) sent"), "{}", again.stderr);

    let b = cached(&bucket, "read", &dag());
    let pull = run(&b, &server, &["pull", "b"]).ok();
    assert!(
        pull.stderr.contains("pulled `a`") && pull.stderr.contains("pulled `b`"),
        "{}",
        pull.stderr
    );
    assert!(!pull.stderr.contains("pulled `c`"), "only what `b` needs");
    let status = b.status();
    assert!(status.contains("b  up to date"), "{status}");
    assert_eq!(b.files("b"), a.files("b"));
}

#[test]
fn credentials_and_plain_http_are_checked_before_anything_runs() {
    let server = S3Server::shared();
    let p = cached("creds", "read", &dag());
    let home = tempfile::tempdir().unwrap();
    let r = Run::from(
        p.command(&["run"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SHARED_CREDENTIALS_FILE")
            .env("HOME", home.path())
            .env("AWS_ENDPOINT_URL", server.endpoint())
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "no S3 credentials: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are not set"
        ) && r.stderr.contains(".aws/credentials"),
        "{}",
        r.stderr
    );
    assert_eq!(p.runs("a"), 0);
    let p = TestProject::new(&format!(
        "[settings.cache]\nurl = \"s3://creds/x\"\n{}",
        dag()
    ));
    let r = run(&p, &server, &["run"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is plain http"), "{}", r.stderr);
}
