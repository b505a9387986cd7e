//! Stage kinds `train`, `distill`, `embed` and `encode`: dual encoders in Burn (flex backend on
//! the CPU, CUDA with the `cuda` feature), pretrained encoders (YAMNet from ONNX, BERT/MiniLM
//! from safetensors), the paper's losses (`L_sup`, `L_dist`), the shared training loop with
//! resumable checkpoints, and embedding extraction.

pub mod batches;
pub mod device;
pub mod embedding;
pub mod encode;
pub mod kinds;
pub mod losses;
pub mod models;
pub mod outputs;
pub mod params;
pub mod pretrained;
pub mod train;

use pipeline_api::Registry;

/// Registers this crate's stage kinds.
pub fn register(registry: &mut Registry) {
    registry.register(kinds::TrainKind);
    registry.register(kinds::DistillKind);
    registry.register(kinds::EmbedKind);
    registry.register(encode::EncodeKind);
}
