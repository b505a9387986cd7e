//! What a query is ranked against: the clips of a split of the model's data set, or the audio
//! files of a folder. Their embeddings are computed once per model and cached by content:
//! a split's under the model's and features' keys, a file's under the SHA-256 of its bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use pipeline_data::features::{ClipFeatures, FrontEnd, resolve};
use pipeline_formats::{FeatureSet, FeatureTables, Split};
use pipeline_learn::device::Device;
use pipeline_learn::embedding::{embed_clips, embed_mel};
use pipeline_learn::models::DualEncoder;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::model::Model;

/// Files `--audio` searches, by extension (what the decoder reads).
const AUDIO_EXTENSIONS: [&str; 5] = ["wav", "flac", "mp3", "ogg", "oga"];
/// Clips embedded per forward pass.
const BATCH: usize = 32;

/// One searchable clip.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub path: PathBuf,
    /// The data set's captions of the clip (none for a user's file).
    pub captions: Vec<String>,
}

/// Clips and their embeddings (`[items.len(), dim]`, row-major, L2-normalised).
#[derive(Debug)]
pub struct Corpus {
    pub items: Vec<Item>,
    pub embeddings: Vec<f32>,
    /// Files that could not be read: `(path, why)`.
    pub skipped: Vec<(PathBuf, String)>,
    /// Clips embedded now (the rest came from the cache).
    pub embedded: usize,
}

impl Corpus {
    pub fn dim(&self) -> usize {
        self.embeddings.len() / self.items.len().max(1)
    }
}

/// The clips of `split` (every split when `None`) of the data set the model was trained on.
pub fn split(
    model: &Model,
    tables: &FeatureTables,
    encoder: &DualEncoder,
    split: Option<Split>,
    cache: &Path,
    device: &Device,
) -> anyhow::Result<Corpus> {
    let features = &model.features;
    let clips: Vec<usize> = (0..tables.clips.len())
        .filter(|&i| split.is_none_or(|s| tables.clips[i].split == s))
        .collect();
    let items = clips
        .iter()
        .map(|&i| {
            let clip = &tables.clips[i];
            Item {
                id: clip.clip_id.clone(),
                path: resolve(&features.dataset_dir, &clip.file),
                captions: clip
                    .caption_indices
                    .iter()
                    .map(|&j| tables.captions[j].text.clone())
                    .collect(),
            }
        })
        .collect();
    let name = split.map_or("all", Split::as_str);
    let path = cache
        .join(&model.key)
        .join(format!("{}-{name}.f32", features.key));
    let (embeddings, embedded) = match read_f32(&path)? {
        Some(cached) => (cached, 0),
        None => {
            let set = FeatureSet::load(&features.dir)?;
            let embeddings = embed_clips(encoder, &set, &clips, BATCH, device)?;
            write_f32(&path, &embeddings)?;
            (embeddings, clips.len())
        }
    };
    anyhow::ensure!(
        clips.is_empty() || embeddings.len() % clips.len() == 0,
        "`{}` does not hold {} embeddings; delete it",
        path.display(),
        clips.len()
    );
    Ok(Corpus {
        items,
        embeddings,
        skipped: Vec::new(),
        embedded,
    })
}

