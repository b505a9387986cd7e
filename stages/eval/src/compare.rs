//! The report's comparisons: every Stage-2 student against its own control, its own start and
//! the teacher ensemble, per training seed (paired bootstrap over clips, on the same queries)
//! and over seeds (mean ± standard deviation, Student-t interval of the mean).
//!
//! Nothing here looks at the test split to choose a model: a student's references are fixed by
//! matrix label (`evaluate-distill.seed-2` against `evaluate-continued.seed-2`), and a start
//! shared by all students is the Stage-1 member with the best *validation* mAP@10, read from the
//! training artifacts, as the `distill` kind chooses it.

use std::fmt::Write as _;

use anyhow::{Context, bail, ensure};
use pipeline_api::{InputArtifact, METRICS_FILE};
use serde::{Deserialize, Serialize};

use crate::metrics;
use crate::report::Model;
use crate::statistics::{self, Clusters, Interval, OverSeeds};

/// Confidence level of the comparisons.
const LEVEL: f64 = 0.95;

/// One comparison of the report: a stage of student evaluations (one member per training seed)
/// against references bound by label or chosen on validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    /// Section title (default: the students' stage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Stage of the students' evaluations: `evaluate-distill` means `evaluate-distill` itself or
    /// its members `evaluate-distill.<label>`.
    pub students: String,
    /// Stage of the controls' evaluations, paired with the students by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controls: Option<String>,
    /// Stage of the evaluations of the students' starting models: by label, or the member chosen
    /// by `start_chosen_by`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Stage of `training` inputs (e.g. `train`) whose member with the best validation mAP@10
    /// (`val.map10` in its `metrics.json`; the first on ties) is every student's start; the start
    /// evaluation is the member of `start` with that member's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_chosen_by: Option<String>,
    /// An evaluation of the teacher ensemble, compared with every student: a node, or a stage
    /// of which the report binds one member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teachers: Option<String>,
}

impl Comparison {
    /// The section's title.
    pub fn title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.students)
    }

    /// The stage and node names this comparison refers to, for the plan's checks.
    pub fn names(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("students", Some(self.students.as_str())),
            ("controls", self.controls.as_deref()),
            ("start", self.start.as_deref()),
            ("start_chosen_by", self.start_chosen_by.as_deref()),
            ("teachers", self.teachers.as_deref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
    }
}

/// A difference of two models on the same queries with its paired bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Margin {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// `label` of `name` as a member of `stage`: `""` for the stage's only node, the part after
/// `stage.` for a member; `None` when `name` is not of `stage`.
fn label_in<'a>(stage: &str, name: &'a str) -> Option<&'a str> {
    if name == stage {
        Some("")
    } else {
        name.strip_prefix(stage)?.strip_prefix('.')
    }
}

fn member_name(stage: &str, label: &str) -> String {
    if label.is_empty() {
        stage.to_owned()
    } else {
        format!("{stage}.{label}")
    }
}

fn find<'a>(models: &'a [Model], name: &str, role: &str, title: &str) -> anyhow::Result<&'a Model> {
    models.iter().find(|m| m.name == name).with_context(|| {
        format!("comparison `{title}`: its {role} `{name}` is not among the report's evaluations")
    })
}

/// The one evaluation `name` names: the node of that name, or else the only member of the
/// stage `name` among the report's evaluations (a report of one matrix label binds one).
fn single(models: &[Model], name: &str, title: &str) -> anyhow::Result<String> {
    if models.iter().any(|m| m.name == name) {
        return Ok(name.to_owned());
    }
    let members: Vec<&str> = models
        .iter()
        .filter(|m| label_in(name, &m.name).is_some())
        .map(|m| m.name.as_str())
        .collect();
    match members.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => bail!("comparison `{title}`: `{name}` is not among the report's evaluations"),
        many => bail!(
            "comparison `{title}`: `{name}` names {} evaluations ({}); name one",
            many.len(),
            many.join(", ")
        ),
    }
}

