//! The stage kinds: `train` (Stage 1), `distill` (Stage 2) and `embed`.

use std::ops::Range;
use std::path::Path;

use anyhow::{Context, ensure};
use pipeline_api::{
    InputArtifact, InputCounts, ParamError, Plan, Resources, RunContext, StageKind, parse_params,
};
use pipeline_formats::{Combined, Embeddings, FeatureSet, TeacherEmbeddings, combine};
use serde_json::json;

use crate::device::{resolve, wants_gpu, with_threads};
use crate::embedding::{
    MODEL_FILE, embed_captions, embed_clips, load_config, load_model, save_config,
};
use crate::losses::Objective;
use crate::models::DualEncoderConfig;
use crate::outputs::{metrics_json, plot_curves, write_curves};
use crate::params::{
    DeviceChoice, DistillParams, EmbedParams, OptimParams, TrainParams, pretrained_path,
};
use crate::train::{PretrainedEncoders, TrainJob, best_model_path, train};

fn resources(threads: Option<usize>, device: DeviceChoice) -> Resources {
    Resources {
        threads: threads.unwrap_or(Resources::ALL_CORES.threads),
        gpu: wants_gpu(device),
    }
}

fn load_features(ctx: &RunContext<'_>) -> anyhow::Result<FeatureSet> {
    let dir = ctx.input("features")?;
    FeatureSet::load(dir).with_context(|| format!("node `{}`: loading the features", ctx.node))
}

/// What a training reads: its features and, when they combine several sources, each source's
/// caption rows and weight (see [`TrainJob::sources`]).
struct TrainingSet {
    features: FeatureSet,
    sources: Vec<(Range<usize>, f64)>,
}

