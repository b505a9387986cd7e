//! The `train`, `distill` and `embed` kinds end to end on a tiny synthetic feature set, run
//! through `plan` and `run` as the executor does.

use std::path::{Path, PathBuf};

use pipeline_api::{InputCounts, Registry, SilentReporter, StageKind};
use pipeline_formats::{ClipWindows, Embeddings, FeatureSet, Table, TeacherEmbeddings};
use pipeline_learn::kinds::{DistillKind, EmbedKind, TrainKind};

mod common;

use common::fixtures::Synthetic;
use common::{Recorder, features_dir, run_kind, run_kind_reporting, table};

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
    let train_clips = f.split_clips(pipeline_formats::Split::Train);
    let train_caps = f.split_captions(pipeline_formats::Split::Train);
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
fn train_draws_several_feature_sources_by_weight_and_fine_tunes_from_init() {
    let clotho_like = Synthetic::tiny().build();
    // A second source with one caption per clip (its 4 validation clips are left out).
    let one_caption = Synthetic {
        train_clips: 40,
        val_clips: 4,
        captions_per_clip: 1,
        seed: 9,
        ..Synthetic::tiny()
    }
    .build();
    let (a, b) = (features_dir(&clotho_like), features_dir(&one_caption));
    let params = TINY.replace("[model]", "source_weights = [1.0, 0.5]\n[model]");
    let log = Recorder::default();
    let node = run_kind_reporting(
        &TrainKind,
        &params,
        &[("features", a.path()), ("features", b.path())],
        &log,
    )
    .unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(node.out.path().join("train_config.json")).unwrap())
            .unwrap();
    // 48 rows of the first source and half of the second's 40: 68 rows, batches of 8.
    assert_eq!(config["steps_per_epoch"], 9, "{config}");
    let logs = log.logs().join("\n");
    assert!(
        logs.contains("source 1 `features-node-1`: 40 captions (train split), weight 0.5"),
        "{logs}"
    );
    assert!(
        logs.contains("68 training pairs per epoch from 2 source(s)"),
        "{logs}"
    );
    assert!(metrics(node.out.path())["val"]["map10"].as_f64().unwrap() > 0.4);

    // Fine-tuning the pre-trained model on the first source alone starts where it ended: its
    // first epoch's loss is below that of a fresh model's first epoch.
    let tuning = "epochs = 1\nbatch_size = 8\nlr = 1e-3\nthreads = 1";
    let tuned = run_kind(
        &TrainKind,
        tuning,
        &[("features", a.path()), ("init", node.out.path())],
    )
    .unwrap();
    let fresh = run_kind(
        &TrainKind,
        &TINY.replace("epochs = 3", "epochs = 1"),
        &[("features", a.path())],
    )
    .unwrap();
    let first_loss = |dir: &Path| {
        Table::open(&dir.join("curves.parquet"))
            .unwrap()
            .f64s("train_loss")
            .unwrap()[0]
    };
    let (tuned_loss, fresh_loss) = (first_loss(tuned.out.path()), first_loss(fresh.out.path()));
    assert!(
        tuned_loss < fresh_loss,
        "fine-tuned {tuned_loss} vs fresh {fresh_loss}"
    );
    assert_eq!(
        std::fs::read(tuned.out.path().join("model.json")).unwrap(),
        std::fs::read(node.out.path().join("model.json")).unwrap(),
        "the init model's architecture"
    );
    let with_init = InputCounts([("features".to_owned(), 1), ("init".to_owned(), 1)].into());
    let err = TrainKind
        .plan(&table("[model]\nembed_dim = 8"), &with_init)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model") && err.contains("init"), "{err}");

    // The weights are checked against the inputs before anything runs.
    let counts = InputCounts([("features".to_owned(), 2)].into());
    for (weights, message) in [
        ("[1.0]", "lists 1 weights for 2"),
        ("[0.0, 0.0]", "cannot all be 0"),
        ("[1.0, -1.0]", "source_weights[1]"),
    ] {
        let err = TrainKind
            .plan(&table(&format!("source_weights = {weights}")), &counts)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source_weights") && err.contains(message),
            "{weights}: {err}"
        );
    }
    // One source drawn twice per epoch: 96 rows, 12 batches of 8.
    let twice = TINY
        .replace("epochs = 3", "epochs = 1")
        .replace("[model]", "source_weights = [2.0]\n[model]");
    let doubled = run_kind(&TrainKind, &twice, &[("features", a.path())]).unwrap();
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(doubled.out.path().join("train_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["steps_per_epoch"], 12, "{config}");

    // Weights of 1 are the default: one key for both spellings.
    let plan = |params: &str| TrainKind.plan(&table(params), &counts).unwrap().params;
    assert_eq!(plan("source_weights = [1.0, 1.0]"), plan(""));
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
    f.mel = ClipWindows::in_memory(f.mel_shape(), vec![f32::NAN; f.mel.to_vec().unwrap().len()]);
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
    // Refused when planning, naming the key and the value.
    let counts = InputCounts([("features".into(), 1)].into());
    for lr in ["1e30", "1e6", "2.0"] {
        let err = TrainKind
            .plan(&table(&format!("lr = {lr}\nfinal_lr = 0.0")), &counts)
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("lr"), "{err}");
        assert!(err.message.contains("must be in (0, 1]"), "{err}");
    }
    // And a training that is given one anyway (as an accepted rate could on other data) fails
    // with what happened and what to try, instead of publishing a collapsed model.
    let f = Synthetic::tiny().build();
    let params = TINY
        .replace("lr = 3e-3", "lr = 1e6\nfinal_lr = 0.0")
        .replace("warmup_epochs = 0.5", "warmup_epochs = 0.0");
    let err = train_unchecked(&f, &params).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("the training diverged"), "{msg}");
    assert!(msg.contains("have collapsed"), "{msg}");
    assert!(msg.contains("lower `lr` (now 1e6)"), "{msg}");
}

