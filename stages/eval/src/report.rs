//! Kind `report`: one Markdown report over many evaluations, with the Stage-2 vs Stage-1
//! comparison (paired bootstrap over the same queries), the correspondence-quality table and
//! PNG plots.
//!
//! # Inputs
//! - `evaluations` (required, one or more `evaluate` artifacts): the node name of each is its
//!   label (for an external path: the path's last component, so that the report never prints
//!   an absolute path); those matching `baseline` are Stage-1 models, the others Stage-2 models.
//! - `training` (optional, `train` / `distill` artifacts with `curves.parquet`).
//! - `correspondences` (optional, one `correspondences` artifact).
//! - `features` (optional): split sizes for the report's header.
//!
//! # Outputs
//! - `report.md`; `training_curves.png` (with `training`); `correspondences.png` (with
//!   `correspondences`: for a few captions of the split, the clips ranked by the estimate
//!   `C_hat` (mean teacher cosine), the top 30, the annotated clip in red; the title gives the
//!   annotated clip's rank).
//! - `metrics.json`: `models`, `stage1_models`, `stage2_models`, `best_stage1_map10`,
//!   `best_stage2_map10` and `stage2_minus_best_stage1_map10: {value, ci_low, ci_high}` (best
//!   Stage-2 model minus best Stage-1 model on text → audio mAP@10, 95 % paired bootstrap interval
//!   over the queries), plus `margins: {<stage-2 node>: {value, ci_low, ci_high}}` for every
//!   Stage-2 model; fractions in `[0, 1]`. Comparisons need both models evaluated on the same
//!   queries (same `caption_index` set in `ranks.parquet`); a Stage-2 model evaluated on other
//!   queries is listed as "n/a" and left out of the margins.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;

use anyhow::{Context, ensure};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Int64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipeline_api::{InputCounts, ParamError, Plan, Resources, RunContext, StageKind, parse_params};
use pipeline_formats::{CLIPS_FILE, Split, Table};
use serde::{Deserialize, Serialize};

use crate::correspondences::{CORRESPONDENCES_FILE, teacher_names};
use crate::evaluate::{EvaluationMetrics, read_metrics, read_ranks};
use crate::metrics::{self, RetrievalIntervals, RetrievalScores};
use crate::plot::{self, BarPanel, LinePanel, Series};
use crate::statistics::{self, Interval};

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
        3
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(
            &["evaluations"],
            &["training", "correspondences", "features"],
        )?;
        inputs.expect_single("correspondences")?;
        inputs.expect_single("features")?;
        let p: ReportParams = parse_params(params)?;
        if p.baseline.patterns().iter().any(|s| s.is_empty()) {
            return Err(ParamError::at("baseline", "patterns must not be empty"));
        }
        Plan::new(&p, Resources::LIGHT)
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let p: ReportParams = ctx.params()?;
        run(ctx, &p)
    }
}

