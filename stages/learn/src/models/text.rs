//! Text encoders over the word ids of the `features` artifact (0 = padding).
//!
//! - [`TransformerTextEncoder`]: the small default: word + position embeddings, a layer norm,
//!   pre-LN transformer layers with a key padding mask, then mean pooling over the non-padding
//!   tokens (default) or the first token (`pooling = "first"`).
//! - [`BertTextEncoder`]: BERT's architecture: word + position + segment (token type)
//!   embeddings, post-LN layers (exact erf GELU), then either the pooler (dense + tanh) on the
//!   first token (default) or, as sentence-transformers do, the mean over the non-padding
//!   tokens. Its modules are laid out as BERT's (`embeddings.{word,position,token_type}_embeddings`,
//!   `layers.N.attention.{query,key,value,output}`, ...);
//!   [`crate::pretrained::bert::load_bert`] maps a HuggingFace checkpoint onto it.
//!   Padding follows HuggingFace's `attention_mask = ids != 0`: id 0 (`[PAD]`) is never
//!   attended to, positions count from 0 on every row, and the segment id is 0 everywhere.

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

/// Configuration of [`TransformerTextEncoder`], built by
/// [`crate::params::TransformerParams::config`] (which holds the defaults).
#[derive(Config, Debug)]
pub struct TransformerTextConfig {
    pub vocab_size: usize,
    pub max_tokens: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub dropout: f64,
    /// `true`: mean pooling; `false`: first token.
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

/// Configuration of [`BertTextEncoder`]: a checkpoint's
/// ([`crate::pretrained::bert::bert_config`]), or built by [`crate::params::BertParams::config`]
/// (which holds the defaults, BERT-base's sizes).
///
/// Plain serde rather than Burn's `Config` derive, which writes the `Option` fields last:
/// `model.json` keeps this field order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BertTextConfig {
    pub vocab_size: usize,
    /// Position embeddings (BERT: 512).
    pub max_positions: usize,
    /// Layer norm epsilon; `None` (configs written before it existed): BERT's 1e-12.
    pub layer_norm_eps: Option<f64>,
    /// `None` or `First`: the pooler on the first token; `Mean`: the mean of the non-padding
    /// tokens' states (sentence-transformers). An `Option`, so that configs written before it
    /// existed still read (a missing `Option` field reads as `None`).
    pub pooling: Option<Pooling>,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub intermediate_size: usize,
    /// Segment (token type) embeddings (BERT: 2; only segment 0 is used).
    pub type_vocab_size: usize,
    pub dropout: f64,
}

impl BertTextConfig {
    pub fn norm_eps(&self) -> f64 {
        self.layer_norm_eps.unwrap_or(1e-12)
    }

    pub fn mean_pooling(&self) -> bool {
        self.pooling == Some(Pooling::Mean)
    }
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

/// BERT-style text encoder.
#[derive(Module, Debug)]
pub struct BertTextEncoder {
    pub embeddings: BertEmbeddings,
    pub layers: Vec<TransformerLayer>,
    pub pooler: BertPooler,
    pub dropout: f64,
    /// Mean of the non-padding tokens instead of the pooler on the first token.
    pub mean_pooling: bool,
}

impl BertTextConfig {
    pub fn init(&self, device: &Device) -> BertTextEncoder {
        let h = self.hidden_size;
        let eps = self.norm_eps();
        BertTextEncoder {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(self.vocab_size, h).init(device),
                position_embeddings: EmbeddingConfig::new(self.max_positions, h).init(device),
                token_type_embeddings: EmbeddingConfig::new(self.type_vocab_size, h).init(device),
                layer_norm: LayerNormConfig::new(h).with_epsilon(eps).init(device),
            },
            layers: (0..self.n_layers)
                .map(|_| {
                    TransformerLayerConfig::new(h, self.n_heads, self.intermediate_size)
                        .with_dropout(self.dropout)
                        .with_pre_norm(false)
                        .with_norm_eps(eps)
                        .init(device)
                })
                .collect(),
            pooler: BertPooler {
                dense: linear(h, h, device),
            },
            dropout: self.dropout,
            mean_pooling: self.mean_pooling(),
        }
    }
}

impl BertTextEncoder {
    /// `tokens`: `[b, t]` token ids (0 = padding) → `[b, hidden]`: the pooled first token, or
    /// the mean of the non-padding tokens' states (`mean_pooling`).
    pub fn forward(&self, tokens: Tensor<2, Int>, noise: &mut Noise<'_>) -> Tensor<2> {
        let h = self.hidden_states(tokens.clone(), noise);
        if self.mean_pooling {
            pool(h, &tokens, true)
        } else {
            tanh(self.pooler.dense.forward(pool(h, &tokens, false)))
        }
    }

    /// `tokens`: `[b, t]` → the last layer's states `[b, t, hidden]` (segment 0 everywhere).
    pub fn hidden_states(&self, tokens: Tensor<2, Int>, noise: &mut Noise<'_>) -> Tensor<3> {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let pad = tokens.clone().equal_elem(0);
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(tokens)
            + e.position_embeddings.forward(positions(b, t, &device))
            + e.token_type_embeddings
                .forward(Tensor::<2, Int>::zeros([b, t], &device));
        let mut h = dropout(e.layer_norm.forward(x), self.dropout, noise);
        for layer in &self.layers {
            h = layer.forward(h, Some(pad.clone()), noise);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::BertParams;

    fn tiny(pooling: Option<Pooling>) -> BertTextEncoder {
        let sizes = BertParams {
            hidden_size: 8,
            n_layers: 1,
            n_heads: 2,
            intermediate_size: 16,
            max_positions: 8,
            ..Default::default()
        };
        let config = BertTextConfig {
            pooling,
            ..sizes.config(20)
        };
        let encoder = config.init(&Device::flex());
        crate::models::layers::init_parameters(encoder, 1, 0.05)
    }

    fn encode(encoder: &BertTextEncoder, ids: Vec<i64>) -> Vec<f32> {
        let t = ids.len();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, t]), &Device::flex());
        let out = encoder.forward(tokens, &mut None);
        out.into_data().try_to_vec_as::<f32>().unwrap()
    }

    #[test]
    fn bert_config_without_the_newer_fields_still_reads_with_the_old_behaviour() {
        let json = r#"{"vocab_size":30,"max_positions":16,"hidden_size":16,"n_layers":1,
            "n_heads":2,"intermediate_size":32,"type_vocab_size":2,"dropout":0.1}"#;
        let config: BertTextConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.pooling, None);
        assert!(!config.mean_pooling());
        assert_eq!(config.norm_eps(), 1e-12);
    }

    #[test]
    fn bert_config_keeps_the_field_order_of_model_json() {
        let json = serde_json::to_string(&BertParams::default().config(30)).unwrap();
        assert_eq!(
            json,
            r#"{"vocab_size":30,"max_positions":512,"layer_norm_eps":null,"pooling":null,"hidden_size":768,"n_layers":12,"n_heads":12,"intermediate_size":3072,"type_vocab_size":2,"dropout":0.1}"#
        );
    }

    #[test]
    fn trailing_padding_changes_neither_pooling() {
        for pooling in [None, Some(Pooling::Mean)] {
            let encoder = tiny(pooling);
            let short = encode(&encoder, vec![1, 5, 7, 2]);
            let padded = encode(&encoder, vec![1, 5, 7, 2, 0, 0, 0]);
            for (a, b) in short.iter().zip(&padded) {
                assert!((a - b).abs() < 1e-5, "{pooling:?}: {short:?} vs {padded:?}");
            }
        }
    }
}
