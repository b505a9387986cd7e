//! Kind `correspondences`: the teachers' estimated audio–caption correspondences for every
//! (clip, caption) pair of one split, as a Parquet table, plus the teachers' embeddings of the
//! split for Stage-2 training (`teachers.safetensors`) and their agreement with the ground truth.
//!
//! # `correspondences.parquet` schema (stable; version 1)
//!
//! One row per (clip, caption) pair of the split, `n_clips × n_captions` rows, clip-major: all
//! captions of the split's first clip (in caption-row order), then the second clip, and so on.
//! Each row group holds whole clips (about `row_group_rows` pairs).
//!
//! At scale (`table = "top_k"`) the table holds, per clip, only its `top_k` captions of highest
//! estimate, its annotated captions and the captions that have the clip among their `top_k`
//! clips: the same columns and order, at most `n_clips × (top_k + annotated) + n_captions ×
//! top_k` rows. Every pair is still scored (the time grows with `n_clips × n_captions`), but
//! what is kept is linear. `table = "none"` writes no table (Stage 2 reads only
//! `teachers.safetensors`).
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `audio_index` | int64 | clip row in the features (`clips.parquet` `clip_index`) |
//! | `audio_id` | utf8 (dictionary-encoded) | `clip_id` |
//! | `audio_file` | utf8 (dictionary-encoded) | the clip's audio file, exactly as the features' `clips.parquet` holds it (relative to the data set's artifact directory; never joined with an input path) |
//! | `caption_index` | int64 | caption row in the features (`captions.parquet` `caption_index`) |
//! | `caption_id` | utf8 (dictionary-encoded) | `caption_id` |
//! | `caption` | utf8 (dictionary-encoded) | caption text, as written |
//! | `is_match` | bool | the pair is annotated in the data set (the caption was written for the clip) |
//! | `teacher_<m>` | float32 | cosine of teacher `m` (`m = 0..M-1`, in the order of the `teachers` input) |
//! | `estimate` | float32 | ensemble estimate `C_hat = 1/M Σ_m teacher_m` (mean of cosines, not of probabilities) |
//! | `p_caption_given_audio` | float32 | `softmax_j(C_hat[i, :] / τ)`: over **all captions of the split** |
//! | `p_audio_given_caption` | float32 | `softmax_i(C_hat[:, j] / τ)`: over **all clips of the split** |
//! | `relevance` | float32 | ground-truth graded relevance, 0 for pairs the ground truth omits |
//!
//! The two probability columns are present only with `with_probabilities = true` (default);
//! `relevance` only where the features carry `relevance.parquet`. Note that the probabilities
//! here are normalised over the whole split, whereas Stage 2 (`distill`) renormalises
//! `C_hat / τ` over the items of each batch; they describe the same estimate at a different scale.
//! The strings are dictionary-encoded in Parquet and read back as plain utf8 (the file carries
//! no embedded Arrow schema). Key-value metadata: `teachers` (JSON list of the teacher node
//! names, index `m` ↔ `teacher_<m>`; a teacher bound by an external path is named by the
//! path's last component), `split`, `tau`, `schema_version` (`1`). Nothing in the file depends
//! on where the project or its artifacts live.
//!
//! Memory stays bounded: the softmax normalisers (log-sum-exp per clip and per caption) are
//! computed in a first pass over blocks of clips; the second pass recomputes each block (one
//! matrix product per teacher) and writes it as one row group while the next block is
//! computed. A row group's columns are built as Arrow arrays a part of rows at a time and
//! encoded in parallel, the caption columns of a full table once for all row groups. The full
//! similarity matrix is never held, nor a whole row group's columns.
//!
//! # `metrics.json`
//! `pairs`, `clips`, `captions`, `teachers`; `rows` (with `table = "top_k"`);
//! `estimate_mean_match` / `estimate_mean_nonmatch` (over every pair; without a table: absent);
//! `p_caption_given_audio_on_matches` (mean over clips of the probability mass on the clip's
//! annotated captions); then for each scorer (`teacher_<m>`, `ensemble`, and, where ground truth
//! exists, `annotation`: the binary annotated-match indicator, i.e. what Stage 1 trains on):
//! `t2a_map10` / `t2a_r1` (retrieving each caption's annotated clip among the split's clips) and,
//! with ground truth, `spearman` (rank correlation with the true relevance over all pairs, or a
//! seeded uniform sample of [`SPEARMAN_MAX_PAIRS`] pairs when there are more) and `ndcg10`
//! (mean over captions with any relevant clip of nDCG@10 of the clips ranked by the scorer,
//! linear gains = relevance; ties by lower clip index, which matters for `annotation`).

use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, ensure};
use arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Float32Array, Int32Array, Int64Array, StringArray,
};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use pipeline_api::{InputCounts, ParamError, Plan, Resources, RunContext, StageKind, parse_params};
use pipeline_formats::{Embeddings, Split, TeacherEmbeddings};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::index::{SplitIndex, gather_normalised_into};
use crate::metrics;
use crate::parquet_writer::{EncodedRowGroup, ParallelWriter, SharedColumns};

mod agreement;

