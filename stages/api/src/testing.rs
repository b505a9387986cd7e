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
