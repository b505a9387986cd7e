//! Parameters of the `train`, `distill` and `embed` kinds: strict structs (every field
//! documented, unknown keys refused), range checks, and the model configuration they resolve to
//! once the feature set's shapes are known.

use std::path::{Path, PathBuf};

use anyhow::Context;
use pipeline_api::ParamError;
use pipeline_formats::FeatureSet;
use serde::{Deserialize, Serialize};

use crate::models::cnn::CnnEncoderConfig;
use crate::models::frozen::FrozenHeadConfig;
use crate::models::passt::PasstEncoderConfig;
use crate::models::text::{BertTextConfig, Pooling, TransformerTextConfig};
use crate::models::yamnet::YamnetConfig;
use crate::models::{AudioEncoderConfig, DualEncoderConfig, TextEncoderConfig};
use crate::pretrained::bert::bert_config;

/// Where a run computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when the binary is built with the `cuda` feature and a GPU is present, else CPU.
    #[default]
    Auto,
    /// Burn's flex backend on the CPU.
    Cpu,
    /// Burn's CUDA backend (needs a binary built with `--features cuda`).
    Cuda,
}

/// Declares a parameter struct holding the optimisation fields shared by `train` and `distill`
/// plus its own (serde's `flatten` cannot be combined with `deny_unknown_fields`), and its
/// `optim()` accessor.
macro_rules! with_optim_params {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
        /// Seed of the initial weights, the per-epoch shuffles and the dropout/patch-out masks.
        #[serde(default)]
        pub seed: u64,
        /// Training epochs (≥ 1).
        #[serde(default = "default_epochs")]
        pub epochs: usize,
        /// Rows (clip, caption pairs) per batch (≥ 2).
        #[serde(default = "default_batch_size")]
        pub batch_size: usize,
        /// Peak learning rate of AdamW (β 0.9/0.999), reached after the warm-up.
        #[serde(default = "default_lr")]
        pub lr: f64,
        /// Epochs of linear warm-up from 0 (may be fractional; ≤ `epochs`).
        #[serde(default = "default_warmup")]
        pub warmup_epochs: f64,
        /// Learning rate at the end of the cosine decay (≤ `lr`).
        #[serde(default = "default_final_lr")]
        pub final_lr: f64,
        /// Epoch at which the cosine decay reaches `final_lr`, flat after (between
        /// `warmup_epochs` and `epochs`; the paper: 15 of 20). Default: the last step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub decay_epochs: Option<f64>,
        /// Drop each epoch's last partial batch, as the authors do (default: keep it when it
        /// has at least 2 rows).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub drop_last: bool,
        /// Decoupled (AdamW) weight decay (≥ 0).
        #[serde(default)]
        pub weight_decay: f64,
        /// Clip each parameter's gradient to this L2 norm (Burn's per-parameter norm clipping).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub grad_clip: Option<f64>,
        /// Temperature τ of the logits `C / τ` (and of the distillation targets).
        #[serde(default = "default_tau")]
        pub tau: f64,
        /// Learn τ (as `log(1/τ)`, starting from `tau`).
        #[serde(default)]
        pub learnable_tau: bool,
        /// `auto`, `cpu` or `cuda`.
        #[serde(default)]
        pub device: DeviceChoice,
        /// CPU threads (default: all the executor gives the node).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub threads: Option<usize>,
        $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            /// The optimisation settings.
            pub fn optim(&self) -> OptimParams {
                OptimParams {
                    seed: self.seed,
                    epochs: self.epochs,
                    batch_size: self.batch_size,
                    lr: self.lr,
                    warmup_epochs: self.warmup_epochs,
                    final_lr: self.final_lr,
                    decay_epochs: self.decay_epochs,
                    drop_last: self.drop_last,
                    weight_decay: self.weight_decay,
                    grad_clip: self.grad_clip,
                    tau: self.tau,
                    learnable_tau: self.learnable_tau,
                    device: self.device,
                    threads: self.threads,
                }
            }
        }
    };
}

with_optim_params! {
    /// Optimisation settings shared by `train` and `distill` (their common parameters).
    pub struct OptimParams {}
}

fn default_epochs() -> usize {
    10
}
fn default_batch_size() -> usize {
    32
}
fn default_lr() -> f64 {
    1e-3
}
fn default_warmup() -> f64 {
    1.0
}
fn default_final_lr() -> f64 {
    1e-5
}
fn default_tau() -> f64 {
    0.05
}

