//! The table of `pipeline metrics`: one row per node with a `metrics.json`, nested objects
//! flattened into dotted columns. The view defaults to `[settings.metrics]`; a node whose
//! current output is not built shows its last built output, marked stale.

use super::{Project, ProjectError};
use crate::staleness::NodeStatus;

/// Which rows and columns to show.
#[derive(Debug, Clone, Default)]
pub struct MetricsQuery {
    /// Nodes or stages, in row order. Default: `[settings.metrics] nodes`, else every node.
    pub nodes: Vec<String>,
    /// Dotted keys, `*` matching any run of characters. Default: `[settings.metrics] columns`
    /// (when no nodes are named either), else all.
    pub columns: Vec<String>,
    /// Ignore `[settings.metrics]`: every node, every column.
    pub all: bool,
}

#[derive(Debug)]
pub struct MetricsTable {
    /// Dotted keys, sorted or in the order of the first pattern each matches.
    pub columns: Vec<String>,
    /// Only nodes with metrics; empty when none has them.
    pub rows: Vec<MetricsRow>,
}

#[derive(Debug)]
pub struct MetricsRow {
    pub node: usize,
    /// The metrics are those of the last build: the current output is not built.
    pub stale: bool,
    /// One per column; `None` where this node has no such key.
    pub values: Vec<Option<serde_json::Value>>,
}

impl Project {
    pub fn metrics(&self, query: &MetricsQuery) -> Result<MetricsTable, ProjectError> {
        let pipeline = &self.pipeline;
        let view = &pipeline.config.metrics;
        let (nodes, patterns) = match (query.all, query.nodes.is_empty(), query.columns.is_empty())
        {
            (true, _, _) => (&[][..], &[][..]),
            (false, true, true) => (&view.nodes[..], &view.columns[..]),
            (false, _, _) => (&query.nodes[..], &query.columns[..]),
        };
        let selected = if nodes.is_empty() {
            (0..pipeline.nodes.len()).collect()
        } else {
            self.select(nodes)?
        };
        // Rows in the order the nodes were named (dependency order within a stage).
        let row_order: Vec<usize> = if nodes.is_empty() {
            pipeline.order.clone()
        } else {
            let mut order = Vec::new();
            for name in nodes {
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
        let current = self.current(&pipeline.with_ancestors(&selected))?;
        let mut columns: Vec<String> = Vec::new();
        let mut rows: Vec<(usize, bool, Flat)> = Vec::new();
        for &i in &row_order {
            let Some((status, Some(m))) = &current[i] else {
                continue;
            };
            let Some(metrics) = self.metrics_of(m) else {
                continue;
            };
            let mut flat = Vec::new();
            flatten("", &metrics, &mut flat);
            for (k, _) in &flat {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
            let stale = matches!(status, NodeStatus::Stale { .. });
            rows.push((i, stale, flat));
        }
        // Sorted (or in pattern order), so that the table does not depend on serde_json's map
        // order.
        let columns = select_columns(columns, patterns);
        let rows = rows
            .into_iter()
            .map(|(node, stale, flat)| MetricsRow {
                node,
                stale,
                values: columns
                    .iter()
                    .map(|c| flat.iter().find(|(k, _)| k == c).map(|(_, v)| v.clone()))
                    .collect(),
            })
            .collect();
        Ok(MetricsTable { columns, rows })
    }
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

/// `(dotted key, value)` pairs.
type Flat = Vec<(String, serde_json::Value)>;

/// Flattens nested objects into `(dotted key, value)` pairs, in key order.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Flat) {
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
    fn flattens_nested_objects_into_dotted_keys() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"test": {"t2a_map10": 0.31234, "n": 1000}, "loss": 1.5e-7, "big": 12345.678}"#,
        )
        .unwrap();
        let mut flat = Vec::new();
        flatten("", &v, &mut flat);
        let mut shown: Vec<_> = flat.iter().map(|(k, v)| format!("{k}={v}")).collect();
        shown.sort();
        assert_eq!(
            shown,
            [
                "big=12345.678",
                "loss=1.5e-7",
                "test.n=1000",
                "test.t2a_map10=0.31234"
            ]
        );
    }
}
