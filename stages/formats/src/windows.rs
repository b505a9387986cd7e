//! Each clip's windows, `f32 [n_clips, n_windows, n_mels, n_frames]` with a `u8 [n_clips,
//! n_windows]` mask: in memory, or in shard files of bounded size that are read one clip at a
//! time, so that a data set's features never need to fit in memory.
//!
//! On disk (`windows/` in a `features` artifact):
//! - `index.json`: `{"format": 1, "clip_shape": [n_windows, n_mels, n_frames], "n_clips": N,
//!   "shards": [{"file": "00000.safetensors", "first_clip": 0, "n_clips": n}, ...]}`, the shards
//!   in clip order, covering `0..N` without gaps;
//! - each shard a safetensors file holding `mel: f32 [n, n_windows, n_mels, n_frames]` and
//!   `window_mask: u8 [n, n_windows]` of clips `first_clip..first_clip + n`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::tensors::{TensorOut, write_tensors};

/// The folder of the shards inside a `features` artifact.
pub const WINDOWS_DIR: &str = "windows";
const INDEX_FILE: &str = "index.json";
const FORMAT: u32 = 1;
/// Shard size of [`ClipWindows::save`] where the caller sets none.
pub const DEFAULT_SHARD_BYTES: usize = 256 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexFile {
    format: u32,
    clip_shape: [usize; 3],
    n_clips: usize,
    shards: Vec<ShardEntry>,
}

/// One shard as the index lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    pub file: String,
    pub first_clip: usize,
    pub n_clips: usize,
}

/// Each clip's windows, `[n_clips, n_windows, n_mels, n_frames]`.
#[derive(Debug, Clone)]
pub struct ClipWindows {
    shape: [usize; 4],
    storage: Storage,
}

#[derive(Debug, Clone)]
enum Storage {
    Memory(Vec<f32>),
    Shards {
        dir: PathBuf,
        shards: Arc<[OpenShard]>,
    },
    /// Clips picked from other sets, in order ([`ClipWindows::gather`]).
    Gathered(Arc<[Picked]>),
}

/// The clips a gathered set takes from one source: its clips `first..first + clips.len()`.
#[derive(Debug)]
struct Picked {
    first: usize,
    source: ClipWindows,
    clips: Vec<usize>,
}

#[derive(Debug)]
struct OpenShard {
    entry: ShardEntry,
    file: File,
    /// Byte offset of the `mel` tensor in the file.
    mel_offset: u64,
}

impl ClipWindows {
    pub fn in_memory(shape: [usize; 4], values: Vec<f32>) -> Self {
        assert_eq!(
            values.len(),
            shape.iter().product::<usize>(),
            "values for {shape:?}"
        );
        Self {
            shape,
            storage: Storage::Memory(values),
        }
    }

    /// The clips `clips` of each source, one after the other (nothing is copied: reads go to
    /// the sources). The sources' clips must have one shape.
    pub fn gather(parts: Vec<(ClipWindows, Vec<usize>)>) -> anyhow::Result<Self> {
        let shape = parts.first().map_or([0; 3], |(w, _)| clip_shape(w));
        let mut picked = Vec::with_capacity(parts.len());
        let mut first = 0;
        for (k, (source, clips)) in parts.into_iter().enumerate() {
            ensure!(
                clip_shape(&source) == shape,
                "source {k}: clips of shape {:?}, source 0's are {shape:?}",
                clip_shape(&source)
            );
            if let Some(&c) = clips.iter().find(|&&c| c >= source.n_clips()) {
                bail!("source {k}: clip {c} of {}", source.n_clips());
            }
            let n = clips.len();
            picked.push(Picked {
                first,
                source,
                clips,
            });
            first += n;
        }
        let [w, m, f] = shape;
        Ok(Self {
            shape: [first, w, m, f],
            storage: Storage::Gathered(picked.into()),
        })
    }

