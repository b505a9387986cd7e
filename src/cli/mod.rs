//! The command line: argument parsing (clap derive; doc comments are the help text), loading
//! the pipeline, and turning errors into one sentence and an exit code (2 for configuration and
//! usage errors, 1 for failed nodes). One module per command, each one call into
//! [`crate::project`] and the rendering of what it returns.

mod console;
mod dag;
mod domain;
mod gc;
mod kinds;
mod metrics;
mod run;
mod run_node;
mod show;
mod status;
mod transfer;
mod verify;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use pipeline_api::Registry;

use crate::config::ConfigError;
use crate::project::{Project, ProjectError, UserError};

/// Declarative, content-hashed pipeline runner: runs the stale nodes of `pipeline.toml`.
#[derive(Debug, Parser)]
#[command(
    name = "pipeline",
    version,
    about,
    long_about = None,
    after_help = "Exit status: 0 on success, 1 when a node failed, 2 for configuration or usage errors.\n\
                  Debug logs: PIPELINE_LOG=debug (a tracing filter)."
)]
pub struct Cli {
    /// The pipeline file.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        default_value = "pipeline.toml",
        value_name = "FILE"
    )]
    pub file: PathBuf,
    /// No progress bars, no status lines (errors are still printed).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print the log lines of running nodes to stderr.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every stale node (or the given nodes and what they need), in dependency order.
    Run(run::Args),
    /// Show whether each node is up to date, and why not.
    Status(status::Args),
    /// Print the DAG of nodes.
    Dag(dag::Args),
    /// Show a node's artifact paths, parameters, manifest and metrics.
    Show(show::Args),
    /// Print a table of the nodes' `metrics.json`.
    Metrics(metrics::Args),
    /// Re-hash every published output byte for byte; withdraw the corrupted ones.
    Verify(verify::Args),
    /// Remove artifacts that the current pipeline no longer references.
    Gc(gc::Args),
    /// Upload the up-to-date nodes to the remote cache (`[settings.cache]`).
    Push(transfer::Args),
    /// Fetch the stale nodes that the remote cache has.
    Pull(transfer::Args),
    /// List the registered stage kinds.
    Kinds,
    /// Run one node in this process and publish it (what a cluster job of `run` executes).
    #[command(hide = true)]
    RunNode(run_node::Args),
}

/// Shared by the commands: the parsed global flags and the kinds.
#[derive(Debug)]
pub struct Env {
    pub registry: Registry,
    pub file: PathBuf,
    pub quiet: bool,
    pub verbose: bool,
}

impl Env {
    /// Reads and validates the pipeline.
    pub fn load(&self) -> Result<Project, ConfigError> {
        Project::open(&self.file, &self.registry)
    }
}

/// `path` relative to the current directory when it is below it, for messages.
pub fn rel(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    match cwd.as_deref().and_then(|c| path.strip_prefix(c).ok()) {
        Some(p) if !p.as_os_str().is_empty() => p.display().to_string(),
        _ => path.display().to_string(),
    }
}

/// Logs of this project's crates (warnings; errors only with `-q`). Libraries' own log lines
/// (a decoder's probe errors) are not for the terminal: a stage that works around a bad file
/// reports it itself. `PIPELINE_LOG` (a tracing filter) overrides all of it.
fn init_logging(quiet: bool) {
    use std::io::IsTerminal;
    let level = if quiet { "error" } else { "warn" };
    let ours = [
        "pipeline",
        "pipeline_api",
        "pipeline_formats",
        "pipeline_data",
        "pipeline_learn",
        "pipeline_eval",
        "pipeline_search",
    ];
    let default = std::iter::once("off".to_owned())
        .chain(ours.iter().map(|c| format!("{c}={level}")))
        .collect::<Vec<_>>()
        .join(",");
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIPELINE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
        // The HTTP client logs requests' URLs, which carry signatures: never shown.
        .add_directive("ureq=warn".parse().expect("a directive"))
        .add_directive("ureq_proto=warn".parse().expect("a directive"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the command line with the kinds and domain commands of `registry`.
pub fn main(registry: Registry) -> ExitCode {
    let app = registry
        .commands()
        .fold(Cli::command(), |app, c| app.subcommand(c.command()));
    let matches = app.get_matches();
    let result = match matches.subcommand() {
        Some((name, args)) if registry.command(name).is_some() => {
            let command = registry.command(name).expect("checked").clone();
            let env = env_of(registry, args);
            domain::main(&env, command.as_ref(), args)
        }
        _ => match Cli::from_arg_matches(&matches) {
            Ok(cli) => {
                init_logging(cli.quiet);
                let env = Env {
                    registry,
                    file: cli.file,
                    quiet: cli.quiet,
                    verbose: cli.verbose,
                };
                builtin(&env, cli.command)
            }
            Err(err) => err.exit(),
        },
    };
    exit_code(result)
}

/// The global flags as a domain command's matches carry them (clap propagates them).
fn env_of(registry: Registry, args: &clap::ArgMatches) -> Env {
    let quiet = args.get_flag("quiet");
    init_logging(quiet);
    Env {
        registry,
        file: args
            .get_one::<PathBuf>("file")
            .cloned()
            .unwrap_or_else(|| "pipeline.toml".into()),
        quiet,
        verbose: args.get_flag("verbose"),
    }
}

fn builtin(env: &Env, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run::main(env, args),
        Command::Status(args) => status::main(env, args),
        Command::Dag(args) => dag::main(env, args),
        Command::Show(args) => show::main(env, args),
        Command::Metrics(args) => metrics::main(env, args),
        Command::Verify(args) => verify::main(env, args),
        Command::Gc(args) => gc::main(env, args),
        Command::Push(args) => transfer::push(env, args),
        Command::Pull(args) => transfer::pull(env, args),
        Command::Kinds => kinds::main(env),
        Command::RunNode(args) => run_node::main(env, args),
    }
}

fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprint_line(&format!("error: {err:#}"));
            let config = err.downcast_ref::<ConfigError>();
            let user = err.downcast_ref::<UserError>().or_else(|| {
                err.downcast_ref::<ProjectError>()
                    .and_then(ProjectError::user)
            });
            let usage = err.downcast_ref::<pipeline_api::UsageError>().is_some();
            let hint = config
                .and_then(ConfigError::hint)
                .or_else(|| user.and_then(|u| u.hint.as_deref()));
            if let Some(hint) = hint {
                eprint_line(&format!("hint: {hint}"));
            }
            ExitCode::from(if config.is_some() || user.is_some() || usage {
                2
            } else {
                1
            })
        }
    }
}

/// Writes one line to stderr, ignoring errors (a closed pipe must not panic, unlike
/// `eprintln!`).
pub fn eprint_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Writes text to stderr; a closed pipe is not an error.
pub fn eprint_text(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Writes data to stdout; a closed pipe (`pipeline dag | head`) is not an error.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
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

/// Left-aligned text table with two spaces between columns.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
