//! An analyst's view of `correspondences.parquet`: run the `correspondences` kind on a tiny
//! generated feature set, then query the table with Rust polars (lazy + parquet). The same two
//! queries, in Python and Rust polars, are in the README ("For analysts").

#![cfg(feature = "stages")]

use std::path::PathBuf;

use pipeline_eval::Correspondences;
use polars::prelude::*;

// The eval crate's synthetic artifacts and stage runner.
#[path = "../stages/eval/tests/common/mod.rs"]
mod eval_common;

use eval_common::{run_stage, synthetic_embeddings, synthetic_features};

const CLIPS: [usize; 3] = [10, 3, 4];
const CAPTIONS_PER_CLIP: usize = 3;
const TOPICS: usize = 3;

fn table() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let features = synthetic_features(CLIPS, CAPTIONS_PER_CLIP, TOPICS, true);
    let fdir = dir.path().join("features");
    std::fs::create_dir_all(&fdir).unwrap();
    features.save(&fdir).unwrap();
    let mut teachers = Vec::new();
    for m in 0..2u64 {
        let t = dir.path().join(format!("embed-{m}"));
        std::fs::create_dir_all(&t).unwrap();
        synthetic_embeddings(&features, 16, TOPICS, 0.7, m)
            .save(&t)
            .unwrap();
        teachers.push((Some(if m == 0 { "embed.a" } else { "embed.b" }), t));
    }
    let out = dir.path().join("out");
    run_stage(
        &Correspondences,
        "correspondences",
        "row_group_rows = 60",
        &[
            ("teachers", teachers),
            ("features", vec![(Some("features"), fdir)]),
        ],
        &out,
        2,
    )
    .unwrap();
    let path = out.join("correspondences.parquet");
    (dir, path)
}

fn scan(path: &std::path::Path) -> LazyFrame {
    LazyFrame::scan_parquet(path.to_str().unwrap().into(), ScanArgsParquet::default()).unwrap()
}

#[test]
fn analyst_queries_on_the_correspondence_table() {
    let (_dir, path) = table();
    let n_clips = CLIPS[0];
    let n_captions = CLIPS[0] * CAPTIONS_PER_CLIP;

    // Shape and annotation.
    let all = scan(&path).collect().unwrap();
    assert_eq!(all.height(), n_clips * n_captions);
    let matches = scan(&path).filter(col("is_match")).collect().unwrap();
    assert_eq!(
        matches.height(),
        n_captions,
        "one annotated clip per caption"
    );

    // Query 1: per clip, the caption most likely to match it other than its own captions.
    let top_foreign = scan(&path)
        .filter(col("is_match").not())
        .group_by([col("audio_id")])
        .agg([
            col("estimate").max().alias("top_estimate"),
            col("caption")
                .sort_by(
                    [col("estimate")],
                    SortMultipleOptions::default().with_order_descending(true),
                )
                .first()
                .alias("top_caption"),
            col("caption_index")
                .sort_by(
                    [col("estimate")],
                    SortMultipleOptions::default().with_order_descending(true),
                )
                .first()
                .alias("top_caption_index"),
        ])
        .sort(
            ["top_estimate"],
            SortMultipleOptions::default().with_order_descending(true),
        )
        .collect()
        .unwrap();
    assert_eq!(top_foreign.height(), n_clips);
    // The synthetic teachers cluster clips by topic: the most confusable foreign caption of a
    // clip mostly describes a clip of the same topic (caption text "sound of topic T ...").
    let ids = top_foreign.column("audio_id").unwrap().str().unwrap();
    let caps = top_foreign.column("top_caption").unwrap().str().unwrap();
    let same_topic = ids
        .iter()
        .zip(caps.iter())
        .filter(|(id, cap)| {
            let clip: usize = id.unwrap()["clip".len()..].parse().unwrap();
            cap.unwrap()
                .starts_with(&format!("sound of topic {} ", clip % TOPICS))
        })
        .count();
    assert!(
        same_topic * 10 >= n_clips * 7,
        "{same_topic}/{n_clips} top foreign captions share the topic"
    );
    let top = top_foreign
        .column("top_estimate")
        .unwrap()
        .f32()
        .unwrap()
        .clone();
    let values: Vec<f32> = top.into_no_null_iter().collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "sorted descending");

    // Query 2: distribution of the estimate for annotated vs other pairs.
    let dist = scan(&path)
        .group_by([col("is_match")])
        .agg([
            len().alias("pairs"),
            col("estimate").mean().alias("mean"),
            col("estimate")
                .quantile(lit(0.1), QuantileMethod::Linear)
                .alias("q10"),
            col("estimate")
                .quantile(lit(0.5), QuantileMethod::Linear)
                .alias("median"),
            col("estimate")
                .quantile(lit(0.9), QuantileMethod::Linear)
                .alias("q90"),
        ])
        .sort(["is_match"], SortMultipleOptions::default())
        .collect()
        .unwrap();
    assert_eq!(dist.height(), 2);
    let pairs: Vec<u32> = dist
        .column("pairs")
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(
        pairs,
        vec![
            (n_clips * n_captions - n_captions) as u32,
            n_captions as u32
        ]
    );
    let mean: Vec<f64> = dist
        .column("mean")
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert!(
        mean[1] > mean[0] + 0.2,
        "annotated pairs score higher: {mean:?}"
    );
    let q10: Vec<f64> = dist
        .column("q10")
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let q90: Vec<f64> = dist
        .column("q90")
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert!(q10[0] <= q90[0] && q10[1] <= q90[1]);

    // p(c|a) sums to 1 over the captions of each clip, p(a|c) over the clips of each caption.
    for (key, p, groups) in [
        ("audio_index", "p_caption_given_audio", n_clips),
        ("caption_index", "p_audio_given_caption", n_captions),
    ] {
        let sums = scan(&path)
            .group_by([col(key)])
            .agg([col(p).cast(DataType::Float64).sum().alias("total")])
            .collect()
            .unwrap();
        assert_eq!(sums.height(), groups);
        for s in sums
            .column("total")
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
        {
            assert!((s - 1.0).abs() < 1e-4, "{p} sums to {s}");
        }
    }

    // The ensemble estimate is the mean of the teachers' cosines.
    let diff = scan(&path)
        .select([
            ((col("teacher_0") + col("teacher_1")) / lit(2.0f32) - col("estimate"))
                .max()
                .alias("hi"),
            ((col("teacher_0") + col("teacher_1")) / lit(2.0f32) - col("estimate"))
                .min()
                .alias("lo"),
        ])
        .collect()
        .unwrap();
    for c in ["hi", "lo"] {
        let d = diff
            .column(c)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap();
        assert!(d.abs() < 1e-6, "mean(teachers) - estimate reaches {d}");
    }

    // Ground truth: relevance 1 on every annotated pair.
    let rel = scan(&path)
        .filter(col("is_match"))
        .select([col("relevance").min().alias("m")])
        .collect()
        .unwrap();
    assert_eq!(rel.column("m").unwrap().f32().unwrap().get(0), Some(1.0));
}
