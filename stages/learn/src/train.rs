//! The training loop shared by `train` (Stage 1, `L_sup`) and `distill` (Stage 2,
//! `λ_sup L_sup + λ_dist L_dist`).
//!
//! Rows are the (clip, caption) pairs of the train split, shuffled per epoch from the seed.
//! AdamW (β 0.9/0.999, ε 1e-8), per-step learning rate: linear warm-up from 0, then cosine decay
//! to `final_lr`. After every epoch: validation mAP@10 (text → audio on the `val` split), the
//! best model kept, and a checkpoint (model, optimizer, best model, curves) written to the
//! scratch directory, so that a killed run resumes after its last finished epoch. All randomness
//! is drawn from the seed, so a run is reproducible (and a resumed run equals an uninterrupted
//! one) on the CPU. Wall-clock timings are kept out of the results ([`TrainSummary`] carries them
//! for the caller to report as measurements).
//!
//! A run that diverges fails instead of publishing a useless model: a non-finite loss stops it at
//! once; after the last epoch, a kept model whose validation embeddings have collapsed
//! ([`Spread::collapsed`]) or whose best validation mAP@10 is not above chance
//! ([`chance_verdict`]) fails it, with a message that says what to change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use pipeline_api::Reporter;
use pipeline_formats::{FeatureSet, Split, TeacherEmbeddings};
use serde::{Deserialize, Serialize};

use crate::batches::{
    Row, Source, batches_per_epoch, epoch_batches, epoch_rng, epoch_rows, prefetch, rows,
    rows_per_epoch, text_input,
};
use crate::device::Compute;
use crate::embedding::{embed_captions, embed_clips, load_record, save_record};
use crate::losses::{Objective, scalar, similarity};
use crate::models::layers::canonical_ids;
use crate::models::yamnet::load_yamnet;
use crate::models::{AudioEncoder, DualEncoder, DualEncoderConfig, TextEncoder, TextEncoderConfig};
use crate::params::{OptimParams, number};
use crate::pretrained::bert::load_bert_with;

/// One training run.
pub struct TrainJob<'a> {
    pub node: &'a str,
    pub features: &'a FeatureSet,
    /// With several sources combined in `features`: the rows of each source's captions and how
    /// much of it an epoch draws ([`Source`]). Empty: one source of weight 1.
    pub sources: Vec<(std::ops::Range<usize>, f64)>,
    pub optim: OptimParams,
    pub model: DualEncoderConfig,
    /// Parameters to start from (parameter transfer), else a fresh initialisation from the seed.
    pub init: Option<PathBuf>,
    /// Pretrained encoders that replace the fresh initialisation (not used with `init`).
    pub pretrained: PretrainedEncoders,
    /// The loss; distillation's `C_hat` comes from the teachers' embeddings.
    pub objective: Objective<&'a TeacherEmbeddings>,
    /// Identifies the run: a checkpoint with another fingerprint is ignored.
    pub fingerprint: serde_json::Value,
    pub compute: Compute,
    pub scratch_dir: &'a Path,
    pub reporter: &'a dyn Reporter,
    /// Stop (with an error) once this many epochs are done, as if the process had been killed:
    /// lets the tests exercise resuming. `None` in the stage kinds.
    pub stop_after: Option<usize>,
}

/// Pretrained encoder weights to start a fresh model from.
#[derive(Debug, Clone, Default)]
pub struct PretrainedEncoders {
    /// YAMNet's ONNX model (for a `Yamnet` audio encoder).
    pub yamnet: Option<PathBuf>,
    /// A Hugging Face BERT folder (for a `Bert` text encoder).
    pub bert: Option<PathBuf>,
}

impl PretrainedEncoders {
    /// `model` with its encoders replaced by the pretrained ones.
    pub fn apply(
        &self,
        mut model: DualEncoder,
        config: &DualEncoderConfig,
        device: &Device,
    ) -> anyhow::Result<DualEncoder> {
        if let Some(path) = &self.yamnet {
            let mut yamnet = load_yamnet(path, device)?;
            // The AudioSet classifier plays no part in the embeddings.
            yamnet.classifier = None;
            model.audio = AudioEncoder::Yamnet(yamnet);
        }
        if let Some(dir) = &self.bert {
            let TextEncoderConfig::Bert(bert) = &config.text else {
                bail!("pretrained BERT weights given for a text encoder that is not BERT");
            };
            model.text = TextEncoder::Bert(
                load_bert_with(dir, bert, device)
                    .with_context(|| format!("loading BERT from `{}`", dir.display()))?,
            );
        }
        Ok(model)
    }
}

