//! Deciding whether a node is up to date, and explaining why not in one sentence (like
//! cargo's dirty reasons), by comparing the node's current fingerprint with the one it was
//! last built or used with (`state/<node>.json`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::fingerprint::{FORMAT, Fingerprint, StatCache};
use crate::graph::{Binding, Pipeline};
use crate::store::{Manifest, ManifestProblem, NodeState, Store};

/// Why a node must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staleness {
    /// A parameter (dotted key) changed; values rendered as JSON, `(unset)` when absent.
    ParamChanged {
        key: String,
        old: String,
        new: String,
    },
    /// The content bound to an input changed.
    InputChanged {
        input: String,
    },
    /// An upstream node is stale itself, so this node's key is not known yet.
    UpstreamChanged {
        node: String,
    },
    /// The kind's implementation version changed.
    VersionChanged {
        old: u32,
        new: u32,
    },
    /// The stage's kind changed.
    KindChanged {
        old: String,
        new: String,
    },
    /// A published output file no longer matches the manifest.
    OutputCorrupted {
        file: String,
        why: String,
    },
    /// It was built with these inputs and parameters, but the artifact is gone.
    OutputMissing,
    NeverBuilt,
    /// `--force`.
    Forced,
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Staleness::ParamChanged { key, old, new } => {
                write!(f, "parameter `{key}` changed from {old} to {new}")
            }
            Staleness::InputChanged { input } => write!(f, "input `{input}` changed"),
            Staleness::UpstreamChanged { node } => write!(f, "upstream node `{node}` is stale"),
            Staleness::VersionChanged { old, new } => {
                write!(f, "kind version changed from {old} to {new}")
            }
            Staleness::KindChanged { old, new } => {
                write!(f, "kind changed from `{old}` to `{new}`")
            }
            Staleness::OutputCorrupted { file, why } => write!(f, "output file `{file}` {why}"),
            Staleness::OutputMissing => f.write_str("output is missing"),
            Staleness::NeverBuilt => f.write_str("never built"),
            Staleness::Forced => f.write_str("forced with `--force`"),
        }
    }
}

/// Explains why `current` (with key `key`) has no usable object, from the node's last state.
pub fn explain(current: &Fingerprint, key: &str, previous: Option<&NodeState>) -> Staleness {
    let Some(prev) = previous else {
        return Staleness::NeverBuilt;
    };
    if prev.key == key {
        return Staleness::OutputMissing;
    }
    let old = &prev.fingerprint;
    if old.format != FORMAT {
        return Staleness::NeverBuilt;
    }
    if old.kind != current.kind {
        return Staleness::KindChanged {
            old: old.kind.clone(),
            new: current.kind.clone(),
        };
    }
    if old.kind_version != current.kind_version {
        return Staleness::VersionChanged {
            old: old.kind_version,
            new: current.kind_version,
        };
    }
    if let Some((key, old, new)) = first_difference("", &old.params, &current.params) {
        return Staleness::ParamChanged { key, old, new };
    }
    let names: std::collections::BTreeSet<&String> =
        old.inputs.keys().chain(current.inputs.keys()).collect();
    for name in names {
        if old.inputs.get(name) != current.inputs.get(name) {
            return Staleness::InputChanged {
                input: name.clone(),
            };
        }
    }
    Staleness::NeverBuilt
}

fn render(v: Option<&serde_json::Value>) -> String {
    match v {
        None => "(unset)".into(),
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// The first (in key order) dotted key whose value differs.
fn first_difference(
    prefix: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
) -> Option<(String, String, String)> {
    use serde_json::Value;
    if let (Value::Object(a), Value::Object(b)) = (a, b) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => {
                    if let Some(d) = first_difference(&path, x, y) {
                        return Some(d);
                    }
                }
                (x, y) => return Some((path, render(x), render(y))),
            }
        }
        None
    } else if a != b {
        Some((
            if prefix.is_empty() {
                "params".into()
            } else {
                prefix.to_owned()
            },
            render(Some(a)),
            render(Some(b)),
        ))
    } else {
        None
    }
}

/// A node's current state as seen before running anything.
#[derive(Debug, Clone)]
pub enum NodeStatus {
    UpToDate {
        fingerprint: Fingerprint,
        key: String,
        manifest: Box<Manifest>,
    },
    Stale {
        fingerprint: Option<Fingerprint>,
        key: Option<String>,
        reason: Staleness,
    },
}

impl NodeStatus {
    pub fn key(&self) -> Option<&str> {
        match self {
            NodeStatus::UpToDate { key, .. } => Some(key),
            NodeStatus::Stale { key, .. } => key.as_deref(),
        }
    }
}

