//! The `train`, `distill` and `embed` kinds end to end on a tiny synthetic feature set, run
//! through `plan` and `run` as the executor does.

use std::path::{Path, PathBuf};

use pipeline_api::{InputCounts, Registry, SilentReporter, StageKind};
use pipeline_data::formats::{Embeddings, FeatureSet, Table, TeacherEmbeddings};
use pipeline_learn::fixtures::Synthetic;
use pipeline_learn::kinds::{DistillKind, EmbedKind, TrainKind};

mod common;

use common::{features_dir, run_kind, table};

/// A small, fast model: the crate's suite must stay quick.
const TINY: &str = r#"
epochs = 3
batch_size = 8
lr = 3e-3
warmup_epochs = 0.5
threads = 1
[model]
embed_dim = 16
[model.cnn]
channels = [4, 8]
[model.transformer]
d_model = 16
n_heads = 2
d_ff = 32
"#;

fn metrics(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn registry_holds_four_documented_kinds() {
    let mut registry = Registry::default();
    pipeline_learn::register(&mut registry);
    assert_eq!(
        registry.names().collect::<Vec<_>>(),
        vec!["distill", "embed", "encode", "train"]
    );
    assert!(registry.iter().all(|k| !k.summary().is_empty()));
}

#[test]
fn train_plan_fills_defaults_and_refuses_bad_params() {
    let plan = TrainKind
        .plan(&table(""), &InputCounts([("features".into(), 1)].into()))
        .unwrap();
    let p = &plan.params;
    assert_eq!(p["epochs"], 10);
    assert_eq!(p["batch_size"], 32);
    assert_eq!(p["tau"], 0.05);
    assert_eq!(p["model"]["audio"], "cnn");
    assert_eq!(
        p["model"]["cnn"]["channels"],
        serde_json::json!([16, 32, 64])
    );
    assert!(p["model"].get("passt").is_none());
    assert_eq!(plan.resources.threads, usize::MAX);
    assert!(!plan.resources.gpu);

    let counts = InputCounts([("features".into(), 1)].into());
    let err = TrainKind.plan(&table("epoch = 3"), &counts).unwrap_err();
    assert!(err.message.contains("unknown field `epoch`"), "{err}");
    let err = TrainKind.plan(&table("lr = -1.0"), &counts).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("lr"));
    let err = TrainKind
        .plan(
            &table("[model]\naudio = \"cnn\"\n[model.passt]\nd_model = 64"),
            &counts,
        )
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("model.passt"));
    let err = TrainKind
        .plan(
            &table("[model.transformer]\nd_model = 30\nn_heads = 4"),
            &counts,
        )
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("model.transformer.n_heads"));
    let err = TrainKind
        .plan(&table(""), &InputCounts::default())
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("inputs.features"));
    let plan = TrainKind
        .plan(&table("threads = 2\ndevice = \"cpu\""), &counts)
        .unwrap();
    assert_eq!(plan.resources.threads, 2);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_requested_without_the_feature_is_a_clear_error() {
    let f = Synthetic::tiny().build();
    let dir = features_dir(&f);
    let params = format!("device = \"cuda\"\n{TINY}");
    let err = run_kind(&TrainKind, &params, &[("features", dir.path())])
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("built without CUDA support"),
        "{err:#}"
    );
}

