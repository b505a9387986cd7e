//! Loads a HuggingFace BERT checkpoint (`config.json` + `model.safetensors`, as written by
//! `transformers`' `BertModel.save_pretrained`) into [`BertTextEncoder`], e.g.
//! sentence-transformers' all-MiniLM-L6-v2.
//!
//! A sentence-transformers folder works too: its `modules.json` names the folder of the
//! Transformer module (`""`, the top level, in current exports) and of the Pooling module, whose
//! `config.json` selects mean pooling. (Its final `Normalize` module is not part of the encoder:
//! the dual encoder L2-normalises after its projection.)
//!
//! Every parameter of the encoder must be in the checkpoint with its shape (linear weights are
//! `[out, in]` there, as PyTorch stores them, and transposed to Burn's `[in, out]`); checkpoint
//! keys the encoder has no use for are reported (see [`load_bert_weights`]).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail, ensure};
use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::models::text::{BertTextConfig, BertTextEncoder, Pooling};

/// Checkpoint keys that are buffers, not weights, and are left out silently.
const BUFFERS: [&str; 1] = ["embeddings.position_ids"];

/// The fields of HuggingFace's `BertConfig` the encoder depends on.
#[derive(Debug, Deserialize)]
struct HfBertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    hidden_act: String,
    layer_norm_eps: f64,
    #[serde(default)]
    position_embedding_type: Option<String>,
}

