//! The correspondence table at ClothoV2 training-split size (3,839 clips × 19,195 captions =
//! 73.7 M pairs, 3 teachers, random L2-normalised embeddings) at widths 256 and 1024, and
//! `evaluate` at ClothoV2 evaluation-split size (1,045 clips × 5,225 captions, 1,000 bootstrap
//! resamples), each beside a numpy reference run in the same command: `correspondences.py`
//! (numpy + pyarrow writing the same columns, encodings and row groups) and `evaluate.py`. The
//! references run in a venv at `target/bench-eval-venv` (the pinned `benches/requirements.txt`,
//! from PyPI on first use). Prints a table: wall time, the ratio, peak resident memory of each
//! side (each in its own process: this crate's stage in a child of the bench), and checks that
//! both tables hold the same rows (largest float difference printed) and that both evaluations
//! give the same metrics.
//!
//! `cargo bench -p pipeline-eval --bench correspondences [-- [--no-reference] CLIPS CAPTIONS_PER_CLIP TEACHERS WIDTH...]`
//!
//! `--no-reference` runs this crate's side only (for profiling it); the table then has no ratio.
//! `BENCH_KEEP=DIR` keeps this crate's tables there (`width-<W>.parquet`), to compare builds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, ensure};
use arrow::array::{Array, AsArray, RecordBatchReader};
use arrow::datatypes::{DataType, Float32Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipeline_eval::index::SplitIndex;
use pipeline_eval::{Correspondences, Evaluate};
use pipeline_formats::Split;

#[path = "../tests/common/mod.rs"]
mod common;

use common::{random_embeddings, run_stage, synthetic_features};

// As the `pipeline` binary allocates.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// A [`common::InputList`] that can cross a process boundary.
type OwnedInputList = Vec<(Option<String>, PathBuf)>;

/// One stage run of this crate's side, in a child process of this bench (`--child SPEC`), as
/// the references run in their own: its peak memory is then the stage's, not what generating
/// the inputs left resident here.
#[derive(serde::Serialize, serde::Deserialize)]
struct StageRun {
    kind: String,
    params: String,
    inputs: Vec<(String, OwnedInputList)>,
    out: PathBuf,
    threads: usize,
}

impl StageRun {
    /// Runs it in a child process: `(seconds, peak MiB)` of the child.
    fn measure(&self) -> anyhow::Result<(f64, f64)> {
        let out = Command::new(std::env::current_exe()?)
            .arg("--child")
            .arg(serde_json::to_string(self)?)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running the stage in a child process")?;
        ensure!(out.status.success(), "the `{}` child failed", self.kind);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let number = |k: &str| report[k].as_f64().context("the child's report");
        Ok((number("seconds")?, number("peak_mib")?))
    }

    /// In the child: runs the stage, prints `{"seconds", "peak_mib"}`.
    fn run_here(&self) -> anyhow::Result<()> {
        let kind: &dyn pipeline_api::StageKind = match self.kind.as_str() {
            "correspondences" => &Correspondences,
            "evaluate" => &Evaluate,
            other => anyhow::bail!("no stage kind `{other}` in this bench"),
        };
        let inputs: Vec<(&str, common::InputList<'_>)> = self
            .inputs
            .iter()
            .map(|(name, list)| {
                let list = list
                    .iter()
                    .map(|(n, p)| (n.as_deref(), p.clone()))
                    .collect();
                (name.as_str(), list)
            })
            .collect();
        let start = Instant::now();
        run_stage(
            kind,
            &self.kind,
            &self.params,
            &inputs,
            &self.out,
            self.threads,
        )?;
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({"seconds": seconds, "peak_mib": peak_mib()})
        );
        Ok(())
    }
}

fn python_json(python: &Path, script: &Path, args: &[String]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(out.status.success(), "{} failed", script.display());
    Ok(serde_json::from_slice(&out.stdout)?)
}

struct Row {
    what: String,
    ours_s: f64,
    reference_s: f64,
    ours_mib: f64,
    reference_mib: f64,
    check: String,
}

impl Row {
    fn ours_only(what: String, ours_s: f64, ours_mib: f64) -> Self {
        Self {
            what,
            ours_s,
            reference_s: f64::NAN,
            ours_mib,
            reference_mib: f64::NAN,
            check: "reference not run (--no-reference)".into(),
        }
    }
}

fn main() -> anyhow::Result<()> {
    if let Some(i) = std::env::args().position(|a| a == "--child") {
        let spec = std::env::args()
            .nth(i + 1)
            .context("--child needs a spec")?;
        return serde_json::from_str::<StageRun>(&spec)?.run_here();
    }
    let with_reference = !std::env::args().any(|a| a == "--no-reference");
    let args: Vec<usize> = std::env::args()
        .skip(1)
        // `cargo bench` appends `--bench`; only the positional sizes are ours.
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (clips, per_clip, teachers) = (arg(0, 3839), arg(1, 5), arg(2, 3));
    let widths: Vec<usize> = if args.len() > 3 {
        args[3..].to_vec()
    } else {
        vec![256, 1024]
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = pipeline_api::testing::python_venv(
        &pipeline_api::testing::target_dir(env!("CARGO_MANIFEST_DIR")).join("bench-eval-venv"),
        &manifest.join("benches/requirements.txt"),
    )?;
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();

    let features = synthetic_features([clips, 0, 0], per_clip, 1, false);
    let fdir = dir.path().join("features");
    std::fs::create_dir_all(&fdir)?;
    features.save(&fdir)?;
    drop(features);
    let index = SplitIndex::load(&fdir, Split::Train)?;
    let index_json = dir.path().join("index.json");
    std::fs::write(
        &index_json,
        serde_json::to_vec(&serde_json::json!({
            "clip_rows": index.clip_rows,
            "clip_ids": index.clip_ids,
            "clip_files": index.clip_files,
            "caption_rows": index.caption_rows,
            "caption_ids": index.caption_ids,
            "captions": index.caption_texts,
            "caption_clip": index.caption_clip,
        }))?,
    )?;
    let pairs = index.n_clips() * index.n_captions();
    for &dim in &widths {
        let mut inputs = Vec::new();
        for m in 0..teachers {
            let d = dir.path().join(format!("embed-{dim}-{m}"));
            std::fs::create_dir_all(&d)?;
            random_embeddings(clips, clips * per_clip, dim, m as u64).save(&d)?;
            inputs.push((Some("embed".to_owned()), d));
        }
        let out = dir.path().join(format!("out-{dim}"));
        let (ours_s, ours_mib) = StageRun {
            kind: "correspondences".into(),
            params: String::new(),
            inputs: vec![
                ("teachers".into(), inputs),
                ("features".into(), vec![(None, fdir.clone())]),
            ],
            out: out.clone(),
            threads,
        }
        .measure()?;
        let ours = out.join("correspondences.parquet");
        if let Some(keep) = std::env::var_os("BENCH_KEEP") {
            let keep = Path::new(&keep);
            std::fs::create_dir_all(keep)?;
            std::fs::copy(&ours, keep.join(format!("width-{dim}.parquet")))?;
        }
        let what = format!(
            "correspondences, {} clips x {} captions = {:.1} M pairs, {teachers} teachers, width {dim}",
            index.n_clips(),
            index.n_captions(),
            pairs as f64 / 1e6
        );
        if !with_reference {
            rows.push(Row::ours_only(what, ours_s, ours_mib));
            std::fs::remove_dir_all(&out)?;
            continue;
        }
        let reference = dir.path().join(format!("reference-{dim}.parquet"));
        let report = python_json(
            &python,
            &manifest.join("benches/correspondences.py"),
            &[
                "--teachers".into(),
                out.join("teachers.safetensors").display().to_string(),
                "--index".into(),
                index_json.display().to_string(),
                "--out".into(),
                reference.display().to_string(),
            ],
        )?;
        let diff = compare_tables(&ours, &reference)?;
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1048576.0;
        rows.push(Row {
            what,
            ours_s,
            reference_s: report["seconds"].as_f64().unwrap_or(f64::NAN),
            ours_mib,
            reference_mib: report["peak_mib"].as_f64().unwrap_or(f64::NAN),
            check: format!(
                "same rows, max float diff {diff:.1e}; {:.0} vs {:.0} MiB Parquet",
                size(&ours),
                size(&reference)
            ),
        });
        std::fs::remove_dir_all(&out)?;
        std::fs::remove_file(&reference)?;
    }

    if with_reference {
        rows.push(evaluate_row(dir.path(), &python, manifest, threads)?);
    }

    println!(
        "machine: {threads} threads; load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("reference: {}", reference_versions(&python));
    println!();
    println!(
        "| what | this crate | numpy reference | reference / this | peak memory, this | peak memory, reference | check |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} s | {:.2} s | {:.2}x | {:.0} MiB | {:.0} MiB | {} |",
            r.what,
            r.ours_s,
            r.reference_s,
            r.reference_s / r.ours_s,
            r.ours_mib,
            r.reference_mib,
            r.check
        );
    }
    Ok(())
}

fn reference_versions(python: &Path) -> String {
    Command::new(python)
        .args([
            "-c",
            "import numpy, pyarrow; print(f'numpy {numpy.__version__}, pyarrow {pyarrow.__version__}')",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Both tables row by row: the same columns, equal integers, booleans and strings, and the
/// largest difference of any float.
fn compare_tables(a: &Path, b: &Path) -> anyhow::Result<f32> {
    let open = |p: &Path| -> anyhow::Result<_> {
        Ok(ParquetRecordBatchReaderBuilder::try_new(File::open(p)?)?
            .with_batch_size(1 << 16)
            .build()?)
    };
    let (ra, rb) = (open(a)?, open(b)?);
    ensure!(
        ra.schema().fields().iter().map(|f| f.name()).eq(rb
            .schema()
            .fields()
            .iter()
            .map(|f| f.name())),
        "the tables have other columns: {:?} vs {:?}",
        ra.schema(),
        rb.schema()
    );
    let mut worst = 0.0f32;
    let mut rows = [0usize; 2];
    for (x, y) in ra.zip(rb) {
        let (x, y) = (x?, y?);
        ensure!(x.num_rows() == y.num_rows(), "batches of other lengths");
        rows[0] += x.num_rows();
        for (c, (u, v)) in x.columns().iter().zip(y.columns()).enumerate() {
            if *u.data_type() == DataType::Float32 {
                let (u, v) = (
                    u.as_primitive::<Float32Type>(),
                    v.as_primitive::<Float32Type>(),
                );
                for (p, q) in u.values().iter().zip(v.values()) {
                    worst = worst.max((p - q).abs());
                }
            } else {
                ensure!(
                    u.to_data() == v.to_data(),
                    "column {} differs near row {}",
                    x.schema().field(c).name(),
                    rows[0]
                );
            }
        }
        rows[1] += y.num_rows();
    }
    ensure!(rows[0] == rows[1], "other row counts");
    Ok(worst)
}

/// `evaluate` at ClothoV2 evaluation size beside `evaluate.py`.
fn evaluate_row(dir: &Path, python: &Path, manifest: &Path, threads: usize) -> anyhow::Result<Row> {
    let (test_clips, dim, per_clip) = (1045, 256, 5);
    let features = synthetic_features([0, 0, test_clips], per_clip, 1, false);
    let fdir = dir.join("features-test");
    std::fs::create_dir_all(&fdir)?;
    features.save(&fdir)?;
    let embeddings = random_embeddings(test_clips, test_clips * per_clip, dim, 9);
    let edir = dir.join("embed-test");
    std::fs::create_dir_all(&edir)?;
    embeddings.save(&edir)?;
    let out = dir.join("eval-out");
    let (ours_s, ours_mib) = StageRun {
        kind: "evaluate".into(),
        params: "bootstrap = 1000".into(),
        inputs: vec![
            ("embeddings".into(), vec![(None, edir)]),
            ("features".into(), vec![(None, fdir.clone())]),
        ],
        out: out.clone(),
        threads,
    }
    .measure()?;

    // The reference reads the split's rows, normalised, in split order (here: all rows).
    let index = SplitIndex::load(&fdir, Split::Test)?;
    let rdir = dir.join("eval-reference");
    std::fs::create_dir_all(&rdir)?;
    write_npy(
        &rdir.join("audio.npy"),
        &embeddings.audio,
        [test_clips, dim],
    )?;
    write_npy(
        &rdir.join("text.npy"),
        &embeddings.text,
        [test_clips * per_clip, dim],
    )?;
    std::fs::write(
        rdir.join("caption_clip.json"),
        serde_json::to_vec(&index.caption_clip)?,
    )?;
    let report = python_json(
        python,
        &manifest.join("benches/evaluate.py"),
        &["--dir".into(), rdir.display().to_string()],
    )?;
    let ours: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json"))?)?;
    let mut worst = 0.0f64;
    for direction in ["t2a", "a2t_any", "a2t_fraction"] {
        for metric in ["r1", "r5", "r10", "map10"] {
            let (a, b) = (
                ours[direction][metric].as_f64().context("metrics.json")?,
                report[direction][metric].as_f64().context("evaluate.py")?,
            );
            worst = worst.max((a - b).abs());
        }
    }
    // Both sides round the cosines differently (two GEMMs), which can swap near-ties: a few
    // queries' ranks, not the computation.
    ensure!(worst < 1e-3, "evaluate and evaluate.py disagree by {worst}");
    Ok(Row {
        what: format!(
            "evaluate, {test_clips} clips x {} captions, width {dim}, 1000 bootstrap resamples",
            test_clips * per_clip
        ),
        ours_s,
        reference_s: report["seconds"].as_f64().unwrap_or(f64::NAN),
        ours_mib,
        reference_mib: report["peak_mib"].as_f64().unwrap_or(f64::NAN),
        check: format!("the same 12 point metrics (largest difference {worst:.1e})"),
    })
}

/// A float32 C-order `.npy` (format 1.0).
fn write_npy(path: &Path, values: &[f32], shape: [usize; 2]) -> anyhow::Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        shape[0], shape[1]
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes)?;
    Ok(())
}
