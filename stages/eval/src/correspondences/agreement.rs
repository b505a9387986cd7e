//! How well each teacher, the ensemble and the annotation agree with the annotation and, where
//! the features carry it, the ground truth (`metrics.json` of `correspondences`).

use pipeline_api::RunContext;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use super::{SPEARMAN_MAX_PAIRS, Teachers};
use crate::index::SplitIndex;
use crate::metrics::{self, dot};
use crate::statistics;

/// Captions scored against every clip at once (`[CAPTION_BLOCK, n_clips]` per teacher).
const CAPTION_BLOCK: usize = 256;

#[derive(Debug, Default, Serialize)]
pub(super) struct ScorerMetrics {
    t2a_map10: f64,
    t2a_r1: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    spearman: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ndcg10: Option<f64>,
}

/// Per scorer: fit to the annotation (t2a) and, with ground truth, Spearman and nDCG@10.
pub(super) fn agreement(
    ctx: &RunContext<'_>,
    t: &Teachers,
    index: &SplitIndex,
    seed: u64,
) -> anyhow::Result<Vec<(String, ScorerMetrics)>> {
    let (n_a, n_c, n_m) = (index.n_clips(), index.n_captions(), t.names.len());
    let dim = t.dim;
    let has_truth = index.relevance.is_some();
    let n_scorers = n_m + 1 + usize::from(has_truth); // teachers, ensemble, annotation
    let step = ctx
        .reporter
        .step("agreement with the annotation / ground truth", n_c as u64);
    // Per caption and scorer: (rank of annotated clip, nDCG@10); the scores of a block of
    // captions against every clip are one matrix product per teacher.
    let mut per_caption: Vec<Vec<(usize, Option<f64>)>> = Vec::with_capacity(n_c);
    for start in (0..n_c).step_by(CAPTION_BLOCK) {
        let captions = start..(start + CAPTION_BLOCK).min(n_c);
        let by_teacher: Vec<Vec<f32>> = (0..n_m)
            .map(|m| {
                let text = &t.text(m)[captions.start * dim..captions.end * dim];
                metrics::dot_matrix(text, t.audio(m), dim)
            })
            .collect();
        let block: Vec<Vec<(usize, Option<f64>)>> = captions
            .clone()
            .into_par_iter()
            .map(|j| {
                let row = (j - captions.start) * n_a..(j - captions.start + 1) * n_a;
                let mut scores: Vec<Vec<f32>> =
                    by_teacher.iter().map(|s| s[row.clone()].to_vec()).collect();
                let mut est = vec![0.0f32; n_a];
                for s in &scores {
                    for (e, x) in est.iter_mut().zip(s) {
                        *e += x;
                    }
                }
                est.iter_mut().for_each(|e| *e /= n_m as f32);
                scores.push(est);
                if has_truth {
                    let mut ann = vec![0.0f32; n_a];
                    ann[index.caption_clip[j]] = 1.0;
                    scores.push(ann);
                }
                let gains = index.relevance.as_ref().map(|r| &r[j]);
                scores
                    .iter()
                    .map(|s| {
                        let rank = metrics::rank_of(s, index.caption_clip[j]);
                        let ndcg = gains.and_then(|g| metrics::ndcg_at_k(s, g, 10));
                        (rank, ndcg)
                    })
                    .collect()
            })
            .collect();
        per_caption.extend(block);
        step.inc(captions.len() as u64);
    }
    drop(step);

    // Spearman over all pairs, or a seeded sample.
    let spearman: Option<Vec<Option<f64>>> = index.relevance.as_ref().map(|_| {
        let total = n_a * n_c;
        let pairs: Vec<(usize, usize)> = if total <= SPEARMAN_MAX_PAIRS {
            (0..n_a)
                .flat_map(|i| (0..n_c).map(move |j| (i, j)))
                .collect()
        } else {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..SPEARMAN_MAX_PAIRS)
                .map(|_| (rng.random_range(0..n_a), rng.random_range(0..n_c)))
                .collect()
        };
        let truth: Vec<f32> = pairs
            .par_iter()
            .map(|&(i, j)| index.relevance_of(j, i).unwrap_or(0.0))
            .collect();
        let mut columns: Vec<Vec<f32>> = (0..n_m)
            .map(|m| {
                pairs
                    .par_iter()
                    .map(|&(i, j)| {
                        dot(
                            &t.audio(m)[i * dim..(i + 1) * dim],
                            &t.text(m)[j * dim..(j + 1) * dim],
                        )
                    })
                    .collect()
            })
            .collect();
        let est: Vec<f32> = (0..pairs.len())
            .map(|k| columns.iter().map(|c| c[k]).sum::<f32>() / n_m as f32)
            .collect();
        columns.push(est);
        columns.push(
            pairs
                .iter()
                .map(|&(i, j)| if index.caption_clip[j] == i { 1.0 } else { 0.0 })
                .collect(),
        );
        columns
            .par_iter()
            .map(|c| statistics::spearman(c, &truth))
            .collect()
    });

    let names: Vec<String> = (0..n_m)
        .map(|m| format!("teacher_{m}"))
        .chain(std::iter::once("ensemble".to_owned()))
        .chain(has_truth.then(|| "annotation".to_owned()))
        .collect();
    let mut result = Vec::new();
    for (s, name) in names.into_iter().enumerate().take(n_scorers) {
        let ranks: Vec<usize> = per_caption.iter().map(|v| v[s].0).collect();
        let scores = metrics::scores_from_ranks(&ranks);
        let ndcgs: Vec<f64> = per_caption.iter().filter_map(|v| v[s].1).collect();
        result.push((
            name,
            ScorerMetrics {
                t2a_map10: scores.map10,
                t2a_r1: scores.r1,
                spearman: spearman.as_ref().and_then(|v| v[s]),
                ndcg10: has_truth.then(|| statistics::mean(&ndcgs)),
            },
        ));
    }
    Ok(result)
}
