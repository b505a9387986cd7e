//! Text encoders over the word ids of the `features` artifact (0 = padding).
//!
//! - [`TransformerTextEncoder`]: the small default: word + position embeddings, a layer norm,
//!   pre-LN transformer layers with a key padding mask, then mean pooling over the non-padding
//!   tokens (default) or the first token (`pooling = "first"`).
//! - [`BertTextEncoder`]: BERT's architecture: word + position + segment (token type)
//!   embeddings, post-LN layers (GELU), and a pooler (dense + tanh) on the first token. Its
//!   modules are laid out as BERT's (`embeddings.{word,position,token_type}_embeddings`,
//!   `layers.N.attention.{query,key,value,output}`, ...), with linear weights recorded as
//!   `[out, in]`, so that pretrained BERT weights could be mapped onto it by renaming keys; no
//!   loading is implemented (and the word-level vocabulary is not BERT's WordPiece one).

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::tanh;
use serde::{Deserialize, Serialize};

use super::layers::{Noise, TransformerLayer, TransformerLayerConfig, dropout, linear};

/// How a sequence of token states becomes one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over the non-padding tokens.
    Mean,
    /// The first token's state.
    First,
}

/// Configuration of [`TransformerTextEncoder`].
#[derive(Config, Debug)]
pub struct TransformerTextConfig {
    pub vocab_size: usize,
    pub max_tokens: usize,
    #[config(default = 128)]
    pub d_model: usize,
    #[config(default = 2)]
    pub n_layers: usize,
    #[config(default = 4)]
    pub n_heads: usize,
    #[config(default = 256)]
    pub d_ff: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
    /// `true`: mean pooling; `false`: first token.
    #[config(default = true)]
    pub mean_pooling: bool,
}

/// Small transformer text encoder.
#[derive(Module, Debug)]
pub struct TransformerTextEncoder {
    pub word_embedding: Embedding,
    pub position_embedding: Embedding,
    pub embedding_norm: LayerNorm,
    pub layers: Vec<TransformerLayer>,
    pub norm: LayerNorm,
    pub dropout: f64,
    pub mean_pooling: bool,
}

impl TransformerTextConfig {
    pub fn init(&self, device: &Device) -> TransformerTextEncoder {
        TransformerTextEncoder {
            word_embedding: EmbeddingConfig::new(self.vocab_size, self.d_model).init(device),
            position_embedding: EmbeddingConfig::new(self.max_tokens, self.d_model).init(device),
            embedding_norm: LayerNormConfig::new(self.d_model).init(device),
            layers: (0..self.n_layers)
                .map(|_| {
                    TransformerLayerConfig::new(self.d_model, self.n_heads, self.d_ff)
                        .with_dropout(self.dropout)
                        .with_pre_norm(true)
                        .init(device)
                })
                .collect(),
            norm: LayerNormConfig::new(self.d_model).init(device),
            dropout: self.dropout,
            mean_pooling: self.mean_pooling,
        }
    }
}

/// Position ids `[b, t]` (0..t on every row).
fn positions(b: usize, t: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<1, Int>::arange(0..t as i64, device)
        .reshape([1, t])
        .expand([b, t])
}

/// Pools `[b, t, d]` states into `[b, d]`.
fn pool(h: Tensor<3>, tokens: &Tensor<2, Int>, mean: bool) -> Tensor<2> {
    let [b, t, d] = h.dims();
    if mean {
        let valid = tokens.clone().not_equal_elem(0).float().reshape([b, t, 1]); // [b, t, 1]
        let count = valid.clone().sum_dim(1).clamp_min(1.0); // [b, 1, 1]
        (h * valid).sum_dim(1).div(count).reshape([b, d])
    } else {
        h.slice([0..b, 0..1, 0..d]).reshape([b, d])
    }
}

impl TransformerTextEncoder {
    /// `tokens`: `[b, t]` word ids → `[b, d_model]`.
    pub fn forward(&self, tokens: Tensor<2, Int>, noise: &mut Noise<'_>) -> Tensor<2> {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let pad = tokens.clone().equal_elem(0);
        let x = self.word_embedding.forward(tokens.clone())
            + self.position_embedding.forward(positions(b, t, &device));
        let mut h = dropout(self.embedding_norm.forward(x), self.dropout, noise);
        for layer in &self.layers {
            h = layer.forward(h, Some(pad.clone()), noise);
        }
        pool(self.norm.forward(h), &tokens, self.mean_pooling)
    }
}

/// Configuration of [`BertTextEncoder`] (BERT-base: 768 wide, 12 layers, 12 heads, 3072).
#[derive(Config, Debug)]
pub struct BertTextConfig {
    pub vocab_size: usize,
    /// Position embeddings (BERT: 512).
    pub max_positions: usize,
    #[config(default = 768)]
    pub hidden_size: usize,
    #[config(default = 12)]
    pub n_layers: usize,
    #[config(default = 12)]
    pub n_heads: usize,
    #[config(default = 3072)]
    pub intermediate_size: usize,
    #[config(default = 2)]
    pub type_vocab_size: usize,
    #[config(default = 0.1)]
    pub dropout: f64,
}

/// BERT's embedding block.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
}

/// BERT's pooler: dense + tanh on the first token.
#[derive(Module, Debug)]
pub struct BertPooler {
    pub dense: Linear,
}

/// BERT-style text encoder (untrained).
#[derive(Module, Debug)]
pub struct BertTextEncoder {
    pub embeddings: BertEmbeddings,
    pub layers: Vec<TransformerLayer>,
    pub pooler: BertPooler,
    pub dropout: f64,
}

impl BertTextConfig {
    pub fn init(&self, device: &Device) -> BertTextEncoder {
        let h = self.hidden_size;
        BertTextEncoder {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(self.vocab_size, h).init(device),
                position_embeddings: EmbeddingConfig::new(self.max_positions, h).init(device),
                token_type_embeddings: EmbeddingConfig::new(self.type_vocab_size, h).init(device),
                layer_norm: LayerNormConfig::new(h).with_epsilon(1e-12).init(device),
            },
            layers: (0..self.n_layers)
                .map(|_| {
                    TransformerLayerConfig::new(h, self.n_heads, self.intermediate_size)
                        .with_dropout(self.dropout)
                        .with_pre_norm(false)
                        .with_norm_eps(1e-12)
                        .with_torch_layout(true)
                        .init(device)
                })
                .collect(),
            pooler: BertPooler {
                dense: linear(h, h, true, device),
            },
            dropout: self.dropout,
        }
    }
}

impl BertTextEncoder {
    /// `tokens`: `[b, t]` word ids (segment 0 everywhere) → `[b, hidden]` (pooled first token).
    pub fn forward(&self, tokens: Tensor<2, Int>, noise: &mut Noise<'_>) -> Tensor<2> {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let pad = tokens.clone().equal_elem(0);
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(tokens.clone())
            + e.position_embeddings.forward(positions(b, t, &device))
            + e.token_type_embeddings
                .forward(Tensor::<2, Int>::zeros([b, t], &device));
        let mut h = dropout(e.layer_norm.forward(x), self.dropout, noise);
        for layer in &self.layers {
            h = layer.forward(h, Some(pad.clone()), noise);
        }
        let first = pool(h, &tokens, false);
        tanh(self.pooler.dense.forward(first))
    }
}
