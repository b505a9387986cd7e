//! `pipeline run`: runs the stale nodes (or shows what would run with `--dry-run`) and prints
//! a summary.

use std::process::ExitCode;

use crate::cli::console::Console;
use crate::cli::{Env, emit, eprint_line, eprint_text, format_duration, rel, table};
use crate::config::ExecutorKind;
use crate::events::Finish;
use crate::project::{Budget, RunTargets, UserError};
use crate::remote::Cached;
use crate::scheduler::{Backend, Local, Outcome};
use crate::slurm::Slurm;
use crate::staleness::NodeStatus;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Nodes to run, with everything they need (a stage name selects all its members).
    /// Default: every node.
    pub nodes: Vec<String>,
    /// Maximum CPU threads in use at once (default, and at most: the number of cores).
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Rerun this node (or stage) even if its artifact is cached; repeatable.
    #[arg(long, value_name = "NODE")]
    pub force: Vec<String>,
    /// Print what would run and why, without running anything.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Where stale nodes run: threads of this process, or one Slurm job each (default: the
    /// file's `[settings.executor] kind`, else local).
    #[arg(long, value_enum)]
    pub executor: Option<ExecutorKind>,
    /// GPUs of this machine to use, one GPU node on each (default: all that `nvidia-smi`
    /// lists, at least 1). Local executor only.
    #[arg(long, value_name = "N")]
    pub gpus: Option<usize>,
    /// Fail a node rather than run it here when the remote cache (`[settings.cache]`) cannot
    /// be asked.
    #[arg(long)]
    pub require_cache: bool,
}

pub fn main(env: &Env, args: Args) -> anyhow::Result<ExitCode> {
    let project = env.load()?;
    let pipeline = &project.pipeline;
    let targets = RunTargets {
        nodes: args.nodes,
        force: args.force,
    };

    if args.dry_run {
        let mut any = false;
        for (i, status) in project.plan(&targets)? {
            if let NodeStatus::Stale { reason, .. } = status {
                any = true;
                emit(&format!(
                    "would run `{}`: {reason}\n",
                    pipeline.nodes[i].name
                ));
            }
        }
        if !any {
            emit("everything is up to date\n");
        }
        return Ok(ExitCode::SUCCESS);
    }

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = match args.jobs {
        None => cores,
        Some(0) => return Err(UserError::new("`--jobs` must be at least 1").into()),
        Some(j) if j > cores => {
            if !env.quiet {
                eprint_line(&format!(
                    "note: `--jobs {j}` is more than the {cores} core(s) of this machine; using {cores}"
                ));
            }
            cores
        }
        Some(j) => j,
    };
    let detected = detected_gpus();
    let gpus = match args.gpus {
        Some(0) => return Err(UserError::new("`--gpus` must be at least 1").into()),
        // Beyond `CUDA_VISIBLE_DEVICES`, a node would be given a device it may not use.
        Some(n) if std::env::var_os("CUDA_VISIBLE_DEVICES").is_some() && n > detected => {
            return Err(UserError::new(format!(
                "`--gpus {n}`: `CUDA_VISIBLE_DEVICES` makes {detected} GPU(s) visible"
            ))
            .into());
        }
        Some(n) => n,
        None => detected,
    };
    let settings = &pipeline.config.executor;
    let backend: Box<dyn Backend> = match args.executor.unwrap_or(settings.kind) {
        ExecutorKind::Local => Box::new(Local),
        ExecutorKind::Slurm => Box::new(Slurm::new(settings.slurm.clone(), &env.file)?),
    };
    let remote = project.remote()?;
    if args.require_cache && remote.is_none() {
        return Err(UserError::new(
            "`--require-cache`: the pipeline file has no `[settings.cache]`",
        )
        .into());
    }
    let cached = remote.as_ref().map(|cache| Cached {
        inner: backend.as_ref(),
        cache,
        required: args.require_cache,
    });
    let backend: &dyn Backend = match &cached {
        Some(c) => c,
        None => backend.as_ref(),
    };
    let report = project.run(
        &targets,
        Budget { jobs, gpus },
        backend,
        &Console::new(env.quiet, env.verbose),
    )?;
    let all_cached = report
        .results
        .iter()
        .all(|r| matches!(r.outcome, Outcome::Finished(Finish::Cached)));
    if all_cached {
        if !env.quiet {
            eprint_line(&format!(
                "everything is up to date ({} nodes)",
                report.results.len()
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut results: Vec<_> = report.results.iter().collect();
    results.sort_by_key(|r| pipeline.order.iter().position(|&o| o == r.node));
    if !env.quiet {
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| {
                let (what, time) = match &r.outcome {
                    Outcome::Finished(Finish::Cached) => ("cached".to_owned(), "-".to_owned()),
                    Outcome::Finished(Finish::Ran) => {
                        ("ran".to_owned(), format_duration(r.duration))
                    }
                    Outcome::Finished(Finish::Fetched) => {
                        ("fetched".to_owned(), format_duration(r.duration))
                    }
                    Outcome::Finished(Finish::Reused) => {
                        ("reused".to_owned(), format_duration(r.duration))
                    }
                    Outcome::Failed { .. } => ("FAILED".to_owned(), format_duration(r.duration)),
                    Outcome::Skipped { failed } => {
                        (format!("skipped (`{failed}` failed)"), "-".to_owned())
                    }
                };
                vec![pipeline.nodes[r.node].name.clone(), what, time]
            })
            .collect();
        eprint_text(&table(
            &["node".into(), "result".into(), "time".into()],
            &rows,
        ));
    }
    // Warnings are shown even with `-q`: they are about the data, not about progress.
    for r in &results {
        for w in &r.warnings {
            eprint_line(&format!("warning: `{}`: {w}", pipeline.nodes[r.node].name));
        }
    }
    let failures: Vec<_> = report.failures().collect();
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for f in &failures {
        if let Outcome::Failed { error, log } = &f.outcome {
            eprint_line(&format!(
                "error: node `{}` failed: {error:#}",
                pipeline.nodes[f.node].name
            ));
            match log {
                Ok(log) => eprint_line(&format!("  log: `{}`", rel(log))),
                Err(why) => eprint_line(&format!("  no log: {why}")),
            }
        }
    }
    let names: Vec<_> = failures
        .iter()
        .map(|f| format!("`{}`", pipeline.nodes[f.node].name))
        .collect();
    eprint_line(&format!(
        "error: {} node(s) failed: {}",
        failures.len(),
        names.join(", ")
    ));
    Ok(ExitCode::from(1))
}

/// The GPUs `nvidia-smi -L` lists (within `CUDA_VISIBLE_DEVICES` when set), at least 1: without
/// a GPU, nodes that ask for one run one at a time as before.
fn detected_gpus() -> usize {
    if let Ok(visible) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return visible
            .split(',')
            .filter(|d| !d.trim().is_empty())
            .count()
            .max(1);
    }
    std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(1, |o| {
            let listed = String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("GPU "))
                .count();
            listed.max(1)
        })
}
