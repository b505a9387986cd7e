//! Benchmark of the executor's fixed costs: a 3-stage `command` pipeline whose first stage
//! reads an external data set of 10,000 small files. Prints the median time of a no-op
//! `pipeline run` and of `pipeline status`, spawning the real binary.
//!
//! ```text
//! cargo build --release --no-default-features --bins
//! ./target/release/bench-executor [--files N] [--repeat N]
//! ```
//! The `pipeline` binary is looked up next to this one (or in `$PIPELINE_BIN`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod shared;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} expects a number"))
        })
}

fn time(bin: &Path, dir: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("pipeline runs");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "`pipeline {}` failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[0]), ms(v[v.len() - 1]))
}

fn main() {
    let files = arg("--files", 10_000);
    let repeat = arg("--repeat", 21);
    let bin = shared::pipeline_bin("cargo build --release --no-default-features --bins");
    let dir = std::env::temp_dir().join(format!("pipeline-bench-{}", std::process::id()));
    let data = dir.join("data");
    for i in 0..files {
        let sub = data.join(format!("{:03}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub).expect("a data directory");
        }
        std::fs::write(sub.join(format!("{i:05}.txt")), format!("file {i}\n"))
            .expect("a data file");
    }
    std::fs::write(
        dir.join("pipeline.toml"),
        r#"
[stages.index]
kind = "command"
params = { run = "find $IN_RAW -type f | wc -l > count.txt" }
inputs = { raw = { path = "data" } }

[stages.double]
kind = "command"
params = { run = "echo $(( $(cat $IN_INDEX/count.txt) * 2 )) > double.txt" }
inputs = { index = "index" }

[stages.report]
kind = "command"
params = { run = "cat $IN_DOUBLE/double.txt > report.txt" }
inputs = { double = "double" }
"#,
    )
    .expect("pipeline.toml");

    let first = time(&bin, &dir, &["run", "--quiet"]);
    let noop: Vec<_> = (0..repeat)
        .map(|_| time(&bin, &dir, &["run", "--quiet"]))
        .collect();
    let status: Vec<_> = (0..repeat).map(|_| time(&bin, &dir, &["status"])).collect();
    // Without the stat cache every file is hashed again.
    let cold: Vec<_> = (0..repeat.min(5))
        .map(|_| {
            let _ = std::fs::remove_file(dir.join("artifacts/cache/stat-cache.tsv"));
            time(&bin, &dir, &["run", "--quiet"])
        })
        .collect();

    println!(
        "executor benchmark: 3 `command` stages, external input of {files} files, {repeat} runs"
    );
    println!("binary: {}", bin.display());
    println!(
        "{:<40} {:>10} {:>10} {:>10}",
        "measure", "median ms", "min ms", "max ms"
    );
    let first_ms = first.as_secs_f64() * 1000.0;
    println!(
        "{:<40} {:>10.1} {:>10.1} {:>10.1}",
        "first run (hash + run 3 nodes)", first_ms, first_ms, first_ms
    );
    for (name, v) in [
        ("no-op `pipeline run`", noop),
        ("`pipeline status`", status),
        ("no-op `pipeline run`, no stat cache", cold),
    ] {
        let (median, min, max) = stats(v);
        println!("{name:<40} {median:>10.1} {min:>10.1} {max:>10.1}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
