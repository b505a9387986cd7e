//! The `pipeline` binary: registers the stage kinds compiled in and runs the command line.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    #[allow(unused_mut)]
    let mut registry = pipeline::builtin_registry();
    #[cfg(feature = "stages")]
    {
        pipeline_data::register(&mut registry);
        pipeline_eval::register(&mut registry);
        pipeline_learn::register(&mut registry);
        pipeline_search::register(&mut registry);
    }
    pipeline::cli::main(registry)
}