/// Runs [`pipeline_learn::train::train`] on `f` with `params` parsed but not range-checked
/// (what `plan` would refuse).
fn train_unchecked(
    f: &FeatureSet,
    params: &str,
) -> anyhow::Result<pipeline_learn::train::TrainSummary> {
    use pipeline_learn::losses::Objective;
    use pipeline_learn::params::TrainParams;
    use pipeline_learn::train::{TrainJob, train};
    let p: TrainParams = pipeline_api::parse_params::<TrainParams>(&table(params)).unwrap();
    let optim = p.optim();
    let model = p
        .model
        .clone()
        .canonical()
        .unwrap()
        .resolve(&optim, f, None)?;
    let scratch = tempfile::tempdir()?;
    train(&TrainJob {
        node: "t",
        features: f,
        sources: Vec::new(),
        optim,
        model,
        init: None,
        pretrained: Default::default(),
        objective: Objective::Contrastive,
        fingerprint: serde_json::json!({"test": "unchecked"}),
        compute: pipeline_learn::device::resolve(pipeline_learn::params::DeviceChoice::Cpu, None)?,
        scratch_dir: scratch.path(),
        reporter: &SilentReporter,
        stop_after: None,
    })
}

#[test]
fn out_of_range_parameters_are_refused_at_plan_time_naming_the_key() {
    let counts = InputCounts([("features".into(), 1)].into());
    let refused = |params: &str, key: &str, what: &str| {
        let err = TrainKind.plan(&table(params), &counts).unwrap_err();
        assert_eq!(err.key.as_deref(), Some(key), "{params}: {err}");
        assert!(err.message.contains(what), "{params}: {err}");
    };
    refused("tau = 1e-30", "tau", "must be in [0.001, 10] (got 1e-30)");
    refused("tau = 50.0", "tau", "must be in [0.001, 10]");
    refused("lr = 0.0", "lr", "must be in (0, 1]");
    refused("weight_decay = 5.0", "weight_decay", "must be in [0, 1]");
    refused("weight_decay = -0.1", "weight_decay", "must be in [0, 1]");
    refused("epochs = 0", "epochs", "at least 1");
    refused("batch_size = 1", "batch_size", "at least 2");
    refused(
        "epochs = 2\nwarmup_epochs = 3.0",
        "warmup_epochs",
        "between 0 and `epochs`",
    );
    refused("[model.cnn]\ndropout = 1.0", "model.cnn.dropout", "[0, 1)");
    refused(
        "epochs = 20\nwarmup_epochs = 1.0\ndecay_epochs = 21.0",
        "decay_epochs",
        "between `warmup_epochs` and `epochs`",
    );
    refused(
        "warmup_epochs = 2.0\ndecay_epochs = 1.0",
        "decay_epochs",
        "between `warmup_epochs` and `epochs`",
    );
    // The edges and the paper's recipe plan.
    for ok in [
        "epochs = 20\ndecay_epochs = 15.0\ndrop_last = true",
        "lr = 1.0",
        "tau = 0.001",
        "tau = 10.0",
        "weight_decay = 1.0",
        "tau = 0.05",
    ] {
        TrainKind.plan(&table(ok), &counts).unwrap();
    }
    let counts = InputCounts(
        [
            ("features".into(), 1),
            ("init".into(), 3),
            ("correspondences".into(), 1),
        ]
        .into(),
    );
    let err = DistillKind
        .plan(&table("lambda_dist = 1e3"), &counts)
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("lambda_dist"), "{err}");
    let err = DistillKind
        .plan(&table("lambda_sup = -1.0"), &counts)
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("lambda_sup"), "{err}");
    let err = DistillKind
        .plan(&table("tau = 1e-30"), &counts)
        .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("tau"), "{err}");
    DistillKind
        .plan(&table("lambda_sup = 1.0\nlambda_dist = 0.0"), &counts)
        .unwrap();
}