/// Which audio encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AudioKind {
    /// Compact strided CNN (fast on CPU; the default).
    #[default]
    Cnn,
    /// PaSST-style patch transformer with structured patch-out (for GPUs).
    Passt,
    /// A head over a frozen encoder's per-window embeddings (features from `encode`).
    Frozen,
    /// YAMNet (MobileNet v1), on the `yamnet` front end's 64 × 96 patches; pretrained from
    /// `model.yamnet.weights`, fine-tuned.
    Yamnet,
}

/// Which text encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TextKind {
    /// Small transformer over word ids (the default).
    #[default]
    Transformer,
    /// BERT-style encoder (BERT-base sizes by default; untrained).
    Bert,
    /// A head over a frozen encoder's caption embeddings (features from `encode`).
    Frozen,
}

// The encoders' parameter tables take a missing key from their `Default` (`#[serde(default)]`
// on the struct): the one place the model defaults live. Their `config` builds the Burn module
// configuration, which has no defaults of its own.

/// Sizes of the CNN audio encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CnnParams {
    /// Output channels of the stride-2 3×3 convolutions, in order.
    pub channels: Vec<usize>,
    /// Dropout on the pooled audio features.
    pub dropout: f64,
    /// Average-pool the log-mel by this factor (frequency and time) before the convolutions
    /// (default 2: a 64 × 200 window becomes 32 × 100; roughly 2-3× faster on the CPU).
    pub input_pool: usize,
}

impl Default for CnnParams {
    fn default() -> Self {
        Self {
            channels: vec![16, 32, 64],
            dropout: 0.0,
            input_pool: 2,
        }
    }
}

impl CnnParams {
    pub fn config(&self) -> CnnEncoderConfig {
        CnnEncoderConfig {
            channels: self.channels.clone(),
            dropout: self.dropout,
            input_pool: self.input_pool,
        }
    }
}

/// Sizes of the PaSST-style audio encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasstParams {
    /// Patch side in mel bins and frames.
    pub patch: usize,
    /// Patch stride (PaSST: 10, overlapping).
    pub stride: usize,
    /// Transformer width.
    pub d_model: usize,
    /// Transformer layers.
    pub n_layers: usize,
    /// Attention heads (must divide `d_model`).
    pub n_heads: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Dropout.
    pub dropout: f64,
    /// Frequency rows of patches dropped while training (structured patch-out).
    pub freq_patchout: usize,
    /// Time columns of patches dropped while training.
    pub time_patchout: usize,
}

impl Default for PasstParams {
    fn default() -> Self {
        Self {
            patch: 16,
            stride: 10,
            d_model: 192,
            n_layers: 4,
            n_heads: 3,
            d_ff: 768,
            dropout: 0.1,
            freq_patchout: 1,
            time_patchout: 3,
        }
    }
}

impl PasstParams {
    /// The encoder for windows of `n_mels` × `n_frames`.
    pub fn config(&self, n_mels: usize, n_frames: usize) -> PasstEncoderConfig {
        PasstEncoderConfig {
            n_mels,
            n_frames,
            patch: self.patch,
            stride: self.stride,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            d_ff: self.d_ff,
            dropout: self.dropout,
            freq_patchout: self.freq_patchout,
            time_patchout: self.time_patchout,
        }
    }
}

/// Sizes of the small transformer text encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformerParams {
    /// Width.
    pub d_model: usize,
    /// Layers.
    pub n_layers: usize,
    /// Attention heads (must divide `d_model`).
    pub n_heads: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Dropout.
    pub dropout: f64,
    /// `mean` (over non-padding tokens) or `first` (the first token's state).
    pub pooling: Pooling,
}

impl Default for TransformerParams {
    fn default() -> Self {
        Self {
            d_model: 128,
            n_layers: 1,
            n_heads: 4,
            d_ff: 256,
            dropout: 0.1,
            pooling: Pooling::Mean,
        }
    }
}

impl TransformerParams {
    /// The encoder for `vocab_size` token ids and captions of `max_tokens`.
    pub fn config(&self, vocab_size: usize, max_tokens: usize) -> TransformerTextConfig {
        TransformerTextConfig {
            vocab_size,
            max_tokens,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            d_ff: self.d_ff,
            dropout: self.dropout,
            mean_pooling: self.pooling == Pooling::Mean,
        }
    }
}

