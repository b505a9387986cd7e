//! The `features` kind: log-mel windows of every clip and token ids of every caption of a data
//! set (`synth-dataset` or `dataset` artifact), written as a [`FeatureSet`].
//!
//! Captions are tokenised with a word vocabulary built from the training split, or, when the
//! optional input `tokenizer` (a `tokenizer.json`) is given, with that pretrained tokenizer
//! ([`PretrainedTokenizer`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use pipeline_api::{InputCounts, ParamError, Plan, Resources, RunContext, StageKind, parse_params};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::mel::{MelConfig, MelExtractor};
use crate::text::{PretrainedTokenizer, Vocab, normalize};
use pipeline_formats::{
    CaptionRow, ClipRow, ClipWindows, DatasetIndex, FeatureSet, RelevanceRow, ShardWriter, Split,
    WINDOWS_DIR,
};

/// Front-end preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 16 kHz, n_fft 512, window 400, hop 320, 64 mels 0-8 kHz, one 4 s window.
    Light,
    /// PaSST: 32 kHz, n_fft 1024, window 800, hop 320, 128 mels 0-15 kHz, 30 s in 10 s windows.
    Passt,
    /// YAMNet: 16 kHz, n_fft 512, periodic window 400, hop 160, magnitude, 64 mels 125-7500 Hz,
    /// log(x + 0.001); 10 s in patches of 96 frames (0.975 s) every 0.48 s.
    Yamnet,
}

/// Parameters of `features`. Unset front-end fields take the preset's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesParams {
    /// Front-end preset: "light" (CPU default) or "passt" (`docs/method.md`).
    #[serde(default = "default_preset")]
    pub preset: Preset,
    /// Override: sample rate in Hz audio is resampled to.
    #[serde(default)]
    pub sample_rate: Option<u32>,
    /// Override: FFT size.
    #[serde(default)]
    pub n_fft: Option<usize>,
    /// Override: length of the symmetric Hann window (zero-padded centred to n_fft).
    #[serde(default)]
    pub win_length: Option<usize>,
    /// Override: hop between frames in samples.
    #[serde(default)]
    pub hop_length: Option<usize>,
    /// Override: number of mel bins.
    #[serde(default)]
    pub n_mels: Option<usize>,
    /// Override: lowest mel frequency in Hz.
    #[serde(default)]
    pub f_min: Option<f64>,
    /// Override: highest mel frequency in Hz (default: the preset's, at most half the sample rate).
    #[serde(default)]
    pub f_max: Option<f64>,
    /// Override: pre-emphasis coefficient (0 = none).
    #[serde(default)]
    pub preemphasis: Option<f64>,
    /// Override: clips are cropped or zero-padded to this many seconds.
    #[serde(default)]
    pub max_seconds: Option<f64>,
    /// Override: window length in seconds (the clip is split into windows of this length).
    #[serde(default)]
    pub window_seconds: Option<f64>,
    /// Override: step between window starts in seconds (default: the window length; the
    /// `yamnet` preset: 0.48). Absent from the canonical form when it equals the window length,
    /// so the other presets keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_hop_seconds: Option<f64>,
    /// Tokens per caption (truncated or padded).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Words seen fewer times in the training captions map to `<unk>` (ignored with a
    /// pretrained tokenizer).
    #[serde(default = "default_min_word_count")]
    pub min_word_count: usize,
    /// The `tokenizer.json` inside the `tokenizer` input when that is a folder (such as a
    /// `fetch` node's output), relative to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_file: Option<String>,
    /// Megabytes of log-mel per shard file (at least one clip each): what the stage holds in
    /// memory at once, beside the tables.
    #[serde(default = "default_shard_mb")]
    pub shard_mb: f64,
}

fn default_preset() -> Preset {
    Preset::Light
}
fn default_max_tokens() -> usize {
    32
}
fn default_min_word_count() -> usize {
    1
}
fn default_shard_mb() -> f64 {
    256.0
}

impl Default for FeaturesParams {
    fn default() -> Self {
        parse_params(&toml::Table::new()).expect("defaults parse")
    }
}

impl FeaturesParams {
    /// The preset with the overrides applied.
    pub fn mel_config(&self) -> MelConfig {
        let base = match self.preset {
            Preset::Light => MelConfig::light(),
            Preset::Passt => MelConfig::passt(),
            Preset::Yamnet => MelConfig::yamnet(),
        };
        let max_seconds = self.max_seconds.unwrap_or(base.max_seconds);
        let sample_rate = self.sample_rate.unwrap_or(base.sample_rate);
        MelConfig {
            sample_rate,
            n_fft: self.n_fft.unwrap_or(base.n_fft),
            win_length: self.win_length.unwrap_or(base.win_length),
            hop_length: self.hop_length.unwrap_or(base.hop_length),
            n_mels: self.n_mels.unwrap_or(base.n_mels),
            f_min: self.f_min.unwrap_or(base.f_min),
            // A lower sample rate without an f_max override caps the preset's f_max at Nyquist.
            f_max: self
                .f_max
                .unwrap_or(base.f_max.min(sample_rate as f64 / 2.0)),
            preemphasis: self.preemphasis.unwrap_or(base.preemphasis),
            max_seconds,
            // An overridden max_seconds with no window override keeps one window for the
            // light preset.
            window_seconds: self.window_seconds.unwrap_or(match self.preset {
                Preset::Light => max_seconds,
                Preset::Passt | Preset::Yamnet => base.window_seconds.min(max_seconds),
            }),
            window_hop_seconds: self.window_hop_seconds.or(base.window_hop_seconds),
            style: base.style,
        }
    }

