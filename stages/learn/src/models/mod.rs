//! The dual encoder: an audio encoder and a text encoder, each followed by a linear projection
//! to a shared width and L2 normalisation; the score of a pair is the cosine of its embeddings.
//!
//! Burn 0.22 carries the backend in the [`Device`] (flex on CPU, CUDA where compiled in), so the
//! modules have no backend type parameter: the same model code runs on every backend.

pub mod cnn;
pub mod frozen;
pub mod layers;
pub mod passt;
pub mod text;
pub mod yamnet;

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

use self::cnn::{CnnEncoder, CnnEncoderConfig};
use self::frozen::{FrozenHead, FrozenHeadConfig};
use self::layers::{Noise, linear};
use self::passt::{PasstEncoder, PasstEncoderConfig};
use self::text::{BertTextConfig, BertTextEncoder, TransformerTextConfig, TransformerTextEncoder};
use self::yamnet::{YamnetConfig, YamnetEncoder};

/// Which audio encoder, with its configuration.
#[derive(Config, Debug)]
pub enum AudioEncoderConfig {
    Cnn(CnnEncoderConfig),
    Passt(PasstEncoderConfig),
    /// YAMNet (MobileNet v1 on AudioSet) over `yamnet` front-end patches; random weights from
    /// `init`, pretrained ones from [`yamnet::load_yamnet`].
    Yamnet(YamnetConfig),
    /// A head over per-window embeddings of a frozen audio encoder (`encode`).
    Frozen(FrozenHeadConfig),
}

/// Which text encoder, with its configuration.
#[derive(Config, Debug)]
pub enum TextEncoderConfig {
    Transformer(TransformerTextConfig),
    Bert(BertTextConfig),
    /// A head over caption embeddings of a frozen text encoder (`encode`).
    Frozen(FrozenHeadConfig),
}

// One model holds one encoder; the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum AudioEncoder {
    Cnn(CnnEncoder),
    Passt(PasstEncoder),
    Yamnet(YamnetEncoder),
    Frozen(FrozenHead),
}

#[derive(Module, Debug)]
pub enum TextEncoder {
    Transformer(TransformerTextEncoder),
    Bert(BertTextEncoder),
    Frozen(FrozenHead),
}

/// Everything needed to rebuild a [`DualEncoder`] (written as `model.json`).
#[derive(Config, Debug)]
pub struct DualEncoderConfig {
    pub audio: AudioEncoderConfig,
    pub text: TextEncoderConfig,
    /// Width of the shared embedding space.
    pub embed_dim: usize,
    /// Temperature τ (initial value when learnable).
    pub tau: f64,
    /// Learn τ (as `log(1/τ)`) with the other parameters.
    pub learnable_tau: bool,
}

impl AudioEncoderConfig {
    pub fn output_dim(&self) -> usize {
        match self {
            AudioEncoderConfig::Cnn(c) => c.output_dim(),
            AudioEncoderConfig::Passt(c) => c.d_model,
            AudioEncoderConfig::Yamnet(c) => c.output_dim(),
            AudioEncoderConfig::Frozen(c) => c.output_dim(),
        }
    }
}

impl TextEncoderConfig {
    pub fn output_dim(&self) -> usize {
        match self {
            TextEncoderConfig::Transformer(c) => c.d_model,
            TextEncoderConfig::Bert(c) => c.hidden_size,
            TextEncoderConfig::Frozen(c) => c.output_dim(),
        }
    }
}

/// The dual encoder of the paper (with small encoders).
#[derive(Module, Debug)]
pub struct DualEncoder {
    pub audio: AudioEncoder,
    pub text: TextEncoder,
    pub audio_projection: Linear,
    pub text_projection: Linear,
    /// `log(1/τ)` when τ is learnable.
    pub log_inv_tau: Option<Param<Tensor<1>>>,
    /// Fixed τ (used when `log_inv_tau` is absent).
    pub tau: f64,
}

