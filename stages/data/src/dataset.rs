//! The `dataset` kind: an index of a real data set on disk (input `root`, an external path).
//!
//! Formats (see `docs/method.md`):
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
//! Bad data, found while reading the index files or the audio, fails the node
//! (`on_error = "fail"`) or is left out (`on_error = "skip"`: listed with the reason in
//! `skipped.json`, counted in `metrics.json` and reported as a warning, one line each up to
//! [`MAX_WARNINGS`], then one line with the rest's count). Problems of a row of an index file
//! name the file and its line (line 1 is a CSV's header; for a WavCaps JSON, the line where the
//! entry starts): a row that is not valid UTF-8, an empty file name or id, an empty caption, a
//! Clotho row with more or fewer captions than the header's `caption_N` columns, a CSV row whose
//! number of fields differs from the header's, an unknown split. A Clotho row is a clip, so the
//! clip is left out; an AudioCaps, CSV or WavCaps row is one caption. Problems of a clip name its
//! audio file: no caption left, missing, empty, undecodable or truncated audio (fewer samples
//! than the WAV or FLAC header promises, an Ogg stream without its end, a packet that fails to
//! decode).
//!
//! Output: `clips.parquet` (clip id = audio path relative to the root; `file` =
//! `audio/<clip id>`, through the symbolic link `audio` → the root, so the index does not depend
//! on where the root is), `captions.parquet`, `metrics.json`, `skipped.json`. The executor hashes
//! the artifact through the link (by content), so the link's target never enters a key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use pipeline_api::{InputCounts, ParamError, Plan, Resources, RunContext, StageKind, parse_params};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use pipeline_formats::{DatasetCaption, DatasetClip, DatasetIndex, Split};

/// Name of the symbolic link, in the output, to the data set root; clip files are relative to
/// the output through it.
pub const AUDIO_LINK: &str = "audio";

/// Skipped items reported one warning each; the rest in one line.
pub const MAX_WARNINGS: usize = 20;

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
    /// What to do with bad data (a bad row of an index file; missing, empty, undecodable or
    /// truncated audio): "fail" or "skip" (listed in skipped.json, reported as warnings).
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

/// Something left out (`on_error = "skip"`), and why: a row of an index file or a clip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    /// The file at fault, relative to the data set root: an index file (CSV, JSON) for a row,
    /// the audio file for a clip.
    pub file: String,
    /// For a row: its line in `file` (1 is a CSV's header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The clip concerned, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_id: Option<String>,
    pub reason: String,
}

impl Skipped {
    /// "`<root>/<file>` line N: reason", for messages.
    pub fn describe(&self, root: &Path) -> String {
        let file = root.join(&self.file);
        match self.line {
            Some(line) => format!("`{}` line {line}: {}", file.display(), self.reason),
            None => format!("`{}`: {}", file.display(), self.reason),
        }
    }
}

/// Collects the problems found while loading: fails at the first under `on_error = "fail"`,
/// keeps them all under `"skip"`.
#[derive(Debug)]
pub struct Problems {
    root: PathBuf,
    on_error: OnError,
    pub skipped: Vec<Skipped>,
    /// Rows of `clotho_metadata_<subset>.csv` (Clotho only).
    pub metadata_rows: usize,
}

impl Problems {
    pub fn new(root: &Path, on_error: OnError) -> Self {
        Self {
            root: root.to_owned(),
            on_error,
            skipped: Vec::new(),
            metadata_rows: 0,
        }
    }

    /// A bad row: line `line` of `file`.
    pub fn row(
        &mut self,
        file: &Path,
        line: usize,
        clip_id: Option<String>,
        reason: impl Into<String>,
    ) -> anyhow::Result<()> {
        self.report(Skipped {
            file: relative_id(&self.root, file),
            line: Some(line),
            clip_id,
            reason: reason.into(),
        })
    }

    /// A bad clip (its audio, or no caption left).
    pub fn clip(&mut self, c: &Candidate, reason: impl Into<String>) -> anyhow::Result<()> {
        self.report(Skipped {
            file: relative_id(&self.root, &c.path),
            line: None,
            clip_id: Some(c.clip_id.clone()),
            reason: reason.into(),
        })
    }

    fn report(&mut self, s: Skipped) -> anyhow::Result<()> {
        if self.on_error == OnError::Fail {
            let what = if s.line.is_some() { "rows" } else { "clips" };
            bail!(
                "{} (set on_error = \"skip\" to leave such {what} out)",
                s.describe(&self.root)
            );
        }
        self.skipped.push(s);
        Ok(())
    }
}