    /// The canonical form: every front-end field resolved.
    fn canonical(&self) -> Self {
        let c = self.mel_config();
        Self {
            preset: self.preset,
            sample_rate: Some(c.sample_rate),
            n_fft: Some(c.n_fft),
            win_length: Some(c.win_length),
            hop_length: Some(c.hop_length),
            n_mels: Some(c.n_mels),
            f_min: Some(c.f_min),
            f_max: Some(c.f_max),
            preemphasis: Some(c.preemphasis),
            max_seconds: Some(c.max_seconds),
            window_seconds: Some(c.window_seconds),
            window_hop_seconds: c.window_hop_seconds.filter(|&h| h != c.window_seconds),
            max_tokens: self.max_tokens,
            min_word_count: self.min_word_count,
            tokenizer_file: self.tokenizer_file.clone(),
            shard_mb: self.shard_mb,
        }
    }

    /// [`Self::shard_mb`] in bytes.
    pub fn shard_bytes(&self) -> usize {
        (self.shard_mb * 1e6) as usize
    }

    pub fn validate(&self) -> Result<(), ParamError> {
        self.mel_config()
            .check()
            .map_err(|(key, msg)| ParamError::at(key, msg))?;
        if !(1..=512).contains(&self.max_tokens) {
            return Err(ParamError::at("max_tokens", "must be between 1 and 512"));
        }
        if !(1..=1000).contains(&self.min_word_count) {
            return Err(ParamError::at(
                "min_word_count",
                "must be between 1 and 1000",
            ));
        }
        if !(self.shard_mb.is_finite() && self.shard_mb > 0.0) {
            return Err(ParamError::at(
                "shard_mb",
                "must be a positive number of megabytes",
            ));
        }
        if let Some(file) = &self.tokenizer_file
            && (Path::new(file).is_absolute() || file.split('/').any(|s| s == ".."))
        {
            return Err(ParamError::at(
                "tokenizer_file",
                "must be a relative path inside the `tokenizer` input",
            ));
        }
        Ok(())
    }
}

/// Resolves a clip's `file` against the data set directory.
pub fn resolve(dataset_dir: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_owned()
    } else {
        dataset_dir.join(p)
    }
}

/// Computes the feature set of the data set in `dataset_dir` (in the current rayon pool), with
/// the word vocabulary of the training split; its windows go to shards in `windows_dir`.
pub fn compute(
    dataset_dir: &Path,
    params: &FeaturesParams,
    windows_dir: &Path,
    reporter: &dyn pipeline_api::Reporter,
) -> anyhow::Result<(FeatureSet, serde_json::Value)> {
    compute_with(dataset_dir, None, params, windows_dir, reporter)
}

