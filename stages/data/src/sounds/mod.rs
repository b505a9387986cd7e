//! The `packaged-sounds` kind: a data set of real recordings taken from Debian packages that a
//! `fetch` stage unpacked (`<packages>/debian/<package>/`, the `dpkg-deb -x` tree).
//!
//! Each described sound of the selected packages is one source recording ([`collect`]: one
//! reader module per package, [`opensfx`] to [`widelands`], each with its descriptions in a
//! data file under `stages/data/sounds/`, [`table`]; shared types in [`catalog`]). It is
//! decoded, resampled to `sample_rate` and cut into clips of at most `max_seconds` (equal
//! parts, so no short remainder). Recordings, not clips, are split into train/val/test, per
//! package, by a seeded shuffle; takes of one sound ([`catalog::Recording::group`]) share a
//! split. Captions are drawn from templates around the description
//! ([`caption`]); the graded relevance of a caption to every clip of its split comes from the
//! two recordings' labels (category prefix and keyword overlap, [`caption::relevance`]).
//!
//! Outputs: `audio/<clip_id>.wav` (16-bit PCM mono), `clips.parquet`, `captions.parquet`,
//! `relevance.parquet`, `provenance.json` (package, version, original path, licence and
//! credits of every recording, and what was skipped), `metrics.json`.

pub mod caption;
pub mod catalog;
pub mod container;
pub mod freedesktop;
pub mod gcompris;
pub mod opensfx;
pub mod table;
#[cfg(test)]
mod tests;
pub mod tuxpaint;
pub mod wesnoth;
pub mod widelands;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use pipeline_api::{InputCounts, ParamError, Plan, Resources, RunContext, StageKind, parse_params};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use caption::Labels;
use catalog::{AudioData, PACKAGES, Recording};
use pipeline_formats::{DatasetCaption, DatasetClip, DatasetIndex, DatasetRelevance, Split};

/// Parameters of `packaged-sounds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SoundsParams {
    /// Seed of the split and of the captions.
    pub seed: u64,
    /// Packages to take sounds from (see [`catalog::PACKAGES`]).
    pub sources: Vec<String>,
    /// Captions per clip (1 to 20).
    pub captions_per_clip: usize,
    /// Longest clip in seconds (1 to 60); longer recordings are cut into equal parts.
    pub max_seconds: f64,
    /// Sample rate of the written WAV files in Hz (8000 to 48000).
    pub sample_rate: u32,
    /// Fraction of each package's recordings in the training split.
    pub train_fraction: f64,
    /// Fraction in the validation split; the rest is the test split.
    pub val_fraction: f64,
    /// At most this many recordings per package, in catalogue order (0: all).
    pub max_recordings_per_source: usize,
}

impl Default for SoundsParams {
    fn default() -> Self {
        Self {
            seed: 0,
            sources: PACKAGES.iter().map(|p| p.name.to_owned()).collect(),
            captions_per_clip: 5,
            max_seconds: 10.0,
            sample_rate: 32000,
            train_fraction: 0.7,
            val_fraction: 0.1,
            max_recordings_per_source: 0,
        }
    }
}

fn range_error(key: &str, range: &str, value: impl std::fmt::Display) -> ParamError {
    ParamError::at(key, format!("must be between {range}, got {value}"))
}

impl SoundsParams {
    pub fn validate(&self) -> Result<(), ParamError> {
        if self.sources.is_empty() {
            return Err(ParamError::at("sources", "needs at least one package"));
        }
        for (i, name) in self.sources.iter().enumerate() {
            if catalog::package(name).is_none() {
                let known: Vec<_> = PACKAGES.iter().map(|p| p.name).collect();
                return Err(ParamError::at(
                    "sources",
                    format!("unknown package `{name}` (supported: {})", known.join(", ")),
                ));
            }
            if self.sources[..i].contains(name) {
                return Err(ParamError::at(
                    "sources",
                    format!("`{name}` is listed twice"),
                ));
            }
        }
        if !(1..=20).contains(&self.captions_per_clip) {
            return Err(range_error(
                "captions_per_clip",
                "1 and 20",
                self.captions_per_clip,
            ));
        }
        if !(1.0..=60.0).contains(&self.max_seconds) {
            return Err(range_error("max_seconds", "1 and 60", self.max_seconds));
        }
        if !(8000..=48000).contains(&self.sample_rate) {
            return Err(range_error(
                "sample_rate",
                "8000 and 48000",
                self.sample_rate,
            ));
        }
        for (key, v) in [
            ("train_fraction", self.train_fraction),
            ("val_fraction", self.val_fraction),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(range_error(key, "0 and 1", v));
            }
        }
        if self.train_fraction + self.val_fraction > 1.0 + 1e-9 {
            return Err(ParamError::at(
                "val_fraction",
                "train_fraction + val_fraction must not exceed 1",
            ));
        }
        Ok(())
    }
}

