//! The artifacts directory: content-keyed objects with their manifests, atomic publication,
//! per-node state (the fingerprint last used, to explain staleness), `latest/` links and logs
//! of failed runs.
//!
//! Layout (under `artifacts/`):
//! - `objects/<key>/{out/…, log.txt, manifest.json}`: a published result; the manifest is
//!   written last, then the directory appears (or replaces an older one) in one step, so an
//!   object without a valid manifest is not a result; `corrupt.json` replaces the manifest of
//!   an object that `pipeline verify` found damaged;
//! - `tmp/<key>-<pid>/{out/, log.txt}`: a run in progress (leftovers are removed by the next
//!   holder of the key's lock);
//! - `scratch/<key>/`: survives interruptions of the same key, removed after publication;
//! - `locks/<key>.lock` with `leases/<key>.lease` (the lock across hosts: `crate::lock`),
//!   `state/<pipeline file name>/<node>.json`, `latest/<node>` → `objects/<key>/out`,
//!   `failed/<node>.log`, `cache/stat-cache.tsv`;
//! - `jobs/<key>.{json,sh}`, `jobs/<key>-<job id>.out`: a cluster job in flight
//!   (`crate::slurm`), removed when it ends.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fs_err as fs;
use serde::{Deserialize, Serialize};

use crate::fingerprint::{self, FileEntry, Fingerprint};

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// One input as recorded in a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestInput {
    pub name: String,
    /// Producing node of each artifact (`None` for an external path).
    pub nodes: Vec<Option<String>>,
    pub hashes: Vec<String>,
}

/// What a published object contains and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub key: String,
    pub node: String,
    pub kind: String,
    pub kind_version: u32,
    pub executor_version: String,
    pub params: serde_json::Value,
    pub inputs: Vec<ManifestInput>,
    pub files: Vec<FileEntry>,
    /// Content hash of the output directory (paths and file hashes only).
    pub output_hash: String,
    pub started_unix_s: f64,
    pub duration_s: f64,
    /// What the run measured of itself ([`pipeline_api::Reporter::measure`]: seconds,
    /// throughput). Kept here because it is not a function of the key: the hashed files never
    /// carry it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub measurements: BTreeMap<String, f64>,
    /// What the run worked around ([`pipeline_api::Reporter::warn`]): how a driver learns the
    /// warnings of a run made by another process (a cluster job).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Why an object has no usable manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestProblem {
    /// No manifest: never published, or interrupted before publication.
    Missing,
    /// A manifest that cannot be parsed (truncated, edited) or belongs to another key.
    Unreadable(String),
    /// `pipeline verify` found a published file that no longer matches the manifest.
    Corrupted(Corruption),
}

/// Why a published object no longer matches its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub file: String,
    pub why: String,
}

/// What a node was last built or found cached with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    pub key: String,
    pub fingerprint: Fingerprint,
    /// Producing node of each input artifact, for messages.
    #[serde(default)]
    pub input_nodes: BTreeMap<String, Vec<Option<String>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("cannot publish the output of `{node}`")]
    Publish {
        node: String,
        #[source]
        source: std::io::Error,
    },
}

/// The artifacts directory.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
    /// Namespace of `state/` (the pipeline file's name): several pipeline files may share one
    /// store, and each explains staleness against its own last build.
    pub state_namespace: String,
}

impl Store {
    /// The store at `root`, for the pipeline file named `state_namespace`.
    pub fn new(root: PathBuf, state_namespace: impl Into<String>) -> Self {
        Self {
            root,
            state_namespace: state_namespace.into(),
        }
    }