/// The correspondence table's file name.
pub const CORRESPONDENCES_FILE: &str = "correspondences.parquet";
/// Most pairs used for the Spearman correlation (a seeded uniform sample beyond).
pub const SPEARMAN_MAX_PAIRS: usize = 2_000_000;
/// Version of the Parquet schema written in the key-value metadata.
pub const SCHEMA_VERSION: u32 = 1;
/// Accepted softmax temperatures τ (as `train`'s): below 1e-3 the probabilities are one-hot in
/// float32, beyond 10 uniform.
pub const TAU_RANGE: (f64, f64) = (1e-3, 10.0);

/// Parameters of `correspondences`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrespondencesParams {
    /// Split whose (clip, caption) pairs are tabulated: `train` (default), `val` or `test`.
    #[serde(default = "default_split")]
    pub split: Split,
    /// Softmax temperature τ of the probability columns (the student's τ; default 0.05).
    #[serde(default = "default_tau")]
    pub tau: f64,
    /// Target number of rows per Parquet row group, rounded to whole clips (default 1,048,576).
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// Whether to compute `p_caption_given_audio` and `p_audio_given_caption` (default true;
    /// false skips the first pass and halves the run time).
    #[serde(default = "default_true")]
    pub with_probabilities: bool,
    /// Seed of the pair sample used for the Spearman correlation on large splits (default 0).
    #[serde(default)]
    pub seed: u64,
    /// Which pairs the table holds: `full` (default; every pair, for splits of Clotho's size),
    /// `top_k` (see [`TableForm::TopK`]) or `none` (no table: Stage 2 needs only
    /// `teachers.safetensors`).
    #[serde(default, skip_serializing_if = "TableForm::is_full")]
    pub table: TableForm,
    /// k of `table = "top_k"` (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// CPU threads (default: all the executor gives the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
}

/// The pairs of `correspondences.parquet`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableForm {
    /// Every (clip, caption) pair of the split.
    #[default]
    Full,
    /// Per clip: its k captions of highest estimate, its annotated captions, and every caption
    /// that has the clip among its k clips of highest estimate. Rows as in the full table
    /// (clip-major, captions in row order), with its columns and probabilities.
    TopK,
    /// No table.
    None,
}

impl TableForm {
    fn is_full(&self) -> bool {
        *self == TableForm::Full
    }
}

/// k of `table = "top_k"` where `top_k` is not set.
pub const DEFAULT_TOP_K: usize = 10;

fn default_split() -> Split {
    Split::Train
}
fn default_tau() -> f64 {
    0.05
}
fn default_row_group_rows() -> usize {
    1 << 20
}
fn default_true() -> bool {
    true
}

/// The `correspondences` stage kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Correspondences;

impl StageKind for Correspondences {
    fn name(&self) -> &'static str {
        "correspondences"
    }

    fn summary(&self) -> &'static str {
        "Ensemble-estimated correspondences of every (clip, caption) pair of a split (Parquet) and the teachers' embeddings for distillation"
    }

    fn version(&self) -> u32 {
        // 2: a teacher bound by an external path is named by its last component in the
        // `teachers` metadata, not by its absolute path. 3: cosines from matrix products
        // (other rounding in the last bits). 4: probabilities from one shared exp per pair
        // (other rounding in the last bit).
        4
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(&["teachers", "features"], &[])?;
        inputs.expect_single("features")?;
        if inputs.0.get("teachers") == Some(&0) {
            return Err(ParamError::at(
                "inputs.teachers",
                "needs at least one teacher",
            ));
        }
        let p: CorrespondencesParams = parse_params(params)?;
        if !(p.tau.is_finite() && (TAU_RANGE.0..=TAU_RANGE.1).contains(&p.tau)) {
            return Err(ParamError::at(
                "tau",
                format!(
                    "must be in [{}, {}] (got {:e}); the paper's τ is 0.05",
                    TAU_RANGE.0, TAU_RANGE.1, p.tau
                ),
            ));
        }
        if p.row_group_rows == 0 {
            return Err(ParamError::at("row_group_rows", "must be at least 1"));
        }
        let mut p = p;
        match (p.table, p.top_k) {
            (TableForm::TopK, None) => p.top_k = Some(DEFAULT_TOP_K),
            (TableForm::TopK, Some(0)) => {
                return Err(ParamError::at("top_k", "must be at least 1"));
            }
            (TableForm::Full | TableForm::None, Some(_)) => {
                return Err(ParamError::at(
                    "top_k",
                    "is only used with `table = \"top_k\"`",
                ));
            }
            _ => {}
        }
        if p.threads == Some(0) {
            return Err(ParamError::at("threads", "must be at least 1"));
        }
        let resources = Resources {
            threads: p.threads.unwrap_or(Resources::ALL_CORES.threads),
            ..Resources::ALL_CORES
        };
        Plan::new(&p, resources)
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let params: CorrespondencesParams = ctx.params()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads.clamp(1, 1024))
            .build()?;
        pool.install(|| run(ctx, &params))
    }
}

