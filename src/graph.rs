//! Expansion of the declared stages into the DAG of nodes that actually run: matrix and
//! `foreach` expansion, reference binding (member-wise where labels match), each kind's `plan`
//! (parameter validation), and cycle detection. Everything here happens before anything runs.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};
use pipeline_api::{InputCounts, Plan, Registry, StageKind};

use crate::config::{Config, ConfigError, Source, StageDecl, StageResources};

/// One artifact bound to an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// The output of another node (index into [`Pipeline::nodes`]).
    Node(usize),
    /// An external file or directory (absolute path).
    Path(PathBuf),
}

/// A declared input of a node and what it binds, in order.
#[derive(Debug, Clone)]
pub struct NodeInput {
    pub name: String,
    pub bindings: Vec<Binding>,
}

/// One runnable node: a stage, or one member of a matrix / `foreach` stage.
pub struct Node {
    pub name: String,
    pub stage: String,
    pub kind: Arc<dyn StageKind>,
    /// Matrix values (own or inherited through `foreach`), in declaration order.
    pub labels: Vec<(String, String)>,
    /// The params table handed to `plan` (matrix values merged in).
    pub params: toml::Table,
    pub plan: Plan,
    pub inputs: Vec<NodeInput>,
    /// What one job of this node asks a cluster for (the stage's `resources`; not in the key).
    pub resources: StageResources,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("kind", &self.kind.name())
            .field("labels", &self.labels)
            .field("inputs", &self.inputs)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Indices of the nodes this one reads, without duplicates.
    pub fn deps(&self) -> Vec<usize> {
        let mut deps = Vec::new();
        for input in &self.inputs {
            for b in &input.bindings {
                if let Binding::Node(i) = b
                    && !deps.contains(i)
                {
                    deps.push(*i);
                }
            }
        }
        deps
    }
}

/// A stage and its members.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub kind: String,
    pub members: Vec<usize>,
}

/// The validated DAG.
#[derive(Debug)]
pub struct Pipeline {
    pub config: Config,
    pub stages: Vec<Stage>,
    pub nodes: Vec<Node>,
    /// Node indices in a dependency order (declaration order where free).
    pub order: Vec<usize>,
}

impl Pipeline {
    /// Reads, expands and validates `path` with the kinds of `registry`.
    pub fn load(path: &std::path::Path, registry: &Registry) -> Result<Self, ConfigError> {
        Self::from_config(Config::load(path)?, registry)
    }

    pub fn from_config(config: Config, registry: &Registry) -> Result<Self, ConfigError> {
        Builder {
            config: &config,
            registry,
            nodes: Vec::new(),
            stages: Vec::new(),
        }
        .build()
        .map(|(stages, nodes, order)| Pipeline {
            config,
            stages,
            nodes,
            order,
        })
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Node indices named by `names` (a stage name selects all its members). Errors name the
    /// unknown one.
    pub fn select(&self, names: &[String]) -> Result<Vec<usize>, String> {
        let mut out = Vec::new();
        for name in names {
            let found: Vec<usize> = match self.stages.iter().find(|s| &s.name == name) {
                Some(stage) => stage.members.clone(),
                None => self.node_index(name).into_iter().collect(),
            };
            if found.is_empty() {
                return Err(format!(
                    "no stage or node named `{name}` in `{}`",
                    self.config.source.display
                ));
            }
            for i in found {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
        }
        Ok(out)
    }

    /// `targets` and everything they need, as a membership mask.
    pub fn with_ancestors(&self, targets: &[usize]) -> Vec<bool> {
        let mut keep = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = targets.to_vec();
        while let Some(i) = stack.pop() {
            if !keep[i] {
                keep[i] = true;
                stack.extend(self.nodes[i].deps());
            }
        }
        keep
    }

    /// Indices of the nodes that read node `i` directly.
    pub fn dependents(&self, i: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&j| self.nodes[j].deps().contains(&i))
            .collect()
    }
}

struct Builder<'a> {
    config: &'a Config,
    registry: &'a Registry,
    nodes: Vec<Node>,
    stages: Vec<Stage>,
}

/// A node before its inputs are bound.
struct Pending {
    stage: usize,
    name: String,
    labels: Vec<(String, String)>,
    params: toml::Table,
}

