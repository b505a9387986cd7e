//! Stage kinds `train`, `distill` and `embed`: dual encoders in Burn (flex backend on the CPU,
//! CUDA with the `cuda` feature), the paper's losses (`L_sup`, `L_dist`), the shared training
//! loop with resumable checkpoints, and embedding extraction.

pub mod batches;
pub mod device;
pub mod embedding;
pub mod fixtures;
pub mod kinds;
pub mod losses;
pub mod models;
pub mod outputs;
pub mod params;
pub mod train;

use pipeline_api::Registry;

/// Registers this crate's stage kinds.
pub fn register(registry: &mut Registry) {
    registry.register(kinds::TrainKind);
    registry.register(kinds::DistillKind);
    registry.register(kinds::EmbedKind);
}