    /// Opens the shards of `dir` (a `windows/` folder) and returns them with the window mask,
    /// `[n_clips, n_windows]`. Only headers and masks are read.
    pub fn open(dir: &Path) -> anyhow::Result<(Self, Vec<u8>)> {
        let index_path = dir.join(INDEX_FILE);
        let index: IndexFile = serde_json::from_slice(
            &std::fs::read(&index_path)
                .with_context(|| format!("reading `{}`", index_path.display()))?,
        )
        .with_context(|| format!("parsing `{}`", index_path.display()))?;
        ensure!(
            index.format == FORMAT,
            "`{}`: format {} (this build reads format {FORMAT})",
            index_path.display(),
            index.format
        );
        let [w, m, f] = index.clip_shape;
        let mut shards = Vec::with_capacity(index.shards.len());
        let mut mask = Vec::with_capacity(index.n_clips * w);
        for entry in index.shards {
            ensure!(
                entry.first_clip == mask.len() / w.max(1),
                "`{}`: shard `{}` starts at clip {}, expected {}",
                index_path.display(),
                entry.file,
                entry.first_clip,
                mask.len() / w.max(1)
            );
            let path = shard_path(dir, &entry.file)?;
            let (shard_mask, mel_offset) = read_shard_header(&path, entry.n_clips, [w, m, f])?;
            mask.extend(shard_mask);
            let file =
                File::open(&path).with_context(|| format!("opening `{}`", path.display()))?;
            shards.push(OpenShard {
                entry,
                file,
                mel_offset,
            });
        }
        ensure!(
            mask.len() == index.n_clips * w,
            "`{}`: the shards hold {} clips, the index says {}",
            index_path.display(),
            mask.len() / w.max(1),
            index.n_clips
        );
        Ok((
            Self {
                shape: [index.n_clips, w, m, f],
                storage: Storage::Shards {
                    dir: dir.to_owned(),
                    shards: shards.into(),
                },
            },
            mask,
        ))
    }

    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }

    pub fn n_clips(&self) -> usize {
        self.shape[0]
    }

    /// Elements of one clip (`n_windows * n_mels * n_frames`).
    pub fn clip_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }

    /// Appends clip `clip`'s values to `out`.
    pub fn read_clip_into(&self, clip: usize, out: &mut Vec<f32>) -> anyhow::Result<()> {
        let n = self.clip_len();
        ensure!(clip < self.n_clips(), "clip {clip} of {}", self.n_clips());
        match &self.storage {
            Storage::Memory(values) => out.extend_from_slice(&values[clip * n..(clip + 1) * n]),
            Storage::Shards { dir, shards } => {
                let shard = &shards[shards.partition_point(|s| s.entry.first_clip <= clip) - 1];
                let start = out.len();
                out.resize(start + n, 0.0);
                let offset = shard.mel_offset + ((clip - shard.entry.first_clip) * n * 4) as u64;
                shard
                    .file
                    .read_exact_at(bytemuck::cast_slice_mut(&mut out[start..]), offset)
                    .with_context(|| {
                        format!(
                            "reading clip {clip} from `{}`",
                            dir.join(&shard.entry.file).display()
                        )
                    })?;
                // The files are little-endian, as is every target this crate builds for.
                const _: () = assert!(cfg!(target_endian = "little"));
            }
            Storage::Gathered(parts) => {
                let part = &parts[parts.partition_point(|p| p.first <= clip) - 1];
                part.source
                    .read_clip_into(part.clips[clip - part.first], out)?;
            }
        }
        Ok(())
    }

    /// Clip `clip`'s values.
    pub fn clip(&self, clip: usize) -> anyhow::Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.clip_len());
        self.read_clip_into(clip, &mut out)?;
        Ok(out)
    }

    /// Every value, `[n_clips, n_windows, n_mels, n_frames]` row-major (for small sets and tests).
    pub fn to_vec(&self) -> anyhow::Result<Vec<f32>> {
        if let Storage::Memory(values) = &self.storage {
            return Ok(values.clone());
        }
        let mut out = Vec::with_capacity(self.n_clips() * self.clip_len());
        for clip in 0..self.n_clips() {
            self.read_clip_into(clip, &mut out)?;
        }
        Ok(out)
    }

    /// Writes these windows and `mask` as `dir` (a `windows/` folder) in shards of at most
    /// `shard_bytes` of `mel` each (and at least one clip).
    pub fn save(&self, dir: &Path, mask: &[u8], shard_bytes: usize) -> anyhow::Result<()> {
        let [n_clips, w, m, f] = self.shape;
        ensure!(
            mask.len() == n_clips * w,
            "a mask of {} values for {n_clips} clips × {w} windows",
            mask.len()
        );
        let mut writer = ShardWriter::new(dir, [w, m, f], shard_bytes)?;
        let mut values = Vec::new();
        for (k, range) in writer.plan(n_clips).into_iter().enumerate() {
            values.clear();
            for clip in range.clone() {
                self.read_clip_into(clip, &mut values)?;
            }
            writer.write(
                k,
                range.start,
                &values,
                &mask[range.start * w..range.end * w],
            )?;
        }
        writer.finish(n_clips)
    }
}

