//! `pipeline verify`: re-hashes every published output of the pipeline, byte for byte. The
//! fast check that `run` and `status` make (size, mtime, inode) misses an edit that keeps the
//! size and restores the mtime; this one does not. A corrupted object is withdrawn, so that
//! the next `pipeline run` rebuilds it (and, when it reproduces the same bytes, nothing after).

use std::process::ExitCode;

use crate::cli::{Env, assess_selection, emit};
use crate::staleness::NodeStatus;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Nodes to verify (with what they need; a stage name selects its members). Default: all.
    pub nodes: Vec<String>,
}

pub fn main(env: &Env, args: Args) -> anyhow::Result<ExitCode> {
    let (pipeline, store) = env.load()?;
    let status = assess_selection(&pipeline, &store, &args.nodes)?;
    let width = pipeline
        .nodes
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(0);
    let mut corrupt = 0;
    for &i in &pipeline.order {
        let name = &pipeline.nodes[i].name;
        let line = match &status[i] {
            None => continue,
            Some(NodeStatus::Stale { reason, .. }) => format!("not checked (stale: {reason})"),
            Some(NodeStatus::UpToDate { key, manifest, .. }) => {
                match store.verify_fully(manifest) {
                    Ok(()) => format!("ok ({} files)", manifest.files.len()),
                    Err(c) => {
                        corrupt += 1;
                        store.mark_corrupt(key, &c)?;
                        format!(
                            "CORRUPT: output file `{}` {} (the next run rebuilds it)",
                            c.file, c.why
                        )
                    }
                }
            }
        };
        emit(&format!("{name:<width$}  {line}\n"));
    }
    Ok(if corrupt > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
