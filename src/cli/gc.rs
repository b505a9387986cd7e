//! `pipeline gc`: removes what the current pipeline no longer references (objects, leftover
//! working and scratch directories, state, links and logs of removed nodes), never anything
//! whose key is locked by a running process.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{Env, emit, rel};
use crate::fingerprint::StatCache;
use crate::lock;
use crate::staleness;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print what would be removed without removing anything.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

fn size_of(path: &Path) -> u64 {
    crate::fingerprint::walk(path)
        .map(|files| files.iter().map(|(_, _, m)| m.len()).sum())
        .unwrap_or(0)
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

pub fn main(env: &Env, args: Args) -> anyhow::Result<ExitCode> {
    let (pipeline, store) = env.load()?;
    let n = pipeline.nodes.len();
    let mut cache = StatCache::load(&store.stat_cache_path());
    let status = staleness::assess(
        &pipeline,
        &store,
        &mut cache,
        &vec![true; n],
        &vec![false; n],
    )?;
    let _ = cache.save();
    // Referenced: every node's current key, and the last build of every current node (kept
    // until it is rebuilt, so that a stale node keeps its previous artifact).
    let mut keys: HashSet<String> = status
        .iter()
        .flatten()
        .filter_map(|s| s.key().map(str::to_owned))
        .collect();
    let names: HashSet<&str> = pipeline.nodes.iter().map(|n| n.name.as_str()).collect();
    for node in &pipeline.nodes {
        if let Some(state) = store.state(&node.name) {
            keys.insert(state.key);
        }
    }
    // Other pipeline files sharing this store keep what they last built.
    let own_states = store.root.join("state").join(&store.state_namespace);
    for (_, dir) in entries(&store.root.join("state")) {
        if dir.is_dir() && dir != own_states {
            for (_, file) in entries(&dir) {
                let state = std::fs::read(&file)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<crate::store::NodeState>(&b).ok());
                keys.extend(state.map(|s| s.key));
            }
        }
    }
    let mut removed = 0usize;
    let mut freed = 0u64;
    let mut remove = |path: &Path, what: &str| {
        let size = size_of(path);
        if args.dry_run {
            emit(&format!("would remove {what} `{}`\n", rel(path)));
        } else {
            let r = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            if let Err(e) = r {
                crate::reporter::eprint_line(&format!(
                    "warning: cannot remove `{}`: {e}",
                    rel(path)
                ));
                return;
            }
            emit(&format!("removed {what} `{}`\n", rel(path)));
        }
        removed += 1;
        freed += size;
    };
    // Key-addressed directories: removed only under their key's lock.
    for (dir, what) in [
        ("objects", "object"),
        ("scratch", "scratch directory"),
        ("tmp", "working directory"),
    ] {
        for (name, path) in entries(&store.root.join(dir)) {
            let key = name.split('-').next().unwrap_or(&name).to_owned();
            if dir != "tmp" && keys.contains(&key) {
                continue;
            }
            match lock::try_acquire(&store.lock_path(&key))? {
                Some(_held) => remove(&path, what),
                None => crate::reporter::eprint_line(&format!(
                    "skipping `{}`: in use by a running process",
                    rel(&path)
                )),
            }
        }
    }
    for (name, path) in entries(&store.root.join("locks")) {
        let key = name.trim_end_matches(".lock");
        if keys.contains(key) {
            continue;
        }
        if let Some(_held) = lock::try_acquire(&path)? {
            remove(&path, "lock");
        }
    }
    // This file's states of removed nodes (and those kept before states had namespaces).
    for dir in [own_states.clone(), store.root.join("state")] {
        for (name, path) in entries(&dir) {
            let node = name.trim_end_matches(".json");
            if path.is_file() && !names.contains(node) {
                remove(&path, "state");
            }
        }
    }
    for (name, path) in entries(&store.root.join("failed")) {
        let node = name.trim_end_matches(".log");
        if !names.contains(node) {
            remove(&path, "log");
        }
    }
    for (name, path) in entries(&store.root.join("latest")) {
        if !names.contains(name.as_str()) || !path.exists() {
            remove(&path, "link");
        }
    }
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    crate::reporter::eprint_line(&format!(
        "{verb} {removed} item(s), {:.1} MiB",
        freed as f64 / (1024.0 * 1024.0)
    ));
    Ok(ExitCode::SUCCESS)
}
