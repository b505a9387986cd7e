//! What the benchmark binaries share.

use std::path::PathBuf;

/// The `pipeline` binary next to this one (or `$PIPELINE_BIN`); exits with a hint naming
/// `build` (the command that builds both) when it is missing.
pub fn pipeline_bin(build: &str) -> PathBuf {
    if let Some(p) = std::env::var_os("PIPELINE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the current executable");
    let bin = exe.with_file_name("pipeline");
    if !bin.exists() {
        eprintln!("error: `{}` not found", bin.display());
        eprintln!("hint: build it first: `{build}`");
        std::process::exit(2);
    }
    bin
}
