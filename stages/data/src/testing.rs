//! Test helpers: a reporter that records what a run reports, running a kind as the executor
//! does, and comparing output directories byte for byte.

use std::collections::BTreeMap;
use std::path::Path;

use pipeline_api::{InputArtifact, InputCounts, RunContext, StageKind};

/// Records `log`, `warn` and `measure` calls.
pub use pipeline_api::RecordingReporter as Recorder;

/// Plans `kind` with `params` (TOML) and runs it on `inputs` into `out` (which must exist and
/// be empty), as the executor would.
pub fn run_kind(
    kind: &dyn StageKind,
    params: &str,
    inputs: &[(&str, &Path)],
    out: &Path,
    reporter: &Recorder,
) -> anyhow::Result<()> {
    let table: toml::Table = toml::from_str(params)?;
    let counts = InputCounts(inputs.iter().map(|(n, _)| (n.to_string(), 1)).collect());
    let plan = kind.plan(&table, &counts)?;
    let bound: BTreeMap<String, Vec<InputArtifact>> = inputs
        .iter()
        .map(|(n, p)| {
            (
                n.to_string(),
                vec![InputArtifact {
                    node: None,
                    path: p.to_path_buf(),
                }],
            )
        })
        .collect();
    let scratch = tempfile::tempdir()?;
    let ctx = RunContext {
        node: "test",
        params: &plan.params,
        inputs: &bound,
        out_dir: out,
        scratch_dir: scratch.path(),
        threads: 2,
        gpu: None,
        reporter,
    };
    kind.run(&ctx)
}

/// Every file under `dir` (not following symbolic links) by relative path: its bytes, or for a
/// link, `"-> <target>"`.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let ft = entry.file_type().unwrap();
            if ft.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(rel, format!("-> {}", target.display()).into_bytes());
            } else if ft.is_dir() {
                todo.push(path);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Asserts that no output file contains `needle` (a directory that must not leak into outputs).
pub fn assert_no_path_in(files: &BTreeMap<String, Vec<u8>>, needle: &Path) {
    let needle = needle.to_string_lossy();
    for (name, bytes) in files {
        if bytes.starts_with(b"-> ") {
            continue;
        }
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "`{name}` contains `{needle}`"
        );
    }
}

/// The bytes of every output file, symbolic links left out (their targets are where the
/// inputs are, which differs between the two runs being compared).
pub fn content(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files(dir)
        .into_iter()
        .filter(|(_, b)| !b.starts_with(b"-> "))
        .collect()
}