/// The error [`train`] returns when [`TrainJob::stop_after`] stops it.
pub const STOPPED: &str = "training stopped on request";

/// Validation retrieval scores (text → audio), as fractions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValScores {
    pub map10: f64,
    pub r1: f64,
    pub r5: f64,
    pub r10: f64,
}

/// One row of `curves.parquet` (one per epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveRow {
    pub epoch: usize,
    /// Optimizer steps done at the end of the epoch.
    pub step: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Validation scores (absent when the features have no `val` split).
    pub val: Option<ValScores>,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Epoch (1-based) of the kept model.
    pub best_epoch: usize,
    pub best_val: Option<ValScores>,
    pub curves: Vec<CurveRow>,
    /// Optimizer steps per second of training (validation excluded). A measurement of the run,
    /// not a result: report it with [`Reporter::measure`], never in an output file.
    pub steps_per_second: f64,
    /// Wall-clock seconds of the training steps (validation excluded), summed over resumed runs.
    pub train_seconds: f64,
    /// Wall-clock seconds of the epochs, validation included, summed over resumed runs.
    pub wall_seconds: f64,
    pub steps_per_epoch: usize,
    /// Epochs restored from a checkpoint rather than trained by this call.
    pub resumed_epochs: usize,
}

/// How spread out a set of L2-normalised embeddings is: what tells a collapsed model (every
/// input mapped to one point, or to a handful) from a trained or even an untrained one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Rows (clips or captions).
    pub rows: usize,
    /// Distinct inputs among them (distinct token sequences or caption vectors for captions;
    /// clips count as distinct).
    pub distinct_inputs: usize,
    /// Distinct embeddings, comparing values rounded to multiples of [`Spread::RESOLUTION`].
    pub distinct: usize,
    /// Total variance: mean squared distance of the rows to their centroid (`1 - |centroid|²`
    /// for unit rows; 0 when all rows are equal, `1 - 1/rows` for orthogonal ones).
    pub variance: f64,
    /// Rows holding a NaN or an infinite value.
    pub non_finite: usize,
}

impl Spread {
    /// Values closer than this count as equal when counting distinct embeddings.
    pub const RESOLUTION: f32 = 1e-4;
    /// Below this total variance the rows sit within about 0.01 of one point (a 0.6° cone).
    /// Measured on the tiny test models: 0.09–0.5 at initialisation and after a healthy
    /// training; 1e-15 after `lr = 1e6` (every caption one embedding), down to 1e-5 after
    /// `lr = 1` or `0.3`, whose rankings are then the same for every query.
    pub const MIN_VARIANCE: f64 = 1e-4;
    /// Fewer distinct embeddings than `distinct_inputs / MAX_MERGE` (and at most
    /// [`Spread::FEW`]) is a collapse.
    pub const MAX_MERGE: usize = 4;
    /// The number of distinct embeddings that counts as "a handful".
    pub const FEW: usize = 16;

    /// The spread of `rows` embeddings `[rows, dim]` (row-major) of `distinct_inputs` distinct
    /// inputs.
    pub fn of(values: &[f32], dim: usize, distinct_inputs: usize) -> Self {
        let dim = dim.max(1);
        let rows = values.len() / dim;
        let mut keys = std::collections::HashSet::new();
        let mut centroid = vec![0.0f64; dim];
        let mut squares = 0.0f64;
        let mut non_finite = 0;
        let mut finite = 0usize;
        for row in values.chunks_exact(dim) {
            if row.iter().any(|x| !x.is_finite()) {
                non_finite += 1;
                continue;
            }
            finite += 1;
            keys.insert(
                row.iter()
                    .map(|x| (x / Self::RESOLUTION).round() as i64)
                    .collect::<Vec<_>>(),
            );
            for (c, &x) in centroid.iter_mut().zip(row) {
                *c += x as f64;
            }
            squares += row.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
        }
        let n = finite.max(1) as f64;
        let centroid_sq: f64 = centroid.iter().map(|c| (c / n) * (c / n)).sum();
        Self {
            rows,
            distinct_inputs,
            distinct: keys.len(),
            variance: (squares / n - centroid_sq).max(0.0),
            non_finite,
        }
    }

    /// Whether the embeddings have collapsed: any non-finite row; or (with at least two
    /// distinct inputs) rows all within a tiny distance of one point ([`Spread::MIN_VARIANCE`]),
    /// or at most a handful ([`Spread::FEW`]) of distinct embeddings for more than
    /// [`Spread::MAX_MERGE`] times as many distinct inputs. An untrained model passes: its
    /// embeddings are similar but not equal.
    pub fn collapsed(&self) -> bool {
        if self.non_finite > 0 {
            return true;
        }
        if self.distinct_inputs < 2 {
            return false;
        }
        self.variance < Self::MIN_VARIANCE
            || (self.distinct <= Self::FEW
                && self.distinct * Self::MAX_MERGE < self.distinct_inputs)
    }

