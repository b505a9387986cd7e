//! The contract between the executor and the stage kinds.
//!
//! The executor (the `pipeline` crate) reads `pipeline.toml`, hashes, schedules and caches; it
//! knows nothing about what a stage computes. A stage kind implements [`StageKind`]: it
//! validates its own parameters before anything runs ([`StageKind::plan`]) and produces its
//! outputs in a directory the executor gives it ([`StageKind::run`]). Kinds are registered in a
//! [`Registry`]; adding a kind never needs a change to the executor.
//!
//! This crate is deliberately tiny (no machine-learning dependencies) so that both the executor
//! and the domain crates can depend on it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

mod command;
#[cfg(feature = "testing")]
pub mod testing;
pub use command::{DomainCommand, InputRef, NodeInfo, ProjectView, UsageError};
#[cfg(feature = "testing")]
pub use testing::RecordingReporter;

/// File a node may write at the top of its output directory: a JSON object of metrics
/// (numbers, or nested objects of numbers). `pipeline show` and `pipeline metrics` read it.
pub const METRICS_FILE: &str = "metrics.json";

/// A kind of stage: one module of the domain, registered once.
pub trait StageKind: Send + Sync + 'static {
    /// The name used in `pipeline.toml` (`kind = "..."`).
    fn name(&self) -> &'static str;

    /// One sentence saying what the kind produces (shown by `pipeline kinds`).
    fn summary(&self) -> &'static str;

    /// Implementation version. Bump it whenever the same parameters and inputs would give a
    /// different output: it is part of every node's cache key.
    fn version(&self) -> u32;

    /// Validates `params` (the node's `params` table, matrix values already merged in) and the
    /// declared inputs, before anything runs. Returns the canonical parameters (every field,
    /// defaults filled in) that enter the cache key, and the resources a run needs.
    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError>;

    /// Produces the node's outputs in [`RunContext::out_dir`]. Errors fail the node; the
    /// executor keeps the node's log and publishes nothing.
    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()>;
}

/// What [`StageKind::plan`] returns.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Canonical parameters: hashed into the node's key, passed back to `run`.
    pub params: serde_json::Value,
    /// What one run uses; the scheduler never oversubscribes.
    pub resources: Resources,
}

impl Plan {
    /// A plan from a validated parameter struct; serialising it gives the canonical form.
    pub fn new<P: Serialize>(params: &P, resources: Resources) -> Result<Self, ParamError> {
        let params = serde_json::to_value(params)
            .map_err(|e| ParamError::new(None, format!("cannot serialise parameters: {e}")))?;
        Ok(Self { params, resources })
    }
}

/// Resources one run of a node holds while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// CPU threads the run keeps busy (at least 1). The scheduler caps it at `--jobs`.
    pub threads: usize,
    /// Whether the run holds a GPU (the executor gives it one: [`RunContext::gpu`]).
    pub gpu: bool,
}

impl Resources {
    /// One CPU thread, no GPU.
    pub const LIGHT: Resources = Resources {
        threads: 1,
        gpu: false,
    };

    /// As many CPU threads as the run is given (`--jobs`, default: all cores).
    pub const ALL_CORES: Resources = Resources {
        threads: usize::MAX,
        gpu: false,
    };
}

/// A parameter (or input) that a kind refuses, with the dotted key at fault when known
/// (`"optimizer.lr"`), so that the executor can point at its line in `pipeline.toml`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParamError {
    pub key: Option<String>,
    pub message: String,
}

impl ParamError {
    pub fn new(key: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            key: key.map(str::to_owned),
            message: message.into(),
        }
    }

    /// An error about one parameter key.
    pub fn at(key: &str, message: impl Into<String>) -> Self {
        Self::new(Some(key), message)
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "`{key}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Deserialises a kind's parameter table into its strict struct (use
/// `#[serde(deny_unknown_fields)]`), naming the key at fault on error.
pub fn parse_params<T: DeserializeOwned>(params: &toml::Table) -> Result<T, ParamError> {
    let value = toml::Value::Table(params.clone());
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let key = (path != "." && !path.is_empty()).then_some(path);
        let message = err.into_inner().to_string();
        // toml's messages add lines (`in `key``) that the key already says; keep the first.
        let first_line = message.lines().next().unwrap_or_default().trim().to_owned();
        ParamError {
            key,
            message: first_line,
        }
    })
}

/// Number of artifacts bound to each declared input at plan time: a reference to a plain stage
/// gives one, a reference to a matrix stage gives one per member, an external path gives one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputCounts(pub BTreeMap<String, usize>);

