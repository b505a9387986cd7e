//! Which model answers, and the artifacts it needs: the model's own output, the `features`
//! node it was trained on (front end, vocabulary or tokenizer) and that node's data set.

use std::path::PathBuf;

use pipeline_api::{InputRef, NodeInfo, UsageError};
use pipeline_data::features::{FeaturesParams, tokenizer_path};
use pipeline_eval::compare::validation_map10;

/// Kinds whose output is a dual encoder (`model.mpk`).
const MODEL_KINDS: [&str; 2] = ["train", "distill"];

/// A built model and what a query over it reads.
#[derive(Debug, Clone)]
pub struct Model {
    pub node: String,
    pub key: String,
    pub dir: PathBuf,
    pub features: Features,
}

/// The `features` node a model was trained on.
#[derive(Debug, Clone)]
pub struct Features {
    pub key: String,
    pub dir: PathBuf,
    pub params: FeaturesParams,
    /// The data set the clips' `file`s are relative to.
    pub dataset_dir: PathBuf,
    /// The `tokenizer.json` of a pretrained tokenizer (else the word vocabulary is used).
    pub tokenizer: Option<PathBuf>,
}

fn usage(message: String) -> anyhow::Error {
    UsageError::new(message).into()
}

fn build_hint(node: &str) -> String {
    format!("hint: `pipeline run {node}` builds it")
}

/// `name` (a node, or a stage: its best member on validation), or by default the Stage-2
/// student with the best validation mAP@10, else the best model on validation.
pub fn resolve(nodes: &[NodeInfo], name: Option<&str>) -> anyhow::Result<Model> {
    let models: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| MODEL_KINDS.contains(&n.kind.as_str()))
        .collect();
    let node = match name {
        Some(name) => named(nodes, &models, name)?,
        None => default_model(&models)?,
    };
    let dir = node.out_dir.clone().ok_or_else(|| {
        usage(format!(
            "model `{}` is not built yet\n{}",
            node.name,
            build_hint(&node.name)
        ))
    })?;
    Ok(Model {
        node: node.name.clone(),
        key: node.key.clone(),
        dir,
        features: features_of(nodes, node)?,
    })
}

fn named<'a>(
    nodes: &'a [NodeInfo],
    models: &[&'a NodeInfo],
    name: &str,
) -> anyhow::Result<&'a NodeInfo> {
    if let Some(node) = nodes.iter().find(|n| n.name == name) {
        if !MODEL_KINDS.contains(&node.kind.as_str()) {
            return Err(usage(format!(
                "`{name}` is a `{}` node, not a model (a `train` or `distill` node)\nhint: models here: {}",
                node.kind,
                names(models)
            )));
        }
        return Ok(node);
    }
    let members: Vec<&NodeInfo> = models.iter().copied().filter(|n| n.stage == name).collect();
    if members.is_empty() {
        return Err(usage(format!(
            "the pipeline has no model `{name}`\nhint: models here: {}",
            names(models)
        )));
    }
    best_on_validation(&members)?.ok_or_else(|| {
        usage(format!(
            "no member of stage `{name}` is built yet\n{}",
            build_hint(name)
        ))
    })
}

fn default_model<'a>(models: &[&'a NodeInfo]) -> anyhow::Result<&'a NodeInfo> {
    let students: Vec<&NodeInfo> = models
        .iter()
        .copied()
        .filter(|n| n.kind == "distill" && n.params["lambda_dist"].as_f64().unwrap_or(0.0) > 0.0)
        .collect();
    if let Some(best) = best_on_validation(&students)? {
        return Ok(best);
    }
    if let Some(best) = best_on_validation(models)? {
        return Ok(best);
    }
    Err(usage(if models.is_empty() {
        "the pipeline has no model (a `train` or `distill` node) to search with".to_owned()
    } else {
        "no model is built yet\nhint: `pipeline run` builds them".to_owned()
    }))
}

/// The built node with the highest `val.map10` (the first on ties); `None` if none is built.
fn best_on_validation<'a>(candidates: &[&'a NodeInfo]) -> anyhow::Result<Option<&'a NodeInfo>> {
    let mut best: Option<(&NodeInfo, f64)> = None;
    for &node in candidates {
        let Some(dir) = &node.out_dir else { continue };
        let val = validation_map10(dir)?;
        if best.is_none_or(|(_, b)| val > b) {
            best = Some((node, val));
        }
    }
    Ok(best.map(|(node, _)| node))
}

fn names(models: &[&NodeInfo]) -> String {
    let list: Vec<&str> = models.iter().map(|n| n.name.as_str()).collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

/// The single node bound to `input` of `node`, or an external path.
fn single_input<'a>(node: &'a NodeInfo, input: &str) -> Option<&'a InputRef> {
    match node.inputs.get(input).map(Vec::as_slice) {
        Some([one]) => Some(one),
        _ => None,
    }
}

fn built_dir(nodes: &[NodeInfo], input: &InputRef) -> anyhow::Result<PathBuf> {
    match input {
        InputRef::Path(path) => Ok(path.clone()),
        InputRef::Node(name) => nodes
            .iter()
            .find(|n| &n.name == name)
            .and_then(|n| n.out_dir.clone())
            .ok_or_else(|| usage(format!("`{name}` is not built yet\n{}", build_hint(name)))),
    }
}

fn features_of(nodes: &[NodeInfo], model: &NodeInfo) -> anyhow::Result<Features> {
    let Some(InputRef::Node(name)) = single_input(model, "features") else {
        anyhow::bail!("model `{}` has no single `features` input", model.name);
    };
    let node = nodes
        .iter()
        .find(|n| &n.name == name)
        .expect("inputs name nodes of the pipeline");
    if node.kind != "features" {
        return Err(usage(format!(
            "model `{}` was trained on `{name}`, a `{}` node (frozen encoders' embeddings); \
             search needs the log-mel front end and tokens of a `features` node, which a frozen \
             encoder would have to be run on for a new query: not implemented",
            model.name, node.kind
        )));
    }
    let params: FeaturesParams = serde_json::from_value(node.params.clone())?;
    let dir = built_dir(nodes, &InputRef::Node(name.clone()))?;
    let dataset = single_input(node, "dataset")
        .ok_or_else(|| anyhow::anyhow!("`{name}` has no single `dataset` input"))?;
    let tokenizer = match single_input(node, "tokenizer") {
        None => None,
        Some(input) => Some(tokenizer_path(
            &built_dir(nodes, input)?,
            params.tokenizer_file.as_deref(),
        )?),
    };
    Ok(Features {
        key: node.key.clone(),
        dataset_dir: built_dir(nodes, dataset)?,
        dir,
        params,
        tokenizer,
    })
}
