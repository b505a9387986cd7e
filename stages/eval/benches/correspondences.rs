//! Benchmark of the `correspondences` kind at ClothoV2 training-split size: 3,839 clips × 19,195
//! captions (73.7 M pairs), 3 teachers, random L2-normalised 256-d embeddings. Prints the wall
//! time, the peak resident memory (VmHWM) and the size of `correspondences.parquet`.
//!
//! Then times `evaluate` at ClothoV2 evaluation-split size (1,045 clips × 5,225 captions, 1,000
//! bootstrap resamples).
//!
//! `cargo bench -p pipeline-eval --bench correspondences [-- CLIPS CAPTIONS_PER_CLIP TEACHERS DIM]`

use std::time::Instant;

use pipeline_eval::{Correspondences, Evaluate};

#[path = "../tests/common/mod.rs"]
mod common;

use common::{random_embeddings, run_stage, synthetic_features};

fn vm_hwm_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        // `cargo bench` appends `--bench`; only the positional sizes are ours.
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (clips, per_clip, teachers, dim) = (arg(0, 3839), arg(1, 5), arg(2, 3), arg(3, 256));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = tempfile::tempdir()?;
    let features = synthetic_features([clips, 0, 0], per_clip, 1, false);
    let fdir = dir.path().join("features");
    std::fs::create_dir_all(&fdir)?;
    features.save(&fdir)?;
    let mut inputs = Vec::new();
    for m in 0..teachers {
        let d = dir.path().join(format!("embed-{m}"));
        std::fs::create_dir_all(&d)?;
        random_embeddings(clips, clips * per_clip, dim, m as u64).save(&d)?;
        inputs.push((Some("embed"), d));
    }
    drop(features);
    let before = vm_hwm_mib().unwrap_or(f64::NAN);
    let out = dir.path().join("out");
    let start = Instant::now();
    run_stage(
        &Correspondences,
        "correspondences",
        "",
        &[("teachers", inputs), ("features", vec![(None, fdir)])],
        &out,
        threads,
    )?;
    let secs = start.elapsed().as_secs_f64();
    let size = std::fs::metadata(out.join("correspondences.parquet"))?.len();
    let pairs = clips * clips * per_clip;
    println!(
        "correspondences: {clips} clips x {} captions = {pairs} pairs, {teachers} teachers, dim {dim}, {threads} threads",
        clips * per_clip
    );
    println!(
        "time: {secs:.1} s ({:.2} M pairs/s)",
        pairs as f64 / secs / 1e6
    );
    println!(
        "peak memory (VmHWM): {:.0} MiB (before the run: {before:.0} MiB)",
        vm_hwm_mib().unwrap_or(f64::NAN)
    );
    println!(
        "correspondences.parquet: {:.1} MiB ({:.1} bytes/pair)",
        size as f64 / 1048576.0,
        size as f64 / pairs as f64
    );
    println!(
        "teachers.safetensors: {:.1} MiB",
        std::fs::metadata(out.join("teachers.safetensors"))?.len() as f64 / 1048576.0
    );

    // `evaluate` at ClothoV2 evaluation-split size.
    let (test_clips, dim) = (1045, 256);
    let features = synthetic_features([0, 0, test_clips], 5, 1, false);
    let fdir = dir.path().join("features-test");
    std::fs::create_dir_all(&fdir)?;
    features.save(&fdir)?;
    let edir = dir.path().join("embed-test");
    std::fs::create_dir_all(&edir)?;
    random_embeddings(test_clips, test_clips * 5, dim, 9).save(&edir)?;
    let start = Instant::now();
    run_stage(
        &Evaluate,
        "evaluate",
        "bootstrap = 1000",
        &[
            ("embeddings", vec![(None, edir)]),
            ("features", vec![(None, fdir)]),
        ],
        &dir.path().join("eval-out"),
        threads,
    )?;
    println!(
        "evaluate: {test_clips} clips x {} captions, dim {dim}, 1000 bootstrap resamples: {:.2} s",
        test_clips * 5,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
