//! Retrieval metrics: ranks, recall@K, AP@K, nDCG@K, chance level; pure functions, no I/O.
//! Means, bootstrap intervals and correlations are in [`crate::statistics`].
//!
//! Conventions (see `docs/method.md`, "Evaluation conventions"):
//! - Similarity matrices are row-major `[n_captions, n_clips]` (`sim[q * n_clips + i]` is the
//!   score of clip `i` for caption `q`), for both directions.
//! - Ranks are 1-based. Score ties are broken deterministically, as a stable sort by descending
//!   score would: among equal scores the lower index ranks first. So the rank of item `t` is
//!   `1 + #{k : s_k > s_t} + #{k < t : s_k == s_t}`. NaN scores count as `-inf`.
//! - All scores are fractions in `[0, 1]` (not percentages).
//! - Text → audio (DCASE): each caption has exactly one relevant clip at rank `r`;
//!   `R@K = [r <= K]`, `AP@10 = 1/r if r <= 10 else 0`, averaged over captions.
//! - Audio → text, two conventions, both named wherever reported:
//!   "any" (`R@K = 1` if the best-ranked of the clip's captions is within `K`) and
//!   "fraction" (`R@K` = the clip's captions ranked within `K` / the clip's number of captions).
//!   In both, mAP@10 is the multi-relevant AP@10 below (identical in the two conventions).
//! - Multi-relevant AP@k (DCASE 2025): with the relevant items at ranks `r_1 < r_2 < ...`,
//!   `AP@k = (Σ_{h : r_h <= k} h / r_h) / (number of relevant items)`.
//! - nDCG@k with linear gains: `DCG@k = Σ_{r=1..k} gain(item at rank r) / log2(r + 1)`, divided by
//!   the DCG@k of the gains sorted in decreasing order.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::statistics::{Clusters, Interval, bootstrap_means_ci, mean, nan_as_lowest};

/// Recall@1/5/10 and mAP@10, fractions in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RetrievalScores {
    pub r1: f64,
    pub r5: f64,
    pub r10: f64,
    pub map10: f64,
}

/// Audio → text scores in both conventions.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct AudioToTextScores {
    /// R@K = 1 if the best-ranked of the clip's captions is within K.
    pub any: RetrievalScores,
    /// R@K = fraction of the clip's captions ranked within K.
    pub fraction: RetrievalScores,
}

/// Intervals for each of [`RetrievalScores`]' fields.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RetrievalIntervals {
    pub r1: Interval,
    pub r5: Interval,
    pub r10: Interval,
    pub map10: Interval,
}

/// Per-query values of the four metrics (their means are the [`RetrievalScores`]): what the
/// bootstrap resamples.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerQuery {
    pub r1: Vec<f64>,
    pub r5: Vec<f64>,
    pub r10: Vec<f64>,
    pub map10: Vec<f64>,
}

impl PerQuery {
    pub fn len(&self) -> usize {
        self.r1.len()
    }

    pub fn is_empty(&self) -> bool {
        self.r1.is_empty()
    }

    pub fn mean(&self) -> RetrievalScores {
        RetrievalScores {
            r1: mean(&self.r1),
            r5: mean(&self.r5),
            r10: mean(&self.r10),
            map10: mean(&self.map10),
        }
    }

    /// Bootstrap percentile intervals, resampling `clusters` of queries; the four metrics share
    /// the resampled sets.
    pub fn bootstrap(
        &self,
        clusters: &Clusters,
        resamples: usize,
        seed: u64,
        level: f64,
    ) -> RetrievalIntervals {
        let cis = bootstrap_means_ci(
            &[&self.r1, &self.r5, &self.r10, &self.map10],
            clusters,
            resamples,
            seed,
            level,
        );
        RetrievalIntervals {
            r1: cis[0],
            r5: cis[1],
            r10: cis[2],
            map10: cis[3],
        }
    }
}

/// 1-based rank of item `target` among `scores` (ties: lower index first).
pub fn rank_of(scores: &[f32], target: usize) -> usize {
    let t = nan_as_lowest(scores[target]);
    let higher_or_tied_before = scores[..target]
        .iter()
        .filter(|&&s| nan_as_lowest(s) >= t)
        .count();
    let higher_after = scores[target + 1..]
        .iter()
        .filter(|&&s| nan_as_lowest(s) > t)
        .count();
    1 + higher_or_tied_before + higher_after
}