/// Failure to fingerprint an external input.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash input `{input}` of node `{node}` (`{}`)", path.display())]
pub struct InputError {
    pub node: String,
    pub input: String,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The input hashes of node `i`, given a way to get upstream output hashes. `Err(Ok(j))`
/// names an upstream node `j` whose output is not known (stale).
pub fn input_hashes(
    pipeline: &Pipeline,
    i: usize,
    upstream: impl Fn(usize) -> Option<String>,
    cache: &mut StatCache,
) -> Result<BTreeMap<String, Vec<String>>, Result<usize, InputError>> {
    let node = &pipeline.nodes[i];
    let mut out = BTreeMap::new();
    for input in &node.inputs {
        let mut hashes = Vec::new();
        for b in &input.bindings {
            match b {
                Binding::Node(j) => hashes.push(upstream(*j).ok_or(Ok(*j))?),
                Binding::Path(p) => hashes.push(cache.content_hash(p).map_err(|source| {
                    Err(InputError {
                        node: node.name.clone(),
                        input: input.name.clone(),
                        path: p.clone(),
                        source,
                    })
                })?),
            }
        }
        out.insert(input.name.clone(), hashes);
    }
    Ok(out)
}

/// The fingerprint of node `i` given its input hashes.
pub fn fingerprint(
    pipeline: &Pipeline,
    i: usize,
    inputs: BTreeMap<String, Vec<String>>,
) -> Fingerprint {
    let node = &pipeline.nodes[i];
    Fingerprint {
        format: FORMAT,
        kind: node.kind.name().to_owned(),
        kind_version: node.kind.version(),
        params: node.plan.params.clone(),
        inputs,
    }
}

/// Producing node names of each input, for the state file and manifests.
pub fn input_nodes(pipeline: &Pipeline, i: usize) -> BTreeMap<String, Vec<Option<String>>> {
    pipeline.nodes[i]
        .inputs
        .iter()
        .map(|input| {
            let nodes = input
                .bindings
                .iter()
                .map(|b| match b {
                    Binding::Node(j) => Some(pipeline.nodes[*j].name.clone()),
                    Binding::Path(_) => None,
                })
                .collect();
            (input.name.clone(), nodes)
        })
        .collect()
}

/// Whether the object for `key` is usable: `Ok(manifest)`, or why not.
pub fn check_object(
    store: &Store,
    fp: &Fingerprint,
    key: &str,
    state: Option<&NodeState>,
) -> Result<Manifest, Staleness> {
    match store.read_manifest(key) {
        Ok(m) => match store.verify(&m) {
            Ok(()) => Ok(m),
            Err(c) => Err(Staleness::OutputCorrupted {
                file: c.file,
                why: c.why,
            }),
        },
        Err(ManifestProblem::Unreadable(why)) => Err(Staleness::OutputCorrupted {
            file: "manifest.json".into(),
            why,
        }),
        Err(ManifestProblem::Corrupted(c)) => Err(Staleness::OutputCorrupted {
            file: c.file,
            why: format!("{} (found by `pipeline verify`)", c.why),
        }),
        Err(ManifestProblem::Missing) => Err(explain(fp, key, state)),
    }
}

/// The status of every node in `mask` (others `None`), in dependency order, without running
/// anything.
pub fn assess(
    pipeline: &Pipeline,
    store: &Store,
    cache: &mut StatCache,
    mask: &[bool],
    forced: &[bool],
) -> Result<Vec<Option<NodeStatus>>, InputError> {
    let mut status: Vec<Option<NodeStatus>> = vec![None; pipeline.nodes.len()];
    for &i in &pipeline.order {
        if !mask[i] {
            continue;
        }
        let upstream = |j: usize| match &status[j] {
            Some(NodeStatus::UpToDate { manifest, .. }) => Some(manifest.output_hash.clone()),
            _ => None,
        };
        let s = match input_hashes(pipeline, i, upstream, cache) {
            Err(Err(e)) => return Err(e),
            Err(Ok(j)) => NodeStatus::Stale {
                fingerprint: None,
                key: None,
                reason: Staleness::UpstreamChanged {
                    node: pipeline.nodes[j].name.clone(),
                },
            },
            Ok(inputs) => {
                let fp = fingerprint(pipeline, i, inputs);
                let key = fp.key();
                let state = store.state(&pipeline.nodes[i].name);
                if forced[i] {
                    NodeStatus::Stale {
                        fingerprint: Some(fp),
                        key: Some(key),
                        reason: Staleness::Forced,
                    }
                } else {
                    match check_object(store, &fp, &key, state.as_ref()) {
                        Ok(m) => NodeStatus::UpToDate {
                            fingerprint: fp,
                            key,
                            manifest: Box::new(m),
                        },
                        Err(reason) => NodeStatus::Stale {
                            fingerprint: Some(fp),
                            key: Some(key),
                            reason,
                        },
                    }
                }
            }
        };
        status[i] = Some(s);
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(params: serde_json::Value, version: u32, input: &str) -> Fingerprint {
        Fingerprint {
            format: FORMAT,
            kind: "k".into(),
            kind_version: version,
            params,
            inputs: [("data".to_owned(), vec![input.to_owned()])].into(),
        }
    }

    fn state(f: &Fingerprint) -> NodeState {
        NodeState {
            key: f.key(),
            fingerprint: f.clone(),
            input_nodes: BTreeMap::new(),
        }
    }

    #[test]
    fn explains_each_change_in_one_sentence() {
        let old = fp(serde_json::json!({"opt": {"lr": 0.1}, "epochs": 3}), 1, "a");
        let prev = state(&old);
        let cases = [
            (
                fp(serde_json::json!({"opt": {"lr": 0.2}, "epochs": 3}), 1, "a"),
                "parameter `opt.lr` changed from 0.1 to 0.2",
            ),
            (
                fp(serde_json::json!({"opt": {"lr": 0.1}}), 1, "a"),
                "parameter `epochs` changed from 3 to (unset)",
            ),
            (
                fp(serde_json::json!({"opt": {"lr": 0.1}, "epochs": 3}), 2, "a"),
                "kind version changed from 1 to 2",
            ),
            (
                fp(serde_json::json!({"opt": {"lr": 0.1}, "epochs": 3}), 1, "b"),
                "input `data` changed",
            ),
            (old.clone(), "output is missing"),
        ];
        for (new, sentence) in cases {
            assert_eq!(explain(&new, &new.key(), Some(&prev)).to_string(), sentence);
        }
        assert_eq!(explain(&old, &old.key(), None).to_string(), "never built");
    }
}