/// The package's recordings that have a description, in a fixed order.
pub fn collect(package: &'static str, dir: &Path) -> anyhow::Result<Vec<Recording>> {
    let recordings = match package {
        catalog::OPENSFX => opensfx::collect(dir),
        catalog::GCOMPRIS => gcompris::collect(dir),
        catalog::TUXPAINT => tuxpaint::collect(dir),
        catalog::FREEDESKTOP => freedesktop::collect(dir),
        catalog::WESNOTH => wesnoth::collect(dir),
        catalog::WIDELANDS => widelands::collect(dir),
        other => anyhow::bail!("unsupported package `{other}`"),
    };
    recordings.with_context(|| format!("reading package `{package}` in `{}`", dir.display()))
}

/// The directory of `package` in the fetch artifact, or an error telling how to fetch it.
fn package_dir(root: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = root.join("debian").join(name);
    if dir.is_dir() {
        return Ok(dir);
    }
    let p = catalog::package(name).expect("validated package name");
    anyhow::bail!(
        "package `{name}` is not in input `packages` (no `{}`): add it to the fetch stage's \
         `params.debian`: {{ package = \"{name}\", version = \"{}\", sha256 = \"{}\" }} \
         (Debian bookworm, {:.1} MB download)",
        dir.display(),
        p.version,
        p.sha256,
        p.download_mb
    )
}

/// Mixes a seed with a stream number (SplitMix64 finaliser).
fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable number for a string (FNV-1a), to seed per-recording streams.
fn stream_of(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Splits of `n` recordings of one package: a seeded permutation, cut by the fractions.
fn assign_splits(n: usize, params: &SoundsParams, package: &str) -> Vec<Split> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(mix(params.seed, stream_of(package)));
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let n_train = (n as f64 * params.train_fraction).round() as usize;
    let n_val = ((n as f64 * params.val_fraction).round() as usize).min(n - n_train.min(n));
    let mut splits = vec![Split::Test; n];
    for (rank, &i) in order.iter().enumerate() {
        if rank < n_train {
            splits[i] = Split::Train;
        } else if rank < n_train + n_val {
            splits[i] = Split::Val;
        }
    }
    splits
}

/// Splits of one package's recordings: [`assign_splits`] over their groups (in order of first
/// appearance), so that the takes of one sound share a split. Where every recording is a
/// group of its own this is `assign_splits` over the recordings.
fn grouped_splits(found: &[Recording], params: &SoundsParams, package: &str) -> Vec<Split> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut group_of = Vec::with_capacity(found.len());
    let mut n_groups = 0;
    for rec in found {
        let g = match rec.group.as_deref() {
            Some(key) => *index.entry(key).or_insert_with(|| {
                n_groups += 1;
                n_groups - 1
            }),
            None => {
                n_groups += 1;
                n_groups - 1
            }
        };
        group_of.push(g);
    }
    let splits = assign_splits(n_groups, params, package);
    group_of.into_iter().map(|g| splits[g]).collect()
}

/// Decodes a recording to mono at `sample_rate`; container members go through a file in
/// `scratch` because the decoder reads files. The error names neither file: the recording is
/// named by its path in the package, and the reason is written to `provenance.json`, which must
/// not depend on where the input or the scratch directory live.
fn load_audio(
    rec: &Recording,
    id: &str,
    scratch: &Path,
    sample_rate: u32,
) -> anyhow::Result<Result<Vec<f32>, String>> {
    let decoded = match &rec.audio {
        AudioData::File(path) => crate::audio::try_decode(path),
        AudioData::Bytes { ext, data } => {
            let tmp = scratch.join(format!("{id}.{ext}"));
            std::fs::write(&tmp, data).with_context(|| format!("writing `{}`", tmp.display()))?;
            let audio = crate::audio::try_decode(&tmp);
            let _ = std::fs::remove_file(&tmp);
            audio
        }
    };
    Ok(decoded
        .and_then(|a| crate::audio::resample(&a.samples, a.sample_rate, sample_rate))
        .map_err(|e| format!("{e:#}")))
}

