//! `pipeline show NODE`: where a node's artifact is, what it was made from, its manifest and
//! its metrics.

use std::process::ExitCode;

use serde_json::json;

use crate::cli::{Env, emit, rel};
use crate::graph::Binding;
use crate::project::NodeView;
use crate::staleness::NodeStatus;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The node (`train.seed-1`), or a stage with a single member.
    pub node: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn main(env: &Env, args: Args) -> anyhow::Result<ExitCode> {
    let project = env.load()?;
    let (pipeline, store) = (&project.pipeline, &project.store);
    let NodeView {
        node: i,
        status,
        manifest,
        metrics,
    } = project.show(&args.node)?;
    let node = &pipeline.nodes[i];
    let status_text = match &status {
        NodeStatus::UpToDate { .. } => "up to date".to_owned(),
        NodeStatus::Stale { reason, .. } => format!("stale: {reason}"),
    };
    let inputs: serde_json::Map<String, serde_json::Value> = node
        .inputs
        .iter()
        .map(|input| {
            let list = input
                .bindings
                .iter()
                .map(|b| match b {
                    Binding::Node(j) => json!({ "node": pipeline.nodes[*j].name }),
                    Binding::Path(p) => json!({ "path": p }),
                })
                .collect();
            (input.name.clone(), serde_json::Value::Array(list))
        })
        .collect();
    let paths = manifest.as_ref().map(|m| {
        json!({
            "out": store.out_dir(&m.key),
            "log": store.log_path(&m.key),
            "manifest": store.manifest_path(&m.key),
            "latest": store.latest_path(&node.name),
        })
    });
    if args.json {
        let value = json!({
            "node": node.name,
            "stage": node.stage,
            "kind": node.kind.name(),
            "kind_version": node.kind.version(),
            "key": status.key(),
            "status": status_text,
            "labels": node.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "params": node.plan.params,
            "inputs": inputs,
            "paths": paths,
            "manifest": manifest,
            "metrics": metrics,
        });
        emit(&format!("{}\n", serde_json::to_string_pretty(&value)?));
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    out.push_str(&format!(
        "node:     {} (stage `{}`, kind `{}` v{})\n",
        node.name,
        node.stage,
        node.kind.name(),
        node.kind.version()
    ));
    out.push_str(&format!("status:   {status_text}\n"));
    if let Some(key) = status.key() {
        out.push_str(&format!("key:      {key}\n"));
    }
    match &manifest {
        Some(m) => {
            if status.key() != Some(m.key.as_str()) {
                out.push_str(&format!("showing the last build (key {}):\n", m.key));
            }
            out.push_str(&format!("out:      {}\n", rel(&store.out_dir(&m.key))));
            out.push_str(&format!("log:      {}\n", rel(&store.log_path(&m.key))));
            out.push_str(&format!(
                "manifest: {}\n",
                rel(&store.manifest_path(&m.key))
            ));
            out.push_str(&format!(
                "latest:   {}\n",
                rel(&store.latest_path(&node.name))
            ));
            out.push_str(&format!(
                "built:    in {:.2}s by executor {}\n",
                m.duration_s, m.executor_version
            ));
        }
        None => out.push_str("not built\n"),
    }
    out.push_str(&format!(
        "params:   {}\n",
        serde_json::to_string_pretty(&node.plan.params)?.replace('\n', "\n          ")
    ));
    for input in &node.inputs {
        let from: Vec<String> = input
            .bindings
            .iter()
            .map(|b| match b {
                Binding::Node(j) => pipeline.nodes[*j].name.clone(),
                Binding::Path(p) => rel(p),
            })
            .collect();
        out.push_str(&format!(
            "input:    {} <- {}\n",
            input.name,
            from.join(", ")
        ));
    }
    if let Some(m) = &manifest {
        out.push_str(&format!(
            "files ({}, output hash {}):\n",
            m.files.len(),
            &m.output_hash[..16.min(m.output_hash.len())]
        ));
        for f in &m.files {
            out.push_str(&format!(
                "  {:<40} {:>10} B  {}\n",
                f.path,
                f.size,
                &f.hash[..16]
            ));
        }
    }
    if let Some(metrics) = &metrics {
        out.push_str(&format!(
            "metrics:  {}\n",
            serde_json::to_string_pretty(metrics)?.replace('\n', "\n          ")
        ));
    }
    emit(&out);
    Ok(ExitCode::SUCCESS)
}
