//! Data sets and the audio and text front ends.
//!
//! Kinds: `synth-dataset` ([`synth`]), `dataset` ([`dataset`]), `features` ([`features`]),
//! `fetch` ([`fetch`]), `packaged-sounds` ([`sounds`]).

pub mod audio;
pub mod dataset;
pub mod features;
pub mod fetch;
pub mod mel;
pub mod sounds;
pub mod synth;
#[cfg(test)]
pub(crate) mod testing;
pub mod text;

use pipeline_api::Registry;

/// Registers this crate's stage kinds.
pub fn register(registry: &mut Registry) {
    registry.register(synth::SynthDataset);
    registry.register(features::Features);
    registry.register(dataset::Dataset);
    registry.register(sounds::PackagedSounds);
    registry.register(fetch::Fetch);
}
