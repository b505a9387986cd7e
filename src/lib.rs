//! The `pipeline` executor: reads `pipeline.toml`, expands it into a DAG of nodes, keys every
//! node by the content of what it depends on, and runs only the stale ones.
//!
//! The domain (what a stage computes) lives in the `stages/*` crates behind
//! [`pipeline_api::StageKind`]; this crate knows nothing about audio. The binary (`src/main.rs`)
//! builds a [`pipeline_api::Registry`] and hands it to [`cli::main`], which parses the command
//! line, makes one [`project::Project`] call per command and renders what it returns; a run
//! reports to [`events::RunEvents`], which the command line draws as progress bars.

pub mod builtin;
pub mod cli;
pub mod config;
pub mod events;
pub mod fingerprint;
pub mod graph;
pub mod lock;
pub mod project;
pub mod remote;
pub mod reporter;
pub mod scheduler;
pub mod slurm;
pub mod staleness;
pub mod store;

/// Version of this executor, recorded in every manifest.
pub const EXECUTOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A registry holding the built-in kinds (`command`).
pub fn builtin_registry() -> pipeline_api::Registry {
    let mut registry = pipeline_api::Registry::default();
    builtin::register(&mut registry);
    registry
}