    pub fn object_dir(&self, key: &str) -> PathBuf {
        self.root.join("objects").join(key)
    }
    pub fn out_dir(&self, key: &str) -> PathBuf {
        self.object_dir(key).join("out")
    }
    pub fn log_path(&self, key: &str) -> PathBuf {
        self.object_dir(key).join("log.txt")
    }
    pub fn manifest_path(&self, key: &str) -> PathBuf {
        self.object_dir(key).join("manifest.json")
    }
    /// Left by `pipeline verify` in place of the manifest of a corrupted object.
    fn corrupt_path(&self, key: &str) -> PathBuf {
        self.object_dir(key).join("corrupt.json")
    }
    /// This process's working directory for `key`.
    pub fn tmp_dir(&self, key: &str) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{key}-{}", std::process::id()))
    }
    pub fn scratch_dir(&self, key: &str) -> PathBuf {
        self.root.join("scratch").join(key)
    }
    pub fn lock_path(&self, key: &str) -> PathBuf {
        self.root.join("locks").join(format!("{key}.lock"))
    }
    pub fn state_path(&self, node: &str) -> PathBuf {
        self.root
            .join("state")
            .join(&self.state_namespace)
            .join(format!("{node}.json"))
    }
    /// Where states were kept before they had namespaces (read as a fallback).
    fn legacy_state_path(&self, node: &str) -> PathBuf {
        self.root.join("state").join(format!("{node}.json"))
    }
    pub fn latest_path(&self, node: &str) -> PathBuf {
        self.root.join("latest").join(node)
    }
    pub fn failed_log(&self, node: &str) -> PathBuf {
        self.root.join("failed").join(format!("{node}.log"))
    }
    pub fn stat_cache_path(&self) -> PathBuf {
        self.root.join("cache").join("stat-cache.tsv")
    }

    /// Where a domain command keeps what it derives from published outputs (`cache/<name>/`).
    pub fn command_cache_dir(&self, namespace: &str) -> PathBuf {
        self.root.join("cache").join(namespace)
    }

    /// The manifest of `key`; `None` when missing or unreadable (never built).
    pub fn manifest(&self, key: &str) -> Option<Manifest> {
        self.read_manifest(key).ok()
    }

    /// The manifest of `key`, or why there is none usable.
    pub fn read_manifest(&self, key: &str) -> Result<Manifest, ManifestProblem> {
        let bytes = match std::fs::read(self.manifest_path(key)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(match std::fs::read(self.corrupt_path(key)) {
                    Ok(bytes) => {
                        let (file, why): (String, String) =
                            serde_json::from_slice(&bytes).unwrap_or_default();
                        ManifestProblem::Corrupted(Corruption { file, why })
                    }
                    Err(_) => ManifestProblem::Missing,
                });
            }
            Err(e) => return Err(ManifestProblem::Unreadable(format!("cannot be read ({e})"))),
        };
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| ManifestProblem::Unreadable(format!("cannot be parsed ({e})")))?;
        if m.format != MANIFEST_FORMAT {
            return Err(ManifestProblem::Unreadable(format!(
                "has format {} (this executor reads {MANIFEST_FORMAT})",
                m.format
            )));
        }
        if m.key != key {
            return Err(ManifestProblem::Unreadable(format!(
                "belongs to key {}",
                m.key
            )));
        }
        Ok(m)
    }

    /// Re-hashes every published file of `m` (ignoring the size/mtime/inode shortcut of
    /// [`Store::verify`]): finds same-size edits whose mtime was restored.
    pub fn verify_fully(&self, m: &Manifest) -> Result<(), Corruption> {
        let out = self.out_dir(&m.key);
        for f in &m.files {
            let corrupt = |why: String| Corruption {
                file: f.path.clone(),
                why,
            };
            match fingerprint::hash_file(&out.join(&f.path)) {
                Ok(h) if h == f.hash => {}
                Ok(_) => return Err(corrupt("was modified".into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(corrupt("was deleted".into()));
                }
                Err(e) => return Err(corrupt(format!("cannot be read ({e})"))),
            }
        }
        Ok(())
    }

    /// Checks the published files against the manifest: size, mtime and inode first, the
    /// content hash when those differ.
    pub fn verify(&self, m: &Manifest) -> Result<(), Corruption> {
        let out = self.out_dir(&m.key);
        for f in &m.files {
            let path = out.join(&f.path);
            let corrupt = |why: String| Corruption {
                file: f.path.clone(),
                why,
            };
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                Err(_) => return Err(corrupt("was deleted".into())),
            };
            if meta.len() != f.size {
                return Err(corrupt(format!(
                    "changed size from {} to {} bytes",
                    f.size,
                    meta.len()
                )));
            }
            if fingerprint::mtime_ns(&meta) != f.mtime_ns || meta.ino() != f.ino {
                match fingerprint::hash_file(&path) {
                    Ok(h) if h == f.hash => {}
                    Ok(_) => return Err(corrupt("was modified".into())),
                    Err(e) => return Err(corrupt(format!("cannot be read ({e})"))),
                }
            }
        }
        Ok(())
    }

    /// Withdraws a published object whose file `c` is corrupt: its manifest goes (so that the
    /// next run rebuilds it), a note of why stays (so that `status` can say so).
    pub fn mark_corrupt(&self, key: &str, c: &Corruption) -> std::io::Result<()> {
        let json = serde_json::to_vec(&(&c.file, &c.why)).expect("strings serialise");
        write_atomic(&self.corrupt_path(key), &json)?;
        fs::remove_file(self.manifest_path(key))
    }

    /// Publishes a finished run (`tmp` holds `out/` and `log.txt`) as `objects/<key>`. The
    /// files are synced and the manifest written inside `tmp` last, then the directory takes
    /// its place in one step: a new key by `rename`, a replaced object (a forced rerun, the
    /// leftover of a killed run) by an atomic exchange, so that at every instant either the old
    /// or the new complete object is there.
    pub fn publish(&self, tmp: &Path, mut manifest: Manifest) -> Result<Manifest, StoreError> {
        let err = |source| StoreError::Publish {
            node: manifest.node.clone(),
            source,
        };
        // Inodes and mtimes survive the rename of the parent: read once, here.
        manifest.files = listing_synced(&tmp.join("out")).map_err(err)?;
        manifest.output_hash = fingerprint::listing_hash(&manifest.files);
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        write_atomic(&tmp.join("manifest.json"), &json).map_err(err)?;
        sync_dir(tmp).map_err(err)?;
        let objects = self.root.join("objects");
        fs::create_dir_all(&objects).map_err(err)?;
        let dest = self.object_dir(&manifest.key);
        match std::fs::rename(tmp, &dest) {
            Ok(()) => {}
            // `dest` exists and is not empty: swap the two directories, then drop the old one,
            // which now sits at `tmp` (a kill in between leaves it for `clean_tmp`).
            Err(e) if is_existing_dir(&e) => {
                exchange(tmp, &dest).map_err(err)?;
                let _ = std::fs::remove_dir_all(tmp);
            }
            Err(e) => return Err(err(e)),
        }
        sync_dir(&objects).map_err(err)?;
        Ok(manifest)
    }

    /// Removes every working directory of `key`: the caller holds its lock, so they are
    /// leftovers of killed runs.
    pub fn remove_tmp_of(&self, key: &str) {
        let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{key}-"))
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Removes working directories left by killed runs (their key's lock is free).
    pub fn clean_tmp(&self) {
        let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name.split('-').next().unwrap_or_default();
            if let Ok(Some(_held)) = crate::lock::try_acquire(&self.lock_path(key)) {
                tracing::debug!("removing leftover `{}`", entry.path().display());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    pub fn state(&self, node: &str) -> Option<NodeState> {
        let bytes = std::fs::read(self.state_path(node))
            .or_else(|_| std::fs::read(self.legacy_state_path(node)))
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records `state` for `node` if it differs from what is there.
    pub fn set_state(&self, node: &str, state: &NodeState) -> std::io::Result<()> {
        if self.state(node).as_ref() == Some(state) {
            return Ok(());
        }
        let json = serde_json::to_vec_pretty(state).expect("a state serialises");
        write_atomic(&self.state_path(node), &json)
    }

    /// Points `latest/<node>` at `objects/<key>/out` (symlink to a temp name + rename).
    pub fn set_latest(&self, node: &str, key: &str) -> std::io::Result<()> {
        let link = self.latest_path(node);
        let target = PathBuf::from("../objects").join(key).join("out");
        if std::fs::read_link(&link).ok().as_deref() == Some(target.as_path()) {
            return Ok(());
        }
        fs::create_dir_all(self.root.join("latest"))?;
        let tmp = self
            .root
            .join("latest")
            .join(format!(".{node}.tmp{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)?;
        fs::rename(&tmp, &link)?;
        Ok(())
    }
}

/// Files of `dir` with their hashes, each synced to disk.
fn listing_synced(dir: &Path) -> std::io::Result<Vec<FileEntry>> {
    let mut files = Vec::new();
    for (rel, path, meta) in fingerprint::walk(dir)? {
        let file = std::fs::File::open(&path)?;
        // A file reached through a link into a read-only data set cannot (and need not) be
        // synced: only what the node wrote must be durable before publication.
        if let Err(e) = file.sync_all()
            && !matches!(
                rustix::io::Errno::from_io_error(&e),
                Some(rustix::io::Errno::ROFS | rustix::io::Errno::INVAL)
            )
        {
            return Err(e);
        }
        let hash = fingerprint::hash_file(&path)?;
        files.push(FileEntry {
            path: rel,
            size: meta.len(),
            hash,
            mtime_ns: fingerprint::mtime_ns(&meta),
            ino: meta.ino(),
        });
    }
    Ok(files)
}

/// Whether `rename` failed because the destination is an existing, non-empty directory.
fn is_existing_dir(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(Errno::NOTEMPTY | Errno::EXIST)
    )
}

/// Swaps two paths atomically (`renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(|e| {
        std::io::Error::new(
            std::io::Error::from(e).kind(),
            format!(
                "cannot exchange `{}` and `{}` atomically ({e}); the file system must support \
                 renameat2(RENAME_EXCHANGE) (ext4, xfs, btrfs, tmpfs do)",
                a.display(),
                b.display()
            ),
        )
    })
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` through a temp file, rename and directory sync.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("a file in a directory");
    fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    fn manifest(key: &str) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            key: key.into(),
            node: "n".into(),
            kind: "command".into(),
            kind_version: 1,
            executor_version: "test".into(),
            params: serde_json::json!({}),
            inputs: Vec::new(),
            files: Vec::new(),
            output_hash: String::new(),
            started_unix_s: 0.0,
            duration_s: 0.0,
            measurements: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// A finished run in `tmp/` with `files` of `content`.
    fn finished_run(store: &Store, name: &str, content: &str) -> PathBuf {
        let tmp = store.root.join("tmp").join(name);
        fs::create_dir_all(tmp.join("out")).unwrap();
        for i in 0..5 {
            fs::write(tmp.join("out").join(format!("f{i}")), content).unwrap();
        }
        fs::write(tmp.join("log.txt"), "log").unwrap();
        tmp
    }

    #[test]
    fn replacing_an_object_never_leaves_it_absent_or_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_owned(), "pipeline.toml");
        let key = "k";
        let tmp = finished_run(&store, "first", "0");
        store.publish(&tmp, manifest(key)).unwrap();
        // A reader checks the object continuously while forced reruns replace it.
        let stop = AtomicBool::new(false);
        let (checks, gaps) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    // Every version has the same file names: a complete object has a
                    // manifest and all the files it lists (their content may be a newer
                    // version's by the time they are looked at).
                    let complete = store.read_manifest(key).is_ok_and(|m| {
                        m.files.len() == 5
                            && m.files
                                .iter()
                                .all(|f| store.out_dir(key).join(&f.path).exists())
                    });
                    checks.fetch_add(1, Ordering::Relaxed);
                    if !complete {
                        gaps.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            for round in 1..=30 {
                let tmp = finished_run(&store, &format!("run{round}"), &round.to_string());
                store.publish(&tmp, manifest(key)).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert!(checks.load(Ordering::Relaxed) > 0);
        assert_eq!(
            gaps.load(Ordering::Relaxed),
            0,
            "the object was missing or incomplete"
        );
        let m = store.read_manifest(key).unwrap();
        assert_eq!(
            fs::read_to_string(store.out_dir(key).join("f0")).unwrap(),
            "30"
        );
        assert!(store.verify_fully(&m).is_ok());
        // The replaced objects were removed.
        assert_eq!(fs::read_dir(store.root.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_truncated_manifest_is_unreadable_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_owned(), "pipeline.toml");
        assert_eq!(store.read_manifest("k"), Err(ManifestProblem::Missing));
        let tmp = finished_run(&store, "first", "0");
        store.publish(&tmp, manifest("k")).unwrap();
        let path = store.manifest_path("k");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, &text[..text.len() / 3]).unwrap();
        assert!(matches!(
            store.read_manifest("k"),
            Err(ManifestProblem::Unreadable(why)) if why.starts_with("cannot be parsed")
        ));
    }
}
