//! The `synth-dataset` kind: the embedded default data set, generated deterministically from a
//! seed so that the default pipeline needs no download.
//!
//! Scenes hold one to four events drawn from 13 procedurally synthesised source types (rising
//! and falling tones, bell, flute, plucked string, horn, rain, wind, knocking, footsteps, engine,
//! bird chirps, siren), each with attributes (high or low, loud or soft, fast or slow, how many
//! times) and relations (one after another, at the same time, over a background texture).
//! Five captions per clip are written by a grammar with synonyms ([`caption`]); the graded
//! relevance of every caption to every clip of its split is the weighted fraction of the
//! caption's facts that hold in the clip ([`scene`] documents the weights).
//!
//! Held-out combinations: the source pairs in [`scene::HELD_OUT_PAIRS`] (bell + rain,
//! horn + wind, birds + engine, siren + footsteps, flute + knocking) never occur together in a
//! training or validation clip; a fraction `held_out_fraction` of the test clips is built
//! around one of them. `heldout.json` lists the pairs and those test clips.
//!
//! Outputs: `audio/<clip_id>.wav` (16-bit PCM mono), `clips.parquet`, `captions.parquet`,
//! `relevance.parquet` (non-zero pairs within each split: every caption against every clip of
//! its own split), `scenes.json` (ground truth of every clip: events, captions and the facts
//! each caption states), `heldout.json`, `metrics.json`.

pub mod caption;
pub mod render;
pub mod scene;

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::Context;
use pipeline_api::{InputCounts, ParamError, Plan, Resources, RunContext, StageKind, parse_params};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use pipeline_formats::{DatasetCaption, DatasetClip, DatasetIndex, DatasetRelevance, Split};
use scene::{Fact, HELD_OUT_PAIRS, Scene, Source};

/// Parameters of `synth-dataset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthParams {
    /// Seed of the whole data set (scenes, captions, audio).
    pub seed: u64,
    /// Number of training clips.
    pub train_clips: usize,
    /// Number of validation clips.
    pub val_clips: usize,
    /// Number of test clips.
    pub test_clips: usize,
    /// Length of every clip in seconds (2.5 to 30).
    pub clip_seconds: f64,
    /// Sample rate of the written WAV files in Hz (8000 to 48000).
    pub sample_rate: u32,
    /// Captions written per clip (1 to 10).
    pub captions_per_clip: usize,
    /// Fraction of the test clips built around a held-out source pair (0 to 1).
    pub held_out_fraction: f64,
    /// Audibly different variants of every source type (1 to 6; a timbre the captions name:
    /// "a muffled bell"). More variants, fewer captions that partly describe other clips; the
    /// rate is measured as `partial_match_fraction` in `metrics.json`.
    #[serde(skip_serializing_if = "is_one")]
    pub variants: u8,
    /// Whether to write the graded ground truth (`relevance.parquet`). It scores every
    /// (caption, clip) pair of a split, so its time and size grow with the square of the split:
    /// off for large generated sets (such as the scale benchmark's).
    #[serde(skip_serializing_if = "is_true")]
    pub relevance: bool,
}