/// The full ranking: item indices by descending score, ties by ascending index.
pub fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        nan_as_lowest(scores[b])
            .total_cmp(&nan_as_lowest(scores[a]))
            .then(a.cmp(&b))
    });
    order
}

/// The first `k` items of [`ranking`] (fewer if there are fewer items), without a full sort.
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(scores.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &usize, b: &usize| {
        nan_as_lowest(scores[*b])
            .total_cmp(&nan_as_lowest(scores[*a]))
            .then(a.cmp(b))
    };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, cmp);
        order.truncate(k);
    }
    order.sort_by(cmp);
    order
}

/// `[R@1, R@5, R@10, AP@10]` of one query whose single relevant item is at `rank`.
pub fn single_relevant_values(rank: usize) -> [f64; 4] {
    let hit = |k: usize| if rank <= k { 1.0 } else { 0.0 };
    [
        hit(1),
        hit(5),
        hit(10),
        if rank <= 10 { 1.0 / rank as f64 } else { 0.0 },
    ]
}

/// Chance level of single-relevant text → audio AP@10 among `n_clips` clips: the mean and the
/// per-query standard deviation of [`single_relevant_values`]' AP@10 when the relevant clip's
/// rank is uniform on `1..=n_clips` (a ranking that knows nothing). `(0, 0)` without clips.
///
/// The mean over `q` independent queries of such a ranking has standard deviation
/// `sd / sqrt(q)`; `learn` fails a training whose best validation mAP@10 stays within three of
/// those of the mean.
pub fn chance_map10(n_clips: usize) -> (f64, f64) {
    if n_clips == 0 {
        return (0.0, 0.0);
    }
    let n = n_clips as f64;
    let top = n_clips.min(10);
    let mean = (1..=top).map(|r| 1.0 / r as f64).sum::<f64>() / n;
    let square = (1..=top).map(|r| 1.0 / (r * r) as f64).sum::<f64>() / n;
    (mean, (square - mean * mean).max(0.0).sqrt())
}

/// Multi-relevant AP@k (DCASE 2025) from the 1-based ranks of *all* relevant items (any order):
/// `(Σ_{h : r_h <= k} h / r_h) / n_relevant`, with `h` the number of relevant items ranked at or
/// before `r_h`. Zero when there is no relevant item.
pub fn average_precision_at_k(relevant_ranks: &[usize], k: usize) -> f64 {
    if relevant_ranks.is_empty() {
        return 0.0;
    }
    let mut ranks = relevant_ranks.to_vec();
    ranks.sort_unstable();
    let sum: f64 = ranks
        .iter()
        .enumerate()
        .take_while(|(_, r)| **r <= k)
        .map(|(h, &r)| (h + 1) as f64 / r as f64)
        .sum();
    sum / ranks.len() as f64
}

/// Text → audio ranks: caption `q`'s relevant clip `relevant[q]` ranked among the `n_clips`
/// scores of row `q` of `sim` (`[n_captions, n_clips]`, row-major).
pub fn text_to_audio_ranks(sim: &[f32], n_clips: usize, relevant: &[usize]) -> Vec<usize> {
    assert_eq!(
        sim.len(),
        relevant.len() * n_clips,
        "sim must be [n_captions, n_clips]"
    );
    if n_clips == 0 {
        return Vec::new();
    }
    sim.par_chunks(n_clips)
        .zip(relevant.par_iter())
        .map(|(row, &t)| rank_of(row, t))
        .collect()
}

/// Per-query text → audio values from [`text_to_audio_ranks`].
pub fn text_to_audio_per_query(ranks: &[usize]) -> PerQuery {
    let mut out = PerQuery::default();
    for &r in ranks {
        let [a, b, c, d] = single_relevant_values(r);
        out.r1.push(a);
        out.r5.push(b);
        out.r10.push(c);
        out.map10.push(d);
    }
    out
}

/// Scores from text → audio ranks.
pub fn scores_from_ranks(ranks: &[usize]) -> RetrievalScores {
    text_to_audio_per_query(ranks).mean()
}

