//! `pipeline verify`: re-hashes every published output of the pipeline, byte for byte. The
//! fast check that `run` and `status` make (size, mtime, inode) misses an edit that keeps the
//! size and restores the mtime; this one does not. A corrupted object is withdrawn, so that
//! the next `pipeline run` rebuilds it (and, when it reproduces the same bytes, nothing after).

use std::process::ExitCode;

use crate::cli::{Env, emit};
use crate::project::Verification;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Nodes to verify (with what they need; a stage name selects its members). Default: all.
    pub nodes: Vec<String>,
}

pub fn main(env: &Env, args: Args) -> anyhow::Result<ExitCode> {
    let project = env.load()?;
    let names = &project.pipeline.nodes;
    let width = names.iter().map(|n| n.name.len()).max().unwrap_or(0);
    let mut corrupt = 0;
    for (i, verification) in project.verify(&args.nodes)? {
        let line = match verification {
            Verification::Stale(reason) => format!("not checked (stale: {reason})"),
            Verification::Intact { files } => format!("ok ({files} files)"),
            Verification::Corrupt(c) => {
                corrupt += 1;
                format!(
                    "CORRUPT: output file `{}` {} (the next run rebuilds it)",
                    c.file, c.why
                )
            }
        };
        emit(&format!("{:<width$}  {line}\n", names[i].name));
    }
    Ok(if corrupt > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