impl TrainingSet {
    /// The `features` inputs of `ctx`: one as it is, several combined (the first whole, the
    /// others' train splits) with `weights` (empty: 1 each).
    fn load(ctx: &RunContext<'_>, weights: &[f64]) -> anyhow::Result<Self> {
        let inputs = ctx.inputs("features");
        if inputs.len() == 1 {
            // One source may still be drawn partly or repeatedly per epoch.
            let features = load_features(ctx)?;
            let sources = weights
                .first()
                .map(|&w| vec![(0..features.captions.len(), w)])
                .unwrap_or_default();
            return Ok(Self { features, sources });
        }
        let name = |k: usize| {
            inputs[k]
                .node
                .clone()
                .unwrap_or_else(|| inputs[k].path.display().to_string())
        };
        let sets = (0..inputs.len())
            .map(|k| {
                FeatureSet::load(&inputs[k].path).with_context(|| {
                    format!("node `{}`: loading the features of `{}`", ctx.node, name(k))
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let Combined { features, captions } = combine(sets).with_context(|| {
            format!(
                "node `{}`: combining the features of {}",
                ctx.node,
                (0..inputs.len())
                    .map(|k| format!("`{}`", name(k)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let sources: Vec<_> = captions
            .into_iter()
            .enumerate()
            .map(|(k, range)| (range, weights.get(k).copied().unwrap_or(1.0)))
            .collect();
        for (k, (range, weight)) in sources.iter().enumerate() {
            ctx.reporter.log(&format!(
                "source {k} `{}`: {} captions{}, weight {weight}",
                name(k),
                range.len(),
                if k == 0 {
                    " (all splits; validation is its own)"
                } else {
                    " (train split)"
                }
            ));
        }
        Ok(Self { features, sources })
    }
}

/// Trains and writes every output of a `train`/`distill` node.
fn run_training(
    ctx: &RunContext<'_>,
    kind: &str,
    optim: OptimParams,
    data: &TrainingSet,
    (model, pretrained): (DualEncoderConfig, PretrainedEncoders),
    init: Option<&Path>,
    objective: Objective<&TeacherEmbeddings>,
) -> anyhow::Result<()> {
    let features = &data.features;
    let compute = resolve(optim.device, ctx.gpu)?;
    let threads = optim
        .threads
        .unwrap_or(ctx.threads)
        .min(ctx.threads.max(1))
        .max(1);
    // `checkpoint`: the layout of the scratch checkpoint (2: positional parameter ids, the kept
    // model's embedding spread); a checkpoint of another layout is not resumed.
    let fingerprint = json!({ "kind": kind, "checkpoint": 2, "params": ctx.params, "model": &model, "mel_shape": features.mel_shape() });
    let job = TrainJob {
        node: ctx.node,
        features,
        sources: data.sources.clone(),
        optim: optim.clone(),
        model: model.clone(),
        init: init.map(Path::to_path_buf),
        pretrained,
        objective,
        fingerprint,
        compute: compute.clone(),
        scratch_dir: ctx.scratch_dir,
        reporter: ctx.reporter,
        stop_after: None,
    };
    let summary = with_threads(threads, || train(&job))??;
    // Measurements of this run, not outputs: they differ between two runs of one key, so they
    // go to the manifest and never into a hashed file.
    let r = ctx.reporter;
    r.measure("threads", threads as f64);
    r.measure("resumed_epochs", summary.resumed_epochs as f64);
    r.measure("train_seconds", summary.train_seconds);
    r.measure("wall_seconds", summary.wall_seconds);
    r.measure("steps_per_second", summary.steps_per_second);
    r.measure(
        "seconds_per_epoch",
        summary.wall_seconds / summary.curves.len().max(1) as f64,
    );
    let out = ctx.out_dir;
    fs_err::copy(best_model_path(ctx.scratch_dir), out.join(MODEL_FILE))?;
    save_config(&model, out)?;
    write_curves(&out.join("curves.parquet"), &summary.curves)?;
    plot_curves(&out.join("curves.png"), &summary.curves)?;
    let train_config = json!({
        "kind": kind,
        "params": ctx.params,
        "model": &model,
        "device": compute.name,
        "features": { "mel_shape": features.mel_shape(), "max_tokens": features.max_tokens, "vocab_size": features.vocab.len() },
        "steps_per_epoch": summary.steps_per_epoch,
    });
    fs_err::write(
        out.join("train_config.json"),
        serde_json::to_vec_pretty(&train_config)?,
    )?;
    ctx.write_metrics(&metrics_json(&summary, compute.name))?;
    Ok(())
}

/// `train`: Stage 1, contrastive training of a dual encoder with `L_sup`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TrainKind;

impl StageKind for TrainKind {
    fn name(&self) -> &'static str {
        "train"
    }

    fn summary(&self) -> &'static str {
        "Stage 1: trains a dual encoder with L_sup on the features' train split (of several sources, or from an `init` model to fine-tune); keeps the best model by validation mAP@10"
    }

    fn version(&self) -> u32 {
        // 2: no timings in `metrics.json`, `curves.parquet` and `train_config.json`;
        // positional parameter ids in `model.mpk` (byte-identical for identical trainings).
        // 3: the CNN's convolutions as gathered im2col products (other rounding in the last bits);
        // dropout masks from 32-bit draws. 4: flex's kernels at AVX2 at most (AVX-512 hosts
        // summed in other orders: the same key held other bytes there). 5: the transformer's
        // linear layers as one product over all tokens (its weight gradients round otherwise).
        5
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        // `features` may bind several sources (pre-training on several data sets); `init`, a
        // model to fine-tune (its architecture and parameters).
        inputs.expect(&["features"], &["pretrained", "init"])?;
        inputs.expect_single("pretrained")?;
        if inputs.0.contains_key("init") {
            let refuse = |key: &str| {
                Err(ParamError::at(
                    key,
                    "a training from `init` keeps the `init` model's architecture and parameters; remove it",
                ))
            };
            if params.contains_key("model") {
                return refuse("model");
            }
            if inputs.0.contains_key("pretrained") {
                return refuse("inputs.pretrained");
            }
        }
        let n_sources = inputs.0.get("features").copied().unwrap_or(1);
        let p = parse_params::<TrainParams>(params)?.canonical(n_sources)?;
        let bound = inputs.0.contains_key("pretrained");
        let weights = p.model.weights();
        if let Some((key, _)) = weights.iter().find(|(_, w)| w.is_some() && !bound) {
            return Err(ParamError::at(
                key,
                "names a file of the input `pretrained`, which is not bound",
            ));
        }
        if bound && weights.iter().all(|(_, w)| w.is_none()) {
            return Err(ParamError::at(
                "model",
                "the input `pretrained` is bound but no `model.yamnet.weights` or `model.bert.weights` uses it",
            ));
        }
        Plan::new(&p, resources(p.threads, p.device))
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let p: TrainParams = ctx.params()?;
        let data = TrainingSet::load(ctx, &p.source_weights)?;
        let optim = p.optim();
        if !ctx.inputs("init").is_empty() {
            let init = select_init(ctx)?;
            let model = init_config(ctx, init, &optim)?;
            let record = init.join(MODEL_FILE);
            return run_training(
                ctx,
                self.name(),
                optim,
                &data,
                (model, PretrainedEncoders::default()),
                Some(&record),
                Objective::Contrastive,
            );
        }
        let pretrained = ctx.optional_input("pretrained")?;
        let model = p.model.resolve(&optim, &data.features, pretrained)?;
        let [(yamnet_key, yamnet), (bert_key, bert)] = p.model.weights();
        let pretrained = PretrainedEncoders {
            yamnet: yamnet
                .map(|w| pretrained_path(pretrained, Some(w), yamnet_key))
                .transpose()?,
            bert: bert
                .map(|w| pretrained_path(pretrained, Some(w), bert_key))
                .transpose()?,
        };
        run_training(
            ctx,
            self.name(),
            optim,
            &data,
            (model, pretrained),
            None,
            Objective::Contrastive,
        )
    }
}

/// `distill`: Stage 2, training from estimated correspondences (parameter transfer from `init`).
#[derive(Debug, Default, Clone, Copy)]
pub struct DistillKind;

impl StageKind for DistillKind {
    fn name(&self) -> &'static str {
        "distill"
    }

    fn summary(&self) -> &'static str {
        "Stage 2: fine-tunes a Stage-1 model on λ_sup·L_sup + λ_dist·L_dist with targets from the teachers' estimated correspondences"
    }

    fn version(&self) -> u32 {
        // 2: as `train` 2 (no timings, positional parameter ids in `model.mpk`). 3, 4, 5: as
        // `train` 3, 4, 5.
        5
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(&["features", "init", "correspondences"], &[])?;
        // `init` may bind several Stage-1 models: the best by validation mAP@10 is used.
        for name in ["features", "correspondences"] {
            inputs.expect_single(name)?;
        }
        let p = parse_params::<DistillParams>(params)?.canonical()?;
        Plan::new(&p, resources(p.threads, p.device))
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let p: DistillParams = ctx.params()?;
        let data = TrainingSet::load(ctx, &[])?;
        let init = select_init(ctx)?;
        let model = init_config(ctx, init, &p.optim())?;
        let teachers = TeacherEmbeddings::load(ctx.input("correspondences")?)
            .with_context(|| format!("node `{}`: loading the teachers' embeddings", ctx.node))?;
        let objective = Objective::distillation(&p, &teachers);
        let init_record = init.join(MODEL_FILE);
        run_training(
            ctx,
            self.name(),
            p.optim(),
            &data,
            (model, PretrainedEncoders::default()),
            Some(&init_record),
            objective,
        )
    }
}

/// The architecture of the `init` model for a training that starts from its parameters, with
/// this training's τ.
fn init_config(
    ctx: &RunContext<'_>,
    init: &Path,
    optim: &OptimParams,
) -> anyhow::Result<DualEncoderConfig> {
    let mut model = load_config(init)
        .with_context(|| format!("node `{}`: reading the `init` model", ctx.node))?;
    ensure!(
        model.learnable_tau == optim.learnable_tau,
        "node `{}`: `learnable_tau = {}` but the `init` model was trained with `learnable_tau = {}`\n\
         hint: parameter transfer needs the same parameters; set `learnable_tau = {}`",
        ctx.node,
        optim.learnable_tau,
        model.learnable_tau,
        model.learnable_tau
    );
    model.tau = optim.tau;
    Ok(model)
}

/// The `init` model for parameter transfer: with several candidates (e.g. every Stage-1
/// member), the one with the highest validation mAP@10 in its `metrics.json` (the first on ties),
/// so that choosing the student's starting point never looks at the test split.
fn select_init<'a>(ctx: &'a RunContext<'_>) -> anyhow::Result<&'a Path> {
    let candidates = ctx.inputs("init");
    if candidates.len() == 1 {
        return Ok(&candidates[0].path);
    }
    let mut best: Option<(&InputArtifact, f64)> = None;
    for candidate in candidates {
        let map10 = pipeline_eval::compare::validation_map10(&candidate.path)?;
        if best.is_none_or(|(_, b)| map10 > b) {
            best = Some((candidate, map10));
        }
    }
    let (chosen, map10) = best.context("input `init` binds no model")?;
    let name = chosen.node.as_deref().unwrap_or("?");
    ctx.reporter.log(&format!(
        "init: `{name}` (best validation mAP@10 of {} candidates: {map10:.4})",
        candidates.len()
    ));
    Ok(&chosen.path)
}

/// `embed`: L2-normalised embeddings of every clip and caption of the features.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmbedKind;

impl StageKind for EmbedKind {
    fn name(&self) -> &'static str {
        "embed"
    }

    fn summary(&self) -> &'static str {
        "Embeds every clip and caption of the features with a trained model (evaluation mode)"
    }

    fn version(&self) -> u32 {
        // 2: the CNN's convolutions as im2col products (other rounding in the last bits).
        // 3: as `train` 4 (flex's kernels at AVX2 at most). 4: as `train` 5 (linear layers as
        // one product over all tokens).
        4
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(&["model", "features"], &[])?;
        inputs.expect_single("model")?;
        inputs.expect_single("features")?;
        let p = parse_params::<EmbedParams>(params)?.canonical()?;
        Plan::new(&p, resources(p.threads, p.device))
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let p: EmbedParams = ctx.params()?;
        let features = load_features(ctx)?;
        let compute = resolve(p.device, ctx.gpu)?;
        let model_dir = ctx.input("model")?;
        let threads = p
            .threads
            .unwrap_or(ctx.threads)
            .min(ctx.threads.max(1))
            .max(1);
        let embeddings = with_threads(threads, || -> anyhow::Result<Embeddings> {
            let (model, config) = load_model(model_dir, &compute.device).with_context(|| {
                format!(
                    "node `{}`: loading the model from `{}`",
                    ctx.node,
                    model_dir.display()
                )
            })?;
            let clips: Vec<usize> = (0..features.clips.len()).collect();
            let captions: Vec<usize> = (0..features.captions.len()).collect();
            let step = ctx.reporter.step("embedding", 2);
            let audio = embed_clips(&model, &features, &clips, p.batch_size, &compute.device)?;
            step.inc(1);
            let text = embed_captions(&model, &features, &captions, p.batch_size, &compute.device);
            step.inc(1);
            Ok(Embeddings {
                dim: config.embed_dim,
                audio,
                text,
            })
        })??;
        embeddings.save(ctx.out_dir)?;
        ctx.write_metrics(&json!({
            "n_clips": embeddings.n_clips(),
            "n_captions": embeddings.n_captions(),
            "dim": embeddings.dim,
        }))?;
        Ok(())
    }
}
