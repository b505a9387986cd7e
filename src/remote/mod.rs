//! The remote artifact cache (`[settings.cache]`): a node computed anywhere is fetched instead of
//! recomputed. Its bucket holds, under the prefix:
//! - `blobs/<content hash>`: file contents, content-addressed (identical files stored once);
//! - `nodes/<key>.json`: a node's entry (its manifest and the hash of its log), written after
//!   every blob it names, so that a half-finished upload is never taken for a result.
//!
//! Everything read from the bucket is untrusted: an entry must be for the key asked, name only
//! plain relative paths, and every file must have the size and content hash the entry gives;
//! otherwise nothing is published and the node runs here.

mod s3;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

use pipeline_api::InputArtifact;
use serde::{Deserialize, Serialize};

pub use s3::{S3, S3Error};

use crate::config::{CacheMode, CacheSettings};
use crate::events::{Finish, RunEvents};
use crate::fingerprint;
use crate::graph::Pipeline;
use crate::lock;
use crate::scheduler::{Backend, Executed, Failure, Job};
use crate::store::{Manifest, Store};

/// Version of the entry format.
const ENTRY_FORMAT: u32 = 1;
/// The largest entry read (a manifest lists files; a megabyte lists thousands).
const MAX_ENTRY_BYTES: u64 = 16 << 20;
/// The largest node fetched, all files together.
const MAX_NODE_BYTES: u64 = 256 << 30;
/// The largest run log fetched.
const MAX_LOG_BYTES: u64 = 64 << 20;

/// What `nodes/<key>.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    format: u32,
    manifest: Manifest,
    /// Content hash of the run's log (a blob), when it was uploaded.
    log: Option<String>,
}

/// Why an entry was not used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    S3(#[from] S3Error),
    /// The entry or a blob is not what it must be; nothing was published.
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    Io(String),
}

/// A bucket used as a cache of published nodes.
#[derive(Debug)]
pub struct RemoteCache {
    s3: S3,
    mode: CacheMode,
    /// Set after the first unreachable server: the rest of the run does without it.
    down: AtomicBool,
}

/// What [`RemoteCache::upload`] sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Upload {
    pub sent: usize,
    pub present: usize,
    pub bytes: u64,
}

impl RemoteCache {
    pub fn new(settings: &CacheSettings) -> anyhow::Result<Self> {
        Ok(Self {
            s3: S3::new(settings)?,
            mode: settings.mode,
            down: AtomicBool::new(false),
        })
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        &self.s3.url
    }

    pub fn writable(&self) -> bool {
        self.mode == CacheMode::ReadWrite
    }

    /// After an unreachable server, the rest of the run does without it (one slow failure, not
    /// one per node).
    fn noticed(&self, e: &RemoteError) {
        if matches!(e, RemoteError::S3(S3Error::Unavailable(_))) {
            self.down.store(true, Ordering::Relaxed);
        }
    }

    fn entry_name(key: &str) -> String {
        format!("nodes/{key}.json")
    }

    /// Whether the bucket has an entry for `key`.
    pub fn contains(&self, key: &str) -> Result<bool, RemoteError> {
        Ok(self.s3.head(&Self::entry_name(key))?.is_some())
    }

