//! Training steps per second of the default model (Burn flex, CPU) against the same model in
//! PyTorch on the CPU (same shapes, batch and thread count).
//!
//! `cargo bench -p pipeline-learn --bench train_step [-- --threads N --steps N --rounds N --no-torch]`
//! (rounds, default 3, alternate the two sides; medians are printed)
//!
//! The PyTorch reference (`benches/train_step.py`) runs in a virtual environment under
//! `target/bench-venv`, created on first use with the pinned `benches/requirements.txt` (PyPI).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use pipeline_formats::Split;
use pipeline_learn::batches::{Row, audio_tensors, epoch_batches, rows, text_input};
use pipeline_learn::losses::{positives, scalar, similarity, sup_loss};
use pipeline_learn::params::{ModelParams, OptimParams};

// The tests' synthetic feature sets; the bench uses only the pipeline-scale one.
#[allow(dead_code)]
#[path = "../tests/common/fixtures.rs"]
mod fixtures;
use fixtures::Synthetic;

// As the `pipeline` binary allocates.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    let threads: usize = arg("--threads").map_or(2, |v| v.parse().unwrap());
    let steps: usize = arg("--steps").map_or(60, |v| v.parse().unwrap());
    let skip_torch = std::env::args().any(|a| a == "--no-torch");
    let batch = 32;
    let data = Synthetic::pipeline_scale();
    let f = data.build();
    let optim: OptimParams = serde_json::from_value(serde_json::json!({}))?;
    // `--model '<json>'` overrides the model (for tuning); default: the kinds' default model.
    let model_params: ModelParams = match arg("--model") {
        Some(json) => serde_json::from_str(&json)?,
        None => ModelParams::default(),
    };
    let model_params = model_params
        .canonical()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = model_params.resolve(&optim, &f, None)?;

    // Rounds alternate the two sides, so that a burst of load on this shared machine slows both
    // of one round rather than one side of the comparison; medians are reported.
    let rounds: usize = arg("--rounds").map_or(3, |v| v.parse().unwrap()).max(1);
    let torch_sps = || -> anyhow::Result<Option<f64>> {
        if skip_torch {
            return Ok(None);
        }
        torch(threads, steps, batch, &data, f.vocab.len()).map(Some)
    };
    let measured = pipeline_learn::device::with_threads(
        threads,
        || -> anyhow::Result<Vec<(f64, Option<f64>)>> {
            let ad = Device::flex().autodiff();
            let mut model = config.init(&ad, 0);
            let mut opt = AdamWConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(0.0)
                .init();
            let train: Vec<Row> = rows(&f, Split::Train);
            let batches: Vec<Vec<Row>> = (0..)
                .flat_map(|e| epoch_batches(&train, batch, 0, e, false))
                .filter(|b| b.len() == batch)
                .take(steps + 5)
                .collect();
            let mut run = |b: &[Row], model: pipeline_learn::models::DualEncoder| {
                let clips: Vec<usize> = b.iter().map(|r| r.clip).collect();
                let caps: Vec<usize> = b.iter().map(|r| r.caption).collect();
                let (mel, mask) = audio_tensors(&f, &clips, &ad).expect("in memory");
                let text = text_input(&f, &caps, &ad);
                let mut rng = pipeline_learn::batches::epoch_rng(0, 0, 2);
                let mut noise = Some(&mut rng);
                let sim = similarity(
                    model.embed_audio(mel, mask, &mut noise),
                    model.embed_text(text, &mut noise),
                );
                let loss = sup_loss(sim, model.logit_scale(&ad), positives(&clips, &ad));
                let _ = scalar(loss.clone());
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                opt.step(1e-3, model, grads)
            };
            for b in &batches[..5] {
                model = run(b, model); // warm-up
            }
            let mut measured = Vec::new();
            for _ in 0..rounds {
                let t = Instant::now();
                for b in &batches[5..] {
                    model = run(b, model);
                }
                let burn = steps as f64 / t.elapsed().as_secs_f64();
                measured.push((burn, torch_sps()?));
            }
            Ok(measured)
        },
    )??;
    let burn: Vec<f64> = measured.iter().map(|m| m.0).collect();
    println!(
        "burn flex: {:.2} steps/s (default model, batch {batch}, {} mels x {} frames, {threads} threads, {steps} steps; median of {rounds} rounds: {})",
        median(&burn),
        data.n_mels,
        data.n_frames,
        listed(&burn)
    );
    if std::env::args().any(|a| a == "--learn") {
        learn(&f, optim.clone(), config.clone(), threads)?;
    }
    let torch: Vec<f64> = measured.iter().filter_map(|m| m.1).collect();
    if torch.is_empty() {
        return Ok(());
    }
    let ratios: Vec<f64> = measured.iter().filter_map(|&(b, t)| Some(b / t?)).collect();
    println!(
        "pytorch cpu: {:.2} steps/s (rounds: {})",
        median(&torch),
        listed(&torch)
    );
    println!(
        "ratio burn/pytorch: {:.2} (median of the rounds' ratios: {})",
        median(&ratios),
        listed(&ratios)
    );
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    pipeline_api::testing::median_and_range(values).0
}