/// Text → audio, DCASE convention: every caption queries every clip; `sim` is row-major
/// `[n_captions, n_clips]`; caption `q`'s relevant clip is `relevant[q]`. Ties broken
/// deterministically: stable sort by descending score, lower clip index first.
pub fn text_to_audio(sim: &[f32], n_clips: usize, relevant: &[usize]) -> RetrievalScores {
    scores_from_ranks(&text_to_audio_ranks(sim, n_clips, relevant))
}

/// Transposes a row-major `[rows, cols]` matrix.
pub fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(m.len(), rows * cols);
    let mut out = vec![0.0f32; m.len()];
    if rows == 0 || cols == 0 {
        return out;
    }
    out.par_chunks_mut(rows).enumerate().for_each(|(c, col)| {
        for (r, v) in col.iter_mut().enumerate() {
            *v = m[r * cols + c];
        }
    });
    out
}

/// Audio → text ranks: for each clip (query), the sorted 1-based ranks of its captions among all
/// captions. `sim` is the same `[n_captions, n_clips]` matrix as for text → audio (clip `i`'s
/// scores are column `i`); `caption_clip[q]` is caption `q`'s clip. Clips without captions give an
/// empty list.
pub fn audio_to_text_ranks(sim: &[f32], n_clips: usize, caption_clip: &[usize]) -> Vec<Vec<usize>> {
    let n_captions = caption_clip.len();
    assert_eq!(
        sim.len(),
        n_captions * n_clips,
        "sim must be [n_captions, n_clips]"
    );
    let mut captions_of = vec![Vec::new(); n_clips];
    for (q, &i) in caption_clip.iter().enumerate() {
        captions_of[i].push(q);
    }
    let by_clip = transpose(sim, n_captions, n_clips);
    if n_captions == 0 {
        return captions_of.into_iter().map(|_| Vec::new()).collect();
    }
    by_clip
        .par_chunks(n_captions)
        .zip(captions_of.par_iter())
        .map(|(row, caps)| {
            let mut ranks: Vec<usize> = caps.iter().map(|&q| rank_of(row, q)).collect();
            ranks.sort_unstable();
            ranks
        })
        .collect()
}

/// Per-clip audio → text values, "any hit" convention (clips without captions are skipped).
pub fn audio_to_text_any_per_query(ranks: &[Vec<usize>]) -> PerQuery {
    let mut out = PerQuery::default();
    for r in ranks.iter().filter(|r| !r.is_empty()) {
        let best = r[0];
        let hit = |k: usize| if best <= k { 1.0 } else { 0.0 };
        out.r1.push(hit(1));
        out.r5.push(hit(5));
        out.r10.push(hit(10));
        out.map10.push(average_precision_at_k(r, 10));
    }
    out
}

/// Per-clip audio → text values, "fraction" convention (clips without captions are skipped).
pub fn audio_to_text_fraction_per_query(ranks: &[Vec<usize>]) -> PerQuery {
    let mut out = PerQuery::default();
    for r in ranks.iter().filter(|r| !r.is_empty()) {
        let frac = |k: usize| r.iter().filter(|&&x| x <= k).count() as f64 / r.len() as f64;
        out.r1.push(frac(1));
        out.r5.push(frac(5));
        out.r10.push(frac(10));
        out.map10.push(average_precision_at_k(r, 10));
    }
    out
}

/// Audio → text in both conventions (see the module documentation).
pub fn audio_to_text(sim: &[f32], n_clips: usize, caption_clip: &[usize]) -> AudioToTextScores {
    let ranks = audio_to_text_ranks(sim, n_clips, caption_clip);
    AudioToTextScores {
        any: audio_to_text_any_per_query(&ranks).mean(),
        fraction: audio_to_text_fraction_per_query(&ranks).mean(),
    }
}

/// Multi-relevant AP@k of one query: `relevant` are the indices of its relevant items among
/// `scores` (ties: lower index first; duplicates are ignored). Only the top `k` items are
/// ranked, so the cost does not grow with the number of relevant items.
pub fn multi_relevant_ap_at_k(scores: &[f32], relevant: &[usize], k: usize) -> f64 {
    let mut rel = relevant.to_vec();
    rel.sort_unstable();
    rel.dedup();
    if rel.is_empty() {
        return 0.0;
    }
    let mut hits = 0usize;
    let mut sum = 0.0;
    for (pos, item) in top_k(scores, k).into_iter().enumerate() {
        if rel.binary_search(&item).is_ok() {
            hits += 1;
            sum += hits as f64 / (pos + 1) as f64;
        }
    }
    sum / rel.len() as f64
}