/// Computes the feature set of the data set in `dataset_dir` (in the current rayon pool); the
/// captions are encoded with the pretrained tokenizer read from `tokenizer` (a `tokenizer.json`)
/// when given, else with the word vocabulary of the training split.
///
/// The windows are written to shards in `windows_dir` (a [`pipeline_formats::windows`] folder),
/// one shard in memory at a time; shards an interrupted call left complete there are kept.
pub fn compute_with(
    dataset_dir: &Path,
    tokenizer: Option<&Path>,
    params: &FeaturesParams,
    windows_dir: &Path,
    reporter: &dyn pipeline_api::Reporter,
) -> anyhow::Result<(FeatureSet, serde_json::Value)> {
    // Read first: a bad tokenizer fails before the audio is processed.
    let tokenizer = tokenizer
        .map(|path| PretrainedTokenizer::load(path, params.max_tokens))
        .transpose()?;
    let index = DatasetIndex::load(dataset_dir)?;
    ensure!(
        !index.clips.is_empty(),
        "the data set `{}` has no clips",
        dataset_dir.display()
    );
    let front_end = FrontEnd::new(params);
    let (mel, window_mask) = write_windows(
        &index,
        dataset_dir,
        &front_end,
        params,
        windows_dir,
        reporter,
    )?;
    let (n_windows, n_mels, n_frames) = (front_end.n_windows, front_end.n_mels, front_end.n_frames);

    // Captions, grouped by clip in data set order.
    let clip_row: HashMap<&str, usize> = index
        .clips
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clip_id.as_str(), i))
        .collect();
    let mut by_clip: Vec<Vec<usize>> = vec![Vec::new(); index.clips.len()];
    for (j, c) in index.captions.iter().enumerate() {
        let Some(&i) = clip_row.get(c.clip_id.as_str()) else {
            bail!(
                "caption `{}` refers to the unknown clip `{}`",
                c.caption_id,
                c.clip_id
            );
        };
        by_clip[i].push(j);
    }
    let mut captions = Vec::with_capacity(index.captions.len());
    let mut clips = Vec::with_capacity(index.clips.len());
    for (i, clip) in index.clips.iter().enumerate() {
        let mut caption_indices = Vec::new();
        for &j in &by_clip[i] {
            let c = &index.captions[j];
            caption_indices.push(captions.len());
            captions.push(CaptionRow {
                caption_id: c.caption_id.clone(),
                clip_id: c.clip_id.clone(),
                clip_index: i,
                split: clip.split,
                text: c.text.clone(),
                normalized: normalize(&c.text),
            });
        }
        clips.push(ClipRow {
            clip_id: clip.clip_id.clone(),
            // As the data set has it (relative to the data set artifact), never resolved: the
            // output must not depend on where the artifacts live.
            file: clip.file.clone(),
            split: clip.split,
            duration_s: clip.duration_s,
            caption_indices,
        });
    }
    let text = match &tokenizer {
        None => Tokens::words(&captions, params),
        Some(t) => Tokens::pretrained(t, &captions)?,
    };

    let relevance = match &index.relevance {
        None => None,
        Some(rows) => {
            let caption_row: HashMap<&str, usize> = captions
                .iter()
                .enumerate()
                .map(|(j, c)| (c.caption_id.as_str(), j))
                .collect();
            Some(
                rows.iter()
                    .map(|r| {
                        let caption_index =
                            *caption_row.get(r.caption_id.as_str()).with_context(|| {
                                format!(
                                    "relevance refers to the unknown caption `{}`",
                                    r.caption_id
                                )
                            })?;
                        let clip_index = *clip_row.get(r.clip_id.as_str()).with_context(|| {
                            format!("relevance refers to the unknown clip `{}`", r.clip_id)
                        })?;
                        Ok(RelevanceRow {
                            caption_index,
                            clip_index,
                            relevance: r.relevance,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
            )
        }
    };

    let mut metrics = serde_json::json!({
        "clips": clips.len(),
        "captions": captions.len(),
        "n_windows": n_windows,
        "n_mels": n_mels,
        "n_frames": n_frames,
        "sample_rate": front_end.cfg.sample_rate,
        "vocab_size": text.vocab.len(),
        // As the data set lists them: the same whether or not the run was resumed.
        "audio_seconds": index.clips.iter().map(|c| c.duration_s).sum::<f64>(),
        "valid_windows": window_mask.iter().filter(|&&m| m == 1).count(),
        "captions_truncated": text.truncated,
        "unknown_word_rate_val": text.unknown_rate(&captions, Split::Val),
        "unknown_word_rate_test": text.unknown_rate(&captions, Split::Test),
    });
    if let Some(t) = &tokenizer {
        metrics["tokenizer"] = serde_json::json!({
            // The file name only: where the input lives is not part of the output.
            "file": t.path().file_name().map(|n| n.to_string_lossy()),
            "model": t.model_type(),
            "vocab_size": t.vocab().len(),
            "pad_id": t.pad_id(),
            "unk_id": t.unk_id(),
            "special_tokens": t.special_tokens(),
        });
    }
    for split in Split::ALL {
        metrics[format!("{split}_clips")] =
            clips.iter().filter(|c| c.split == split).count().into();
        metrics[format!("{split}_captions")] =
            captions.iter().filter(|c| c.split == split).count().into();
    }
    let set = FeatureSet {
        mel,
        window_mask,
        max_tokens: params.max_tokens,
        tokens: text.ids,
        clips,
        captions,
        vocab: text.vocab,
        relevance,
        text_vectors: None,
    };
    Ok((set, metrics))
}

/// Featurises every clip into shards of `windows_dir`, one shard at a time (its clips in
/// parallel), skipping the shards an interrupted run completed; returns the opened shards and
/// the window mask.
fn write_windows(
    index: &DatasetIndex,
    dataset_dir: &Path,
    front_end: &FrontEnd,
    params: &FeaturesParams,
    windows_dir: &Path,
    reporter: &dyn pipeline_api::Reporter,
) -> anyhow::Result<(ClipWindows, Vec<u8>)> {
    let started = Instant::now();
    let n_windows = front_end.n_windows;
    let clip_len = front_end.clip_len();
    let mut writer = ShardWriter::new(
        windows_dir,
        [n_windows, front_end.n_mels, front_end.n_frames],
        params.shard_bytes(),
    )?;
    let step = reporter.step("log-mel", index.clips.len() as u64);
    let (mut seconds, mut computed) = (0.0, 0usize);
    let mut mel = Vec::new();
    let mut mask = Vec::new();
    for (k, range) in writer.plan(index.clips.len()).into_iter().enumerate() {
        if writer.existing(k, range.start, range.len())?.is_some() {
            step.inc(range.len() as u64);
            continue;
        }
        mel.resize(range.len() * clip_len, 0.0);
        mask.resize(range.len() * n_windows, 0);
        seconds += mel
            .par_chunks_mut(clip_len)
            .zip(mask.par_chunks_mut(n_windows))
            .zip(&index.clips[range.clone()])
            .map(|((mel, mask), clip)| {
                let features = front_end.file(&resolve(dataset_dir, &clip.file))?;
                mel.copy_from_slice(&features.mel);
                mask.copy_from_slice(&features.window_mask);
                step.inc(1);
                Ok(features.seconds)
            })
            .collect::<anyhow::Result<Vec<f64>>>()?
            .into_iter()
            .sum::<f64>();
        writer.write(k, range.start, &mel, &mask)?;
        computed += range.len();
    }
    drop(step);
    writer.finish(index.clips.len())?;
    // Timings are measurements of the run, not outputs: they go to the manifest.
    let compute_s = started.elapsed().as_secs_f64();
    reporter.measure("features_seconds", compute_s);
    if computed > 0 {
        reporter.measure("audio_seconds_per_second", seconds / compute_s.max(1e-9));
    }
    ClipWindows::open(windows_dir)
}

/// A `features` node's front end, one audio file at a time (also what `pipeline search` runs on
/// a folder of the user's own audio).
pub struct FrontEnd {
    cfg: MelConfig,
    extractor: MelExtractor,
    pub n_windows: usize,
    pub n_mels: usize,
    pub n_frames: usize,
}

/// One clip's features, as a clip of [`FeatureSet::mel`] and a row of
/// [`FeatureSet::window_mask`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClipFeatures {
    /// `[n_windows, n_mels, n_frames]`.
    pub mel: Vec<f32>,
    /// `[n_windows]`, 1 where the window holds audio.
    pub window_mask: Vec<u8>,
    /// The clip's duration before cropping or padding.
    pub seconds: f64,
}

impl FrontEnd {
    pub fn new(params: &FeaturesParams) -> Self {
        let cfg = params.mel_config();
        let extractor = MelExtractor::new(cfg.clone());
        let layout = cfg.windows();
        Self {
            n_windows: layout.n_windows(),
            n_mels: cfg.n_mels,
            n_frames: extractor.n_frames(layout.window_samples()),
            cfg,
            extractor,
        }
    }

    /// Elements of one clip's `mel`.
    pub fn clip_len(&self) -> usize {
        self.n_windows * self.n_mels * self.n_frames
    }

    /// Decodes, resamples and featurises the audio file at `path`.
    pub fn file(&self, path: &Path) -> anyhow::Result<ClipFeatures> {
        let audio = crate::audio::load(path, self.cfg.sample_rate)?;
        let (windows, window_mask) = self.cfg.windows().split(&audio.samples);
        // Each window's log-mel is computed into its part of the clip's features.
        let mut mel = vec![0.0f32; self.clip_len()];
        let parts = mel.chunks_exact_mut(self.n_mels * self.n_frames);
        for ((w, &m), part) in windows.iter().zip(&window_mask).zip(parts) {
            if m == 1 {
                self.extractor.compute_into(w, part);
            } else {
                // Padding-only windows: the log-mel of silence, without computing it.
                part.fill(self.cfg.style.silence());
            }
        }
        Ok(ClipFeatures {
            mel,
            window_mask,
            seconds: audio.seconds(),
        })
    }
}

/// Token ids of every caption, with what the metrics report.
struct Tokens {
    /// `[n_captions, max_tokens]`.
    ids: Vec<i64>,
    /// Token of each id.
    vocab: Vec<String>,
    /// Captions with tokens dropped to fit `max_tokens`.
    truncated: usize,
    /// Per caption: (word tokens kept, of which unknown).
    counts: Vec<(usize, usize)>,
}

impl Tokens {
    /// With the word vocabulary of the training split.
    fn words(captions: &[CaptionRow], params: &FeaturesParams) -> Self {
        let vocab = Vocab::build(
            captions
                .iter()
                .filter(|c| c.split == Split::Train)
                .map(|c| c.normalized.as_str()),
            params.min_word_count,
        );
        let ids = captions
            .iter()
            .flat_map(|c| vocab.encode(&c.normalized, params.max_tokens))
            .collect();
        let truncated = captions
            .iter()
            .filter(|c| c.normalized.split_whitespace().count() > params.max_tokens)
            .count();
        let counts = captions
            .iter()
            .map(|c| {
                let words: Vec<&str> = c
                    .normalized
                    .split_whitespace()
                    .take(params.max_tokens)
                    .collect();
                (
                    words.len(),
                    words
                        .iter()
                        .filter(|w| vocab.id(w) == crate::text::UNK)
                        .count(),
                )
            })
            .collect();
        Self {
            ids,
            vocab: vocab.words().to_vec(),
            truncated,
            counts,
        }
    }

    /// With a pretrained tokenizer.
    fn pretrained(
        tokenizer: &PretrainedTokenizer,
        captions: &[CaptionRow],
    ) -> anyhow::Result<Self> {
        let encoded: Vec<_> = captions
            .par_iter()
            .map(|c| tokenizer.encode(&c.normalized))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            truncated: encoded.iter().filter(|e| e.truncated).count(),
            counts: encoded.iter().map(|e| (e.words, e.unknown)).collect(),
            ids: encoded.into_iter().flat_map(|e| e.ids).collect(),
            vocab: tokenizer.vocab().to_vec(),
        })
    }

    /// Fraction of the (kept, non-special) tokens of the split's captions that are unknown.
    fn unknown_rate(&self, captions: &[CaptionRow], split: Split) -> f64 {
        let (mut unk, mut all) = (0usize, 0usize);
        for (c, &(words, unknown)) in captions.iter().zip(&self.counts) {
            if c.split == split {
                all += words;
                unk += unknown;
            }
        }
        if all == 0 {
            0.0
        } else {
            unk as f64 / all as f64
        }
    }
}

