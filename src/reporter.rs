//! The [`Reporter`] given to a running node: every line goes to the node's log file, progress
//! and log lines go on to the run's [`RunEvents`] (which the binary shows), and the warnings and
//! measurements are kept for the summary and the manifest.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use pipeline_api::{Reporter, StepProgress};

use crate::events::RunEvents;

/// What a node reported of itself besides its outputs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunNotes {
    /// [`Reporter::warn`] lines, in order.
    pub warnings: Vec<String>,
    /// [`Reporter::measure`] values (the last one of each name).
    pub measurements: BTreeMap<String, f64>,
}

/// The reporter of one running node.
pub struct NodeReporter<'a> {
    node: &'a str,
    events: &'a dyn RunEvents,
    log: Mutex<std::fs::File>,
    notes: Mutex<RunNotes>,
}

impl<'a> NodeReporter<'a> {
    pub fn new(node: &'a str, events: &'a dyn RunEvents, log: std::fs::File) -> Self {
        Self {
            node,
            events,
            log: Mutex::new(log),
            notes: Mutex::new(RunNotes::default()),
        }
    }

    /// The warnings and measurements reported so far.
    pub fn notes(&self) -> RunNotes {
        self.notes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Writes a line to the log file only.
    pub fn log_quiet(&self, line: &str) {
        let mut f = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "{line}");
    }
}

impl Reporter for NodeReporter<'_> {
    fn step(&self, label: &str, total: u64) -> Box<dyn StepProgress> {
        self.log_quiet(&format!("step: {label} ({total})"));
        self.events.step(self.node, label, total)
    }

    fn log(&self, line: &str) {
        self.log_quiet(line);
        self.events.log(self.node, line);
    }

    fn warn(&self, line: &str) {
        self.log(&format!("warning: {line}"));
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        notes.warnings.push(line.to_owned());
    }

    fn measure(&self, name: &str, value: f64) {
        self.log_quiet(&format!("measured {name} = {value}"));
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        notes.measurements.insert(name.to_owned(), value);
    }
}