/// One entry of sentence-transformers' `modules.json`.
#[derive(Debug, Deserialize)]
struct StModule {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// Where a checkpoint's files are.
struct Layout {
    /// Folder with `config.json` and `model.safetensors`.
    model: PathBuf,
    /// sentence-transformers' pooling `config.json`, when there is one.
    pooling: Option<PathBuf>,
}

/// Reads the checkpoint in `dir` (see the module documentation) onto `device`; returns the
/// configuration (to rebuild the encoder) and the encoder in evaluation-ready form (dropout 0).
/// Checkpoint keys the encoder has no place for (e.g. a masked-LM head) are ignored.
pub fn load_bert(dir: &Path, device: &Device) -> anyhow::Result<(BertTextConfig, BertTextEncoder)> {
    let config = bert_config(dir)?;
    let encoder = load_bert_with(dir, &config, device)?;
    Ok((config, encoder))
}

/// The checkpoint in `dir` on an encoder built from `config` (its [`bert_config`], possibly
/// with another dropout).
pub fn load_bert_with(
    dir: &Path,
    config: &BertTextConfig,
    device: &Device,
) -> anyhow::Result<BertTextEncoder> {
    let weights = layout(dir)?.model.join("model.safetensors");
    // Unused keys (the pooler of a mean-pooling model, ...) are expected; the caller has no
    // use for the list.
    let (encoder, _unused) = load_bert_weights(config.init(device), &weights)?;
    Ok(encoder)
}

/// The configuration [`load_bert`] builds for `dir` (its `config.json`, and the pooling of a
/// sentence-transformers folder), without reading the weights.
pub fn bert_config(dir: &Path) -> anyhow::Result<BertTextConfig> {
    let layout = layout(dir)?;
    let config = read_config(&layout.model.join("config.json"))?;
    Ok(match &layout.pooling {
        Some(pooling) => BertTextConfig {
            pooling: Some(read_pooling(pooling)?),
            ..config
        },
        None => config,
    })
}

/// Finds the model folder and the pooling config of `dir` (plain or sentence-transformers).
fn layout(dir: &Path) -> anyhow::Result<Layout> {
    let modules = dir.join("modules.json");
    if !modules.exists() {
        return Ok(Layout {
            model: dir.to_owned(),
            pooling: None,
        });
    }
    let modules: Vec<StModule> = read_json(&modules)?;
    let folder = |kind: &str| {
        modules
            .iter()
            .find(|m| m.kind.rsplit('.').next() == Some(kind))
            .map(|m| dir.join(&m.path))
    };
    Ok(Layout {
        model: folder("Transformer").unwrap_or_else(|| dir.to_owned()),
        pooling: folder("Pooling").map(|p| p.join("config.json")),
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = fs_err::read_to_string(path)?;
    serde_json::from_str(&text).with_context(|| format!("parsing `{}`", path.display()))
}

/// Reads HuggingFace's `config.json` into a [`BertTextConfig`] (dropout 0: inference).
pub fn read_config(path: &Path) -> anyhow::Result<BertTextConfig> {
    let c: HfBertConfig = read_json(path)?;
    // Other activations ("gelu_new", "relu") or relative positions would silently differ.
    ensure!(
        c.hidden_act == "gelu",
        "`{}`: hidden_act {:?} is not supported (only \"gelu\")",
        path.display(),
        c.hidden_act
    );
    let positions = c.position_embedding_type.as_deref().unwrap_or("absolute");
    ensure!(
        positions == "absolute",
        "`{}`: position_embedding_type {positions:?} is not supported",
        path.display()
    );
    ensure!(
        c.num_attention_heads > 0 && c.hidden_size.is_multiple_of(c.num_attention_heads),
        "`{}`: {} heads do not divide hidden_size {}",
        path.display(),
        c.num_attention_heads,
        c.hidden_size
    );
    Ok(BertTextConfig {
        vocab_size: c.vocab_size,
        max_positions: c.max_position_embeddings,
        layer_norm_eps: Some(c.layer_norm_eps),
        pooling: None,
        hidden_size: c.hidden_size,
        n_layers: c.num_hidden_layers,
        n_heads: c.num_attention_heads,
        intermediate_size: c.intermediate_size,
        type_vocab_size: c.type_vocab_size,
        dropout: 0.0,
    })
}

/// Reads sentence-transformers' `1_Pooling/config.json`; only mean pooling is supported (CLS
/// pooling there takes the raw first token, not BERT's pooler).
fn read_pooling(path: &Path) -> anyhow::Result<Pooling> {
    let config: serde_json::Map<String, serde_json::Value> = read_json(path)?;
    let modes: Vec<&str> = config
        .iter()
        .filter(|(k, v)| k.starts_with("pooling_mode_") && v.as_bool() == Some(true))
        .map(|(k, _)| k.as_str())
        .collect();
    match modes.as_slice() {
        ["pooling_mode_mean_tokens"] => Ok(Pooling::Mean),
        _ => bail!(
            "`{}`: pooling {modes:?} is not supported (only pooling_mode_mean_tokens)",
            path.display()
        ),
    }
}

/// Replaces every parameter of `encoder` by its value in the safetensors file `path`; returns
/// the encoder and the checkpoint keys it did not use (besides buffers such as
/// `embeddings.position_ids`). Errors name the key that is missing or has the wrong shape or
/// type. Keys may carry BertFor…'s `bert.` prefix.
pub fn load_bert_weights(
    encoder: BertTextEncoder,
    path: &Path,
) -> anyhow::Result<(BertTextEncoder, Vec<String>)> {
    let bytes = fs_err::read(path)?;
    let file = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("`{}` is not a safetensors file", path.display()))?;
    let mut mapper = HfWeights {
        tensors: file
            .iter()
            .map(|(k, v)| (k.strip_prefix("bert.").unwrap_or(k).to_owned(), v))
            .collect(),
        used: BTreeSet::new(),
        path: Vec::new(),
        error: None,
    };
    let encoder = encoder.map(&mut mapper);
    if let Some(e) = mapper.error {
        return Err(e.context(format!("loading `{}`", path.display())));
    }
    let mut unused: Vec<String> = mapper
        .tensors
        .into_keys()
        .filter(|k| !mapper.used.contains(k) && !BUFFERS.contains(&k.as_str()))
        .collect();
    unused.sort();
    Ok((encoder, unused))
}

/// The checkpoint key of the encoder parameter at `path` (Burn's module path, e.g.
/// `layers.3.attention.query.weight` → `encoder.layer.3.attention.self.query.weight`).
pub fn hf_key(path: &str) -> Option<String> {
    let (module, param) = path.rsplit_once('.')?;
    // Burn's layer norm calls its parameters gamma/beta, PyTorch weight/bias.
    let param = match param {
        "gamma" => "weight",
        "beta" => "bias",
        p => p,
    };
    let module = match module.strip_prefix("layers.") {
        Some(rest) => {
            let (i, sub) = rest.split_once('.')?;
            let sub = match sub {
                "attention.query" => "attention.self.query",
                "attention.key" => "attention.self.key",
                "attention.value" => "attention.self.value",
                "attention.output" => "attention.output.dense",
                "attention_norm" => "attention.output.LayerNorm",
                "ff_in" => "intermediate.dense",
                "ff_out" => "output.dense",
                "ff_norm" => "output.LayerNorm",
                _ => return None,
            };
            format!("encoder.layer.{i}.{sub}")
        }
        None if module == "embeddings.layer_norm" => "embeddings.LayerNorm".to_owned(),
        None => module.to_owned(),
    };
    Some(format!("{module}.{param}"))
}

/// A [`ModuleMapper`] that swaps each float parameter for the checkpoint's tensor; the first
/// error is kept (a mapper cannot fail).
struct HfWeights<'a> {
    tensors: HashMap<String, TensorView<'a>>,
    used: BTreeSet<String>,
    path: Vec<String>,
    error: Option<anyhow::Error>,
}

impl HfWeights<'_> {
    /// The checkpoint's value for `path`, as a tensor in the record layout `expected`.
    fn value<const D: usize>(
        &mut self,
        expected: [usize; D],
        device: &Device,
    ) -> anyhow::Result<Tensor<D>> {
        let path = self.path.join(".");
        let key = hf_key(&path).ok_or_else(|| anyhow!("no checkpoint key for `{path}`"))?;
        let view = self
            .tensors
            .get(&key)
            .ok_or_else(|| anyhow!("missing key `{key}` (for `{path}`)"))?;
        ensure!(
            view.shape() == expected,
            "`{key}` has shape {:?}, the encoder expects {expected:?}",
            view.shape()
        );
        let values = floats(view).with_context(|| format!("reading `{key}`"))?;
        self.used.insert(key);
        Ok(Tensor::from_data(TensorData::new(values, expected), device))
    }
}