fn clip_shape(w: &ClipWindows) -> [usize; 3] {
    let [_, w, m, f] = w.shape();
    [w, m, f]
}

/// Equal when shapes and values are (whatever the storage).
impl PartialEq for ClipWindows {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape
            && match (self.to_vec(), other.to_vec()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
    }
}

/// Writes shard files one at a time (each through a temporary file renamed into place, so a
/// shard that exists is complete) and the index last.
pub struct ShardWriter {
    dir: PathBuf,
    clip_shape: [usize; 3],
    clips_per_shard: usize,
    written: Vec<ShardEntry>,
}

impl ShardWriter {
    /// Shards of `dir` hold at most `shard_bytes` of `mel` each, and at least one clip.
    pub fn new(dir: &Path, clip_shape: [usize; 3], shard_bytes: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
        let clip_bytes = clip_shape.iter().product::<usize>() * 4;
        Ok(Self {
            dir: dir.to_owned(),
            clip_shape,
            clips_per_shard: (shard_bytes / clip_bytes.max(1)).max(1),
            written: Vec::new(),
        })
    }

    /// The clip ranges of the shards of `n_clips` clips, in order.
    pub fn plan(&self, n_clips: usize) -> Vec<std::ops::Range<usize>> {
        (0..n_clips)
            .step_by(self.clips_per_shard)
            .map(|a| a..(a + self.clips_per_shard).min(n_clips))
            .collect()
    }

    fn file_name(shard: usize) -> String {
        format!("{shard:05}.safetensors")
    }

    /// The window mask of shard `shard` of clips `first..first + n_clips` when a complete file
    /// of it is already in the folder (an interrupted run's), else `None`.
    pub fn existing(
        &mut self,
        shard: usize,
        first: usize,
        n_clips: usize,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let name = Self::file_name(shard);
        let path = self.dir.join(&name);
        if !path.exists() {
            return Ok(None);
        }
        let (mask, _) = read_shard_header(&path, n_clips, self.clip_shape)?;
        self.record(shard, first, n_clips, name)?;
        Ok(Some(mask))
    }

    /// Writes shard `shard`: `mel` and `mask` of clips `first..`.
    pub fn write(
        &mut self,
        shard: usize,
        first: usize,
        mel: &[f32],
        mask: &[u8],
    ) -> anyhow::Result<()> {
        let [w, m, f] = self.clip_shape;
        let n = mask.len() / w.max(1);
        ensure!(
            mel.len() == n * w * m * f && mask.len() == n * w,
            "shard {shard}: {} values and {} mask entries",
            mel.len(),
            mask.len()
        );
        let name = Self::file_name(shard);
        write_tensors(
            &self.dir.join(&name),
            &[
                TensorOut::F32("mel", vec![n, w, m, f], mel),
                TensorOut::U8("window_mask", vec![n, w], mask),
            ],
        )?;
        self.record(shard, first, n, name)
    }

    fn record(
        &mut self,
        shard: usize,
        first: usize,
        n_clips: usize,
        file: String,
    ) -> anyhow::Result<()> {
        let next = self.written.last().map_or(0, |s| s.first_clip + s.n_clips);
        if shard != self.written.len() || first != next {
            bail!(
                "shard {shard} (clip {first}) out of order: expected shard {} at clip {next}",
                self.written.len()
            );
        }
        self.written.push(ShardEntry {
            file,
            first_clip: first,
            n_clips,
        });
        Ok(())
    }

    /// Writes the index (last, through a temporary file) once `n_clips` clips are written.
    pub fn finish(self, n_clips: usize) -> anyhow::Result<()> {
        let covered = self.written.last().map_or(0, |s| s.first_clip + s.n_clips);
        ensure!(covered == n_clips, "{covered} of {n_clips} clips written");
        let index = IndexFile {
            format: FORMAT,
            clip_shape: self.clip_shape,
            n_clips,
            shards: self.written,
        };
        let path = self.dir.join(INDEX_FILE);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&index)?)
            .with_context(|| format!("writing `{}`", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing `{}`", path.display()))
    }
}

