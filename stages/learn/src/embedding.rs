//! Evaluation-mode embeddings (no dropout, no patch-out), batched, and the model files
//! (`model.mpk`: Burn's burnpack record; `model.json`: the [`DualEncoderConfig`]).

use std::path::Path;

use anyhow::Context;
use burn::prelude::*;
use burn::store::ModuleRecord;
use pipeline_formats::FeatureSet;

use crate::batches::{audio_tensors, text_input};
use crate::models::layers::canonical_ids;
use crate::models::{DualEncoder, DualEncoderConfig};

pub const MODEL_FILE: &str = "model.mpk";
pub const MODEL_CONFIG_FILE: &str = "model.json";

fn rows(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 embeddings")
}

/// Embeddings `[clips.len(), dim]` (row-major) of `clips`, `batch` at a time.
pub fn embed_clips(
    model: &DualEncoder,
    features: &FeatureSet,
    clips: &[usize],
    batch: usize,
    device: &Device,
) -> anyhow::Result<Vec<f32>> {
    let mut out = Vec::new();
    for chunk in clips.chunks(batch.max(1)) {
        let (mel, mask) = audio_tensors(features, chunk, device)?;
        out.extend(rows(model.embed_audio(mel, mask, &mut None)));
    }
    Ok(out)
}

/// Embeddings `[captions.len(), dim]` (row-major) of `captions`, `batch` at a time.
pub fn embed_captions(
    model: &DualEncoder,
    features: &FeatureSet,
    captions: &[usize],
    batch: usize,
    device: &Device,
) -> Vec<f32> {
    let mut out = Vec::new();
    for chunk in captions.chunks(batch.max(1)) {
        out.extend(rows(
            model.embed_text(text_input(features, chunk, device), &mut None),
        ));
    }
    out
}

/// Embeddings `[b, dim]` (row-major) of clips featurised outside a feature set: `mel` is
/// `[b, windows, n_mels, n_frames]` row-major, `window_mask` `[b, windows]` (1 = audio).
pub fn embed_mel(
    model: &DualEncoder,
    mel: Vec<f32>,
    window_mask: &[u8],
    shape: [usize; 4],
    device: &Device,
) -> Vec<f32> {
    let mask: Vec<f32> = window_mask
        .iter()
        .map(|&v| f32::from(u8::from(v != 0)))
        .collect();
    let mel = Tensor::from_data(TensorData::new(mel, shape), device);
    let mask = Tensor::from_data(TensorData::new(mask, [shape[0], shape[1]]), device);
    rows(model.embed_audio(mel, mask, &mut None))
}

/// The embedding of one text given as token ids (`max_tokens` of them, padded).
pub fn embed_token_ids(model: &DualEncoder, ids: Vec<i64>, device: &Device) -> Vec<f32> {
    let n = ids.len();
    let tokens = Tensor::from_data(TensorData::new(ids, [1, n]), device);
    rows(model.embed_text(crate::models::TextInput::Tokens(tokens), &mut None))
}

/// Reads `model.json` of a `train`/`distill` output directory.
pub fn load_config(dir: &Path) -> anyhow::Result<DualEncoderConfig> {
    let path = dir.join(MODEL_CONFIG_FILE);
    let bytes = fs_err::read(&path)?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("`{}` is not a model configuration", path.display()))
}

/// Rebuilds the model of a `train`/`distill` output directory on `device`.
pub fn load_model(dir: &Path, device: &Device) -> anyhow::Result<(DualEncoder, DualEncoderConfig)> {
    let config = load_config(dir)?;
    let model = load_record(config.init(device, 0), &dir.join(MODEL_FILE))?;
    Ok((model, config))
}

/// Applies a saved record to `model`.
pub fn load_record(model: DualEncoder, path: &Path) -> anyhow::Result<DualEncoder> {
    let record = ModuleRecord::load(path)
        .map_err(|e| anyhow::anyhow!("reading `{}`: {e}", path.display()))?;
    model
        .try_load_record(record)
        .map_err(|e| anyhow::anyhow!("`{}` does not fit the model: {e}", path.display()))
}

/// Saves `model`'s parameters, with positional parameter ids ([`canonical_ids`]) so that the
/// file is a function of the weights alone (byte-identical for identical trainings). A model
/// whose ids are already positional (every model the training loop holds) keeps its ids.
pub fn save_record(model: &DualEncoder, path: &Path) -> anyhow::Result<()> {
    canonical_ids(model.clone())
        .save_file(path)
        .map_err(|e| anyhow::anyhow!("writing `{}`: {e}", path.display()))
}

/// Writes `model.json`.
pub fn save_config(config: &DualEncoderConfig, dir: &Path) -> anyhow::Result<()> {
    fs_err::write(
        dir.join(MODEL_CONFIG_FILE),
        serde_json::to_vec_pretty(config)?,
    )?;
    Ok(())
}