type Built = (Vec<Stage>, Vec<Node>, Vec<usize>);

impl Builder<'_> {
    fn src(&self) -> &Source {
        &self.config.source
    }

    fn build(mut self) -> Result<Built, ConfigError> {
        let decls = &self.config.stages;
        if decls.is_empty() {
            return Err(self.src().error_hint(
                None,
                "declares no stages: there is nothing to run",
                Some(
                    "add a `[stages.<name>]` table with a `kind` (`pipeline kinds` lists them)"
                        .into(),
                ),
            ));
        }
        // Kinds first: an unknown kind is the most basic mistake.
        let mut kinds = Vec::new();
        for decl in decls {
            match self.registry.get(decl.kind.get_ref()) {
                Some(kind) => kinds.push(kind.clone()),
                None => {
                    let known: Vec<_> = self.registry.names().collect();
                    return Err(self.src().error_hint(
                        Some(decl.kind.span()),
                        format!(
                            "stage `{}`: unknown kind `{}`",
                            decl.name,
                            decl.kind.get_ref()
                        ),
                        Some(format!("known kinds: {}", known.join(", "))),
                    ));
                }
            }
        }
        // Expand members, stages with `foreach` after the stage they follow.
        let order = self.foreach_order()?;
        let mut members: Vec<Vec<Pending>> = (0..decls.len()).map(|_| Vec::new()).collect();
        for &s in &order {
            let decl = &decls[s];
            let bases: Vec<(String, Vec<(String, String)>)> = match &decl.foreach {
                None => vec![(String::new(), Vec::new())],
                Some(f) => {
                    let t = decls
                        .iter()
                        .position(|d| &d.name == f.get_ref())
                        .expect("checked");
                    members[t]
                        .iter()
                        .map(|m| {
                            let suffix = m.name.strip_prefix(&decls[t].name).unwrap_or("");
                            (suffix.trim_start_matches('.').to_owned(), m.labels.clone())
                        })
                        .collect()
                }
            };
            let combos = self.matrix_combos(decl)?;
            for (suffix, labels) in &bases {
                for combo in &combos {
                    let mut params = decl.params.clone();
                    let mut labels = labels.clone();
                    let mut parts: Vec<String> = if suffix.is_empty() {
                        Vec::new()
                    } else {
                        vec![suffix.clone()]
                    };
                    for (key, value) in combo {
                        set_dotted(&mut params, key, value.clone());
                        let v = sanitise(value);
                        parts.push(format!("{}-{v}", sanitise_key(key)));
                        labels.push((key.clone(), v));
                    }
                    let name = if parts.is_empty() {
                        decl.name.clone()
                    } else {
                        format!("{}.{}", decl.name, parts.join("."))
                    };
                    members[s].push(Pending {
                        stage: s,
                        name,
                        labels,
                        params,
                    });
                }
            }
        }
        // Number nodes in declaration order of stages.
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut pending = Vec::new();
        for (s, ms) in members.into_iter().enumerate() {
            let mut idx = Vec::new();
            for m in ms {
                if seen.insert(m.name.clone(), s).is_some() {
                    return Err(self.src().error(
                        Some(decls[s].name_span.clone()),
                        format!(
                            "stage `{}`: duplicate node name `{}`",
                            decls[s].name, m.name
                        ),
                    ));
                }
                idx.push(pending.len());
                pending.push(m);
            }
            self.stages.push(Stage {
                name: decls[s].name.clone(),
                kind: decls[s].kind.get_ref().clone(),
                members: idx,
            });
        }
        // Bind inputs and plan.
        let mut edges = Vec::new();
        for (i, p) in pending.iter().enumerate() {
            let decl = &decls[p.stage];
            let mut inputs = Vec::new();
            for (name, reference) in &decl.inputs {
                let bindings = self.bind(decl, p, name.get_ref(), reference, &pending)?;
                for b in &bindings {
                    if let Binding::Node(j) = b {
                        edges.push((*j, i, p.stage, name.span()));
                    }
                }
                inputs.push(NodeInput {
                    name: name.get_ref().clone(),
                    bindings,
                });
            }
            let counts = InputCounts(
                inputs
                    .iter()
                    .map(|i| (i.name.clone(), i.bindings.len()))
                    .collect::<BTreeMap<_, _>>(),
            );
            let kind = kinds[p.stage].clone();
            let plan = kind
                .plan(&p.params, &counts)
                .map_err(|e| self.param_error(decl, p, e))?;
            self.nodes.push(Node {
                name: p.name.clone(),
                stage: decl.name.clone(),
                kind,
                labels: p.labels.clone(),
                params: p.params.clone(),
                plan,
                inputs,
                resources: decl.resources.clone(),
            });
        }
        let order = self.toposort(&edges)?;
        Ok((self.stages, self.nodes, order))
    }

    /// Stage indices so that a `foreach` target comes before the stages following it.
    fn foreach_order(&self) -> Result<Vec<usize>, ConfigError> {
        let decls = &self.config.stages;
        let mut order = Vec::new();
        let mut state = vec![0u8; decls.len()]; // 0 new, 1 visiting, 2 done
        fn visit(
            b: &Builder<'_>,
            s: usize,
            state: &mut [u8],
            order: &mut Vec<usize>,
            path: &mut Vec<usize>,
        ) -> Result<(), ConfigError> {
            let decls = &b.config.stages;
            if state[s] == 2 {
                return Ok(());
            }
            path.push(s);
            if state[s] == 1 {
                let start = path.iter().position(|&x| x == s).unwrap_or(0);
                let names: Vec<_> = path[start..]
                    .iter()
                    .map(|&x| decls[x].name.as_str())
                    .collect();
                let f = decls[s].foreach.as_ref().expect("in a cycle");
                return Err(b.src().error(
                    Some(f.span()),
                    format!(
                        "stage `{}`: `foreach` cycle: {}",
                        decls[s].name,
                        names.join(" -> ")
                    ),
                ));
            }
            state[s] = 1;
            if let Some(f) = &decls[s].foreach {
                let Some(t) = decls.iter().position(|d| &d.name == f.get_ref()) else {
                    return Err(b.src().error(
                        Some(f.span()),
                        format!(
                            "stage `{}`: foreach: no stage named `{}`",
                            decls[s].name,
                            f.get_ref()
                        ),
                    ));
                };
                visit(b, t, state, order, path)?;
            }
            path.pop();
            state[s] = 2;
            order.push(s);
            Ok(())
        }
        for s in 0..decls.len() {
            visit(self, s, &mut state, &mut order, &mut Vec::new())?;
        }
        Ok(order)
    }

    /// Cartesian product of the matrix, keys in declaration order.
    fn matrix_combos(
        &self,
        decl: &StageDecl,
    ) -> Result<Vec<Vec<(String, toml::Value)>>, ConfigError> {
        let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
        for (key, values) in &decl.matrix {
            if values.get_ref().is_empty() {
                return Err(self.src().error(
                    Some(key.span()),
                    format!(
                        "stage `{}`: matrix.`{}`: needs at least one value",
                        decl.name,
                        key.get_ref()
                    ),
                ));
            }
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.get_ref().iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((key.get_ref().clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        Ok(combos)
    }

    fn bind(
        &self,
        decl: &StageDecl,
        node: &Pending,
        input: &str,
        reference: &toml::Spanned<toml::Value>,
        pending: &[Pending],
    ) -> Result<Vec<Binding>, ConfigError> {
        let span = reference.span();
        let err = |msg: String, hint: Option<String>| {
            self.src().error_hint(
                Some(span.clone()),
                format!("stage `{}`: inputs.`{input}`: {msg}", decl.name),
                hint,
            )
        };
        let mut out = Vec::new();
        let mut todo: VecDeque<&toml::Value> = VecDeque::from([reference.get_ref()]);
        while let Some(value) = todo.pop_front() {
            match value {
                toml::Value::String(name) => {
                    if let Some(stage) = self.stages.iter().find(|s| &s.name == name) {
                        out.extend(
                            self.bind_stage(stage, node, pending)
                                .map_err(|m| err(m, None))?,
                        );
                    } else if let Some(j) = pending.iter().position(|p| &p.name == name) {
                        out.push(Binding::Node(j));
                    } else {
                        let hint = self
                            .stages
                            .iter()
                            .map(|s| s.name.as_str())
                            .find(|s| similar(s, name))
                            .map(|s| format!("did you mean `{s}`?"));
                        return Err(err(format!("no stage or node named `{name}`"), hint));
                    }
                }
                toml::Value::Table(t) => {
                    let path = match (t.get("path"), t.len()) {
                        (Some(toml::Value::String(p)), 1) => p,
                        _ => {
                            return Err(err(
                                "a table reference must be `{ path = \"...\" }`".into(),
                                None,
                            ));
                        }
                    };
                    let abs = self.config.dir.join(path);
                    if !abs.exists() {
                        return Err(err(format!("path `{path}` does not exist"), None));
                    }
                    out.push(Binding::Path(abs));
                }
                toml::Value::Array(items) => {
                    for (k, item) in items.iter().enumerate() {
                        todo.insert(k, item);
                    }
                }
                other => {
                    return Err(err(
                        format!(
                            "invalid reference of type {}: expected a stage name, `{{ path = \"...\" }}` or an array of these",
                            other.type_str()
                        ),
                        None,
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Members of `stage` bound from `node`: those whose labels agree with the node's on every
    /// label key both carry (`report.variants-4` binds the `evaluate.variants-4.seed-*`), all of
    /// them when they share no key.
    fn bind_stage(
        &self,
        stage: &Stage,
        node: &Pending,
        pending: &[Pending],
    ) -> Result<Vec<Binding>, String> {
        if stage.name == self.config.stages[node.stage].name {
            // Self-reference: a cycle, reported with the others.
            return Ok(stage.members.iter().map(|&j| Binding::Node(j)).collect());
        }
        let keys: Vec<&str> = stage
            .members
            .first()
            .map(|&j| pending[j].labels.iter().map(|(k, _)| k.as_str()).collect())
            .unwrap_or_default();
        let own: HashMap<&str, &str> = node
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let shared: Vec<&str> = keys.into_iter().filter(|k| own.contains_key(k)).collect();
        if shared.is_empty() {
            return Ok(stage.members.iter().map(|&j| Binding::Node(j)).collect());
        }
        let matching: Vec<_> = stage
            .members
            .iter()
            .filter(|&&j| {
                pending[j]
                    .labels
                    .iter()
                    .filter(|(k, _)| own.contains_key(k.as_str()))
                    .all(|(k, v)| own[k.as_str()] == v.as_str())
            })
            .map(|&j| Binding::Node(j))
            .collect();
        if matching.is_empty() {
            let want: Vec<_> = shared.iter().map(|k| format!("{k}={}", own[k])).collect();
            return Err(format!(
                "stage `{}` has no member with {}",
                stage.name,
                want.join(", ")
            ));
        }
        Ok(matching)
    }

    fn param_error(
        &self,
        decl: &StageDecl,
        node: &Pending,
        e: pipeline_api::ParamError,
    ) -> ConfigError {
        let who = if node.name == decl.name {
            format!("stage `{}`", decl.name)
        } else {
            format!("stage `{}` (node `{}`)", decl.name, node.name)
        };
        // toml's messages may carry a second line (`in `key``) that repeats the key.
        let message = e.message.lines().next().unwrap_or_default().trim();
        let Some(key) = e.key.as_deref() else {
            return self
                .src()
                .error(Some(decl.name_span.clone()), format!("{who}: {message}"));
        };
        let (section, rest) = match key.strip_prefix("inputs.") {
            Some(rest) => ("inputs", rest),
            None => ("params", key),
        };
        let span = self
            .locate_key(&decl.name, section, rest)
            .unwrap_or(decl.name_span.clone());
        self.src()
            .error(Some(span), format!("{who}: {section}.`{rest}`: {message}"))
    }

    /// Best span for `<section>.<key>` of a stage, looking in `matrix` for merged params.
    fn locate_key(&self, stage: &str, section: &str, key: &str) -> Option<Range<usize>> {
        let parts: Vec<&str> = key.split('.').collect();
        let mut path = vec!["stages", stage, section];
        path.extend(&parts);
        let full = path.len();
        let mut best = self.src().locate(&path);
        if best.as_ref().is_some_and(|(d, _)| *d == full) {
            return best.map(|(_, s)| s);
        }
        if section == "params" {
            for m in [vec!["stages", stage, "matrix", key], {
                let mut p = vec!["stages", stage, "matrix"];
                p.extend(&parts);
                p
            }] {
                if let Some((d, s)) = self.src().locate(&m)
                    && d == m.len()
                {
                    return Some(s);
                }
            }
        }
        if best.as_ref().is_some_and(|(d, _)| *d < 2) {
            best = None;
        }
        best.map(|(_, s)| s)
    }

    fn toposort(
        &self,
        edges: &[(usize, usize, usize, Range<usize>)],
    ) -> Result<Vec<usize>, ConfigError> {
        let n = self.nodes.len();
        let mut g: DiGraph<usize, ()> = DiGraph::with_capacity(n, edges.len());
        for i in 0..n {
            g.add_node(i);
        }
        for (a, b, _, _) in edges {
            g.update_edge(NodeIndex::new(*a), NodeIndex::new(*b), ());
        }
        // Kahn's algorithm, lowest index first, so the order follows the file.
        let mut indegree: Vec<usize> = (0..n)
            .map(|i| {
                g.neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: std::collections::BTreeSet<usize> =
            (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for j in g.neighbors(NodeIndex::new(i)) {
                indegree[j.index()] -= 1;
                if indegree[j.index()] == 0 {
                    ready.insert(j.index());
                }
            }
        }
        if order.len() == n {
            return Ok(order);
        }
        let done: HashSet<usize> = order.into_iter().collect();
        let start = (0..n)
            .find(|i| !done.contains(i) && self.on_cycle(&g, *i))
            .expect("a cycle");
        let cycle = find_cycle(&g, start);
        let names: Vec<&str> = cycle.iter().map(|&i| self.nodes[i].name.as_str()).collect();
        // Point at the input of the first node that reads the next one.
        let (a, b) = (cycle[0], cycle[1 % cycle.len()]);
        let (_, _, stage, span) = edges
            .iter()
            .find(|(x, y, _, _)| *x == b && *y == a)
            .expect("edge");
        let _ = stage;
        Err(self.src().error(
            Some(span.clone()),
            format!(
                "stage `{}`: dependency cycle: {} -> {}",
                self.nodes[a].stage,
                names.join(" -> "),
                names[0]
            ),
        ))
    }

    fn on_cycle(&self, g: &DiGraph<usize, ()>, i: usize) -> bool {
        !find_cycle(g, i).is_empty()
    }
}

/// A cycle through `start` following edges backwards (reader → what it reads), as node
/// indices `[start, x, y, ...]` where `start` reads `x`, `x` reads `y`, ...; empty if none.
pub(crate) fn find_cycle(g: &DiGraph<usize, ()>, start: usize) -> Vec<usize> {
    let mut prev: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    let mut seen = HashSet::from([start]);
    while let Some(i) = queue.pop_front() {
        for j in g.neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming) {
            let j = j.index();
            if j == start {
                let mut path = vec![i];
                let mut k = i;
                while k != start {
                    k = prev[&k];
                    path.push(k);
                }
                path.reverse();
                return path;
            }
            if seen.insert(j) {
                prev.insert(j, i);
                queue.push_back(j);
            }
        }
    }
    Vec::new()
}

/// Merges `value` at a dotted key (`audio.encoder`) into `params`.
fn set_dotted(params: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts = key.split('.').peekable();
    let mut table = params;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            table.insert(part.to_owned(), value);
            return;
        }
        let entry = table
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        table = entry.as_table_mut().expect("a table");
    }
}

/// A matrix value as it appears in node names: `[A-Za-z0-9_-]` only.
pub fn sanitise(value: &toml::Value) -> String {
    let raw = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => other.to_string(),
    };
    sanitise_key(&raw)
}

fn sanitise_key(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Cheap typo detection for hints: same letters give or take one edit.
fn similar(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut prev = d[0];
        d[0] = i;
        for j in 1..=b.len() {
            let tmp = d[j];
            d[j] = (d[j] + 1)
                .min(d[j - 1] + 1)
                .min(prev + usize::from(a[i - 1] != b[j - 1]));
            prev = tmp;
        }
    }
    d[b.len()] <= 2 && a.len().min(b.len()) > 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    fn load(text: &str) -> Result<Pipeline, ConfigError> {
        let config = Config::parse(
            Source::new("pipeline.toml", text),
            PathBuf::from("/p/pipeline.toml"),
        )?;
        Pipeline::from_config(config, &crate::builtin_registry())
    }

    fn names(p: &Pipeline, ids: &[Binding]) -> Vec<String> {
        ids.iter()
            .map(|b| match b {
                Binding::Node(i) => p.nodes[*i].name.clone(),
                Binding::Path(p) => p.display().to_string(),
            })
            .collect()
    }

    #[test]
    fn matrix_and_foreach_expand_and_bind_memberwise() {
        let p = load(
            r#"
[stages.f]
kind = "command"
params = { run = "true" }
[stages.train]
kind = "command"
matrix = { seed = [1, 2], lr = [0.5] }
params = { run = "true" }
inputs = { f = "f" }
[stages.embed]
kind = "command"
foreach = "train"
params = { run = "true" }
inputs = { model = "train", all = "train", one = "train.seed-2.lr-0_5" }
[stages.report]
kind = "command"
params = { run = "true" }
inputs = { e = ["embed", "f"] }
"#,
        )
        .unwrap();
        let all: Vec<_> = p.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            all,
            [
                "f",
                "train.seed-1.lr-0_5",
                "train.seed-2.lr-0_5",
                "embed.seed-1.lr-0_5",
                "embed.seed-2.lr-0_5",
                "report"
            ]
        );
        let t = &p.nodes[1];
        assert_eq!(t.params["lr"].as_float(), Some(0.5));
        assert_eq!(t.params["seed"].as_integer(), Some(1));
        let e = &p.nodes[4];
        assert_eq!(names(&p, &e.inputs[0].bindings), ["train.seed-2.lr-0_5"]);
        let r = &p.nodes[5];
        assert_eq!(
            names(&p, &r.inputs[0].bindings),
            ["embed.seed-1.lr-0_5", "embed.seed-2.lr-0_5", "f"]
        );
    }

    #[test]
    fn a_node_binds_the_members_that_agree_on_the_labels_it_shares() {
        let p = load(
            r#"
[stages.data]
kind = "command"
matrix = { v = [1, 2] }
params = { run = "true" }
[stages.train]
kind = "command"
foreach = "data"
matrix = { seed = [1, 2] }
params = { run = "true" }
inputs = { d = "data" }
[stages.ensemble]
kind = "command"
foreach = "data"
params = { run = "true" }
inputs = { m = "train" }
[stages.all]
kind = "command"
params = { run = "true" }
inputs = { m = "train" }
"#,
        )
        .unwrap();
        let node = |name: &str| p.nodes.iter().find(|n| n.name == name).unwrap();
        assert_eq!(
            names(&p, &node("ensemble.v-2").inputs[0].bindings),
            ["train.v-2.seed-1", "train.v-2.seed-2"],
            "`v` is shared, `seed` is not"
        );
        assert_eq!(
            names(&p, &node("train.v-1.seed-2").inputs[0].bindings),
            ["data.v-1"]
        );
        assert_eq!(
            node("all").inputs[0].bindings.len(),
            4,
            "no shared label: every member"
        );
    }

    #[test]
    fn dotted_matrix_keys_set_nested_params() {
        let mut t: toml::Table = toml::from_str("[audio]\nrate = 1").unwrap();
        set_dotted(&mut t, "audio.encoder", toml::Value::String("cnn".into()));
        set_dotted(&mut t, "seed", toml::Value::Integer(3));
        assert_eq!(t["seed"].as_integer(), Some(3));
        assert_eq!(t["audio"]["encoder"].as_str(), Some("cnn"));
        assert_eq!(t["audio"]["rate"].as_integer(), Some(1));
    }

    #[test]
    fn cycle_lists_its_nodes() {
        let err = load(
            "[stages.a]\nkind = \"command\"\nparams = { run = \"true\" }\ninputs = { x = \"b\" }\n\
             [stages.b]\nkind = \"command\"\nparams = { run = \"true\" }\ninputs = { x = \"a\" }\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "pipeline.toml:4:12: stage `a`: dependency cycle: a -> b -> a"
        );
    }

    #[test]
    fn param_errors_point_at_the_key() {
        let err = load("[stages.a]\nkind = \"command\"\nparams = { run = 3 }\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "pipeline.toml:3:12: stage `a`: params.`run`: invalid type: integer `3`, expected a string"
        );
    }
}