/// The `features` stage kind.
#[derive(Debug, Default)]
pub struct Features;

impl StageKind for Features {
    fn name(&self) -> &'static str {
        "features"
    }

    fn summary(&self) -> &'static str {
        "Log-mel windows of every clip and word ids of every caption of a data set"
    }

    fn version(&self) -> u32 {
        // 2: `file` as the data set has it (not resolved to an absolute path), timings and the
        // tokenizer's directory out of metrics.json.
        // 3: windows in shards (`windows/`), `audio_seconds` as the data set lists them.
        3
    }

    fn plan(&self, params: &toml::Table, inputs: &InputCounts) -> Result<Plan, ParamError> {
        inputs.expect(&["dataset"], &["tokenizer"])?;
        inputs.expect_single("dataset")?;
        inputs.expect_single("tokenizer")?;
        let p: FeaturesParams = parse_params(params)?;
        p.validate()?;
        Plan::new(&p.canonical(), Resources::ALL_CORES)
    }

    fn run(&self, ctx: &RunContext<'_>) -> anyhow::Result<()> {
        let params: FeaturesParams = ctx.params()?;
        let dataset = ctx.input("dataset")?;
        let tokenizer = match ctx.optional_input("tokenizer")? {
            Some(path) => Some(tokenizer_path(path, params.tokenizer_file.as_deref())?),
            None => None,
        };
        // Shards go to the scratch folder first: an interrupted run resumes from them.
        let windows = ctx.scratch_dir.join(WINDOWS_DIR);
        let (set, mut metrics) = crate::synth::pool(ctx.threads)?.install(|| {
            compute_with(
                dataset,
                tokenizer.as_deref(),
                &params,
                &windows,
                ctx.reporter,
            )
        })?;
        if let Some(file) = &params.tokenizer_file {
            // The tokenizer's path inside its input.
            metrics["tokenizer"]["file"] = file.as_str().into();
        }
        let published = ctx.out_dir.join(WINDOWS_DIR);
        std::fs::rename(&windows, &published).with_context(|| {
            format!(
                "moving `{}` to `{}`",
                windows.display(),
                published.display()
            )
        })?;
        set.save_tables(ctx.out_dir)?;
        ctx.write_metrics(&metrics)
    }
}

