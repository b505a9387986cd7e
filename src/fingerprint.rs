//! Content hashing: the canonical fingerprint that keys a node (kind, version, canonical
//! params, content hashes of inputs — never names, absolute paths or mtimes), and the content
//! hash of files and directories, with a persistent size/mtime/inode cache so that re-checking
//! a 10,000-file data set costs one `stat` per file.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Version of the fingerprint format; bump to invalidate every key.
pub const FORMAT: u32 = 1;

/// Everything a node's output depends on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub format: u32,
    pub kind: String,
    pub kind_version: u32,
    /// Canonical params returned by the kind's `plan`.
    pub params: serde_json::Value,
    /// For each input name, the content hashes of the bound artifacts in order.
    pub inputs: BTreeMap<String, Vec<String>>,
}

impl Fingerprint {
    /// The node key: blake3 of the canonical JSON, as 32 hex digits.
    pub fn key(&self) -> String {
        let value = serde_json::to_value(self).expect("a fingerprint serialises");
        let hash = blake3::hash(canonical_json(&value).as_bytes());
        hash.to_hex()[..32].to_owned()
    }
}

/// JSON with object keys sorted and no whitespace, independent of serde_json's features.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).expect("a string serialises"));
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).expect("a scalar serialises")),
    }
}

/// One file of a directory listing with its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the root, `/`-separated.
    pub path: String,
    pub size: u64,
    pub hash: String,
    pub mtime_ns: i128,
    pub ino: u64,
}

/// The content hash of a listing: sorted relative paths and their content hashes. A single
/// file hashes as the listing of one file named `""`.
pub fn listing_hash(files: &[FileEntry]) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"pipeline-listing-v1\n");
    for f in files {
        hasher.update(f.path.as_bytes());
        hasher.update(b"\0");
        hasher.update(f.hash.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().to_hex().to_string()
}

/// blake3 of a file's bytes.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path)?;
    hasher.update_reader(file)?;
    Ok(hasher.finalize().to_hex().to_string())
}