impl DualEncoderConfig {
    /// Builds the model with parameters drawn from `seed` (see [`layers::init_parameters`]) and
    /// positional parameter ids ([`layers::canonical_ids`]).
    pub fn init(&self, device: &Device, seed: u64) -> DualEncoder {
        let audio = match &self.audio {
            AudioEncoderConfig::Cnn(c) => AudioEncoder::Cnn(c.init(device)),
            AudioEncoderConfig::Passt(c) => AudioEncoder::Passt(c.init(device)),
            AudioEncoderConfig::Yamnet(c) => AudioEncoder::Yamnet(c.init(device)),
            AudioEncoderConfig::Frozen(c) => AudioEncoder::Frozen(c.init(device)),
        };
        let text = match &self.text {
            TextEncoderConfig::Transformer(c) => TextEncoder::Transformer(c.init(device)),
            TextEncoderConfig::Bert(c) => TextEncoder::Bert(c.init(device)),
            TextEncoderConfig::Frozen(c) => TextEncoder::Frozen(c.init(device)),
        };
        let model = DualEncoder {
            audio,
            text,
            audio_projection: linear(self.audio.output_dim(), self.embed_dim, device),
            text_projection: linear(self.text.output_dim(), self.embed_dim, device),
            log_inv_tau: self
                .learnable_tau
                .then(|| Param::from_tensor(Tensor::<1>::zeros([1], device))),
            tau: self.tau,
        };
        layers::canonical_ids(layers::init_parameters(model, seed, self.tau))
    }
}

/// A batch of captions as the text encoder takes it.
#[derive(Debug, Clone)]
pub enum TextInput {
    /// `[b, max_tokens]` token ids (0 = padding).
    Tokens(Tensor<2, Int>),
    /// `[b, dim]` embeddings of a frozen text encoder.
    Vectors(Tensor<2>),
}

/// L2-normalises the rows of `x`.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x.div(norm)
}

impl DualEncoder {
    /// `mel`: `[b, windows, n_mels, n_frames]`, `window_mask`: `[b, windows]` (1 = valid) →
    /// `[b, embed_dim]`, L2-normalised: the mean of the valid windows' encodings, projected.
    pub fn embed_audio(
        &self,
        mel: Tensor<4>,
        window_mask: Tensor<2>,
        noise: &mut Noise<'_>,
    ) -> Tensor<2> {
        let [b, w, m, t] = mel.dims();
        let windows = mel.reshape([b * w, m, t]);
        let enc = match &self.audio {
            AudioEncoder::Cnn(e) => e.forward(windows, noise),
            AudioEncoder::Passt(e) => e.forward(windows, noise),
            // Windows are `[n_mels, n_frames]`; YAMNet takes patches `[frames, bands]`.
            AudioEncoder::Yamnet(e) => e.forward(windows.swap_dims(1, 2)),
            // Each window holds one embedding: `[b * w, 1, dim]`.
            AudioEncoder::Frozen(e) => e.forward(windows.reshape([b * w, m * t]), noise),
        };
        let d = enc.dims()[1];
        let enc = enc.reshape([b, w, d]);
        let mask = window_mask.reshape([b, w, 1]);
        let count = mask.clone().sum_dim(1).clamp_min(1.0); // [b, 1, 1]
        let pooled = (enc * mask).sum_dim(1).div(count).reshape([b, d]);
        l2_normalize(self.audio_projection.forward(pooled))
    }

    /// Captions → `[b, embed_dim]`, L2-normalised.
    ///
    /// # Panics
    /// If `text` is not the input the text encoder takes (token ids for the trained encoders,
    /// vectors for a frozen one); [`crate::batches::text_input`] builds the right one.
    pub fn embed_text(&self, text: TextInput, noise: &mut Noise<'_>) -> Tensor<2> {
        let enc = match (&self.text, text) {
            (TextEncoder::Transformer(e), TextInput::Tokens(t)) => e.forward(t, noise),
            (TextEncoder::Bert(e), TextInput::Tokens(t)) => e.forward(t, noise),
            (TextEncoder::Frozen(e), TextInput::Vectors(v)) => e.forward(v, noise),
            (_, TextInput::Tokens(_)) => panic!("a frozen text head takes caption vectors"),
            (_, TextInput::Vectors(_)) => panic!("this text encoder takes token ids"),
        };
        l2_normalize(self.text_projection.forward(enc))
    }

