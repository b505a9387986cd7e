//! A compact CNN over log-mel windows: the fast CPU default audio encoder.
//!
//! Each window `[n_mels, n_frames]` is optionally average-pooled (`input_pool`), then goes through a few strided 3×3 convolutions with ReLU
//! (every one halves frequency and time), then mean- and max-pooling over what is left, and a
//! layer norm. A clip's embedding is the mean over its valid windows (`window_mask`).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::layers::{Noise, dropout};

/// Configuration of [`CnnEncoder`], built by [`crate::params::CnnParams::config`] (which holds
/// the defaults).
#[derive(Config, Debug)]
pub struct CnnEncoderConfig {
    /// Output channels of each strided convolution (each has stride 2 in both axes).
    pub channels: Vec<usize>,
    /// Dropout on the pooled embedding while training.
    pub dropout: f64,
    /// Average-pool the log-mel by this factor (frequency and time) before the convolutions.
    pub input_pool: usize,
}

/// Strided CNN audio encoder.
#[derive(Module, Debug)]
pub struct CnnEncoder {
    pub convs: Vec<Conv2d>,
    pub norm: LayerNorm,
    pub dropout: f64,
    pub input_pool: usize,
}

impl CnnEncoderConfig {
    /// Width of the encoder's output (mean and max pooling concatenated).
    pub fn output_dim(&self) -> usize {
        2 * self.channels.last().copied().unwrap_or(1)
    }

    pub fn init(&self, device: &Device) -> CnnEncoder {
        let mut convs = Vec::new();
        let mut c_in = 1;
        for &c in &self.channels {
            convs.push(
                Conv2dConfig::new([c_in, c], [3, 3])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
            );
            c_in = c;
        }
        CnnEncoder {
            convs,
            norm: LayerNormConfig::new(self.output_dim()).init(device),
            dropout: self.dropout,
            input_pool: self.input_pool.max(1),
        }
    }
}

impl CnnEncoder {
    /// `windows`: `[n, n_mels, n_frames]` → `[n, output_dim]`.
    pub fn forward(&self, windows: Tensor<3>, noise: &mut Noise<'_>) -> Tensor<2> {
        let [n, m, t] = windows.dims();
        let p = self.input_pool;
        let (windows, m, t) = if p > 1 && m >= p && t >= p {
            let (m, t) = (m / p, t / p);
            let pooled = windows
                .slice([0..n, 0..m * p, 0..t * p])
                .reshape([n, m, p, t, p])
                .mean_dim(4)
                .mean_dim(2);
            (pooled.reshape([n, m, t]), m, t)
        } else {
            (windows, m, t)
        };
        let mut x = windows.reshape([n, 1, m, t]);
        for conv in &self.convs {
            x = relu(conv.forward(x));
        }
        let [n, c, h, w] = x.dims();
        let flat = x.reshape([n, c, h * w]);
        let mean = flat.clone().mean_dim(2).reshape([n, c]);
        let max = flat.max_dim(2).reshape([n, c]);
        let pooled = self.norm.forward(Tensor::cat(vec![mean, max], 1));
        dropout(pooled, self.dropout, noise)
    }
}