pub fn mtime_ns(meta: &std::fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

type Walked = Vec<(String, PathBuf, std::fs::Metadata)>;

/// Files under `root` (recursively, following symlinks) with their metadata, sorted by
/// relative path. A file `root` gives one entry with the empty path. Subdirectories of the
/// root are walked on several threads: the cost is one `stat` per file.
pub fn walk(root: &Path) -> std::io::Result<Walked> {
    let meta = std::fs::metadata(root)?;
    if !meta.is_dir() {
        return Ok(vec![(String::new(), root.to_owned(), meta)]);
    }
    let mut out = Vec::new();
    let mut dirs = Vec::new();
    walk_dir(String::new(), root.to_owned(), &mut out, &mut dirs)?;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(dirs.len());
    if threads <= 1 {
        while let Some((rel, dir)) = dirs.pop() {
            walk_dir(rel, dir, &mut out, &mut dirs)?;
        }
    } else {
        let chunks: Vec<Vec<(String, PathBuf)>> = (0..threads)
            .map(|t| dirs.iter().skip(t).step_by(threads).cloned().collect())
            .collect();
        let results: Vec<std::io::Result<Walked>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|mut todo| {
                    s.spawn(move || {
                        let mut found = Vec::new();
                        while let Some((rel, dir)) = todo.pop() {
                            walk_dir(rel, dir, &mut found, &mut todo)?;
                        }
                        Ok(found)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a walker thread"))
                .collect()
        });
        for r in results {
            out.extend(r?);
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Lists one directory: files into `out`, subdirectories into `dirs`.
fn walk_dir(
    rel: String,
    dir: PathBuf,
    out: &mut Walked,
    dirs: &mut Vec<(String, PathBuf)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let rel = if rel.is_empty() {
            name.into_owned()
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        let ft = entry.file_type()?;
        let meta = if ft.is_symlink() {
            std::fs::metadata(&path)?
        } else {
            entry.metadata()?
        };
        if meta.is_dir() {
            dirs.push((rel, path));
        } else {
            out.push((rel, path, meta));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime_ns: i128,
    ino: u64,
}

/// Content hashes of files keyed by absolute path, valid while size, mtime and inode are
/// unchanged. Stored as a plain tab-separated file (fast to read and write).
#[derive(Debug)]
pub struct StatCache {
    path: Option<PathBuf>,
    entries: HashMap<PathBuf, (Stat, String)>,
    dirty: bool,
    /// Content hashes of roots already computed by this process.
    roots: HashMap<PathBuf, String>,
}

impl StatCache {
    /// A cache that is never saved.
    pub fn in_memory() -> Self {
        Self {
            path: None,
            entries: HashMap::new(),
            dirty: false,
            roots: HashMap::new(),
        }
    }

    /// Loads the cache at `path` (a missing or unreadable cache is empty).
    pub fn load(path: &Path) -> Self {
        let start = std::time::Instant::now();
        let mut entries = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines() {
                let mut it = line.splitn(5, '\t');
                let (Some(hash), Some(size), Some(mtime), Some(ino), Some(p)) =
                    (it.next(), it.next(), it.next(), it.next(), it.next())
                else {
                    continue;
                };
                let (Ok(size), Ok(mtime_ns), Ok(ino)) = (size.parse(), mtime.parse(), ino.parse())
                else {
                    continue;
                };
                entries.insert(
                    PathBuf::from(p),
                    (
                        Stat {
                            size,
                            mtime_ns,
                            ino,
                        },
                        hash.to_owned(),
                    ),
                );
            }
        }
        tracing::debug!(
            "loaded {} stat cache entries in {:?}",
            entries.len(),
            start.elapsed()
        );
        Self {
            path: Some(path.to_owned()),
            entries,
            dirty: false,
            roots: HashMap::new(),
        }
    }

    /// Writes the cache back if it changed (temp file + rename).
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut text = String::with_capacity(self.entries.len() * 120);
        for (p, (s, hash)) in &self.entries {
            let Some(p) = p.to_str() else { continue };
            if p.contains('\n') {
                continue;
            }
            text.push_str(&format!(
                "{hash}\t{}\t{}\t{}\t{p}\n",
                s.size, s.mtime_ns, s.ino
            ));
        }
        // Jobs on several hosts may save one shared cache at once.
        let tmp = crate::lock::unique(&path.with_extension("tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        self.dirty = false;
        Ok(())
    }

    fn hash(&mut self, path: &Path, meta: &std::fs::Metadata) -> std::io::Result<String> {
        let stat = Stat {
            size: meta.len(),
            mtime_ns: mtime_ns(meta),
            ino: meta.ino(),
        };
        if let Some((s, hash)) = self.entries.get(path)
            && *s == stat
        {
            return Ok(hash.clone());
        }
        let hash = hash_file(path)?;
        self.entries.insert(path.to_owned(), (stat, hash.clone()));
        self.dirty = true;
        Ok(hash)
    }

    /// The listing of `root` (file or directory) with content hashes.
    pub fn listing(&mut self, root: &Path) -> std::io::Result<Vec<FileEntry>> {
        walk(root)?
            .into_iter()
            .map(|(rel, path, meta)| {
                let hash = self.hash(&path, &meta)?;
                Ok(FileEntry {
                    path: rel,
                    size: meta.len(),
                    hash,
                    mtime_ns: mtime_ns(&meta),
                    ino: meta.ino(),
                })
            })
            .collect()
    }

    /// Content hash of an external file or directory (computed once per process: inputs are
    /// not expected to change during a run).
    pub fn content_hash(&mut self, root: &Path) -> std::io::Result<String> {
        if let Some(hash) = self.roots.get(root) {
            return Ok(hash.clone());
        }
        let start = std::time::Instant::now();
        let listing = self.listing(root)?;
        tracing::debug!(
            "hashed `{}` ({} files) in {:?}",
            root.display(),
            listing.len(),
            start.elapsed()
        );
        let hash = listing_hash(&listing);
        self.roots.insert(root.to_owned(), hash.clone());
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(params: serde_json::Value, version: u32, input: &str) -> Fingerprint {
        Fingerprint {
            format: FORMAT,
            kind: "command".into(),
            kind_version: version,
            params,
            inputs: [("x".to_owned(), vec![input.to_owned()])].into(),
        }
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"d": [1, 2], "c": "x"}}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"c":"x","d":[1,2]},"b":1}"#);
    }

    #[test]
    fn key_depends_on_params_version_and_inputs_only() {
        let p1: serde_json::Value = serde_json::from_str(r#"{"run": "x", "threads": 1}"#).unwrap();
        let p2: serde_json::Value = serde_json::from_str(r#"{"threads": 1, "run": "x"}"#).unwrap();
        let base = fp(p1.clone(), 1, "h1").key();
        assert_eq!(base, fp(p2, 1, "h1").key());
        assert_ne!(base, fp(p1.clone(), 2, "h1").key());
        assert_ne!(base, fp(p1.clone(), 1, "h2").key());
        assert_ne!(
            base,
            fp(serde_json::json!({"run": "y", "threads": 1}), 1, "h1").key()
        );
        assert_eq!(base.len(), 32);
    }

    #[test]
    fn directory_hash_follows_content_and_uses_cache() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("sub/a"), "1").unwrap();
        std::fs::write(data.join("b"), "2").unwrap();
        let cache_path = dir.path().join("cache.tsv");
        let mut cache = StatCache::load(&cache_path);
        let h1 = cache.content_hash(&data).unwrap();
        assert!(cache.dirty);
        cache.save().unwrap();
        // A fresh process finds every file in the cache.
        let mut cache = StatCache::load(&cache_path);
        assert_eq!(cache.entries.len(), 2);
        assert_eq!(cache.content_hash(&data).unwrap(), h1);
        assert!(!cache.dirty);
        // Same content elsewhere: same hash (no absolute paths in it).
        let copy = dir.path().join("copy");
        std::fs::create_dir_all(copy.join("sub")).unwrap();
        std::fs::write(copy.join("sub/a"), "1").unwrap();
        std::fs::write(copy.join("b"), "2").unwrap();
        assert_eq!(StatCache::in_memory().content_hash(&copy).unwrap(), h1);
        // Edited content or a renamed file: another hash.
        std::fs::write(data.join("sub/a"), "3").unwrap();
        let mut cache = StatCache::load(&cache_path);
        let h2 = cache.content_hash(&data).unwrap();
        assert_ne!(h2, h1);
        std::fs::rename(copy.join("b"), copy.join("c")).unwrap();
        assert_ne!(StatCache::in_memory().content_hash(&copy).unwrap(), h1);
    }
}
