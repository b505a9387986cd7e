//! Kind `sweep`: the headline comparison of several reports as a function of a property of
//! their data sets: for the partial-match sweep (`pipelines/partial-matches.toml`), the Stage-2
//! gain over its control against how often a caption partly describes another clip.
//!
//! # Inputs
//! - `reports` (one or more `report` artifacts with a `headline` comparison);
//! - `datasets` (one per report): each report is paired with the data set of its matrix label
//!   (`report.variants-4` with `data.variants-4`), whose `metrics.json` holds the x value.
//!
//! # Outputs
//! - `sweep.md`: one row per report, in increasing x: the x value, the students' and the
//!   controls' mAP@10 (mean ± sd over seeds) and the students' difference to their controls and
//!   to the teachers (mean ± sd, 95 % Student-t interval over seeds);
//! - `sweep.png`: that difference against x, with its interval;
//! - `metrics.json`: `points: [{report, dataset, x, minus_control_map10, ...}]` as in the
//!   reports' `headline`.

use std::fmt::Write as _;

use anyhow::{Context, ensure};
use pipeline_api::{
    InputArtifact, InputCounts, METRICS_FILE, ParamError, Plan, Resources, RunContext, StageKind,
    parse_params,
};
use serde::{Deserialize, Serialize};

use crate::plot::{self, LinePanel, Series};

/// The sweep's table.
pub const SWEEP_FILE: &str = "sweep.md";

/// Parameters of `sweep`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepParams {
    /// Key of the x value in the data sets' `metrics.json` (default `partial_match_fraction`, a
    /// fraction shown in %).
    #[serde(default = "default_x")]
    pub x: String,
    /// What x is, for the table and the plot.
    #[serde(default = "default_x_label")]
    pub x_label: String,
    /// Title of `sweep.md`.
    #[serde(default = "default_title")]
    pub title: String,
}

fn default_x() -> String {
    "partial_match_fraction".to_owned()
}
fn default_x_label() -> String {
    "pairs of a caption and another clip that it partly describes (%)".to_owned()
}
fn default_title() -> String {
    "When do estimated correspondences help?".to_owned()
}

/// The `sweep` stage kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sweep;

impl StageKind for Sweep {
    fn name(&self) -> &'static str {
        "sweep"
    }

    fn summary(&self) -> &'static str {
        "The headline comparison of several reports against a property of their data sets, as a table and a plot"
    }

    fn version(&self) -> u32 {
        1
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(&["reports", "datasets"], &[])?;
        let p: SweepParams = parse_params(params)?;
        if p.x.is_empty() {
            return Err(ParamError::at(
                "x",
                "must name a key of the data sets' metrics",
            ));
        }
        Plan::new(&p, Resources::LIGHT)
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let p: SweepParams = ctx.params()?;
        run(ctx, &p)
    }
}

fn read_json(artifact: &InputArtifact) -> anyhow::Result<serde_json::Value> {
    let path = artifact.path.join(METRICS_FILE);
    serde_json::from_slice(&fs_err::read(&path)?)
        .with_context(|| format!("`{}` is not JSON", path.display()))
}

/// The matrix label of a node name: what follows the stage name (`variants-4` of
/// `report.variants-4`), empty for a stage's only node.
fn label(name: &str) -> &str {
    name.split_once('.').map_or("", |(_, l)| l)
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v.get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(f64::NAN)
}

struct Point {
    report: String,
    dataset: String,
    x: f64,
    headline: serde_json::Value,
}

