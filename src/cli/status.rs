//! `pipeline status`: each node up to date or stale, with the reason as one sentence.

use std::process::ExitCode;

use crate::cli::{Env, assess_selection, emit};
use crate::staleness::NodeStatus;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Nodes to show (with what they need; a stage name selects its members). Default: all.
    pub nodes: Vec<String>,
    /// Exit with 1 when any node shown is stale (as `git diff --exit-code`), for scripts.
    #[arg(long)]
    pub exit_code: bool,
}

pub fn main(env: &Env, args: Args) -> anyhow::Result<ExitCode> {
    let (pipeline, store) = env.load()?;
    let status = assess_selection(&pipeline, &store, &args.nodes)?;
    let width = pipeline
        .order
        .iter()
        .filter(|&&i| status[i].is_some())
        .map(|&i| pipeline.nodes[i].name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let mut stale = 0;
    for &i in &pipeline.order {
        let line = match &status[i] {
            None => continue,
            Some(NodeStatus::UpToDate { .. }) => "up to date".to_owned(),
            Some(NodeStatus::Stale { reason, .. }) => {
                stale += 1;
                format!("stale: {reason}")
            }
        };
        out.push_str(&format!("{:<width$}  {line}\n", pipeline.nodes[i].name));
    }
    emit(&out);
    Ok(if args.exit_code && stale > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
