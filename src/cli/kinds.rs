//! `pipeline kinds`: the stage kinds this binary knows.

use std::process::ExitCode;

use crate::cli::{Env, emit, table};

pub fn main(env: &Env) -> anyhow::Result<ExitCode> {
    let rows: Vec<Vec<String>> = env
        .registry
        .iter()
        .map(|k| {
            vec![
                k.name().to_owned(),
                k.version().to_string(),
                k.summary().to_owned(),
            ]
        })
        .collect();
    emit(&table(
        &["kind".into(), "version".into(), "summary".into()],
        &rows,
    ));
    Ok(ExitCode::SUCCESS)
}
