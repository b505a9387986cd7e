//! Kind `report`: one Markdown report over many evaluations, with declared comparisons of
//! Stage-2 students against their controls, starts and teachers (per seed and over seeds, see
//! [`crate::compare`]), the correspondence-quality table and PNG plots.
//!
//! # Inputs
//! - `evaluations` (required, one or more `evaluate` artifacts): the node name of each is its
//!   label (for an external path: the path's last component, so that the report never prints
//!   an absolute path); those matching `baseline` are Stage-1 models, an ensemble evaluation
//!   (several embeddings) is marked `ensemble`, the others are Stage-2 models.
//! - `training` (optional, `train` / `distill` artifacts with `curves.parquet` and
//!   `metrics.json`): curves, and the validation scores that choose a comparison's start.
//! - `correspondences` (optional, one `correspondences` artifact).
//! - `features` (optional): split sizes for the report's header; clips and captions of
//!   `report.html`.
//! - `dataset` (optional): the data set the features were computed from, whose audio
//!   `report.html` plays (copied into `audio/`).
//!
//! # Outputs
//! - `report.md`; `training_curves.png` (with `training`); `correspondences.png` (with
//!   `correspondences`: for a few captions of the split, the clips ranked by the estimate
//!   `C_hat` (mean teacher cosine), the top 30, the annotated clip in red; the title gives the
//!   annotated clip's rank).
//! - `report.html` ([`crate::html`]): the report, a test-query explorer (the headline's first
//!   student against its start, each query's top clips with players) and the teachers' best
//!   clips for a few training captions.
//! - `metrics.json`: `models`, `stage1_models`, `stage2_models`; `comparisons: {<students
//!   stage>: {...}}` and `headline` (the first comparison): `student_map10` and, per reference
//!   (`control`, `start`, `teachers`), `<role>_map10` and `minus_<role>_map10` as `{n, mean, sd,
//!   ci_low, ci_high}` over seeds (Student-t interval), and `per_seed: {<student>:
//!   {student_map10, <role>: <evaluation>, minus_<role>_map10: {value, ci_low, ci_high}}}` (paired bootstrap over
//!   clips); fractions in `[0, 1]`. Paired models must have been evaluated on the same queries.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;

use anyhow::{Context, ensure};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Int64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipeline_api::{
    InputArtifact, InputCounts, ParamError, Plan, Resources, RunContext, StageKind, parse_params,
};
use pipeline_formats::{CLIPS_FILE, FeatureTables, Split, Table};
use serde::{Deserialize, Serialize};

use crate::compare::{self, Comparison};
use crate::correspondences::{CORRESPONDENCES_FILE, teacher_names};
use crate::evaluate::{EvaluationMetrics, QueryRank, read_metrics, read_ranks, read_top};
use crate::html;
use crate::metrics::{RetrievalIntervals, RetrievalScores};
use crate::plot::{self, BarPanel, LinePanel, Series};
use crate::statistics::Interval;

/// Report file name.
pub const REPORT_FILE: &str = "report.md";
/// Training curves file of a `train` / `distill` artifact.
pub const CURVES_FILE: &str = "curves.parquet";

/// Patterns naming the Stage-1 evaluation nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Baseline {
    /// One pattern.
    One(String),
    /// Several patterns; a node matching any of them is Stage 1.
    Many(Vec<String>),
}

impl Baseline {
    fn patterns(&self) -> Vec<&str> {
        match self {
            Baseline::One(p) => vec![p.as_str()],
            Baseline::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }

    /// Whether `node` is a Stage-1 node.
    pub fn matches(&self, node: &str) -> bool {
        self.patterns().iter().any(|p| pattern_matches(p, node))
    }
}

/// A pattern without `*` matches node names that start with it (`"evaluate."` matches
/// `"evaluate.seed-1"`); with `*`, it is a glob over the whole name (`*` = any characters).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return name.starts_with(pattern);
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(pos) => rest = &rest[pos + part.len()..],
            None => return false,
        }
    }
    true
}