fn relative_id(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// One record of a CSV file: its line (1 = the header) and its fields, or why they are not
/// text.
struct CsvRow {
    line: usize,
    fields: Result<Vec<String>, String>,
}

/// Reads a CSV file (UTF-8, an optional byte-order mark): the header's fields and every record.
/// A record that is not valid UTF-8 is returned as a problem of its line, so that it can be
/// skipped; a header that is not fails.
fn read_csv(path: &Path) -> anyhow::Result<(Vec<String>, Vec<CsvRow>)> {
    let mut bytes = std::fs::read(path).with_context(|| format!("reading `{}`", path.display()))?;
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(bytes.as_slice());
    let mut headers: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let more = reader.read_byte_record(&mut record).map_err(|e| {
            let line = e.position().map_or(0, csv::Position::line);
            anyhow::anyhow!("`{}` line {line}: cannot read the CSV: {e}", path.display())
        })?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, csv::Position::line) as usize;
        let fields: Result<Vec<String>, String> = record
            .iter()
            .enumerate()
            .map(|(i, field)| {
                std::str::from_utf8(field).map(str::to_owned).map_err(|e| {
                    let column = headers
                        .as_ref()
                        .and_then(|h| h.get(i))
                        .map_or_else(|| format!("field {}", i + 1), |h| format!("`{h}`"));
                    format!(
                        "not valid UTF-8: byte 0x{:02x} at offset {} of column {column}",
                        field[e.valid_up_to()],
                        e.valid_up_to()
                    )
                })
            })
            .collect();
        match &headers {
            None => {
                let fields = fields.map_err(|reason| {
                    anyhow::anyhow!("`{}` line {line} (the header): {reason}", path.display())
                })?;
                headers = Some(fields.iter().map(|h| h.trim().to_owned()).collect());
            }
            Some(_) => rows.push(CsvRow { line, fields }),
        }
    }
    let headers = headers.with_context(|| format!("`{}` is empty", path.display()))?;
    Ok((headers, rows))
}

fn column(headers: &[String], name: &str, path: &Path) -> anyhow::Result<usize> {
    headers
        .iter()
        .position(|h| h == name)
        .with_context(|| format!("`{}` has no column `{name}`", path.display()))
}

/// The row's fields, or `None` after reporting why it has none (not UTF-8) or not as many as
/// the header.
fn fields_of(
    row: CsvRow,
    headers: &[String],
    path: &Path,
    problems: &mut Problems,
) -> anyhow::Result<Option<Vec<String>>> {
    match row.fields {
        Err(reason) => {
            problems.row(path, row.line, None, reason)?;
            Ok(None)
        }
        Ok(fields) if fields.len() != headers.len() => {
            problems.row(
                path,
                row.line,
                None,
                format!(
                    "{} fields where the header has {}",
                    fields.len(),
                    headers.len()
                ),
            )?;
            Ok(None)
        }
        Ok(fields) => Ok(Some(fields)),
    }
}