/// Sizes of the BERT-style text encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BertParams {
    /// Hidden width.
    pub hidden_size: usize,
    /// Layers.
    pub n_layers: usize,
    /// Attention heads (must divide `hidden_size`).
    pub n_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Position embeddings (≥ the feature set's `max_tokens`).
    pub max_positions: usize,
    /// Dropout.
    pub dropout: f64,
    /// A Hugging Face BERT folder (`config.json`, `model.safetensors`) inside the input
    /// `pretrained` to start from; the sizes are then the checkpoint's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
}

impl Default for BertParams {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            n_layers: 12,
            n_heads: 12,
            intermediate_size: 3072,
            max_positions: 512,
            dropout: 0.1,
            weights: None,
        }
    }
}

impl BertParams {
    /// The encoder, randomly initialised, for `vocab_size` token ids (without `weights`; with
    /// them the sizes are the checkpoint's, [`bert_config`]).
    pub fn config(&self, vocab_size: usize) -> BertTextConfig {
        BertTextConfig {
            vocab_size,
            max_positions: self.max_positions,
            layer_norm_eps: None,
            pooling: None,
            hidden_size: self.hidden_size,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            intermediate_size: self.intermediate_size,
            // BERT's two segments (the encoder uses segment 0 only).
            type_vocab_size: 2,
            dropout: self.dropout,
        }
    }
}

/// YAMNet (`audio = "yamnet"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct YamnetParams {
    /// YAMNet's ONNX model (`.onnx.zip`, `.onnx` or its folder) inside the input `pretrained`
    /// to start from; absent: random initialisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
}

/// The head over a frozen encoder's embeddings (`audio`/`text` = `frozen`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FrozenParams {
    /// Width of a hidden layer (linear + GELU) before the projection; 0: the projection alone.
    pub hidden: usize,
    /// Dropout on the embeddings while training.
    pub dropout: f64,
}

impl FrozenParams {
    fn check(&self, key: &str) -> Result<(), ParamError> {
        check(
            (0.0..1.0).contains(&self.dropout),
            &format!("{key}.dropout"),
            "must be in [0, 1)",
        )
    }

    /// The head over embeddings of width `input_dim`.
    pub fn config(&self, input_dim: usize) -> FrozenHeadConfig {
        FrozenHeadConfig {
            input_dim,
            hidden: self.hidden,
            dropout: self.dropout,
        }
    }
}

/// The model: encoders and shared width. Only the chosen encoders' tables may be given; the
/// canonical form holds exactly those (so an unused table never changes a cache key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelParams {
    /// Audio encoder: `cnn` (default), `passt` or `frozen`.
    pub audio: AudioKind,
    /// Text encoder: `transformer` (default), `bert` or `frozen`.
    pub text: TextKind,
    /// Width of the shared embedding space.
    pub embed_dim: usize,
    /// Sizes of the CNN (with `audio = "cnn"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnn: Option<CnnParams>,
    /// Sizes of the PaSST-style encoder (with `audio = "passt"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passt: Option<PasstParams>,
    /// YAMNet's weights (with `audio = "yamnet"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yamnet: Option<YamnetParams>,
    /// Sizes of the small transformer (with `text = "transformer"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transformer: Option<TransformerParams>,
    /// Sizes of the BERT-style encoder (with `text = "bert"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bert: Option<BertParams>,
    /// The head over frozen audio embeddings (with `audio = "frozen"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frozen_audio: Option<FrozenParams>,
    /// The head over frozen caption embeddings (with `text = "frozen"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frozen_text: Option<FrozenParams>,
}

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            audio: AudioKind::Cnn,
            text: TextKind::Transformer,
            embed_dim: 128,
            cnn: None,
            passt: None,
            yamnet: None,
            transformer: None,
            bert: None,
            frozen_audio: None,
            frozen_text: None,
        }
    }
}

with_optim_params! {
    /// Parameters of `train` (Stage 1: contrastive training with `L_sup`).
    pub struct TrainParams {
        /// The dual encoder to train.
        #[serde(default)]
        pub model: ModelParams,
        /// Per `features` input, in their order: how much of that source's train split one
        /// epoch draws (1 = every caption once, 0.5 = a different half each epoch, 2 = each
        /// caption twice). Default: 1 for every source.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub source_weights: Vec<f64>,
    }
}