/// The split's teachers, gathered and normalised.
struct Teachers {
    names: Vec<String>,
    dim: usize,
    /// `[teachers, n_clips, dim]`: one buffer, as `teachers.safetensors` holds it (no copy).
    audio: Vec<f32>,
    /// `[teachers, n_captions, dim]`.
    text: Vec<f32>,
}

impl Teachers {
    /// Teacher `m`'s `[n_clips, dim]`.
    fn audio(&self, m: usize) -> &[f32] {
        let n = self.audio.len() / self.names.len();
        &self.audio[m * n..(m + 1) * n]
    }

    /// Teacher `m`'s `[n_captions, dim]`.
    fn text(&self, m: usize) -> &[f32] {
        let n = self.text.len() / self.names.len();
        &self.text[m * n..(m + 1) * n]
    }
}

fn load_teachers(ctx: &RunContext<'_>, index: &SplitIndex) -> anyhow::Result<Teachers> {
    let mut t = Teachers {
        names: Vec::new(),
        dim: 0,
        audio: Vec::new(),
        text: Vec::new(),
    };
    let artifacts = ctx.inputs("teachers");
    for (m, artifact) in artifacts.iter().enumerate() {
        let name = crate::input_label(artifact);
        // The rows are gathered from the file's bytes: one teacher's file in memory at a time,
        // not also a decoded copy of it.
        Embeddings::scan(&artifact.path, |dim, audio, text| {
            if m == 0 {
                // Every teacher's rows in one allocation: growing it would copy, and for a
                // moment hold, all the rows gathered so far.
                t.dim = dim;
                t.audio
                    .reserve_exact(artifacts.len() * index.clip_rows.len() * dim);
                t.text
                    .reserve_exact(artifacts.len() * index.caption_rows.len() * dim);
            }
            ensure!(
                dim == t.dim,
                "teacher {m} (`{name}`) has embedding width {dim} but teacher 0 has {}; teachers.safetensors needs one width",
                t.dim
            );
            gather_normalised_into(audio, dim, &index.clip_rows, &mut t.audio)
                .with_context(|| format!("teacher `{name}`: audio rows"))?;
            gather_normalised_into(text, dim, &index.caption_rows, &mut t.text)
                .with_context(|| format!("teacher `{name}`: text rows"))
        })
        .with_context(|| format!("teacher {m} (`{name}`)"))??;
        t.names.push(name);
    }
    ensure!(!t.names.is_empty(), "no teacher");
    Ok(t)
}

/// Cosines of clips `clips` (split-local range) with every caption for each teacher (one matrix
/// product each), and the ensemble mean: `(per_teacher [M][B * n_c], estimate [B * n_c])`,
/// row-major `[B, n_c]`.
fn block_scores(t: &Teachers, clips: std::ops::Range<usize>) -> (Vec<Vec<f32>>, Vec<f32>) {
    let dim = t.dim;
    let per_teacher: Vec<Vec<f32>> = (0..t.names.len())
        .map(|m| {
            let audio = &t.audio(m)[clips.start * dim..clips.end * dim];
            metrics::dot_matrix(audio, t.text(m), dim)
        })
        .collect();
    let inv = 1.0 / t.names.len() as f32;
    let mut estimate = per_teacher[0].clone();
    for other in &per_teacher[1..] {
        estimate
            .par_iter_mut()
            .zip(other.par_iter())
            .for_each(|(e, x)| *e += x);
    }
    estimate.par_iter_mut().for_each(|e| *e *= inv);
    (per_teacher, estimate)
}

/// `log Σ exp(x / τ)`, accumulated stably as (max, scaled sum).
#[derive(Debug, Clone, Copy)]
struct Lse {
    /// The shift: the largest logit, or any value at most `SHARED_EXP_RANGE` above all of them.
    max: f64,
    sum: f64,
}

impl Lse {
    const EMPTY: Lse = Lse {
        max: f64::NEG_INFINITY,
        sum: 0.0,
    };

    fn merge(self, o: Lse) -> Lse {
        if o.max == f64::NEG_INFINITY {
            return self;
        }
        if self.max == f64::NEG_INFINITY {
            return o;
        }
        let max = self.max.max(o.max);
        Lse {
            max,
            sum: self.sum * (self.max - max).exp() + o.sum * (o.max - max).exp(),
        }
    }

    fn of(logits: impl Iterator<Item = f64> + Clone) -> Lse {
        let max = logits.clone().fold(f64::NEG_INFINITY, f64::max);
        Lse {
            max,
            sum: logits.map(|x| (x - max).exp()).sum(),
        }
    }

    fn value(self) -> f64 {
        self.max + self.sum.ln()
    }
}

/// What the first pass over the blocks of clips collects.
#[derive(Debug, Default)]
struct FirstPass {
    /// Per-clip and per-caption log-normalisers of `C_hat / τ` (for the probability columns).
    normalisers: Option<(Vec<f64>, Vec<f64>)>,
    /// Per caption, its `k` clips of highest estimate (for `table = "top_k"`).
    top_clips: Option<Vec<Vec<usize>>>,
}