fn listed(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn torch(
    threads: usize,
    steps: usize,
    batch: usize,
    data: &Synthetic,
    vocab: usize,
) -> anyhow::Result<f64> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = pipeline_api::testing::python_venv(
        &pipeline_api::testing::target_dir(env!("CARGO_MANIFEST_DIR")).join("bench-venv"),
        &manifest.join("benches/requirements.txt"),
    )?;
    let out = Command::new(&python)
        .arg(manifest.join("benches/train_step.py"))
        .args([
            "--threads",
            &threads.to_string(),
            "--steps",
            &steps.to_string(),
            "--batch",
            &batch.to_string(),
        ])
        .args([
            "--mels",
            &data.n_mels.to_string(),
            "--frames",
            &data.n_frames.to_string(),
        ])
        .args([
            "--tokens",
            &data.max_tokens.to_string(),
            "--vocab",
            &vocab.to_string(),
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "train_step.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let sps = text
        .lines()
        .find_map(|l| l.strip_prefix("steps_per_second "))
        .ok_or_else(|| anyhow::anyhow!("no result from train_step.py: {text}"))?;
    Ok(sps.trim().parse()?)
}

/// Trains the default model with the default schedule on the pipeline-scale synthetic set and
/// prints the validation curve (does it learn?).
fn learn(
    f: &pipeline_formats::FeatureSet,
    optim: OptimParams,
    model: pipeline_learn::models::DualEncoderConfig,
    threads: usize,
) -> anyhow::Result<()> {
    use pipeline_learn::losses::Objective;
    use pipeline_learn::train::{TrainJob, train};
    let scratch = tempfile::tempdir()?;
    let job = TrainJob {
        node: "bench",
        features: f,
        sources: Vec::new(),
        optim,
        model,
        init: None,
        pretrained: Default::default(),
        objective: Objective::Contrastive,
        fingerprint: serde_json::json!({}),
        compute: pipeline_learn::device::resolve(pipeline_learn::params::DeviceChoice::Cpu, None)?,
        scratch_dir: scratch.path(),
        reporter: &pipeline_api::SilentReporter,
        stop_after: None,
    };
    let t = Instant::now();
    let s = pipeline_learn::device::with_threads(threads, || train(&job))??;
    for c in &s.curves {
        let v = c.val.unwrap();
        println!(
            "epoch {:2}: loss {:.4} val mAP@10 {:.4} R@1 {:.4} R@10 {:.4}",
            c.epoch, c.train_loss, v.map10, v.r1, v.r10
        );
    }
    let png = std::env::temp_dir().join("pipeline-learn-bench-curves.png");
    pipeline_learn::outputs::plot_curves(&png, &s.curves)?;
    println!("curves: {}", png.display());
    println!(
        "training: {:.1} s total, {:.2} steps/s, best epoch {}",
        t.elapsed().as_secs_f64(),
        s.steps_per_second,
        s.best_epoch
    );
    Ok(())
}