    /// "the 80 validation captions have 3 distinct embeddings (of 80 distinct inputs), total
    /// variance 2.1e-9" (`what`: "validation captions").
    pub fn describe(&self, what: &str) -> String {
        let mut s = format!(
            "the {} {what} have {} distinct embeddings (of {} distinct inputs), total variance {:.1e}",
            self.rows, self.distinct, self.distinct_inputs, self.variance
        );
        if self.non_finite > 0 {
            s.push_str(&format!(", {} of them NaN or infinite", self.non_finite));
        }
        s
    }
}

/// Spread of the audio and the text embeddings the model gives the checked items.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spreads {
    pub audio: Spread,
    pub text: Spread,
    /// Whether the items are the `val` split's (else the first training clips and captions).
    pub val: bool,
}

/// What [`validate`] measures after an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validation {
    /// Text → audio retrieval on the `val` split (`None` without one).
    pub scores: Option<ValScores>,
    /// Clips and caption queries of the `val` split.
    pub clips: usize,
    pub queries: usize,
    /// Spread of the embeddings (of the `val` split, or of up to [`SPREAD_ITEMS`] training
    /// clips and captions without one).
    pub spreads: Spreads,
}

/// Items whose embeddings are checked for a collapse when there is no `val` split.
pub const SPREAD_ITEMS: usize = 256;

/// Fewest validation clips for judging whether the validation mAP@10 is above chance.
pub const MIN_CHANCE_CLIPS: usize = 20;

/// Standard deviations (of the chance mean over the validation queries) that the best
/// validation mAP@10 must exceed chance by.
pub const CHANCE_SIGMAS: f64 = 3.0;

/// Whether a best validation mAP@10 of `map10` over `queries` caption queries of `clips` clips
/// is at chance level: `Some((chance, threshold))` when it is not above `threshold` = chance +
/// [`CHANCE_SIGMAS`] standard deviations of the chance mean over the queries; `None` when it is
/// above, or when there are fewer than [`MIN_CHANCE_CLIPS`] clips (too few to tell).
pub fn chance_verdict(map10: f64, clips: usize, queries: usize) -> Option<(f64, f64)> {
    if clips < MIN_CHANCE_CLIPS || queries == 0 {
        return None;
    }
    let (chance, sd) = pipeline_eval::metrics::chance_map10(clips);
    let threshold = chance + CHANCE_SIGMAS * sd / (queries as f64).sqrt();
    (map10 <= threshold || !map10.is_finite()).then_some((chance, threshold))
}

/// The checkpoint's `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    fingerprint: serde_json::Value,
    epochs_done: usize,
    step: usize,
    best_epoch: usize,
    best_val: Option<ValScores>,
    /// Spread of the kept model's embeddings.
    #[serde(default)]
    best_spreads: Option<Spreads>,
    /// Size of the `val` split (clips, caption queries).
    #[serde(default)]
    val_size: (usize, usize),
    /// Epochs (1-based) whose embeddings had collapsed.
    #[serde(default)]
    collapsed_epochs: Vec<usize>,
    curves: Vec<CurveRow>,
    train_seconds: f64,
    wall_seconds: f64,
}

const CHECKPOINT_DIR: &str = "checkpoint";
const STATE_FILE: &str = "state.json";
const OPTIMIZER_FILE: &str = "optimizer.mpk";
const LAST_MODEL_FILE: &str = "last.mpk";
const BEST_MODEL_FILE: &str = "best.mpk";

/// The per-step learning rate: linear warm-up from 0 over `warmup` steps, then a cosine from
/// `lr` down to `final_lr`, reached at step `decay_end - 1` and kept after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub warmup: usize,
    pub decay_end: usize,
    pub lr: f64,
    pub final_lr: f64,
}

impl Schedule {
    /// The schedule of `o` for `steps_per_epoch` (the decay ends at the last step unless
    /// `decay_epochs` says otherwise).
    pub fn new(o: &OptimParams, steps_per_epoch: usize) -> Self {
        let steps = |epochs: f64| (epochs * steps_per_epoch as f64).round() as usize;
        Self {
            warmup: steps(o.warmup_epochs),
            decay_end: o.decay_epochs.map_or(steps_per_epoch * o.epochs, steps),
            lr: o.lr,
            final_lr: o.final_lr,
        }
    }

