//! Kind `evaluate`: retrieval metrics of one `embed` artifact on one split, with bootstrap
//! confidence intervals. Bound to several `embed` artifacts (an ensemble), it ranks by the mean
//! of their cosine similarities: the very estimate that Stage 2 learns from.
//!
//! Every caption of the split queries every distinct clip of the split (DCASE convention);
//! ties are broken by the lower clip index (see [`crate::metrics`]). **All values are fractions
//! in `[0, 1]`** (the report multiplies by 100).
//!
//! # Outputs
//! - `metrics.json`:
//!   - `queries` (captions), `clips`;
//!   - `t2a`: `{map10, r1, r5, r10}` text → audio; `t2a_ci`: `{map10: {low, high}, ...}`;
//!   - `a2t_any` / `a2t_any_ci`: audio → text, "any hit" convention (R@K = 1 if the best-ranked
//!     of the clip's captions is within K); `a2t_fraction` / `a2t_fraction_ci`: "fraction"
//!     convention (the clip's captions within K / its number of captions). mAP@10 is the
//!     multi-relevant AP@10 in both.
//!   - only where the features carry ground-truth relevance: `t2a_graded`:
//!     `{map10, map10_full, ndcg10}` and `t2a_graded_ci`. For caption `q`, `map10` is the
//!     multi-relevant AP@10 (DCASE 2025 formula, every relevant clip counts 1) with relevant
//!     clips = its annotated clip and every clip of the split with relevance > 0 (partial
//!     matches count); `map10_full` the same with relevant clips = its annotated clip and every
//!     clip with relevance >= 1 (clips the caption fully describes); `ndcg10` the nDCG@10 with
//!     linear gains `max(relevance, 1 if annotated)`.
//!
//!   - `members`: the number of `embed` artifacts whose cosines are averaged (1 for one model).
//!
//!   Intervals are 95 % bootstrap percentile intervals that resample clips, each with all its
//!   caption queries ([`crate::statistics`]; `bootstrap` resamples, ChaCha8 seeded with `seed`;
//!   the metrics of one direction share the resampled sets). In audio → text, a clip is one
//!   query already.
//! - `metrics.parquet`: `metric: utf8` (e.g. `t2a.map10`, `a2t_any.r1`), `value`, `ci_low`,
//!   `ci_high: float64`.
//! - `ranks.parquet`: one row per caption query, `caption_index: int64` (features row),
//!   `caption_id: utf8`, `clip_index: int64` (features row of its annotated clip, the cluster of
//!   the bootstrap), `rank: int64` (1-based rank of its annotated clip) and, with ground truth,
//!   `graded_ap10: float64`: enough for paired comparisons between models.
//! - `top.parquet`: each caption query's [`TOP_K`] best clips, best first: `caption_index`,
//!   `position` (1-based), `clip_index` (features rows, `int64`) and `score: float32` (the cosine,
//!   or the ensemble's mean cosine); what the report's query explorer shows.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use pipeline_api::{InputCounts, ParamError, Plan, Resources, RunContext, StageKind, parse_params};
use pipeline_formats::{
    Embeddings, Split, batch, f64_column, i64_column, string_column, write_parquet,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::index::{SplitIndex, gather_normalised};
use crate::metrics::{self, PerQuery, RetrievalIntervals, RetrievalScores};
use crate::statistics::{self, Interval};

/// Per-query ranks file.
pub const RANKS_FILE: &str = "ranks.parquet";
/// Each query's best clips.
pub const TOP_FILE: &str = "top.parquet";
/// Clips per query in [`TOP_FILE`].
pub const TOP_K: usize = 10;
/// Metrics table file.
pub const METRICS_TABLE_FILE: &str = "metrics.parquet";
/// Confidence level of the intervals.
pub const LEVEL: f64 = 0.95;

/// Parameters of `evaluate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    /// Split to evaluate on: `test` (default), `val` or `train`.
    #[serde(default = "default_split")]
    pub split: Split,
    /// Bootstrap resamples of the query set for the 95 % intervals (default 1000; 0 gives
    /// degenerate intervals at the point estimate).
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Seed of the bootstrap resampling (default 0).
    #[serde(default)]
    pub seed: u64,
}

fn default_split() -> Split {
    Split::Test
}
fn default_bootstrap() -> usize {
    1000
}

/// The `evaluate` stage kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Evaluate;

/// Graded text → audio values.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct GradedScores {
    /// Multi-relevant AP@10, relevant = annotated or relevance > 0.
    pub map10: f64,
    /// Multi-relevant AP@10, relevant = annotated or relevance >= 1.
    pub map10_full: f64,
    /// nDCG@10, gains = max(relevance, 1 if annotated).
    pub ndcg10: f64,
}