pub fn load_clotho(
    root: &Path,
    p: &DatasetParams,
    problems: &mut Problems,
) -> anyhow::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for subset in ["development", "validation", "evaluation"] {
        let Some(&split) = p.clotho_splits.get(subset) else {
            continue;
        };
        let path = root.join(format!("clotho_captions_{subset}.csv"));
        let (headers, rows) = read_csv(&path)?;
        let file_col = column(&headers, "file_name", &path)?;
        let caption_cols: Vec<usize> = headers
            .iter()
            .enumerate()
            .filter(|(_, h)| h.starts_with("caption_"))
            .map(|(i, _)| i)
            .collect();
        anyhow::ensure!(
            !caption_cols.is_empty(),
            "`{}` has no caption_N columns",
            path.display()
        );
        let expected = caption_cols.len();
        let others = headers.len() - expected;
        for row in rows {
            let line = row.line;
            let fields = match row.fields {
                Ok(f) => f,
                Err(reason) => {
                    problems.row(&path, line, None, reason)?;
                    continue;
                }
            };
            let file_name = fields.get(file_col).map_or("", |s| s.trim());
            if file_name.is_empty() {
                problems.row(&path, line, None, "empty file_name")?;
                continue;
            }
            let audio = root.join(subset).join(file_name);
            let clip_id = relative_id(root, &audio);
            if fields.len() != headers.len() {
                let found = fields.len().saturating_sub(others);
                problems.row(
                    &path,
                    line,
                    Some(clip_id),
                    format!("{found} captions, expected {expected}"),
                )?;
                continue;
            }
            if let Some(&c) = caption_cols.iter().find(|&&c| fields[c].trim().is_empty()) {
                problems.row(
                    &path,
                    line,
                    Some(clip_id),
                    format!("empty caption (column `{}`)", headers[c]),
                )?;
                continue;
            }
            out.push(Candidate {
                clip_id,
                path: audio,
                split,
                captions: caption_cols
                    .iter()
                    .map(|&c| fields[c].trim().to_owned())
                    .collect(),
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
            let mut record = csv::StringRecord::new();
            loop {
                let more = reader.read_record(&mut record).map_err(|e| {
                    let line = e.position().map_or(0, csv::Position::line);
                    anyhow::anyhow!("`{}` line {line}: cannot read the CSV: {e}", meta.display())
                })?;
                if !more {
                    break;
                }
                problems.metadata_rows += 1;
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
    problems: &mut Problems,
) -> anyhow::Result<Vec<Candidate>> {
    let mut out = Vec::new();
    let base = root.join(&p.audio_dir);
    for (stem, &split) in &p.audiocaps_splits {
        let path = root.join(format!("{stem}.csv"));
        let (headers, rows) = read_csv(&path)?;
        let yt = column(&headers, "youtube_id", &path)?;
        let cap = column(&headers, "caption", &path)?;
        let mut order: Vec<String> = Vec::new();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in rows {
            let line = row.line;
            let Some(fields) = fields_of(row, &headers, &path, problems)? else {
                continue;
            };
            let id = fields[yt].trim();
            if id.is_empty() {
                problems.row(&path, line, None, "empty youtube_id")?;
                continue;
            }
            let text = fields[cap].trim();
            if text.is_empty() {
                problems.row(&path, line, None, format!("empty caption of `{id}`"))?;
                continue;
            }
            groups
                .entry(id.to_owned())
                .or_insert_with(|| {
                    order.push(id.to_owned());
                    Vec::new()
                })
                .push(text.to_owned());
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

/// The line (1-based) where each element of the array under `key` of the top-level JSON object
/// starts, or `None` when `bytes` does not hold such an array.
fn json_array_lines(bytes: &[u8], key: &str) -> Option<Vec<usize>> {
    let (mut line, mut depth, mut i) = (1usize, 0usize, 0usize);
    let mut last_string: &[u8] = &[];
    let mut current_key: &[u8] = &[];
    let mut in_array = false;
    let mut expect_element = false;
    let mut lines = Vec::new();
    while i < bytes.len() {
        let b = bytes[i];
        let element_start = in_array && depth == 2 && expect_element;
        match b {
            b'\n' => line += 1,
            b' ' | b'\t' | b'\r' => {}
            b'"' => {
                if element_start {
                    lines.push(line);
                    expect_element = false;
                }
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    match bytes[i] {
                        b'\\' => i += 1,
                        b'\n' => line += 1,
                        _ => {}
                    }
                    i += 1;
                }
                last_string = bytes.get(start..i).unwrap_or_default();
            }
            b':' if depth == 1 => current_key = last_string,
            b'{' | b'[' => {
                if element_start {
                    lines.push(line);
                    expect_element = false;
                }
                depth += 1;
                if b == b'[' && depth == 2 && current_key == key.as_bytes() {
                    in_array = true;
                    expect_element = true;
                }
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if in_array && depth == 1 {
                    return Some(lines);
                }
            }
            b',' if in_array && depth == 2 => expect_element = true,
            _ => {
                if element_start {
                    lines.push(line);
                    expect_element = false;
                }
            }
        }
        i += 1;
    }
    None
}

pub fn load_wavcaps(
    root: &Path,
    p: &DatasetParams,
    problems: &mut Problems,
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
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading `{}`", file.display()))?;
            let json: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing `{}`", file.display()))?;
            let data = json["data"]
                .as_array()
                .with_context(|| format!("`{}` has no `data` array", file.display()))?;
            let lines = json_array_lines(&bytes, "data")
                .filter(|l| l.len() == data.len())
                .with_context(|| {
                    format!("`{}`: cannot locate the entries of `data`", file.display())
                })?;
            let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
            for (item, &line) in data.iter().zip(&lines) {
                let id = match &item["id"] {
                    serde_json::Value::String(s) if !s.trim().is_empty() => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => {
                        problems.row(&file, line, None, "entry without `id`")?;
                        continue;
                    }
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
                let audio = root.join(source).join(format!("{stem}.flac"));
                let clip_id = relative_id(root, &audio);
                let text = match &item["caption"] {
                    serde_json::Value::String(s) if !s.trim().is_empty() => s.trim().to_owned(),
                    serde_json::Value::String(_) | serde_json::Value::Null => {
                        problems.row(&file, line, Some(clip_id), "empty caption")?;
                        continue;
                    }
                    _ => {
                        problems.row(&file, line, Some(clip_id), "`caption` is not a string")?;
                        continue;
                    }
                };
                let index = *by_id.entry(stem).or_insert_with(|| {
                    out.push(Candidate {
                        clip_id,
                        path: audio,
                        split,
                        captions: Vec::new(),
                    });
                    out.len() - 1
                });
                out[index].captions.push(text);
            }
        }
    }
    Ok(out)
}

pub fn load_csv(
    root: &Path,
    p: &DatasetParams,
    problems: &mut Problems,
) -> anyhow::Result<Vec<Candidate>> {
    let path = root.join(&p.csv_file);
    let (headers, rows) = read_csv(&path)?;
    let file_col = column(&headers, "file", &path)?;
    let cap_col = column(&headers, "caption", &path)?;
    let split_col = headers.iter().position(|h| h == "split");
    let mut out: Vec<Candidate> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows {
        let line = row.line;
        let Some(fields) = fields_of(row, &headers, &path, problems)? else {
            continue;
        };
        let file = fields[file_col].trim();
        if file.is_empty() {
            problems.row(&path, line, None, "empty file")?;
            continue;
        }
        let audio = if Path::new(file).is_absolute() {
            PathBuf::from(file)
        } else {
            root.join(file)
        };
        let id = relative_id(root, &audio);
        let split = match split_col
            .map(|c| fields[c].trim())
            .filter(|s| !s.is_empty())
        {
            Some(s) => match s.parse::<Split>() {
                Ok(split) => split,
                Err(e) => {
                    problems.row(&path, line, Some(id), e.to_string())?;
                    continue;
                }
            },
            None => p.default_split,
        };
        let text = fields[cap_col].trim();
        if text.is_empty() {
            problems.row(&path, line, Some(id), "empty caption")?;
            continue;
        }
        if let Some(&k) = index.get(&id)
            && out[k].split != split
        {
            let reason = format!(
                "`{file}` is in split {split} here and in split {} above",
                out[k].split
            );
            problems.row(&path, line, Some(id), reason)?;
            continue;
        }
        let k = *index.entry(id.clone()).or_insert_with(|| {
            out.push(Candidate {
                clip_id: id,
                path: audio,
                split,
                captions: Vec::new(),
            });
            out.len() - 1
        });
        out[k].captions.push(text.to_owned());
    }
    Ok(out)
}

/// What [`build`] finds: the index (clip files relative to the output, through [`AUDIO_LINK`]),
/// what was skipped, the metrics, and the data set root the link must point to.
#[derive(Debug)]
pub struct Built {
    pub index: DatasetIndex,
    pub skipped: Vec<Skipped>,
    pub metrics: serde_json::Value,
    /// The canonical root (a directory).
    pub root: PathBuf,
}

/// Loads the index, checks every clip's audio.
pub fn build(root: &Path, p: &DatasetParams) -> anyhow::Result<Built> {
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
    let mut problems = Problems::new(&root, p.on_error);
    let candidates = match p.format {
        Format::Clotho => load_clotho(&root, p, &mut problems)?,
        Format::Audiocaps => load_audiocaps(&root, p, &mut problems)?,
        Format::Wavcaps => load_wavcaps(&root, p, &mut problems)?,
        Format::Csv => load_csv(&root, p, &mut problems)?,
    };
    let skipped_rows = problems.skipped.len();
    let checked: Vec<Result<f64, String>> = candidates
        .par_iter()
        .map(|c| {
            if c.captions.is_empty() {
                return Err("no caption".to_owned());
            }
            if !c.path.exists() {
                return Err("missing audio file".to_owned());
            }
            crate::audio::try_decode(&c.path)
                .map(|a| a.seconds())
                .map_err(|e| format!("{e:#}"))
        })
        .collect();
    let mut index = DatasetIndex::default();
    for (c, r) in candidates.into_iter().zip(checked) {
        let duration_s = match r {
            Ok(d) => d,
            Err(reason) => {
                problems.clip(&c, reason)?;
                continue;
            }
        };
        for (k, text) in c.captions.into_iter().enumerate() {
            index.captions.push(DatasetCaption {
                caption_id: format!("{}#{k}", c.clip_id),
                clip_id: c.clip_id.clone(),
                text,
            });
        }
        let file = if c.path.starts_with(&root) {
            format!("{AUDIO_LINK}/{}", c.clip_id)
        } else {
            // An absolute path from the CSV itself, outside the root.
            c.path.to_string_lossy().into_owned()
        };
        index.clips.push(DatasetClip {
            clip_id: c.clip_id,
            file,
            split: c.split,
            duration_s,
        });
    }
    if index.clips.is_empty() {
        bail!("no usable clip in `{}`", root.display());
    }
    let skipped = problems.skipped;
    let mut metrics = serde_json::json!({
        "clips": index.clips.len(),
        "captions": index.captions.len(),
        "skipped": skipped.len(),
        "skipped_rows": skipped_rows,
        "skipped_clips": skipped.len() - skipped_rows,
        "audio_seconds": index.clips.iter().map(|c| c.duration_s).sum::<f64>(),
    });
    if p.format == Format::Clotho {
        metrics["clotho_metadata_rows"] = problems.metadata_rows.into();
    }
    for split in Split::ALL {
        let ids: std::collections::BTreeSet<&str> = index
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
    Ok(Built {
        index,
        skipped,
        metrics,
        root,
    })
}

/// Reports skipped items as warnings: one line each for the first [`MAX_WARNINGS`], then one
/// line with the count of the rest.
pub fn warn_skipped(
    reporter: &dyn pipeline_api::Reporter,
    skipped: &[Skipped],
    root: &Path,
    listed_in: &str,
) {
    let lines: Vec<String> = skipped
        .iter()
        .map(|s| format!("skipped {}", s.describe(root)))
        .collect();
    warn_capped(reporter, &lines, "items", listed_in);
}

/// Reports `lines` (one per skipped thing) as warnings: the first [`MAX_WARNINGS`] one each,
/// then one line counting the rest of `what`, every one of which `listed_in` lists.
pub fn warn_capped(
    reporter: &dyn pipeline_api::Reporter,
    lines: &[String],
    what: &str,
    listed_in: &str,
) {
    for line in lines.iter().take(MAX_WARNINGS) {
        reporter.warn(line);
    }
    if lines.len() > MAX_WARNINGS {
        reporter.warn(&format!(
            "skipped {} more {what} ({} in all, every one listed in {listed_in})",
            lines.len() - MAX_WARNINGS,
            lines.len()
        ));
    }
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
        // 2: clip files relative to the output (through `audio`), bad rows fail or are
        // skipped, truncated audio detected, `skipped.json` entries relative with lines.
        2
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
        let built = crate::synth::pool(ctx.threads)?.install(|| build(root, &params))?;
        warn_skipped(ctx.reporter, &built.skipped, &built.root, "skipped.json");
        let link = ctx.out_dir.join(AUDIO_LINK);
        std::os::unix::fs::symlink(&built.root, &link).with_context(|| {
            format!("linking `{}` to `{}`", link.display(), built.root.display())
        })?;
        built.index.save(ctx.out_dir)?;
        std::fs::write(
            ctx.out_dir.join("skipped.json"),
            serde_json::to_vec_pretty(&built.skipped)?,
        )?;
        ctx.write_metrics(&built.metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Recorder, content, run_kind};

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

    /// A WAV of `seconds` whose last `cut` bytes are removed: the header still promises all.
    fn truncated_wav(path: &Path, seconds: f32, cut: u64) {
        wav(path, seconds, 8000);
        let len = std::fs::metadata(path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(len - cut).unwrap();
    }

    fn clotho_header() -> &'static str {
        "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"
    }

    #[test]
    fn clotho_with_quoted_captions_odd_names_and_latin1_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("clotho_captions_development.csv"),
            "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n\
             \"Rain, on a roof (2).wav\",\"Rain falls, steadily.\",rain,\"A \"\"big\"\" storm\",wet,drops\n\
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

        let built = build(root, &params("clotho", "on_error = \"skip\"")).unwrap();
        let (index, skipped, metrics) = (built.index, built.skipped, built.metrics);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].file, "evaluation/e.wav");
        assert_eq!(skipped[0].line, None);
        assert_eq!(index.clips.len(), 3);
        assert_eq!(
            index.clips[0].clip_id,
            "development/Rain, on a roof (2).wav"
        );
        // Relative to the output, through the link to the root.
        assert_eq!(
            index.clips[0].file,
            "audio/development/Rain, on a roof (2).wav"
        );
        assert_eq!(built.root, std::fs::canonicalize(root).unwrap());
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
            [
                "Rain falls, steadily.",
                "rain",
                "A \"big\" storm",
                "wet",
                "drops"
            ]
        );
        assert_eq!(metrics["clotho_metadata_rows"], 1);
        assert_eq!(metrics["skipped"], 1);
        assert_eq!(metrics["skipped_clips"], 1);
        assert_eq!(metrics["skipped_rows"], 0);
        assert_eq!(metrics["train_captions"], 10);
        assert!(metrics.get("empty_captions_dropped").is_none());
    }

    /// Rows of a Clotho CSV with four or six captions, an empty caption or a byte that is not
    /// UTF-8: each fails the node under `fail`, naming the file and its line (a quoted caption
    /// spanning two lines counts as two), and is skipped and reported under `skip`.
    #[test]
    fn bad_clotho_rows_name_file_and_line_and_follow_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let good = "a.wav,\"one\nacross two lines\",2,3,4,5\n"; // lines 2-3
        let cases: [(&[u8], usize, &str); 4] = [
            (b"b.wav,1,2,3,4\n", 4, "4 captions, expected 5"),
            (b"c.wav,1,2,,4,5\n", 4, "empty caption (column `caption_3`)"),
            (b"d.wav,1,2,3,4,caf\xe9\n", 4, "not valid UTF-8"),
            (b"e.wav,1,2,3,4,5,6\n", 4, "6 captions, expected 5"),
        ];
        for name in ["a", "b", "c", "d", "e"] {
            wav(&root.join(format!("development/{name}.wav")), 0.1, 8000);
        }
        let only_dev = "clotho_splits = { development = \"train\" }";
        let csv = root.join("clotho_captions_development.csv");
        for (row, line, reason) in cases {
            let mut bytes = format!("{}{good}", clotho_header()).into_bytes();
            bytes.extend(row);
            std::fs::write(&csv, &bytes).unwrap();
            let err = format!(
                "{:#}",
                build(root, &params("clotho", only_dev)).unwrap_err()
            );
            assert!(
                err.contains("clotho_captions_development.csv")
                    && err.contains(&format!("line {line}:"))
                    && err.contains(reason),
                "{err}"
            );
            // One numbering: no "row", "record" or second line number from the CSV reader.
            assert!(
                !err.contains("row ")
                    && !err.contains("record")
                    && err.matches("line").count() == 1,
                "{err}"
            );
        }

        // All of them under skip: the good row stays, each bad one is listed with its line.
        let mut bytes = format!("{}{good}", clotho_header()).into_bytes();
        for (row, _, _) in cases {
            bytes.extend(row);
        }
        std::fs::write(&csv, &bytes).unwrap();
        let skip = format!("{only_dev}\non_error = \"skip\"");
        let built = build(root, &params("clotho", &skip)).unwrap();
        assert_eq!(built.index.clips.len(), 1);
        assert_eq!(built.index.captions[0].text, "one\nacross two lines");
        let lines: Vec<_> = built.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [Some(4), Some(5), Some(6), Some(7)]);
        for (s, (_, _, reason)) in built.skipped.iter().zip(cases) {
            assert_eq!(s.file, "clotho_captions_development.csv");
            assert!(s.reason.contains(reason), "{s:?}");
        }
        assert_eq!(
            built.skipped[0].clip_id.as_deref(),
            Some("development/b.wav")
        );
        assert_eq!(built.metrics["skipped_rows"], 4);

        // Through the kind: skipped.json, and one warning per skipped row.
        let out = tempfile::tempdir().unwrap();
        let recorder = Recorder::default();
        let table = format!("format = \"clotho\"\n{skip}");
        run_kind(&Dataset, &table, &[("root", root)], out.path(), &recorder).unwrap();
        let listed: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("skipped.json")).unwrap())
                .unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 4);
        assert_eq!(listed[2]["line"], 6);
        assert_eq!(listed[2]["file"], "clotho_captions_development.csv");
        let warnings = recorder.warnings();
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(
            warnings[1].contains("clotho_captions_development.csv")
                && warnings[1].contains("line 5")
                && warnings[1].contains("empty caption"),
            "{warnings:?}"
        );
    }

    #[test]
    fn truncated_audio_fails_or_is_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        wav(&root.join("a.wav"), 0.2, 8000);
        // The data chunk's header promises 0.5 s; the file holds half of it.
        truncated_wav(&root.join("b.wav"), 0.5, 4000);
        std::fs::write(
            root.join("captions.csv"),
            "file,caption\na.wav,first\nb.wav,second\n",
        )
        .unwrap();
        let err = format!("{:#}", build(root, &params("csv", "")).unwrap_err());
        assert!(
            err.contains("b.wav") && err.contains("truncated") && err.contains("on_error"),
            "{err}"
        );

        let out = tempfile::tempdir().unwrap();
        let recorder = Recorder::default();
        let table = "format = \"csv\"\non_error = \"skip\"";
        run_kind(&Dataset, table, &[("root", root)], out.path(), &recorder).unwrap();
        let index = DatasetIndex::load(out.path()).unwrap();
        assert_eq!(index.clips.len(), 1);
        assert_eq!(index.clips[0].file, "audio/a.wav");
        // The link makes the file readable from the output.
        let audio = crate::audio::decode(&out.path().join(&index.clips[0].file)).unwrap();
        assert_eq!(audio.samples.len(), 1600);
        let listed: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("skipped.json")).unwrap())
                .unwrap();
        assert_eq!(listed[0]["file"], "b.wav");
        assert!(
            listed[0]["reason"]
                .as_str()
                .unwrap()
                .starts_with("truncated: the header promises 4000 samples"),
            "{listed}"
        );
        let warnings = recorder.warnings();
        assert!(
            warnings.len() == 1
                && warnings[0].contains("b.wav")
                && warnings[0].contains("truncated"),
            "{warnings:?}"
        );
        let metrics: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("metrics.json")).unwrap())
                .unwrap();
        assert_eq!(metrics["skipped_clips"], 1);
    }

    #[test]
    fn bad_csv_and_audiocaps_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        wav(&root.join("a.wav"), 0.1, 8000);
        wav(&root.join("b.wav"), 0.1, 8000);
        let rows: [(&[u8], &str); 5] = [
            (b"a.wav,,train\n", "empty caption"),
            (b",x,train\n", "empty file"),
            (b"a.wav,x,dev\n", "unknown split `dev`"),
            (
                b"a.wav,x,test\n",
                "is in split test here and in split train above",
            ),
            (
                b"b.wav,\xff\xfe,train\n",
                "not valid UTF-8: byte 0xff at offset 0 of column `caption`",
            ),
        ];
        let csv = root.join("captions.csv");
        for (row, reason) in rows {
            let mut bytes = b"file,caption,split\na.wav,good,train\n".to_vec();
            bytes.extend(row);
            std::fs::write(&csv, &bytes).unwrap();
            let err = format!("{:#}", build(root, &params("csv", "")).unwrap_err());
            assert!(
                err.contains("captions.csv` line 3: ") && err.contains(reason),
                "{err}"
            );
        }
        let mut bytes = b"file,caption,split\na.wav,good,train\n".to_vec();
        for (row, _) in rows {
            bytes.extend(row);
        }
        bytes.extend(b"b.wav,fine,train\nb.wav,too,many,fields\n");
        std::fs::write(&csv, &bytes).unwrap();
        let built = build(root, &params("csv", "on_error = \"skip\"")).unwrap();
        assert_eq!(built.index.captions.len(), 2);
        let lines: Vec<_> = built.skipped.iter().filter_map(|s| s.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 9]);
        assert!(
            built.skipped[5]
                .reason
                .contains("4 fields where the header has 3")
        );

        // AudioCaps: an empty caption and a non-UTF-8 row leave the clip its good captions.
        std::fs::create_dir_all(root.join("ac")).unwrap();
        wav(&root.join("ac/audio/Yabc.wav"), 0.1, 8000);
        std::fs::write(
            root.join("ac/train.csv"),
            b"audiocap_id,youtube_id,start_time,caption\n1,abc,0,a dog\n2,abc,0,\n3,abc,0,caf\xe9\n",
        )
        .unwrap();
        let ac = "audio_dir = \"audio\"\naudiocaps_splits = { train = \"train\" }";
        let err = format!(
            "{:#}",
            build(&root.join("ac"), &params("audiocaps", ac)).unwrap_err()
        );
        assert!(
            err.contains("train.csv` line 3: empty caption of `abc`"),
            "{err}"
        );
        let built = build(
            &root.join("ac"),
            &params("audiocaps", &format!("{ac}\non_error = \"skip\"")),
        )
        .unwrap();
        assert_eq!(built.index.captions.len(), 1);
        assert_eq!(
            built.skipped.iter().map(|s| s.line).collect::<Vec<_>>(),
            [Some(3), Some(4)]
        );
    }

    #[test]
    fn a_truncated_flac_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tone: Vec<i16> = (0..10000).map(|i| (i % 200) as i16 * 50).collect();
        let path = dir.path().join("t.flac");
        flac(&path, &tone, 16000);
        assert_eq!(
            crate::audio::try_decode(&path).unwrap().samples.len(),
            10000
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3000]).unwrap();
        let err = format!("{:#}", crate::audio::try_decode(&path).unwrap_err());
        assert!(
            err.starts_with("truncated: the header promises 10000 samples per channel"),
            "{err}"
        );
    }

    #[test]
    fn json_entries_are_located_by_line() {
        let text = br#"{"num_captions_per_audio": 1, "note": "[not, it]",
  "data": [
    {"id": "a", "caption": "x, \"y\" ]"},
    {"id": 2,
     "caption": "z"}, 7,
    "s"
  ]}"#;
        assert_eq!(json_array_lines(text, "data"), Some(vec![3, 4, 5, 6]));
        assert_eq!(json_array_lines(b"{\"data\": []}", "data"), Some(vec![]));
        assert_eq!(json_array_lines(b"{\"other\": [1]}", "data"), None);
    }

    #[test]
    fn bad_wavcaps_entries_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let tone: Vec<i16> = (0..1600).map(|i| (i % 100) as i16 * 100).collect();
        flac(&root.join("SoundBible/1.flac"), &tone, 16000);
        std::fs::write(
            root.join("SoundBible.json"),
            "{\"data\": [\n{\"id\": \"1\", \"caption\": \"A bell.\"},\n{\"id\": \"1\", \"caption\": \"  \"},\n{\"caption\": \"no id\"}\n]}",
        )
        .unwrap();
        let p = "wavcaps_sources = { SoundBible = \"train\" }";
        let err = format!("{:#}", build(root, &params("wavcaps", p)).unwrap_err());
        assert!(
            err.contains("SoundBible.json` line 3: empty caption"),
            "{err}"
        );
        let built = build(
            root,
            &params("wavcaps", &format!("{p}\non_error = \"skip\"")),
        )
        .unwrap();
        assert_eq!(built.index.captions.len(), 1);
        let found: Vec<_> = built
            .skipped
            .iter()
            .map(|s| (s.line, s.reason.as_str()))
            .collect();
        assert_eq!(
            found,
            [(Some(3), "empty caption"), (Some(4), "entry without `id`")]
        );
    }

    /// The same data set in two places, indexed into two output directories: the same bytes,
    /// and the features of the two outputs are the same bytes too.
    #[test]
    fn outputs_do_not_depend_on_where_the_root_or_the_artifacts_live() {
        let make = |root: &Path| {
            std::fs::write(
                root.join("clotho_captions_development.csv"),
                format!("{}x.wav,a,b,c,d,e\ny.wav,f,g,h,i,j\n", clotho_header()),
            )
            .unwrap();
            wav(&root.join("development/x.wav"), 0.3, 16000);
            wav(&root.join("development/y.wav"), 0.2, 16000);
            // A bad clip: its reason must not carry the root either.
            truncated_wav(&root.join("development/y.wav"), 0.2, 100);
        };
        let table =
            "format = \"clotho\"\non_error = \"skip\"\nclotho_splits = { development = \"train\" }";
        let features = "max_seconds = 1.0";
        let mut outputs = Vec::new();
        let keep = (0..2)
            .map(|_| {
                let root = tempfile::tempdir().unwrap();
                make(root.path());
                let data = tempfile::tempdir().unwrap();
                let recorder = Recorder::default();
                run_kind(
                    &Dataset,
                    table,
                    &[("root", root.path())],
                    data.path(),
                    &recorder,
                )
                .unwrap();
                let feats = tempfile::tempdir().unwrap();
                run_kind(
                    &crate::features::Features,
                    features,
                    &[("dataset", data.path())],
                    feats.path(),
                    &recorder,
                )
                .unwrap();
                assert_eq!(
                    std::fs::read_link(data.path().join(AUDIO_LINK)).unwrap(),
                    std::fs::canonicalize(root.path()).unwrap()
                );
                outputs.push((content(data.path()), content(feats.path())));
                (root, data, feats)
            })
            .collect::<Vec<_>>();
        assert_eq!(outputs[0].0, outputs[1].0);
        assert_eq!(outputs[0].1, outputs[1].1);
        assert!(outputs[0].0.contains_key("skipped.json"));
        assert!(outputs[0].1.contains_key("features.safetensors"));
        let set = pipeline_formats::FeatureSet::load(keep[0].2.path()).unwrap();
        assert_eq!(set.clips[0].file, "audio/development/x.wav");
        let skipped = String::from_utf8(outputs[0].0["skipped.json"].clone()).unwrap();
        assert!(skipped.contains("development/y.wav") && skipped.contains("truncated"));
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
        let Built { index, skipped, .. } = build(root, &p).unwrap();
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
            skipped[0].file == "audio/val/Yjkl.wav" && skipped[0].reason.contains("empty"),
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
        let Built { index, skipped, .. } = build(root, &p).unwrap();
        assert_eq!(index.clips.len(), 2, "{skipped:?}");
        assert_eq!(index.clips[0].clip_id, "FreeSound/Yxyz.flac");
        assert_eq!(index.clips[0].split, Split::Val);
        assert!((index.clips[1].duration_s - 6000.0 / 16000.0).abs() < 1e-6);
        assert_eq!(index.clips[1].file, "audio/SoundBible/1234.flac");
        let decoded = crate::audio::decode(&root.join(&index.clips[1].clip_id)).unwrap();
        assert!((decoded.samples[100] - tone[100] as f32 / 32768.0).abs() < 1e-6);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].file, "SoundBible/99.flac");
    }

    #[test]
    fn csv_folder_with_optional_split_and_plan_checks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        wav(&root.join("a.wav"), 0.2, 8000);
        wav(&root.join("sub/b c.wav"), 0.2, 8000);
        std::fs::write(root.join("captions.csv"), "file,caption,split\na.wav,first,train\na.wav,\"second, too\",train\nsub/b c.wav,third,\n").unwrap();
        let Built { index, metrics, .. } =
            build(root, &params("csv", "default_split = \"test\"")).unwrap();
        assert_eq!(index.clips.len(), 2);
        assert_eq!(index.clips[1].split, Split::Test);
        assert_eq!(index.captions[1].text, "second, too");
        assert_eq!(metrics["train_captions"], 2);
        // The root may be the CSV file itself.
        let again = build(
            &root.join("captions.csv"),
            &params("csv", "default_split = \"test\""),
        )
        .unwrap();
        assert_eq!(again.index, index);

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
