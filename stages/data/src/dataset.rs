//! The `dataset` kind: an index of a real data set on disk (input `root`, an external path).
//!
//! Formats (see method.md):
//! - `clotho`: `clotho_captions_{development,validation,evaluation}.csv` (`file_name,caption_1..5`),
//!   audio in `development/`, `validation/`, `evaluation/`; `clotho_metadata_<subset>.csv`
//!   (ISO-8859-1) is parsed when present and its rows counted.
//! - `audiocaps`: `{train,val,test}.csv` (`audiocap_id,youtube_id,start_time,caption`), captions
//!   grouped by `youtube_id`, audio `Y{youtube_id}.wav` (or `.flac`) in `<audio_dir>/<csv stem>/`
//!   or `<audio_dir>/`.
//! - `wavcaps`: per source, JSON `{"num_captions_per_audio": 1, "data": [{"id", "caption", ...}]}`
//!   from `json_files/<Source>/*.json` or `<Source>.json`; audio `<Source>/<id>.flac` (an audio
//!   extension on the id is replaced by `.flac`).
//! - `csv`: `csv_file` with columns `file,caption` and an optional `split`; one row per caption
//!   (`root` may also be the CSV file itself).
//!
//! Every clip's audio is decoded once (duration, and to find broken files). Missing, empty or
//! undecodable audio fails the node (`on_error = "fail"`, naming the file) or is skipped
//! (`on_error = "skip"`: listed with the reason in `skipped.json`, counted in metrics.json).
//! Output: `clips.parquet` (clip id = audio path relative to the root, `file` = absolute path),
//! `captions.parquet`, `metrics.json`, `skipped.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use pipeline_api::{InputCounts, ParamError, Plan, Resources, RunContext, StageKind, parse_params};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::formats::{DatasetCaption, DatasetClip, DatasetIndex, Split};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Clotho,
    Audiocaps,
    Wavcaps,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Fail,
    Skip,
}

/// Parameters of `dataset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetParams {
    /// Layout of the data set: "clotho", "audiocaps", "wavcaps" or "csv".
    pub format: Format,
    /// What to do with missing, empty or undecodable audio: "fail" or "skip" (listed in skipped.json).
    #[serde(default)]
    pub on_error: OnError,
    /// clotho: split of each subset (keys development, validation, evaluation; a subset left
    /// out is not loaded).
    #[serde(default = "default_clotho_splits")]
    pub clotho_splits: BTreeMap<String, Split>,
    /// audiocaps: split of each CSV file by stem (keys train, val, test; one left out is not loaded).
    #[serde(default = "default_audiocaps_splits")]
    pub audiocaps_splits: BTreeMap<String, Split>,
    /// audiocaps: folder (relative to the root) holding the audio, per CSV stem or flat.
    #[serde(default)]
    pub audio_dir: String,
    /// wavcaps: split of each source (folder name, e.g. AudioSet_SL, BBC_Sound_Effects,
    /// FreeSound, SoundBible).
    #[serde(default = "default_wavcaps_sources")]
    pub wavcaps_sources: BTreeMap<String, Split>,
    /// csv: the CSV file (relative to the root) with columns file, caption and optionally split.
    #[serde(default = "default_csv_file")]
    pub csv_file: String,
    /// csv: split of rows without a split column.
    #[serde(default = "default_split")]
    pub default_split: Split,
}