/// Intervals of [`GradedScores`].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct GradedIntervals {
    pub map10: Interval,
    pub map10_full: Interval,
    pub ndcg10: Interval,
}

/// `metrics.json` of `evaluate`: fractions in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EvaluationMetrics {
    pub queries: usize,
    pub clips: usize,
    pub t2a: RetrievalScores,
    pub t2a_ci: RetrievalIntervals,
    pub a2t_any: RetrievalScores,
    pub a2t_any_ci: RetrievalIntervals,
    pub a2t_fraction: RetrievalScores,
    pub a2t_fraction_ci: RetrievalIntervals,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t2a_graded: Option<GradedScores>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t2a_graded_ci: Option<GradedIntervals>,
    /// Models whose cosines are averaged (1: one model; more: an ensemble).
    #[serde(default = "one")]
    pub members: usize,
}

fn one() -> usize {
    1
}

impl EvaluationMetrics {
    /// `(metric, value, ci_low, ci_high)` rows, as in `metrics.parquet`.
    pub fn rows(&self) -> Vec<(String, f64, f64, f64)> {
        let mut rows = Vec::new();
        let mut add = |prefix: &str, s: &RetrievalScores, c: &RetrievalIntervals| {
            for (name, v, i) in [
                ("map10", s.map10, c.map10),
                ("r1", s.r1, c.r1),
                ("r5", s.r5, c.r5),
                ("r10", s.r10, c.r10),
            ] {
                rows.push((format!("{prefix}.{name}"), v, i.low, i.high));
            }
        };
        add("t2a", &self.t2a, &self.t2a_ci);
        add("a2t_any", &self.a2t_any, &self.a2t_any_ci);
        add("a2t_fraction", &self.a2t_fraction, &self.a2t_fraction_ci);
        if let (Some(g), Some(c)) = (&self.t2a_graded, &self.t2a_graded_ci) {
            rows.push((
                "t2a_graded.map10".into(),
                g.map10,
                c.map10.low,
                c.map10.high,
            ));
            rows.push((
                "t2a_graded.map10_full".into(),
                g.map10_full,
                c.map10_full.low,
                c.map10_full.high,
            ));
            rows.push((
                "t2a_graded.ndcg10".into(),
                g.ndcg10,
                c.ndcg10.low,
                c.ndcg10.high,
            ));
        }
        rows
    }
}

impl StageKind for Evaluate {
    fn name(&self) -> &'static str {
        "evaluate"
    }

    fn summary(&self) -> &'static str {
        "Text-to-audio and audio-to-text retrieval metrics of one embedding set, with bootstrap intervals and per-query ranks"
    }

    fn version(&self) -> u32 {
        // 2: intervals resample clips with all their captions; `clip_index` in the ranks;
        // several embeddings are evaluated as an ensemble. 3: `top.parquet`. 4: cosines
        // from a matrix product (other rounding in the last bits).
        4
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(&["embeddings", "features"], &[])?;
        inputs.expect_single("features")?;
        let p: EvaluateParams = parse_params(params)?;
        Plan::new(&p, Resources::ALL_CORES)
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let p: EvaluateParams = ctx.params()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(ctx.threads.clamp(1, 1024))
            .build()?;
        pool.install(|| run(ctx, &p))
    }
}

/// The text × audio cosine matrix `[n_captions, n_clips]` of one model's split rows
/// (normalised `audio [n_clips, dim]`, `text [n_captions, dim]`).
pub fn cosines(audio: &[f32], text: &[f32], dim: usize) -> Vec<f32> {
    metrics::dot_matrix(text, audio, dim)
}

