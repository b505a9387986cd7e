//! Ranking by cosine similarity, and the answer as a terminal table or JSON.

use std::io::Write;

use serde_json::json;

use crate::corpus::Corpus;
use crate::model::Model;
use crate::query::Unknown;

/// One model's top clips for the query.
#[derive(Debug)]
pub struct Ranked {
    pub model: String,
    pub corpus: Corpus,
    /// `(item, cosine)`, best first; ties keep the corpus order.
    pub top: Vec<(usize, f32)>,
}

impl Ranked {
    pub fn new(model: &Model, query: &[f32], corpus: Corpus, k: usize) -> Self {
        let top = top_k(&corpus.embeddings, query, k);
        Self {
            model: model.node.clone(),
            corpus,
            top,
        }
    }
}

/// The `k` rows of `embeddings` (`[n, query.len()]`) with the highest dot product with `query`,
/// best first (the evaluation's ranking: lower row first on ties).
fn top_k(embeddings: &[f32], query: &[f32], k: usize) -> Vec<(usize, f32)> {
    let scores: Vec<f32> = embeddings
        .chunks(query.len())
        .map(|row| row.iter().zip(query).map(|(a, b)| a * b).sum())
        .collect();
    pipeline_eval::metrics::top_k(&scores, k)
        .into_iter()
        .map(|i| (i, scores[i]))
        .collect()
}

pub fn unknown_note(model: &str, unknown: &Unknown) -> String {
    match unknown {
        Unknown::Words(words) => format!(
            "`{model}` does not know the word(s) {}: searched with the others",
            words
                .iter()
                .map(|w| format!("\"{w}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Unknown::Tokens(n) => {
            format!("`{model}`'s tokenizer maps {n} token(s) of the query to its unknown token")
        }
    }
}

pub struct Answer<'a> {
    pub query: &'a str,
    pub source: String,
    pub ranked: &'a [Ranked],
    pub notes: &'a [String],
}

impl Answer<'_> {
    pub fn json(&self) -> serde_json::Value {
        let models: Vec<_> = self
            .ranked
            .iter()
            .map(|r| {
                let hits: Vec<_> = r
                    .top
                    .iter()
                    .enumerate()
                    .map(|(rank, &(i, score))| {
                        let item = &r.corpus.items[i];
                        json!({
                            "rank": rank + 1,
                            "score": score,
                            "clip_id": item.id,
                            "file": item.path,
                            "captions": item.captions,
                        })
                    })
                    .collect();
                let skipped: Vec<_> = r
                    .corpus
                    .skipped
                    .iter()
                    .map(|(path, why)| json!({ "file": path, "error": why }))
                    .collect();
                json!({
                    "model": r.model,
                    "clips_searched": r.corpus.items.len(),
                    "hits": hits,
                    "skipped": skipped,
                })
            })
            .collect();
        json!({
            "query": self.query,
            "searched": self.source,
            "models": models,
            "notes": self.notes,
        })
    }

    /// Rank, score, clip and file per row (one column group per model), then each shown
    /// clip's captions.
    pub fn text(&self) -> String {
        let mut out = format!("{:?} over the {}:\n\n", self.query, self.source);
        let mut header = vec!["rank".to_owned()];
        for r in self.ranked {
            header.push(format!("{} score", r.model));
            header.push("clip".to_owned());
        }
        let depth = self.ranked.iter().map(|r| r.top.len()).max().unwrap_or(0);
        let rows: Vec<Vec<String>> = (0..depth)
            .map(|rank| {
                let mut row = vec![(rank + 1).to_string()];
                for r in self.ranked {
                    match r.top.get(rank) {
                        Some(&(i, score)) => {
                            row.push(format!("{score:.3}"));
                            row.push(r.corpus.items[i].id.clone());
                        }
                        None => row.extend([String::new(), String::new()]),
                    }
                }
                row
            })
            .collect();
        out.push_str(&table(&header, &rows));
        out.push('\n');
        let mut shown: Vec<&crate::corpus::Item> = Vec::new();
        for rank in 0..depth {
            for r in self.ranked {
                if let Some(&(i, _)) = r.top.get(rank) {
                    let item = &r.corpus.items[i];
                    if !shown.iter().any(|s| s.id == item.id) {
                        shown.push(item);
                    }
                }
            }
        }
        for item in shown {
            out.push_str(&format!("{}  {}\n", item.id, item.path.display()));
            for caption in &item.captions {
                out.push_str(&format!("    {caption}\n"));
            }
        }
        out
    }
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_matches_a_brute_force_sort_and_keeps_order_on_ties() {
        // Four 2-d rows; the query scores them 0.6, 1.0, 0.6, -1.0.
        let rows = [0.6, 0.8, 1.0, 0.0, 0.6, -0.8, -1.0, 0.0];
        assert_eq!(
            top_k(&rows, &[1.0, 0.0], 3),
            vec![(1, 1.0), (0, 0.6), (2, 0.6)]
        );
        assert_eq!(top_k(&rows, &[1.0, 0.0], 10).len(), 4);
    }
}