/// nDCG@k of one query with linear gains: `gains` lists `(item, gain)` for the items with a
/// non-zero gain (others have gain 0; a repeated item keeps its largest gain). `None` when no
/// gain is positive (the ideal DCG is 0).
pub fn ndcg_at_k(scores: &[f32], gains: &[(usize, f32)], k: usize) -> Option<f64> {
    let mut ideal: Vec<f64> = gains
        .iter()
        .filter(|g| g.1 > 0.0)
        .map(|g| g.1 as f64)
        .collect();
    if ideal.is_empty() || k == 0 {
        return None;
    }
    ideal.sort_by(|a, b| b.total_cmp(a));
    let discount = |pos: usize| 1.0 / ((pos + 2) as f64).log2();
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(p, g)| g * discount(p))
        .sum();
    let gain_of = |item: usize| {
        gains
            .iter()
            .filter(|g| g.0 == item)
            .map(|g| g.1 as f64)
            .fold(0.0f64, f64::max)
    };
    let dcg: f64 = top_k(scores, k)
        .into_iter()
        .enumerate()
        .map(|(p, item)| gain_of(item) * discount(p))
        .sum();
    Some(dcg / idcg)
}

/// Row-major `[rows.len()/dim, cols.len()/dim]` matrix of dot products between the rows of two
/// `[_, dim]` matrices (cosines for L2-normalised rows): one matrix product, `rows · colsᵀ`.
pub fn dot_matrix(rows: &[f32], cols: &[f32], dim: usize) -> Vec<f32> {
    assert!(dim > 0 && rows.len().is_multiple_of(dim) && cols.len().is_multiple_of(dim));
    let mut out = vec![0.0f32; rows.len() / dim * (cols.len() / dim)];
    crate::linalg::a_bt(rows, cols, dim, &mut out);
    out
}