fn default_clotho_splits() -> BTreeMap<String, Split> {
    [
        ("development", Split::Train),
        ("validation", Split::Val),
        ("evaluation", Split::Test),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
fn default_audiocaps_splits() -> BTreeMap<String, Split> {
    [
        ("train", Split::Train),
        ("val", Split::Val),
        ("test", Split::Test),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
fn default_wavcaps_sources() -> BTreeMap<String, Split> {
    [
        "AudioSet_SL",
        "BBC_Sound_Effects",
        "FreeSound",
        "SoundBible",
    ]
    .into_iter()
    .map(|k| (k.to_owned(), Split::Train))
    .collect()
}
fn default_csv_file() -> String {
    "captions.csv".to_owned()
}
fn default_split() -> Split {
    Split::Train
}

impl DatasetParams {
    fn validate(&self) -> Result<(), ParamError> {
        for key in self.clotho_splits.keys() {
            if !["development", "validation", "evaluation"].contains(&key.as_str()) {
                return Err(ParamError::at(
                    &format!("clotho_splits.{key}"),
                    "expected development, validation or evaluation",
                ));
            }
        }
        for key in self.audiocaps_splits.keys() {
            if key.is_empty() || key.contains(['/', '\\']) {
                return Err(ParamError::at(
                    &format!("audiocaps_splits.{key}"),
                    "expected a CSV file stem",
                ));
            }
        }
        if self.wavcaps_sources.is_empty() && self.format == Format::Wavcaps {
            return Err(ParamError::at(
                "wavcaps_sources",
                "at least one source is needed",
            ));
        }
        if self.csv_file.is_empty() {
            return Err(ParamError::at("csv_file", "must not be empty"));
        }
        Ok(())
    }
}

/// A clip found by a loader, before its audio is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub clip_id: String,
    pub path: PathBuf,
    pub split: Split,
    pub captions: Vec<String>,
}

/// Facts a loader reports beyond the clips.
#[derive(Debug, Default)]
pub struct LoadNotes {
    pub empty_captions_dropped: usize,
    pub metadata_rows: usize,
}

fn relative_id(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

fn open_csv(path: &Path) -> anyhow::Result<csv::Reader<std::io::Cursor<Vec<u8>>>> {
    let mut bytes = std::fs::read(path).with_context(|| format!("reading `{}`", path.display()))?;
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
    }
    Ok(csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(std::io::Cursor::new(bytes)))
}

fn column(headers: &csv::StringRecord, name: &str, path: &Path) -> anyhow::Result<usize> {
    headers
        .iter()
        .position(|h| h.trim() == name)
        .with_context(|| format!("`{}` has no column `{name}`", path.display()))
}

pub fn load_clotho(
    root: &Path,
    p: &DatasetParams,
    notes: &mut LoadNotes,
) -> anyhow::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for subset in ["development", "validation", "evaluation"] {
        let Some(&split) = p.clotho_splits.get(subset) else {
            continue;
        };
        let path = root.join(format!("clotho_captions_{subset}.csv"));
        let mut reader = open_csv(&path)?;
        let headers = reader
            .headers()
            .with_context(|| format!("reading `{}`", path.display()))?
            .clone();
        let file_col = column(&headers, "file_name", &path)?;
        let caption_cols: Vec<usize> = headers
            .iter()
            .enumerate()
            .filter(|(_, h)| h.trim().starts_with("caption_"))
            .map(|(i, _)| i)
            .collect();
        anyhow::ensure!(
            !caption_cols.is_empty(),
            "`{}` has no caption_N columns",
            path.display()
        );
        for (line, record) in reader.records().enumerate() {
            let record =
                record.with_context(|| format!("`{}` row {}", path.display(), line + 2))?;
            let file_name = record.get(file_col).unwrap_or("").to_owned();
            if file_name.is_empty() {
                bail!("`{}` row {}: empty file_name", path.display(), line + 2);
            }
            let mut captions = Vec::new();
            for &c in &caption_cols {
                let text = record.get(c).unwrap_or("").trim();
                if text.is_empty() {
                    notes.empty_captions_dropped += 1;
                } else {
                    captions.push(text.to_owned());
                }
            }
            let audio = root.join(subset).join(&file_name);
            out.push(Candidate {
                clip_id: relative_id(root, &audio),
                path: audio,
                split,
                captions,
            });
        }
        // Metadata (ISO-8859-1), when present.
        let meta = root.join(format!("clotho_metadata_{subset}.csv"));
        if meta.exists() {
            let bytes =
                std::fs::read(&meta).with_context(|| format!("reading `{}`", meta.display()))?;
            let (text, _, _) = encoding_rs::WINDOWS_1252.decode(&bytes);
            let mut reader = csv::ReaderBuilder::new()
                .flexible(true)
                .from_reader(text.as_bytes());
            for record in reader.records() {
                record.with_context(|| format!("parsing `{}`", meta.display()))?;
                notes.metadata_rows += 1;
            }
        }
    }
    Ok(out)
}

fn find_audio(dirs: &[PathBuf], stem: &str) -> Option<PathBuf> {
    for dir in dirs {
        for ext in ["wav", "flac"] {
            let p = dir.join(format!("{stem}.{ext}"));
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

pub fn load_audiocaps(
    root: &Path,
    p: &DatasetParams,
    notes: &mut LoadNotes,
) -> anyhow::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    let base = root.join(&p.audio_dir);
    for (stem, &split) in &p.audiocaps_splits {
        let path = root.join(format!("{stem}.csv"));
        let mut reader = open_csv(&path)?;
        let headers = reader
            .headers()
            .with_context(|| format!("reading `{}`", path.display()))?
            .clone();
        let yt = column(&headers, "youtube_id", &path)?;
        let cap = column(&headers, "caption", &path)?;
        let mut order: Vec<String> = Vec::new();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (line, record) in reader.records().enumerate() {
            let record =
                record.with_context(|| format!("`{}` row {}", path.display(), line + 2))?;
            let id = record.get(yt).unwrap_or("").trim().to_owned();
            if id.is_empty() {
                bail!("`{}` row {}: empty youtube_id", path.display(), line + 2);
            }
            let text = record.get(cap).unwrap_or("").trim().to_owned();
            let entry = groups.entry(id.clone()).or_insert_with(|| {
                order.push(id.clone());
                Vec::new()
            });
            if text.is_empty() {
                notes.empty_captions_dropped += 1;
            } else {
                entry.push(text);
            }
        }
        let dirs = [base.join(stem), base.clone()];
        for id in order {
            let name = format!("Y{id}");
            // A missing file keeps its expected path so that it is reported by name.
            let audio = find_audio(&dirs, &name)
                .unwrap_or_else(|| base.join(stem).join(format!("{name}.wav")));
            out.push(Candidate {
                clip_id: relative_id(root, &audio),
                path: audio,
                split,
                captions: groups.remove(&id).unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

pub fn load_wavcaps(
    root: &Path,
    p: &DatasetParams,
    notes: &mut LoadNotes,
) -> anyhow::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for (source, &split) in &p.wavcaps_sources {
        let mut files: Vec<PathBuf> = Vec::new();
        let dir = root.join("json_files").join(source);
        if dir.is_dir() {
            for entry in
                std::fs::read_dir(&dir).with_context(|| format!("listing `{}`", dir.display()))?
            {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "json") {
                    files.push(path);
                }
            }
        }
        let flat = root.join(format!("{source}.json"));
        if flat.exists() {
            files.push(flat);
        }
        files.sort();
        if files.is_empty() {
            bail!(
                "wavcaps source `{source}`: no JSON in `{}` nor `{source}.json` in `{}`",
                dir.display(),
                root.display()
            );
        }
        for file in files {
            let json: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&file).with_context(|| format!("reading `{}`", file.display()))?,
            )
            .with_context(|| format!("parsing `{}`", file.display()))?;
            let data = json["data"]
                .as_array()
                .with_context(|| format!("`{}` has no `data` array", file.display()))?;
            let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
            for (k, item) in data.iter().enumerate() {
                let id = match &item["id"] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => bail!("`{}`: entry {k} has no `id`", file.display()),
                };
                let stem = match id.rsplit_once('.') {
                    Some((s, ext))
                        if ["wav", "flac", "mp3", "ogg"]
                            .contains(&ext.to_ascii_lowercase().as_str()) =>
                    {
                        s.to_owned()
                    }
                    _ => id.clone(),
                };
                let text = item["caption"].as_str().unwrap_or("").trim().to_owned();
                let audio = root.join(source).join(format!("{stem}.flac"));
                let index = *by_id.entry(stem).or_insert_with(|| {
                    out.push(Candidate {
                        clip_id: relative_id(root, &audio),
                        path: audio,
                        split,
                        captions: Vec::new(),
                    });
                    out.len() - 1
                });
                if text.is_empty() {
                    notes.empty_captions_dropped += 1;
                } else {
                    out[index].captions.push(text);
                }
            }
        }
    }
    Ok(out)
}

pub fn load_csv(
    root: &Path,
    p: &DatasetParams,
    notes: &mut LoadNotes,
) -> anyhow::Result<Vec<Candidate>> {
    let path = root.join(&p.csv_file);
    let mut reader = open_csv(&path)?;
    let headers = reader
        .headers()
        .with_context(|| format!("reading `{}`", path.display()))?
        .clone();
    let file_col = column(&headers, "file", &path)?;
    let cap_col = column(&headers, "caption", &path)?;
    let split_col = headers.iter().position(|h| h.trim() == "split");
    let mut out: Vec<Candidate> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (line, record) in reader.records().enumerate() {
        let row = line + 2;
        let record = record.with_context(|| format!("`{}` row {row}", path.display()))?;
        let file = record.get(file_col).unwrap_or("").trim();
        if file.is_empty() {
            bail!("`{}` row {row}: empty file", path.display());
        }
        let split = match split_col
            .and_then(|c| record.get(c))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(s) => s
                .parse()
                .with_context(|| format!("`{}` row {row}", path.display()))?,
            None => p.default_split,
        };
        let audio = if Path::new(file).is_absolute() {
            PathBuf::from(file)
        } else {
            root.join(file)
        };
        let id = relative_id(root, &audio);
        let k = *index.entry(id.clone()).or_insert_with(|| {
            out.push(Candidate {
                clip_id: id.clone(),
                path: audio.clone(),
                split,
                captions: Vec::new(),
            });
            out.len() - 1
        });
        if out[k].split != split {
            bail!(
                "`{}` row {row}: `{file}` is in split {} and {split}",
                path.display(),
                out[k].split
            );
        }
        let text = record.get(cap_col).unwrap_or("").trim();
        if text.is_empty() {
            notes.empty_captions_dropped += 1;
        } else {
            out[k].captions.push(text.to_owned());
        }
    }
    Ok(out)
}

/// A clip left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

/// Loads the index, checks every clip's audio; returns the index, the skipped clips and metrics.
pub fn build(
    root: &Path,
    p: &DatasetParams,
) -> anyhow::Result<(DatasetIndex, Vec<Skipped>, serde_json::Value)> {
    let root = std::fs::canonicalize(root)
        .with_context(|| format!("data set root `{}`", root.display()))?;
    // For the csv format the root may be the CSV file itself.
    let mut p = p.clone();
    let root = if root.is_file() && p.format == Format::Csv {
        p.csv_file = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        root.parent().map(Path::to_owned).unwrap_or(root)
    } else {
        root
    };
    let p = &p;
    let mut notes = LoadNotes::default();
    let candidates = match p.format {
        Format::Clotho => load_clotho(&root, p, &mut notes)?,
        Format::Audiocaps => load_audiocaps(&root, p, &mut notes)?,
        Format::Wavcaps => load_wavcaps(&root, p, &mut notes)?,
        Format::Csv => load_csv(&root, p, &mut notes)?,
    };
    let checked: Vec<Result<f64, String>> = candidates
        .par_iter()
        .map(|c| {
            if c.captions.is_empty() {
                return Err("no caption".to_owned());
            }
            if !c.path.exists() {
                return Err("missing audio file".to_owned());
            }
            crate::audio::decode(&c.path)
                .map(|a| a.seconds())
                .map_err(|e| format!("{:#}", e.root_cause()))
        })
        .collect();
    let mut index = DatasetIndex::default();
    let mut skipped = Vec::new();
    for (c, r) in candidates.into_iter().zip(checked) {
        match r {
            Ok(duration_s) => {
                for (k, text) in c.captions.into_iter().enumerate() {
                    index.captions.push(DatasetCaption {
                        caption_id: format!("{}#{k}", c.clip_id),
                        clip_id: c.clip_id.clone(),
                        text,
                    });
                }
                index.clips.push(DatasetClip {
                    clip_id: c.clip_id,
                    file: c.path.to_string_lossy().into_owned(),
                    split: c.split,
                    duration_s,
                });
            }
            Err(reason) => {
                let file = c.path.to_string_lossy().into_owned();
                if p.on_error == OnError::Fail {
                    bail!("`{file}`: {reason} (set on_error = \"skip\" to leave such clips out)");
                }
                skipped.push(Skipped { file, reason });
            }
        }
    }
    if index.clips.is_empty() {
        bail!("no usable clip in `{}`", root.display());
    }
    let mut metrics = serde_json::json!({
        "clips": index.clips.len(),
        "captions": index.captions.len(),
        "skipped": skipped.len(),
        "empty_captions_dropped": notes.empty_captions_dropped,
        "audio_seconds": index.clips.iter().map(|c| c.duration_s).sum::<f64>(),
    });
    if p.format == Format::Clotho {
        metrics["clotho_metadata_rows"] = notes.metadata_rows.into();
    }
    for split in Split::ALL {
        let ids: std::collections::HashSet<&str> = index
            .clips
            .iter()
            .filter(|c| c.split == split)
            .map(|c| c.clip_id.as_str())
            .collect();
        metrics[format!("{split}_clips")] = ids.len().into();
        metrics[format!("{split}_captions")] = index
            .captions
            .iter()
            .filter(|c| ids.contains(c.clip_id.as_str()))
            .count()
            .into();
    }
    Ok((index, skipped, metrics))
}

/// The `dataset` stage kind.
#[derive(Debug, Default)]
pub struct Dataset;

impl StageKind for Dataset {
    fn name(&self) -> &'static str {
        "dataset"
    }

    fn summary(&self) -> &'static str {
        "Indexes a data set on disk (ClothoV2, AudioCaps, WavCaps or a CSV), checking every audio file"
    }

    fn version(&self) -> u32 {
        1
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(&["root"], &[])?;
        inputs.expect_single("root")?;
        let p: DatasetParams = parse_params(params)?;
        p.validate()?;
        Plan::new(&p, Resources::ALL_CORES)
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let params: DatasetParams = ctx.params()?;
        let root = ctx.input("root")?;
        let (index, skipped, metrics) =
            crate::synth::pool(ctx.threads)?.install(|| build(root, &params))?;
        for s in &skipped {
            ctx.reporter
                .log(&format!("skipped `{}`: {}", s.file, s.reason));
        }
        index.save(ctx.out_dir)?;
        std::fs::write(
            ctx.out_dir.join("skipped.json"),
            serde_json::to_vec_pretty(&skipped)?,
        )?;
        ctx.write_metrics(&metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(format: &str, extra: &str) -> DatasetParams {
        let t: toml::Table = toml::from_str(&format!("format = \"{format}\"\n{extra}")).unwrap();
        let p: DatasetParams = parse_params(&t).unwrap();
        p.validate().unwrap();
        p
    }

    fn wav(path: &Path, seconds: f32, sr: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: sr,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..(seconds * sr as f32) as usize {
            let s = ((i as f32 * 0.05).sin() * 8000.0) as i16;
            w.write_sample(s).unwrap();
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    /// A minimal FLAC encoder (16-bit mono (channels - 1 = 0 in STREAMINFO), VERBATIM subframes, fixed 4096-sample blocks):
    /// enough to write real FLAC fixtures without an encoder crate.
    fn flac(path: &Path, samples: &[i16], sr: u32) {
        fn crc8(data: &[u8]) -> u8 {
            let mut crc = 0u8;
            for &b in data {
                crc ^= b;
                for _ in 0..8 {
                    crc = if crc & 0x80 != 0 {
                        (crc << 1) ^ 0x07
                    } else {
                        crc << 1
                    };
                }
            }
            crc
        }
        fn crc16(data: &[u8]) -> u16 {
            let mut crc = 0u16;
            for &b in data {
                crc ^= (b as u16) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 {
                        (crc << 1) ^ 0x8005
                    } else {
                        crc << 1
                    };
                }
            }
            crc
        }
        const BLOCK: usize = 4096;
        let mut out = b"fLaC".to_vec();
        out.extend([0x80, 0, 0, 34]);
        out.extend((BLOCK as u16).to_be_bytes());
        out.extend((BLOCK as u16).to_be_bytes());
        out.extend([0u8; 6]);
        let packed: u64 = ((sr as u64) << 44) | (15u64 << 36) | samples.len() as u64;
        out.extend(packed.to_be_bytes());
        out.extend([0u8; 16]);
        for (n, block) in samples.chunks(BLOCK).enumerate() {
            assert!(n < 128);
            let mut frame = vec![0xFF, 0xF8, 0x70, 0x08, n as u8];
            frame.extend(((block.len() - 1) as u16).to_be_bytes());
            frame.push(crc8(&frame));
            frame.push(0x02);
            for s in block {
                frame.extend(s.to_be_bytes());
            }
            let crc = crc16(&frame);
            frame.extend(crc.to_be_bytes());
            out.extend(frame);
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn clotho_with_quoted_captions_odd_names_and_latin1_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("clotho_captions_development.csv"),
            "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n\
             \"Rain, on a roof (2).wav\",\"Rain falls, steadily.\",rain,\"A \"\"big\"\" storm\",wet,\n\
             dog's bark & co.wav,a dog barks,dog,the dog,a hound,woof woof\n",
        )
        .unwrap();
        std::fs::write(
            root.join("clotho_captions_validation.csv"),
            "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\nv 1.wav,a,b,c,d,e\n",
        )
        .unwrap();
        std::fs::write(
            root.join("clotho_captions_evaluation.csv"),
            "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\ne.wav,a,b,c,d,e\n",
        )
        .unwrap();
        let mut meta =
            b"file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license\n"
                .to_vec();
        meta.extend(b"\"Rain, on a roof (2).wav\",rain;caf\xe9,1,http://x,,J\xf6rg,CC\n");
        std::fs::write(root.join("clotho_metadata_development.csv"), meta).unwrap();
        wav(
            &root.join("development/Rain, on a roof (2).wav"),
            0.5,
            44100,
        );
        wav(&root.join("development/dog's bark & co.wav"), 0.3, 44100);
        wav(&root.join("validation/v 1.wav"), 0.3, 44100);
        // evaluation/e.wav is missing.
        let err = build(root, &params("clotho", "")).unwrap_err().to_string();
        assert!(err.contains("e.wav") && err.contains("missing"), "{err}");

        let (index, skipped, metrics) =
            build(root, &params("clotho", "on_error = \"skip\"")).unwrap();
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].file.ends_with("evaluation/e.wav"));
        assert_eq!(index.clips.len(), 3);
        assert_eq!(
            index.clips[0].clip_id,
            "development/Rain, on a roof (2).wav"
        );
        assert!(Path::new(&index.clips[0].file).is_absolute());
        assert!((index.clips[0].duration_s - 0.5).abs() < 1e-3);
        assert_eq!(index.clips[2].split, Split::Val);
        let rain: Vec<&str> = index
            .captions
            .iter()
            .filter(|c| c.clip_id == index.clips[0].clip_id)
            .map(|c| c.text.as_str())
            .collect();
        assert_eq!(
            rain,
            ["Rain falls, steadily.", "rain", "A \"big\" storm", "wet"]
        );
        assert_eq!(metrics["empty_captions_dropped"], 1);
        assert_eq!(metrics["clotho_metadata_rows"], 1);
        assert_eq!(metrics["skipped"], 1);
        assert_eq!(metrics["train_captions"], 9);
    }

    #[test]
    fn audiocaps_groups_captions_by_youtube_id() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("train.csv"), "audiocap_id,youtube_id,start_time,caption\n1,abc,30,A man speaks\n2,def,0,\"Wind, then rain\"\n").unwrap();
        std::fs::write(
            root.join("val.csv"),
            "audiocap_id,youtube_id,start_time,caption\n3,ghi,10,one\n4,ghi,10,two\n5,ghi,10,three\n6,jkl,0,x\n",
        )
        .unwrap();
        wav(&root.join("audio/train/Yabc.wav"), 0.2, 16000);
        wav(&root.join("audio/Ydef.wav"), 0.2, 16000);
        wav(&root.join("audio/val/Yghi.wav"), 0.2, 16000);
        std::fs::create_dir_all(root.join("audio/val")).unwrap();
        std::fs::write(root.join("audio/val/Yjkl.wav"), b"").unwrap(); // empty file
        let p = params(
            "audiocaps",
            "audio_dir = \"audio\"\non_error = \"skip\"\naudiocaps_splits = { train = \"train\", val = \"val\" }",
        );
        let (index, skipped, _) = build(root, &p).unwrap();
        assert_eq!(
            index
                .clips
                .iter()
                .map(|c| c.clip_id.as_str())
                .collect::<Vec<_>>(),
            [
                "audio/train/Yabc.wav",
                "audio/Ydef.wav",
                "audio/val/Yghi.wav"
            ]
        );
        assert_eq!(
            index
                .captions
                .iter()
                .filter(|c| c.clip_id == "audio/val/Yghi.wav")
                .count(),
            3
        );
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0].file.ends_with("Yjkl.wav") && skipped[0].reason.contains("empty"),
            "{skipped:?}"
        );
        // The default splits need test.csv.
        assert!(build(root, &params("audiocaps", "audio_dir = \"audio\"")).is_err());
    }

    #[test]
    fn wavcaps_json_with_real_flac_audio() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("json_files/SoundBible")).unwrap();
        std::fs::write(
            root.join("json_files/SoundBible/sb_final.json"),
            r#"{"num_captions_per_audio": 1, "data": [
                {"id": "1234", "caption": "A bell rings.", "duration": 0.4, "audio": "wav_path"},
                {"id": 99, "caption": "Thunder rolls.", "duration": 1.0}]}"#,
        )
        .unwrap();
        std::fs::write(
            root.join("FreeSound.json"),
            r#"{"num_captions_per_audio": 1, "data": [{"id": "Yxyz.wav", "caption": "Birds sing.", "duration": 0.2}]}"#,
        )
        .unwrap();
        let tone: Vec<i16> = (0..6000)
            .map(|i| ((i as f32 * 0.1).sin() * 10000.0) as i16)
            .collect();
        flac(&root.join("SoundBible/1234.flac"), &tone, 16000);
        flac(&root.join("FreeSound/Yxyz.flac"), &tone[..3200], 16000);
        std::fs::create_dir_all(root.join("SoundBible")).unwrap();
        std::fs::write(root.join("SoundBible/99.flac"), b"fLaC garbage").unwrap();
        crate::audio::decode(&root.join("SoundBible/1234.flac"))
            .map_err(|e| format!("{e:#}"))
            .unwrap();
        let p = params(
            "wavcaps",
            "on_error = \"skip\"\nwavcaps_sources = { SoundBible = \"train\", FreeSound = \"val\" }",
        );
        let (index, skipped, _) = build(root, &p).unwrap();
        assert_eq!(index.clips.len(), 2, "{skipped:?}");
        assert_eq!(index.clips[0].clip_id, "FreeSound/Yxyz.flac");
        assert_eq!(index.clips[0].split, Split::Val);
        assert!((index.clips[1].duration_s - 6000.0 / 16000.0).abs() < 1e-6);
        let decoded = crate::audio::decode(Path::new(&index.clips[1].file)).unwrap();
        assert!((decoded.samples[100] - tone[100] as f32 / 32768.0).abs() < 1e-6);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].file.ends_with("SoundBible/99.flac"));
    }

    #[test]
    fn csv_folder_with_optional_split_and_plan_checks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        wav(&root.join("a.wav"), 0.2, 8000);
        wav(&root.join("sub/b c.wav"), 0.2, 8000);
        std::fs::write(root.join("captions.csv"), "file,caption,split\na.wav,first,train\na.wav,\"second, too\",train\nsub/b c.wav,third,\n").unwrap();
        let (index, _, metrics) = build(root, &params("csv", "default_split = \"test\"")).unwrap();
        assert_eq!(index.clips.len(), 2);
        assert_eq!(index.clips[1].split, Split::Test);
        assert_eq!(index.captions[1].text, "second, too");
        assert_eq!(metrics["train_captions"], 2);
        // The root may be the CSV file itself.
        let (again, _, _) = build(
            &root.join("captions.csv"),
            &params("csv", "default_split = \"test\""),
        )
        .unwrap();
        assert_eq!(again, index);

        let inputs = InputCounts([("root".to_owned(), 1)].into());
        let t: toml::Table =
            toml::from_str("format = \"clotho\"\nclotho_splits = { dev = \"train\" }").unwrap();
        assert_eq!(
            Dataset.plan(&t, &inputs).unwrap_err().key.as_deref(),
            Some("clotho_splits.dev")
        );
        let t: toml::Table = toml::from_str("format = \"clotho\"\non_error = \"ignore\"").unwrap();
        assert_eq!(
            Dataset.plan(&t, &inputs).unwrap_err().key.as_deref(),
            Some("on_error")
        );
        let t: toml::Table = toml::from_str("format = \"csv\"").unwrap();
        assert!(Dataset.plan(&t, &InputCounts::default()).is_err());
        assert!(Dataset.plan(&t, &inputs).is_ok());
    }
}
