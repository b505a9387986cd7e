//! Statistics over per-query values and score columns: means, bootstrap percentile intervals
//! (plain and paired), quantiles, and the Pearson and Spearman correlations. Pure functions, no
//! I/O. The retrieval metrics whose per-query values these summarise are in [`crate::metrics`].
//!
//! Bootstrap (see `docs/method.md`, "Evaluation conventions"): the queries are grouped into
//! clusters (a clip with all its captions: five caption queries of one clip are not five
//! independent observations); `resamples` sets of as many clusters are drawn with replacement
//! from a ChaCha8 generator seeded with `seed`, and each set's mean is taken over all the queries
//! of its clusters; the interval at `level` is the `(1 - level) / 2` and `1 - (1 - level) / 2`
//! quantiles of the resampled means (linear interpolation between order statistics). Columns
//! bootstrapped together share the resampled sets; a paired comparison resamples the per-query
//! differences of two systems over the same queries. Across training seeds, [`over_seeds`]
//! gives the mean, the standard deviation and a Student-t interval.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// A two-sided interval (bootstrap percentile interval).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// Mean of `values` (0 when empty).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The sort key of a score or value: NaN counts as `-inf`, in rankings (`crate::metrics`) and in
/// rank correlations alike.
#[inline]
pub(crate) fn nan_as_lowest(x: f32) -> f32 {
    if x.is_nan() { f32::NEG_INFINITY } else { x }
}

/// Ranks 1..=n with tied values given their average rank (NaN counts as `-inf`).
pub fn average_ranks(values: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| nan_as_lowest(values[a]).total_cmp(&nan_as_lowest(values[b])));
    let mut ranks = vec![0.0f64; values.len()];
    let mut start = 0;
    while start < order.len() {
        let v = nan_as_lowest(values[order[start]]);
        let mut end = start + 1;
        while end < order.len() && nan_as_lowest(values[order[end]]) == v {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end; their mean:
        let avg = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = avg;
        }
        start = end;
    }
    ranks
}

/// Pearson correlation; `None` when either side is constant or there are fewer than 2 points.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len());
    let n = x.len();
    if n < 2 {
        return None;
    }
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        None
    } else {
        Some(sxy / (sxx * syy).sqrt())
    }
}