/// Dot product with eight independent accumulators (vectorises well).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Brute-force rank: count items that score strictly higher, or tie with a lower index.
    fn brute_rank(scores: &[f32], t: usize) -> usize {
        1 + (0..scores.len())
            .filter(|&k| scores[k] > scores[t] || (scores[k] == scores[t] && k < t))
            .count()
    }

    /// Random scores from a small set of values so that ties are frequent.
    fn random_scores(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| rng.random_range(0..5) as f32 * 0.25)
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn rank_of_breaks_ties_by_lower_index() {
        let s = [0.5, 0.9, 0.5, 0.9, 0.1];
        assert_eq!(rank_of(&s, 1), 1);
        assert_eq!(rank_of(&s, 3), 2);
        assert_eq!(rank_of(&s, 0), 3);
        assert_eq!(rank_of(&s, 2), 4);
        assert_eq!(rank_of(&s, 4), 5);
        assert_eq!(ranking(&s), vec![1, 3, 0, 2, 4]);
        assert_eq!(top_k(&s, 3), vec![1, 3, 0]);
        // NaN ranks last.
        assert_eq!(rank_of(&[f32::NAN, 0.0, -1.0], 0), 3);
    }

    #[test]
    fn chance_map10_is_the_mean_over_uniform_ranks() {
        for n in [1usize, 3, 8, 10, 11, 100] {
            let values: Vec<f64> = (1..=n).map(|r| single_relevant_values(r)[3]).collect();
            let m = mean(&values);
            let sd = (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n as f64).sqrt();
            let (cm, csd) = chance_map10(n);
            assert!(
                close(cm, m) && close(csd, sd),
                "{n}: {cm} {csd} vs {m} {sd}"
            );
        }
        // 8 clips: the ≈ 0.34 quoted in the tests of `learn`.
        assert!((chance_map10(8).0 - 0.3397).abs() < 1e-4);
        assert_eq!(chance_map10(0), (0.0, 0.0));
    }

    #[test]
    fn text_to_audio_hand_computed() {
        // 3 captions x 4 clips.
        let sim = [
            0.9, 0.1, 0.2, 0.3, // relevant 0: rank 1
            0.5, 0.5, 0.5, 0.1, // relevant 2: ties with 0 and 1 first -> rank 3
            0.1, 0.2, 0.3, 0.4, // relevant 0: rank 4
        ];
        let ranks = text_to_audio_ranks(&sim, 4, &[0, 2, 0]);
        assert_eq!(ranks, vec![1, 3, 4]);
        let s = text_to_audio(&sim, 4, &[0, 2, 0]);
        assert!(close(s.r1, 1.0 / 3.0));
        assert!(close(s.r5, 1.0));
        assert!(close(s.r10, 1.0));
        assert!(close(s.map10, (1.0 + 1.0 / 3.0 + 0.25) / 3.0));
    }

    #[test]
    fn ranks_match_brute_force_on_random_cases() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let n_clips = rng.random_range(1..30);
            let n_caps = rng.random_range(1..20);
            let sim = random_scores(&mut rng, n_clips * n_caps);
            let relevant: Vec<usize> = (0..n_caps).map(|_| rng.random_range(0..n_clips)).collect();
            let ranks = text_to_audio_ranks(&sim, n_clips, &relevant);
            for q in 0..n_caps {
                let row = &sim[q * n_clips..(q + 1) * n_clips];
                assert_eq!(ranks[q], brute_rank(row, relevant[q]));
                // The full ranking (stable sort) agrees.
                let order = ranking(row);
                assert_eq!(
                    order.iter().position(|&i| i == relevant[q]).unwrap() + 1,
                    ranks[q]
                );
                let k = rng.random_range(0..n_clips + 2);
                assert_eq!(top_k(row, k), order[..k.min(n_clips)].to_vec());
            }
            // Brute-force metrics.
            let s = text_to_audio(&sim, n_clips, &relevant);
            let n = n_caps as f64;
            let br: Vec<usize> = (0..n_caps)
                .map(|q| brute_rank(&sim[q * n_clips..(q + 1) * n_clips], relevant[q]))
                .collect();
            assert!(close(
                s.r5,
                br.iter().filter(|&&r| r <= 5).count() as f64 / n
            ));
            let map: f64 = br
                .iter()
                .map(|&r| if r <= 10 { 1.0 / r as f64 } else { 0.0 })
                .sum::<f64>()
                / n;
            assert!(close(s.map10, map));
        }
    }

    /// Brute-force multi-relevant AP@k by walking the ranking.
    fn brute_ap(scores: &[f32], relevant: &[usize], k: usize) -> f64 {
        let order = ranking(scores);
        let (mut hits, mut sum) = (0usize, 0.0);
        for (pos, item) in order.iter().enumerate().take(k) {
            if relevant.contains(item) {
                hits += 1;
                sum += hits as f64 / (pos + 1) as f64;
            }
        }
        if relevant.is_empty() {
            0.0
        } else {
            sum / relevant.len() as f64
        }
    }

    #[test]
    fn average_precision_hand_computed() {
        // Relevant at ranks 1, 3, 12 with k = 10: (1/1 + 2/3) / 3.
        assert!(close(
            average_precision_at_k(&[3, 1, 12], 10),
            (1.0 + 2.0 / 3.0) / 3.0
        ));
        assert!(close(average_precision_at_k(&[2], 10), 0.5));
        assert_eq!(average_precision_at_k(&[], 10), 0.0);
        // With ties: scores [0.5, 0.5, 0.9], relevant {1, 2}: ranks 1 (item 2) and 3 (item 1).
        assert!(close(
            multi_relevant_ap_at_k(&[0.5, 0.5, 0.9], &[1, 2], 10),
            (1.0 + 2.0 / 3.0) / 2.0
        ));
    }

    #[test]
    fn audio_to_text_hand_computed_and_brute_force() {
        // 2 clips, 4 captions; captions 0, 1 belong to clip 0, 2, 3 to clip 1.
        // sim [caption, clip]
        let sim = [
            0.9, 0.1, //
            0.2, 0.2, //
            0.3, 0.8, //
            0.2, 0.1, //
        ];
        let clip_of = [0, 0, 1, 1];
        let ranks = audio_to_text_ranks(&sim, 2, &clip_of);
        // clip 0 scores over captions [0.9, 0.2, 0.3, 0.2]: caption 0 rank 1, caption 1 rank 3.
        // clip 1 scores [0.1, 0.2, 0.8, 0.1]: caption 2 rank 1, caption 3 rank 4 (below
        // captions 2 and 1, and tied with caption 0, which has the lower index).
        assert_eq!(ranks, vec![vec![1, 3], vec![1, 4]]);
        let s = audio_to_text(&sim, 2, &clip_of);
        assert!(close(s.any.r1, 1.0));
        assert!(close(s.fraction.r1, 0.5));
        assert!(close(s.fraction.r5, 1.0));
        assert!(close(
            s.any.map10,
            ((1.0 + 2.0 / 3.0) / 2.0 + (1.0 + 2.0 / 4.0) / 2.0) / 2.0
        ));
        assert_eq!(s.any.map10, s.fraction.map10);

        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for _ in 0..100 {
            let n_clips = rng.random_range(1..15);
            let n_caps = rng.random_range(1..40);
            let sim = random_scores(&mut rng, n_clips * n_caps);
            let clip_of: Vec<usize> = (0..n_caps).map(|_| rng.random_range(0..n_clips)).collect();
            let ranks = audio_to_text_ranks(&sim, n_clips, &clip_of);
            let mut any_r5 = Vec::new();
            let mut frac_r1 = Vec::new();
            let mut ap = Vec::new();
            for i in 0..n_clips {
                let col: Vec<f32> = (0..n_caps).map(|q| sim[q * n_clips + i]).collect();
                let rel: Vec<usize> = (0..n_caps).filter(|&q| clip_of[q] == i).collect();
                let mut br: Vec<usize> = rel.iter().map(|&q| brute_rank(&col, q)).collect();
                br.sort_unstable();
                assert_eq!(ranks[i], br);
                if rel.is_empty() {
                    continue;
                }
                any_r5.push(if br[0] <= 5 { 1.0 } else { 0.0 });
                frac_r1.push(br.iter().filter(|&&r| r <= 1).count() as f64 / br.len() as f64);
                ap.push(brute_ap(&col, &rel, 10));
            }
            let s = audio_to_text(&sim, n_clips, &clip_of);
            assert!(close(s.any.r5, mean(&any_r5)));
            assert!(close(s.fraction.r1, mean(&frac_r1)));
            assert!(close(s.any.map10, mean(&ap)));
        }
    }

    #[test]
    fn multi_relevant_ap_matches_brute_force() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..300 {
            let n = rng.random_range(1..25);
            let scores = random_scores(&mut rng, n);
            let mut rel: Vec<usize> = (0..n).filter(|_| rng.random_range(0..4) == 0).collect();
            rel.dedup();
            let k = rng.random_range(1..12);
            assert!(close(
                multi_relevant_ap_at_k(&scores, &rel, k),
                brute_ap(&scores, &rel, k)
            ));
        }
    }

    #[test]
    fn ndcg_hand_computed() {
        // scores rank items 2, 0, 1; gains item0 = 1, item1 = 0.5.
        let scores = [0.5, 0.1, 0.9];
        let g = [(0, 1.0), (1, 0.5)];
        let dcg = 1.0 / 3f64.log2() + 0.5 / 4f64.log2();
        let idcg = 1.0 + 0.5 / 3f64.log2();
        assert!(close(ndcg_at_k(&scores, &g, 10).unwrap(), dcg / idcg));
        // k = 1: top item has gain 0.
        assert!(close(ndcg_at_k(&scores, &g, 1).unwrap(), 0.0));
        // Perfect ranking.
        assert!(close(ndcg_at_k(&[1.0, 0.5, 0.0], &g, 10).unwrap(), 1.0));
        assert_eq!(ndcg_at_k(&scores, &[], 10), None);
        // Ties: equal scores, lower index first -> item 0 first.
        assert!(close(
            ndcg_at_k(&[0.3, 0.3, 0.3], &[(0, 1.0)], 1).unwrap(),
            1.0
        ));
        assert!(close(
            ndcg_at_k(&[0.3, 0.3, 0.3], &[(1, 1.0)], 1).unwrap(),
            0.0
        ));
    }

    #[test]
    fn dot_matrix_matches_naive() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let dim = 13;
        let a: Vec<f32> = (0..3 * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..4 * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let m = dot_matrix(&a, &b, dim);
        for i in 0..3 {
            for j in 0..4 {
                let naive: f32 = (0..dim).map(|d| a[i * dim + d] * b[j * dim + d]).sum();
                assert!((m[i * 4 + j] - naive).abs() < 1e-5);
            }
        }
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
