//! The `command` kind: runs a shell command with the node's directories in the environment.
//! It lets users wire shell steps into a pipeline, and it is what the executor's tests use.
//!
//! Params: `run` (the `sh -c` command), `threads` (default 1), `gpu` (default false: the
//! command holds one GPU, given to it as `CUDA_VISIBLE_DEVICES`), and any other scalar
//! parameter, exported as `PARAM_<KEY>` (so that `matrix = { seed = [1, 2] }` reaches the
//! command as `$PARAM_SEED`). Environment: `OUT` (the output directory, also the working
//! directory), `SCRATCH`, `THREADS`, and `IN_<NAME>` per input (`:`-joined paths).
//!
//! Every line the command prints goes to the node's log. Two kinds of stdout line are also
//! understood, as CI systems do: `::warning::TEXT` (a warning in the run's summary) and
//! `::measure NAME=VALUE` (a number kept in the manifest, e.g. a timing that must not enter the
//! hashed outputs).

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use anyhow::Context;
use pipeline_api::{InputCounts, ParamError, Plan, Resources, RunContext, StageKind, parse_params};
use serde::{Deserialize, Serialize};

/// Runs `sh -c <run>` in the output directory.
#[derive(Debug, Clone, Copy)]
pub struct Command;

#[derive(Debug, Serialize, Deserialize)]
struct Params {
    /// Shell command (`sh -c`).
    run: String,
    /// CPU threads the command keeps busy (exported as `THREADS`).
    #[serde(default = "one")]
    threads: usize,
    /// Whether the command holds a GPU. Left out of the canonical form when false, so that
    /// the keys of CPU commands are those of before the parameter existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    gpu: bool,
    /// Other scalar parameters, exported as `PARAM_<KEY>`.
    #[serde(flatten)]
    vars: std::collections::BTreeMap<String, toml::Value>,
}

fn one() -> usize {
    1
}

/// The device this process knows as ordinal `slot`, as the child must name it: the `slot`-th
/// entry of our own `CUDA_VISIBLE_DEVICES` when set (a Slurm job's GPUs), else `slot`.
fn visible_device(slot: usize) -> String {
    std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .and_then(|v| v.split(',').nth(slot).map(|d| d.trim().to_owned()))
        .unwrap_or_else(|| slot.to_string())
}

/// `<PREFIX><NAME>`: the name upper-cased, other characters as `_` (`IN_MODEL`).
pub fn env_name(prefix: &str, name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}{name}")
}

impl StageKind for Command {
    fn name(&self) -> &'static str {
        "command"
    }

    fn summary(&self) -> &'static str {
        "Runs a shell command in the output directory (env OUT, SCRATCH, THREADS, IN_<INPUT>, PARAM_<KEY>)"
    }

    fn version(&self) -> u32 {
        1
    }

    fn plan(&self, params: &toml::Table, _inputs: &InputCounts) -> Result<Plan, ParamError> {
        let p: Params = parse_params(params)?;
        for (key, value) in &p.vars {
            if value.is_table() || value.is_array() {
                return Err(ParamError::at(
                    key,
                    "expected a string, number or boolean (exported as an environment variable)",
                ));
            }
        }
        if p.threads == 0 {
            return Err(ParamError::at("threads", "must be at least 1"));
        }
        Plan::new(
            &p,
            Resources {
                threads: p.threads,
                gpu: p.gpu,
            },
        )
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let p: Params = ctx.params()?;
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(&p.run)
            .current_dir(ctx.out_dir)
            .env("OUT", ctx.out_dir)
            .env("SCRATCH", ctx.scratch_dir)
            .env("THREADS", ctx.threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(slot) = ctx.gpu {
            cmd.env("CUDA_VISIBLE_DEVICES", visible_device(slot));
        }
        for (name, artifacts) in ctx.inputs {
            let paths: Vec<String> = artifacts
                .iter()
                .map(|a| a.path.display().to_string())
                .collect();
            cmd.env(env_name("IN_", name), paths.join(":"));
        }
        for (key, value) in &p.vars {
            let value = match value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            cmd.env(env_name("PARAM_", key), value);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start `sh -c {:?}`", p.run))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let reporter = ctx.reporter;
        std::thread::scope(|s| {
            s.spawn(|| {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    reporter.log(&line);
                }
            });
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                report_line(reporter, &line);
            }
        });
        let status = child.wait().context("waiting for the command")?;
        if !status.success() {
            anyhow::bail!("command `{}` failed ({status})", p.run);
        }
        Ok(())
    }
}

/// Logs a line of the command's stdout, or reports it as a warning or a measurement.
fn report_line(reporter: &dyn pipeline_api::Reporter, line: &str) {
    if let Some(text) = line.strip_prefix("::warning::") {
        return reporter.warn(text.trim());
    }
    if let Some(rest) = line.strip_prefix("::measure ")
        && let Some((name, value)) = rest.split_once('=')
        && let Ok(value) = value.trim().parse::<f64>()
    {
        return reporter.measure(name.trim(), value);
    }
    reporter.log(line);
}
