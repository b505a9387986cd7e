//! Reading `pipeline.toml` into raw, span-carrying declarations, so that every later error
//! (unknown key, bad reference, cycle, a parameter refused by a kind) can name the file, line
//! and column of the key at fault. Resolution into nodes happens in [`crate::graph`].
//!
//! # The `pipeline.toml` format
//!
//! ```toml
//! # optional
//! [settings]
//! artifacts = "artifacts"      # relative to the config file
//!
//! [stages.data]
//! kind = "synth-dataset"
//! params = { seed = 7 }          # any TOML table; validated by the kind's plan()
//!
//! [stages.features]
//! kind = "features"
//! inputs = { dataset = "data" }  # input name -> reference
//!
//! [stages.train]
//! kind = "train"
//! matrix = { seed = [1, 2, 3] }  # nodes train.seed-1, train.seed-2, train.seed-3
//! inputs = { features = "features" }
//! params = { epochs = 10 }
//!
//! [stages.embed]
//! kind = "embed"
//! foreach = "train"              # one node per member of `train` (embed.seed-1, ...)
//! inputs = { model = "train", features = "features" }
//!
//! [stages.report]
//! kind = "report"
//! inputs = { evaluations = ["evaluate", "evaluate-distill"], raw = { path = "data/dir" } }
//! ```
//!
//! - `[settings] artifacts`: the artifacts directory, relative to the config file (default
//!   `artifacts`).
//! - `[settings.metrics]`: the default view of `pipeline metrics`: `nodes` (nodes or stages, in
//!   row order) and `columns` (patterns of dotted `metrics.json` keys, `*` as wildcard, in
//!   column order).
//! - `[stages.<name>]`: a stage; names use `[A-Za-z0-9_-]`. Keys: `kind` (required, a
//!   registered kind), `params` (a table handed to the kind's `plan`), `inputs` (input name →
//!   reference), `matrix` (key → array of values), `foreach` (a stage name), `resources`
//!   (what one job of the stage asks a cluster for; never part of a key).
//! - `[settings.executor]`: `kind = "local" | "slurm"`; `[settings.executor.slurm]`:
//!   `gpu_flag`, `binary`, `poll_seconds`, default `resources`.
//! - `[settings.cache]`: a remote cache, `url = "s3://bucket/prefix"`, `mode = "read" |
//!   "read-write"`, `endpoint`, `region`, `allow_http`, `timeout_seconds`, `retries`.
//! - `matrix = { k = [v1, v2] }` expands the stage into one node per combination, named
//!   `<stage>.<key>-<value>` (several keys joined with `.`, in declaration order; values
//!   sanitised to `[A-Za-z0-9_-]`). Each matrix value is merged into that node's params; a
//!   dotted key (`"audio.encoder"`) sets a nested parameter. The node carries the matrix values
//!   as labels.
//! - `foreach = "train"` gives one node per member of `train`, inheriting its labels and its
//!   name suffix (`embed.seed-1`); params are not modified. It may be combined with `matrix`.
//! - A reference is a stage name (`"train"`), one member (`"train.seed-1"`), an external path
//!   `{ path = "..." }` (file or directory, relative to the config file), or an array of these
//!   (concatenated in order). A reference to a stage whose members carry label keys that the
//!   referring node also carries binds only the members whose values agree with the node's on
//!   those shared keys (`report.variants-4`, labelled `variants`, binds every
//!   `evaluate.variants-4.seed-*`); with no key in common it binds every member, in matrix
//!   order.
//!
//! Unknown keys, unknown kinds, bad references, duplicate node names and cycles are errors
//! naming `file:line:column`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// An error in `pipeline.toml`, located at a line and column when known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: usize,
        column: usize,
        message: String,
        hint: Option<String>,
    },
    #[error("{file}: {message}")]
    File {
        file: String,
        message: String,
        hint: Option<String>,
    },
}

impl ConfigError {
    /// A suggested fix, printed on its own `hint:` line.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ConfigError::At { hint, .. } | ConfigError::File { hint, .. } => hint.as_deref(),
            ConfigError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Some("run `pipeline` in the directory of `pipeline.toml`, or pass `-f FILE`")
            }
            ConfigError::Read { .. } => None,
        }
    }
}