with_optim_params! {
    /// Parameters of `distill` (Stage 2). The architecture is the `init` model's.
    pub struct DistillParams {
        /// Weight λ_sup of `L_sup` (the published recipe: 0).
        #[serde(default)]
        pub lambda_sup: f64,
        /// Weight λ_dist of `L_dist` (the published recipe: 1).
        #[serde(default = "default_lambda_dist")]
        pub lambda_dist: f64,
    }
}

fn default_lambda_dist() -> f64 {
    1.0
}

/// Parameters of `embed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedParams {
    /// Clips or captions per forward pass.
    #[serde(default = "default_embed_batch")]
    pub batch_size: usize,
    /// `auto`, `cpu` or `cuda`.
    #[serde(default)]
    pub device: DeviceChoice,
    /// CPU threads (default: all the executor gives the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

fn default_embed_batch() -> usize {
    64
}

/// `relative` inside the input `pretrained` (which must be bound); `key` names the param.
pub fn pretrained_path(
    pretrained: Option<&Path>,
    relative: Option<&str>,
    key: &str,
) -> anyhow::Result<PathBuf> {
    let relative = relative.with_context(|| format!("`{key}` is not set"))?;
    let root = pretrained.with_context(|| {
        format!("`{key}` names a file of the input `pretrained`, which is not bound")
    })?;
    let path = root.join(relative);
    anyhow::ensure!(
        path.exists(),
        "`{key} = \"{relative}\"`: no such file or folder in the input `pretrained` (`{}`)\nhint: the `fetch` node must include the package that holds it",
        root.display()
    );
    Ok(path)
}

/// A path inside the input `pretrained`: relative, without `..`.
fn check_relative(path: Option<&str>, key: &str) -> Result<(), ParamError> {
    let ok = path
        .is_none_or(|p| !std::path::Path::new(p).is_absolute() && !p.split('/').any(|s| s == ".."));
    check(
        ok,
        key,
        "must be a relative path inside the input `pretrained`",
    )
}

fn check(ok: bool, key: &str, message: &str) -> Result<(), ParamError> {
    if ok {
        Ok(())
    } else {
        Err(ParamError::at(key, message))
    }
}

fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// Largest peak learning rate accepted: AdamW moves every weight by about `lr` per step, so
/// beyond 1 a training can only diverge (the shipped pipelines use 2e-5 to 1e-3).
pub const MAX_LR: f64 = 1.0;
/// Accepted temperatures τ (those of `correspondences` too): the paper uses 0.05; at 1e-3 the
/// logits `C / τ` already span ±1000, and beyond 10 every pair scores alike.
pub const TAU_RANGE: (f64, f64) = pipeline_eval::correspondences::TAU_RANGE;
/// Largest decoupled weight decay accepted (the shipped pipelines use 0 and 0.05).
pub const MAX_WEIGHT_DECAY: f64 = 1.0;
/// Largest loss weight λ accepted.
pub const MAX_LAMBDA: f64 = 100.0;
/// Largest per-source weight accepted: a source drawn more than 100 times per epoch is a typo.
pub const MAX_SOURCE_WEIGHT: f64 = 100.0;