    /// Learning rate of 0-based `step`.
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self
            .decay_end
            .saturating_sub(self.warmup)
            .saturating_sub(1)
            .max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        self.final_lr
            + 0.5 * (self.lr - self.final_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Distinct caption inputs among `captions` (rows of the features): token sequences, or caption
/// vectors for frozen text features.
fn distinct_captions(features: &FeatureSet, captions: &[usize]) -> usize {
    let mut seen = std::collections::HashSet::new();
    for &j in captions {
        let key: Vec<i64> = match &features.text_vectors {
            Some(v) => v.values[j * v.dim..(j + 1) * v.dim]
                .iter()
                .map(|x| i64::from(x.to_bits()))
                .collect(),
            None => features.caption_tokens(j).to_vec(),
        };
        seen.insert(key);
    }
    seen.len()
}

/// Text → audio retrieval on the `val` split (none without one) and the spread of the
/// embeddings (of the `val` split, or of the first [`SPREAD_ITEMS`] training clips and
/// captions).
pub fn validate(
    model: &DualEncoder,
    features: &FeatureSet,
    device: &Device,
) -> anyhow::Result<Validation> {
    let clips = features.split_clips(Split::Val);
    let captions = features.split_captions(Split::Val);
    if clips.is_empty() || captions.is_empty() {
        let mut clips = features.split_clips(Split::Train);
        let mut captions = features.split_captions(Split::Train);
        clips.truncate(SPREAD_ITEMS);
        captions.truncate(SPREAD_ITEMS);
        let audio = embed_clips(model, features, &clips, 64, device)?;
        let text = embed_captions(model, features, &captions, 256, device);
        let dim = audio.len() / clips.len().max(1);
        return Ok(Validation {
            scores: None,
            clips: 0,
            queries: 0,
            spreads: Spreads {
                audio: Spread::of(&audio, dim, clips.len()),
                text: Spread::of(&text, dim, distinct_captions(features, &captions)),
                val: false,
            },
        });
    }
    let local: HashMap<usize, usize> = clips.iter().enumerate().map(|(k, &c)| (c, k)).collect();
    let relevant = captions
        .iter()
        .map(|&j| local.get(&features.captions[j].clip_index).copied())
        .collect::<Option<Vec<_>>>()
        .context("a validation caption's clip is not in the validation split")?;
    let audio = embed_clips(model, features, &clips, 64, device)?;
    let text = embed_captions(model, features, &captions, 256, device);
    let dim = audio.len() / clips.len();
    let n = clips.len();
    // Ranked in blocks of captions, so that memory is `VAL_BLOCK × clips` whatever the
    // split's size (the whole matrix was 205 MB for 3,200 clips × 16,000 captions).
    let mut ranks = Vec::with_capacity(captions.len());
    for (texts, rel) in text.chunks(VAL_BLOCK * dim).zip(relevant.chunks(VAL_BLOCK)) {
        let sim = pipeline_eval::metrics::dot_matrix(texts, &audio, dim);
        ranks.extend(pipeline_eval::metrics::text_to_audio_ranks(&sim, n, rel));
    }
    let s = pipeline_eval::metrics::scores_from_ranks(&ranks);
    Ok(Validation {
        scores: Some(ValScores {
            map10: s.map10,
            r1: s.r1,
            r5: s.r5,
            r10: s.r10,
        }),
        clips: n,
        queries: captions.len(),
        spreads: Spreads {
            audio: Spread::of(&audio, dim, n),
            text: Spread::of(&text, dim, distinct_captions(features, &captions)),
            val: true,
        },
    })
}

/// Validation captions ranked at once.
const VAL_BLOCK: usize = 1024;

/// Maps feature rows to the teachers' split-local rows.
struct TeacherIndex<'a> {
    teachers: &'a TeacherEmbeddings,
    clip: HashMap<usize, usize>,
    caption: HashMap<usize, usize>,
}

impl<'a> TeacherIndex<'a> {
    fn new(teachers: &'a TeacherEmbeddings, train_rows: &[Row]) -> anyhow::Result<Self> {
        let clip: HashMap<usize, usize> = teachers
            .clip_index
            .iter()
            .enumerate()
            .map(|(k, &c)| (c, k))
            .collect();
        let caption: HashMap<usize, usize> = teachers
            .caption_index
            .iter()
            .enumerate()
            .map(|(k, &c)| (c, k))
            .collect();
        let missing = train_rows
            .iter()
            .filter(|r| !clip.contains_key(&r.clip) || !caption.contains_key(&r.caption))
            .count();
        if missing > 0 {
            bail!(
                "the correspondences cover {} clips and {} captions, but {missing} training pairs are not among them\n\
                 hint: `distill` needs correspondences estimated on the train split of the same features",
                clip.len(),
                caption.len()
            );
        }
        Ok(Self {
            teachers,
            clip,
            caption,
        })
    }

