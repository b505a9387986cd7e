//! What the user sees while nodes run, rendered from the run's [`RunEvents`]: one indicatif
//! line per running node plus per-step bars (hidden when stderr is not a terminal or with
//! `--quiet`, when status lines say when a node starts), the running nodes' log lines with
//! `-v`, and on Ctrl-C what finished and what was interrupted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipeline_api::StepProgress;

use crate::cli::{eprint_line, format_duration};
use crate::events::{Finish, RunEvents};
use crate::lock::Holder;

/// The terminal side of a run.
#[derive(Debug)]
pub struct Console {
    multi: MultiProgress,
    hidden: bool,
    quiet: bool,
    verbose: bool,
    nodes: Mutex<Nodes>,
}

/// The bars of the running nodes, and what an interrupted run reports.
#[derive(Debug, Default)]
struct Nodes {
    bars: HashMap<String, ProgressBar>,
    running: Vec<String>,
    finished: Vec<String>,
}

impl Nodes {
    /// `node` has started, or waits for its lock.
    fn start(&mut self, node: &str) {
        if !self.running.iter().any(|n| n == node) {
            self.running.push(node.to_owned());
        }
    }

    /// `node` is done (built, cached or failed); its bar, if it had one.
    fn finish(&mut self, node: &str) -> Option<ProgressBar> {
        self.running.retain(|n| n != node);
        self.finished.push(node.to_owned());
        self.bars.remove(node)
    }

    /// What to print when the run is interrupted.
    fn interrupted_summary(&self) -> String {
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

impl Console {
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
            nodes: Mutex::new(Nodes::default()),
        }
    }

    fn nodes(&self) -> MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A status line (not shown with `--quiet`).
    fn status(&self, line: &str) {
        if !self.quiet {
            self.println(line);
        }
    }

    /// Prints a line to stderr without tearing the bars. A closed stderr (`2>&1 | head -1`)
    /// never stops the work: the line is dropped.
    fn println(&self, line: &str) {
        if self.hidden {
            eprint_line(line);
        } else {
            let _ = self.multi.println(line);
        }
    }

    /// `node` is done: its closing status line (when it had started here), then its bar goes.
    fn close(&self, node: &str, line: impl FnOnce() -> String) {
        let bar = self.nodes().finish(node);
        if let Some(bar) = bar {
            self.status(&line());
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }
}

impl RunEvents for Console {
    fn started(&self, node: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg} {elapsed}")
                .expect("a template"),
        );
        bar.set_prefix(node.to_owned());
        bar.set_message("running");
        if self.hidden {
            self.status(&format!("started `{node}`"));
        } else {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        let mut nodes = self.nodes();
        nodes.start(node);
        nodes.bars.insert(node.to_owned(), bar);
    }

    fn waiting(&self, node: &str, holder: Option<&Holder>) {
        self.nodes().start(node);
        let who = holder.map_or_else(|| "another process".to_owned(), Holder::to_string);
        self.status(&format!(
            "`{node}`: waiting for {who}, which is building the same artifact"
        ));
    }

    fn log(&self, node: &str, line: &str) {
        if self.verbose {
            self.println(&format!("[{node}] {line}"));
        }
    }

    fn step(&self, node: &str, label: &str, total: u64) -> Box<dyn StepProgress> {
        let bar = ProgressBar::new(total);
        let bar = match self.nodes().bars.get(node) {
            Some(node_bar) => self.multi.insert_after(node_bar, bar),
            None => self.multi.add(bar),
        };
        bar.set_style(
            ProgressStyle::with_template("    {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                .expect("a template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_owned());
        Box::new(Step {
            bar,
            multi: self.multi.clone(),
        })
    }

    // Only a node that ran has started, so only it has a line to close.
    fn queued(&self, node: &str, what: &str) {
        self.status(&format!("queued `{node}`: {what}"));
    }

    fn finished(&self, node: &str, how: Finish, duration: Duration) {
        self.close(node, || {
            let verb = match how {
                Finish::Fetched => "fetched",
                Finish::Cached | Finish::Ran | Finish::Reused => "finished",
            };
            format!("{verb} `{node}` in {}", format_duration(duration))
        });
    }

    fn failed(
        &self,
        node: &str,
        _error: &anyhow::Error,
        _log: &Result<PathBuf, String>,
        duration: Duration,
    ) {
        // The error and the log are in the run's summary.
        self.close(node, || {
            format!("failed `{node}` after {}", format_duration(duration))
        });
    }

    fn interrupted(&self) {
        let _ = self.multi.clear();
        eprint_line(&self.nodes().interrupted_summary());
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