impl InputCounts {
    /// Checks that nothing outside `required ∪ optional` is declared (suggesting the closest
    /// known name for a misspelt one) and that every `required` input is present. Errors name
    /// the key as `inputs.<name>`.
    pub fn expect(&self, required: &[&str], optional: &[&str]) -> Result<(), ParamError> {
        let known: Vec<&str> = required.iter().chain(optional).copied().collect();
        for name in self.0.keys() {
            if !known.contains(&name.as_str()) {
                let message = match closest(name, &known) {
                    Some(close) => format!("unknown input; did you mean `{close}`?"),
                    None => format!("unknown input (expected one of: {})", known.join(", ")),
                };
                return Err(ParamError::at(&format!("inputs.{name}"), message));
            }
        }
        for name in required {
            if !self.0.contains_key(*name) {
                return Err(ParamError::at(
                    &format!("inputs.{name}"),
                    "this input is required",
                ));
            }
        }
        Ok(())
    }

    /// Checks that `name` binds exactly one artifact.
    pub fn expect_single(&self, name: &str) -> Result<(), ParamError> {
        match self.0.get(name) {
            Some(1) | None => Ok(()),
            Some(n) => Err(ParamError::at(
                &format!("inputs.{name}"),
                format!("expects one artifact, but the reference gives {n}"),
            )),
        }
    }
}

/// The candidate nearest to `name` by edit distance, if near enough to be a typo.
fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// One artifact bound to an input when the node runs.
#[derive(Debug, Clone)]
pub struct InputArtifact {
    /// The producing node (`"train.seed-1"`), or `None` for an external path.
    pub node: Option<String>,
    /// Directory (or file, for an external path) to read. Never write to it.
    pub path: PathBuf,
}

/// Receives progress and log lines from a running node. The executor implements it (progress
/// bars, the node's log file); stages never print.
pub trait Reporter: Send + Sync {
    /// Starts a long step inside the node (an epoch, a pass over files); `total` units.
    fn step(&self, label: &str, total: u64) -> Box<dyn StepProgress>;
    /// A line for the node's log (shown on the terminal with `-v`).
    fn log(&self, line: &str);

    /// A problem the run worked around (a skipped file, a dropped row): kept in the node's log
    /// and shown on the console in the run's summary. Name the file and row at fault.
    fn warn(&self, line: &str) {
        self.log(&format!("warning: {line}"));
    }

    /// A measurement of this run that is not an output (wall-clock seconds, throughput): the
    /// executor keeps it in the manifest, outside the hashed files, so that two runs of the same
    /// key still publish identical bytes. `pipeline show` and `pipeline metrics` display it
    /// under `run.<name>`.
    fn measure(&self, name: &str, value: f64) {
        self.log(&format!("{name} = {value}"));
    }
}

/// Handle of a step started with [`Reporter::step`]; the step ends when it is dropped.
pub trait StepProgress: Send + Sync {
    fn inc(&self, delta: u64);
    fn set_message(&self, message: &str);
}

/// A reporter that discards everything: for stage code called from tests and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SilentReporter;

pub(crate) struct SilentStep;

impl StepProgress for SilentStep {
    fn inc(&self, _delta: u64) {}
    fn set_message(&self, _message: &str) {}
}

impl Reporter for SilentReporter {
    fn step(&self, _label: &str, _total: u64) -> Box<dyn StepProgress> {
        Box::new(SilentStep)
    }
    fn log(&self, _line: &str) {}
}

/// Everything a node's run may use.
pub struct RunContext<'a> {
    /// The node's name (`"train.seed-1"`), for messages.
    pub node: &'a str,
    /// Canonical parameters, as returned by [`StageKind::plan`].
    pub params: &'a serde_json::Value,
    /// Artifacts bound to each declared input, in declaration order (matrix order for a
    /// matrix stage).
    pub inputs: &'a BTreeMap<String, Vec<InputArtifact>>,
    /// Empty directory for the outputs; published atomically when `run` returns `Ok`.
    pub out_dir: &'a Path,
    /// Directory that survives an interrupted run of the same key (checkpoints for resuming);
    /// deleted once the node's output is published.
    pub scratch_dir: &'a Path,
    /// CPU threads this run may keep busy.
    pub threads: usize,
    /// The GPU this run holds, as a device ordinal of this process, when its plan asked for
    /// one (`None` otherwise): the executor gives each GPU to one run at a time.
    pub gpu: Option<usize>,
    pub reporter: &'a dyn Reporter,
}

