//! The artifacts directory: content-keyed objects with their manifests, atomic publication,
//! per-node state (the fingerprint last used, to explain staleness), `latest/` links and logs
//! of failed runs.
//!
//! Layout (under `artifacts/`):
//! - `objects/<key>/{out/…, log.txt, manifest.json}`: a published result; the manifest is
//!   written last, so an object without a valid manifest is not a result;
//! - `tmp/<key>-<pid>/{out/, log.txt}`: a run in progress (leftovers are removed by the next
//!   holder of the key's lock);
//! - `scratch/<key>/`: survives interruptions of the same key, removed after publication;
//! - `locks/<key>.lock`, `state/<node>.json`, `latest/<node>` → `objects/<key>/out`,
//!   `failed/<node>.log`, `cache/stat-cache.tsv`.

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
}

impl Store {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
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

    /// The manifest of `key`; `None` when missing or unreadable (never built).
    pub fn manifest(&self, key: &str) -> Option<Manifest> {
        let bytes = std::fs::read(self.manifest_path(key)).ok()?;
        let m: Manifest = serde_json::from_slice(&bytes).ok()?;
        (m.format == MANIFEST_FORMAT && m.key == key).then_some(m)
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

    /// Moves a finished run (`tmp` holds `out/` and `log.txt`) into `objects/<key>` and writes
    /// the manifest last. Files are synced before the rename, the manifest after.
    pub fn publish(&self, tmp: &Path, mut manifest: Manifest) -> Result<Manifest, StoreError> {
        let err = |source| StoreError::Publish {
            node: manifest.node.clone(),
            source,
        };
        let out = tmp.join("out");
        let files = listing_synced(&out).map_err(err)?;
        manifest.output_hash = fingerprint::listing_hash(&files);
        let dest = self.object_dir(&manifest.key);
        fs::create_dir_all(self.root.join("objects")).map_err(err)?;
        if dest.exists() {
            // A forced rerun, or the leftover of a run killed after its rename.
            let old =
                self.root
                    .join("tmp")
                    .join(format!("{}-{}-old", manifest.key, std::process::id()));
            fs::rename(&dest, &old).map_err(err)?;
            let _ = fs::remove_dir_all(&old);
        }
        fs::rename(tmp, &dest).map_err(err)?;
        sync_dir(&self.root.join("objects")).map_err(err)?;
        // The rename keeps inodes and mtimes: re-read them for fast verification.
        let out = dest.join("out");
        manifest.files = files
            .into_iter()
            .map(|mut f| {
                if let Ok(meta) = std::fs::metadata(out.join(&f.path)) {
                    f.mtime_ns = fingerprint::mtime_ns(&meta);
                    f.ino = meta.ino();
                }
                f
            })
            .collect();
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        write_atomic(&self.manifest_path(&manifest.key), &json).map_err(err)?;
        Ok(manifest)
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
        let bytes = std::fs::read(self.state_path(node)).ok()?;
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
        file.sync_all()?;
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