/// Every `train`, `distill`, `embed` and `encode` stage of the shipped pipeline files plans with
/// the range checks (each matrix value in turn).
#[test]
fn shipped_pipelines_plan() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("pipeline.toml")];
    let mut others: Vec<PathBuf> = std::fs::read_dir(root.join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    others.sort();
    files.extend(others);
    let mut registry = Registry::default();
    pipeline_learn::register(&mut registry);
    let mut planned = 0;
    for file in &files {
        let config: toml::Table = toml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let stages = config["stages"].as_table().unwrap();
        for (name, stage) in stages {
            let Some(kind) = registry.get(stage["kind"].as_str().unwrap()) else {
                continue;
            };
            let inputs: std::collections::BTreeMap<String, usize> = stage
                .get("inputs")
                .and_then(|i| i.as_table())
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| (k.clone(), v.as_array().map_or(1, Vec::len)))
                        .collect()
                })
                .unwrap_or_default();
            let params = stage
                .get("params")
                .and_then(|p| p.as_table())
                .cloned()
                .unwrap_or_default();
            let matrix = stage.get("matrix").and_then(|m| m.as_table());
            let mut variants = vec![params.clone()];
            for (key, values) in matrix.into_iter().flatten() {
                variants = values
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|v| {
                        variants.iter().map(move |p| {
                            let mut p = p.clone();
                            p.insert(key.clone(), v.clone());
                            p
                        })
                    })
                    .collect();
            }
            for p in variants {
                kind.plan(&p, &InputCounts(inputs.clone()))
                    .unwrap_or_else(|e| panic!("{}: stage `{name}`: {e}", file.display()));
                planned += 1;
            }
        }
    }
    assert!(planned >= 20, "only {planned} nodes planned");
}

#[test]
fn two_trainings_of_one_key_publish_identical_bytes() {
    let f = Synthetic::tiny().build();
    let dir = features_dir(&f);
    let params = TINY.replace("epochs = 3", "epochs = 2");
    let a = run_kind(&TrainKind, &params, &[("features", dir.path())]).unwrap();
    let b = run_kind(&TrainKind, &params, &[("features", dir.path())]).unwrap();
    let files = assert_same_files(a.out.path(), b.out.path());
    for f in [
        "model.mpk",
        "metrics.json",
        "curves.parquet",
        "train_config.json",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} not written: {files:?}");
    }
    // The record still loads, with the numbers of the trained model.
    assert_eq!(
        model_outputs(a.out.path(), &f),
        model_outputs(b.out.path(), &f)
    );

    // Distillation too (here: from its own embeddings).
    let emb = run_kind(
        &EmbedKind,
        "threads = 1",
        &[("model", a.out.path()), ("features", dir.path())],
    )
    .unwrap();
    let e = Embeddings::load(emb.out.path()).unwrap();
    let corr = self_teacher(&f, &e);
    let distill = |_: u8| {
        run_kind(
            &DistillKind,
            "epochs = 1\nbatch_size = 8\nlr = 1e-3\nthreads = 1",
            &[
                ("features", dir.path()),
                ("init", a.out.path()),
                ("correspondences", corr.path()),
            ],
        )
        .unwrap()
    };
    let (da, db) = (distill(0), distill(1));
    assert_same_files(da.out.path(), db.out.path());
}