    /// `C_hat [b, b]` for the batch (audio of row i, caption of row j).
    fn c_hat(&self, batch: &[Row], device: &Device) -> Tensor<2> {
        let b = batch.len();
        let mut out = Vec::with_capacity(b * b);
        for ri in batch {
            for rj in batch {
                out.push(
                    self.teachers
                        .estimate(self.clip[&ri.clip], self.caption[&rj.caption]),
                );
            }
        }
        Tensor::from_data(TensorData::new(out, [b, b]), device)
    }
}

fn optimizer(optim: &OptimParams) -> ModuleOptimizer {
    let mut config = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(optim.weight_decay as f32);
    if let Some(c) = optim.grad_clip {
        config = config.with_grad_clipping(Some(
            burn::grad_clipping::GradientClippingConfig::Norm(c as f32),
        ));
    }
    config.init()
}

fn read_state(dir: &Path) -> Option<State> {
    let bytes = std::fs::read(dir.join(STATE_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes a checkpoint directory next to the current one, then swaps it in.
fn write_checkpoint(
    scratch: &Path,
    state: &State,
    model: &DualEncoder,
    optim: &ModuleOptimizer,
    best: Option<&DualEncoder>,
) -> anyhow::Result<()> {
    let dir = scratch.join(CHECKPOINT_DIR);
    let tmp = scratch.join("checkpoint.tmp");
    let old = scratch.join("checkpoint.old");
    let _ = std::fs::remove_dir_all(&tmp);
    fs_err::create_dir_all(&tmp)?;
    save_record(model, &tmp.join(LAST_MODEL_FILE))?;
    optim
        .save(tmp.join(OPTIMIZER_FILE))
        .map_err(|e| anyhow::anyhow!("saving the optimizer state: {e}"))?;
    match best {
        Some(best) => save_record(best, &tmp.join(BEST_MODEL_FILE))?,
        None => {
            fs_err::copy(dir.join(BEST_MODEL_FILE), tmp.join(BEST_MODEL_FILE))?;
        }
    }
    fs_err::write(tmp.join(STATE_FILE), serde_json::to_vec_pretty(state)?)?;
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        fs_err::rename(&dir, &old)?;
    }
    fs_err::rename(&tmp, &dir)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// `rows` split into the sources of `spans` (caption rows, weight); no spans: one source.
fn training_sources(rows: &[Row], spans: &[(std::ops::Range<usize>, f64)]) -> Vec<Source> {
    if spans.is_empty() {
        return vec![Source {
            rows: rows.to_vec(),
            weight: 1.0,
        }];
    }
    spans
        .iter()
        .map(|(captions, weight)| Source {
            rows: rows
                .iter()
                .filter(|r| captions.contains(&r.caption))
                .copied()
                .collect(),
            weight: *weight,
        })
        .collect()
}

/// Runs the training; the best model is left at [`best_model_path`]`(scratch_dir)`.
pub fn train(job: &TrainJob<'_>) -> anyhow::Result<TrainSummary> {
    let features = job.features;
    let o = &job.optim;
    let device = job.compute.device.clone();
    let ad = device.clone().autodiff();
    let train_rows = rows(features, Split::Train);
    let sources = training_sources(&train_rows, &job.sources);
    let n_rows = rows_per_epoch(&sources);
    if n_rows < 2 {
        bail!(
            "the features' train split gives {n_rows} captions per epoch; training needs at least 2"
        );
    }
    // Distillation looks its teachers' rows up once per run.
    let objective = match job.objective {
        Objective::Contrastive => Objective::Contrastive,
        Objective::Distillation {
            teachers,
            lambda_sup,
            lambda_dist,
        } => Objective::Distillation {
            teachers: TeacherIndex::new(teachers, &train_rows)?,
            lambda_sup,
            lambda_dist,
        },
    };
    let batch_size = o.batch_size.min(n_rows);
    let steps_per_epoch = batches_per_epoch(n_rows, batch_size, o.drop_last);
    let schedule = Schedule::new(o, steps_per_epoch);

    // Fresh start or resume. Parameter ids are positional (`canonical_ids`) so that the saved
    // records are a function of the weights; the optimizer's state is keyed by the same ids.
    let fresh = || -> anyhow::Result<DualEncoder> {
        let model = job.model.init(&ad, o.seed);
        let model = match &job.init {
            Some(path) => load_record(model, path)?,
            None => job.pretrained.apply(model, &job.model, &ad)?,
        };
        Ok(canonical_ids(model))
    };
    let checkpoint = job.scratch_dir.join(CHECKPOINT_DIR);
    let (mut model, mut optim, mut state) =
        match read_state(&checkpoint).filter(|s| s.fingerprint == job.fingerprint) {
            Some(state) => {
                let model = load_record(
                    job.model.init(&ad, o.seed),
                    &checkpoint.join(LAST_MODEL_FILE),
                )?;
                let optim = optimizer(o)
                    .load(checkpoint.join(OPTIMIZER_FILE))
                    .map_err(|e| anyhow::anyhow!("reading the optimizer checkpoint: {e}"))?;
                job.reporter.log(&format!(
                    "resuming after epoch {} of {} from the checkpoint",
                    state.epochs_done, o.epochs
                ));
                (model, optim, state)
            }
            None => {
                let _ = std::fs::remove_dir_all(&checkpoint);
                let state = State {
                    fingerprint: job.fingerprint.clone(),
                    epochs_done: 0,
                    step: 0,
                    best_epoch: 0,
                    best_val: None,
                    best_spreads: None,
                    val_size: (0, 0),
                    collapsed_epochs: Vec::new(),
                    curves: Vec::new(),
                    train_seconds: 0.0,
                    wall_seconds: 0.0,
                };
                (fresh()?, optimizer(o), state)
            }
        };
    let resumed_epochs = state.epochs_done;
    job.reporter.log(&format!(
        "{n_rows} training pairs per epoch from {} source(s), batch {batch_size}, {steps_per_epoch} steps per epoch, {} epochs, device {}",
        sources.len(),
        o.epochs,
        job.compute.name
    ));

    for epoch in state.epochs_done..o.epochs {
        let started = Instant::now();
        let progress = job.reporter.step(
            &format!("epoch {}/{}", epoch + 1, o.epochs),
            steps_per_epoch as u64,
        );
        let mut noise_rng = epoch_rng(o.seed, epoch, 2);
        let mut loss_sum = 0.0;
        let mut lr = 0.0;
        let rows = epoch_rows(&sources, o.seed, epoch);
        let batches = epoch_batches(&rows, batch_size, o.seed, epoch, o.drop_last);
        // The clips of the next batches are read from the shards while a step runs.
        model = std::thread::scope(|scope| -> anyhow::Result<_> {
            let mut model = model;
            let audio_batches = prefetch(scope, features, &batches);
            for ((k, batch), audio) in batches.iter().enumerate().zip(audio_batches) {
                lr = schedule.at(state.step);
                let clips: Vec<usize> = batch.iter().map(|r| r.clip).collect();
                let captions: Vec<usize> = batch.iter().map(|r| r.caption).collect();
                let (mel, mask) = audio
                    .with_context(|| format!("node `{}`: reading a batch", job.node))?
                    .tensors(&ad);
                let text_batch = text_input(features, &captions, &ad);
                let mut noise = Some(&mut noise_rng);
                let audio = model.embed_audio(mel, mask, &mut noise);
                let text = model.embed_text(text_batch, &mut noise);
                let sim = similarity(audio, text);
                let scale = model.logit_scale(&ad);
                let loss = objective.loss(sim, scale, &clips, |index| index.c_hat(batch, &ad));
                let value = scalar(loss.clone());
                if !value.is_finite() {
                    bail!(
                        "node `{}`: the training diverged: the training loss is {value} at epoch {} step {} (global step {}, lr {lr:.3e})\n\
                         hint: lower `lr` (now {}), set `grad_clip`{}, or check the features for NaN/infinite values",
                        job.node,
                        epoch + 1,
                        k + 1,
                        state.step + 1,
                        number(o.lr),
                        o.grad_clip
                            .map_or(String::new(), |c| format!(" (now {})", number(c))),
                    );
                }
                loss_sum += value;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(lr, model, grads);
                state.step += 1;
                progress.inc(1);
                progress.set_message(&format!("loss {value:.4}"));
            }
            Ok(model)
        })?;
        drop(progress);
        let train_secs = started.elapsed().as_secs_f64();
        let validation = validate(&model.valid(), features, &device)?;
        let val = validation.scores;
        state.train_seconds += train_secs;
        state.wall_seconds += started.elapsed().as_secs_f64();
        let train_loss = loss_sum / batches.len().max(1) as f64;
        let improved = match (val, state.best_val) {
            (Some(v), Some(b)) => v.map10 > b.map10,
            (Some(_), None) => true,
            (None, _) => true, // no validation split: keep the last epoch
        };
        if improved {
            state.best_epoch = epoch + 1;
            state.best_val = val;
            state.best_spreads = Some(validation.spreads);
        }
        state.val_size = (validation.clips, validation.queries);
        let Spreads {
            audio,
            text,
            val: on_val,
        } = validation.spreads;
        if audio.collapsed() || text.collapsed() {
            state.collapsed_epochs.push(epoch + 1);
            let items = if on_val { "validation" } else { "training" };
            job.reporter.log(&format!(
                "epoch {}: the embeddings have collapsed: {}; {}",
                epoch + 1,
                audio.describe(&format!("{items} clips")),
                text.describe(&format!("{items} captions"))
            ));
        }
        state.epochs_done = epoch + 1;
        state.curves.push(CurveRow {
            epoch: epoch + 1,
            step: state.step,
            train_loss,
            lr,
            val,
        });
        job.reporter.log(&format!(
            "epoch {}: loss {train_loss:.4}, val mAP@10 {}, {:.1} steps/s",
            epoch + 1,
            val.map_or("n/a".to_owned(), |v| format!("{:.4}", v.map10)),
            batches.len() as f64 / train_secs.max(1e-9)
        ));
        write_checkpoint(
            job.scratch_dir,
            &state,
            &model,
            &optim,
            improved.then_some(&model),
        )?;
        if job.stop_after == Some(state.epochs_done) && state.epochs_done < o.epochs {
            bail!(STOPPED);
        }
    }

    judge(job, &state)?;
    Ok(TrainSummary {
        best_epoch: state.best_epoch,
        best_val: state.best_val,
        steps_per_second: state.step as f64 / state.train_seconds.max(1e-9),
        train_seconds: state.train_seconds,
        wall_seconds: state.wall_seconds,
        curves: state.curves,
        steps_per_epoch,
        resumed_epochs,
    })
}

/// Fails a finished training whose kept model has collapsed embeddings or whose best validation
/// mAP@10 stayed at chance level.
fn judge(job: &TrainJob<'_>, state: &State) -> anyhow::Result<()> {
    let o = &job.optim;
    let lr_hint = format!(
        "lower `lr` (now {}), raise `warmup_epochs` (now {}) or set `grad_clip`{}",
        number(o.lr),
        number(o.warmup_epochs),
        o.grad_clip
            .map_or(String::new(), |c| format!(" (now {})", number(c)))
    );
    if let Some(Spreads { audio, text, val }) = state.best_spreads {
        let items = if val { "validation" } else { "training" };
        let mut collapsed = Vec::new();
        if audio.collapsed() {
            collapsed.push(audio.describe(&format!("{items} clips")));
        }
        if text.collapsed() {
            collapsed.push(text.describe(&format!("{items} captions")));
        }
        if !collapsed.is_empty() {
            bail!(
                "node `{}`: the training diverged: the embeddings of the kept model (epoch {} of {}) have collapsed: {}\n\
                 hint: {lr_hint}{}",
                job.node,
                state.best_epoch,
                o.epochs,
                collapsed.join("; "),
                if job.model.learnable_tau {
                    format!(
                        ", or fix τ (`learnable_tau = false`, `tau` now {})",
                        number(o.tau)
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    if !state.collapsed_epochs.is_empty() {
        job.reporter.warn(&format!(
            "node `{}`: the embeddings collapsed after epoch(s) {:?} of {}; the kept model (epoch {}) has not, but the training is unstable: {lr_hint}",
            job.node, state.collapsed_epochs, o.epochs, state.best_epoch
        ));
    }
    let (clips, queries) = state.val_size;
    if let Some(best) = state.best_val
        && let Some((chance, threshold)) = chance_verdict(best.map10, clips, queries)
    {
        bail!(
            "node `{}`: the validation mAP@10 stayed at chance level: best {:.4} (epoch {} of {}), where a random ranking of the {clips} validation clips gives {chance:.4} on average (needs > {threshold:.4} over {queries} queries)\n\
             hint: train longer (`epochs` now {}), try another `lr` (now {}; lower it if the training loss jumps, raise it if the loss barely moves), \
             or check that the features' captions describe their clips",
            job.node,
            best.map10,
            state.best_epoch,
            o.epochs,
            o.epochs,
            number(o.lr),
        );
    }
    Ok(())
}

/// Where [`train`] leaves the best model.
pub fn best_model_path(scratch_dir: &Path) -> PathBuf {
    scratch_dir.join(CHECKPOINT_DIR).join(BEST_MODEL_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(warmup: usize, decay_end: usize) -> Schedule {
        Schedule {
            warmup,
            decay_end,
            lr: 1.0,
            final_lr: 0.1,
        }
    }

    #[test]
    fn the_schedule_warms_up_decays_by_cosine_and_stays_flat() {
        let s = schedule(4, 9);
        // Warm-up from 0: steps 0..3 reach lr at the last one.
        assert_eq!(s.at(0), 0.25);
        assert_eq!(s.at(3), 1.0);
        // Cosine over steps 4..8 (span 4): halfway at step 6, final at step 8, flat after.
        assert_eq!(s.at(4), 1.0);
        assert!((s.at(6) - 0.55).abs() < 1e-12, "{}", s.at(6));
        assert!((s.at(8) - 0.1).abs() < 1e-12);
        assert_eq!(s.at(8), s.at(50));
    }

    #[test]
    fn the_published_schedule_ends_its_decay_at_epoch_15_of_20() {
        let defaults = toml::Table::new();
        let mut o = pipeline_api::parse_params::<crate::params::TrainParams>(&defaults)
            .unwrap()
            .optim();
        (o.epochs, o.warmup_epochs, o.lr, o.final_lr) = (20, 1.0, 2e-5, 1e-7);
        let default = Schedule::new(&o, 10);
        assert_eq!((default.warmup, default.decay_end), (10, 200));
        assert!(default.at(149) > 1e-7 * 10.0, "still decaying at epoch 15");
        assert!((default.at(199) - 1e-7).abs() < 1e-15);
        o.decay_epochs = Some(15.0);
        let paper = Schedule::new(&o, 10);
        assert_eq!(paper.decay_end, 150);
        assert!((paper.at(149) - 1e-7).abs() < 1e-15);
        assert_eq!(paper.at(149), paper.at(199), "flat from epoch 15");
        assert_eq!(paper.at(5), default.at(5), "the same warm-up");
    }
    use rand::{RngExt, SeedableRng};

    fn unit(v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn spread_tells_a_collapse_from_similar_embeddings() {
        let dim = 8;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let random: Vec<f32> = (0..40)
            .flat_map(|_| unit((0..dim).map(|_| rng.random::<f32>() - 0.5).collect()))
            .collect();
        let s = Spread::of(&random, dim, 40);
        assert_eq!((s.rows, s.distinct, s.non_finite), (40, 40, 0));
        assert!(s.variance > 0.5 && !s.collapsed(), "{s:?}");
        // Similar but distinct (an untrained encoder): a common direction plus 10 % noise.
        let similar: Vec<f32> = (0..40)
            .flat_map(|_| {
                unit(
                    (0..dim)
                        .map(|k| {
                            if k == 0 {
                                1.0
                            } else {
                                0.1 * (rng.random::<f32>() - 0.5)
                            }
                        })
                        .collect(),
                )
            })
            .collect();
        assert!(!Spread::of(&similar, dim, 40).collapsed());
        // One point.
        let one: Vec<f32> = random[..dim].repeat(40);
        let s = Spread::of(&one, dim, 40);
        assert_eq!(s.distinct, 1);
        assert!(s.variance < 1e-12 && s.collapsed(), "{s:?}");
        // ... unless the inputs are one input too.
        assert!(!Spread::of(&one, dim, 1).collapsed());
        // A handful of points for many distinct inputs, far apart: still a collapse.
        let few: Vec<f32> = (0..40)
            .flat_map(|i| random[(i % 3) * dim..(i % 3 + 1) * dim].to_vec())
            .collect();
        let s = Spread::of(&few, dim, 40);
        assert_eq!(s.distinct, 3);
        assert!(s.variance > 0.1 && s.collapsed(), "{s:?}");
        // Three distinct inputs, three embeddings: fine.
        assert!(!Spread::of(&few, dim, 3).collapsed());
        // NaN.
        let mut nan = random.clone();
        nan[3] = f32::NAN;
        let s = Spread::of(&nan, dim, 40);
        assert_eq!(s.non_finite, 1);
        assert!(s.collapsed());
        assert!(s.describe("validation clips").contains("1 of them NaN"));
    }

    #[test]
    fn chance_needs_enough_clips_and_a_margin() {
        // Too few clips to tell.
        assert_eq!(chance_verdict(0.0, MIN_CHANCE_CLIPS - 1, 100), None);
        // 100 clips, 500 queries: chance 0.029, three standard deviations of the mean 0.016.
        let (chance, threshold) = chance_verdict(0.03, 100, 500).unwrap();
        assert!((chance - 0.0293).abs() < 1e-4, "{chance}");
        assert!((threshold - 0.0456).abs() < 1e-3, "{threshold}");
        assert!(chance_verdict(0.05, 100, 500).is_none());
        assert!(chance_verdict(f64::NAN, 100, 500).is_some());
    }
}