/// First pass: per-clip and per-caption log-normalisers of `C_hat / τ` when `tau` is given,
/// and each caption's `top_k` clips when given.
fn first_pass(
    ctx: &RunContext<'_>,
    t: &Teachers,
    n_clips: usize,
    n_captions: usize,
    block: usize,
    tau: Option<f64>,
    top_k: Option<usize>,
) -> FirstPass {
    if tau.is_none() && top_k.is_none() {
        return FirstPass::default();
    }
    let n_blocks = n_clips.div_ceil(block);
    let step = ctx
        .reporter
        .step("first pass over the pairs", n_blocks as u64);
    let mut row = Vec::with_capacity(n_clips);
    let mut col = vec![Lse::EMPTY; n_captions];
    let mut best = vec![TopK::default(); if top_k.is_some() { n_captions } else { 0 }];
    for k in 0..n_blocks {
        let clips = k * block..((k + 1) * block).min(n_clips);
        let b = clips.len();
        let (_, est) = block_scores(t, clips.clone());
        if let Some(tau) = tau {
            if let Some(top) = shared_shift(&est, tau) {
                // One exp per pair for the rows' and the columns' sums, all shifted by `top`.
                let e: Vec<f64> = est
                    .par_iter()
                    .map(|&x| (x as f64 / tau - top).exp())
                    .collect();
                let shifted = |sum: f64| Lse { max: top, sum };
                let rows: Vec<f64> = e
                    .par_chunks(n_captions)
                    .map(|r| shifted(r.iter().sum()).value())
                    .collect();
                row.extend(rows);
                col.par_iter_mut().enumerate().for_each(|(j, acc)| {
                    *acc = acc.merge(shifted((0..b).map(|i| e[i * n_captions + j]).sum()));
                });
            } else {
                let rows: Vec<f64> = est
                    .par_chunks(n_captions)
                    .map(|r| Lse::of(r.iter().map(|&x| x as f64 / tau)).value())
                    .collect();
                row.extend(rows);
                col.par_iter_mut().enumerate().for_each(|(j, acc)| {
                    *acc = acc.merge(Lse::of(
                        (0..b).map(|i| est[i * n_captions + j] as f64 / tau),
                    ));
                });
            }
        }
        if let Some(top_k) = top_k {
            best.par_iter_mut().enumerate().for_each(|(j, best)| {
                for i in 0..b {
                    best.offer(est[i * n_captions + j], clips.start + i, top_k);
                }
            });
        }
        step.inc(1);
    }
    FirstPass {
        normalisers: tau.map(|_| (row, col.into_iter().map(Lse::value).collect())),
        top_clips: top_k.map(|_| best.into_iter().map(TopK::items).collect()),
    }
}

/// The `k` items of highest score seen so far, best first; of equal scores, the first offered.
#[derive(Debug, Clone, Default)]
struct TopK(Vec<(f32, usize)>);

impl TopK {
    fn offer(&mut self, score: f32, item: usize, k: usize) {
        if self.0.len() == k && score.total_cmp(&self.0[k - 1].0).is_le() {
            return;
        }
        let at = self.0.partition_point(|(s, _)| s.total_cmp(&score).is_ge());
        self.0.insert(at, (score, item));
        self.0.truncate(k);
    }

    fn items(self) -> Vec<usize> {
        self.0.into_iter().map(|(_, i)| i).collect()
    }
}

/// The `k` captions of highest score of one clip's row (ties: the lower caption row), in
/// caption order.
fn top_captions(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let by_score = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, by_score);
        order.truncate(k);
    }
    order.sort_unstable();
    order
}

/// The widest span of `estimate / tau` within a block for which each pass takes one exponential
/// per pair, shared by the clip's and the caption's softmax (`exp(-600)` and `exp(600)` are normal
/// f64 numbers); wider spans (only with `tau` below 2 / 600) take two.
const SHARED_EXP_RANGE: f64 = 600.0;

/// The common shift `max(scores) / tau` of a block's exponentials where one per pair serves
/// both softmaxes: where the block's `scores / tau` span at most [`SHARED_EXP_RANGE`].
fn shared_shift(scores: &[f32], tau: f64) -> Option<f64> {
    let empty = || (f32::INFINITY, f32::NEG_INFINITY);
    let (low, high) = scores
        .par_iter()
        .fold(empty, |(l, h), &x| (l.min(x), h.max(x)))
        .reduce(empty, |a, b| (a.0.min(b.0), a.1.max(b.1)));
    let top = high as f64 / tau;
    (top - low as f64 / tau <= SHARED_EXP_RANGE).then_some(top)
}

/// The table's Arrow schema for `teachers` teachers.
pub fn table_schema(teachers: usize, with_probabilities: bool, with_relevance: bool) -> SchemaRef {
    let dict = || DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let mut fields = vec![
        Field::new("audio_index", DataType::Int64, false),
        Field::new("audio_id", dict(), false),
        Field::new("audio_file", dict(), false),
        Field::new("caption_index", DataType::Int64, false),
        Field::new("caption_id", dict(), false),
        Field::new("caption", dict(), false),
        Field::new("is_match", DataType::Boolean, false),
    ];
    for m in 0..teachers {
        fields.push(Field::new(format!("teacher_{m}"), DataType::Float32, false));
    }
    fields.push(Field::new("estimate", DataType::Float32, false));
    if with_probabilities {
        fields.push(Field::new(
            "p_caption_given_audio",
            DataType::Float32,
            false,
        ));
        fields.push(Field::new(
            "p_audio_given_caption",
            DataType::Float32,
            false,
        ));
    }
    if with_relevance {
        fields.push(Field::new("relevance", DataType::Float32, false));
    }
    Arc::new(Schema::new(fields))
}

