//! The whole method through the real `pipeline` binary on a tiny generated data set: every
//! stage kind runs, the correspondence table answers the README's Polars queries, and a
//! parameter edit reruns only what it changes. Needs the domain kinds (feature `stages`).

#![cfg(feature = "stages")]

mod common;

use common::TestProject;
use polars::prelude::*;

/// The default pipeline's shape at toy sizes (seconds of CPU, not minutes).
const TINY: &str = include_str!("data/tiny.toml");

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
    // The student against its control, its start (chosen on validation, as `distill` chose
    // it) and the teachers, from what the run measured.
    let metrics: serde_json::Value =
        serde_json::from_str(&p.read("artifacts/latest/report/metrics.json")).unwrap();
    let headline = &metrics["headline"];
    let start = headline["start_chosen_on_validation"]["node"]
        .as_str()
        .unwrap();
    let object = p.latest("distill").canonicalize().unwrap();
    let distill_log = std::fs::read_to_string(object.parent().unwrap().join("log.txt")).unwrap();
    assert!(
        distill_log.contains(&format!("init: `{start}`")),
        "the report's start is the one distill started from: {start}\n{distill_log}"
    );
    let map10 = |node: &str| {
        let m: serde_json::Value =
            serde_json::from_str(&p.read(&format!("artifacts/latest/{node}/metrics.json")))
                .unwrap();
        m["t2a"]["map10"].as_f64().unwrap()
    };
    let minus_control = headline["per_seed"]["evaluate-distill"]["minus_control_map10"]["value"]
        .as_f64()
        .unwrap();
    assert!(
        (minus_control - (map10("evaluate-distill") - map10("evaluate-continued"))).abs() < 1e-12
    );
    let ensemble: serde_json::Value =
        serde_json::from_str(&p.read("artifacts/latest/evaluate-ensemble/metrics.json")).unwrap();
    assert_eq!(ensemble["members"], 2);
    assert!(
        report.contains("| `evaluate-ensemble` | ensemble |"),
        "{report}"
    );

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

/// Every node's key, from `pipeline show --json`.
fn keys(p: &TestProject) -> std::collections::BTreeMap<String, String> {
    status_of(p)
        .into_keys()
        .map(|node| {
            let shown: serde_json::Value =
                serde_json::from_str(&p.run(&["show", "--json", &node]).ok().stdout).unwrap();
            (node, shown["key"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The nodes `pipeline run` reported as `ran`.
fn ran(run: &common::Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter_map(|l| {
            let mut cells = l.split_whitespace();
            let node = cells.next()?;
            (cells.next() == Some("ran")).then(|| node.to_owned())
        })
        .collect()
}

#[test]
fn outputs_are_reproducible_relocatable_and_rebuilt_nodes_leave_dependents_cached() {
    // The same pipeline in two directories computes the same keys for every node: no output
    // carries an absolute path, a timing or a random id.
    let (here, there) = (TestProject::new(TINY), TestProject::new(TINY));
    here.run(&["run", "-q"]).ok();
    there.run(&["run", "-q"]).ok();
    let keys_here = keys(&here);
    assert_eq!(keys_here.len(), 17, "{keys_here:?}");
    assert_eq!(keys_here, keys(&there));

    // Rebuilding the data set from scratch reproduces its bytes: nothing after it reruns.
    let run = here.run(&["run", "--force", "data"]).ok();
    assert_eq!(ran(&run), ["data"], "{}", run.stderr);

    // A damaged features file is rebuilt, and only it.
    let damaged = std::fs::read_dir(here.latest("features"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .expect("a safetensors file in features");
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let run = here.run(&["run"]).ok();
    assert_eq!(ran(&run), ["features"], "{}", run.stderr);

    // Retraining one member reproduces its model byte for byte: its embeddings stay cached.
    let run = here.run(&["run", "--force", "train.seed-1"]).ok();
    assert_eq!(ran(&run), ["train.seed-1"], "{}", run.stderr);
    assert_eq!(keys(&here), keys_here);
}

#[test]
fn a_misspelt_input_is_named_with_the_closest_known_name() {
    let config = TINY.replace(
        "inputs = { embeddings = \"embed-distill\", features = \"features\" }",
        "inputs = { embedings = \"embed-distill\", features = \"features\" }",
    );
    let line = 1 + config
        .lines()
        .position(|l| l.contains("embedings"))
        .unwrap();
    let p = TestProject::new(&config);
    let r = p.run(&["status"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let expected = format!(
        "error: pipeline.toml:{line}:12: stage `evaluate-distill`: inputs.`embedings`: \
         unknown input; did you mean `embeddings`?"
    );
    assert!(r.stderr.starts_with(&expected), "{}", r.stderr);
}

/// A mono 16-bit PCM WAV of `samples` at 16 kHz.
fn wav(samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&16_000u32.to_le_bytes());
    out.extend_from_slice(&32_000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

#[test]
fn skipped_audio_is_a_warning_in_the_summary_and_library_logs_stay_off_the_terminal() {
    let p = TestProject::new(
        r#"
[stages.data]
kind = "dataset"
inputs = { root = { path = "sounds" } }
params = { format = "csv", on_error = "skip" }
"#,
    );
    let tone: Vec<i16> = (0..16_000)
        .map(|i| ((i % 40) * 400 - 8000) as i16)
        .collect();
    std::fs::create_dir_all(p.path().join("sounds")).unwrap();
    std::fs::write(p.path().join("sounds/good.wav"), wav(&tone)).unwrap();
    std::fs::write(
        p.path().join("sounds/noise.wav"),
        b"not audio at all, just bytes",
    )
    .unwrap();
    p.write(
        "sounds/captions.csv",
        "file,caption,split\ngood.wav,a steady buzzing tone,train\nnoise.wav,something else,train\n",
    );
    for args in [&["run", "-q"][..], &["run", "--force", "data"][..]] {
        let r = p.run(args).ok();
        let warnings: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("warning:"))
            .collect();
        assert_eq!(warnings.len(), 1, "{}", r.stderr);
        assert!(
            warnings[0].starts_with("warning: `data`: ") && warnings[0].contains("noise.wav"),
            "{}",
            r.stderr
        );
        assert!(
            !r.stderr.contains('\u{1b}'),
            "raw colour codes: {:?}",
            r.stderr
        );
        assert!(
            !r.stderr.to_lowercase().contains("symphonia"),
            "{}",
            r.stderr
        );
    }
}