/// `file` inside `dir`, refusing anything but a plain file name.
fn shard_path(dir: &Path, file: &str) -> anyhow::Result<PathBuf> {
    ensure!(
        !file.is_empty() && !file.contains('/') && file != "..",
        "`{}`: shard file `{file}` is not a file name",
        dir.join(INDEX_FILE).display()
    );
    Ok(dir.join(file))
}

/// A shard's window mask and the byte offset of its `mel` tensor, after checking both shapes.
/// Reads the header and the mask only.
fn read_shard_header(
    path: &Path,
    n_clips: usize,
    [w, m, f]: [usize; 3],
) -> anyhow::Result<(Vec<u8>, u64)> {
    let file = File::open(path).with_context(|| format!("opening `{}`", path.display()))?;
    let (header_len, header) = safetensors_header(&file, path)?;
    let tensor = |name: &str, dtype: &str, shape: &[usize]| -> anyhow::Result<(u64, u64)> {
        let info = header
            .get(name)
            .with_context(|| format!("`{}` has no tensor `{name}`", path.display()))?;
        let found: Vec<usize> = serde_json::from_value(info["shape"].clone())
            .with_context(|| format!("`{}`: the shape of `{name}`", path.display()))?;
        ensure!(
            found == shape && info["dtype"] == dtype,
            "`{}`: `{name}` is {} {found:?}, the index says {dtype} {shape:?}",
            path.display(),
            info["dtype"]
        );
        let offsets: [u64; 2] = serde_json::from_value(info["data_offsets"].clone())
            .with_context(|| format!("`{}`: the offsets of `{name}`", path.display()))?;
        Ok((8 + header_len + offsets[0], offsets[1] - offsets[0]))
    };
    let (mel_offset, _) = tensor("mel", "F32", &[n_clips, w, m, f])?;
    let (mask_offset, mask_len) = tensor("window_mask", "U8", &[n_clips, w])?;
    let mut mask = vec![0u8; mask_len as usize];
    file.read_exact_at(&mut mask, mask_offset)
        .with_context(|| format!("reading the window mask of `{}`", path.display()))?;
    Ok((mask, mel_offset))
}

