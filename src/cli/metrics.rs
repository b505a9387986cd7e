//! `pipeline metrics`: one table row per node with a `metrics.json`, nested objects flattened
//! into dotted columns. Without arguments it shows the view declared in `[settings.metrics]`
//! (for the default pipeline: the comparison of every model's test retrieval metrics). A node
//! whose current output is not built shows its last built output, marked `(stale)`.

use std::process::ExitCode;

use crate::cli::{Env, UserError, emit, show, table};
use crate::staleness::NodeStatus;

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

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
fn matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && matches(rest, &tail[i..]))
        }
    }
}

/// `columns` ordered by the first pattern each matches (then by name); all of them, sorted,
/// when there are no patterns.
fn select_columns(mut columns: Vec<String>, patterns: &[String]) -> Vec<String> {
    columns.sort();
    if patterns.is_empty() {
        return columns;
    }
    let mut chosen: Vec<(usize, String)> = columns
        .into_iter()
        .filter_map(|c| {
            patterns
                .iter()
                .position(|p| matches(p, &c))
                .map(|rank| (rank, c))
        })
        .collect();
    chosen.sort();
    chosen.into_iter().map(|(_, c)| c).collect()
}

/// Flattens nested objects into `(dotted key, value)` pairs, in key order.
pub fn flatten(
    prefix: &str,
    value: &serde_json::Value,
    out: &mut Vec<(String, serde_json::Value)>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

/// Numbers with four significant digits (scientific notation when very large or small);
/// integers as they are.
pub fn format_value(v: &serde_json::Value) -> String {
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
    let (pipeline, store) = env.load()?;
    let n = pipeline.nodes.len();
    let view = &pipeline.config.metrics;
    let (nodes, patterns) = match (args.all, args.nodes.is_empty(), args.columns.is_empty()) {
        (true, _, _) => (Vec::new(), Vec::new()),
        (false, true, true) => (view.nodes.clone(), view.columns.clone()),
        (false, _, _) => (args.nodes, args.columns),
    };
    let selected = if nodes.is_empty() {
        (0..n).collect()
    } else {
        pipeline.select(&nodes).map_err(UserError::new)?
    };
    // Rows in the order the nodes were named (dependency order within a stage).
    let row_order: Vec<usize> = if nodes.is_empty() {
        pipeline.order.clone()
    } else {
        let mut order = Vec::new();
        for name in &nodes {
            for &i in &pipeline.order {
                if selected.contains(&i)
                    && !order.contains(&i)
                    && pipeline
                        .select(std::slice::from_ref(name))
                        .is_ok_and(|s| s.contains(&i))
                {
                    order.push(i);
                }
            }
        }
        order
    };
    let current = show::current(&pipeline, &store, &pipeline.with_ancestors(&selected))?;
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<(String, Vec<(String, serde_json::Value)>)> = Vec::new();
    for &i in &row_order {
        let Some((status, Some(m))) = &current[i] else {
            continue;
        };
        let name = &pipeline.nodes[i].name;
        let name = match status {
            NodeStatus::UpToDate { .. } => name.clone(),
            NodeStatus::Stale { .. } => format!("{name} (stale)"),
        };
        let Some(metrics) = show::metrics(&store, m) else {
            continue;
        };
        let mut flat = Vec::new();
        flatten("", &metrics, &mut flat);
        for (k, _) in &flat {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
        rows.push((name, flat));
    }
    // Sorted (or in pattern order), so that the table does not depend on serde_json's map order.
    let columns = select_columns(columns, &patterns);
    if rows.is_empty() {
        crate::reporter::eprint_line(&format!(
            "no metrics: none of the selected nodes has a built `{}`",
            pipeline_api::METRICS_FILE
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let header: Vec<String> = std::iter::once("node".to_owned())
        .chain(columns.iter().cloned())
        .collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(node, flat)| {
            std::iter::once(node.clone())
                .chain(columns.iter().map(|c| {
                    flat.iter()
                        .find(|(k, _)| k == c)
                        .map_or_else(|| "-".to_owned(), |(_, v)| format_value(v))
                }))
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
    fn column_patterns_select_and_order() {
        assert!(matches("t2a.*", "t2a.map10"));
        assert!(matches("*.map10", "t2a_ci.map10"));
        assert!(matches("a*c*e", "abcde"));
        assert!(!matches("t2a.*", "a2t.map10"));
        assert!(!matches("t2a.map10", "t2a.map10.low"));
        let columns = ["t2a.r1", "a2t.r1", "t2a.map10", "loss"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            select_columns(columns, &["t2a.map10".into(), "*r1".into()]),
            ["t2a.map10", "a2t.r1", "t2a.r1"]
        );
    }

    #[test]
    fn flattens_and_formats() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"test": {"t2a_map10": 0.31234, "n": 1000}, "loss": 1.5e-7, "big": 12345.678}"#,
        )
        .unwrap();
        let mut flat = Vec::new();
        flatten("", &v, &mut flat);
        let mut shown: Vec<_> = flat
            .iter()
            .map(|(k, v)| format!("{k}={}", format_value(v)))
            .collect();
        shown.sort();
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
