//! `pipeline status`: each node up to date or stale, with the reason as one sentence.

use std::process::ExitCode;

use crate::cli::{Env, UserError, emit};
use crate::fingerprint::StatCache;
use crate::staleness::{self, NodeStatus};

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
    let n = pipeline.nodes.len();
    let targets = if args.nodes.is_empty() {
        (0..n).collect()
    } else {
        pipeline.select(&args.nodes).map_err(UserError::new)?
    };
    let mask = pipeline.with_ancestors(&targets);
    let mut cache = StatCache::load(&store.stat_cache_path());
    let status = staleness::assess(&pipeline, &store, &mut cache, &mask, &vec![false; n])?;
    let _ = cache.save();
    let width = pipeline
        .order
        .iter()
        .filter(|&&i| mask[i])
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