struct Model {
    name: String,
    stage1: bool,
    metrics: EvaluationMetrics,
    ranks: BTreeMap<i64, usize>,
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

fn pct_ci(x: f64, ci: Interval) -> String {
    format!("{} [{}, {}]", pct(x), pct(ci.low), pct(ci.high))
}

fn signed_pct_ci(x: f64, ci: Interval) -> String {
    format!(
        "{:+.2} [{:+.2}, {:+.2}]",
        100.0 * x,
        100.0 * ci.low,
        100.0 * ci.high
    )
}

/// `(AP@10 of a, AP@10 of b, R@1 of a, R@1 of b)` per query.
type PairedValues = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

/// Per-query AP@10 and R@1 of two models over the same queries; errors if the query sets
/// differ.
fn paired(a: &Model, b: &Model) -> anyhow::Result<PairedValues> {
    ensure!(
        a.ranks.len() == b.ranks.len() && a.ranks.keys().eq(b.ranks.keys()),
        "`{}` and `{}` were evaluated on different queries; cannot pair them",
        a.name,
        b.name
    );
    let (mut ap_a, mut ap_b, mut r1_a, mut r1_b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (ra, rb) in a.ranks.values().zip(b.ranks.values()) {
        let (va, vb) = (
            metrics::single_relevant_values(*ra),
            metrics::single_relevant_values(*rb),
        );
        ap_a.push(va[3]);
        ap_b.push(vb[3]);
        r1_a.push(va[0]);
        r1_b.push(vb[0]);
    }
    Ok((ap_a, ap_b, r1_a, r1_b))
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Margin {
    value: f64,
    ci_low: f64,
    ci_high: f64,
}

fn run(ctx: &RunContext<'_>, p: &ReportParams) -> anyhow::Result<()> {
    let mut models = Vec::new();
    for a in ctx.inputs("evaluations") {
        let name = crate::input_label(a);
        let metrics = read_metrics(&a.path).with_context(|| format!("evaluation `{name}`"))?;
        let ranks = read_ranks(&a.path).with_context(|| format!("evaluation `{name}`"))?;
        models.push(Model {
            stage1: p.baseline.matches(&name),
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
         ties are broken by the lower clip index. Intervals are 95 % bootstrap percentile intervals over queries.\n"
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
            if m.stage1 { 1 } else { 2 },
            m.metrics.queries,
            pct_ci(s.map10, c.map10),
            pct_ci(s.r1, c.r1),
            pct_ci(s.r5, c.r5),
            pct_ci(s.r10, c.r10)
        )?;
    }
    writeln!(md)?;

    // Comparison.
    let best = |stage1: bool| {
        models
            .iter()
            .filter(|m| m.stage1 == stage1)
            .max_by(|a, b| a.metrics.t2a.map10.total_cmp(&b.metrics.t2a.map10))
    };
    let mut json = serde_json::Map::new();
    json.insert("models".into(), models.len().into());
    json.insert(
        "stage1_models".into(),
        models.iter().filter(|m| m.stage1).count().into(),
    );
    json.insert(
        "stage2_models".into(),
        models.iter().filter(|m| !m.stage1).count().into(),
    );
    match (best(true), best(false)) {
        (Some(b1), Some(b2)) => {
            json.insert("best_stage1_map10".into(), b1.metrics.t2a.map10.into());
            json.insert("best_stage2_map10".into(), b2.metrics.t2a.map10.into());
            writeln!(md, "## Stage 2 vs the best Stage-1 model (`{}`)\n", b1.name)?;
            writeln!(
                md,
                "Paired differences over the same queries (Stage 2 minus Stage 1), 95 % paired bootstrap intervals \
                 ({} resamples).\n",
                p.bootstrap
            )?;
            writeln!(md, "| Stage-2 model | Δ mAP@10 | Δ R@1 |")?;
            writeln!(md, "|---|---|---|")?;
            let mut margins = serde_json::Map::new();
            for m in models.iter().filter(|m| !m.stage1) {
                let (ap2, ap1, r2, r1) = match paired(m, b1) {
                    Ok(v) => v,
                    Err(e) => {
                        ctx.reporter.log(&format!("{e:#}"));
                        writeln!(md, "| `{}` | n/a: {e} | n/a |", m.name)?;
                        continue;
                    }
                };
                let d_ap = statistics::mean(&ap2) - statistics::mean(&ap1);
                let ci_ap =
                    statistics::paired_bootstrap_diff_ci(&ap2, &ap1, p.bootstrap, p.seed, 0.95);
                let d_r1 = statistics::mean(&r2) - statistics::mean(&r1);
                let ci_r1 =
                    statistics::paired_bootstrap_diff_ci(&r2, &r1, p.bootstrap, p.seed, 0.95);
                writeln!(
                    md,
                    "| `{}` | {} | {} |",
                    m.name,
                    signed_pct_ci(d_ap, ci_ap),
                    signed_pct_ci(d_r1, ci_r1)
                )?;
                let margin = Margin {
                    value: d_ap,
                    ci_low: ci_ap.low,
                    ci_high: ci_ap.high,
                };
                margins.insert(m.name.clone(), serde_json::to_value(margin)?);
                if m.name == b2.name {
                    json.insert(
                        "stage2_minus_best_stage1_map10".into(),
                        serde_json::to_value(margin)?,
                    );
                }
            }
            json.insert("margins".into(), margins.into());
            writeln!(
                md,
                "\nHeadline: best Stage-2 model `{}` minus best Stage-1 model `{}`. Both are the best \
                 of their group on this test split, so the headline is a summary, not an unbiased \
                 estimate; each row above compares one model fixed in advance.\n",
                b2.name, b1.name
            )?;
        }
        _ => {
            writeln!(
                md,
                "_No Stage-2 vs Stage-1 comparison: the baseline pattern selects all or none of the evaluations._\n"
            )?;
        }
    }

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

    fs_err::write(ctx.out_dir.join(REPORT_FILE), md)?;
    ctx.write_metrics(&serde_json::Value::Object(json))?;
    Ok(())
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

/// Streams the correspondence table and builds one bar panel per chosen caption (evenly spaced
/// among the split's captions): its top `top` clips by `estimate` (mean teacher cosine; the
/// split-wide `p(a|c)` at τ = 0.05 is too peaked to show more than the first bar).
pub fn caption_panels(table: &Path, n: usize, top: usize) -> anyhow::Result<Vec<BarPanel>> {
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
    // caption_index -> (text, [(value, is_match)])
    type Chosen = BTreeMap<i64, (String, Vec<(f32, bool)>)>;
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
        let chosen = chosen.get_or_insert_with(|| {
            // The first clip's rows list every caption of the split (clip-major order).
            let first_audio = batch
                .column_by_name("audio_index")
                .map(|a| a.as_primitive::<Int64Type>().value(0));
            let all: Vec<i64> = (0..batch.num_rows())
                .take_while(|&r| {
                    first_audio.is_none_or(|f| {
                        batch
                            .column_by_name("audio_index")
                            .unwrap()
                            .as_primitive::<Int64Type>()
                            .value(r)
                            == f
                    })
                })
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
                entry.1.push((values.value(r), matches.value(r)));
            }
        }
    }
    let Some(chosen) = chosen else {
        return Ok(Vec::new());
    };
    Ok(chosen
        .into_values()
        .map(|(text, mut v)| {
            // Descending value; stable, so ties keep the table's (clip) order.
            v.sort_by(|a, b| b.0.total_cmp(&a.0));
            let match_rank = v
                .iter()
                .position(|x| x.1)
                .map_or("none".to_owned(), |r| (r + 1).to_string());
            let shown: Vec<(f32, bool)> = v.into_iter().take(top).collect();
            let mut title: String = text.chars().take(60).collect();
            if text.chars().count() > 60 {
                title.push('…');
            }
            BarPanel {
                title: format!("\"{title}\" (match at rank {match_rank})"),
                x_label: "clips ranked by the estimate".into(),
                y_label: "estimate (mean teacher cosine)".into(),
                values: shown.iter().map(|x| x.0 as f64).collect(),
                highlighted: shown.iter().map(|x| x.1).collect(),
            }
        })
        .collect())
}
