//! Stage kinds: eval. Retrieval metrics ([`metrics`], also used by `learn` for validation),
//! their statistics (bootstrap intervals, correlations: [`statistics`]), the correspondence
//! table ([`correspondences`]), evaluation ([`evaluate`]), the report ([`report`], its
//! comparisons in [`compare`]) and sweeps over data sets ([`sweep`]).

use pipeline_api::Registry;

pub mod compare;
pub mod correspondences;
pub mod evaluate;
pub mod html;
pub mod index;
pub mod linalg;
pub mod metrics;
pub mod parquet_writer;
pub mod plot;
pub mod report;
pub mod statistics;
pub mod sweep;

pub use correspondences::Correspondences;
pub use evaluate::Evaluate;
pub use report::Report;
pub use sweep::Sweep;

/// How an output names an input artifact: its producing node (`"embed.seed-1"`), or for an
/// external path the path's last component, never the whole path: outputs must not depend on
/// where the project lives (a node's key does not).
pub fn input_label(artifact: &pipeline_api::InputArtifact) -> String {
    match &artifact.node {
        Some(node) => node.clone(),
        None => artifact
            .path
            .file_name()
            .map_or_else(|| "input".to_owned(), |n| n.to_string_lossy().into_owned()),
    }
}

/// Registers this crate's stage kinds: `correspondences`, `evaluate`, `report`, `sweep`.
pub fn register(registry: &mut Registry) {
    registry.register(Correspondences);
    registry.register(Evaluate);
    registry.register(Report);
    registry.register(Sweep);
}