/// Asserts that directories `a` and `b` hold the same files with the same bytes; returns the
/// file names.
fn assert_same_files(a: &Path, b: &Path) -> Vec<String> {
    let names = |d: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let files = names(a);
    assert_eq!(files, names(b));
    for f in &files {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        let differing = x.iter().zip(&y).filter(|(p, q)| p != q).count();
        assert!(
            x == y,
            "`{f}` differs between two runs of one key: {} vs {} bytes, {differing} differ",
            x.len(),
            y.len()
        );
    }
    files
}

/// A `correspondences` artifact whose single teacher is `e` on the train split.
fn self_teacher(f: &FeatureSet, e: &Embeddings) -> tempfile::TempDir {
    let train_clips = f.split_clips(pipeline_formats::Split::Train);
    let train_caps = f.split_captions(pipeline_formats::Split::Train);
    let teachers = TeacherEmbeddings {
        teachers: 1,
        dim: e.dim,
        audio: train_clips
            .iter()
            .flat_map(|&i| e.audio_row(i).to_vec())
            .collect(),
        text: train_caps
            .iter()
            .flat_map(|&j| e.text_row(j).to_vec())
            .collect(),
        clip_index: train_clips,
        caption_index: train_caps,
    };
    let corr = tempfile::tempdir().unwrap();
    teachers.save(corr.path()).unwrap();
    corr
}

#[test]
fn timings_are_measured_not_written() {
    let f = Synthetic::tiny().build();
    let dir = features_dir(&f);
    let recorder = Recorder::default();
    let params = TINY.replace("epochs = 3", "epochs = 1");
    let node =
        run_kind_reporting(&TrainKind, &params, &[("features", dir.path())], &recorder).unwrap();
    let out = node.out.path();
    for name in [
        "steps_per_second",
        "train_seconds",
        "wall_seconds",
        "seconds_per_epoch",
        "threads",
        "resumed_epochs",
    ] {
        assert!(
            recorder.measurement(name).is_some(),
            "`{name}` not measured: {:?}",
            recorder.measured()
        );
    }
    assert!(recorder.measurement("steps_per_second").unwrap() > 0.0);
    assert!(recorder.measurement("train_seconds").unwrap() > 0.0);
    // No timing, throughput or thread count in what is published.
    fn keys(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        if let Some(map) = v.as_object() {
            for (k, v) in map {
                out.push(format!("{prefix}{k}"));
                keys(v, &format!("{prefix}{k}."), out);
            }
        }
    }
    for file in ["metrics.json", "train_config.json"] {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(file)).unwrap()).unwrap();
        let mut all = Vec::new();
        keys(&v, "", &mut all);
        let timing: Vec<&String> = all
            .iter()
            // (`params` are the node's parameters: part of its key.)
            .filter(|k| !k.starts_with("params."))
            .filter(|k| {
                ["second", "per_s", "time", "threads", "resumed"]
                    .iter()
                    .any(|t| k.to_lowercase().contains(t))
            })
            .collect();
        assert!(timing.is_empty(), "{file} has {timing:?}");
    }
    let curves = pipeline_formats::read_parquet(&out.join("curves.parquet")).unwrap();
    let columns: Vec<String> = curves
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        columns,
        [
            "epoch",
            "step",
            "train_loss",
            "lr",
            "val_map10",
            "val_r1",
            "val_r5",
            "val_r10"
        ]
    );
}

#[test]
fn validation_at_chance_fails_naming_chance_and_what_to_try() {
    // 40 validation clips whose captions carry no class word: nothing links them to their clips.
    let mut shape = Synthetic::tiny();
    shape.val_clips = 40;
    let mut f = shape.build();
    let filler = 2 + shape.classes as i64;
    let l = f.max_tokens;
    for j in f.split_captions(pipeline_formats::Split::Val) {
        for t in &mut f.tokens[j * l..(j + 1) * l] {
            if (2..filler).contains(t) {
                *t = filler;
            }
        }
    }
    let dir = features_dir(&f);
    let err = run_kind(&TrainKind, TINY, &[("features", dir.path())])
        .err()
        .unwrap();
    let msg = format!("{err:#}");
    assert!(msg.contains("stayed at chance level"), "{msg}");
    assert!(msg.contains("40 validation clips"), "{msg}");
    assert!(msg.contains("train longer (`epochs` now 3)"), "{msg}");
    // The same set with its class words trains.
    let healthy = features_dir(&shape.build());
    run_kind(&TrainKind, TINY, &[("features", healthy.path())]).unwrap();
}