/// Evaluates a split from its `sim [n_captions, n_clips]` matrix (one model's cosines, or an
/// ensemble's mean cosines); returns the metrics and the t2a ranks (and graded AP@10 per query,
/// with ground truth).
pub fn evaluate_split(
    index: &SplitIndex,
    sim: &[f32],
    bootstrap: usize,
    seed: u64,
) -> (EvaluationMetrics, Vec<usize>, Option<Vec<f64>>) {
    let (n_a, n_c) = (index.n_clips(), index.n_captions());
    assert_eq!(sim.len(), n_a * n_c, "one score per caption and clip");
    let by_clip = statistics::Clusters::by_label(&index.caption_clip);
    let each_clip = statistics::Clusters::singletons(n_a);
    let ranks = metrics::text_to_audio_ranks(sim, n_a, &index.caption_clip);
    let t2a = metrics::text_to_audio_per_query(&ranks);
    let a2t_ranks = metrics::audio_to_text_ranks(sim, n_a, &index.caption_clip);
    let any = metrics::audio_to_text_any_per_query(&a2t_ranks);
    let fraction = metrics::audio_to_text_fraction_per_query(&a2t_ranks);
    let ci = |pq: &PerQuery, clusters: &statistics::Clusters, salt: u64| {
        pq.bootstrap(clusters, bootstrap, seed.wrapping_add(salt), LEVEL)
    };

    let graded = index.relevance.as_ref().map(|rel| {
        let per_query: Vec<(f64, f64, f64)> = (0..n_c)
            .into_par_iter()
            .map(|q| {
                let row = &sim[q * n_a..(q + 1) * n_a];
                let annotated = index.caption_clip[q];
                let mut gains: Vec<(usize, f32)> = rel[q].clone();
                match gains.iter_mut().find(|g| g.0 == annotated) {
                    Some(g) => g.1 = g.1.max(1.0),
                    None => gains.push((annotated, 1.0)),
                }
                let relevant: Vec<usize> = gains.iter().map(|g| g.0).collect();
                let full: Vec<usize> = gains.iter().filter(|g| g.1 >= 1.0).map(|g| g.0).collect();
                let ap = metrics::multi_relevant_ap_at_k(row, &relevant, 10);
                let ap_full = metrics::multi_relevant_ap_at_k(row, &full, 10);
                let ndcg = metrics::ndcg_at_k(row, &gains, 10).unwrap_or(0.0);
                (ap, ap_full, ndcg)
            })
            .collect();
        let aps: Vec<f64> = per_query.iter().map(|v| v.0).collect();
        let aps_full: Vec<f64> = per_query.iter().map(|v| v.1).collect();
        let ndcgs: Vec<f64> = per_query.iter().map(|v| v.2).collect();
        let cis = statistics::bootstrap_means_ci(
            &[&aps, &aps_full, &ndcgs],
            &by_clip,
            bootstrap,
            seed.wrapping_add(3),
            LEVEL,
        );
        let scores = GradedScores {
            map10: statistics::mean(&aps),
            map10_full: statistics::mean(&aps_full),
            ndcg10: statistics::mean(&ndcgs),
        };
        (
            scores,
            GradedIntervals {
                map10: cis[0],
                map10_full: cis[1],
                ndcg10: cis[2],
            },
            aps,
        )
    });

    let m = EvaluationMetrics {
        queries: n_c,
        clips: n_a,
        t2a: t2a.mean(),
        t2a_ci: ci(&t2a, &by_clip, 0),
        a2t_any: any.mean(),
        a2t_any_ci: ci(&any, &each_clip, 1),
        a2t_fraction: fraction.mean(),
        a2t_fraction_ci: ci(&fraction, &each_clip, 2),
        t2a_graded: graded.as_ref().map(|g| g.0),
        t2a_graded_ci: graded.as_ref().map(|g| g.1),
        members: 1,
    };
    (m, ranks, graded.map(|g| g.2))
}

fn run(ctx: &RunContext<'_>, p: &EvaluateParams) -> anyhow::Result<()> {
    let index = SplitIndex::load(ctx.input("features")?, p.split)?;
    let members = ctx.inputs("embeddings");
    let n_features_clips = index.clip_rows.iter().max().map_or(0, |m| m + 1);
    let step = ctx.reporter.step("evaluating", members.len() as u64 + 1);
    let mut sim: Vec<f32> = Vec::new();
    for member in members {
        let emb = Embeddings::load(&member.path)?;
        ensure!(
            emb.n_clips() >= n_features_clips,
            "`{}` has {} audio rows but the features' split uses row {}: embeddings of other features?",
            member.path.display(),
            emb.n_clips(),
            n_features_clips - 1
        );
        let audio =
            gather_normalised(&emb.audio, emb.dim, &index.clip_rows).context("audio rows")?;
        let text =
            gather_normalised(&emb.text, emb.dim, &index.caption_rows).context("text rows")?;
        let member_sim = cosines(&audio, &text, emb.dim);
        if sim.is_empty() {
            sim = member_sim;
        } else {
            sim.iter_mut().zip(&member_sim).for_each(|(s, m)| *s += m);
        }
        step.inc(1);
    }
    ensure!(
        !sim.is_empty() || index.n_captions() == 0,
        "input `embeddings` binds nothing"
    );
    if members.len() > 1 {
        let scale = 1.0 / members.len() as f32;
        sim.iter_mut().for_each(|s| *s *= scale);
    }
    let (mut m, ranks, graded_aps) = evaluate_split(&index, &sim, p.bootstrap, p.seed);
    m.members = members.len();
    step.inc(1);
    drop(step);
    ctx.reporter.log(&format!(
        "{}: t2a mAP@10 {:.2} % R@1 {:.2} % R@5 {:.2} % R@10 {:.2} % ({} queries, {} clips)",
        p.split,
        100.0 * m.t2a.map10,
        100.0 * m.t2a.r1,
        100.0 * m.t2a.r5,
        100.0 * m.t2a.r10,
        m.queries,
        m.clips
    ));
    ctx.write_metrics(&m)?;

    let rows = m.rows();
    write_parquet(
        &ctx.out_dir.join(METRICS_TABLE_FILE),
        &batch(vec![
            (
                "metric",
                string_column(&rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()),
            ),
            ("value", f64_column(rows.iter().map(|r| r.1))),
            ("ci_low", f64_column(rows.iter().map(|r| r.2))),
            ("ci_high", f64_column(rows.iter().map(|r| r.3))),
        ])?,
    )?;
    let mut cols = vec![
        (
            "caption_index",
            i64_column(index.caption_rows.iter().map(|&r| r as i64)),
        ),
        ("caption_id", string_column(&index.caption_ids)),
        (
            "clip_index",
            i64_column(
                index
                    .caption_clip
                    .iter()
                    .map(|&c| index.clip_rows[c] as i64),
            ),
        ),
        ("rank", i64_column(ranks.iter().map(|&r| r as i64))),
    ];
    if let Some(aps) = graded_aps {
        cols.push(("graded_ap10", f64_column(aps)));
    }
    write_parquet(&ctx.out_dir.join(RANKS_FILE), &batch(cols)?)?;
    write_top(&ctx.out_dir.join(TOP_FILE), &index, &sim)
}

