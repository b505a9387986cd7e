"""`evaluate`'s computation in numpy: the reference `bench correspondences` times beside it.

From the split's normalised embeddings (`audio.npy` [clips, d], `text.npy` [captions, d]) and
each caption's clip: the caption x clip cosine matrix (one product), text -> audio ranks of the
annotated clip and audio -> text ranks of each clip's captions (ties: lower index first), R@1,
R@5, R@10 and mAP@10 in the three conventions, 95 % bootstrap percentile intervals that
resample clips with all their captions (`resamples` draws; numpy's generator, so the intervals
differ from the kind's by sampling noise only), and each caption's ten best clips. Prints one
JSON line: seconds, the point metrics (compared with the kind's `metrics.json`).
"""

import argparse
import json
import time

import numpy as np

from peak import peak_mib


def single_relevant(ranks):
    r = ranks.astype(np.float64)
    return {
        "r1": (r <= 1).astype(float),
        "r5": (r <= 5).astype(float),
        "r10": (r <= 10).astype(float),
        "map10": np.where(r <= 10, 1.0 / r, 0.0),
    }


def bootstrap(per_query, cluster, resamples, rng, level=0.95):
    k = cluster.max() + 1
    sizes = np.bincount(cluster, minlength=k).astype(np.float64)
    drawn = rng.integers(0, k, size=(resamples, k))
    size = sizes[drawn].sum(axis=1)
    out = {}
    alpha = (1.0 - level) / 2.0
    for name, values in per_query.items():
        sums = np.bincount(cluster, weights=values, minlength=k)
        means = sums[drawn].sum(axis=1) / size
        low, high = np.quantile(means, [alpha, 1.0 - alpha])
        out[name] = {"low": float(low), "high": float(high)}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args()
    audio = np.load(f"{args.dir}/audio.npy")
    text = np.load(f"{args.dir}/text.npy")
    with open(f"{args.dir}/caption_clip.json") as f:
        caption_clip = np.asarray(json.load(f), dtype=np.int64)
    n_a, n_c = audio.shape[0], text.shape[0]
    rng = np.random.default_rng(0)

    start = time.perf_counter()
    sim = text @ audio.T  # [captions, clips]
    clip_idx = np.arange(n_a)
    target = sim[np.arange(n_c), caption_clip][:, None]
    t2a_ranks = 1 + (sim > target).sum(1) + ((sim == target) & (clip_idx[None, :] < caption_clip[:, None])).sum(1)

    by_clip = sim.T  # [clips, captions]
    caption_idx = np.arange(n_c)
    order = np.argsort(caption_clip, kind="stable")
    bounds = np.searchsorted(caption_clip[order], np.arange(n_a + 1))
    any_q = {k: [] for k in ["r1", "r5", "r10", "map10"]}
    frac_q = {k: [] for k in ["r1", "r5", "r10", "map10"]}
    for i in range(n_a):
        caps = order[bounds[i]:bounds[i + 1]]
        if len(caps) == 0:
            continue
        row = by_clip[i]
        t = row[caps][:, None]
        ranks = np.sort(1 + (row[None, :] > t).sum(1) + ((row[None, :] == t) & (caption_idx[None, :] < caps[:, None])).sum(1))
        hits = np.arange(1, len(ranks) + 1)
        ap10 = np.where(ranks <= 10, hits / ranks, 0.0).sum() / len(ranks)
        for k, cut in [("r1", 1), ("r5", 5), ("r10", 10)]:
            any_q[k].append(float(ranks[0] <= cut))
            frac_q[k].append(float((ranks <= cut).mean()))
        any_q["map10"].append(ap10)
        frac_q["map10"].append(ap10)
    any_q = {k: np.asarray(v) for k, v in any_q.items()}
    frac_q = {k: np.asarray(v) for k, v in frac_q.items()}
    t2a_q = single_relevant(t2a_ranks)

    singletons = np.arange(len(any_q["r1"]))
    intervals = {
        "t2a_ci": bootstrap(t2a_q, caption_clip, args.resamples, rng),
        "a2t_any_ci": bootstrap(any_q, singletons, args.resamples, rng),
        "a2t_fraction_ci": bootstrap(frac_q, singletons, args.resamples, rng),
    }
    # Each caption's ten best clips, best first (ties: lower clip index first).
    part = np.argpartition(-sim, 10, axis=1)[:, :10]
    top_scores = np.take_along_axis(sim, part, axis=1)
    top = np.take_along_axis(part, np.lexsort((part, -top_scores), axis=1), axis=1)
    seconds = time.perf_counter() - start

    mean = lambda q: {k: float(v.mean()) for k, v in q.items()}
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mib": peak_mib(),
                "numpy": np.__version__,
                "t2a": mean(t2a_q),
                "a2t_any": mean(any_q),
                "a2t_fraction": mean(frac_q),
                "intervals": intervals,
                "top_first": top[0].tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