fn run(ctx: &RunContext<'_>, p: &CorrespondencesParams) -> anyhow::Result<()> {
    let index = SplitIndex::load(ctx.input("features")?, p.split)?;
    let mut t = load_teachers(ctx, &index)?;
    let (n_a, n_c, n_m) = (index.n_clips(), index.n_captions(), t.names.len());
    ctx.reporter.log(&format!(
        "{n_a} clips x {n_c} captions of split {}, {n_m} teacher(s)",
        p.split
    ));

    // The buffers move into the file's struct and back: no copy of the embeddings.
    let saved = TeacherEmbeddings {
        teachers: n_m,
        dim: t.dim,
        clip_index: index.clip_rows.clone(),
        caption_index: index.caption_rows.clone(),
        audio: std::mem::take(&mut t.audio),
        text: std::mem::take(&mut t.text),
    };
    saved.save(ctx.out_dir)?;
    (t.audio, t.text) = (saved.audio, saved.text);

    let block = (p.row_group_rows / n_c).max(1);
    let rows = match p.table {
        TableForm::None => None,
        form => {
            let top_k = (form == TableForm::TopK).then(|| p.top_k.unwrap_or(DEFAULT_TOP_K));
            let tau = p.with_probabilities.then_some(p.tau);
            let first = first_pass(ctx, &t, n_a, n_c, block, tau, top_k);
            let selection = top_k.map(|k| Selection::new(&index, k, first.top_clips));
            let table = TableBuilder::new(&index, &t, p, first.normalisers, selection);
            Some(write_table(ctx, p, &t, &table, block)?)
        }
    };

    // Agreement with the annotation and the ground truth.
    let mut out = serde_json::Map::new();
    out.insert("pairs".into(), (n_a * n_c).into());
    out.insert("clips".into(), n_a.into());
    out.insert("captions".into(), n_c.into());
    out.insert("teachers".into(), n_m.into());
    if let Some(totals) = rows {
        if p.table == TableForm::TopK {
            out.insert("rows".into(), totals.rows.into());
        }
        out.insert(
            "estimate_mean_match".into(),
            (totals.sum_match / totals.n_match.max(1) as f64).into(),
        );
        out.insert(
            "estimate_mean_nonmatch".into(),
            (totals.sum_other / (n_a * n_c - totals.n_match).max(1) as f64).into(),
        );
        if p.with_probabilities {
            out.insert(
                "p_caption_given_audio_on_matches".into(),
                (totals.mass_on_matches / n_a as f64).into(),
            );
        }
    }
    for (name, m) in agreement::agreement(ctx, &t, &index, p.seed)? {
        out.insert(name, serde_json::to_value(m)?);
    }
    ctx.write_metrics(&serde_json::Value::Object(out))?;
    Ok(())
}

/// Writes `correspondences.parquet`, one row group per block of clips; returns the sums over
/// every pair.
fn write_table(
    ctx: &RunContext<'_>,
    p: &CorrespondencesParams,
    t: &Teachers,
    table: &TableBuilder<'_>,
    block: usize,
) -> anyhow::Result<BlockStats> {
    let n_a = table.index.n_clips();
    let n_blocks = n_a.div_ceil(block);
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_page_size_limit(8 << 20)
        .set_key_value_metadata(Some(vec![
            KeyValue::new("teachers".into(), serde_json::to_string(&t.names)?),
            KeyValue::new("split".into(), p.split.as_str().to_owned()),
            KeyValue::new("tau".into(), p.tau.to_string()),
            KeyValue::new("schema_version".into(), SCHEMA_VERSION.to_string()),
        ]));
    for f in table.schema.fields() {
        if matches!(f.data_type(), DataType::Float32 | DataType::Boolean) {
            props = props.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), false);
        }
    }
    let path = ctx.out_dir.join(CORRESPONDENCES_FILE);
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating `{}`", path.display()))?;
    let mut writer =
        ParallelWriter::try_new(BufWriter::new(file), table.schema.clone(), props.build())?;

    // Block k is encoded while block k + 1's scores are computed. A block's columns are built
    // and encoded in parts: only a part of them is ever held as Arrow arrays.
    let mut totals = BlockStats::default();
    let step = ctx
        .reporter
        .step("writing correspondences.parquet", n_blocks as u64);
    let clips_of = |k: usize| k * block..((k + 1) * block).min(n_a);
    let mut next = Some(table.block(clips_of(0)));
    // In a full table every block of `block` clips has the same caption columns: encoded once.
    let repeated = table.repeated_columns();
    let shared = match &next {
        Some(first) if !repeated.is_empty() && first.clips.len() == block => {
            let rows = first.rows();
            Some(writer.encode_shared(&repeated, &table.columns(first, 0..rows, &repeated)?.0)?)
        }
        _ => None,
    };
    for k in 0..n_blocks {
        let current = next
            .take()
            .expect("each block computed before it is written");
        let (encoded, following) = rayon::join(
            || table.encode(&writer, k, &current, shared.as_ref()),
            || (k + 1 < n_blocks).then(|| table.block(clips_of(k + 1))),
        );
        let (group, mass_on_matches) = encoded?;
        writer.append(group)?;
        totals.add(&BlockStats {
            mass_on_matches,
            ..current.stats
        });
        step.inc(1);
        next = following;
    }
    writer
        .close()?
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing `{}`", path.display()))?;
    Ok(totals)
}

