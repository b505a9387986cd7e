//! Building blocks shared by the encoders: seeded dropout, multi-head self-attention and a
//! transformer layer (pre- or post-LN), and a deterministic parameter initialiser.
//!
//! Randomness never comes from the backend's global generator: dropout masks and patch-out
//! choices are drawn from a [`Noise`] source (a ChaCha generator the training loop seeds per
//! epoch), and parameters are initialised by [`init_parameters`] from the run's seed. That keeps
//! runs bit-reproducible even when several trainings share one process (the tests), and gives the
//! same initial weights on CPU and GPU.

use burn::module::{Flag, ModuleMapper, Param, ParamId};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, LinearLayout};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Source of training-time randomness (dropout, patch-out). `None` where a forward pass runs in
/// evaluation mode.
pub type Noise<'a> = Option<&'a mut ChaCha8Rng>;

/// Inverted dropout with a mask drawn from `noise`; the identity in evaluation mode or at `p = 0`.
pub fn dropout<const D: usize>(x: Tensor<D>, p: f64, noise: &mut Noise<'_>) -> Tensor<D> {
    let Some(rng) = noise.as_deref_mut() else {
        return x;
    };
    if p <= 0.0 {
        return x;
    }
    let dims = x.dims();
    let n: usize = dims.iter().product();
    let keep = 1.0 / (1.0 - p) as f32;
    // One 32-bit draw per element, dropped below `p · 2³²` (a float draw takes 64 bits: twice
    // the generator's work).
    let threshold = (p * 4_294_967_296.0) as u64;
    let mask: Vec<f32> = (0..n)
        .map(|_| {
            if u64::from(rng.next_u32()) < threshold {
                0.0
            } else {
                keep
            }
        })
        .collect();
    let mask = Tensor::<D>::from_data(TensorData::new(mask, dims), &x.device());
    x * mask
}

/// Configuration of [`SelfAttention`].
#[derive(Config, Debug)]
pub struct SelfAttentionConfig {
    /// Model width.
    pub d_model: usize,
    /// Attention heads (must divide `d_model`).
    pub n_heads: usize,
    /// Dropout on the attention weights.
    #[config(default = 0.1)]
    pub dropout: f64,
}

/// Multi-head self-attention with a key padding mask.
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub output: Linear,
    pub n_heads: usize,
    pub dropout: f64,
}

/// A linear layer with the weight stored `[in, out]` (Burn's row layout) in memory and in
/// records. (Burn's column layout transposes on save but not when validating a loaded record,
/// so its records do not load back; checkpoints in PyTorch's `[out, in]` are transposed by
/// their loaders instead.)
pub fn linear(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out)
        .with_layout(LinearLayout::Row)
        .init(device)
}

impl SelfAttentionConfig {
    pub fn init(&self, device: &Device) -> SelfAttention {
        assert!(
            self.d_model.is_multiple_of(self.n_heads),
            "n_heads must divide d_model"
        );
        let l = || linear(self.d_model, self.d_model, device);
        SelfAttention {
            query: l(),
            key: l(),
            value: l(),
            output: l(),
            n_heads: self.n_heads,
            dropout: self.dropout,
        }
    }
}

impl SelfAttention {
    /// `x`: `[batch, seq, d_model]`; `pad`: `[batch, seq]`, true at padding positions (never
    /// attended to). Returns `[batch, seq, d_model]` (before the output projection's residual).
    pub fn forward(
        &self,
        x: Tensor<3>,
        pad: Option<Tensor<2, Bool>>,
        noise: &mut Noise<'_>,
    ) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let h = self.n_heads;
        let heads = |y: Tensor<3>| y.reshape([b, t, h, d / h]).swap_dims(1, 2); // [b, h, t, dh]
        let q = heads(rows(&self.query, x.clone()));
        let k = heads(rows(&self.key, x.clone()));
        let v = heads(rows(&self.value, x));
        let mut scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / ((d / h) as f64).sqrt()); // [b,h,t,t]
        if let Some(pad) = pad {
            let mask = pad.reshape([b, 1, 1, t]).expand([b, h, t, t]);
            scores = scores.mask_fill(mask, -1.0e4);
        }
        let weights = dropout(softmax(scores, 3), self.dropout, noise);
        let ctx = weights.matmul(v).swap_dims(1, 2).reshape([b, t, d]);
        rows(&self.output, ctx)
    }
}

/// `layer` on `[b, t, d_in]` as one `[b·t, d_in]` product. Burn keeps `b` products with the
/// weight broadcast when `t` is a multiple of 32 (a GPU tiling rule: the default 32 tokens),
/// and the weight's gradient is then `b` products summed, where one product does.
fn rows(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let y = layer.forward(x.reshape([b * t, d]));
    let d_out = y.dims()[1];
    y.reshape([b, t, d_out])
}