fn run(ctx: &RunContext<'_>, p: &SweepParams) -> anyhow::Result<()> {
    let datasets: Vec<(String, &InputArtifact)> = ctx
        .inputs("datasets")
        .iter()
        .map(|a| (crate::input_label(a), a))
        .collect();
    let mut points = Vec::new();
    for report in ctx.inputs("reports") {
        let name = crate::input_label(report);
        let (dataset, data) = datasets
            .iter()
            .find(|(d, _)| label(d) == label(&name))
            .with_context(|| {
                format!(
                    "report `{name}` has no data set of its label `{}` among `datasets`",
                    label(&name)
                )
            })?;
        let x = read_json(data)?
            .get(&p.x)
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("data set `{dataset}` has no number `{}`", p.x))?;
        let headline = read_json(report)?
            .get("headline")
            .cloned()
            .with_context(|| format!("report `{name}` declares no comparison (`headline`)"))?;
        points.push(Point {
            report: name,
            dataset: dataset.clone(),
            x,
            headline,
        });
    }
    ensure!(!points.is_empty(), "no report to sweep");
    points.sort_by(|a, b| a.x.total_cmp(&b.x));

    let mut md = String::new();
    writeln!(md, "# {}\n", p.title)?;
    writeln!(
        md,
        "Each row is one report's headline comparison: the students and their controls over training seeds \
         (mean ± standard deviation), and the students' mAP@10 minus their controls' and minus the teacher \
         ensemble's, with the 95 % Student-t interval over seeds. All in %.\n"
    )?;
    writeln!(
        md,
        "| data set | {} | seeds | student mAP@10 | control mAP@10 | Δ vs control | Δ vs teachers |",
        p.x_label
    )?;
    writeln!(md, "|---|---:|---:|---|---|---|---|")?;
    let over = |h: &serde_json::Value, key: &str, signed: bool| -> String {
        let Some(v) = h.get(key) else {
            return "–".into();
        };
        let (m, sd) = (100.0 * num(v, "mean"), 100.0 * num(v, "sd"));
        let (lo, hi) = (100.0 * num(v, "ci_low"), 100.0 * num(v, "ci_high"));
        match (signed, sd.is_finite()) {
            (true, true) => format!("{m:+.2} ± {sd:.2} [{lo:+.2}, {hi:+.2}]"),
            (true, false) => format!("{m:+.2}"),
            (false, true) => format!("{m:.2} ± {sd:.2}"),
            (false, false) => format!("{m:.2}"),
        }
    };
    let (mut mean, mut low, mut high) = (Vec::new(), Vec::new(), Vec::new());
    for point in &points {
        let h = &point.headline;
        writeln!(
            md,
            "| `{}` | {:.2} | {} | {} | {} | {} | {} |",
            point.dataset,
            100.0 * point.x,
            h.get("student_map10").map_or(f64::NAN, |v| num(v, "n")),
            over(h, "student_map10", false),
            over(h, "control_map10", false),
            over(h, "minus_control_map10", true),
            over(h, "minus_teachers_map10", true),
        )?;
        if let Some(d) = h.get("minus_control_map10") {
            let x = 100.0 * point.x;
            mean.push((x, 100.0 * num(d, "mean")));
            if num(d, "ci_low").is_finite() {
                low.push((x, 100.0 * num(d, "ci_low")));
                high.push((x, 100.0 * num(d, "ci_high")));
            }
        }
    }
    writeln!(md)?;
    if !mean.is_empty() {
        plot::line_panels(
            &ctx.out_dir.join("sweep.png"),
            &[LinePanel {
                title: "Stage 2 minus its control, mAP@10 (points)".into(),
                x_label: p.x_label.clone(),
                y_label: "Δ mAP@10 (points)".into(),
                series: vec![
                    Series {
                        name: "mean over seeds".into(),
                        points: mean,
                    },
                    Series {
                        name: "95 % interval, low".into(),
                        points: low,
                    },
                    Series {
                        name: "95 % interval, high".into(),
                        points: high,
                    },
                ],
            }],
            true,
        )?;
        writeln!(
            md,
            "![the Stage-2 gain over its control against the rate of partial matches](sweep.png)\n"
        )?;
    }
    fs_err::write(ctx.out_dir.join(SWEEP_FILE), md)?;
    let json: Vec<serde_json::Value> = points
        .into_iter()
        .map(|pt| {
            let mut entry = serde_json::json!({
                "report": pt.report,
                "dataset": pt.dataset,
                "x": pt.x,
            });
            if let (Some(e), serde_json::Value::Object(h)) = (entry.as_object_mut(), pt.headline) {
                e.extend(h);
            }
            entry
        })
        .collect();
    ctx.write_metrics(&serde_json::json!({ "points": json }))?;
    Ok(())
}
