//! The trainable head over a frozen pretrained encoder whose embeddings `encode` computed once:
//! the identity (the dual encoder's projection is then the only trained layer), or one hidden
//! layer (linear, GELU, dropout) before it.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::gelu;

use super::layers::{Noise, dropout, linear};

/// Configuration of [`FrozenHead`], built by [`crate::params::FrozenParams::config`] (which
/// holds the defaults).
#[derive(Config, Debug)]
pub struct FrozenHeadConfig {
    /// Width of the precomputed embeddings.
    pub input_dim: usize,
    /// Width of the optional hidden layer (0 = none).
    pub hidden: usize,
    pub dropout: f64,
}

/// See the module documentation.
#[derive(Module, Debug)]
pub struct FrozenHead {
    pub hidden: Option<Linear>,
    pub dropout: f64,
}

impl FrozenHeadConfig {
    pub fn output_dim(&self) -> usize {
        if self.hidden > 0 {
            self.hidden
        } else {
            self.input_dim
        }
    }

    pub fn init(&self, device: &Device) -> FrozenHead {
        FrozenHead {
            hidden: (self.hidden > 0).then(|| linear(self.input_dim, self.hidden, device)),
            dropout: self.dropout,
        }
    }
}

impl FrozenHead {
    /// `[n, input_dim]` → `[n, output_dim]`.
    pub fn forward(&self, x: Tensor<2>, noise: &mut Noise<'_>) -> Tensor<2> {
        let x = dropout(x, self.dropout, noise);
        match &self.hidden {
            Some(layer) => gelu(layer.forward(x)),
            None => x,
        }
    }
}
