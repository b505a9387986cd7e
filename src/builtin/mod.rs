//! Kinds compiled into every `pipeline` binary, so that shell steps (and the executor's tests)
//! need no domain crate.

pub mod command;

/// Registers the built-in kinds.
pub fn register(registry: &mut pipeline_api::Registry) {
    registry.register(command::Command);
}