/// The values of an F32 or BF16 tensor.
fn floats(view: &TensorView<'_>) -> anyhow::Result<Vec<f32>> {
    let data = view.data();
    match view.dtype() {
        Dtype::F32 => Ok(data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        // bf16 is the upper half of an f32.
        Dtype::BF16 => Ok(data
            .chunks_exact(2)
            .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
            .collect()),
        other => bail!("dtype {other:?} is not supported (F32, BF16)"),
    }
}

/// Whether the parameter at module path `path` (of rank `rank`) is a linear layer's weight,
/// stored `[out, in]` in PyTorch checkpoints and `[in, out]` in Burn.
fn is_linear_weight(path: &[String], rank: usize) -> bool {
    rank == 2
        && path.last().is_some_and(|p| p == "weight")
        && !path.iter().any(|p| p == "embeddings")
}

impl ModuleMapper for HfWeights<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        if self.error.is_some() {
            return Param::from_mapped_value(id, tensor, mapper);
        }
        // Linear weights are `[in, out]` here and `[out, in]` in the checkpoint; embedding
        // tables (`[vocab, width]`) are the same in both.
        let dims = tensor.dims();
        let linear = is_linear_weight(&self.path, D);
        let mut expected = dims;
        if linear {
            expected.swap(0, 1);
        }
        match self.value(expected, &tensor.device()) {
            Ok(value) => {
                let mut value = if linear { value.transpose() } else { value };
                if tensor.is_require_grad() {
                    value = value.require_grad();
                }
                Param::from_mapped_value(id, value, mapper)
            }
            Err(e) => {
                self.error = Some(e);
                Param::from_mapped_value(id, tensor, mapper)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::init_parameters;
    use crate::params::BertParams;

    fn tiny(seed: u64) -> BertTextEncoder {
        let config = BertParams {
            hidden_size: 4,
            n_layers: 2,
            n_heads: 2,
            intermediate_size: 8,
            max_positions: 6,
            ..Default::default()
        }
        .config(10);
        init_parameters(config.init(&Device::flex()), seed, 0.05)
    }

    /// Collects every float parameter as (module path, record shape, values).
    #[derive(Default)]
    struct Export {
        path: Vec<String>,
        params: Vec<(String, Vec<usize>, Vec<f32>)>,
    }

    impl ModuleMapper for Export {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_owned());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = p.consume();
            // The checkpoint layout: linear weights `[out, in]`.
            let record = if is_linear_weight(&self.path, D) {
                tensor.clone().transpose()
            } else {
                tensor.clone()
            };
            let dims = record.dims().to_vec();
            let values = record.into_data().try_to_vec_as::<f32>().unwrap();
            self.params.push((self.path.join("."), dims, values));
            Param::from_mapped_value(id, tensor, mapper)
        }
    }

    fn records(encoder: &BertTextEncoder) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut export = Export::default();
        let _ = encoder.clone().map(&mut export);
        export.params
    }

    /// Writes `encoder` as a HuggingFace checkpoint, with `edit` applied to the key list.
    fn checkpoint(
        encoder: BertTextEncoder,
        edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>),
    ) -> tempfile::NamedTempFile {
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = records(&encoder)
            .into_iter()
            .map(|(path, dims, values)| {
                let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (hf_key(&path).unwrap(), dims, bytes)
            })
            .collect();
        edit(&mut tensors);
        let views = tensors.iter().map(|(k, dims, bytes)| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, dims.clone(), bytes).unwrap(),
            )
        });
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), safetensors::serialize(views, None).unwrap()).unwrap();
        file
    }

    fn output(encoder: &BertTextEncoder) -> Vec<f32> {
        let tokens = Tensor::<2, Int>::from_data(
            TensorData::new(vec![1i64, 4, 5, 2, 0, 1, 9, 3, 8, 2], [2, 5]),
            &Device::flex(),
        );
        let out = encoder.forward(tokens, &mut None);
        out.into_data().try_to_vec_as::<f32>().unwrap()
    }

    #[test]
    fn a_checkpoint_written_in_the_hf_layout_loads_back_exactly() {
        let source = tiny(1);
        let expected = (output(&source), records(&source));
        let file = checkpoint(source, |t| {
            let bytes = 7f32.to_le_bytes().to_vec();
            t.push(("embeddings.position_ids".into(), vec![1], bytes.clone()));
            t.push(("cls.predictions.bias".into(), vec![1], bytes));
        });
        let (loaded, unused) = load_bert_weights(tiny(2), file.path()).unwrap();
        assert_eq!(unused, ["cls.predictions.bias"]);
        assert_eq!(records(&loaded), expected.1);
        // Equal up to rounding: the loaded weights are transposed views, which the matmul
        // may sum in another order.
        for (a, b) in output(&loaded).iter().zip(&expected.0) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn a_missing_key_or_a_wrong_shape_is_named() {
        let key = "encoder.layer.1.intermediate.dense.weight";
        let file = checkpoint(tiny(1), |t| t.retain(|(k, _, _)| k != key));
        let err = load_bert_weights(tiny(2), file.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!("missing key `{key}`")),
            "{err:#}"
        );

        // A square-free `[in, out]` weight (not transposed) is refused.
        let file = checkpoint(tiny(1), |t| {
            let entry = t.iter_mut().find(|(k, _, _)| k == key).unwrap();
            entry.1.reverse();
        });
        let err = format!("{:#}", load_bert_weights(tiny(2), file.path()).unwrap_err());
        assert!(err.contains(&format!("`{key}` has shape [4, 8]")), "{err}");
    }

    #[test]
    fn every_parameter_has_a_bert_key() {
        let keys: BTreeSet<String> = records(&tiny(0))
            .iter()
            .map(|(path, _, _)| hf_key(path).unwrap())
            .collect();
        // 5 embedding tensors, 16 per layer, 2 for the pooler; all distinct.
        assert_eq!(keys.len(), 5 + 2 * 16 + 2);
        for key in [
            "embeddings.word_embeddings.weight",
            "embeddings.LayerNorm.weight",
            "encoder.layer.1.attention.self.query.weight",
            "encoder.layer.0.attention.output.dense.bias",
            "encoder.layer.0.attention.output.LayerNorm.bias",
            "encoder.layer.1.intermediate.dense.weight",
            "encoder.layer.1.output.dense.weight",
            "encoder.layer.0.output.LayerNorm.weight",
            "pooler.dense.weight",
        ] {
            assert!(keys.contains(key), "{key} not among {keys:?}");
        }
    }
}