    /// Fetches `key` into `store` and publishes it, exactly as if it had run here; `None` when
    /// the bucket has no entry for it. The caller holds the key's lock.
    pub fn fetch(&self, store: &Store, key: &str) -> Result<Option<Manifest>, RemoteError> {
        let Some(bytes) = self.s3.get(&Self::entry_name(key), MAX_ENTRY_BYTES)? else {
            return Ok(None);
        };
        let entry = check_entry(&bytes, key)?;
        // A fresh directory: leftovers of a killed run of this key (whatever a dead process
        // with our pid left, links included) never mix into what is published.
        store.remove_tmp_of(key);
        let tmp = store.tmp_dir(key);
        let result = self.download(&entry, &tmp);
        let published = result.and_then(|()| {
            store
                .publish(&tmp, entry.manifest.clone())
                .map_err(|e| RemoteError::Io(e.to_string()))
        });
        match published {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// Downloads every file of `entry` into `tmp/out/`, checking sizes and hashes as it goes.
    fn download(&self, entry: &Entry, tmp: &Path) -> Result<(), RemoteError> {
        let io = |e: std::io::Error| RemoteError::Io(format!("`{}`: {e}", tmp.display()));
        if let Some(parent) = tmp.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        // `create_dir`, not `create_dir_all`: the directory must be new.
        std::fs::create_dir(tmp).map_err(io)?;
        let out = tmp.join("out");
        std::fs::create_dir(&out).map_err(io)?;
        for f in &entry.manifest.files {
            let path = out.join(&f.path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            self.fetch_blob(&f.hash, f.size, Some(f.size), &path, &f.path)?;
        }
        let log = tmp.join("log.txt");
        match &entry.log {
            Some(hash) => self.fetch_blob(hash, MAX_LOG_BYTES, None, &log, "log.txt")?,
            None => std::fs::write(&log, format!("fetched from {}\n", self.url())).map_err(io)?,
        }
        Ok(())
    }

    /// Blob `hash` into a new file `path`: at most `limit` bytes, exactly `size` when given.
    fn fetch_blob(
        &self,
        hash: &str,
        limit: u64,
        size: Option<u64>,
        path: &Path,
        name: &str,
    ) -> Result<(), RemoteError> {
        let mut file = std::fs::File::create_new(path)
            .map_err(|e| RemoteError::Io(format!("`{}`: {e}", path.display())))?;
        let mut hasher = blake3::Hasher::new();
        let got = self
            .s3
            .get_into(&format!("blobs/{hash}"), limit, &mut |chunk| {
                hasher.update(chunk);
                file.write_all(chunk)
            })?;
        let Some(got) = got else {
            return Err(RemoteError::Rejected(format!(
                "file `{name}`: its blob `{hash}` is missing"
            )));
        };
        if let Some(size) = size
            && got != size
        {
            return Err(RemoteError::Rejected(format!(
                "file `{name}`: {got} bytes, the entry says {size}"
            )));
        }
        let actual = hasher.finalize().to_hex().to_string();
        if actual != hash {
            return Err(RemoteError::Rejected(format!(
                "file `{name}`: its content hashes to {actual}, not {hash}"
            )));
        }
        Ok(())
    }

    /// Uploads a published node: blobs first (those already present are not sent again), the
    /// entry last.
    pub fn upload(&self, store: &Store, manifest: &Manifest) -> Result<Upload, RemoteError> {
        let mut done = Upload::default();
        let out = store.out_dir(&manifest.key);
        let mut send = |hash: &str, path: &Path, size: u64| -> Result<(), RemoteError> {
            let name = format!("blobs/{hash}");
            if self.s3.head(&name)?.is_some() {
                done.present += 1;
            } else {
                // A blob is named by its content: a local file edited since it was published
                // must not be sent under its old name (every later fetch would reject it).
                let actual = fingerprint::hash_file(path)
                    .map_err(|e| RemoteError::Io(format!("`{}`: {e}", path.display())))?;
                if actual != hash {
                    return Err(RemoteError::Rejected(format!(
                        "`{}` changed since it was published\nhint: `pipeline verify` withdraws \
                         it, and the next run rebuilds it",
                        path.display()
                    )));
                }
                self.s3.put_file(&name, path)?;
                done.sent += 1;
                done.bytes += size;
            }
            Ok(())
        };
        for f in &manifest.files {
            send(&f.hash, &out.join(&f.path), f.size)?;
        }
        let log_path = store.log_path(&manifest.key);
        let log = match fingerprint::hash_file(&log_path) {
            Ok(hash) => {
                let size = std::fs::metadata(&log_path).map_or(0, |m| m.len());
                send(&hash, &log_path, size)?;
                Some(hash)
            }
            Err(_) => None,
        };
        let entry = Entry {
            format: ENTRY_FORMAT,
            manifest: manifest.clone(),
            log,
        };
        let json = serde_json::to_vec_pretty(&entry).expect("an entry serialises");
        self.s3.put(&Self::entry_name(&manifest.key), &json)?;
        Ok(done)
    }
}

/// Parses an entry and checks it against the key asked for.
fn check_entry(bytes: &[u8], key: &str) -> Result<Entry, RemoteError> {
    let reject = |why: String| RemoteError::Rejected(format!("the entry of {key}: {why}"));
    let entry: Entry =
        serde_json::from_slice(bytes).map_err(|e| reject(format!("not an entry ({e})")))?;
    if entry.format != ENTRY_FORMAT {
        return Err(reject(format!(
            "format {} (expected {ENTRY_FORMAT})",
            entry.format
        )));
    }
    let m = &entry.manifest;
    if m.key != key {
        return Err(reject(format!("it is the entry of another key, {}", m.key)));
    }
    if m.format != crate::store::MANIFEST_FORMAT {
        return Err(reject(format!("manifest format {}", m.format)));
    }
    let mut total = 0u64;
    let mut paths = std::collections::BTreeSet::new();
    for f in &m.files {
        if !paths.insert(f.path.as_str()) {
            return Err(reject(format!("file path `{}` is listed twice", f.path)));
        }
        if !is_plain_relative(&f.path) {
            return Err(reject(format!(
                "file path `{}` is not a plain relative path",
                f.path
            )));
        }
        if !is_hash(&f.hash) {
            return Err(reject(format!("file `{}` has no content hash", f.path)));
        }
        total = total.saturating_add(f.size);
    }
    if total > MAX_NODE_BYTES {
        return Err(reject(format!("{total} bytes in all, more than the limit")));
    }
    if let Some(log) = &entry.log
        && !is_hash(log)
    {
        return Err(reject("its log has no content hash".into()));
    }
    if fingerprint::listing_hash(&m.files) != m.output_hash {
        return Err(reject("its files do not hash to its output hash".into()));
    }
    Ok(entry)
}

/// A path of normal components only (no `..`, no root, no `.`, no empty part).
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A backend that looks each stale node up in the remote cache before running it on `inner`,
/// and uploads what ran (read-write mode).
pub struct Cached<'a> {
    pub inner: &'a dyn Backend,
    pub cache: &'a RemoteCache,
    /// Fail a node instead of running it when the cache cannot be asked.
    pub required: bool,
}

impl std::fmt::Debug for Cached<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("cache", &self.cache.url())
            .finish_non_exhaustive()
    }
}

