//! A PaSST-style patch transformer over log-mel windows (for GPU runs).
//!
//! Patch embedding (a convolution with kernel `patch` and stride `stride`), disentangled
//! frequency and time position embeddings (as PaSST), a class token, pre-LN transformer layers,
//! and the final class token as the window's embedding. While training, *structured patch-out*
//! drops `freq_patchout` whole frequency rows and `time_patchout` whole time columns of patches
//! (drawn from the training noise), which is PaSST's regulariser and its speed-up.
//! Not pretrained: the AudioSet weights of the paper's PaSST are not loaded.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, PaddingConfig2d};
use burn::prelude::*;
use rand::RngExt;

use super::layers::{Noise, TransformerLayer, TransformerLayerConfig, dropout};

/// Configuration of [`PasstEncoder`], built by [`crate::params::PasstParams::config`] (which
/// holds the defaults).
#[derive(Config, Debug)]
pub struct PasstEncoderConfig {
    /// Mel bins of the input.
    pub n_mels: usize,
    /// Frames of one window.
    pub n_frames: usize,
    /// Patch side (frequency and time).
    pub patch: usize,
    /// Patch stride (PaSST overlaps patches: stride 10 for patch 16).
    pub stride: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub dropout: f64,
    /// Frequency rows of patches dropped while training.
    pub freq_patchout: usize,
    /// Time columns of patches dropped while training.
    pub time_patchout: usize,
}

/// Patch transformer audio encoder.
#[derive(Module, Debug)]
pub struct PasstEncoder {
    pub patch_embedding: Conv2d,
    /// `[1, d_model, freq_patches, 1]`.
    pub freq_pos_embedding: Param<Tensor<4>>,
    /// `[1, d_model, 1, time_patches]`.
    pub time_pos_embedding: Param<Tensor<4>>,
    /// `[1, 1, d_model]`.
    pub cls_token: Param<Tensor<3>>,
    pub layers: Vec<TransformerLayer>,
    pub norm: LayerNorm,
    pub dropout: f64,
    pub freq_patchout: usize,
    pub time_patchout: usize,
}

impl PasstEncoderConfig {
    /// Number of patches along (frequency, time).
    pub fn grid(&self) -> (usize, usize) {
        let g = |n: usize| {
            if n < self.patch {
                1
            } else {
                (n - self.patch) / self.stride + 1
            }
        };
        (g(self.n_mels), g(self.n_frames))
    }

    pub fn init(&self, device: &Device) -> PasstEncoder {
        let (fp, tp) = self.grid();
        let d = self.d_model;
        let zeros4 = |shape: [usize; 4]| Param::from_tensor(Tensor::<4>::zeros(shape, device));
        PasstEncoder {
            patch_embedding: Conv2dConfig::new([1, d], [self.patch, self.patch])
                .with_stride([self.stride, self.stride])
                .with_padding(PaddingConfig2d::Valid)
                .init(device),
            freq_pos_embedding: zeros4([1, d, fp, 1]),
            time_pos_embedding: zeros4([1, d, 1, tp]),
            cls_token: Param::from_tensor(Tensor::<3>::zeros([1, 1, d], device)),
            layers: (0..self.n_layers)
                .map(|_| {
                    TransformerLayerConfig::new(d, self.n_heads, self.d_ff)
                        .with_dropout(self.dropout)
                        .with_pre_norm(true)
                        .with_norm_eps(1e-6)
                        .init(device)
                })
                .collect(),
            norm: LayerNormConfig::new(d).with_epsilon(1e-6).init(device),
            dropout: self.dropout,
            freq_patchout: self.freq_patchout,
            time_patchout: self.time_patchout,
        }
    }
}

/// Indices `0..n` minus `drop` of them chosen by `rng` (always keeps at least one), sorted.
fn kept(n: usize, drop: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<i64> {
    let mut idx: Vec<i64> = (0..n as i64).collect();
    let drop = drop.min(n.saturating_sub(1));
    for _ in 0..drop {
        let k = rng.random_range(0..idx.len());
        idx.remove(k);
    }
    idx
}

impl PasstEncoder {
    /// `windows`: `[n, n_mels, n_frames]` → `[n, d_model]`.
    pub fn forward(&self, windows: Tensor<3>, noise: &mut Noise<'_>) -> Tensor<2> {
        let [n, m, t] = windows.dims();
        let device = windows.device();
        let x = self.patch_embedding.forward(windows.reshape([n, 1, m, t])); // [n, d, fp, tp]
        let [_, d, fp, tp] = x.dims();
        let mut x = x + self.freq_pos_embedding.val() + self.time_pos_embedding.val();
        if let Some(rng) = noise.as_deref_mut() {
            let f_keep = kept(fp, self.freq_patchout, rng);
            let t_keep = kept(tp, self.time_patchout, rng);
            let fi = Tensor::<1, Int>::from_data(
                TensorData::new(f_keep.clone(), [f_keep.len()]),
                &device,
            );
            x = if self.freq_patchout > 0 && fp > 1 {
                x.select(2, fi)
            } else {
                x
            };
            let ti = Tensor::<1, Int>::from_data(
                TensorData::new(t_keep.clone(), [t_keep.len()]),
                &device,
            );
            x = if self.time_patchout > 0 && tp > 1 {
                x.select(3, ti)
            } else {
                x
            };
        }
        let [_, _, fp, tp] = x.dims();
        let tokens = x.reshape([n, d, fp * tp]).swap_dims(1, 2); // [n, p, d]
        let cls = self.cls_token.val().expand([n, 1, d]);
        let mut h = dropout(Tensor::cat(vec![cls, tokens], 1), self.dropout, noise);
        for layer in &self.layers {
            h = layer.forward(h, None, noise);
        }
        let h = self.norm.forward(h);
        h.slice([0..n, 0..1, 0..d]).reshape([n, d])
    }
}
