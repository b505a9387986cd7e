//! What the user sees while nodes run: one indicatif line per running node plus per-step bars
//! (hidden when stderr is not a terminal or with `--quiet`), and each node's log file, which
//! receives every [`Reporter::log`] line (echoed to stderr with `-v`).

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
        }
    }

    /// A status line (not shown with `--quiet`).
    pub fn status(&self, line: &str) {
        if !self.quiet {
            self.println(line);
        }
    }

    /// Prints a line to stderr without tearing the bars.
    pub fn println(&self, line: &str) {
        if self.hidden {
            eprintln!("{line}");
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

/// The [`Reporter`] given to a running node: its log file, its bar, and the terminal.
pub struct NodeReporter<'a> {
    pub node: String,
    pub ui: &'a Ui,
    pub bar: ProgressBar,
    log: Mutex<std::fs::File>,
}

impl<'a> NodeReporter<'a> {
    pub fn new(node: &str, ui: &'a Ui, log: std::fs::File) -> Self {
        Self {
            node: node.to_owned(),
            ui,
            bar: ui.node_bar(node),
            log: Mutex::new(log),
        }
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