/// Sums over a block's pairs for `metrics.json`.
#[derive(Debug, Default)]
struct BlockStats {
    /// Rows written (with `table = "top_k"`, fewer than the pairs).
    rows: usize,
    sum_match: f64,
    n_match: usize,
    sum_other: f64,
    mass_on_matches: f64,
}

impl BlockStats {
    fn add(&mut self, o: &BlockStats) {
        self.rows += o.rows;
        self.sum_match += o.sum_match;
        self.n_match += o.n_match;
        self.sum_other += o.sum_other;
        self.mass_on_matches += o.mass_on_matches;
    }
}

/// The pairs of `table = "top_k"`, per clip.
struct Selection {
    k: usize,
    /// Per clip, its annotated captions and the captions that have it among their top k.
    fixed: Vec<Vec<usize>>,
}

impl Selection {
    fn new(index: &SplitIndex, k: usize, top_clips: Option<Vec<Vec<usize>>>) -> Self {
        let mut fixed = vec![Vec::new(); index.n_clips()];
        for (j, &i) in index.caption_clip.iter().enumerate() {
            fixed[i].push(j);
        }
        for (j, clips) in top_clips.into_iter().flatten().enumerate() {
            for i in clips {
                fixed[i].push(j);
            }
        }
        Self { k, fixed }
    }

    /// The captions of `clip` whose estimates are `scores`, in caption order.
    fn captions(&self, clip: usize, scores: &[f32]) -> Vec<usize> {
        let mut chosen = top_captions(scores, self.k);
        chosen.extend(&self.fixed[clip]);
        chosen.sort_unstable();
        chosen.dedup();
        chosen
    }
}

/// Builds the table's record batches, one per block of clips.
struct TableBuilder<'a> {
    index: &'a SplitIndex,
    teachers: &'a Teachers,
    tau: f64,
    /// Per-clip and per-caption log-normalisers, with the probability columns.
    normalisers: Option<(Vec<f64>, Vec<f64>)>,
    /// The pairs of a top-k table; every pair without.
    selection: Option<Selection>,
    schema: SchemaRef,
    /// Dictionary values shared by every batch.
    audio_ids: ArrayRef,
    audio_files: ArrayRef,
    caption_ids: ArrayRef,
    captions: ArrayRef,
    /// Per clip: (caption, relevance), where the features carry ground truth.
    relevance_by_clip: Option<Vec<Vec<(usize, f32)>>>,
}

impl<'a> TableBuilder<'a> {
    fn new(
        index: &'a SplitIndex,
        teachers: &'a Teachers,
        p: &CorrespondencesParams,
        normalisers: Option<(Vec<f64>, Vec<f64>)>,
        selection: Option<Selection>,
    ) -> Self {
        let relevance_by_clip = index.relevance.as_ref().map(|rel| {
            let mut by_clip = vec![Vec::new(); index.n_clips()];
            for (q, pairs) in rel.iter().enumerate() {
                for &(i, r) in pairs {
                    by_clip[i].push((q, r));
                }
            }
            by_clip
        });
        let strings = |v: &[String]| -> ArrayRef { Arc::new(StringArray::from_iter_values(v)) };
        Self {
            index,
            teachers,
            tau: p.tau,
            schema: table_schema(
                teachers.names.len(),
                normalisers.is_some(),
                relevance_by_clip.is_some(),
            ),
            normalisers,
            selection,
            audio_ids: strings(&index.clip_ids),
            audio_files: strings(&index.clip_files),
            caption_ids: strings(&index.caption_ids),
            captions: strings(&index.caption_texts),
            relevance_by_clip,
        }
    }

    /// The columns whose values depend on the number of clips in a block only (in a full
    /// table: the caption columns, the same captions for every clip).
    fn repeated_columns(&self) -> Vec<usize> {
        if self.selection.is_some() {
            return Vec::new();
        }
        ["caption_index", "caption_id", "caption"]
            .iter()
            .map(|name| self.schema.index_of(name).expect("a table column"))
            .collect()
    }