/// Parameters of `report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// Which `evaluations` nodes are Stage-1 models: a pattern or a list of patterns (a pattern
    /// without `*` is a node-name prefix; with `*` a glob). Others are Stage 2. Default
    /// `"evaluate."`: the members of a `foreach`/matrix stage named `evaluate`
    /// (`evaluate.seed-1`, ...), not `evaluate-distill`.
    #[serde(default = "default_baseline")]
    pub baseline: Baseline,
    /// Bootstrap resamples of the paired comparisons (default 1000).
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Seed of the paired bootstrap (default 0).
    #[serde(default)]
    pub seed: u64,
    /// Number of captions shown in `correspondences.png` (default 4, 0 for none).
    #[serde(default = "default_plot_captions")]
    pub plot_captions: usize,
    /// Title of `report.md` (default "Language-based audio retrieval: report").
    #[serde(default = "default_title")]
    pub title: String,
    /// Test queries in `report.html`'s explorer (default 8; 0 for none).
    #[serde(default = "default_listen_queries")]
    pub listen_queries: usize,
    /// Training captions in `report.html` with the clips the teachers estimate best (default 3).
    #[serde(default = "default_listen_captions")]
    pub listen_captions: usize,
    /// The comparisons, one section each; the first is the report's headline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comparisons: Vec<Comparison>,
}

fn default_baseline() -> Baseline {
    Baseline::One("evaluate.".to_owned())
}
fn default_bootstrap() -> usize {
    1000
}
fn default_plot_captions() -> usize {
    4
}
fn default_listen_queries() -> usize {
    8
}
fn default_listen_captions() -> usize {
    3
}
fn default_title() -> String {
    "Language-based audio retrieval: report".to_owned()
}

/// The `report` stage kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report;

impl StageKind for Report {
    fn name(&self) -> &'static str {
        "report"
    }

    fn summary(&self) -> &'static str {
        "Markdown report: every model's metrics with intervals, Stage 2 vs best Stage 1 (paired bootstrap), correspondence quality, plots"
    }

    fn version(&self) -> u32 {
        // 2: the headline says that its two models are chosen on the test split.
        // 3: inputs bound by an external path are labelled by its last component, not by the
        // absolute path.
        // 4: declared comparisons over seeds replace the best-on-test headline; intervals
        // resample clips. 5: `report.html` with players (input `dataset`).
        5
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(
            &["evaluations"],
            &["training", "correspondences", "features", "dataset"],
        )?;
        inputs.expect_single("correspondences")?;
        inputs.expect_single("features")?;
        inputs.expect_single("dataset")?;
        let p: ReportParams = parse_params(params)?;
        if p.baseline.patterns().iter().any(|s| s.is_empty()) {
            return Err(ParamError::at("baseline", "patterns must not be empty"));
        }
        for (i, c) in p.comparisons.iter().enumerate() {
            for (key, name) in c.names() {
                if name.is_empty() || name.contains('*') {
                    return Err(ParamError::at(
                        &format!("comparisons[{i}].{key}"),
                        "must name a stage or a node (no pattern)",
                    ));
                }
            }
            if c.start_chosen_by.is_some() && c.start.is_none() {
                return Err(ParamError::at(
                    &format!("comparisons[{i}].start_chosen_by"),
                    "needs `start`, the stage of the starts' evaluations",
                ));
            }
        }
        Plan::new(&p, Resources::LIGHT)
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let p: ReportParams = ctx.params()?;
        run(ctx, &p)
    }
}

/// One evaluation of the report.
pub(crate) struct Model {
    pub(crate) name: String,
    dir: std::path::PathBuf,
    stage1: bool,
    pub(crate) metrics: EvaluationMetrics,
    pub(crate) ranks: BTreeMap<i64, QueryRank>,
}

