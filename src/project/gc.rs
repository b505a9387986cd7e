//! Garbage collection: removes what the current pipeline no longer references (objects,
//! leftover working and scratch directories, state, links and logs of removed nodes), never
//! anything whose key is locked by a running process.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{Project, ProjectError};
use crate::lock;

/// What `gc` did (or would do), in order.
#[derive(Debug, Default)]
pub struct Collection {
    pub items: Vec<Removal>,
    /// How many items were removed (or would be), and their bytes.
    pub removed: usize,
    pub freed: u64,
}

#[derive(Debug)]
pub enum Removal {
    /// `what` (`object`, `lock`, ...) at `path` was removed, or would be with `dry_run`.
    Removed { what: &'static str, path: PathBuf },
    /// Could not be removed.
    Failed {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Kept: its key is locked by a running process.
    InUse { path: PathBuf },
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

impl Collection {
    fn remove(&mut self, path: &Path, what: &'static str, dry_run: bool) {
        let size = size_of(path);
        if !dry_run {
            let r = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            if let Err(error) = r {
                self.items.push(Removal::Failed {
                    path: path.to_owned(),
                    error,
                });
                return;
            }
        }
        self.items.push(Removal::Removed {
            what,
            path: path.to_owned(),
        });
        self.removed += 1;
        self.freed += size;
    }
}

impl Project {
    /// Removes everything unreferenced; with `dry_run`, only says what it would remove.
    pub fn gc(&self, dry_run: bool) -> Result<Collection, ProjectError> {
        let (pipeline, store) = (&self.pipeline, &self.store);
        // Referenced: every node's current key, and the last build of every current node (kept
        // until it is rebuilt, so that a stale node keeps its previous artifact).
        let mut keys: HashSet<String> = self
            .status(&[])?
            .iter()
            .filter_map(|(_, s)| s.key().map(str::to_owned))
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
        let mut done = Collection::default();
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
                    Some(_held) => done.remove(&path, what, dry_run),
                    None => done.items.push(Removal::InUse { path }),
                }
            }
        }
        for (name, path) in entries(&store.root.join("locks")) {
            let key = name.trim_end_matches(".lock");
            if keys.contains(key) {
                continue;
            }
            if let Some(_held) = lock::try_acquire(&path)? {
                done.remove(&path, "lock", dry_run);
            }
        }
        // This file's states of removed nodes (and those kept before states had namespaces).
        for dir in [own_states.clone(), store.root.join("state")] {
            for (name, path) in entries(&dir) {
                let node = name.trim_end_matches(".json");
                if path.is_file() && !names.contains(node) {
                    done.remove(&path, "state", dry_run);
                }
            }
        }
        for (name, path) in entries(&store.root.join("failed")) {
            let node = name.trim_end_matches(".log");
            if !names.contains(node) {
                done.remove(&path, "log", dry_run);
            }
        }
        for (name, path) in entries(&store.root.join("latest")) {
            if !names.contains(name.as_str()) || !path.exists() {
                done.remove(&path, "link", dry_run);
            }
        }
        Ok(done)
    }
}
