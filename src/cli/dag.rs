//! `pipeline dag`: the expanded DAG as text, Mermaid or Graphviz dot.

use std::process::ExitCode;

use crate::cli::{Env, emit};
use crate::graph::{Binding, Pipeline};

#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum Format {
    /// One line per node with its inputs.
    #[default]
    Text,
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz dot.
    Dot,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

fn source(p: &Pipeline, b: &Binding) -> String {
    match b {
        Binding::Node(j) => p.nodes[*j].name.clone(),
        Binding::Path(path) => format!("{{path = {}}}", config_rel(p, path)),
    }
}

/// `path` relative to the config file's directory, as written in `pipeline.toml`.
fn config_rel(p: &Pipeline, path: &std::path::Path) -> String {
    path.strip_prefix(&p.config.dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

pub fn render(p: &Pipeline, format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Text => {
            for &i in &p.order {
                let node = &p.nodes[i];
                out.push_str(&format!("{} ({})\n", node.name, node.kind.name()));
                for input in &node.inputs {
                    let from: Vec<String> = input.bindings.iter().map(|b| source(p, b)).collect();
                    out.push_str(&format!("  {} <- {}\n", input.name, from.join(", ")));
                }
            }
        }
        Format::Mermaid => {
            out.push_str("flowchart TD\n");
            for &i in &p.order {
                out.push_str(&format!(
                    "  n{i}[\"{} ({})\"]\n",
                    p.nodes[i].name,
                    p.nodes[i].kind.name()
                ));
            }
            let mut ext = 0;
            for &i in &p.order {
                for input in &p.nodes[i].inputs {
                    for b in &input.bindings {
                        match b {
                            Binding::Node(j) => {
                                out.push_str(&format!("  n{j} -->|{}| n{i}\n", input.name))
                            }
                            Binding::Path(path) => {
                                out.push_str(&format!(
                                    "  p{ext}[(\"{}\")] -->|{}| n{i}\n",
                                    config_rel(p, path),
                                    input.name
                                ));
                                ext += 1;
                            }
                        }
                    }
                }
            }
        }
        Format::Dot => {
            out.push_str("digraph pipeline {\n  rankdir=LR;\n");
            for &i in &p.order {
                out.push_str(&format!("  \"{}\" [shape=box];\n", p.nodes[i].name));
            }
            for &i in &p.order {
                for input in &p.nodes[i].inputs {
                    for b in &input.bindings {
                        let from = source(p, b).replace('"', "\\\"");
                        out.push_str(&format!(
                            "  \"{from}\" -> \"{}\" [label=\"{}\"];\n",
                            p.nodes[i].name, input.name
                        ));
                    }
                }
            }
            out.push_str("}\n");
        }
    }
    out
}

pub fn main(env: &Env, args: Args) -> anyhow::Result<ExitCode> {
    emit(&render(&env.load()?.pipeline, args.format));
    Ok(ExitCode::SUCCESS)
}