/// Mean AP@10 difference `a − b` over the same caption queries, with the 95 % paired bootstrap
/// interval over clips (each with all its captions).
pub(crate) fn paired_map10(
    a: &Model,
    b: &Model,
    resamples: usize,
    seed: u64,
) -> anyhow::Result<Margin> {
    ensure!(
        a.ranks.len() == b.ranks.len() && a.ranks.keys().eq(b.ranks.keys()),
        "`{}` and `{}` were evaluated on different queries; cannot pair them",
        a.name,
        b.name
    );
    let (mut ap_a, mut ap_b, mut clips) = (Vec::new(), Vec::new(), Vec::new());
    for (qa, qb) in a.ranks.values().zip(b.ranks.values()) {
        ensure!(
            qa.clip_index == qb.clip_index,
            "`{}` and `{}` annotate a query with different clips; cannot pair them",
            a.name,
            b.name
        );
        ap_a.push(metrics::single_relevant_values(qa.rank)[3]);
        ap_b.push(metrics::single_relevant_values(qb.rank)[3]);
        clips.push(qa.clip_index);
    }
    let ci: Interval = statistics::paired_bootstrap_diff_ci(
        &ap_a,
        &ap_b,
        &Clusters::by_label(&clips),
        resamples,
        seed,
        LEVEL,
    );
    Ok(Margin {
        value: statistics::mean(&ap_a) - statistics::mean(&ap_b),
        ci_low: ci.low,
        ci_high: ci.high,
    })
}

/// Validation mAP@10 of a `train` / `distill` artifact: `val.map10` of its `metrics.json`. The
/// `distill` kind chooses its start by it (the highest, the first on ties), and so does the report.
pub fn validation_map10(dir: &std::path::Path) -> anyhow::Result<f64> {
    let path = dir.join(METRICS_FILE);
    let m: serde_json::Value = serde_json::from_slice(&fs_err::read(&path)?)
        .with_context(|| format!("`{}` is not JSON", path.display()))?;
    m["val"]["map10"]
        .as_f64()
        .with_context(|| format!("`{}` has no `val.map10`", path.display()))
}

/// The training member of `stage` with the best validation mAP@10: `(label, node, val mAP@10)`.
fn chosen_on_validation(
    training: &[(String, &InputArtifact)],
    stage: &str,
    title: &str,
) -> anyhow::Result<(String, String, f64)> {
    let mut best: Option<(String, String, f64)> = None;
    for (name, artifact) in training {
        let Some(label) = label_in(stage, name) else {
            continue;
        };
        let val = validation_map10(&artifact.path)?;
        if best.as_ref().is_none_or(|b| val > b.2) {
            best = Some((label.to_owned(), name.clone(), val));
        }
    }
    best.with_context(|| {
        format!("comparison `{title}`: `start_chosen_by = \"{stage}\"` matches no `training` input")
    })
}

/// The references of one comparison: `(role, column title, node per student label)`.
struct Reference {
    role: &'static str,
    column: String,
    by_label: Vec<String>,
}