/// Equal parts of at most `max` samples each.
fn segments(len: usize, max: usize) -> Vec<std::ops::Range<usize>> {
    let parts = len.div_ceil(max).max(1);
    let step = len.div_ceil(parts);
    (0..parts)
        .map(|i| i * step..((i + 1) * step).min(len))
        .filter(|r| !r.is_empty())
        .collect()
}

/// One source recording after decoding.
struct Decoded {
    id: String,
    split: Split,
    duration_s: f64,
    /// `(clip_id, duration_s)` of its segments.
    clips: Vec<(String, f64)>,
    labels: Labels,
}

/// A recording's clips (`clip_id`, seconds), or why it was skipped.
type Outcome = Result<Vec<(String, f64)>, String>;

/// Quieter than this everywhere (about -80 dBFS) counts as silent.
const SILENCE: f32 = 1e-4;
/// Shorter recordings are skipped (empty placeholders in the packages).
const MIN_SECONDS: f64 = 0.05;

fn decode_and_write(
    rec: &Recording,
    id: &str,
    params: &SoundsParams,
    out_dir: &Path,
    scratch: &Path,
) -> anyhow::Result<Outcome> {
    let samples = match load_audio(rec, id, scratch, params.sample_rate)? {
        Ok(s) => s,
        Err(reason) => return Ok(Err(reason)),
    };
    let sr = params.sample_rate as f64;
    if (samples.len() as f64) < MIN_SECONDS * sr {
        return Ok(Err(format!("shorter than {MIN_SECONDS} s")));
    }
    if samples.iter().all(|x| x.abs() < SILENCE) {
        return Ok(Err("silent".into()));
    }
    let max = (params.max_seconds * sr).round() as usize;
    let mut clips = Vec::new();
    for (k, range) in segments(samples.len(), max).into_iter().enumerate() {
        let clip_id = format!("{id}-{k}");
        let path = out_dir.join("audio").join(format!("{clip_id}.wav"));
        write_wav(&path, &samples[range.clone()], params.sample_rate)?;
        clips.push((clip_id, range.len() as f64 / sr));
    }
    Ok(Ok(clips))
}

fn write_wav(path: &Path, samples: &[f32], sample_rate: u32) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("creating `{}`", path.display()))?;
    for &x in samples {
        w.write_sample((x.clamp(-1.0, 1.0) * 32767.0).round() as i16)?;
    }
    w.finalize()?;
    Ok(())
}

/// Short recording-id prefix per package.
fn prefix(package: &str) -> &'static str {
    match package {
        catalog::OPENSFX => "opensfx",
        catalog::GCOMPRIS => "gcompris",
        catalog::TUXPAINT => "tuxpaint",
        catalog::WESNOTH => "wesnoth",
        catalog::WIDELANDS => "widelands",
        _ => "freedesktop",
    }
}

