//! `pipeline push` and `pipeline pull`: move built artifacts to and from the remote cache
//! (`[settings.cache]`) explicitly.

use std::process::ExitCode;

use crate::cli::{Env, eprint_line};
use crate::project::{Project, UserError};
use crate::remote::RemoteCache;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Nodes (with what they need; a stage name selects its members). Default: all.
    pub nodes: Vec<String>,
}

fn cache(project: &Project) -> anyhow::Result<RemoteCache> {
    project.remote()?.ok_or_else(|| {
        UserError {
            message: "the pipeline file has no `[settings.cache]`".into(),
            hint: Some("add `[settings.cache] url = \"s3://bucket/prefix\"`".into()),
        }
        .into()
    })
}

/// `pipeline push`: uploads the up-to-date nodes.
pub fn push(env: &Env, args: Args) -> anyhow::Result<ExitCode> {
    let project = env.load()?;
    let cache = cache(&project)?;
    let mut failed = 0;
    for (i, result) in project.push(&args.nodes, &cache)? {
        let name = &project.pipeline.nodes[i].name;
        match result {
            Ok(u) => {
                if !env.quiet {
                    eprint_line(&format!(
                        "pushed `{name}`: {} file(s) sent ({} bytes), {} already there",
                        u.sent, u.bytes, u.present
                    ));
                }
            }
            Err(e) => {
                failed += 1;
                eprint_line(&format!("error: `{name}` not pushed: {e}"));
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `pipeline pull`: fetches the stale nodes the remote cache has.
pub fn pull(env: &Env, args: Args) -> anyhow::Result<ExitCode> {
    let project = env.load()?;
    let cache = cache(&project)?;
    let mut failed = 0;
    for (i, result) in project.pull(&args.nodes, &cache)? {
        let name = &project.pipeline.nodes[i].name;
        match result {
            Ok(true) if !env.quiet => eprint_line(&format!("pulled `{name}`")),
            Ok(false) if !env.quiet => {
                eprint_line(&format!("`{name}`: not in {}", cache.url()));
            }
            Ok(_) => {}
            Err(e) => {
                failed += 1;
                eprint_line(&format!("error: `{name}` not pulled: {e}"));
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
