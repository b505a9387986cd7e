//! `pipeline metrics`: the table of [`Project::metrics`](crate::project::Project::metrics),
//! one row per node with a `metrics.json`. Without arguments it shows the view declared in
//! `[settings.metrics]` (for the default pipeline: the comparison of every model's test
//! retrieval metrics). A node whose current output is not built shows its last built output,
//! marked `(stale)`.

use std::process::ExitCode;

use crate::cli::{Env, emit, eprint_line, table};
use crate::project::MetricsQuery;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Nodes (or stages) to include. Default: `[settings.metrics] nodes`, else every node that
    /// has metrics.
    pub nodes: Vec<String>,
    /// Columns to show: dotted keys, `*` matching any run of characters (e.g. `t2a.*`);
    /// repeatable or comma-separated. Default: `[settings.metrics] columns`, else all.
    #[arg(short, long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Ignore `[settings.metrics]`: every node with metrics, every column.
    #[arg(long, conflicts_with_all = ["nodes", "columns"])]
    pub all: bool,
}

/// Numbers with four significant digits (scientific notation when very large or small);
/// integers as they are.
fn format_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return i.to_string();
            }
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f == 0.0 {
                "0".into()
            } else if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{f:.0}")
            } else if (1e-3..1e6).contains(&f.abs()) {
                let decimals = (3 - f.abs().log10().floor() as i32).max(0) as usize;
                format!("{f:.decimals$}")
            } else {
                format!("{f:.3e}")
            }
        }
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub fn main(env: &Env, args: Args) -> anyhow::Result<ExitCode> {
    let project = env.load()?;
    let metrics = project.metrics(&MetricsQuery {
        nodes: args.nodes,
        columns: args.columns,
        all: args.all,
    })?;
    if metrics.rows.is_empty() {
        eprint_line(&format!(
            "no metrics: none of the selected nodes has a built `{}`",
            pipeline_api::METRICS_FILE
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let header: Vec<String> = std::iter::once("node".to_owned())
        .chain(metrics.columns.iter().cloned())
        .collect();
    let cells: Vec<Vec<String>> = metrics
        .rows
        .iter()
        .map(|row| {
            let name = &project.pipeline.nodes[row.node].name;
            let name = if row.stale {
                format!("{name} (stale)")
            } else {
                name.clone()
            };
            std::iter::once(name)
                .chain(
                    row.values
                        .iter()
                        .map(|v| v.as_ref().map_or_else(|| "-".to_owned(), format_value)),
                )
                .collect()
        })
        .collect();
    emit(&table(&header, &cells));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_values() {
        let values: [(&str, serde_json::Value); 4] = [
            ("big", 12345.678.into()),
            ("loss", 1.5e-7.into()),
            ("test.n", 1000.into()),
            ("test.t2a_map10", 0.31234.into()),
        ];
        let shown: Vec<_> = values
            .iter()
            .map(|(k, v)| format!("{k}={}", format_value(v)))
            .collect();
        assert_eq!(
            shown,
            [
                "big=12346",
                "loss=1.500e-7",
                "test.n=1000",
                "test.t2a_map10=0.3123"
            ]
        );
    }
}
