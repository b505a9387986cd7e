//! What the user sees while nodes run: one indicatif line per running node plus per-step bars
//! (hidden when stderr is not a terminal or with `--quiet`), and each node's log file, which
//! receives every [`Reporter::log`] line (echoed to stderr with `-v`).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipeline_api::{Reporter, StepProgress};

/// The terminal side of a run.
#[derive(Debug)]
pub struct Ui {
    multi: MultiProgress,
    hidden: bool,
    quiet: bool,
    verbose: bool,
    progress: Mutex<Progress>,
}

/// Which nodes of a run have started and finished: what an interrupted run reports.
#[derive(Debug, Default)]
pub struct Progress {
    running: Vec<String>,
    finished: Vec<String>,
}

impl Progress {
    pub fn started(&mut self, node: &str) {
        self.running.push(node.to_owned());
    }

    /// `node` is done (built, cached, failed or skipped).
    pub fn finished(&mut self, node: &str) {
        self.running.retain(|n| n != node);
        self.finished.push(node.to_owned());
    }

    /// What to print when the run is interrupted.
    pub fn interrupted_summary(&self) -> String {
        let list = |nodes: &[String]| {
            nodes
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = String::from("interrupted\n");
        if self.finished.is_empty() {
            out.push_str("  finished: none\n");
        } else {
            out.push_str(&format!(
                "  finished ({}): {}\n",
                self.finished.len(),
                list(&self.finished)
            ));
        }
        if !self.running.is_empty() {
            out.push_str(&format!(
                "  interrupted ({}): {} (nothing of theirs was published)\n",
                self.running.len(),
                list(&self.running)
            ));
        }
        out.push_str(
            "  the next `pipeline run` keeps what finished and resumes the rest \
             (from their checkpoints where a kind keeps them)",
        );
        out
    }
}

impl Ui {
    pub fn new(quiet: bool, verbose: bool) -> Self {
        use std::io::IsTerminal;
        let hidden = quiet || !std::io::stderr().is_terminal();
        let target = if hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            hidden,
            quiet,
            verbose,
            progress: Mutex::new(Progress::default()),
        }
    }

    /// The run's progress, for the scheduler to update and an interruption to report.
    pub fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the bars (before a final message).
    pub fn clear(&self) {
        let _ = self.multi.clear();
    }

    /// A status line (not shown with `--quiet`).
    pub fn status(&self, line: &str) {
        if !self.quiet {
            self.println(line);
        }
    }

    /// Prints a line to stderr without tearing the bars. A closed stderr (`2>&1 | head -1`)
    /// never stops the work: the line is dropped.
    pub fn println(&self, line: &str) {
        if self.hidden {
            eprint_line(line);
        } else {
            let _ = self.multi.println(line);
        }
    }

    /// A spinner line for a running node.
    pub fn node_bar(&self, node: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg} {elapsed}")
                .expect("a template"),
        );
        bar.set_prefix(node.to_owned());
        bar.set_message("running");
        if !self.hidden {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        bar
    }

    /// Whether progress bars are drawn.
    pub fn bars(&self) -> bool {
        !self.hidden
    }

    pub fn verbose(&self) -> bool {
        self.verbose
    }
}

/// Formats a duration for status lines and tables.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

/// Writes one line to stderr, ignoring errors (a closed pipe must not panic, unlike
/// `eprintln!`).
pub fn eprint_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// What a node reported of itself besides its outputs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunNotes {
    /// [`Reporter::warn`] lines, in order.
    pub warnings: Vec<String>,
    /// [`Reporter::measure`] values (the last one of each name).
    pub measurements: BTreeMap<String, f64>,
}

/// The [`Reporter`] given to a running node: its log file, its bar, and the terminal.
pub struct NodeReporter<'a> {
    pub node: String,
    pub ui: &'a Ui,
    pub bar: ProgressBar,
    log: Mutex<std::fs::File>,
    notes: Mutex<RunNotes>,
}

impl<'a> NodeReporter<'a> {
    pub fn new(node: &str, ui: &'a Ui, log: std::fs::File) -> Self {
        Self {
            node: node.to_owned(),
            ui,
            bar: ui.node_bar(node),
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

    pub fn finish(&self) {
        self.bar.finish_and_clear();
        self.ui.multi.remove(&self.bar);
    }
}

impl Reporter for NodeReporter<'_> {
    fn step(&self, label: &str, total: u64) -> Box<dyn StepProgress> {
        let bar = self
            .ui
            .multi
            .insert_after(&self.bar, ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template("    {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                .expect("a template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        self.log_quiet(&format!("step: {label} ({total})"));
        Box::new(Step {
            bar,
            multi: self.ui.multi.clone(),
        })
    }

    fn log(&self, line: &str) {
        self.log_quiet(line);
        if self.ui.verbose {
            self.ui.println(&format!("[{}] {line}", self.node));
        }
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

struct Step {
    bar: ProgressBar,
    multi: MultiProgress,
}

impl StepProgress for Step {
    fn inc(&self, delta: u64) {
        self.bar.inc(delta);
    }
    fn set_message(&self, message: &str) {
        self.bar.set_message(message.to_owned());
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
        self.multi.remove(&self.bar);
    }
}
