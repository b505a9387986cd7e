//! `pipeline run-node` (hidden): what one cluster job of `pipeline run --executor slurm` runs.
//! It publishes the node into the shared store as a local run would; the driver reads the
//! result from the store.

use std::process::ExitCode;

use crate::cli::console::Console;
use crate::cli::{Env, eprint_line, rel};
use crate::events::Finish;
use crate::project::RunNodeError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The node to run.
    pub node: String,
    /// The key the driver computed; the job refuses to run if the node's key is now another.
    #[arg(long)]
    pub key: String,
    /// Rerun even if the key is published.
    #[arg(long)]
    pub force: bool,
}

pub fn main(env: &Env, args: Args) -> anyhow::Result<ExitCode> {
    let project = env.load()?;
    // Slurm tells the job how many CPUs it was given.
    let threads = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let events = Console::new(env.quiet, env.verbose);
    match project.run_node(&args.node, &args.key, args.force, threads, &events) {
        Ok(done) => {
            let how = if done.how == Finish::Ran {
                "published"
            } else {
                "already published"
            };
            eprint_line(&format!("`{}`: {how} ({})", args.node, args.key));
            Ok(ExitCode::SUCCESS)
        }
        Err(RunNodeError::Failed { error, log }) => {
            eprint_line(&format!("error: node `{}` failed: {error:#}", args.node));
            if let Ok(log) = log {
                eprint_line(&format!("  log: `{}`", rel(&log)));
            }
            Ok(ExitCode::from(1))
        }
        Err(RunNodeError::Project(e)) => Err(e.into()),
    }
}
