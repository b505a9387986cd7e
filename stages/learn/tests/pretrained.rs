//! The pretrained encoders inside the stage kinds: `encode` (frozen YAMNet and MiniLM
//! embeddings) feeding frozen-head training, and `train` fine-tuning both from their weights,
//! on a small generated data set with the `yamnet` front end and MiniLM's tokenizer.

use burn::prelude::*;
use pipeline_api::{InputCounts, SilentReporter, StageKind};
use pipeline_data::features::{FeaturesParams, Preset, compute_with};
use pipeline_data::synth::{SynthParams, write_dataset};
use pipeline_formats::FeatureSet;
use pipeline_learn::embedding::load_model;
use pipeline_learn::encode::EncodeKind;
use pipeline_learn::kinds::TrainKind;
use pipeline_learn::models::yamnet::load_yamnet;
use pipeline_learn::models::{AudioEncoder, TextEncoder};
use pipeline_learn::pretrained::bert::load_bert;

mod common;

use common::{Recorder, run_kind, run_kind_reporting};

/// 12 / 4 / 4 generated clips of 1.5 s, cut to 2 s: 4 YAMNet patches (3 with audio) and
/// MiniLM token ids.
fn yamnet_features() -> (tempfile::TempDir, FeatureSet) {
    let data = tempfile::tempdir().unwrap();
    let synth = SynthParams {
        train_clips: 12,
        val_clips: 4,
        test_clips: 4,
        clip_seconds: 1.5,
        ..Default::default()
    };
    write_dataset(&synth, data.path(), &SilentReporter).unwrap();
    let params = FeaturesParams {
        preset: Preset::Yamnet,
        max_seconds: Some(2.0),
        max_tokens: 24,
        ..Default::default()
    };
    let tokenizer = common::minilm_dir().join("tokenizer.json");
    let dir = tempfile::tempdir().unwrap();
    let windows = dir.path().join(pipeline_formats::WINDOWS_DIR);
    let (set, _) = compute_with(
        data.path(),
        Some(&tokenizer),
        &params,
        &windows,
        &SilentReporter,
    )
    .unwrap();
    set.save_tables(dir.path()).unwrap();
    (dir, set)
}

fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar()
}

#[test]
fn encode_writes_the_pretrained_embeddings_and_frozen_heads_train_on_them() {
    let (features_dir, features) = yamnet_features();
    let root = common::pretrained_root();
    let recorder = Recorder::default();
    let encoded = run_kind_reporting(
        &EncodeKind,
        "batch_size = 16",
        &[("features", features_dir.path()), ("pretrained", root)],
        &recorder,
    )
    .unwrap()
    .out;
    // The run time is a measurement (manifest), not part of `metrics.json`.
    assert!(recorder.measurement("seconds").is_some_and(|s| s > 0.0));
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(encoded.path().join("metrics.json")).unwrap())
            .unwrap();
    assert!(metrics.get("seconds").is_none(), "{metrics}");
    assert_eq!(metrics["n_clips"], features.clips.len());
    let e = FeatureSet::load(encoded.path()).unwrap();
    let [n, w, _, _] = features.mel_shape();
    assert_eq!(e.mel_shape(), [n, w, 1, 1024]);
    assert_eq!(e.window_mask, features.window_mask);
    let text = e.text_vectors.as_ref().unwrap();
    assert_eq!(
        (text.dim, text.values.len()),
        (384, 384 * features.captions.len())
    );
    assert_eq!(e.captions, features.captions);

    // The stored vectors are exactly the encoders' outputs.
    let device = Device::flex();
    let yamnet = load_yamnet(&common::yamnet_onnx(), &device).unwrap();
    let window = Tensor::<3>::from_data(
        TensorData::new(
            features.mel.clip(0).unwrap()[..64 * 96].to_vec(),
            [1, 64, 96],
        ),
        &device,
    );
    let expected = yamnet.forward(window.swap_dims(1, 2));
    let stored = Tensor::<2>::from_data(
        TensorData::new(e.mel.clip(0).unwrap()[..1024].to_vec(), [1, 1024]),
        &device,
    );
    assert!(max_abs_diff(expected, stored) < 1e-4);
    let (_, bert) = load_bert(&common::minilm_dir(), &device).unwrap();
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(
            features.caption_tokens(3).to_vec(),
            [1, features.max_tokens],
        ),
        &device,
    );
    let expected = bert.forward(tokens, &mut None);
    let stored = Tensor::<2>::from_data(TensorData::new(text.row(3).to_vec(), [1, 384]), &device);
    assert!(max_abs_diff(expected, stored) < 1e-4);
    // Windows without audio stay zero.
    let empty = (0..n * w).find(|&i| features.window_mask[i] == 0).unwrap();
    let (clip, window) = (empty / w, empty % w);
    assert!(
        e.mel.clip(clip).unwrap()[window * 1024..(window + 1) * 1024]
            .iter()
            .all(|&v| v == 0.0)
    );

    let model = run_kind(
        &TrainKind,
        "epochs = 2\nbatch_size = 8\nthreads = 2\n[model]\naudio = \"frozen\"\ntext = \"frozen\"\nembed_dim = 32",
        &[("features", encoded.path())],
    )
    .unwrap()
    .out;
    assert!(model.path().join("model.mpk").exists());

    // Token ids of another tokenizer are refused.
    let mut other = features.clone();
    other.vocab.truncate(100);
    let other_dir = tempfile::tempdir().unwrap();
    other.save(other_dir.path()).unwrap();
    let err = run_kind(
        &EncodeKind,
        "",
        &[("features", other_dir.path()), ("pretrained", root)],
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("30522 token ids"), "{err:#}");
}