/// Builds the whole data set from the unpacked packages under `root` into `out_dir`; returns
/// the metrics.
pub fn write_dataset(
    params: &SoundsParams,
    root: &Path,
    out_dir: &Path,
    scratch: &Path,
    reporter: &dyn pipeline_api::Reporter,
) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    std::fs::create_dir_all(out_dir.join("audio"))?;
    std::fs::create_dir_all(scratch)?;

    // Recordings of every package, with their ids and splits.
    let mut recordings: Vec<(String, Split, Recording)> = Vec::new();
    let mut versions = BTreeMap::new();
    for name in &params.sources {
        let dir = package_dir(root, name)?;
        let package = catalog::package(name).expect("validated package name").name;
        versions.insert(package, container::changelog_version(&dir, package)?);
        let mut found = collect(package, &dir)?;
        if params.max_recordings_per_source > 0 {
            found.truncate(params.max_recordings_per_source);
        }
        let splits = grouped_splits(&found, params, package);
        for (i, (rec, split)) in found.into_iter().zip(splits).enumerate() {
            recordings.push((format!("{}-{i:03}", prefix(package)), split, rec));
        }
        reporter.log(&format!("{package}: {} recordings", recordings.len()));
    }

    let step = reporter.step("decoding recordings", recordings.len() as u64);
    let results: Vec<anyhow::Result<Outcome>> = recordings
        .par_iter()
        .map(|(id, _, rec)| {
            let r = decode_and_write(rec, id, params, out_dir, scratch);
            step.inc(1);
            r
        })
        .collect();
    drop(step);

    let mut decoded = Vec::new();
    let mut skipped = Vec::new();
    let mut warnings = Vec::new();
    for (n, ((id, split, rec), result)) in recordings.iter().zip(results).enumerate() {
        match result? {
            Ok(clips) => decoded.push(Decoded {
                id: id.clone(),
                split: *split,
                duration_s: clips.iter().map(|c| c.1).sum(),
                clips,
                labels: Labels {
                    recording: n,
                    category: rec.category.clone(),
                    keywords: caption::keywords(&rec.description),
                },
            }),
            Err(reason) => {
                warnings.push(format!(
                    "skipped `{}` of package `{}`: {reason}",
                    rec.path, rec.package
                ));
                skipped.push(serde_json::json!({
                    "package": rec.package, "path": rec.path, "reason": reason,
                }));
            }
        }
    }
    crate::dataset::warn_capped(reporter, &warnings, "recordings", "provenance.json");

    let index = build_index(&decoded, &recordings, params);
    index.save(out_dir)?;
    write_provenance(out_dir, &decoded, &recordings, &versions, &skipped, params)?;
    let metrics = metrics(&index, &decoded, &recordings, skipped.len(), params);
    // A measurement of the run, not an output: it goes to the manifest.
    reporter.measure("generation_seconds", started.elapsed().as_secs_f64());
    Ok(metrics)
}

/// Clips, captions and relevance of the decoded recordings (in recording order).
fn build_index(
    decoded: &[Decoded],
    recordings: &[(String, Split, Recording)],
    params: &SoundsParams,
) -> DatasetIndex {
    let mut index = DatasetIndex::default();
    // (clip_id, split, labels) of every clip, to grade relevance.
    let mut clip_labels: Vec<(&str, Split, &Labels)> = Vec::new();
    for d in decoded {
        let rec = &recordings[d.labels.recording].2;
        for (clip_id, duration_s) in &d.clips {
            index.clips.push(DatasetClip {
                clip_id: clip_id.clone(),
                file: format!("audio/{clip_id}.wav"),
                split: d.split,
                duration_s: *duration_s,
            });
            let mut rng = ChaCha8Rng::seed_from_u64(mix(params.seed, stream_of(clip_id)));
            let texts = caption::captions(
                &mut rng,
                &rec.description,
                rec.phrase,
                &rec.category,
                params.captions_per_clip,
            );
            for (k, text) in texts.into_iter().enumerate() {
                index.captions.push(DatasetCaption {
                    caption_id: format!("{clip_id}#{k}"),
                    clip_id: clip_id.clone(),
                    text,
                });
            }
            clip_labels.push((clip_id, d.split, &d.labels));
        }
    }
    let mut rows = Vec::new();
    for (clip_id, split, labels) in &clip_labels {
        // Every caption of a clip shares its labels, so one relevance vector per clip.
        let graded: Vec<(&str, f32)> = clip_labels
            .iter()
            .filter(|other| other.1 == *split)
            .map(|other| {
                let r = if other.0 == *clip_id {
                    1.0
                } else {
                    caption::relevance(labels, other.2)
                };
                (other.0, r)
            })
            .filter(|(_, r)| *r > 0.0)
            .collect();
        for k in 0..params.captions_per_clip {
            let caption_id = format!("{clip_id}#{k}");
            rows.extend(graded.iter().map(|(other, r)| DatasetRelevance {
                caption_id: caption_id.clone(),
                clip_id: (*other).to_owned(),
                relevance: *r,
            }));
        }
    }
    index.relevance = Some(rows);
    index
}