#[test]
fn train_learns_writes_outputs_and_embed_gives_normalised_rows() {
    let f = Synthetic::tiny().build();
    let dir = features_dir(&f);
    let node = run_kind(&TrainKind, TINY, &[("features", dir.path())]).unwrap();
    let out = node.out.path();
    for file in [
        "model.mpk",
        "model.json",
        "curves.parquet",
        "curves.png",
        "metrics.json",
        "train_config.json",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let curves_path = out.join("curves.parquet");
    let curves = Table::open(&curves_path).unwrap();
    let loss = curves.f64s("train_loss").unwrap();
    assert_eq!(loss.len(), 3);
    assert!(loss[2] < loss[0], "loss did not decrease: {loss:?}");
    let m = metrics(out);
    let map10 = m["val"]["map10"].as_f64().unwrap();
    // 8 val clips: a random ranking gives mAP@10 ≈ 0.34; the class signal is easy.
    assert!(map10 > 0.4, "val mAP@10 {map10}");
    assert!(m["steps_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(m["device"], "cpu");

    let emb = run_kind(
        &EmbedKind,
        "threads = 1\nbatch_size = 5",
        &[("model", out), ("features", dir.path())],
    )
    .unwrap();
    let e = Embeddings::load(emb.out.path()).unwrap();
    assert_eq!(
        (e.n_clips(), e.n_captions(), e.dim),
        (f.clips.len(), f.captions.len(), 16)
    );
    for i in 0..e.n_clips() {
        let n: f32 = e.audio_row(i).iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4);
    }
    for j in 0..e.n_captions() {
        let n: f32 = e.text_row(j).iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4);
    }
    // Evaluation mode is deterministic: embedding twice gives the same numbers.
    let again = run_kind(
        &EmbedKind,
        "threads = 1\nbatch_size = 64",
        &[("model", out), ("features", dir.path())],
    )
    .unwrap();
    let e2 = Embeddings::load(again.out.path()).unwrap();
    for (a, b) in e.audio.iter().zip(&e2.audio) {
        assert!((a - b).abs() < 1e-5);
    }

    // Distillation from this model's own embeddings (self-distillation) on the train split.
    let train_clips = f.split_clips(pipeline_data::formats::Split::Train);
    let train_caps = f.split_captions(pipeline_data::formats::Split::Train);
    let teachers = TeacherEmbeddings {
        teachers: 1,
        dim: e.dim,
        clip_index: train_clips.clone(),
        caption_index: train_caps.clone(),
        audio: train_clips
            .iter()
            .flat_map(|&i| e.audio_row(i).to_vec())
            .collect(),
        text: train_caps
            .iter()
            .flat_map(|&j| e.text_row(j).to_vec())
            .collect(),
    };
    let corr = tempfile::tempdir().unwrap();
    teachers.save(corr.path()).unwrap();
    let distilled = run_kind(
        &DistillKind,
        "epochs = 2\nbatch_size = 8\nlr = 1e-3\nthreads = 1\nlambda_sup = 0.5",
        &[
            ("features", dir.path()),
            ("init", out),
            ("correspondences", corr.path()),
        ],
    )
    .unwrap();
    let m = metrics(distilled.out.path());
    assert!(m["val"]["map10"].as_f64().unwrap() > 0.3, "{m}");
    let curves_path = distilled.out.path().join("curves.parquet");
    let curves = Table::open(&curves_path).unwrap();
    assert!(
        curves
            .f64s("train_loss")
            .unwrap()
            .iter()
            .all(|l| l.is_finite())
    );
}

#[test]
fn distill_refuses_correspondences_that_miss_training_pairs() {
    let f = Synthetic::tiny().build();
    let dir = features_dir(&f);
    let model = run_kind(
        &TrainKind,
        &TINY.replace("epochs = 3", "epochs = 1"),
        &[("features", dir.path())],
    )
    .unwrap();
    let teachers = TeacherEmbeddings {
        teachers: 1,
        dim: 2,
        clip_index: vec![0],
        caption_index: vec![0],
        audio: vec![1.0, 0.0],
        text: vec![1.0, 0.0],
    };
    let corr = tempfile::tempdir().unwrap();
    teachers.save(corr.path()).unwrap();
    let err = run_kind(
        &DistillKind,
        "epochs = 1\nthreads = 1",
        &[
            ("features", dir.path()),
            ("init", model.out.path()),
            ("correspondences", corr.path()),
        ],
    )
    .err()
    .unwrap();
    assert!(
        format!("{err:#}").contains("training pairs are not among them"),
        "{err:#}"
    );
}

#[test]
fn nan_in_the_features_stops_training_naming_epoch_and_step() {
    let mut f = Synthetic::tiny().build();
    f.mel.iter_mut().for_each(|v| *v = f32::NAN);
    let dir = features_dir(&f);
    let err = run_kind(&TrainKind, TINY, &[("features", dir.path())])
        .err()
        .unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("training loss is NaN at epoch 1 step 1"),
        "{msg}"
    );
}