/// The text of the config file and how to turn byte offsets into lines and columns.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path as the user wrote it (for messages).
    pub display: String,
    pub text: String,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(display: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            display: display.into(),
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }

    /// An error at a span (or at the file when there is none).
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        self.error_hint(span, message, None)
    }

    pub fn error_hint(
        &self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> ConfigError {
        let message = message.into();
        match span {
            Some(span) => {
                let (line, column) = self.line_col(span.start);
                ConfigError::At {
                    file: self.display.clone(),
                    line,
                    column,
                    message,
                    hint,
                }
            }
            None => ConfigError::File {
                file: self.display.clone(),
                message,
                hint,
            },
        }
    }

    /// Span of the deepest key of `path` present in the document, and how many segments of
    /// `path` were found. Used to point at a key named by a kind's [`pipeline_api::ParamError`].
    pub fn locate(&self, path: &[&str]) -> Option<(usize, Range<usize>)> {
        let doc = DeTable::parse(&self.text).ok()?;
        let mut table: &DeTable<'_> = doc.get_ref();
        let mut found = None;
        for (depth, segment) in path.iter().enumerate() {
            let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *segment)
            else {
                break;
            };
            found = Some((depth + 1, key.span()));
            match value.get_ref() {
                DeValue::Table(inner) => table = inner,
                _ => break,
            }
        }
        found
    }
}

/// The whole file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub settings: Option<RawSettings>,
    #[serde(default)]
    pub stages: BTreeMap<Spanned<String>, Spanned<RawStage>>,
}

/// `[settings]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub artifacts: Option<Spanned<String>>,
    #[serde(default)]
    pub metrics: MetricsView,
    #[serde(default)]
    pub executor: ExecutorSettings,
    pub cache: Option<CacheSettings>,
}

/// `[settings.cache]`: a remote, content-keyed cache on an S3-compatible object store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// `"read"` (fetch only, the default) or `"read-write"` (also upload what runs here).
    #[serde(default)]
    pub mode: CacheMode,
    /// For servers other than AWS (`http://127.0.0.1:9000`); default `AWS_ENDPOINT_URL`, else
    /// AWS's endpoint of the region.
    pub endpoint: Option<String>,
    /// Default `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Plain `http://` endpoints are refused unless this is set.
    #[serde(default)]
    pub allow_http: bool,
    /// Time-out of one request's connection and of each read or write.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Further attempts of a request that failed in a way that may pass.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_timeout() -> f64 {
    10.0
}

fn default_retries() -> u32 {
    2
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    #[default]
    Read,
    ReadWrite,
}

/// `[settings.executor]`: where stale nodes run. Not part of any node's key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSettings {
    /// `"local"` (threads of this process, the default) or `"slurm"` (one job per node).
    #[serde(default)]
    pub kind: ExecutorKind,
    #[serde(default)]
    pub slurm: SlurmSettings,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm,
}

/// `[settings.executor.slurm]`: how jobs are submitted, and the cluster-wide defaults of every
/// stage's `resources`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSettings {
    /// How a GPU request is written: `"gres"` (`--gres=gpu:N`), `"gpus"` (`--gpus=N`) or
    /// `"gpus-per-node"` (`--gpus-per-node=N`); sites differ.
    pub gpu_flag: GpuFlag,
    /// The `pipeline` binary as the compute nodes see it (default: the driver's own binary,
    /// which must then be on a shared path).
    pub binary: Option<PathBuf>,
    /// Longest wait between two looks at a job's state (the first looks are quicker).
    pub poll_seconds: f64,
    /// Defaults for every stage's `resources`.
    pub resources: StageResources,
}