/// Configuration of [`TransformerLayer`].
#[derive(Config, Debug)]
pub struct TransformerLayerConfig {
    pub d_model: usize,
    pub n_heads: usize,
    /// Hidden width of the feed-forward block.
    pub d_ff: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Layer norm before each block (ViT/PaSST) instead of after the residual (BERT).
    #[config(default = true)]
    pub pre_norm: bool,
    #[config(default = 1e-5)]
    pub norm_eps: f64,
}

/// One transformer encoder layer: self-attention and a GELU feed-forward block, each with a
/// residual connection.
#[derive(Module, Debug)]
pub struct TransformerLayer {
    pub attention: SelfAttention,
    pub attention_norm: LayerNorm,
    pub ff_in: Linear,
    pub ff_out: Linear,
    pub ff_norm: LayerNorm,
    pub dropout: f64,
    pub pre_norm: bool,
}

impl TransformerLayerConfig {
    pub fn init(&self, device: &Device) -> TransformerLayer {
        let norm = || {
            LayerNormConfig::new(self.d_model)
                .with_epsilon(self.norm_eps)
                .init(device)
        };
        TransformerLayer {
            attention: SelfAttentionConfig::new(self.d_model, self.n_heads)
                .with_dropout(self.dropout)
                .init(device),
            attention_norm: norm(),
            ff_in: linear(self.d_model, self.d_ff, device),
            ff_out: linear(self.d_ff, self.d_model, device),
            ff_norm: norm(),
            dropout: self.dropout,
            pre_norm: self.pre_norm,
        }
    }
}

impl TransformerLayer {
    pub fn forward(
        &self,
        x: Tensor<3>,
        pad: Option<Tensor<2, Bool>>,
        noise: &mut Noise<'_>,
    ) -> Tensor<3> {
        let p = self.dropout;
        if self.pre_norm {
            let a = self
                .attention
                .forward(self.attention_norm.forward(x.clone()), pad, noise);
            let x = x + dropout(a, p, noise);
            let f = rows(
                &self.ff_out,
                gelu(rows(&self.ff_in, self.ff_norm.forward(x.clone()))),
            );
            x + dropout(f, p, noise)
        } else {
            let a = self.attention.forward(x.clone(), pad, noise);
            let x = self.attention_norm.forward(x + dropout(a, p, noise));
            let f = rows(&self.ff_out, gelu(rows(&self.ff_in, x.clone())));
            self.ff_norm.forward(x + dropout(f, p, noise))
        }
    }
}

/// Gives every parameter of `module` the id of its position in traversal order (1, 2, ...).
///
/// Burn draws a random [`ParamId`] for every new parameter and writes it into the saved record
/// (`model.mpk`), so two identical trainings would otherwise publish files that differ in those
/// ids alone. The ids only have to be unique within one module (the optimizer's state is keyed by
/// them), so positional ids are as good and make the record a function of the weights. Values
/// are untouched; applying it twice is the identity.
pub fn canonical_ids<M: Module>(module: M) -> M {
    module.map(&mut CanonicalIds { next: 0 })
}

struct CanonicalIds {
    next: u64,
}

impl CanonicalIds {
    fn id(&mut self) -> ParamId {
        self.next += 1;
        ParamId::from(self.next)
    }
}

impl ModuleMapper for CanonicalIds {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.id = self.id();
        param
    }

    fn map_int<const D: usize>(
        &mut self,
        mut param: Param<Tensor<D, Int>>,
    ) -> Param<Tensor<D, Int>> {
        param.id = self.id();
        param
    }

    fn map_bool<const D: usize>(
        &mut self,
        mut param: Param<Tensor<D, Bool>>,
    ) -> Param<Tensor<D, Bool>> {
        param.id = self.id();
        param
    }

    fn map_flag(&mut self, mut flag: Param<Flag>) -> Param<Flag> {
        flag.id = self.id();
        flag
    }
}

/// Re-initialises every float parameter of `module` from `seed`, by its path and shape:
/// rank-2 weights under an `*embedding*` path and rank-3/4 tokens/positions ~ N(0, 0.02);
/// other rank-2 (linear, stored `[in, out]`) ~ U(±1/√fan_in); rank-4 convolution kernels
/// `[out, in, kh, kw]` ~ Kaiming-uniform for ReLU, U(±√(6/fan_in)); rank-1 `gamma` = 1,
/// `log_inv_tau` = ln(1/τ), other rank-1 (biases, `beta`) = 0.
pub fn init_parameters<M: Module>(module: M, seed: u64, tau: f64) -> M {
    let mut mapper = SeededInit {
        rng: ChaCha8Rng::seed_from_u64(seed),
        path: Vec::new(),
        tau,
    };
    module.map(&mut mapper)
}

