//! A compact CNN over log-mel windows: the fast CPU default audio encoder.
//!
//! Each window `[n_mels, n_frames]` is optionally average-pooled (`input_pool`), then goes through a few strided 3×3 convolutions with ReLU
//! (every one halves frequency and time), then mean- and max-pooling over what is left, and a
//! layer norm. A clip's embedding is the mean over its valid windows (`window_mask`).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::ops::PadMode;

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
        // Channels last: each convolution is then one matrix product without transposes.
        let mut x = windows.reshape([n, m, t, 1]);
        for conv in &self.convs {
            x = relu(strided_conv(conv, x));
        }
        let [n, h, w, c] = x.dims();
        let flat = x.reshape([n, h * w, c]);
        let mean = flat.clone().mean_dim(1).reshape([n, c]);
        let max = flat.max_dim(1).reshape([n, c]);
        let pooled = self.norm.forward(Tensor::cat(vec![mean, max], 1));
        dropout(pooled, self.dropout, noise)
    }
}

/// `conv` (3×3, stride 2, padding 1, as [`CnnEncoderConfig::init`] builds it) on channels-last
/// `x: [n, h, w, c_in]` → `[n, ⌈h/2⌉, ⌈w/2⌉, c_out]`: each output position's 3×3 patch of the
/// padded input gathered as one row (im2col), times the kernel as a `[9 c_in, c_out]` matrix.
/// The same function and parameters as `conv.forward` (tested), but Burn's CPU backend runs the
/// product and its gradients as GEMMs, where its direct convolution and the convolution-shaped
/// weight gradient took 60 % of a training step (the issue-17 profile). One row gather (whose
/// gradient is one scatter-add) rather than nine strided views and a concatenation: those
/// views' copies and gradients took a third of a step.
pub fn strided_conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [n, h, w, c_in] = x.dims();
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    let pixels = x
        .pad([(0, 0), (1, 1), (1, 1), (0, 0)], PadMode::Constant(0.0))
        .reshape([n * (h + 2) * (w + 2), c_in]);
    let rows = patch_rows(n, h + 2, w + 2);
    let rows =
        Tensor::<1, Int>::from_data(TensorData::new(rows, [n * oh * ow * 9]), &pixels.device());
    // Column (dy, dx, c) of the patches meets row (dy, dx, c) of the kernel.
    let patches = pixels.select(0, rows).reshape([n * oh * ow, 9 * c_in]);
    let weight = conv.weight.val();
    let c_out = weight.dims()[0];
    let kernel = weight.permute([2, 3, 1, 0]).reshape([9 * c_in, c_out]);
    let mut y = patches.matmul(kernel);
    if let Some(bias) = &conv.bias {
        y = y + bias.val().reshape([1, c_out]);
    }
    y.reshape([n, oh, ow, c_out])
}

/// For images of `ph × pw` pixels (padding included) stored row-major one after another, the
/// pixel row of every (image, output row, output column, dy, dx) of a stride-2 3×3 convolution.
fn patch_rows(n: usize, ph: usize, pw: usize) -> Vec<i64> {
    let (oh, ow) = ((ph - 1) / 2, (pw - 1) / 2);
    let mut rows = Vec::with_capacity(n * oh * ow * 9);
    for image in 0..n {
        for i in 0..oh {
            for j in 0..ow {
                for dy in 0..3 {
                    let line = (image * ph + 2 * i + dy) * pw;
                    rows.extend((0..3).map(|dx| (line + 2 * j + dx) as i64));
                }
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The im2col product is `Conv2d::forward` (values and gradients), on odd and even sizes.
    #[test]
    fn the_strided_product_is_the_convolution_with_its_gradients() {
        let device = Device::flex().autodiff();
        for (h, w, c_in, c_out) in [(7, 10, 1, 4), (8, 5, 3, 2)] {
            let conv = Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(&device);
            let x = Tensor::<4>::random([2, c_in, h, w], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            let reference = conv.forward(x.clone());
            let ours = strided_conv(&conv, x.clone().permute([0, 2, 3, 1])).permute([0, 3, 1, 2]);
            assert_eq!(ours.dims(), reference.dims());
            let close = |a: Tensor<4>, b: Tensor<4>, what: &str| {
                let diff: f32 = (a - b).abs().max().into_scalar();
                assert!(diff < 1e-5, "{what} ({h}×{w}, {c_in}→{c_out}): {diff}");
            };
            close(ours.clone(), reference.clone(), "output");
            let weights =
                Tensor::<4>::random(reference.dims(), Distribution::Normal(0.0, 1.0), &device);
            let g_ref = (reference * weights.clone()).sum().backward();
            let g_ours = (ours * weights).sum().backward();
            let grad = |g: &burn::tensor::Gradients, t: &Tensor<4>| t.grad(g).unwrap();
            close(grad(&g_ours, &x), grad(&g_ref, &x), "input gradient");
            close(
                grad(&g_ours, &conv.weight.val()),
                grad(&g_ref, &conv.weight.val()),
                "weight gradient",
            );
        }
    }
}