#[test]
fn train_fine_tunes_from_the_pretrained_weights() {
    let (features_dir, _) = yamnet_features();
    let root = common::pretrained_root();
    let params = format!(
        "epochs = 1\nbatch_size = 6\nlr = 1e-5\nwarmup_epochs = 0\nthreads = 2\n[model]\naudio = \"yamnet\"\ntext = \"bert\"\nembed_dim = 32\nyamnet = {{ weights = \"{}\" }}\nbert = {{ weights = \"{}\", dropout = 0.0 }}",
        common::YAMNET_ONNX,
        common::MINILM_DIR
    );
    let out = run_kind(
        &TrainKind,
        &params,
        &[("features", features_dir.path()), ("pretrained", root)],
    )
    .unwrap()
    .out;
    let device = Device::flex();
    let (model, _) = load_model(out.path(), &device).unwrap();
    // One epoch at a small learning rate: near the pretrained weights, but trained.
    let AudioEncoder::Yamnet(audio) = &model.audio else {
        panic!("not YAMNet")
    };
    let pretrained = load_yamnet(&common::yamnet_onnx(), &device).unwrap();
    let moved = max_abs_diff(
        audio.blocks[12].pointwise.weight.val().flatten::<2>(0, 2),
        pretrained.blocks[12]
            .pointwise
            .weight
            .val()
            .flatten::<2>(0, 2),
    );
    assert!(moved > 0.0 && moved < 1e-2, "YAMNet moved by {moved}");
    let TextEncoder::Bert(text) = &model.text else {
        panic!("not BERT")
    };
    let (_, bert) = load_bert(&common::minilm_dir(), &device).unwrap();
    let moved = max_abs_diff(
        text.embeddings.word_embeddings.weight.val(),
        bert.embeddings.word_embeddings.weight.val(),
    );
    assert!(moved > 0.0 && moved < 1e-2, "BERT moved by {moved}");

    // Weights without the input, and the input without weights, are refused when planning.
    let counts = InputCounts([("features".to_owned(), 1)].into());
    let err = TrainKind
        .plan(&toml::from_str(&params).unwrap(), &counts)
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("model.yamnet.weights"));
    let counts = InputCounts([("features".to_owned(), 1), ("pretrained".to_owned(), 1)].into());
    let err = TrainKind
        .plan(&toml::from_str("epochs = 1").unwrap(), &counts)
        .unwrap_err();
    assert!(
        err.to_string().contains("no `model.yamnet.weights`"),
        "{err}"
    );
}