    /// Block `clips` (split-local): its scores, the pairs it writes, and the sums over all its
    /// pairs but the probability mass (which [`Self::encode`] adds up).
    fn block(&self, clips: std::ops::Range<usize>) -> Block {
        let index = self.index;
        let n_c = index.n_captions();
        let (per_teacher, est) = block_scores(self.teachers, clips.clone());
        let clip_of = |r: usize| clips.start + r / n_c;
        let mut stats = BlockStats::default();
        for (r, e) in est.iter().enumerate() {
            if index.caption_clip[r % n_c] == clip_of(r) {
                stats.sum_match += *e as f64;
                stats.n_match += 1;
            } else {
                stats.sum_other += *e as f64;
            }
        }
        // The block's pairs written, as positions in its `[clips, n_c]` matrices: all of them,
        // or the selection's.
        let picked: Option<Vec<usize>> = self.selection.as_ref().map(|sel| {
            clips
                .clone()
                .into_par_iter()
                .flat_map_iter(|i| {
                    let row = (i - clips.start) * n_c;
                    sel.captions(i, &est[row..row + n_c])
                        .into_iter()
                        .map(move |j| row + j)
                })
                .collect()
        });
        stats.rows = picked.as_ref().map_or(clips.len() * n_c, Vec::len);
        let shared_exp = self.normalisers.as_ref().and_then(|(lse_row, lse_col)| {
            let shift = match &picked {
                None => shared_shift(&est, self.tau),
                Some(p) => shared_shift(&p.iter().map(|&r| est[r]).collect::<Vec<_>>(), self.tau),
            };
            // exp(s - lse) = exp(s - top) exp(top - lse): one exp per pair for both columns,
            // the other factors per clip and per caption; no factor leaves f64's normal range
            // while the block's written scores span at most SHARED_EXP_RANGE.
            shift.map(|top| SharedExp {
                top,
                by_clip: clips.clone().map(|i| (top - lse_row[i]).exp()).collect(),
                by_caption: lse_col.iter().map(|l| (top - l).exp()).collect(),
            })
        });
        let relevance = self.relevance_by_clip.as_ref().map(|rel| {
            let mut r = vec![0.0f32; clips.len() * n_c];
            for (bi, i) in clips.clone().enumerate() {
                for &(q, v) in &rel[i] {
                    r[bi * n_c + q] = v;
                }
            }
            ScalarBuffer::from(r)
        });
        Block {
            clips,
            per_teacher: per_teacher.into_iter().map(ScalarBuffer::from).collect(),
            est: ScalarBuffer::from(est),
            relevance,
            picked,
            shared_exp,
            stats,
        }
    }

    /// Encodes `block` as row group `k`, its columns built in parts; returns the chunks and the
    /// block's `p_caption_given_audio` mass on annotated pairs.
    fn encode<W: std::io::Write + Send>(
        &self,
        writer: &ParallelWriter<W>,
        k: usize,
        block: &Block,
        shared: Option<&SharedColumns>,
    ) -> anyhow::Result<(EncodedRowGroup, f64)> {
        let rows = block.rows();
        let mut group = writer.row_group(k, rows, shared)?;
        let columns = group.columns().to_vec();
        let mut mass_on_matches = 0.0;
        for start in (0..rows).step_by(writer.part_rows()) {
            let part = start..(start + writer.part_rows()).min(rows);
            let (arrays, mass) = self.columns(block, part, &columns)?;
            // Added up row by row as one sum over the block would: the same f64.
            mass_on_matches = mass.into_iter().fold(mass_on_matches, |m, p| m + p);
            group.write(&arrays)?;
        }
        Ok((group.finish()?, mass_on_matches))
    }