/// `v` as written in a pipeline file: `0.05`, `1e6`, `1e-30`.
pub fn number(v: f64) -> String {
    if v != 0.0 && v.is_finite() && !(1e-3..1e4).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// Refuses `value` outside `[lo, hi]` (with `lo_open`: `(lo, hi]`), naming the key and the value.
fn in_range(value: f64, key: &str, lo: f64, hi: f64, lo_open: bool) -> Result<(), ParamError> {
    let ok = value.is_finite() && value <= hi && if lo_open { value > lo } else { value >= lo };
    let open = if lo_open { "(" } else { "[" };
    check(
        ok,
        key,
        &format!(
            "must be in {open}{}, {}] (got {})",
            number(lo),
            number(hi),
            number(value)
        ),
    )
}

impl OptimParams {
    /// Range checks: generous enough for every shipped pipeline, tight enough that a value that
    /// can only diverge (or a typo by orders of magnitude) is refused before anything runs.
    pub fn validate(&self) -> Result<(), ParamError> {
        check(self.epochs >= 1, "epochs", "must be at least 1")?;
        check(
            self.batch_size >= 2,
            "batch_size",
            "must be at least 2 (a contrastive batch needs negatives)",
        )?;
        in_range(self.lr, "lr", 0.0, MAX_LR, true)?;
        check(
            self.warmup_epochs.is_finite()
                && self.warmup_epochs >= 0.0
                && self.warmup_epochs <= self.epochs as f64,
            "warmup_epochs",
            "must be between 0 and `epochs`",
        )?;
        check(
            self.final_lr.is_finite() && self.final_lr >= 0.0 && self.final_lr <= self.lr,
            "final_lr",
            "must be between 0 and `lr`",
        )?;
        if let Some(d) = self.decay_epochs {
            check(
                d.is_finite() && d >= self.warmup_epochs && d <= self.epochs as f64,
                "decay_epochs",
                "must be between `warmup_epochs` and `epochs`",
            )?;
        }
        in_range(
            self.weight_decay,
            "weight_decay",
            0.0,
            MAX_WEIGHT_DECAY,
            false,
        )?;
        if let Some(c) = self.grad_clip {
            check(positive(c), "grad_clip", "must be a positive number")?;
        }
        in_range(self.tau, "tau", TAU_RANGE.0, TAU_RANGE.1, false)?;
        if let Some(t) = self.threads {
            check(t >= 1, "threads", "must be at least 1")?;
        }
        Ok(())
    }
}

impl ModelParams {
    /// Fills the chosen encoders' defaults and refuses tables of encoders not chosen.
    pub fn canonical(mut self) -> Result<Self, ParamError> {
        self.refuse_unchosen_tables()?;
        match self.audio {
            AudioKind::Cnn => {
                let c = self.cnn.get_or_insert_with(Default::default);
                check(
                    !c.channels.is_empty() && c.channels.iter().all(|&x| x > 0),
                    "model.cnn.channels",
                    "must list positive channel counts",
                )?;
                check(
                    (0.0..1.0).contains(&c.dropout),
                    "model.cnn.dropout",
                    "must be in [0, 1)",
                )?;
                check(
                    c.input_pool >= 1,
                    "model.cnn.input_pool",
                    "must be at least 1",
                )?;
            }
            AudioKind::Passt => {
                let p = self.passt.get_or_insert_with(Default::default);
                check(
                    p.patch > 0 && p.stride > 0 && p.stride <= p.patch,
                    "model.passt.stride",
                    "need 0 < stride ≤ patch",
                )?;
                check(
                    p.d_model > 0 && p.n_heads > 0 && p.d_model.is_multiple_of(p.n_heads),
                    "model.passt.n_heads",
                    "must divide `d_model`",
                )?;
                check(
                    p.n_layers > 0 && p.d_ff > 0,
                    "model.passt.n_layers",
                    "layers and `d_ff` must be positive",
                )?;
                check(
                    (0.0..1.0).contains(&p.dropout),
                    "model.passt.dropout",
                    "must be in [0, 1)",
                )?;
            }
            AudioKind::Frozen => self
                .frozen_audio
                .get_or_insert_with(Default::default)
                .check("model.frozen_audio")?,
            AudioKind::Yamnet => {
                let y = self.yamnet.get_or_insert_with(Default::default);
                check_relative(y.weights.as_deref(), "model.yamnet.weights")?;
            }
        }
        match self.text {
            TextKind::Transformer => {
                let t = self.transformer.get_or_insert_with(Default::default);
                check(
                    t.d_model > 0 && t.n_heads > 0 && t.d_model.is_multiple_of(t.n_heads),
                    "model.transformer.n_heads",
                    "must divide `d_model`",
                )?;
                check(t.d_ff > 0, "model.transformer.d_ff", "must be positive")?;
                check(
                    (0.0..1.0).contains(&t.dropout),
                    "model.transformer.dropout",
                    "must be in [0, 1)",
                )?;
            }
            TextKind::Bert => {
                let b = self.bert.get_or_insert_with(Default::default);
                check(
                    b.hidden_size > 0 && b.n_heads > 0 && b.hidden_size.is_multiple_of(b.n_heads),
                    "model.bert.n_heads",
                    "must divide `hidden_size`",
                )?;
                check(
                    b.n_layers > 0 && b.intermediate_size > 0 && b.max_positions > 0,
                    "model.bert.n_layers",
                    "sizes must be positive",
                )?;
                check(
                    (0.0..1.0).contains(&b.dropout),
                    "model.bert.dropout",
                    "must be in [0, 1)",
                )?;
                check_relative(b.weights.as_deref(), "model.bert.weights")?;
                if b.weights.is_some() {
                    let sizes = BertParams {
                        dropout: b.dropout,
                        weights: b.weights.clone(),
                        ..Default::default()
                    };
                    check(
                        *b == sizes,
                        "model.bert",
                        "with `weights`, the sizes are the checkpoint's: give only `weights` and `dropout`",
                    )?;
                }
            }
            TextKind::Frozen => self
                .frozen_text
                .get_or_insert_with(Default::default)
                .check("model.frozen_text")?,
        }
        check(self.embed_dim > 0, "model.embed_dim", "must be positive")?;
        Ok(self)
    }

    /// The pretrained weights params, keyed by their names: YAMNet's, then BERT's.
    pub fn weights(&self) -> [(&'static str, Option<&str>); 2] {
        [
            (
                "model.yamnet.weights",
                self.yamnet.as_ref().and_then(|y| y.weights.as_deref()),
            ),
            (
                "model.bert.weights",
                self.bert.as_ref().and_then(|b| b.weights.as_deref()),
            ),
        ]
    }

    /// Refuses a sizes table of an encoder that is not the chosen one.
    fn refuse_unchosen_tables(&self) -> Result<(), ParamError> {
        let audio = [
            ("cnn", AudioKind::Cnn, self.cnn.is_some()),
            ("passt", AudioKind::Passt, self.passt.is_some()),
            ("yamnet", AudioKind::Yamnet, self.yamnet.is_some()),
            (
                "frozen_audio",
                AudioKind::Frozen,
                self.frozen_audio.is_some(),
            ),
        ];
        for (table, kind, given) in audio {
            let chosen = serde_json::to_value(self.audio).unwrap_or_default();
            let message = format!("given, but `model.audio` is {chosen}");
            check(
                !given || kind == self.audio,
                &format!("model.{table}"),
                &message,
            )?;
        }
        let text = [
            (
                "transformer",
                TextKind::Transformer,
                self.transformer.is_some(),
            ),
            ("bert", TextKind::Bert, self.bert.is_some()),
            ("frozen_text", TextKind::Frozen, self.frozen_text.is_some()),
        ];
        for (table, kind, given) in text {
            let chosen = serde_json::to_value(self.text).unwrap_or_default();
            let message = format!("given, but `model.text` is {chosen}");
            check(
                !given || kind == self.text,
                &format!("model.{table}"),
                &message,
            )?;
        }
        Ok(())
    }

    /// The model for `features` (window shape, vocabulary, caption length, frozen embeddings).
    /// Call on the canonical form.
    pub fn resolve(
        &self,
        optim: &OptimParams,
        features: &FeatureSet,
        pretrained: Option<&Path>,
    ) -> anyhow::Result<DualEncoderConfig> {
        let [_, _, n_mels, n_frames] = features.mel_shape();
        let (vocab_size, max_tokens) = (features.vocab.len(), features.max_tokens);
        match (&features.text_vectors, self.text) {
            (Some(_), TextKind::Frozen) | (None, TextKind::Transformer | TextKind::Bert) => {}
            (Some(_), _) => anyhow::bail!(
                "the features hold frozen caption embeddings (from `encode`): set `model.text = \"frozen\"` (and `model.audio = \"frozen\"`)"
            ),
            (None, _) => anyhow::bail!(
                "`model.text = \"frozen\"` needs caption embeddings: bind `features` to an `encode` node"
            ),
        }
        let audio = match self.audio {
            AudioKind::Cnn => {
                AudioEncoderConfig::Cnn(self.cnn.clone().unwrap_or_default().config())
            }
            AudioKind::Passt => AudioEncoderConfig::Passt(
                self.passt
                    .clone()
                    .unwrap_or_default()
                    .config(n_mels, n_frames),
            ),
            AudioKind::Yamnet => {
                anyhow::ensure!(
                    [n_mels, n_frames] == [64, 96],
                    "`model.audio = \"yamnet\"` needs 64 × 96 windows, the features have {n_mels} × {n_frames}\nhint: bind `features` to a `features` node with `preset = \"yamnet\"`"
                );
                AudioEncoderConfig::Yamnet(YamnetConfig::new().with_classifier(false))
            }
            AudioKind::Frozen => AudioEncoderConfig::Frozen(
                self.frozen_audio
                    .clone()
                    .unwrap_or_default()
                    .config(n_mels * n_frames),
            ),
        };
        let text = match self.text {
            TextKind::Transformer => TextEncoderConfig::Transformer(
                self.transformer
                    .clone()
                    .unwrap_or_default()
                    .config(vocab_size, max_tokens),
            ),
            TextKind::Bert if self.bert.as_ref().is_some_and(|b| b.weights.is_some()) => {
                let b = self.bert.clone().unwrap_or_default();
                let dir = pretrained_path(pretrained, b.weights.as_deref(), "model.bert.weights")?;
                let config = BertTextConfig {
                    dropout: b.dropout,
                    ..bert_config(&dir)?
                };
                anyhow::ensure!(
                    config.vocab_size == vocab_size,
                    "`model.bert.weights`: the checkpoint has {} token ids, the features' tokenizer {vocab_size}\nhint: give `features` the checkpoint's own `tokenizer.json` as input `tokenizer`",
                    config.vocab_size
                );
                anyhow::ensure!(
                    config.max_positions >= max_tokens,
                    "`model.bert.weights`: the checkpoint has {} positions, the captions {max_tokens} tokens",
                    config.max_positions
                );
                TextEncoderConfig::Bert(config)
            }
            TextKind::Bert => {
                let b = self.bert.clone().unwrap_or_default();
                anyhow::ensure!(
                    b.max_positions >= max_tokens,
                    "`model.bert.max_positions` ({}) is below the captions' {max_tokens} tokens",
                    b.max_positions
                );
                TextEncoderConfig::Bert(b.config(vocab_size))
            }
            TextKind::Frozen => {
                let dim = features.text_vectors.as_ref().map_or(0, |v| v.dim);
                TextEncoderConfig::Frozen(self.frozen_text.clone().unwrap_or_default().config(dim))
            }
        };
        Ok(DualEncoderConfig::new(
            audio,
            text,
            self.embed_dim,
            optim.tau,
            optim.learnable_tau,
        ))
    }
}

impl TrainParams {
    /// Also checks `source_weights` against `n_sources`, the artifacts bound to `features`.
    pub fn canonical(self, n_sources: usize) -> Result<Self, ParamError> {
        self.optim().validate()?;
        if !self.source_weights.is_empty() {
            check(
                self.source_weights.len() == n_sources,
                "source_weights",
                &format!(
                    "lists {} weights for {n_sources} `features` inputs",
                    self.source_weights.len()
                ),
            )?;
            for (k, &w) in self.source_weights.iter().enumerate() {
                in_range(
                    w,
                    &format!("source_weights[{k}]"),
                    0.0,
                    MAX_SOURCE_WEIGHT,
                    false,
                )?;
            }
            check(
                self.source_weights.iter().any(|&w| w > 0.0),
                "source_weights",
                "cannot all be 0",
            )?;
        }
        // All ones is the default: one key for both spellings.
        let source_weights = if self.source_weights.iter().all(|&w| w == 1.0) {
            Vec::new()
        } else {
            self.source_weights
        };
        Ok(Self {
            model: self.model.canonical()?,
            source_weights,
            ..self
        })
    }
}

impl DistillParams {
    pub fn canonical(self) -> Result<Self, ParamError> {
        self.optim().validate()?;
        in_range(self.lambda_sup, "lambda_sup", 0.0, MAX_LAMBDA, false)?;
        in_range(self.lambda_dist, "lambda_dist", 0.0, MAX_LAMBDA, false)?;
        check(
            self.lambda_sup + self.lambda_dist > 0.0,
            "lambda_dist",
            "`lambda_sup` and `lambda_dist` cannot both be 0",
        )?;
        Ok(self)
    }
}

impl EmbedParams {
    pub fn canonical(self) -> Result<Self, ParamError> {
        check(self.batch_size >= 1, "batch_size", "must be at least 1")?;
        if let Some(t) = self.threads {
            check(t >= 1, "threads", "must be at least 1")?;
        }
        Ok(self)
    }
}
