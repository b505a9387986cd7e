//! Helpers for tests of stage kinds (feature `testing`, enabled by dev-dependencies only).

use std::sync::{Mutex, MutexGuard};

use crate::{Reporter, SilentStep, StepProgress};

/// A reporter that keeps what it is told: for tests of stage kinds (what a run warned about and
/// measured, and its log lines).
#[derive(Debug, Default)]
pub struct RecordingReporter {
    logs: Mutex<Vec<String>>,
    warnings: Mutex<Vec<String>>,
    measurements: Mutex<Vec<(String, f64)>>,
}

impl RecordingReporter {
    pub fn logs(&self) -> Vec<String> {
        lock(&self.logs).clone()
    }

    pub fn warnings(&self) -> Vec<String> {
        lock(&self.warnings).clone()
    }

    /// The names measured, in order.
    pub fn measured(&self) -> Vec<String> {
        lock(&self.measurements)
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The last value measured under `name`.
    pub fn measurement(&self, name: &str) -> Option<f64> {
        lock(&self.measurements)
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reporter for RecordingReporter {
    fn step(&self, _label: &str, _total: u64) -> Box<dyn StepProgress> {
        Box::new(SilentStep)
    }
    fn log(&self, line: &str) {
        lock(&self.logs).push(line.to_owned());
    }
    fn warn(&self, line: &str) {
        lock(&self.warnings).push(line.to_owned());
    }
    fn measure(&self, name: &str, value: f64) {
        lock(&self.measurements).push((name.to_owned(), value));
    }
}

/// The Python of a virtual environment at `dir` that holds the packages pinned in the pip
/// requirements file `requirements`: for benchmarks that time a Python reference in the same
/// run. Created with `python3 -m venv` and `pip install -r` (PyPI) on first use, and again
/// whenever the requirements file changes (the installed copy is kept beside the venv).
pub fn python_venv(
    dir: &std::path::Path,
    requirements: &std::path::Path,
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::{Context, ensure};
    use std::process::Command;
    let wanted = std::fs::read_to_string(requirements)
        .with_context(|| format!("reading `{}`", requirements.display()))?;
    let installed = dir.join("requirements.installed");
    let python = dir.join("bin/python");
    if python.exists() && std::fs::read_to_string(&installed).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    eprintln!(
        "creating {} with the packages of {} (pip, once)",
        dir.display(),
        requirements.display()
    );
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing `{}`", dir.display()))?;
    }
    ensure!(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(dir)
            .status()
            .context("running python3")?
            .success(),
        "python3 -m venv {} failed",
        dir.display()
    );
    ensure!(
        Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(requirements)
            .status()
            .context("running pip")?
            .success(),
        "pip install -r {} failed",
        requirements.display()
    );
    std::fs::write(&installed, wanted)?;
    Ok(python)
}

/// The workspace's target directory: `$CARGO_TARGET_DIR`, else `target/` beside `manifest_dir`'s
/// workspace root (`manifest_dir` is a stage crate's `CARGO_MANIFEST_DIR`).
pub fn target_dir(manifest_dir: &str) -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(manifest_dir).join("../../target"))
}

/// `(median, min, max)` of `values` (at least one): how benchmarks that repeat a measurement in
/// rounds report it.
pub fn median_and_range(values: &[f64]) -> (f64, f64, f64) {
    assert!(!values.is_empty(), "a median of no values");
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_and_range_of_odd_and_even_counts() {
        assert_eq!(super::median_and_range(&[3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(
            super::median_and_range(&[4.0, 1.0, 2.0, 3.0]),
            (2.5, 1.0, 4.0)
        );
    }
}