#[test]
fn absurd_learning_rate_is_reported_not_silently_trained() {
    let f = Synthetic::tiny().build();
    let dir = features_dir(&f);
    let params = TINY
        .replace("lr = 3e-3", "lr = 1e30\nfinal_lr = 0.0")
        .replace("warmup_epochs = 0.5", "warmup_epochs = 0.0");
    let err = run_kind(&TrainKind, &params, &[("features", dir.path())])
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("the training loss is"),
        "{err:#}"
    );
}

/// Audio and text embeddings of every clip/caption by a saved model (parameter ids inside
/// the record differ between runs, so models are compared by what they compute).
fn outputs_of(record: &Path, config_dir: &Path, f: &FeatureSet) -> Vec<f32> {
    use burn::prelude::*;
    use pipeline_learn::embedding::{embed_captions, embed_clips, load_config, load_record};
    let device = Device::flex();
    let config = load_config(config_dir).unwrap();
    let model = load_record(config.init(&device, 0), record).unwrap();
    let clips: Vec<usize> = (0..f.clips.len()).collect();
    let caps: Vec<usize> = (0..f.captions.len()).collect();
    let mut v = embed_clips(&model, f, &clips, 16, &device);
    v.extend(embed_captions(&model, f, &caps, 16, &device));
    v
}

fn model_outputs(dir: &Path, f: &FeatureSet) -> Vec<f32> {
    outputs_of(&dir.join("model.mpk"), dir, f)
}

#[test]
fn same_seed_same_numbers() {
    let f = Synthetic::tiny().build();
    let dir = features_dir(&f);
    let params = TINY.replace("epochs = 3", "epochs = 2");
    let a = run_kind(&TrainKind, &params, &[("features", dir.path())]).unwrap();
    let b = run_kind(&TrainKind, &params, &[("features", dir.path())]).unwrap();
    let la = Table::open(&a.out.path().join("curves.parquet"))
        .unwrap()
        .f64s("train_loss")
        .unwrap();
    let lb = Table::open(&b.out.path().join("curves.parquet"))
        .unwrap()
        .f64s("train_loss")
        .unwrap();
    assert_eq!(la, lb);
    assert_eq!(
        model_outputs(a.out.path(), &f),
        model_outputs(b.out.path(), &f)
    );
    let c = run_kind(
        &TrainKind,
        &format!("seed = 5\n{params}"),
        &[("features", dir.path())],
    )
    .unwrap();
    let lc = Table::open(&c.out.path().join("curves.parquet"))
        .unwrap()
        .f64s("train_loss")
        .unwrap();
    assert_ne!(la, lc);
}

#[test]
fn killed_training_resumes_to_the_uninterrupted_result() {
    use pipeline_learn::params::TrainParams;
    use pipeline_learn::train::{Objective, STOPPED, TrainJob, best_model_path, train};

    let f = Synthetic::tiny().build();
    let params = TINY.replace("epochs = 3", "epochs = 2");
    let p: TrainParams = pipeline_api::parse_params::<TrainParams>(&table(&params))
        .unwrap()
        .canonical()
        .unwrap();
    let optim = p.optim();
    let model = p.model.resolve(&optim, &f, None).unwrap();
    let compute = pipeline_learn::device::resolve(optim.device).unwrap();
    fn job<'a>(
        f: &'a FeatureSet,
        optim: &pipeline_learn::params::OptimParams,
        model: &pipeline_learn::models::DualEncoderConfig,
        compute: &pipeline_learn::device::Compute,
        scratch: &'a Path,
        stop_after: Option<usize>,
    ) -> TrainJob<'a> {
        TrainJob {
            node: "t",
            features: f,
            optim: optim.clone(),
            model: model.clone(),
            init: None::<PathBuf>,
            pretrained: Default::default(),
            objective: Objective::Supervised,
            fingerprint: serde_json::json!({"test": "resume"}),
            compute: compute.clone(),
            scratch_dir: scratch,
            reporter: &SilentReporter,
            stop_after,
        }
    }
    let job = |scratch, stop| job(&f, &optim, &model, &compute, scratch, stop);
    let whole = tempfile::tempdir().unwrap();
    let uninterrupted = train(&job(whole.path(), None)).unwrap();

    let killed = tempfile::tempdir().unwrap();
    let err = train(&job(killed.path(), Some(1))).unwrap_err();
    assert_eq!(err.to_string(), STOPPED);
    let resumed = train(&job(killed.path(), None)).unwrap();
    assert_eq!(resumed.resumed_epochs, 1);
    let losses = |s: &pipeline_learn::train::TrainSummary| {
        s.curves
            .iter()
            .map(|c| (c.train_loss, c.val))
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&uninterrupted), losses(&resumed));
    let config_dir = tempfile::tempdir().unwrap();
    pipeline_learn::embedding::save_config(&model, config_dir.path()).unwrap();
    assert_eq!(
        outputs_of(&best_model_path(whole.path()), config_dir.path(), &f),
        outputs_of(&best_model_path(killed.path()), config_dir.path(), &f)
    );
}