/// The JSON header of a safetensors file and its length in bytes.
fn safetensors_header(file: &File, path: &Path) -> anyhow::Result<(u64, serde_json::Value)> {
    let mut len = [0u8; 8];
    file.read_exact_at(&mut len, 0)
        .with_context(|| format!("reading `{}`", path.display()))?;
    let len = u64::from_le_bytes(len);
    ensure!(
        len < 1 << 26,
        "`{}` is not a safetensors file",
        path.display()
    );
    let mut header = vec![0u8; len as usize];
    file.read_exact_at(&mut header, 8)
        .with_context(|| format!("reading `{}`", path.display()))?;
    let header = serde_json::from_slice(&header)
        .with_context(|| format!("`{}` is not a safetensors file", path.display()))?;
    Ok((len, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(n_clips: usize) -> (ClipWindows, Vec<u8>) {
        let shape = [n_clips, 2, 3, 4];
        let values = (0..shape.iter().product::<usize>())
            .map(|x| x as f32 * 0.25 - 3.0)
            .collect();
        let mask = (0..n_clips * 2).map(|i| u8::from(i % 3 != 2)).collect();
        (ClipWindows::in_memory(shape, values), mask)
    }

    #[test]
    fn shards_hold_at_most_their_size_and_read_back_clip_by_clip() {
        let dir = tempfile::tempdir().unwrap();
        let (w, mask) = windows(7);
        // 24 values of 4 bytes per clip: 400 bytes hold 4 clips.
        w.save(dir.path(), &mask, 400).unwrap();
        let index: IndexFile =
            serde_json::from_slice(&std::fs::read(dir.path().join(INDEX_FILE)).unwrap()).unwrap();
        let sizes: Vec<usize> = index.shards.iter().map(|s| s.n_clips).collect();
        assert_eq!(sizes, [4, 3]);
        let (loaded, loaded_mask) = ClipWindows::open(dir.path()).unwrap();
        assert_eq!(loaded_mask, mask);
        assert_eq!(loaded.shape(), w.shape());
        for clip in 0..7 {
            assert_eq!(
                loaded.clip(clip).unwrap(),
                w.clip(clip).unwrap(),
                "clip {clip}"
            );
        }
        assert_eq!(loaded, w);
        assert!(loaded.clip(7).is_err());
    }

    #[test]
    fn gathered_clips_read_from_their_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, mask) = windows(5);
        a.save(dir.path(), &mask, 400).unwrap();
        let (on_disk, _) = ClipWindows::open(dir.path()).unwrap();
        let (b, _) = windows(3);
        let gathered =
            ClipWindows::gather(vec![(on_disk, vec![4, 0]), (b.clone(), vec![2])]).unwrap();
        assert_eq!(gathered.shape(), [3, 2, 3, 4]);
        assert_eq!(gathered.clip(0).unwrap(), a.clip(4).unwrap());
        assert_eq!(gathered.clip(1).unwrap(), a.clip(0).unwrap());
        assert_eq!(gathered.clip(2).unwrap(), b.clip(2).unwrap());
        assert!(gathered.clip(3).is_err());

        let other = ClipWindows::in_memory([1, 1, 3, 4], vec![0.0; 12]);
        let err = ClipWindows::gather(vec![(b.clone(), vec![0]), (other, vec![0])]).unwrap_err();
        assert!(err.to_string().contains("source 1"), "{err}");
        let err = ClipWindows::gather(vec![(b, vec![3])]).unwrap_err();
        assert!(err.to_string().contains("clip 3 of 3"), "{err}");
    }

    #[test]
    fn a_shard_larger_than_the_limit_still_holds_one_clip() {
        let dir = tempfile::tempdir().unwrap();
        let (w, mask) = windows(3);
        w.save(dir.path(), &mask, 1).unwrap();
        let (loaded, _) = ClipWindows::open(dir.path()).unwrap();
        assert_eq!(loaded, w);
        assert!(dir.path().join("00002.safetensors").exists());
    }

    #[test]
    fn a_missing_or_altered_shard_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (w, mask) = windows(5);
        w.save(dir.path(), &mask, 400).unwrap();
        std::fs::remove_file(dir.path().join("00001.safetensors")).unwrap();
        let err = format!("{:#}", ClipWindows::open(dir.path()).unwrap_err());
        assert!(err.contains("00001.safetensors"), "{err}");

        let (small, small_mask) = windows(2);
        small
            .save(&dir.path().join("x"), &small_mask, 1000)
            .unwrap();
        std::fs::copy(
            dir.path().join("x/00000.safetensors"),
            dir.path().join("00001.safetensors"),
        )
        .unwrap();
        let err = format!("{:#}", ClipWindows::open(dir.path()).unwrap_err());
        assert!(
            err.contains("00001.safetensors") && err.contains("[1, 2, 3, 4]"),
            "{err}"
        );
    }

    #[test]
    fn a_writer_resumes_from_the_complete_shards_of_an_interrupted_one() {
        let dir = tempfile::tempdir().unwrap();
        let (w, mask) = windows(5);
        let values = w.to_vec().unwrap();
        let mut first = ShardWriter::new(dir.path(), [2, 3, 4], 400).unwrap();
        let plan = first.plan(5);
        assert_eq!(plan, [0..4, 4..5]);
        first.write(0, 0, &values[..4 * 24], &mask[..8]).unwrap();
        drop(first); // interrupted: no index
        assert!(ClipWindows::open(dir.path()).is_err());

        let mut second = ShardWriter::new(dir.path(), [2, 3, 4], 400).unwrap();
        assert_eq!(
            second.existing(0, 0, 4).unwrap().as_deref(),
            Some(&mask[..8])
        );
        assert_eq!(second.existing(1, 4, 1).unwrap(), None);
        second.write(1, 4, &values[4 * 24..], &mask[8..]).unwrap();
        second.finish(5).unwrap();
        let (loaded, loaded_mask) = ClipWindows::open(dir.path()).unwrap();
        assert_eq!((loaded, loaded_mask), (w, mask));
    }

    #[test]
    fn shards_written_out_of_order_or_short_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = ShardWriter::new(dir.path(), [2, 3, 4], 400).unwrap();
        let err = writer.write(1, 4, &[0.0; 24], &[1, 1]).unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
        writer.write(0, 0, &[0.0; 24], &[1, 1]).unwrap();
        assert!(writer.finish(2).unwrap_err().to_string().contains("1 of 2"));
    }
}