struct SeededInit {
    rng: ChaCha8Rng,
    path: Vec<String>,
    tau: f64,
}

impl SeededInit {
    fn normal(&mut self, std: f64) -> f32 {
        // Box-Muller; the generator is ours, so the draw is reproducible everywhere.
        let u1: f64 = self.rng.random::<f64>().max(1e-12);
        let u2: f64 = self.rng.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
    }

    fn uniform(&mut self, bound: f64) -> f32 {
        ((self.rng.random::<f64>() * 2.0 - 1.0) * bound) as f32
    }
}

impl ModuleMapper for SeededInit {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let path = self.path.join(".");
        let name = self.path.last().cloned().unwrap_or_default();
        let values: Vec<f32> = match D {
            1 if name == "gamma" => vec![1.0; n],
            1 if name == "log_inv_tau" => vec![(1.0 / self.tau).ln() as f32; n],
            1 => vec![0.0; n],
            2 if path.contains("embedding") => (0..n).map(|_| self.normal(0.02)).collect(),
            2 => {
                let bound = 1.0 / (dims[0] as f64).sqrt();
                (0..n).map(|_| self.uniform(bound)).collect()
            }
            4 if name == "weight" => {
                let fan_in = (dims[1] * dims[2] * dims[3]) as f64;
                let bound = (6.0 / fan_in).sqrt();
                (0..n).map(|_| self.uniform(bound)).collect()
            }
            _ => (0..n).map(|_| self.normal(0.02)).collect(),
        };
        let require_grad = tensor.is_require_grad();
        let mut fresh = Tensor::<D>::from_data(TensorData::new(values, dims), &tensor.device());
        if require_grad {
            fresh = fresh.require_grad();
        }
        Param::from_mapped_value(id, fresh, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inverted dropout keeps the expectation: about `p` of the elements are 0, the others
    /// scaled by `1 / (1 - p)`; evaluation mode and `p = 0` are the identity.
    #[test]
    fn dropout_zeroes_a_fraction_p_and_rescales_the_rest() {
        let device = Device::flex();
        let n = 20_000;
        let x = Tensor::<2>::ones([n / 100, 100], &device);
        let values = |y: Tensor<2>| y.into_data().try_to_vec::<f32>().unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for p in [0.1, 0.5] {
            let y = values(dropout(x.clone(), p, &mut Some(&mut rng)));
            let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
            assert!((zeros - p).abs() < 0.01, "p = {p}: {zeros} dropped");
            let keep = 1.0 / (1.0 - p) as f32;
            assert!(y.iter().all(|&v| v == 0.0 || v == keep), "p = {p}");
        }
        let ones = vec![1.0; n];
        assert_eq!(values(dropout(x.clone(), 0.5, &mut None)), ones);
        assert_eq!(values(dropout(x.clone(), 0.0, &mut Some(&mut rng))), ones);
    }

    /// `rows` is the layer on 3-d input, values and gradients, with 32 tokens (where Burn keeps
    /// the broadcast product) and with 5.
    #[test]
    fn one_product_over_all_tokens_is_the_linear_layer_with_its_gradients() {
        use burn::tensor::Distribution;
        let device = Device::flex().autodiff();
        for t in [32, 5] {
            let layer = linear(16, 24, &device);
            let x = Tensor::<3>::random([3, t, 16], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            let reference = layer.forward(x.clone());
            let ours = rows(&layer, x.clone());
            assert_eq!(ours.dims(), [3, t, 24]);
            let close = |a: Tensor<3>, b: Tensor<3>, what: &str| {
                let diff: f32 = (a - b).abs().max().into_scalar();
                assert!(diff < 1e-5, "{what} (t = {t}): {diff}");
            };
            close(ours.clone(), reference.clone(), "output");
            let weights = Tensor::<3>::random([3, t, 24], Distribution::Normal(0.0, 1.0), &device);
            let g_ref = (reference * weights.clone()).sum().backward();
            let g_ours = (ours * weights).sum().backward();
            close(
                x.grad(&g_ours).unwrap(),
                x.grad(&g_ref).unwrap(),
                "input gradient",
            );
            let w = layer.weight.val();
            let diff: f32 = (w.grad(&g_ours).unwrap() - w.grad(&g_ref).unwrap())
                .abs()
                .max()
                .into_scalar();
            assert!(diff < 1e-4, "weight gradient (t = {t}): {diff}");
        }
    }
}