/// The tiny feature set as `encode` would leave it: each window flattened into one "embedding"
/// `[1, n_mels * n_frames]`, and each caption a bag of its words (a stand-in for a frozen text
/// encoder).
fn as_encoded(mut f: FeatureSet) -> FeatureSet {
    let [n, w, m, t] = f.mel_shape;
    f.mel_shape = [n, w, 1, m * t];
    let dim = f.vocab.len();
    let mut values = vec![0.0f32; f.captions.len() * dim];
    for j in 0..f.captions.len() {
        for &id in f.caption_tokens(j) {
            if id > 1 {
                values[j * dim + id as usize] += 1.0;
            }
        }
    }
    f.text_vectors = Some(pipeline_data::formats::TextVectors { dim, values });
    f
}

const FROZEN: &str = r#"
epochs = 3
batch_size = 8
lr = 3e-3
warmup_epochs = 0.5
threads = 1
[model]
audio = "frozen"
text = "frozen"
embed_dim = 16
frozen_text = { hidden = 16 }
"#;

#[test]
fn frozen_heads_learn_from_encoded_features_and_other_encoders_refuse_them() {
    let f = as_encoded(Synthetic::tiny().build());
    let dir = features_dir(&f);
    let node = run_kind(&TrainKind, FROZEN, &[("features", dir.path())]).unwrap();
    let m = metrics(node.out.path());
    let map10 = m["val"]["map10"].as_f64().unwrap();
    // 8 val clips: a random ranking gives mAP@10 ≈ 0.34.
    assert!(map10 > 0.4, "val mAP@10 {map10}");
    let emb = run_kind(
        &EmbedKind,
        "threads = 1",
        &[("model", node.out.path()), ("features", dir.path())],
    )
    .unwrap();
    let e = Embeddings::load(emb.out.path()).unwrap();
    assert_eq!(
        (e.n_clips(), e.n_captions(), e.dim),
        (f.clips.len(), f.captions.len(), 16)
    );

    let err = run_kind(&TrainKind, TINY, &[("features", dir.path())])
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("set `model.text = \"frozen\"`"),
        "{err:#}"
    );
    let plain = features_dir(&Synthetic::tiny().build());
    let err = run_kind(&TrainKind, FROZEN, &[("features", plain.path())])
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("bind `features` to an `encode` node"),
        "{err:#}"
    );
}

#[test]
fn frozen_tables_are_refused_with_other_encoders() {
    let err = TrainKind
        .plan(
            &table("[model]\nfrozen_audio = { hidden = 8 }"),
            &InputCounts([("features".to_owned(), 1)].into()),
        )
        .err()
        .unwrap();
    assert_eq!(err.key.as_deref(), Some("model.frozen_audio"), "{err}");
    assert!(
        err.to_string().contains("`model.audio` is \"cnn\""),
        "{err}"
    );
}
