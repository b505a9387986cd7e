//! The whole method through the real `pipeline` binary on a tiny generated data set: every
//! stage kind runs, the correspondence table answers the README's Polars queries, and a
//! parameter edit reruns only what it changes. Needs the domain kinds (feature `stages`).

#![cfg(feature = "stages")]

mod common;

use common::TestProject;
use polars::prelude::*;

/// The default pipeline's shape at toy sizes (seconds of CPU, not minutes).
const TINY: &str = r#"
[stages.data]
kind = "synth-dataset"
params = { seed = 3, train_clips = 24, val_clips = 8, test_clips = 8, clip_seconds = 2.5, captions_per_clip = 3 }

[stages.features]
kind = "features"
inputs = { dataset = "data" }
params = { preset = "light", max_seconds = 2.5, window_seconds = 2.5 }

[stages.train]
kind = "train"
matrix = { seed = [1, 2] }
inputs = { features = "features" }
params = { epochs = 2, batch_size = 8, threads = 1, model = { embed_dim = 16, cnn = { channels = [4, 8] }, transformer = { d_model = 16, n_heads = 2, d_ff = 32 } } }

[stages.embed]
kind = "embed"
foreach = "train"
inputs = { model = "train", features = "features" }
params = { threads = 1 }

[stages.correspondences]
kind = "correspondences"
inputs = { teachers = "embed", features = "features" }

[stages.distill]
kind = "distill"
inputs = { init = "train", correspondences = "correspondences", features = "features" }
params = { epochs = 2, batch_size = 8, threads = 1 }

[stages.embed-distill]
kind = "embed"
inputs = { model = "distill", features = "features" }
params = { threads = 1 }

[stages.evaluate]
kind = "evaluate"
foreach = "embed"
inputs = { embeddings = "embed", features = "features" }
params = { bootstrap = 50 }

[stages.evaluate-distill]
kind = "evaluate"
inputs = { embeddings = "embed-distill", features = "features" }
params = { bootstrap = 50 }

[stages.report]
kind = "report"
inputs = { evaluations = ["evaluate", "evaluate-distill"], training = ["train", "distill"], correspondences = "correspondences", features = "features" }
params = { bootstrap = 50 }
"#;

/// `pipeline status` as node -> sentence.
fn status_of(p: &TestProject) -> std::collections::BTreeMap<String, String> {
    p.status()
        .lines()
        .map(|line| {
            let (node, sentence) = line.split_once(' ').unwrap();
            (node.to_owned(), sentence.trim().to_owned())
        })
        .collect()
}

fn correspondences(p: &TestProject) -> LazyFrame {
    let path = p.latest("correspondences").join("correspondences.parquet");
    LazyFrame::scan_parquet(path.to_str().unwrap().into(), ScanArgsParquet::default()).unwrap()
}

#[test]
fn tiny_pipeline_runs_end_to_end_and_reruns_only_what_an_edit_changes() {
    let p = TestProject::new(TINY);
    p.run(&["run", "-q"]).ok();
    let report = p.read("artifacts/latest/report/report.md");
    assert!(report.contains("`evaluate-distill`"), "{report}");
    assert!(p.latest("report").join("training_curves.png").exists());

    // The analyst queries of the README, with the Rust polars crate.
    let (clips, captions) = (24, 24 * 3);
    let rows = correspondences(&p).select([len()]).collect().unwrap();
    assert_eq!(
        rows.column("len").unwrap().u32().unwrap().get(0),
        Some(clips * captions)
    );
    let desc = || SortMultipleOptions::default().with_order_descending(true);
    let top_foreign = correspondences(&p)
        .filter(col("is_match").not())
        .group_by([col("audio_id")])
        .agg([
            col("estimate").max().alias("top_estimate"),
            col("caption")
                .sort_by([col("estimate")], desc())
                .first()
                .alias("top_caption"),
        ])
        .sort(["top_estimate"], desc())
        .collect()
        .unwrap();
    assert_eq!(top_foreign.height(), clips as usize);
    let dist = correspondences(&p)
        .group_by([col("is_match")])
        .agg([len().alias("pairs"), col("estimate").mean().alias("mean")])
        .sort(["is_match"], SortMultipleOptions::default())
        .collect()
        .unwrap();
    let pairs: Vec<u32> = dist
        .column("pairs")
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(pairs, [clips * captions - captions, captions]);
    let mean = dist
        .column("mean")
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap();
    let mean: Vec<f64> = mean.f64().unwrap().into_no_null_iter().collect();
    assert!(
        mean.iter().all(|m| m.is_finite() && m.abs() <= 1.0),
        "{mean:?}"
    );

    // A distillation parameter edit reruns distill and what depends on it, nothing upstream.
    p.write_config(&TINY.replace(
        "params = { epochs = 2, batch_size = 8, threads = 1 }",
        "params = { epochs = 3, batch_size = 8, threads = 1 }",
    ));
    let status = status_of(&p);
    assert_eq!(
        status["distill"],
        "stale: parameter `epochs` changed from 2 to 3"
    );
    assert_eq!(
        status["embed-distill"],
        "stale: upstream node `distill` is stale"
    );
    for upstream in [
        "data",
        "features",
        "train.seed-1",
        "train.seed-2",
        "correspondences",
    ] {
        assert_eq!(status[upstream], "up to date", "{upstream}");
    }
    p.run(&["run", "-q"]).ok();
    let after = p.status();
    assert!(after.lines().all(|l| l.ends_with("up to date")), "{after}");
    // Reverting finds the earlier artifacts: nothing is stale, nothing runs.
    p.write_config(TINY);
    let run = p.run(&["run"]).ok();
    assert!(
        run.stderr.contains("everything is up to date"),
        "{}",
        run.stderr
    );
}