/// The audio files under `dir` (recursively, in path order), featurised with the model's
/// front end. Unreadable files are skipped and listed in [`Corpus::skipped`].
pub fn folder(
    model: &Model,
    encoder: &DualEncoder,
    dir: &Path,
    cache: &Path,
    device: &Device,
    progress: &dyn Fn(usize, usize),
) -> anyhow::Result<Corpus> {
    let files = audio_files(dir)?;
    if files.is_empty() {
        return Err(pipeline_api::UsageError::new(format!(
            "`{}` holds no audio files ({})",
            dir.display(),
            AUDIO_EXTENSIONS.join(", ")
        ))
        .into());
    }
    let cache = cache.join(&model.key).join("files");
    let digests: Vec<anyhow::Result<String>> = files.par_iter().map(|f| sha256_of(f)).collect();
    let mut cached: Vec<Option<Vec<f32>>> = Vec::with_capacity(files.len());
    let mut skipped = Vec::new();
    for (file, digest) in files.iter().zip(&digests) {
        cached.push(match digest {
            Ok(d) => read_f32(&cache.join(format!("{d}.f32")))?,
            Err(e) => {
                skipped.push((file.clone(), format!("{e:#}")));
                None
            }
        });
    }
    let todo: Vec<usize> = (0..files.len())
        .filter(|&i| cached[i].is_none() && digests[i].is_ok())
        .collect();
    let front_end = FrontEnd::new(&model.features.params);
    let (mut done, mut embedded) = (0, 0);
    for chunk in todo.chunks(BATCH) {
        let featurised: Vec<anyhow::Result<ClipFeatures>> = chunk
            .par_iter()
            .map(|&i| front_end.file(&files[i]))
            .collect();
        let mut mel = Vec::new();
        let mut mask = Vec::new();
        let mut ok = Vec::new();
        for (&i, result) in chunk.iter().zip(featurised) {
            match result {
                Ok(clip) => {
                    mel.extend(clip.mel);
                    mask.extend(clip.window_mask);
                    ok.push(i);
                }
                Err(e) => skipped.push((files[i].clone(), format!("{e:#}"))),
            }
        }
        if !ok.is_empty() {
            let shape = [
                ok.len(),
                front_end.n_windows,
                front_end.n_mels,
                front_end.n_frames,
            ];
            let embeddings = embed_mel(encoder, mel, &mask, shape, device);
            embedded += ok.len();
            let dim = embeddings.len() / ok.len();
            for (&i, row) in ok.iter().zip(embeddings.chunks(dim)) {
                let digest = digests[i].as_ref().expect("hashed");
                write_f32(&cache.join(format!("{digest}.f32")), row)?;
                cached[i] = Some(row.to_vec());
            }
        }
        done += chunk.len();
        progress(done, todo.len());
    }
    let mut items = Vec::new();
    let mut embeddings = Vec::new();
    for (file, row) in files.into_iter().zip(cached) {
        let Some(row) = row else { continue };
        let id = file
            .strip_prefix(dir)
            .unwrap_or(&file)
            .display()
            .to_string();
        items.push(Item {
            id,
            path: file,
            captions: Vec::new(),
        });
        embeddings.extend(row);
    }
    skipped.sort();
    Ok(Corpus {
        items,
        embeddings,
        skipped,
        embedded,
    })
}

/// Audio files below `dir`, sorted by path.
fn audio_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let entries = fs_err::read_dir(&d).map_err(|e| {
            pipeline_api::UsageError::new(format!("cannot read the folder `{}`: {e}", d.display()))
        })?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Little-endian `f32`s, or `None` when the file is absent.
fn read_f32(path: &Path) -> anyhow::Result<Option<Vec<f32>>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            anyhow::ensure!(
                bytes.len() % 4 == 0,
                "`{}` is not a cache file; delete it",
                path.display()
            );
            Ok(Some(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading `{}`", path.display())),
    }
}

/// Writes beside `path` and renames: a cache entry is whole or absent.
fn write_f32(path: &Path, values: &[f32]) -> anyhow::Result<()> {
    let dir = path.parent().expect("cache files live in a folder");
    fs_err::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tmp.write_all(&bytes)?;
    tmp.persist(path)
        .with_context(|| format!("writing `{}`", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_files_round_trip_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.f32");
        assert_eq!(read_f32(&path).unwrap(), None);
        write_f32(&path, &[1.5, -0.25, f32::MIN_POSITIVE]).unwrap();
        assert_eq!(
            read_f32(&path).unwrap(),
            Some(vec![1.5, -0.25, f32::MIN_POSITIVE])
        );
    }

    #[test]
    fn audio_files_are_found_recursively_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.WAV", "a/z.flac", "a/notes.txt", "c.mp3"] {
            let path = dir.path().join(f);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(&path, b"").unwrap();
        }
        let found: Vec<String> = audio_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(found, ["a/z.flac", "b.WAV", "c.mp3"]);
    }
}