fn is_one(n: &u8) -> bool {
    *n == 1
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for SynthParams {
    fn default() -> Self {
        Self {
            seed: 0,
            train_clips: 500,
            val_clips: 100,
            test_clips: 150,
            clip_seconds: 4.0,
            sample_rate: 16000,
            captions_per_clip: 5,
            held_out_fraction: 0.3,
            variants: 1,
            relevance: true,
        }
    }
}

impl SynthParams {
    pub fn validate(&self) -> Result<(), ParamError> {
        for (key, n) in [
            ("train_clips", self.train_clips),
            ("val_clips", self.val_clips),
            ("test_clips", self.test_clips),
        ] {
            if !(1..=1_000_000).contains(&n) {
                return Err(ParamError::at(
                    key,
                    format!("must be between 1 and 1000000, got {n}"),
                ));
            }
        }
        if !(2.5..=30.0).contains(&self.clip_seconds) {
            return Err(ParamError::at(
                "clip_seconds",
                format!("must be between 2.5 and 30, got {}", self.clip_seconds),
            ));
        }
        if !(8000..=48000).contains(&self.sample_rate) {
            return Err(ParamError::at(
                "sample_rate",
                format!("must be between 8000 and 48000, got {}", self.sample_rate),
            ));
        }
        if !(1..=10).contains(&self.captions_per_clip) {
            return Err(ParamError::at(
                "captions_per_clip",
                format!("must be between 1 and 10, got {}", self.captions_per_clip),
            ));
        }
        if !(1..=scene::VARIANT_WORDS.len() as u8).contains(&self.variants) {
            return Err(ParamError::at(
                "variants",
                format!(
                    "must be between 1 and {}, got {}",
                    scene::VARIANT_WORDS.len(),
                    self.variants
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.held_out_fraction) {
            return Err(ParamError::at(
                "held_out_fraction",
                format!("must be between 0 and 1, got {}", self.held_out_fraction),
            ));
        }
        Ok(())
    }
}

/// Mixes a seed with a stream number (SplitMix64 finaliser).
fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed
        ^ stream
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One generated clip: its content and captions with their facts.
#[derive(Debug, Clone)]
pub struct GeneratedClip {
    pub clip_id: String,
    pub split: Split,
    pub scene: Scene,
    pub captions: Vec<(String, Vec<Fact>)>,
    /// The held-out pair this (test) clip is built around.
    pub held_out: Option<(Source, Source)>,
    pub audio_seed: u64,
}

/// Draws every clip's scene and captions (no audio), in split order train, val, test.
pub fn generate(params: &SynthParams) -> Vec<GeneratedClip> {
    let counts = [
        (Split::Train, params.train_clips),
        (Split::Val, params.val_clips),
        (Split::Test, params.test_clips),
    ];
    let jobs: Vec<(Split, usize)> = counts
        .iter()
        .flat_map(|&(s, n)| (0..n).map(move |i| (s, i)))
        .collect();
    jobs.par_iter()
        .map(|&(split, i)| {
            let stream = (split as u64) << 40 | i as u64;
            let mut rng = ChaCha8Rng::seed_from_u64(mix(params.seed, stream));
            let held_out = (split == Split::Test && rng.random_bool(params.held_out_fraction))
                .then(|| {
                    let (a, b) = HELD_OUT_PAIRS[rng.random_range(0..HELD_OUT_PAIRS.len())];
                    if rng.random_bool(0.5) { (a, b) } else { (b, a) }
                });
            let forbid = split != Split::Test;
            let scene = scene::sample_scene(
                &mut rng,
                params.clip_seconds as f32,
                forbid,
                held_out,
                params.variants,
            );
            let mut captions: Vec<(String, Vec<Fact>)> =
                Vec::with_capacity(params.captions_per_clip);
            let mut tries = 0;
            while captions.len() < params.captions_per_clip {
                let c = caption::caption(&mut rng, &scene);
                tries += 1;
                // Five different captions where the grammar allows.
                if tries < 50 && captions.iter().any(|(t, _)| *t == c.0) {
                    continue;
                }
                captions.push(c);
            }
            GeneratedClip {
                clip_id: format!("syn-{}-{i:05}", split.as_str()),
                split,
                scene,
                captions,
                held_out,
                audio_seed: rng.random(),
            }
        })
        .collect()
}

/// Relevance of every caption to every clip of its split (non-zero pairs), and match statistics
/// over pairs of a caption and a clip other than its own.
pub struct RelevanceResult {
    pub rows: Vec<DatasetRelevance>,
    pub other_pairs: u64,
    pub partial_pairs: u64,
    pub full_pairs: u64,
    /// Per split: mean over captions of the expected AP@10 of the ideal ranking (by true
    /// relevance, ties broken at random), i.e. the ceiling of text-to-audio mAP@10.
    pub oracle_map10: Vec<(Split, f64)>,
}

/// Expected AP@10 of the own clip when it ties with `m` other clips at relevance 1 and the
/// tie is broken at random: its rank is uniform on 1..=m+1.
fn expected_ap10(m: u64) -> f64 {
    let n = m + 1;
    (1..=n.min(10)).map(|r| 1.0 / r as f64).sum::<f64>() / n as f64
}

pub fn relevance(clips: &[GeneratedClip]) -> RelevanceResult {
    let captions: Vec<(usize, usize)> = clips
        .iter()
        .enumerate()
        .flat_map(|(c, clip)| (0..clip.captions.len()).map(move |k| (c, k)))
        .collect();
    let per_caption: Vec<(Vec<DatasetRelevance>, u64, u64, u64, Split)> = captions
        .par_iter()
        .map(|&(c, k)| {
            let own = &clips[c];
            let facts = &own.captions[k].1;
            let caption_id = format!("{}#{k}", own.clip_id);
            let mut rows = Vec::new();
            let (mut other, mut partial, mut full) = (0, 0, 0);
            for (j, clip) in clips
                .iter()
                .enumerate()
                .filter(|(_, x)| x.split == own.split)
            {
                let r = clip.scene.relevance(facts);
                if j != c {
                    other += 1;
                    partial += (r > 0.0) as u64;
                    full += (r >= 1.0) as u64;
                }
                if r > 0.0 {
                    rows.push(DatasetRelevance {
                        caption_id: caption_id.clone(),
                        clip_id: clip.clip_id.clone(),
                        relevance: r,
                    });
                }
            }
            (rows, other, partial, full, own.split)
        })
        .collect();
    let mut result = RelevanceResult {
        rows: Vec::new(),
        other_pairs: 0,
        partial_pairs: 0,
        full_pairs: 0,
        oracle_map10: Vec::new(),
    };
    let mut oracle = [(0.0f64, 0u64); 3];
    for (rows, o, p, f, split) in per_caption {
        result.rows.extend(rows);
        result.other_pairs += o;
        result.partial_pairs += p;
        result.full_pairs += f;
        oracle[split as usize].0 += expected_ap10(f);
        oracle[split as usize].1 += 1;
    }
    result.oracle_map10 = Split::ALL
        .iter()
        .filter(|s| oracle[**s as usize].1 > 0)
        .map(|&s| (s, oracle[s as usize].0 / oracle[s as usize].1 as f64))
        .collect();
    result
}

fn fact_string(f: &Fact) -> String {
    match *f {
        Fact::Source(s) => format!("source({})", s.name()),
        Fact::High(s, v) => format!("{}({})", if v { "high" } else { "low" }, s.name()),
        Fact::Loud(s, v) => format!("{}({})", if v { "loud" } else { "soft" }, s.name()),
        Fact::Fast(s, v) => format!("{}({})", if v { "fast" } else { "slow" }, s.name()),
        Fact::Count(s, n) => format!("count({}, {n})", s.name()),
        Fact::Then(a, b) => format!("then({}, {})", a.name(), b.name()),
        Fact::Together(a, b) => format!("together({}, {})", a.name(), b.name()),
        Fact::Over(a, b) => format!("over({}, {})", a.name(), b.name()),
    }
}

fn write_wav(path: &std::path::Path, samples: &[f32], sr: u32) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: sr,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("creating `{}`", path.display()))?;
    {
        let mut w16 = w.get_i16_writer(samples.len() as u32);
        for &x in samples {
            w16.write_sample((x.clamp(-1.0, 1.0) * 32767.0).round() as i16);
        }
        w16.flush()?;
    }
    w.finalize()?;
    Ok(())
}

/// A rayon pool of `threads` threads (at least one, at most the machine's parallelism).
pub(crate) fn pool(threads: usize) -> anyhow::Result<rayon::ThreadPool> {
    let max = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(threads.clamp(1, max.max(1)))
        .build()?)
}

/// One clip's entry of `scenes.json`.
fn scene_json(c: &GeneratedClip) -> serde_json::Value {
    serde_json::json!({
        "clip_id": c.clip_id,
        "split": c.split,
        "events": c.scene.events,
        "held_out_pair": c.held_out.map(|(a, b)| [a.name(), b.name()]),
        "captions": c.captions.iter().map(|(t, f)| serde_json::json!({
            "text": t,
            "facts": f.iter().map(fact_string).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Writes `scenes.json`, one JSON array of every clip's entry, an entry at a time: the bytes of
/// serialising the whole array, without holding it (a JSON tree of every clip was most of the
/// stage's peak memory on large sets).
fn write_scenes(path: &std::path::Path, clips: &[GeneratedClip]) -> anyhow::Result<()> {
    use std::io::Write;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating `{}`", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    out.write_all(b"[")?;
    for (i, clip) in clips.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut out, &scene_json(clip))?;
    }
    out.write_all(b"]")?;
    out.flush()?;
    Ok(())
}

/// Generates the whole data set into `out_dir`; returns the metrics.
pub fn write_dataset(
    params: &SynthParams,
    out_dir: &std::path::Path,
    reporter: &dyn pipeline_api::Reporter,
) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let clips = generate(params);
    let audio_dir = out_dir.join("audio");
    std::fs::create_dir_all(&audio_dir)?;
    let step = reporter.step("synthesising clips", clips.len() as u64);
    clips
        .par_iter()
        .try_for_each(|clip| -> anyhow::Result<()> {
            let audio = render::render(
                &clip.scene,
                params.clip_seconds as f32,
                params.sample_rate,
                clip.audio_seed,
            );
            write_wav(
                &audio_dir.join(format!("{}.wav", clip.clip_id)),
                &audio,
                params.sample_rate,
            )?;
            step.inc(1);
            Ok(())
        })?;
    drop(step);
    let mut rel = params.relevance.then(|| relevance(&clips));
    let n_samples = (params.clip_seconds * params.sample_rate as f64).round() as usize;
    let duration_s = n_samples as f64 / params.sample_rate as f64;

    let index = DatasetIndex {
        clips: clips
            .iter()
            .map(|c| DatasetClip {
                clip_id: c.clip_id.clone(),
                file: format!("audio/{}.wav", c.clip_id),
                split: c.split,
                duration_s,
            })
            .collect(),
        captions: clips
            .iter()
            .flat_map(|c| {
                c.captions
                    .iter()
                    .enumerate()
                    .map(move |(k, (text, _))| DatasetCaption {
                        caption_id: format!("{}#{k}", c.clip_id),
                        clip_id: c.clip_id.clone(),
                        text: text.clone(),
                    })
            })
            .collect(),
        relevance: rel.as_mut().map(|r| std::mem::take(&mut r.rows)),
    };
    index.save(out_dir)?;

    write_scenes(&out_dir.join("scenes.json"), &clips)?;
    let held: Vec<&str> = clips
        .iter()
        .filter(|c| c.held_out.is_some())
        .map(|c| c.clip_id.as_str())
        .collect();
    std::fs::write(
        out_dir.join("heldout.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "description": "source pairs that never occur together in train or val clips; test clips built around one",
            "pairs": HELD_OUT_PAIRS.iter().map(|(a, b)| [a.name(), b.name()]).collect::<Vec<_>>(),
            "test_clips": held,
        }))?,
    )?;

    // Statistics.
    let lengths: Vec<usize> = index
        .captions
        .iter()
        .map(|c| c.text.split_whitespace().count())
        .collect();
    let words: BTreeSet<String> = index
        .captions
        .iter()
        .flat_map(|c| {
            crate::text::normalize(&c.text)
                .split(' ')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let mean_len = lengths.iter().sum::<usize>() as f64 / lengths.len().max(1) as f64;
    let in_range = lengths.iter().filter(|&&n| (8..=20).contains(&n)).count() as f64
        / lengths.len().max(1) as f64;
    let events: usize = clips.iter().map(|c| c.scene.events.len()).sum();
    let with_bg = clips
        .iter()
        .filter(|c| c.scene.background().is_some())
        .count();
    let count_split = |s: Split| clips.iter().filter(|c| c.split == s).count();
    let mut metrics = serde_json::json!({
        "clips": clips.len(),
        "train_clips": count_split(Split::Train),
        "val_clips": count_split(Split::Val),
        "test_clips": count_split(Split::Test),
        "captions": index.captions.len(),
        "source_types": Source::ALL.len(),
        "vocabulary_size": words.len(),
        "caption_words_min": lengths.iter().min().copied().unwrap_or(0),
        "caption_words_max": lengths.iter().max().copied().unwrap_or(0),
        "caption_words_mean": mean_len,
        "caption_words_8_to_20_fraction": in_range,
        "events_per_clip_mean": events as f64 / clips.len().max(1) as f64,
        "clips_with_background_fraction": with_bg as f64 / clips.len().max(1) as f64,
        "test_clips_with_held_out_pair": held.len(),
        "audio_seconds": duration_s * clips.len() as f64,
    });
    if let Some(rel) = &rel {
        let other = rel.other_pairs.max(1) as f64;
        metrics["relevance_rows"] = index.relevance.as_ref().map_or(0, Vec::len).into();
        metrics["partial_match_fraction"] = (rel.partial_pairs as f64 / other).into();
        metrics["full_match_fraction"] = (rel.full_pairs as f64 / other).into();
        for (split, v) in &rel.oracle_map10 {
            metrics[format!("oracle_map10_{split}")] = (*v).into();
        }
    }
    // A measurement of the run, not an output: it goes to the manifest.
    reporter.measure("generation_seconds", started.elapsed().as_secs_f64());
    Ok(metrics)
}

/// The `synth-dataset` stage kind.
#[derive(Debug, Default)]
pub struct SynthDataset;

impl StageKind for SynthDataset {
    fn name(&self) -> &'static str {
        "synth-dataset"
    }

    fn summary(&self) -> &'static str {
        "Generates the default data set: synthetic sound scenes, five captions each, graded ground-truth relevance"
    }

    fn version(&self) -> u32 {
        // 2: `generation_seconds` out of metrics.json.
        2
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(&[], &[])?;
        let p: SynthParams = parse_params(params)?;
        p.validate()?;
        Plan::new(&p, Resources::ALL_CORES)
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let params: SynthParams = ctx.params()?;
        let metrics =
            pool(ctx.threads)?.install(|| write_dataset(&params, ctx.out_dir, ctx.reporter))?;
        ctx.write_metrics(&metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_api::SilentReporter;

    #[test]
    fn plan_fills_defaults_and_rejects_bad_values() {
        let plan = SynthDataset
            .plan(&toml::Table::new(), &InputCounts::default())
            .unwrap();
        assert_eq!(plan.params["train_clips"], 500);
        let t: toml::Table = toml::from_str("clip_seconds = 1.0").unwrap();
        assert_eq!(
            SynthDataset
                .plan(&t, &InputCounts::default())
                .unwrap_err()
                .key
                .as_deref(),
            Some("clip_seconds")
        );
        let t: toml::Table = toml::from_str("clips = 3").unwrap();
        assert!(SynthDataset.plan(&t, &InputCounts::default()).is_err());
        // The default `relevance = true` is left out of the canonical form (the hash stays).
        assert!(plan.params.get("relevance").is_none());
    }

    #[test]
    fn scenes_written_an_entry_at_a_time_are_one_array_of_every_clip() {
        let clips = generate(&SynthParams {
            train_clips: 4,
            val_clips: 1,
            test_clips: 3,
            ..Default::default()
        });
        let dir = tempfile::tempdir().unwrap();
        for n in [0, 1, clips.len()] {
            let path = dir.path().join(format!("scenes-{n}.json"));
            write_scenes(&path, &clips[..n]).unwrap();
            let whole: Vec<serde_json::Value> = clips[..n].iter().map(scene_json).collect();
            let written = std::fs::read(&path).unwrap();
            assert_eq!(written, serde_json::to_vec(&whole).unwrap(), "{n} clips");
            let read: Vec<serde_json::Value> = serde_json::from_slice(&written).unwrap();
            assert_eq!(read.len(), n);
            if let Some(last) = read.last() {
                assert_eq!(last["clip_id"], clips[n - 1].clip_id.as_str());
            }
        }
    }

    #[test]
    fn without_relevance_the_same_clips_and_captions_and_no_ground_truth() {
        let small = |relevance| SynthParams {
            train_clips: 6,
            val_clips: 2,
            test_clips: 2,
            relevance,
            ..Default::default()
        };
        let (with, without) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_dataset(&small(true), with.path(), &SilentReporter).unwrap();
        let metrics = write_dataset(&small(false), without.path(), &SilentReporter).unwrap();
        assert!(
            !without
                .path()
                .join(pipeline_formats::RELEVANCE_FILE)
                .exists()
        );
        assert!(with.path().join(pipeline_formats::RELEVANCE_FILE).exists());
        assert!(metrics.get("partial_match_fraction").is_none());
        for file in [
            "clips.parquet",
            "captions.parquet",
            "audio/syn-train-00003.wav",
        ] {
            assert_eq!(
                std::fs::read(with.path().join(file)).unwrap(),
                std::fs::read(without.path().join(file)).unwrap(),
                "{file}"
            );
        }
    }

    #[test]
    fn small_dataset_is_deterministic_and_consistent() {
        let params = SynthParams {
            train_clips: 30,
            val_clips: 8,
            test_clips: 20,
            held_out_fraction: 0.5,
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let metrics = write_dataset(&params, dir.path(), &SilentReporter).unwrap();
        let index = DatasetIndex::load(dir.path()).unwrap();
        assert_eq!(index.clips.len(), 58);
        assert_eq!(index.captions.len(), 58 * 5);
        let rel = index.relevance.as_ref().unwrap();
        // Every caption is fully relevant to its own clip.
        for c in &index.captions {
            let own = rel
                .iter()
                .find(|r| r.caption_id == c.caption_id && r.clip_id == c.clip_id)
                .unwrap();
            assert_eq!(own.relevance, 1.0);
        }
        assert!(rel.iter().all(|r| r.relevance > 0.0 && r.relevance <= 1.0));
        let reader = hound::WavReader::open(dir.path().join(&index.clips[0].file)).unwrap();
        assert_eq!(reader.spec().sample_rate, 16000);
        assert_eq!(reader.len(), 64000);
        // No held-out pair in train or val.
        let clips = generate(&params);
        for c in clips.iter().filter(|c| c.split != Split::Test) {
            let s: Vec<Source> = c.scene.sources().collect();
            for (i, a) in s.iter().enumerate() {
                assert!(s[i + 1..].iter().all(|b| !scene::is_held_out_pair(*a, *b)));
            }
        }
        assert!(metrics["test_clips_with_held_out_pair"].as_u64().unwrap() > 0);
        let partial = metrics["partial_match_fraction"].as_f64().unwrap();
        assert!(partial > 0.1 && partial < 0.9, "{partial}");
        // Same seed, same data.
        let again = generate(&params);
        assert_eq!(clips.len(), again.len());
        assert!(
            clips
                .iter()
                .zip(&again)
                .all(|(a, b)| a.captions == b.captions && a.audio_seed == b.audio_seed)
        );
    }
}

#[cfg(test)]
mod reproducible {
    use super::*;
    use crate::testing::{Recorder, content, run_kind};

    /// Two runs of one key publish the same bytes; the generation time is a measurement.
    #[test]
    fn two_runs_write_the_same_bytes_and_measure_the_time() {
        let params = "train_clips = 3\nval_clips = 1\ntest_clips = 2\nclip_seconds = 2.5\nsample_rate = 8000";
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let out = tempfile::tempdir().unwrap();
                let recorder = Recorder::default();
                run_kind(&SynthDataset, params, &[], out.path(), &recorder).unwrap();
                assert_eq!(recorder.measured(), ["generation_seconds"]);
                content(out.path())
            })
            .collect();
        assert_eq!(runs[0], runs[1]);
        assert!(runs[0].contains_key("audio/syn-test-00001.wav"));
        let metrics: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&runs[0]["metrics.json"]).unwrap();
        let timed: Vec<_> = metrics
            .keys()
            .filter(|k| k.contains("second") && *k != "audio_seconds")
            .collect();
        assert!(timed.is_empty(), "{timed:?}");
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use pipeline_api::SilentReporter;

    /// `cargo test -p pipeline-data --release -- --ignored --nocapture default_dataset`
    #[test]
    #[ignore]
    fn default_dataset_timing_and_samples() {
        let dir = std::env::var("SYNTH_OUT")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir().join("synth-default"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t = Instant::now();
        let metrics = pool(2)
            .unwrap()
            .install(|| write_dataset(&SynthParams::default(), &dir, &SilentReporter))
            .unwrap();
        eprintln!(
            "generation {:.2} s\n{}",
            t.elapsed().as_secs_f64(),
            serde_json::to_string_pretty(&metrics).unwrap()
        );
        let t = Instant::now();
        let (set, m) = pool(2)
            .unwrap()
            .install(|| {
                crate::features::compute(
                    &dir,
                    &Default::default(),
                    &dir.join("windows"),
                    &SilentReporter,
                )
            })
            .unwrap();
        eprintln!(
            "features {:.2} s {:?}\n{}",
            t.elapsed().as_secs_f64(),
            set.mel_shape(),
            serde_json::to_string_pretty(&m).unwrap()
        );
        let index = DatasetIndex::load(&dir).unwrap();
        for c in index.captions.iter().step_by(97).take(25) {
            eprintln!("{}: {}", c.caption_id, c.text);
        }
    }
}