fn write_provenance(
    out_dir: &Path,
    decoded: &[Decoded],
    recordings: &[(String, Split, Recording)],
    versions: &BTreeMap<&str, String>,
    skipped: &[serde_json::Value],
    params: &SoundsParams,
) -> anyhow::Result<()> {
    let packages: Vec<_> = versions
        .iter()
        .map(|(name, version)| {
            serde_json::json!({
                "package": name,
                "version": version,
                "copyright": format!("usr/share/doc/{name}/copyright"),
            })
        })
        .collect();
    let entries: Vec<_> = decoded
        .iter()
        .map(|d| {
            let rec = &recordings[d.labels.recording].2;
            serde_json::json!({
                "recording_id": d.id,
                "package": rec.package,
                "version": versions[rec.package],
                "path": rec.path,
                "licence": rec.licence,
                "credit": rec.credit,
                "description": rec.description,
                "phrase": rec.phrase,
                "category": rec.category.join("/"),
                "keywords": d.labels.keywords,
                "split": d.split,
                "duration_s": d.duration_s,
                "clips": d.clips.iter().map(|c| &c.0).collect::<Vec<_>>(),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "description": "recordings from Debian packages (bookworm); audio resampled to mono \
                        16-bit PCM at sample_rate and cut into clips of at most max_seconds",
        "sample_rate": params.sample_rate,
        "max_seconds": params.max_seconds,
        "packages": packages,
        "recordings": entries,
        "skipped": skipped,
    });
    std::fs::write(
        out_dir.join("provenance.json"),
        serde_json::to_vec_pretty(&doc)?,
    )?;
    Ok(())
}

fn metrics(
    index: &DatasetIndex,
    decoded: &[Decoded],
    recordings: &[(String, Split, Recording)],
    skipped: usize,
    params: &SoundsParams,
) -> serde_json::Value {
    let count = |s: Split| index.clips.iter().filter(|c| c.split == s).count();
    let rows = index.relevance.as_ref().map_or(0, Vec::len);
    let own = index.captions.len();
    // Pairs of a caption and another clip of its split, and how many of those are graded > 0.
    let mut per_split = [0usize; 3];
    for c in &index.clips {
        per_split[c.split as usize] += 1;
    }
    let other_pairs: usize = index
        .clips
        .iter()
        .map(|c| (per_split[c.split as usize] - 1) * params.captions_per_clip)
        .sum();
    let mut m = serde_json::json!({
        "recordings": decoded.len(),
        "recordings_skipped": skipped,
        "clips": index.clips.len(),
        "train_clips": count(Split::Train),
        "val_clips": count(Split::Val),
        "test_clips": count(Split::Test),
        "captions": index.captions.len(),
        "audio_seconds": decoded.iter().map(|d| d.duration_s).sum::<f64>(),
        "relevance_rows": rows,
        "partial_match_fraction": (rows - own) as f64 / other_pairs.max(1) as f64,
    });
    for p in &PACKAGES {
        let n = decoded
            .iter()
            .filter(|d| recordings[d.labels.recording].2.package == p.name)
            .count();
        if n > 0 {
            m[format!("recordings_{}", p.name)] = n.into();
        }
    }
    m
}

/// The `packaged-sounds` stage kind.
#[derive(Debug, Default)]
pub struct PackagedSounds;

impl StageKind for PackagedSounds {
    fn name(&self) -> &'static str {
        "packaged-sounds"
    }

    fn summary(&self) -> &'static str {
        "Builds a data set of real recordings from unpacked Debian packages: clips, templated captions, graded relevance, provenance"
    }

    fn version(&self) -> u32 {
        // 2: `generation_seconds` out of metrics.json; reasons in provenance.json without the
        // input's path; truncated recordings skipped.
        2
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(&["packages"], &[])?;
        inputs.expect_single("packages")?;
        let p: SoundsParams = parse_params(params)?;
        p.validate()?;
        Plan::new(&p, Resources::ALL_CORES)
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let params: SoundsParams = ctx.params()?;
        let root = ctx.input("packages")?;
        let scratch = ctx.scratch_dir.join("decode");
        let metrics = crate::synth::pool(ctx.threads)?
            .install(|| write_dataset(&params, root, ctx.out_dir, &scratch, ctx.reporter))?;
        ctx.write_metrics(&metrics)
    }
}