impl Default for SlurmSettings {
    fn default() -> Self {
        Self {
            gpu_flag: GpuFlag::Gres,
            binary: None,
            poll_seconds: 5.0,
            resources: StageResources::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuFlag {
    Gres,
    Gpus,
    GpusPerNode,
}

/// A stage's `resources` on a cluster (`cpus`, `mem`, `time`, `gpus`, `partition`, `account`,
/// `qos`, extra `sbatch` arguments). Kept out of the node key: changing them reruns nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageResources {
    pub cpus: Option<usize>,
    /// As Slurm writes it: `"32G"`, `"500M"`.
    pub mem: Option<String>,
    /// As Slurm writes it: `"4:00:00"`, `"2-00:00:00"`, `"30"` (minutes).
    pub time: Option<String>,
    pub gpus: Option<usize>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Extra arguments, appended to the defaults' (`["--constraint=a100"]`).
    #[serde(default)]
    pub sbatch: Vec<String>,
}

impl StageResources {
    /// These resources with `defaults` filling what they leave unset.
    pub fn or(&self, defaults: &StageResources) -> StageResources {
        StageResources {
            cpus: self.cpus.or(defaults.cpus),
            mem: self.mem.clone().or_else(|| defaults.mem.clone()),
            time: self.time.clone().or_else(|| defaults.time.clone()),
            gpus: self.gpus.or(defaults.gpus),
            partition: self
                .partition
                .clone()
                .or_else(|| defaults.partition.clone()),
            account: self.account.clone().or_else(|| defaults.account.clone()),
            qos: self.qos.clone().or_else(|| defaults.qos.clone()),
            sbatch: defaults
                .sbatch
                .iter()
                .chain(&self.sbatch)
                .cloned()
                .collect(),
        }
    }
}

/// `[settings.metrics]`: what `pipeline metrics` shows when given no nodes or columns.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsView {
    /// Nodes or stages, in table order (default: every node with metrics).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Column patterns (dotted keys of `metrics.json`, `*` matches any run of characters), in
    /// column order (default: every column, sorted).
    #[serde(default)]
    pub columns: Vec<String>,
}

/// One `[stages.<name>]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub kind: Spanned<String>,
    #[serde(default)]
    pub params: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub inputs: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    pub matrix: BTreeMap<Spanned<String>, Spanned<Vec<toml::Value>>>,
    #[serde(default)]
    pub foreach: Option<Spanned<String>>,
    #[serde(default)]
    pub resources: StageResources,
}

/// One stage after parsing, with its keys in declaration order.
#[derive(Debug)]
pub struct StageDecl {
    pub name: String,
    pub name_span: Range<usize>,
    pub kind: Spanned<String>,
    pub params: toml::Table,
    /// Inputs in declaration order.
    pub inputs: Vec<(Spanned<String>, Spanned<toml::Value>)>,
    /// Matrix keys in declaration order.
    pub matrix: Vec<(Spanned<String>, Spanned<Vec<toml::Value>>)>,
    pub foreach: Option<Spanned<String>>,
    pub resources: StageResources,
}

/// The parsed file: where it is, where its artifacts go, and its stages in declaration order.
#[derive(Debug)]
pub struct Config {
    pub source: Source,
    /// Absolute path of the config file.
    pub path: PathBuf,
    /// Directory of the config file: relative paths are resolved against it.
    pub dir: PathBuf,
    pub artifacts: PathBuf,
    /// The default view of `pipeline metrics`.
    pub metrics: MetricsView,
    pub executor: ExecutorSettings,
    pub cache: Option<CacheSettings>,
    pub stages: Vec<StageDecl>,
}

