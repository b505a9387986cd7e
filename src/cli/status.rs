//! `pipeline status`: each node up to date or stale, with the reason as one sentence.

use std::process::ExitCode;

use crate::cli::{Env, emit, eprint_line};
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
    let project = env.load()?;
    let names = &project.pipeline.nodes;
    let status = project.status(&args.nodes)?;
    // Stale nodes whose key the remote cache has: `run` would fetch them.
    let remote = project.remote().unwrap_or_else(|e| {
        eprint_line(&format!("warning: the remote cache is not asked: {e}"));
        None
    });
    let mut cache_down = None;
    let mut in_cache = |key: &str| -> bool {
        let Some(cache) = &remote else { return false };
        if cache_down.is_some() {
            return false;
        }
        cache.contains(key).unwrap_or_else(|e| {
            cache_down = Some(e.to_string());
            false
        })
    };
    let width = status
        .iter()
        .map(|(i, _)| names[*i].name.len())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let mut stale = 0;
    for (i, status) in &status {
        let line = match status {
            NodeStatus::UpToDate { .. } => "up to date".to_owned(),
            NodeStatus::Stale { reason, key, .. } => {
                stale += 1;
                match key {
                    Some(key) if in_cache(key) => {
                        format!("stale: {reason}; available in the remote cache")
                    }
                    _ => format!("stale: {reason}"),
                }
            }
        };
        out.push_str(&format!("{:<width$}  {line}\n", names[*i].name));
    }
    emit(&out);
    if let Some(why) = cache_down {
        eprint_line(&format!(
            "warning: the remote cache could not be asked: {why}"
        ));
    }
    Ok(if args.exit_code && stale > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
