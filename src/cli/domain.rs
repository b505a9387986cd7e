//! The stage crates' own commands (`pipeline search`): clap parses them as they declare, and
//! they read the project through [`ProjectView`]: nodes, their status and published outputs.

use std::path::PathBuf;
use std::process::ExitCode;

use pipeline_api::{DomainCommand, InputRef, NodeInfo, ProjectView};

use crate::cli::Env;
use crate::graph::Binding;
use crate::project::Project;
use crate::staleness::NodeStatus;

struct View<'a> {
    project: &'a Project,
}

impl ProjectView for View<'_> {
    fn nodes(&self) -> anyhow::Result<Vec<NodeInfo>> {
        let (pipeline, store) = (&self.project.pipeline, &self.project.store);
        let status = self.project.status(&[])?;
        Ok(status
            .into_iter()
            .map(|(i, status)| {
                let node = &pipeline.nodes[i];
                let inputs = node
                    .inputs
                    .iter()
                    .map(|input| {
                        let refs = input
                            .bindings
                            .iter()
                            .map(|b| match b {
                                Binding::Node(j) => InputRef::Node(pipeline.nodes[*j].name.clone()),
                                Binding::Path(p) => InputRef::Path(p.clone()),
                            })
                            .collect();
                        (input.name.clone(), refs)
                    })
                    .collect();
                let out_dir = match &status {
                    NodeStatus::UpToDate { key, .. } => Some(store.out_dir(key)),
                    NodeStatus::Stale { .. } => None,
                };
                NodeInfo {
                    name: node.name.clone(),
                    stage: node.stage.clone(),
                    kind: node.kind.name().to_owned(),
                    params: node.plan.params.clone(),
                    inputs,
                    key: status.key().unwrap_or_default().to_owned(),
                    out_dir,
                }
            })
            .collect())
    }

    fn cache_dir(&self, namespace: &str) -> anyhow::Result<PathBuf> {
        let dir = self.project.store.command_cache_dir(namespace);
        fs_err::create_dir_all(&dir)?;
        Ok(dir)
    }
}

pub fn main(
    env: &Env,
    command: &dyn DomainCommand,
    args: &clap::ArgMatches,
) -> anyhow::Result<ExitCode> {
    let project = env.load()?;
    command.run(args, &View { project: &project })?;
    Ok(ExitCode::SUCCESS)
}