/// The `tokenizer.json` bound as input `tokenizer`: the input itself when it is a file, else
/// `file` inside it (default `tokenizer.json`).
pub fn tokenizer_path(input: &Path, file: Option<&str>) -> anyhow::Result<PathBuf> {
    if input.is_file() {
        anyhow::ensure!(
            file.is_none(),
            "`tokenizer_file` is set but the `tokenizer` input is a file (`{}`)",
            input.display()
        );
        return Ok(input.to_owned());
    }
    let path = input.join(file.unwrap_or("tokenizer.json"));
    anyhow::ensure!(
        path.is_file(),
        "no tokenizer at `{}`\nhint: set `tokenizer_file` to the `tokenizer.json` inside the `tokenizer` input",
        path.display()
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{SynthParams, write_dataset};
    use pipeline_api::SilentReporter;

    #[test]
    fn plan_resolves_presets_and_names_bad_keys() {
        let inputs = InputCounts([("dataset".to_owned(), 1)].into());
        let plan = Features.plan(&toml::Table::new(), &inputs).unwrap();
        assert_eq!(plan.params["n_mels"], 64);
        assert_eq!(plan.params["max_tokens"], 32);
        let t: toml::Table = toml::from_str("preset = \"passt\"").unwrap();
        let plan = Features.plan(&t, &inputs).unwrap();
        assert_eq!(plan.params["n_mels"], 128);
        assert_eq!(plan.params["window_seconds"], 10.0);
        let t: toml::Table = toml::from_str("preset = \"passt\"\nf_max = 20000.0").unwrap();
        assert_eq!(
            Features.plan(&t, &inputs).unwrap_err().key.as_deref(),
            Some("f_max")
        );
        let t: toml::Table = toml::from_str("sample_rate = 8000").unwrap();
        assert_eq!(Features.plan(&t, &inputs).unwrap().params["f_max"], 4000.0);
        let t: toml::Table = toml::from_str("preset = \"fast\"").unwrap();
        assert_eq!(
            Features.plan(&t, &inputs).unwrap_err().key.as_deref(),
            Some("preset")
        );
        assert!(
            Features
                .plan(&toml::Table::new(), &InputCounts::default())
                .is_err()
        );
    }

    #[test]
    fn plan_of_the_yamnet_preset_keeps_the_window_hop_and_others_omit_it() {
        let inputs = InputCounts([("dataset".to_owned(), 1)].into());
        let t: toml::Table = toml::from_str("preset = \"yamnet\"").unwrap();
        let plan = Features.plan(&t, &inputs).unwrap();
        assert_eq!(plan.params["window_hop_seconds"], 0.48);
        assert_eq!(plan.params["window_seconds"], 0.975);
        assert_eq!(plan.params["f_min"], 125.0);
        let light = Features.plan(&toml::Table::new(), &inputs).unwrap();
        assert!(light.params.get("window_hop_seconds").is_none());
        let same: toml::Table = toml::from_str("window_hop_seconds = 4.0").unwrap();
        assert_eq!(Features.plan(&same, &inputs).unwrap().params, light.params);
        let bad: toml::Table = toml::from_str("window_hop_seconds = 5.0").unwrap();
        assert_eq!(
            Features.plan(&bad, &inputs).unwrap_err().key.as_deref(),
            Some("window_hop_seconds")
        );
    }

    /// A generated data set of 12 / 4 / 4 clips in a temporary directory.
    fn small_synthetic_set() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let synth = SynthParams {
            train_clips: 12,
            val_clips: 4,
            test_clips: 4,
            ..Default::default()
        };
        write_dataset(&synth, dir.path(), &SilentReporter).unwrap();
        dir
    }

    #[test]
    fn features_of_a_small_synthetic_set() {
        let dir = small_synthetic_set();
        let params = FeaturesParams {
            max_seconds: Some(6.0),
            window_seconds: Some(2.5),
            ..Default::default()
        };
        let out = tempfile::tempdir().unwrap();
        let (set, metrics) = compute(
            dir.path(),
            &params,
            &out.path().join(WINDOWS_DIR),
            &SilentReporter,
        )
        .unwrap();
        set.save_tables(out.path()).unwrap();
        let loaded = FeatureSet::load(out.path()).unwrap();
        assert_eq!(loaded.mel_shape(), [20, 3, 64, 1 + (40000 - 1) / 320]);
        // 4 s of audio in 2.5 s windows of a 6 s frame: two valid windows, one of padding.
        assert_eq!(loaded.clip_window_mask(0), &[1, 1, 0]);
        assert_eq!(loaded.captions.len(), 100);
        assert_eq!(loaded.captions[7].clip_index, 1);
        assert!(loaded.mel.to_vec().unwrap().iter().all(|x| x.is_finite()));
        assert_eq!(loaded.vocab[..2], ["<pad>".to_owned(), "<unk>".to_owned()]);
        assert!(loaded.caption_tokens(0)[0] > 1);
        let rel = loaded.relevance.as_ref().unwrap();
        assert!(
            rel.iter()
                .any(|r| r.caption_index == 0 && r.clip_index == 0 && r.relevance == 1.0)
        );
        assert_eq!(metrics["train_clips"], 12);
        // The data set's relative path, not resolved against where it lives.
        assert_eq!(loaded.clips[0].file, "audio/syn-train-00000.wav");
    }

    /// A generated data set of 2 / 1 / 1 clips with one caption each.
    fn tiny_synthetic_set() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let synth = SynthParams {
            train_clips: 2,
            val_clips: 1,
            test_clips: 1,
            captions_per_clip: 1,
            ..Default::default()
        };
        write_dataset(&synth, dir.path(), &SilentReporter).unwrap();
        dir
    }

    #[test]
    fn timings_are_measured_not_written() {
        let dir = tiny_synthetic_set();
        let recorder = crate::testing::Recorder::default();
        let windows = tempfile::tempdir().unwrap();
        let (_, metrics) = compute(
            dir.path(),
            &FeaturesParams::default(),
            windows.path(),
            &recorder,
        )
        .unwrap();
        assert_eq!(
            recorder.measured(),
            ["features_seconds", "audio_seconds_per_second"]
        );
        let timed: Vec<_> = metrics
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.contains("second") && *k != "audio_seconds")
            .collect();
        assert!(timed.is_empty(), "{timed:?}");
    }

    #[test]
    fn an_interrupted_run_resumes_at_the_first_unfinished_shard() {
        let dir = tiny_synthetic_set();
        // About 51 kB per clip: two clips per shard, two shards.
        let params = FeaturesParams {
            shard_mb: 0.11,
            ..Default::default()
        };
        let whole = tempfile::tempdir().unwrap();
        let (set, _) = compute(dir.path(), &params, whole.path(), &SilentReporter).unwrap();
        assert!(whole.path().join("00001.safetensors").exists());
        assert!(!whole.path().join("00002.safetensors").exists());

        // An interrupted run: shard 0 complete (here: zeros, to tell it from a recomputed
        // one), shard 1 and the index missing.
        let cut = tempfile::tempdir().unwrap();
        let [_, w, m, f] = set.mel_shape();
        let mut writer = ShardWriter::new(cut.path(), [w, m, f], params.shard_bytes()).unwrap();
        writer
            .write(
                0,
                0,
                &vec![0.0; 2 * set.clip_len()],
                &set.window_mask[..2 * w],
            )
            .unwrap();
        let recorder = crate::testing::Recorder::default();
        let (resumed, _) = compute(dir.path(), &params, cut.path(), &recorder).unwrap();
        assert_eq!(resumed.window_mask, set.window_mask);
        assert!(
            resumed.mel.clip(1).unwrap().iter().all(|&v| v == 0.0),
            "shard 0 kept"
        );
        for clip in 2..4 {
            assert_eq!(resumed.mel.clip(clip).unwrap(), set.mel.clip(clip).unwrap());
        }
        assert!(
            recorder
                .measured()
                .contains(&"audio_seconds_per_second".to_owned())
        );

        // A run that finds every shard complete computes nothing.
        let recorder = crate::testing::Recorder::default();
        compute(dir.path(), &params, whole.path(), &recorder).unwrap();
        assert_eq!(recorder.measured(), ["features_seconds"]);
    }

    #[test]
    fn yamnet_features_of_a_small_synthetic_set() {
        let dir = small_synthetic_set();
        let params = FeaturesParams {
            preset: Preset::Yamnet,
            ..Default::default()
        };
        let scratch = tempfile::tempdir().unwrap();
        let (set, metrics) = compute(dir.path(), &params, scratch.path(), &SilentReporter).unwrap();
        // 10 s in 20 patches of 96 frames; 4 s of audio fill 1 + ceil((64000 - 15600) / 7680).
        assert_eq!(set.mel_shape(), [20, 20, 64, 96]);
        assert_eq!(set.clip_window_mask(0)[..9], [1, 1, 1, 1, 1, 1, 1, 1, 0]);
        assert_eq!(metrics["n_frames"], 96);
        let silence = 0.001f32.ln();
        let last = &set.mel.clip(0).unwrap()[(20 - 1) * 64 * 96..];
        assert!(last.iter().all(|&v| v == silence));
    }

    #[test]
    fn tokenizer_file_picks_the_file_inside_a_folder_input() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("pypi/model");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("tokenizer.json"), "{}").unwrap();
        let found = tokenizer_path(dir.path(), Some("pypi/model/tokenizer.json")).unwrap();
        assert_eq!(found, nested.join("tokenizer.json"));
        assert_eq!(
            tokenizer_path(&nested, None).unwrap(),
            nested.join("tokenizer.json")
        );
        let err = tokenizer_path(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("set `tokenizer_file`"), "{err}");
        let file = nested.join("tokenizer.json");
        assert!(tokenizer_path(&file, Some("x.json")).is_err());
        let inputs = InputCounts([("dataset".to_owned(), 1), ("tokenizer".to_owned(), 1)].into());
        let t: toml::Table = toml::from_str("tokenizer_file = \"../up.json\"").unwrap();
        let err = Features.plan(&t, &inputs).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("tokenizer_file"));
    }

    #[test]
    fn plan_accepts_an_optional_tokenizer() {
        let inputs = InputCounts([("dataset".to_owned(), 1), ("tokenizer".to_owned(), 1)].into());
        let with = Features.plan(&toml::Table::new(), &inputs).unwrap();
        let without = Features
            .plan(
                &toml::Table::new(),
                &InputCounts([("dataset".to_owned(), 1)].into()),
            )
            .unwrap();
        assert_eq!(with.params, without.params);
        let inputs = InputCounts([("dataset".to_owned(), 1), ("vocab".to_owned(), 1)].into());
        assert_eq!(
            Features
                .plan(&toml::Table::new(), &inputs)
                .unwrap_err()
                .key
                .as_deref(),
            Some("inputs.vocab")
        );
        let inputs = InputCounts([("dataset".to_owned(), 1), ("tokenizer".to_owned(), 2)].into());
        assert_eq!(
            Features
                .plan(&toml::Table::new(), &inputs)
                .unwrap_err()
                .key
                .as_deref(),
            Some("inputs.tokenizer")
        );
    }

    #[test]
    fn features_with_a_pretrained_tokenizer() {
        let dir = small_synthetic_set();
        let tok_dir = tempfile::tempdir().unwrap();
        let tok_path = tok_dir.path().join("tokenizer.json");
        std::fs::write(&tok_path, crate::text::tests::TEST_TOKENIZER).unwrap();
        let params = FeaturesParams {
            max_tokens: 12,
            ..Default::default()
        };
        let scratch = tempfile::tempdir().unwrap();
        let (set, metrics) = compute_with(
            dir.path(),
            Some(&tok_path),
            &params,
            scratch.path(),
            &SilentReporter,
        )
        .unwrap();
        let out = tempfile::tempdir().unwrap();
        set.save(out.path()).unwrap();
        let loaded = FeatureSet::load(out.path()).unwrap();
        let vocab: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("vocab.json")).unwrap()).unwrap();
        assert_eq!(
            vocab["words"],
            serde_json::json!(crate::text::tests::TEST_VOCAB)
        );
        assert_eq!(loaded.vocab, crate::text::tests::TEST_VOCAB);
        assert_eq!(loaded.max_tokens, 12);

        // [CLS] in this clip a high pitch ##ed pluck ##ed string | is pluck ##ed [UNK] | [SEP]:
        // truncated to 12 ids, keeping [SEP].
        assert_eq!(
            loaded.captions[0].normalized,
            "in this clip a high pitched plucked string is plucked faintly"
        );
        assert_eq!(
            loaded.caption_tokens(0),
            &[1, 6, 7, 8, 4, 9, 10, 11, 12, 11, 13, 2]
        );
        // [CLS] the [UNK] rain pour ##s down in this clip [SEP], padded with [PAD] = 3.
        assert_eq!(
            loaded.captions[25].normalized,
            "the pouring rain pours down in this clip"
        );
        assert_eq!(
            loaded.caption_tokens(25),
            &[1, 5, 0, 15, 16, 17, 18, 6, 7, 8, 2, 3]
        );
        // Every caption starts with [CLS]; the ids index the vocabulary.
        assert!(
            loaded
                .tokens
                .chunks(12)
                .all(|t| t[0] == 1 && t.contains(&2))
        );
        assert!(loaded.tokens.iter().all(|&id| (0..19).contains(&id)));

        assert_eq!(metrics["vocab_size"], 19);
        assert_eq!(metrics["tokenizer"]["vocab_size"], 19);
        assert_eq!(metrics["tokenizer"]["model"], "WordPiece");
        assert_eq!(metrics["tokenizer"]["pad_id"], 3);
        assert_eq!(metrics["tokenizer"]["unk_id"], 0);
        assert_eq!(metrics["tokenizer"]["special_tokens"], 2);
        // The name only: where the input lives is not part of the output.
        assert_eq!(metrics["tokenizer"]["file"], "tokenizer.json");
        let truncated = metrics["captions_truncated"].as_u64().unwrap();
        assert!(truncated > 0 && truncated < 100, "{truncated}");
        assert!(metrics["unknown_word_rate_val"].as_f64().unwrap() > 0.0);

        // The audio features do not depend on the tokenizer.
        let scratch = tempfile::tempdir().unwrap();
        let (words, _) = compute(dir.path(), &params, scratch.path(), &SilentReporter).unwrap();
        assert_eq!(words.mel, loaded.mel);
        assert_ne!(words.vocab, loaded.vocab);
    }

    /// Through the kind, with a folder `tokenizer` input: the metrics name the tokenizer by its
    /// path inside the input, and no output names a directory of the inputs.
    #[test]
    fn the_kind_names_the_tokenizer_inside_its_input() {
        let data = tiny_synthetic_set();
        let tok = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tok.path().join("sub")).unwrap();
        std::fs::write(
            tok.path().join("sub/tokenizer.json"),
            crate::text::tests::TEST_TOKENIZER,
        )
        .unwrap();
        let out = tempfile::tempdir().unwrap();
        let recorder = crate::testing::Recorder::default();
        crate::testing::run_kind(
            &Features,
            "tokenizer_file = \"sub/tokenizer.json\"",
            &[("dataset", data.path()), ("tokenizer", tok.path())],
            out.path(),
            &recorder,
        )
        .unwrap();
        let files = crate::testing::content(out.path());
        let metrics: serde_json::Value = serde_json::from_slice(&files["metrics.json"]).unwrap();
        assert_eq!(metrics["tokenizer"]["file"], "sub/tokenizer.json");
        crate::testing::assert_no_path_in(&files, data.path());
        crate::testing::assert_no_path_in(&files, tok.path());
    }

    #[test]
    fn an_invalid_or_missing_tokenizer_names_the_file() {
        let dir = tiny_synthetic_set();
        let params = FeaturesParams::default();
        let bad = dir.path().join("bad-tokenizer.json");
        std::fs::write(&bad, r#"{"model": {"type": "WordPiece"}}"#).unwrap();
        let missing = dir.path().join("missing-tokenizer.json");
        for path in [bad, missing] {
            let scratch = tempfile::tempdir().unwrap();
            let err = compute_with(
                dir.path(),
                Some(&path),
                &params,
                scratch.path(),
                &SilentReporter,
            )
            .unwrap_err();
            let message = format!("{err:#}");
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
    }
}