impl Model {
    fn role(&self) -> &'static str {
        if self.metrics.members > 1 {
            "ensemble"
        } else if self.stage1 {
            "1"
        } else {
            "2"
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

fn pct_ci(x: f64, ci: Interval) -> String {
    format!("{} [{}, {}]", pct(x), pct(ci.low), pct(ci.high))
}

fn run(ctx: &RunContext<'_>, p: &ReportParams) -> anyhow::Result<()> {
    let mut models = Vec::new();
    for a in ctx.inputs("evaluations") {
        let name = crate::input_label(a);
        let metrics = read_metrics(&a.path).with_context(|| format!("evaluation `{name}`"))?;
        let ranks = read_ranks(&a.path).with_context(|| format!("evaluation `{name}`"))?;
        models.push(Model {
            stage1: p.baseline.matches(&name),
            dir: a.path.clone(),
            name,
            metrics,
            ranks,
        });
    }
    ensure!(!models.is_empty(), "no evaluation to report");
    let mut md = String::new();
    writeln!(md, "# {}\n", p.title)?;
    if let Some(features) = ctx.optional_input("features")? {
        let clips_path = features.join(CLIPS_FILE);
        let t = Table::open(&clips_path)?;
        let splits = t.splits("split")?;
        let count = |s: Split| splits.iter().filter(|x| **x == s).count();
        writeln!(
            md,
            "Data: {} training, {} validation, {} test clips.\n",
            count(Split::Train),
            count(Split::Val),
            count(Split::Test)
        )?;
    }
    writeln!(
        md,
        "All numbers are percentages. Text → audio: every caption of the split queries every clip of the split; \
         ties are broken by the lower clip index. Intervals are 95 % bootstrap percentile intervals that resample \
         clips, each with all its captions. Stage `ensemble`: ranked by the mean cosine of several models.\n"
    )?;

    // Main table.
    writeln!(md, "## Text → audio retrieval\n")?;
    writeln!(
        md,
        "| model | stage | queries | mAP@10 | R@1 | R@5 | R@10 |"
    )?;
    writeln!(md, "|---|---|---:|---|---|---|---|")?;
    for m in &models {
        let (s, c): (&RetrievalScores, &RetrievalIntervals) = (&m.metrics.t2a, &m.metrics.t2a_ci);
        writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            m.name,
            m.role(),
            m.metrics.queries,
            pct_ci(s.map10, c.map10),
            pct_ci(s.r1, c.r1),
            pct_ci(s.r5, c.r5),
            pct_ci(s.r10, c.r10)
        )?;
    }
    writeln!(md)?;

    // Comparisons.
    let mut json = serde_json::Map::new();
    json.insert("models".into(), models.len().into());
    json.insert(
        "stage1_models".into(),
        models.iter().filter(|m| m.role() == "1").count().into(),
    );
    json.insert(
        "stage2_models".into(),
        models.iter().filter(|m| m.role() == "2").count().into(),
    );
    let training: Vec<(String, &InputArtifact)> = ctx
        .inputs("training")
        .iter()
        .map(|a| (crate::input_label(a), a))
        .collect();
    let mut comparisons = serde_json::Map::new();
    for c in &p.comparisons {
        let entry = compare::section(&mut md, c, &models, &training, p.bootstrap, p.seed)?;
        if comparisons.is_empty() {
            json.insert("headline".into(), entry.clone());
        }
        comparisons.insert(c.students.clone(), entry);
    }
    if p.comparisons.is_empty() {
        writeln!(
            md,
            "_No comparison declared (`comparisons` in the report's parameters)._\n"
        )?;
    }
    json.insert("comparisons".into(), comparisons.into());

    // Audio → text.
    writeln!(md, "## Audio → text retrieval\n")?;
    writeln!(
        md,
        "\"any\": R@K = 1 if the best-ranked of the clip's captions is within K; \"fraction\": the clip's captions within K \
         divided by its number of captions. mAP@10 is the multi-relevant AP@10 (same in both).\n"
    )?;
    writeln!(
        md,
        "| model | mAP@10 | R@1 (any) | R@10 (any) | R@1 (fraction) | R@10 (fraction) |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|")?;
    for m in &models {
        let (a, ac, f, fc) = (
            &m.metrics.a2t_any,
            &m.metrics.a2t_any_ci,
            &m.metrics.a2t_fraction,
            &m.metrics.a2t_fraction_ci,
        );
        writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} |",
            m.name,
            pct_ci(a.map10, ac.map10),
            pct_ci(a.r1, ac.r1),
            pct_ci(a.r10, ac.r10),
            pct_ci(f.r1, fc.r1),
            pct_ci(f.r10, fc.r10)
        )?;
    }
    writeln!(md)?;
    if models.iter().any(|m| m.metrics.t2a_graded.is_some()) {
        writeln!(md, "### Graded text → audio (ground-truth relevance)\n")?;
        writeln!(
            md,
            "DCASE 2025 multi-relevant mAP@10 with two relevant sets per caption: its annotated clip and every clip \
             with relevance > 0 (partial matches), or with relevance >= 1 (clips the caption fully describes, \
             \"full\"); nDCG@10 uses linear gains max(relevance, 1 if annotated).\n"
        )?;
        writeln!(md, "| model | mAP@10 (partial) | mAP@10 (full) | nDCG@10 |")?;
        writeln!(md, "|---|---|---|---|")?;
        for m in &models {
            if let (Some(g), Some(c)) = (&m.metrics.t2a_graded, &m.metrics.t2a_graded_ci) {
                writeln!(
                    md,
                    "| `{}` | {} | {} | {} |",
                    m.name,
                    pct_ci(g.map10, c.map10),
                    pct_ci(g.map10_full, c.map10_full),
                    pct_ci(g.ndcg10, c.ndcg10)
                )?;
            }
        }
        writeln!(md)?;
    }

    // Correspondences.
    if let Some(dir) = ctx.optional_input("correspondences")? {
        correspondences_section(&mut md, dir, p, ctx)?;
    }

    // Training curves.
    let training = ctx.inputs("training");
    if !training.is_empty() {
        let mut loss = Vec::new();
        let mut val = Vec::new();
        for a in training {
            let name = crate::input_label(a);
            let (l, v) = read_curves(&a.path.join(CURVES_FILE))
                .with_context(|| format!("training `{name}`"))?;
            loss.push(Series {
                name: name.clone(),
                points: l,
            });
            val.push(Series {
                name,
                points: v.into_iter().map(|(e, x)| (e, 100.0 * x)).collect(),
            });
        }
        plot::line_panels(
            &ctx.out_dir.join("training_curves.png"),
            &[
                LinePanel {
                    title: "training loss (mean per epoch)".into(),
                    x_label: "epoch".into(),
                    y_label: "loss".into(),
                    series: loss,
                },
                LinePanel {
                    title: "validation mAP@10 (%)".into(),
                    x_label: "epoch".into(),
                    y_label: "mAP@10 (%)".into(),
                    series: val,
                },
            ],
            true,
        )?;
        writeln!(
            md,
            "## Training curves\n\n![training curves](training_curves.png)\n"
        )?;
    }

    let features = ctx
        .optional_input("features")?
        .map(FeatureTables::load)
        .transpose()?;
    let explorer = match &features {
        Some(_) => explorer(&models, json.get("headline"), p.listen_queries)?,
        None => None,
    };
    let estimated = match ctx.optional_input("correspondences")? {
        Some(dir) if p.listen_captions > 0 => {
            caption_estimates(&dir.join(CORRESPONDENCES_FILE), p.listen_captions)?
                .into_iter()
                .map(|c| html::Estimated {
                    caption_index: c.caption_index,
                    clips: c.clips.into_iter().take(html::SHOWN).collect(),
                })
                .collect()
        }
        _ => Vec::new(),
    };
    html::write(
        ctx.out_dir,
        &html::Page {
            title: &p.title,
            markdown: &md,
            explorer,
            estimated,
            features: features.as_ref(),
            dataset: ctx.optional_input("dataset")?,
        },
    )?;
    fs_err::write(ctx.out_dir.join(REPORT_FILE), md)?;
    ctx.write_metrics(&serde_json::Value::Object(json))?;
    Ok(())
}

