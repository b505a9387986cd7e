//! Time and peak memory of each stage on generated data sets of growing size: what issue 18
//! asks of the stages (memory bounded by a setting, time linear in the data).
//!
//! ```text
//! cargo build --release --bins
//! ./target/release/bench-scale [CLIPS...]
//! ```
//! (default: 2000 8000 32000 clips of 2.5 s, 80 % training, five captions each). For each size it writes a pipeline file (`synth-dataset`
//! without the quadratic ground truth, `features` in shards of 64 MB, one epoch of `train`,
//! `embed`, a top-k `correspondences` table) and runs its nodes one by one, each as its own
//! `pipeline run` process, so that the peak resident memory (from `wait4`) is that node's.
//! Prints one table; nothing is asserted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

mod shared;

const NODES: [&str; 5] = ["data", "features", "train", "embed", "correspondences"];

fn pipeline_file(clips: usize) -> String {
    let (train, val) = (clips * 8 / 10, clips / 10);
    let test = clips - train - val;
    format!(
        r#"[stages.data]
kind = "synth-dataset"
params = {{ seed = 7, train_clips = {train}, val_clips = {val}, test_clips = {test}, clip_seconds = 2.5, relevance = false }}

[stages.features]
kind = "features"
inputs = {{ dataset = "data" }}
params = {{ preset = "light", shard_mb = 64 }}

[stages.train]
kind = "train"
inputs = {{ features = "features" }}
params = {{ epochs = 1 }}

[stages.embed]
kind = "embed"
inputs = {{ model = "train", features = "features" }}

[stages.correspondences]
kind = "correspondences"
inputs = {{ teachers = "embed", features = "features" }}
params = {{ table = "top_k", top_k = 10 }}
"#
    )
}

/// Runs `pipeline run <node>` in `dir`; returns (seconds, peak resident MiB).
#[allow(unsafe_code)] // `wait4`: the one call that gives a child's own peak memory
fn run_node(bin: &Path, dir: &Path, node: &str) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let child = Command::new(bin)
        .args(["run", "--quiet", node])
        .current_dir(dir)
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `usage` is plain data that `wait4` fills in; `pid` is our own child, not yet
    // reaped (the `Child` is never waited on).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(waited == pid, "wait4: {}", std::io::Error::last_os_error());
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "`pipeline run {node}` in `{}` failed (status {status})",
        dir.display()
    );
    // Linux reports ru_maxrss in KiB.
    Ok((seconds, usage.ru_maxrss as f64 / 1024.0))
}

fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![2000, 8000, 32000]
    } else {
        sizes
    };
    let bin = shared::pipeline_bin("cargo build --release --bins");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Beside the binaries (the project's `target/`), not in a RAM-backed /tmp.
    let work: PathBuf = bin.with_file_name("bench-scale-work");
    let mut rows = Vec::new();
    for &clips in &sizes {
        let dir = work.join(clips.to_string());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("pipeline.toml"), pipeline_file(clips))?;
        let mut cells = Vec::new();
        for node in NODES {
            let (seconds, mib) = run_node(&bin, &dir, node)?;
            eprintln!("{clips} clips, {node}: {seconds:.1} s, {mib:.0} MiB");
            cells.push((seconds, mib));
        }
        let artifacts = du(&dir.join("artifacts"));
        std::fs::remove_dir_all(&dir)?;
        rows.push((clips, cells, artifacts));
    }
    println!("machine: {threads} threads; clips of 2.5 s, 5 captions each, 80 % training");
    print!("| clips |");
    for node in NODES {
        print!(" {node} |");
    }
    println!(" artifacts |");
    println!("|---|{}---|", "---|".repeat(NODES.len()));
    for (clips, cells, artifacts) in rows {
        print!("| {clips} |");
        for (seconds, mib) in cells {
            print!(" {seconds:.1} s, {mib:.0} MiB |");
        }
        println!(" {:.0} MiB |", artifacts as f64 / 1048576.0);
    }
    Ok(())
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