impl fmt::Debug for RunContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunContext")
            .field("node", &self.node)
            .field("params", &self.params)
            .field("inputs", &self.inputs)
            .field("out_dir", &self.out_dir)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl RunContext<'_> {
    /// The canonical parameters as the kind's struct.
    pub fn params<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        Ok(serde_json::from_value(self.params.clone())?)
    }

    /// All artifacts bound to `name` (empty if the input is optional and absent).
    pub fn inputs(&self, name: &str) -> &[InputArtifact] {
        self.inputs.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The path of the single artifact bound to `name`.
    pub fn input(&self, name: &str) -> anyhow::Result<&Path> {
        match self.inputs(name) {
            [one] => Ok(&one.path),
            [] => anyhow::bail!("node `{}` has no input `{name}`", self.node),
            many => anyhow::bail!(
                "node `{}`: input `{name}` binds {} artifacts where one is expected",
                self.node,
                many.len()
            ),
        }
    }

    /// The path of the single artifact bound to `name`, if the input is declared.
    pub fn optional_input(&self, name: &str) -> anyhow::Result<Option<&Path>> {
        if self.inputs(name).is_empty() {
            Ok(None)
        } else {
            self.input(name).map(Some)
        }
    }

    /// Writes `value` as [`METRICS_FILE`] in the output directory.
    pub fn write_metrics<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(value)?;
        std::fs::write(self.out_dir.join(METRICS_FILE), json)?;
        Ok(())
    }
}

/// The kinds and domain commands known to a binary, by name.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn StageKind>>,
    commands: BTreeMap<String, Arc<dyn DomainCommand>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds.keys())
            .field("commands", &self.commands.keys())
            .finish()
    }
}

impl Registry {
    /// Adds a kind. Panics if the name is taken: two kinds with one name is a programming
    /// error caught by the registry's unit test.
    pub fn register(&mut self, kind: impl StageKind) {
        let name = kind.name();
        let previous = self.kinds.insert(name, Arc::new(kind));
        assert!(previous.is_none(), "stage kind `{name}` registered twice");
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn StageKind>> {
        self.kinds.get(name)
    }

    /// Kinds in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn StageKind>> {
        self.kinds.values()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    /// Adds a domain command. Panics if the name is taken.
    pub fn register_command(&mut self, command: impl DomainCommand) {
        let name = command.command().get_name().to_owned();
        let previous = self.commands.insert(name.clone(), Arc::new(command));
        assert!(previous.is_none(), "command `{name}` registered twice");
    }

    pub fn command(&self, name: &str) -> Option<&Arc<dyn DomainCommand>> {
        self.commands.get(name)
    }

    /// Domain commands in name order.
    pub fn commands(&self) -> impl Iterator<Item = &Arc<dyn DomainCommand>> {
        self.commands.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Params {
        epochs: u32,
        optimizer: Optimizer,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Optimizer {
        lr: f64,
    }

    #[test]
    fn parse_params_names_the_nested_key_at_fault() {
        let table: toml::Table = toml::from_str("epochs = 3\n[optimizer]\nlr = \"fast\"").unwrap();
        let err = parse_params::<Params>(&table).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("optimizer.lr"));
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn parse_params_rejects_unknown_keys() {
        let table: toml::Table =
            toml::from_str("epochs = 3\nepoch = 4\n[optimizer]\nlr = 1.0").unwrap();
        let err = parse_params::<Params>(&table).unwrap_err();
        assert!(
            err.message.contains("unknown field `epoch`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn input_counts_require_and_refuse() {
        let counts = InputCounts([("features".to_owned(), 1), ("extra".to_owned(), 2)].into());
        let err = counts
            .expect(&["features", "model"], &["extra"])
            .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("inputs.model"));
        let err = counts.expect(&["features"], &[]).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("inputs.extra"));
        assert!(counts.expect(&["features"], &["extra"]).is_ok());
        assert!(counts.expect_single("extra").is_err());
        assert!(counts.expect_single("features").is_ok());
    }

    #[test]
    fn a_misspelt_input_is_named_with_the_closest_known_one() {
        let counts = InputCounts([("embedings".to_owned(), 1), ("features".to_owned(), 1)].into());
        let err = counts.expect(&["embeddings", "features"], &[]).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("inputs.embedings"));
        assert_eq!(err.message, "unknown input; did you mean `embeddings`?");
        let far = InputCounts([("zzz".to_owned(), 1)].into());
        let err = far.expect(&["features"], &["model"]).unwrap_err();
        assert_eq!(
            err.message,
            "unknown input (expected one of: features, model)"
        );
    }
}