/// The explorer's two models: the headline's first student and its start (else the first
/// Stage-1 and Stage-2 evaluations), and its queries: where Stage 2 gained and lost the most
/// ranks, then a sample evenly spaced over the captions.
fn explorer(
    models: &[Model],
    headline: Option<&serde_json::Value>,
    n: usize,
) -> anyhow::Result<Option<html::Explorer>> {
    let by_name = |name: &str| models.iter().find(|m| m.name == name);
    let declared = headline.and_then(|h| {
        let student = h["students"][0].as_str()?;
        let start = h["per_seed"][student]["start"].as_str()?;
        Some((by_name(start)?, by_name(student)?))
    });
    let Some((stage1, stage2)) = declared.or_else(|| {
        Some((
            models.iter().find(|m| m.role() == "1")?,
            models.iter().find(|m| m.role() == "2")?,
        ))
    }) else {
        return Ok(None);
    };
    if n == 0 {
        return Ok(None);
    }
    let tops = [read_top(&stage1.dir)?, read_top(&stage2.dir)?];
    // Ranks gained by Stage 2 per query (positive: it ranks the annotated clip higher).
    let mut gains: Vec<(i64, i64)> = stage2
        .ranks
        .iter()
        .filter_map(|(q, r2)| {
            let r1 = stage1.ranks.get(q)?;
            Some((*q, r1.rank as i64 - r2.rank as i64))
        })
        .collect();
    let mut chosen: Vec<(i64, &'static str)> = Vec::new();
    let extremes = (n / 3).max(1);
    gains.sort_by_key(|&(q, g)| (-g, q));
    chosen.extend(
        gains
            .iter()
            .filter(|g| g.1 > 0)
            .take(extremes)
            .map(|g| (g.0, "Stage 2 gained most")),
    );
    gains.sort_by_key(|&(q, g)| (g, q));
    chosen.extend(
        gains
            .iter()
            .filter(|g| g.1 < 0)
            .take(extremes)
            .map(|g| (g.0, "Stage 2 lost most")),
    );
    let queries: Vec<i64> = stage2.ranks.keys().copied().collect();
    let rest = n.saturating_sub(chosen.len()).min(queries.len());
    for s in 0..rest {
        let q = queries[s * queries.len() / rest];
        if !chosen.iter().any(|c| c.0 == q) {
            chosen.push((q, "sample"));
        }
    }
    let queries = chosen
        .into_iter()
        .map(|(q, why)| {
            let columns = [stage1, stage2]
                .iter()
                .zip(&tops)
                .map(|(m, top)| {
                    let clips = top
                        .get(&q)
                        .with_context(|| format!("`{}` has no best clips for query {q}", m.name))?;
                    Ok((
                        m.ranks[&q].rank,
                        clips
                            .iter()
                            .take(html::SHOWN)
                            .map(|t| (t.clip_index, t.score))
                            .collect(),
                    ))
                })
                .collect::<anyhow::Result<_>>()?;
            Ok(html::Query {
                caption_index: q,
                why,
                columns,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Some(html::Explorer {
        models: vec![
            (stage1.name.clone(), stage1.role()),
            (stage2.name.clone(), stage2.role()),
        ],
        queries,
    }))
}

/// `(epoch, value)` points.
pub type Curve = Vec<(f64, f64)>;

/// Per-epoch mean training loss and last finite validation mAP@10 of a `curves.parquet`.
pub fn read_curves(path: &Path) -> anyhow::Result<(Curve, Curve)> {
    let t = Table::open(path)?;
    let epochs = t.i64s("epoch")?;
    let loss = t.f64s("train_loss")?;
    let val = t.f64s("val_map10")?;
    let mut per_epoch: BTreeMap<i64, (f64, usize, Option<f64>)> = BTreeMap::new();
    for ((e, l), v) in epochs.into_iter().zip(loss).zip(val) {
        let entry = per_epoch.entry(e).or_insert((0.0, 0, None));
        if l.is_finite() {
            entry.0 += l;
            entry.1 += 1;
        }
        if v.is_finite() {
            entry.2 = Some(v);
        }
    }
    let loss = per_epoch
        .iter()
        .filter(|(_, v)| v.1 > 0)
        .map(|(e, v)| (*e as f64, v.0 / v.1 as f64))
        .collect();
    let val = per_epoch
        .iter()
        .filter_map(|(e, v)| v.2.map(|x| (*e as f64, x)))
        .collect();
    Ok((loss, val))
}

fn correspondences_section(
    md: &mut String,
    dir: &Path,
    p: &ReportParams,
    ctx: &RunContext<'_>,
) -> anyhow::Result<()> {
    let path = dir.join(pipeline_api::METRICS_FILE);
    let m: serde_json::Value = serde_json::from_slice(&fs_err::read(&path)?)
        .with_context(|| format!("parsing `{}`", path.display()))?;
    let table = dir.join(CORRESPONDENCES_FILE);
    let names = teacher_names(&table).unwrap_or_default();
    writeln!(md, "## Estimated correspondences\n")?;
    let num = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_f64);
    writeln!(
        md,
        "{} pairs ({} clips × {} captions), {} teacher(s). Mean estimate (mean teacher cosine): {:.3} on annotated pairs, {:.3} on the others.\n",
        num(&m, "pairs").unwrap_or(f64::NAN),
        num(&m, "clips").unwrap_or(f64::NAN),
        num(&m, "captions").unwrap_or(f64::NAN),
        num(&m, "teachers").unwrap_or(f64::NAN),
        num(&m, "estimate_mean_match").unwrap_or(f64::NAN),
        num(&m, "estimate_mean_nonmatch").unwrap_or(f64::NAN),
    )?;
    writeln!(
        md,
        "Fit: text → audio mAP@10 / R@1 (%) for each caption's annotated clip on this split. Agreement with the ground truth, where it \
         exists: Spearman correlation with the true relevance over pairs, and nDCG@10 (%) of each caption's clips ranked by the scorer. \
         `annotation` is the binary annotated-match indicator Stage 1 trains on.\n"
    )?;
    writeln!(md, "| scorer | t2a mAP@10 | t2a R@1 | Spearman | nDCG@10 |")?;
    writeln!(md, "|---|---|---|---|---|")?;
    let mut scorers: Vec<(String, String)> = Vec::new();
    let mut m_idx = 0;
    while m.get(format!("teacher_{m_idx}")).is_some() {
        let label = names.get(m_idx).map_or_else(
            || format!("teacher_{m_idx}"),
            |n| format!("teacher_{m_idx} (`{n}`)"),
        );
        scorers.push((format!("teacher_{m_idx}"), label));
        m_idx += 1;
    }
    scorers.push(("ensemble".into(), "ensemble (C_hat)".into()));
    scorers.push(("annotation".into(), "annotation (binary)".into()));
    let fmt = |v: Option<f64>, scale: f64| {
        v.map_or_else(|| "–".to_owned(), |x| format!("{:.2}", scale * x))
    };
    for (key, label) in scorers {
        let Some(s) = m.get(&key) else { continue };
        writeln!(
            md,
            "| {label} | {} | {} | {} | {} |",
            fmt(num(s, "t2a_map10"), 100.0),
            fmt(num(s, "t2a_r1"), 100.0),
            fmt(num(s, "spearman"), 1.0),
            fmt(num(s, "ndcg10"), 100.0)
        )?;
    }
    writeln!(md)?;
    if p.plot_captions > 0 && table.exists() {
        let panels = caption_panels(&table, p.plot_captions, 30)?;
        if !panels.is_empty() {
            plot::bar_panels(&ctx.out_dir.join("correspondences.png"), &panels, true)?;
            writeln!(
                md,
                "For {} captions, the clips ranked by the estimate C_hat (top 30; red: the caption's annotated clip).\n\n\
                 ![estimated correspondences](correspondences.png)\n",
                panels.len()
            )?;
        }
    }
    Ok(())
}

/// One caption of the correspondence table and every clip by its estimate, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionEstimates {
    pub caption_index: i64,
    pub text: String,
    /// `(audio_index, estimate, is_match)`; ties keep the table's (clip) order.
    pub clips: Vec<(i64, f32, bool)>,
}

/// Streams the correspondence table for `n` captions evenly spaced among the split's.
pub fn caption_estimates(table: &Path, n: usize) -> anyhow::Result<Vec<CaptionEstimates>> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(table)?)?;
    let value_col = "estimate";
    let wanted = [
        "caption_index",
        "caption",
        "audio_index",
        "is_match",
        value_col,
    ];
    let parquet_schema = builder.parquet_schema();
    let leaves: Vec<usize> = wanted
        .iter()
        .map(|w| {
            (0..parquet_schema.num_columns())
                .find(|&i| parquet_schema.column(i).name() == *w)
                .with_context(|| format!("`{}` has no column `{w}`", table.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let mask = ProjectionMask::leaves(parquet_schema, leaves);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(1 << 16)
        .build()?;
    // caption_index -> (text, [(audio_index, value, is_match)])
    type Chosen = BTreeMap<i64, (String, Vec<(i64, f32, bool)>)>;
    let mut chosen: Option<Chosen> = None;
    for batch in reader {
        let batch: RecordBatch = batch?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .with_context(|| format!("column `{name}`"))
        };
        let caps = col("caption_index")?.as_primitive::<Int64Type>().clone();
        let texts = arrow::compute::cast(col("caption")?, &arrow::datatypes::DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let matches = col("is_match")?.as_boolean().clone();
        let values = col(value_col)?.as_primitive::<Float32Type>().clone();
        let audio = col("audio_index")?.as_primitive::<Int64Type>().clone();
        let chosen = chosen.get_or_insert_with(|| {
            // The first clip's rows list every caption of the split (clip-major order).
            let all: Vec<i64> = (0..batch.num_rows())
                .take_while(|&r| audio.value(r) == audio.value(0))
                .map(|r| caps.value(r))
                .collect();
            let k = n.min(all.len()).max(1);
            (0..k)
                .map(|s| (all[s * all.len() / k], (String::new(), Vec::new())))
                .collect()
        });
        for r in 0..batch.num_rows() {
            if let Some(entry) = chosen.get_mut(&caps.value(r)) {
                if entry.0.is_empty() && texts.is_valid(r) {
                    entry.0 = texts.value(r).to_owned();
                }
                entry
                    .1
                    .push((audio.value(r), values.value(r), matches.value(r)));
            }
        }
    }
    let Some(chosen) = chosen else {
        return Ok(Vec::new());
    };
    Ok(chosen
        .into_iter()
        .map(|(caption_index, (text, mut clips))| {
            // Descending value; stable, so ties keep the table's (clip) order.
            clips.sort_by(|a, b| b.1.total_cmp(&a.1));
            CaptionEstimates {
                caption_index,
                text,
                clips,
            }
        })
        .collect())
}

/// One bar panel per caption of [`caption_estimates`]: its top `top` clips by `estimate`
/// (mean teacher cosine; the split-wide `p(a|c)` at τ = 0.05 is too peaked to show more than
/// the first bar).
pub fn caption_panels(table: &Path, n: usize, top: usize) -> anyhow::Result<Vec<BarPanel>> {
    Ok(caption_estimates(table, n)?
        .into_iter()
        .map(|c| {
            let match_rank = c
                .clips
                .iter()
                .position(|x| x.2)
                .map_or("none".to_owned(), |r| (r + 1).to_string());
            let shown = &c.clips[..top.min(c.clips.len())];
            let mut title: String = c.text.chars().take(60).collect();
            if c.text.chars().count() > 60 {
                title.push('…');
            }
            BarPanel {
                title: format!("\"{title}\" (match at rank {match_rank})"),
                x_label: "clips ranked by the estimate".into(),
                y_label: "estimate (mean teacher cosine)".into(),
                values: shown.iter().map(|x| f64::from(x.1)).collect(),
                highlighted: shown.iter().map(|x| x.2).collect(),
            }
        })
        .collect())
}
