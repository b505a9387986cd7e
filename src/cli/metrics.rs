//! `pipeline metrics`: one table row per node with a `metrics.json`, nested objects flattened
//! into dotted columns (sorted by name).

use std::process::ExitCode;

use crate::cli::{Env, UserError, emit, show, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Nodes (or stages) to include. Default: every node that has metrics.
    pub nodes: Vec<String>,
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
    let selected = if args.nodes.is_empty() {
        (0..n).collect()
    } else {
        pipeline.select(&args.nodes).map_err(UserError::new)?
    };
    let current = show::current(&pipeline, &store, &pipeline.with_ancestors(&selected))?;
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<(String, Vec<(String, serde_json::Value)>)> = Vec::new();
    for &i in &pipeline.order {
        if !selected.contains(&i) {
            continue;
        }
        let Some((_, Some(m))) = &current[i] else {
            continue;
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
        rows.push((pipeline.nodes[i].name.clone(), flat));
    }
    // Sorted, so that the table does not depend on serde_json's map order.
    columns.sort();
    if rows.is_empty() {
        eprintln!(
            "no metrics: none of the selected nodes has a built `{}`",
            pipeline_api::METRICS_FILE
        );
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