/// Writes [`TOP_FILE`] from the `[n_captions, n_clips]` scores of a split.
fn write_top(path: &std::path::Path, index: &SplitIndex, sim: &[f32]) -> anyhow::Result<()> {
    let n_a = index.n_clips();
    let (mut query, mut position, mut clip, mut score) = (vec![], vec![], vec![], vec![]);
    for q in 0..index.n_captions() {
        let row = &sim[q * n_a..(q + 1) * n_a];
        for (p, a) in metrics::top_k(row, TOP_K).into_iter().enumerate() {
            query.push(index.caption_rows[q] as i64);
            position.push(p as i64 + 1);
            clip.push(index.clip_rows[a] as i64);
            score.push(row[a]);
        }
    }
    write_parquet(
        path,
        &batch(vec![
            ("caption_index", i64_column(query)),
            ("position", i64_column(position)),
            ("clip_index", i64_column(clip)),
            ("score", pipeline_formats::f32_column(score)),
        ])?,
    )
}

/// One of a query's best clips ([`TOP_FILE`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopClip {
    pub clip_index: i64,
    pub score: f32,
}

/// Reads an `evaluate` artifact's `top.parquet` as `caption_index → best clips, best first`.
pub fn read_top(dir: &std::path::Path) -> anyhow::Result<BTreeMap<i64, Vec<TopClip>>> {
    let path = dir.join(TOP_FILE);
    let t = pipeline_formats::Table::open(&path)
        .with_context(|| format!("`{}`: rebuild the evaluation (evaluate v3)", path.display()))?;
    let mut out: BTreeMap<i64, Vec<TopClip>> = BTreeMap::new();
    let clips = t.i64s("clip_index")?.into_iter().zip(t.f32s("score")?);
    for (q, (clip_index, score)) in t.i64s("caption_index")?.into_iter().zip(clips) {
        out.entry(q)
            .or_default()
            .push(TopClip { clip_index, score });
    }
    Ok(out)
}

/// Reads an `evaluate` artifact's `metrics.json`.
pub fn read_metrics(dir: &std::path::Path) -> anyhow::Result<EvaluationMetrics> {
    let path = dir.join(pipeline_api::METRICS_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading `{}`", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing `{}`", path.display()))
}

/// One caption query of an evaluation: its annotated clip (features row) and that clip's rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryRank {
    pub clip_index: i64,
    pub rank: usize,
}

/// Reads an `evaluate` artifact's `ranks.parquet` as `caption_index → (clip, rank)`.
pub fn read_ranks(dir: &std::path::Path) -> anyhow::Result<BTreeMap<i64, QueryRank>> {
    let path = dir.join(RANKS_FILE);
    let t = pipeline_formats::Table::open(&path)?;
    let clips = t.i64s("clip_index").with_context(|| {
        format!(
            "`{}` predates clip-clustered intervals: rebuild the evaluation",
            path.display()
        )
    })?;
    Ok(t.i64s("caption_index")?
        .into_iter()
        .zip(clips.into_iter().zip(t.i64s("rank")?))
        .map(|(q, (clip_index, rank))| {
            (
                q,
                QueryRank {
                    clip_index,
                    rank: rank as usize,
                },
            )
        })
        .collect())
}