    /// Columns `columns` (field positions, ascending) of the block's written rows `rows`, and
    /// `p_caption_given_audio` of the annotated pairs among them, in row order (where that
    /// column is asked for).
    fn columns(
        &self,
        block: &Block,
        rows: std::ops::Range<usize>,
        columns: &[usize],
    ) -> anyhow::Result<(Vec<ArrayRef>, Vec<f64>)> {
        let index = self.index;
        let n_c = index.n_captions();
        let start = block.clips.start;
        // Position in the block's `[clips, n_c]` matrices of written row `k`.
        let at = |k: usize| block.picked.as_ref().map_or(k, |p| p[k]);
        let clip_of = |pos: usize| start + pos / n_c;
        let written = |values: &ScalarBuffer<f32>| -> ArrayRef {
            Arc::new(match &block.picked {
                None => Float32Array::new(values.slice(rows.start, rows.len()), None),
                Some(p) => {
                    Float32Array::from_iter_values(p[rows.clone()].iter().map(|&r| values[r]))
                }
            })
        };
        let keys = |key: &(dyn Fn(usize) -> usize + Sync)| {
            Int32Array::from(
                rows.clone()
                    .into_par_iter()
                    .map(|k| key(at(k)) as i32)
                    .collect::<Vec<_>>(),
            )
        };
        let dict = |keys: &Int32Array, values: &ArrayRef| -> anyhow::Result<ArrayRef> {
            Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
                keys.clone(),
                values.clone(),
            )?))
        };
        // The feature rows of split-local clips or captions.
        let feature_rows = |keys: &Int32Array, rows: &[usize]| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                keys.values().iter().map(|&i| rows[i as usize] as i64),
            ))
        };
        let is_match = |k: usize| index.caption_clip[at(k) % n_c] == clip_of(at(k));
        let (mut audio_keys, mut caption_keys, mut probabilities) = (None, None, None);
        let mut mass = Vec::new();
        let mut arrays = Vec::with_capacity(columns.len());
        for &c in columns {
            let name = self.schema.field(c).name().as_str();
            let array: ArrayRef = match name {
                "audio_index" | "audio_id" | "audio_file" => {
                    let keys = audio_keys.get_or_insert_with(|| keys(&clip_of));
                    match name {
                        "audio_index" => feature_rows(keys, &index.clip_rows),
                        "audio_id" => dict(keys, &self.audio_ids)?,
                        _ => dict(keys, &self.audio_files)?,
                    }
                }
                "caption_index" | "caption_id" | "caption" => {
                    let keys = caption_keys.get_or_insert_with(|| keys(&|pos| pos % n_c));
                    match name {
                        "caption_index" => feature_rows(keys, &index.caption_rows),
                        "caption_id" => dict(keys, &self.caption_ids)?,
                        _ => dict(keys, &self.captions)?,
                    }
                }
                "is_match" => Arc::new(BooleanArray::from(
                    rows.clone()
                        .into_par_iter()
                        .map(is_match)
                        .collect::<Vec<_>>(),
                )),
                "estimate" => written(&block.est),
                "relevance" => written(block.relevance.as_ref().expect("a relevance column")),
                "p_caption_given_audio" | "p_audio_given_caption" => {
                    let (pca, pac) = probabilities.get_or_insert_with(|| {
                        let (pca, pac) = self.probabilities(block, rows.clone());
                        mass = rows
                            .clone()
                            .zip(pca.values())
                            .filter(|&(k, _)| is_match(k))
                            .map(|(_, &p)| p as f64)
                            .collect();
                        (Arc::new(pca) as ArrayRef, Arc::new(pac) as ArrayRef)
                    });
                    if name == "p_caption_given_audio" {
                        pca.clone()
                    } else {
                        pac.clone()
                    }
                }
                teacher => {
                    let m: usize = teacher
                        .strip_prefix("teacher_")
                        .and_then(|m| m.parse().ok())
                        .with_context(|| format!("no column `{teacher}` in the table"))?;
                    written(&block.per_teacher[m])
                }
            };
            arrays.push(array);
        }
        Ok((arrays, mass))
    }

    /// `p_caption_given_audio` and `p_audio_given_caption` of the block's written rows `rows`.
    fn probabilities(
        &self,
        block: &Block,
        rows: std::ops::Range<usize>,
    ) -> (Float32Array, Float32Array) {
        let (lse_row, lse_col) = self.normalisers.as_ref().expect("the normalisers");
        let n_c = self.index.n_captions();
        let tau = self.tau;
        let pair = |k: usize| {
            let r = block.picked.as_ref().map_or(k, |p| p[k]);
            let x = block.est[r];
            match &block.shared_exp {
                Some(shared) => {
                    let e = (x as f64 / tau - shared.top).exp();
                    (
                        (e * shared.by_clip[r / n_c]) as f32,
                        (e * shared.by_caption[r % n_c]) as f32,
                    )
                }
                None => {
                    let s = x as f64 / tau;
                    (
                        (s - lse_row[block.clips.start + r / n_c]).exp() as f32,
                        (s - lse_col[r % n_c]).exp() as f32,
                    )
                }
            }
        };
        let (pca, pac): (Vec<f32>, Vec<f32>) = rows.into_par_iter().map(pair).unzip();
        (Float32Array::from(pca), Float32Array::from(pac))
    }
}

/// One block of clips of the table: its scores and the pairs it writes.
struct Block {
    /// Split-local clip rows.
    clips: std::ops::Range<usize>,
    /// Row-major `[clips, n_c]`: each teacher's cosines, the ensemble estimate, and the
    /// ground-truth relevance where the features carry it.
    per_teacher: Vec<ScalarBuffer<f32>>,
    est: ScalarBuffer<f32>,
    relevance: Option<ScalarBuffer<f32>>,
    /// Positions in those matrices of the rows written (a top-k table); every pair without.
    picked: Option<Vec<usize>>,
    /// With the probability columns: the block's shared exponential, where it has one.
    shared_exp: Option<SharedExp>,
    stats: BlockStats,
}

impl Block {
    /// Rows written.
    fn rows(&self) -> usize {
        self.stats.rows
    }
}

/// `exp(x / τ - lse) = exp(x / τ - top) · factor` with per-clip and per-caption factors.
struct SharedExp {
    top: f64,
    by_clip: Vec<f64>,
    by_caption: Vec<f64>,
}

/// Reads the teacher node names from a correspondence table's key-value metadata.
pub fn teacher_names(path: &Path) -> anyhow::Result<Vec<String>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(file)?;
    use parquet::file::reader::FileReader;
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let json = kv
        .iter()
        .find(|k| k.key == "teachers")
        .and_then(|k| k.value.clone())
        .with_context(|| format!("`{}` has no `teachers` metadata", path.display()))?;
    Ok(serde_json::from_str(&json)?)
}