/// Writes one comparison's section to `md` and returns its `metrics.json` entry.
pub(crate) fn section(
    md: &mut String,
    c: &Comparison,
    models: &[Model],
    training: &[(String, &InputArtifact)],
    resamples: usize,
    seed: u64,
) -> anyhow::Result<serde_json::Value> {
    let title = c.title();
    let students: Vec<(&str, &Model)> = models
        .iter()
        .filter_map(|m| label_in(&c.students, &m.name).map(|l| (l, m)))
        .collect();
    if students.is_empty() {
        bail!(
            "comparison `{title}`: no evaluation `{}` or `{}.*` among the report's evaluations",
            c.students,
            c.students
        );
    }
    let mut json = serde_json::Map::new();
    json.insert("title".into(), title.into());
    json.insert(
        "students".into(),
        students.iter().map(|s| s.1.name.clone()).collect(),
    );
    writeln!(md, "## {title}\n")?;
    let names: Vec<String> = students.iter().map(|s| format!("`{}`", s.1.name)).collect();
    writeln!(
        md,
        "Students: {} ({} training seed{}).",
        names.join(", "),
        students.len(),
        if students.len() == 1 { "" } else { "s" }
    )?;

    let mut references = Vec::new();
    if let Some(controls) = &c.controls {
        references.push(Reference {
            role: "control",
            column: "Δ vs its control".into(),
            by_label: students
                .iter()
                .map(|s| member_name(controls, s.0))
                .collect(),
        });
        writeln!(
            md,
            "Each student is paired with its control, the `{controls}` member of its label.",
        )?;
    }
    if let Some(start) = &c.start {
        let by_label = match &c.start_chosen_by {
            Some(stage) => {
                let (label, node, val) = chosen_on_validation(training, stage, title)?;
                let name = member_name(start, &label);
                writeln!(
                    md,
                    "Every student starts from `{node}`, the member of `{stage}` with the best validation mAP@10 ({:.2}), \
                     chosen without the test split; its test evaluation is `{name}`.",
                    100.0 * val
                )?;
                json.insert(
                    "start_chosen_on_validation".into(),
                    serde_json::json!({ "node": node, "val_map10": val }),
                );
                vec![name; students.len()]
            }
            None => {
                writeln!(
                    md,
                    "Each student starts from the `{start}` member of its label."
                )?;
                students.iter().map(|s| member_name(start, s.0)).collect()
            }
        };
        references.push(Reference {
            role: "start",
            column: "Δ vs its start".into(),
            by_label,
        });
    }
    if let Some(teachers) = &c.teachers {
        let node = single(models, teachers, title)?;
        writeln!(
            md,
            "`{node}` ranks by the teachers' mean cosine, the estimate the students learn."
        )?;
        references.push(Reference {
            role: "teachers",
            column: "Δ vs the teacher ensemble".into(),
            by_label: vec![node; students.len()],
        });
    }
    writeln!(
        md,
        "\nΔ: mAP@10 of the student minus the reference's on the same test queries, with the 95 % paired bootstrap \
         interval over clips ({resamples} resamples, each clip with all its captions). Last row: mean ± standard \
         deviation over the seeds and the 95 % Student-t interval of the mean.\n"
    )?;
    write!(md, "| seed | student mAP@10 |")?;
    for r in &references {
        write!(md, " {} |", r.column)?;
    }
    writeln!(md)?;
    writeln!(md, "|---|---|{}", "---|".repeat(references.len()))?;

    let mut per_seed = serde_json::Map::new();
    let mut student_values = Vec::new();
    let mut deltas: Vec<Vec<f64>> = vec![Vec::new(); references.len()];
    let mut reference_values: Vec<Vec<f64>> = vec![Vec::new(); references.len()];
    for (k, (label, student)) in students.iter().enumerate() {
        let map10 = student.metrics.t2a.map10;
        student_values.push(map10);
        let shown = if label.is_empty() { "–" } else { label };
        write!(md, "| {shown} | {:.2} |", 100.0 * map10)?;
        let mut entry = serde_json::Map::new();
        entry.insert("student_map10".into(), map10.into());
        for (r, reference) in references.iter().enumerate() {
            let other = find(models, &reference.by_label[k], reference.role, title)?;
            let margin = paired_map10(student, other, resamples, seed)?;
            write!(md, " {} |", signed_pct_ci(margin))?;
            deltas[r].push(margin.value);
            reference_values[r].push(other.metrics.t2a.map10);
            entry.insert(
                format!("minus_{}_map10", reference.role),
                serde_json::to_value(margin)?,
            );
            entry.insert(reference.role.into(), other.name.clone().into());
        }
        writeln!(md)?;
        per_seed.insert(member_name(&c.students, label), entry.into());
    }
    let students_over = statistics::over_seeds(&student_values, LEVEL);
    write!(
        md,
        "| mean ± sd ({} seeds) | {} |",
        students.len(),
        mean_sd(students_over)
    )?;
    json.insert("student_map10".into(), serde_json::to_value(students_over)?);
    for (r, reference) in references.iter().enumerate() {
        let over = statistics::over_seeds(&deltas[r], LEVEL);
        write!(md, " {} |", signed_over_seeds(over))?;
        json.insert(
            format!("{}_map10", reference.role),
            serde_json::to_value(statistics::over_seeds(&reference_values[r], LEVEL))?,
        );
        json.insert(
            format!("minus_{}_map10", reference.role),
            serde_json::to_value(over)?,
        );
    }
    writeln!(md, "\n")?;
    json.insert("per_seed".into(), per_seed.into());
    Ok(json.into())
}

fn signed_pct_ci(m: Margin) -> String {
    format!(
        "{:+.2} [{:+.2}, {:+.2}]",
        100.0 * m.value,
        100.0 * m.ci_low,
        100.0 * m.ci_high
    )
}

fn mean_sd(s: OverSeeds) -> String {
    if s.n < 2 {
        format!("{:.2}", 100.0 * s.mean)
    } else {
        format!("{:.2} ± {:.2}", 100.0 * s.mean, 100.0 * s.sd)
    }
}

fn signed_over_seeds(s: OverSeeds) -> String {
    if s.n < 2 {
        format!("{:+.2}", 100.0 * s.mean)
    } else {
        format!(
            "**{:+.2} ± {:.2}** [{:+.2}, {:+.2}]",
            100.0 * s.mean,
            100.0 * s.sd,
            100.0 * s.ci_low,
            100.0 * s.ci_high
        )
    }
}