    /// `1/τ` as a one-element tensor (a parameter when τ is learnable).
    pub fn logit_scale(&self, device: &Device) -> Tensor<1> {
        match &self.log_inv_tau {
            Some(p) => p.val().exp(),
            None => Tensor::<1>::from_floats([(1.0 / self.tau) as f32], device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::losses::{positives, similarity, sup_loss};
    use crate::params::{BertParams, PasstParams};
    use burn::optim::GradientsParams;
    use rand::SeedableRng;

    fn tiny_passt_bert() -> DualEncoderConfig {
        let passt = PasstParams {
            patch: 8,
            stride: 6,
            d_model: 16,
            n_layers: 1,
            n_heads: 2,
            d_ff: 32,
            freq_patchout: 1,
            time_patchout: 2,
            ..Default::default()
        };
        let bert = BertParams {
            hidden_size: 16,
            n_layers: 1,
            n_heads: 2,
            intermediate_size: 32,
            max_positions: 16,
            ..Default::default()
        };
        let audio = AudioEncoderConfig::Passt(passt.config(16, 32));
        let text = TextEncoderConfig::Bert(bert.config(30));
        DualEncoderConfig::new(audio, text, 8, 0.05, true)
    }

    #[test]
    fn passt_and_bert_train_a_step_with_patchout_and_give_unit_embeddings() {
        let device = Device::flex().autodiff();
        let config = tiny_passt_bert();
        let AudioEncoderConfig::Passt(p) = &config.audio else {
            unreachable!()
        };
        assert_eq!(p.grid(), (2, 5));
        let model = config.init(&device, 3);
        let mel = Tensor::<4>::random([3, 2, 16, 32], burn::tensor::Distribution::Default, &device);
        let mask = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 1.0, 1.0, 0.0, 1.0, 0.0], [3, 2]),
            &device,
        );
        let tokens = Tensor::<2, Int>::from_data(
            TensorData::new(vec![2i64, 5, 7, 0, 3, 0, 0, 0, 9, 9, 9, 9], [3, 4]),
            &device,
        );
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut noise = Some(&mut rng);
        let a = model.embed_audio(mel.clone(), mask.clone(), &mut noise);
        let t = model.embed_text(TextInput::Tokens(tokens.clone()), &mut noise);
        let loss = sup_loss(
            similarity(a, t),
            model.logit_scale(&device),
            positives(&[0, 1, 2], &device),
        );
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let AudioEncoder::Passt(passt) = &model.audio else {
            unreachable!()
        };
        assert!(
            grads.get::<4>(passt.patch_embedding.weight.id).is_some(),
            "no gradient for the patch embedding"
        );
        let TextEncoder::Bert(bert) = &model.text else {
            unreachable!()
        };
        assert!(
            grads
                .get::<2>(bert.embeddings.word_embeddings.weight.id)
                .is_some(),
            "no gradient for BERT's word embeddings"
        );
        assert!(
            grads
                .get::<1>(model.log_inv_tau.as_ref().unwrap().id)
                .is_some(),
            "τ is not learned"
        );

        // Evaluation mode: no patch-out, L2-normalised rows, deterministic.
        let eval = model.valid();
        let plain = Device::flex();
        let e1 = eval.embed_audio(
            mel.clone().inner().to_device(&plain),
            mask.clone().inner().to_device(&plain),
            &mut None,
        );
        let e2 = eval.embed_audio(
            mel.inner().to_device(&plain),
            mask.inner().to_device(&plain),
            &mut None,
        );
        let v1 = e1.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        assert_eq!(
            v1,
            e2.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
        );
        for row in v1.chunks(8) {
            assert!((row.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn bert_record_loads_back_into_a_fresh_model() {
        let config = tiny_passt_bert();
        let model = config.init(&Device::flex(), 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.mpk");
        crate::embedding::save_record(&model, &path).unwrap();
        crate::embedding::load_record(config.init(&Device::flex(), 1), &path).unwrap();
    }

    #[test]
    fn bert_record_uses_bert_module_names() {
        let model = tiny_passt_bert().init(&Device::flex(), 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.mpk");
        model.save_file(&path).unwrap();
        // The burnpack file keeps the module paths; check a few BERT ones are there.
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        // (Burn puts the enum variant into the path: `text.Bert.…`.)
        for key in [
            "embeddings.word_embeddings.weight",
            "embeddings.token_type_embeddings.weight",
            "pooler.dense.weight",
            "layers.0.attention.query.weight",
        ] {
            assert!(
                text.contains(&format!("text.Bert.{key}")),
                "{key} missing from the record"
            );
        }
    }
}
