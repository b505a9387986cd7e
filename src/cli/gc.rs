//! `pipeline gc`: removes what the current pipeline no longer references, never anything
//! whose key is locked by a running process (see [`Project::gc`](crate::project::Project::gc)).

use std::process::ExitCode;

use crate::cli::{Env, emit, eprint_line, rel};
use crate::project::Removal;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print what would be removed without removing anything.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

pub fn main(env: &Env, args: Args) -> anyhow::Result<ExitCode> {
    let project = env.load()?;
    let collection = project.gc(args.dry_run)?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for item in &collection.items {
        match item {
            Removal::Removed { what, path } => emit(&format!("{verb} {what} `{}`\n", rel(path))),
            Removal::Failed { path, error } => {
                eprint_line(&format!("warning: cannot remove `{}`: {error}", rel(path)))
            }
            Removal::InUse { path } => eprint_line(&format!(
                "skipping `{}`: in use by a running process",
                rel(path)
            )),
        }
    }
    eprint_line(&format!(
        "{verb} {} item(s), {:.1} MiB",
        collection.removed,
        collection.freed as f64 / (1024.0 * 1024.0)
    ));
    Ok(ExitCode::SUCCESS)
}