impl Backend for Cached<'_> {
    fn local(&self) -> bool {
        self.inner.local()
    }

    fn interrupt(&self) {
        self.inner.interrupt();
    }

    fn execute(
        &self,
        pipeline: &Pipeline,
        store: &Store,
        events: &dyn RunEvents,
        job: &Job,
        artifacts: BTreeMap<String, Vec<InputArtifact>>,
    ) -> Result<Executed, Failure> {
        let node = &pipeline.nodes[job.node].name;
        let mut warnings = Vec::new();
        let down = || self.cache.down.load(Ordering::Relaxed);
        if self.required && down() {
            return Err((
                anyhow::anyhow!("the remote cache could not be used: it was unreachable")
                    .context("`--require-cache`"),
                Err("the node did not run".into()),
            ));
        }
        if !job.forced && !down() {
            match self.lookup(store, events, node, &job.key) {
                Ok(Some(manifest)) => {
                    // For the console: a node that finishes has started (a rejected fetch has
                    // not, and the node may still run here).
                    events.started(node);
                    return Ok(Executed {
                        manifest,
                        how: Finish::Fetched,
                        warnings,
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    self.cache.noticed(&e);
                    if self.required {
                        return Err((
                            anyhow::anyhow!("the remote cache could not be used: {e}")
                                .context("`--require-cache`"),
                            Err("the node did not run".into()),
                        ));
                    }
                    warnings.push(format!("remote cache not used ({e}); ran here"));
                }
            }
        }
        let mut done = self
            .inner
            .execute(pipeline, store, events, job, artifacts)?;
        done.warnings.extend(warnings);
        if done.how == Finish::Ran
            && self.cache.writable()
            && !down()
            && let Err(e) = self.cache.upload(store, &done.manifest)
        {
            self.cache.noticed(&e);
            done.warnings
                .push(format!("not uploaded to {} ({e})", self.cache.url()));
        }
        Ok(done)
    }
}

impl Cached<'_> {
    /// Fetches `key` under its lock, unless another process published it meanwhile.
    fn lookup(
        &self,
        store: &Store,
        events: &dyn RunEvents,
        node: &str,
        key: &str,
    ) -> Result<Option<Manifest>, RemoteError> {
        if !self.cache.contains(key)? {
            return Ok(None);
        }
        let _lock = lock::acquire(&store.lock_path(key), |holder| {
            events.waiting(node, holder.as_ref());
        })
        .map_err(|e| RemoteError::Io(e.to_string()))?;
        if store
            .manifest(key)
            .is_some_and(|m| store.verify(&m).is_ok())
        {
            return Ok(None);
        }
        self.cache.fetch(store, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_pass() {
        for ok in ["a.txt", "dir/b.bin", "x y/z"] {
            assert!(is_plain_relative(ok), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a/./b",
            "a/",
            "a\\b",
        ] {
            assert!(!is_plain_relative(bad), "{bad}");
        }
    }
}
