//! The shipped pipeline files plan: every node's params and inputs are accepted by its kind
//! (`pipeline dag` expands and plans the whole DAG without running anything).

#![cfg(feature = "stages")]

mod common;

use common::TestProject;

/// Copies `pipelines/<file>` into a temporary project (same relative layout) and plans it.
fn plans(file: &str, extra_dirs: &[&str]) -> String {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(repo.join("pipelines").join(file)).unwrap();
    let project = TestProject::new("");
    project.write(&format!("pipelines/{file}"), &text);
    for dir in extra_dirs {
        std::fs::create_dir_all(project.path().join(dir)).unwrap();
    }
    let config = format!("pipelines/{file}");
    project.run(&["-f", &config, "dag"]).ok().stdout
}

#[test]
fn real_sounds_pipeline_plans() {
    let dag = plans("real-sounds.toml", &[]);
    for node in [
        "sounds (fetch)",
        "encode (encode)",
        "distill.seed-3 (distill)",
        "report (report)",
    ] {
        assert!(dag.contains(node), "{node} missing:\n{dag}");
    }
}

#[test]
fn clotho_gpu_pipeline_plans_with_only_the_data_folder_added() {
    let dag = plans("clotho-gpu.toml", &["data/clotho"]);
    assert!(dag.contains("root <- {path = ../data/clotho}"), "{dag}");
    assert!(dag.contains("pretrained <- encoders"), "{dag}");
}

#[test]
fn partial_match_sweep_plans_one_report_per_data_set() {
    let dag = plans("partial-matches.toml", &[]);
    for line in [
        "correspondences.variants-4 (correspondences)\n  teachers <- embed.variants-4.seed-1, embed.variants-4.seed-2, embed.variants-4.seed-3\n",
        "distill.variants-2.seed-3 (distill)\n  init <- train.variants-2.seed-3\n",
        "reports <- report.variants-1, report.variants-2, report.variants-4, report.variants-6\n",
        "datasets <- data.variants-1, data.variants-2, data.variants-4, data.variants-6\n",
    ] {
        assert!(dag.contains(line), "{line} missing:\n{dag}");
    }
}

#[test]
fn default_pipeline_plans() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let project = TestProject::new(&std::fs::read_to_string(repo.join("pipeline.toml")).unwrap());
    let dag = project.run(&["dag"]).ok().stdout;
    assert!(dag.contains("report (report)"), "{dag}");
}

#[test]
fn paper_scale_pipeline_plans_with_only_the_data_folders_added() {
    let dag = plans(
        "paper-scale.toml",
        &["data/clotho", "data/audiocaps", "data/wavcaps"],
    );
    for line in [
        "features <- features-clotho, features-audiocaps, features-wavcaps",
        "init <- pretrain.seed-2",
        "finetune.seed-3 (train)",
        "teachers <- embed.seed-1, embed.seed-2, embed.seed-3",
    ] {
        assert!(dag.contains(line), "{line} missing:\n{dag}");
    }
}