/// Spearman rank correlation (Pearson correlation of average ranks, so ties are handled);
/// `None` when either side is constant.
pub fn spearman(x: &[f32], y: &[f32]) -> Option<f64> {
    assert_eq!(x.len(), y.len());
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Percentile of sorted values with linear interpolation between order statistics (`q` in
/// `[0, 1]`).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Which queries are resampled together: the bootstrap draws whole clusters (a clip with all
/// its captions), so that queries that are not independent of each other do not narrow the
/// interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Clusters {
    /// Query indices of each cluster.
    members: Vec<Vec<usize>>,
    queries: usize,
}

impl Clusters {
    /// Every query its own cluster: the plain bootstrap over queries.
    pub fn singletons(queries: usize) -> Self {
        Self {
            members: (0..queries).map(|q| vec![q]).collect(),
            queries,
        }
    }

    /// Queries grouped by a label each (e.g. the clip of each caption query); clusters in
    /// order of first appearance.
    pub fn by_label<T: Eq + std::hash::Hash + Copy>(labels: &[T]) -> Self {
        let mut index = std::collections::HashMap::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (q, label) in labels.iter().enumerate() {
            let c = *index.entry(*label).or_insert_with(|| {
                members.push(Vec::new());
                members.len() - 1
            });
            members[c].push(q);
        }
        Self {
            members,
            queries: labels.len(),
        }
    }

    /// Number of clusters.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is no cluster.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// Bootstrap percentile intervals (`level`, e.g. 0.95) of the means of several per-query
/// columns of equal length. Each resample draws as many clusters as there are, with replacement
/// (ChaCha8 seeded with `seed`), shared by all columns, and takes the mean over every query of
/// the drawn clusters. Empty columns give `[0, 0]`, and `resamples = 0` the degenerate interval
/// `[mean, mean]`.
pub fn bootstrap_means_ci(
    columns: &[&[f64]],
    clusters: &Clusters,
    resamples: usize,
    seed: u64,
    level: f64,
) -> Vec<Interval> {
    let n = clusters.queries;
    assert!(
        columns.iter().all(|c| c.len() == n),
        "bootstrap columns must have one value per clustered query"
    );
    if n == 0 || resamples == 0 {
        return columns
            .iter()
            .map(|c| {
                let m = mean(c);
                Interval { low: m, high: m }
            })
            .collect();
    }
    let sizes: Vec<f64> = clusters.members.iter().map(|m| m.len() as f64).collect();
    let sums: Vec<Vec<f64>> = columns
        .iter()
        .map(|col| {
            clusters
                .members
                .iter()
                .map(|m| m.iter().map(|&q| col[q]).sum())
                .collect()
        })
        .collect();
    let k = clusters.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means = vec![Vec::with_capacity(resamples); columns.len()];
    let mut drawn = vec![0usize; k];
    for _ in 0..resamples {
        for d in drawn.iter_mut() {
            *d = rng.random_range(0..k);
        }
        let size: f64 = drawn.iter().map(|&c| sizes[c]).sum();
        for (c, s) in sums.iter().enumerate() {
            means[c].push(drawn.iter().map(|&d| s[d]).sum::<f64>() / size);
        }
    }
    let alpha = (1.0 - level) / 2.0;
    means
        .into_iter()
        .map(|mut m| {
            m.sort_by(f64::total_cmp);
            Interval {
                low: quantile_sorted(&m, alpha),
                high: quantile_sorted(&m, 1.0 - alpha),
            }
        })
        .collect()
}

/// Bootstrap percentile interval of the mean of one per-query column.
pub fn bootstrap_mean_ci(
    values: &[f64],
    clusters: &Clusters,
    resamples: usize,
    seed: u64,
    level: f64,
) -> Interval {
    bootstrap_means_ci(&[values], clusters, resamples, seed, level)[0]
}

/// Paired bootstrap interval of `mean(a) - mean(b)` over the same queries (`a[q]`, `b[q]` are
/// the values of query `q` under two systems), resampling the clusters of the queries.
pub fn paired_bootstrap_diff_ci(
    a: &[f64],
    b: &[f64],
    clusters: &Clusters,
    resamples: usize,
    seed: u64,
    level: f64,
) -> Interval {
    assert_eq!(a.len(), b.len(), "paired bootstrap needs the same queries");
    let diff: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    bootstrap_mean_ci(&diff, clusters, resamples, seed, level)
}

/// Mean, sample standard deviation and two-sided Student-t interval at `level` of a few
/// values (one per training seed). With one value the deviation and the interval are NaN.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OverSeeds {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// [`OverSeeds`] of `values`: the interval is `mean ± t_{(1+level)/2, n-1} · sd / √n`.
pub fn over_seeds(values: &[f64], level: f64) -> OverSeeds {
    let n = values.len();
    let m = mean(values);
    if n < 2 {
        return OverSeeds {
            n,
            mean: m,
            sd: f64::NAN,
            ci_low: f64::NAN,
            ci_high: f64::NAN,
        };
    }
    let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1) as f64;
    let sd = var.sqrt();
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .expect("n - 1 >= 1 degrees of freedom")
        .inverse_cdf((1.0 + level) / 2.0);
    let half = t * sd / (n as f64).sqrt();
    OverSeeds {
        n,
        mean: m,
        sd,
        ci_low: m - half,
        ci_high: m + half,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn spearman_with_ties() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 10.0, 30.0]),
            vec![1.5, 3.0, 1.5, 4.0]
        );
        assert!(close(
            spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]).unwrap(),
            1.0
        ));
        assert!(close(
            spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(),
            -1.0
        ));
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None);
        // x = [1, 2, 2, 3] ranks [1, 2.5, 2.5, 4]; y = [1, 3, 2, 4] ranks [1, 3, 2, 4].
        let rx = [1.0, 2.5, 2.5, 4.0];
        let ry = [1.0, 3.0, 2.0, 4.0];
        let expected = pearson(&rx, &ry).unwrap();
        // Hand: means 2.5; dx = [-1.5, 0, 0, 1.5], dy = [-1.5, .5, -.5, 1.5]; sxy = 4.5,
        // sxx = 4.5, syy = 5 -> 4.5 / sqrt(22.5).
        assert!(close(expected, 4.5 / 22.5f64.sqrt()));
        assert!(close(
            spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]).unwrap(),
            expected
        ));
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let v: Vec<f64> = (0..500)
            .map(|_| {
                if rng.random_range(0..3) == 0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let each = Clusters::singletons(v.len());
        let a = bootstrap_mean_ci(&v, &each, 1000, 42, 0.95);
        let b = bootstrap_mean_ci(&v, &each, 1000, 42, 0.95);
        assert_eq!(a, b);
        let m = mean(&v);
        assert!(a.low < m && m < a.high, "{a:?} {m}");
        // Normal approximation: half-width ~ 1.96 * sqrt(p(1-p)/n).
        let half = 1.96 * (m * (1.0 - m) / 500.0).sqrt();
        assert!(
            ((a.high - a.low) / 2.0 - half).abs() < 0.25 * half,
            "{a:?} vs ±{half}"
        );
        // A constant difference has a degenerate interval.
        let d = paired_bootstrap_diff_ci(
            &[1.0, 2.0, 3.0],
            &[0.5, 1.5, 2.5],
            &Clusters::singletons(3),
            100,
            0,
            0.95,
        );
        assert!(close(d.low, 0.5) && close(d.high, 0.5));
        assert!(close(quantile_sorted(&[0.0, 1.0, 2.0, 3.0], 0.5), 1.5));
    }

    #[test]
    fn clustered_bootstrap_resamples_whole_clusters() {
        // Five identical copies of each value (a clip's five captions that all behave alike):
        // resampling clips must give exactly the interval of the values themselves, while
        // resampling the copies independently pretends to five times the data.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let unique: Vec<f64> = (0..200).map(|_| rng.random_range(0.0..1.0)).collect();
        let copies: Vec<f64> = unique.iter().flat_map(|&v| [v; 5]).collect();
        let clip_of: Vec<usize> = (0..copies.len()).map(|q| q / 5).collect();
        let by_clip = Clusters::by_label(&clip_of);
        assert_eq!(by_clip.len(), 200);
        let clustered = bootstrap_mean_ci(&copies, &by_clip, 2000, 9, 0.95);
        let plain_unique = bootstrap_mean_ci(&unique, &Clusters::singletons(200), 2000, 9, 0.95);
        assert!(close(clustered.low, plain_unique.low) && close(clustered.high, plain_unique.high));
        let naive = bootstrap_mean_ci(&copies, &Clusters::singletons(1000), 2000, 9, 0.95);
        let ratio = (clustered.high - clustered.low) / (naive.high - naive.low);
        assert!((ratio - 5f64.sqrt()).abs() < 0.3, "width ratio {ratio}");
        // Clusters of unequal size: the resampled mean is over queries, not over clusters.
        let lopsided = Clusters::by_label(&[0, 0, 0, 1]);
        let ci = bootstrap_mean_ci(&[1.0, 1.0, 1.0, 0.0], &lopsided, 4000, 1, 1.0);
        // Draws of two clusters: {0,0} -> 1, {0,1} -> 3/4, {1,1} -> 0.
        assert!(close(ci.low, 0.0) && close(ci.high, 1.0));
        let d = bootstrap_mean_ci(&[1.0, 1.0, 1.0, 0.0], &lopsided, 4000, 1, 0.4);
        assert!(close(d.low, 0.75) && close(d.high, 0.75), "{d:?}");
    }

    #[test]
    fn intervals_over_seeds_use_student_t() {
        let s = over_seeds(&[1.0, 2.0, 3.0], 0.95);
        assert_eq!(s.n, 3);
        assert!(close(s.mean, 2.0) && close(s.sd, 1.0));
        // t_{0.975, 2} = 4.302652729911275 (tables); half-width 4.3027 / sqrt(3).
        let half = 4.302652729911275 / 3f64.sqrt();
        assert!((s.ci_low - (2.0 - half)).abs() < 1e-6, "{s:?}");
        assert!((s.ci_high - (2.0 + half)).abs() < 1e-6, "{s:?}");
        let one = over_seeds(&[0.5], 0.95);
        assert!(close(one.mean, 0.5) && one.sd.is_nan() && one.ci_low.is_nan());
    }
}