impl Config {
    /// Reads and parses `path` (`display` is how messages name it).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let abs = std::path::absolute(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(Source::new(path.display().to_string(), text), abs)
    }

    /// Parses the text of a config file located at `path` (absolute).
    pub fn parse(source: Source, path: PathBuf) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(&source.text).map_err(|err| {
            let message = err.message().trim().to_owned();
            // A syntax error belongs to no stage (`[broken` after the last one is not an error
            // of that stage); a wrong key or type inside a stage's table does.
            let syntax_ok = DeTable::parse(&source.text).is_ok();
            let stage = err
                .span()
                .filter(|_| syntax_ok)
                .and_then(|span| stage_at(&source, span.start));
            let message = match stage {
                Some(stage) => format!("stage `{stage}`: {message}"),
                None => message,
            };
            source.error(err.span(), message)
        })?;
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        let artifacts = match raw.settings.as_ref().and_then(|s| s.artifacts.as_ref()) {
            Some(a) => dir.join(a.get_ref()),
            None => dir.join("artifacts"),
        };
        let metrics = raw
            .settings
            .as_ref()
            .map(|s| s.metrics.clone())
            .unwrap_or_default();
        let executor = raw
            .settings
            .as_ref()
            .map(|s| s.executor.clone())
            .unwrap_or_default();
        let cache = raw.settings.as_ref().and_then(|s| s.cache.clone());
        // Durations in seconds: finite and positive, or a `Duration` cannot hold them.
        let seconds = [
            (
                "settings.executor.slurm.poll_seconds",
                Some(executor.slurm.poll_seconds),
            ),
            (
                "settings.cache.timeout_seconds",
                cache.as_ref().map(|c| c.timeout_seconds),
            ),
        ];
        for (key, value) in seconds {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0 && v < 1e9)
            {
                return Err(source.error(
                    None,
                    format!("`{key}` must be a positive number of seconds (got {v})"),
                ));
            }
        }
        let mut stages: Vec<StageDecl> = Vec::new();
        for (name, stage) in raw.stages {
            let name_span = name.span();
            let name = name.into_inner();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(source.error_hint(
                    Some(name_span),
                    format!("stage name `{name}` may only use letters, digits, `-` and `_`"),
                    Some("`.` separates a stage from its matrix members in node names".into()),
                ));
            }
            let stage = stage.into_inner();
            let mut inputs: Vec<_> = stage.inputs.into_iter().collect();
            inputs.sort_by_key(|(k, _)| k.span().start);
            let mut matrix: Vec<_> = stage.matrix.into_iter().collect();
            matrix.sort_by_key(|(k, _)| k.span().start);
            stages.push(StageDecl {
                name,
                name_span,
                kind: stage.kind,
                params: stage.params.map(Spanned::into_inner).unwrap_or_default(),
                inputs,
                matrix,
                foreach: stage.foreach,
                resources: stage.resources,
            });
        }
        stages.sort_by_key(|s| s.name_span.start);
        Ok(Config {
            source,
            dir,
            artifacts,
            metrics,
            executor,
            cache,
            stages,
            path,
        })
    }
}

/// Name of the stage whose table contains byte `offset`, for context in serde errors.
fn stage_at(source: &Source, offset: usize) -> Option<String> {
    let (doc, _) = DeTable::parse_recoverable(&source.text);
    let stages = doc
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == "stages")?
        .1;
    let DeValue::Table(stages) = stages.get_ref() else {
        return None;
    };
    // Stages in a `[stages.x]` header do not span their body: take the last stage named
    // before the end of the line of `offset`.
    let line_end = source.text[offset.min(source.text.len())..]
        .find('\n')
        .map_or(source.text.len(), |i| offset + i);
    stages
        .iter()
        .filter(|(k, _)| k.span().start <= line_end)
        .max_by_key(|(k, _)| k.span().start)
        .map(|(k, _)| k.get_ref().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(
            Source::new("pipeline.toml", text),
            PathBuf::from("/p/pipeline.toml"),
        )
    }

    #[test]
    fn line_col_maps_offsets() {
        let s = Source::new("f", "ab\ncdé\nx");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(7), (2, 4));
        assert_eq!(s.line_col(8), (3, 1));
    }

    #[test]
    fn unknown_key_names_line_and_stage() {
        let err = parse("[stages.a]\nkind = \"command\"\nparamz = {}\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("pipeline.toml:3:1: stage `a`: unknown field `paramz`"),
            "{msg}"
        );
    }

    #[test]
    fn syntax_error_after_the_last_stage_names_no_stage() {
        let err = parse("[stages.report]\nkind = \"command\"\n\n[broken\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("pipeline.toml:4:"), "{msg}");
        assert!(!msg.contains("stage `report`"), "{msg}");
    }

    #[test]
    fn locate_finds_nested_keys() {
        let s = Source::new(
            "f",
            "[stages.t]\nkind = \"x\"\nparams = { optimizer = { lr = 1 } }\n",
        );
        let (depth, span) = s
            .locate(&["stages", "t", "params", "optimizer", "lr"])
            .unwrap();
        assert_eq!(depth, 5);
        assert_eq!(s.line_col(span.start), (3, 26));
        let (depth, _) = s.locate(&["stages", "t", "params", "nope"]).unwrap();
        assert_eq!(depth, 3);
    }

    #[test]
    fn keeps_declaration_order() {
        let c = parse(
            "[stages.z]\nkind = \"k\"\nmatrix = { b = [1], a = [2] }\n[stages.a]\nkind = \"k\"\n",
        )
        .unwrap();
        assert_eq!(c.stages[0].name, "z");
        assert_eq!(c.stages[0].matrix[0].0.get_ref(), "b");
        assert_eq!(c.artifacts, PathBuf::from("/p/artifacts"));
    }
}
