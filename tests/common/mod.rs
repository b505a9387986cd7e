//! `TestProject`: a pipeline.toml in a temporary directory and the built `pipeline` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod slurm;

pub struct TestProject {
    pub dir: tempfile::TempDir,
}

/// The result of one `pipeline` invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl TestProject {
    pub fn new(toml: &str) -> Self {
        let p = Self {
            dir: tempfile::tempdir().expect("a temp dir"),
        };
        p.write_config(toml);
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_config(&self, toml: &str) {
        self.write("pipeline.toml", toml);
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel))
            .unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipeline"));
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("PIPELINE_LOG")
            // The GPU tests give devices themselves; a CI runner's own must not leak in.
            .env_remove("CUDA_VISIBLE_DEVICES")
            .env("PROJECT", self.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("the binary runs"))
    }

    /// Lines of `pipeline status`, as printed.
    pub fn status(&self) -> String {
        self.run(&["status"]).ok().stdout
    }

    /// Number of lines in the file `count.<name>` (commands append to it when they run).
    pub fn runs(&self, name: &str) -> usize {
        std::fs::read_to_string(self.path().join(format!("count.{name}")))
            .map_or(0, |s| s.lines().count())
    }

    /// The `latest/<node>` output directory.
    /// The published files of `node` (relative path → bytes), sorted: to compare two runs.
    pub fn files(&self, node: &str) -> Vec<(String, Vec<u8>)> {
        let root = self.latest(node);
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(&root).unwrap().display().to_string();
                    out.push((rel, std::fs::read(&path).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    pub fn latest(&self, node: &str) -> PathBuf {
        self.path().join("artifacts/latest").join(node)
    }

    pub fn objects(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path().join("artifacts/objects"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// A command that counts its runs in `../count.<name>` (relative to the project), then does
/// `body`.
pub fn counted(name: &str, body: &str) -> String {
    format!("echo x >> \"$PROJECT/count.{name}\"; {body}")
}

/// Polls for `path` (not a timing assertion: the test fails only if it never appears).
pub fn wait_for(path: &Path) {
    wait_for_at_most(path, 1000);
}

/// [`wait_for`], for what a cluster job writes (it may queue first).
pub fn wait_for_long(path: &Path) {
    wait_for_at_most(path, 12_000);
}

fn wait_for_at_most(path: &Path, polls: usize) {
    for _ in 0..polls {
        if path.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}
