//! Stage kinds: eval. Retrieval metrics ([`metrics`], also used by `learn` for validation),
//! the correspondence table ([`correspondences`]), evaluation ([`evaluate`]) and the report
//! ([`report`]).

use pipeline_api::Registry;

pub mod correspondences;
pub mod evaluate;
pub mod fixtures;
pub mod index;
pub mod metrics;
pub mod plot;
pub mod report;

pub use correspondences::Correspondences;
pub use evaluate::Evaluate;
pub use report::Report;

/// Registers this crate's stage kinds: `correspondences`, `evaluate`, `report`.
pub fn register(registry: &mut Registry) {
    registry.register(Correspondences);
    registry.register(Evaluate);
    registry.register(Report);
}