/// Audio and text embeddings of every clip/caption by a saved model.
fn outputs_of(record: &Path, config_dir: &Path, f: &FeatureSet) -> Vec<f32> {
    use burn::prelude::*;
    use pipeline_learn::embedding::{embed_captions, embed_clips, load_config, load_record};
    let device = Device::flex();
    let config = load_config(config_dir).unwrap();
    let model = load_record(config.init(&device, 0), record).unwrap();
    let clips: Vec<usize> = (0..f.clips.len()).collect();
    let caps: Vec<usize> = (0..f.captions.len()).collect();
    let mut v = embed_clips(&model, f, &clips, 16, &device).unwrap();
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
    assert!(
        std::fs::read(a.out.path().join("model.mpk")).unwrap()
            == std::fs::read(b.out.path().join("model.mpk")).unwrap(),
        "model.mpk differs between two trainings with one seed"
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
fn killed_or_streamed_training_gives_the_uninterrupted_in_memory_result() {
    use pipeline_learn::losses::Objective;
    use pipeline_learn::params::TrainParams;
    use pipeline_learn::train::{STOPPED, TrainJob, best_model_path, train};

    let f = Synthetic::tiny().build();
    let params = TINY.replace("epochs = 3", "epochs = 2");
    let p: TrainParams = pipeline_api::parse_params::<TrainParams>(&table(&params))
        .unwrap()
        .canonical(1)
        .unwrap();
    let optim = p.optim();
    let model = p.model.resolve(&optim, &f, None).unwrap();
    let compute = pipeline_learn::device::resolve(optim.device, None).unwrap();
    fn make_job<'a>(
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
            sources: Vec::new(),
            optim: optim.clone(),
            model: model.clone(),
            init: None::<PathBuf>,
            pretrained: Default::default(),
            objective: Objective::Contrastive,
            fingerprint: serde_json::json!({"test": "resume"}),
            compute: compute.clone(),
            scratch_dir: scratch,
            reporter: &SilentReporter,
            stop_after,
        }
    }
    let job = |scratch, stop| make_job(&f, &optim, &model, &compute, scratch, stop);
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
    assert!(
        std::fs::read(best_model_path(whole.path())).unwrap()
            == std::fs::read(best_model_path(killed.path())).unwrap(),
        "the resumed training's record differs from the uninterrupted one's"
    );

    // Streamed from shards of four clips (eight files), the training draws the same batches and
    // ends in the same record as the in-memory one.
    let dir = tempfile::tempdir().unwrap();
    let clip_bytes = f.clip_len() * 4;
    f.mel
        .save(
            &dir.path().join(pipeline_formats::WINDOWS_DIR),
            &f.window_mask,
            4 * clip_bytes,
        )
        .unwrap();
    f.save_tables(dir.path()).unwrap();
    let sharded = FeatureSet::load(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("windows"))
            .unwrap()
            .count(),
        8 + 1,
        "eight shards and the index"
    );
    let streamed_dir = tempfile::tempdir().unwrap();
    let streamed_job = make_job(
        &sharded,
        &optim,
        &model,
        &compute,
        streamed_dir.path(),
        None,
    );
    let streamed = train(&streamed_job).unwrap();
    assert_eq!(losses(&uninterrupted), losses(&streamed));
    assert!(
        std::fs::read(best_model_path(whole.path())).unwrap()
            == std::fs::read(best_model_path(streamed_dir.path())).unwrap(),
        "the streamed training's record differs from the in-memory one's"
    );
}

/// The tiny feature set as `encode` would leave it: each window flattened into one "embedding"
/// `[1, n_mels * n_frames]`, and each caption a bag of its words (a stand-in for a frozen text
/// encoder).
fn as_encoded(mut f: FeatureSet) -> FeatureSet {
    let [n, w, m, t] = f.mel_shape();
    f.mel = ClipWindows::in_memory([n, w, 1, m * t], f.mel.to_vec().unwrap());
    let dim = f.vocab.len();
    let mut values = vec![0.0f32; f.captions.len() * dim];
    for j in 0..f.captions.len() {
        for &id in f.caption_tokens(j) {
            if id > 1 {
                values[j * dim + id as usize] += 1.0;
            }
        }
    }
    f.text_vectors = Some(pipeline_formats::TextVectors { dim, values });
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
