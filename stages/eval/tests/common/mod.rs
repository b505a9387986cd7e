//! Shared by the test binaries and the benchmark (`benches/correspondences.rs` includes it by
//! path): synthetic artifacts and a stage runner (no audio: the mel tensor is
//! `[n_clips, 1, 1, 1]`; only the Parquet index and the embeddings matter to this crate).

#![allow(dead_code)] // each test binary and the benchmark use their part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pipeline_api::{InputArtifact, InputCounts, RunContext, SilentReporter, StageKind};
use pipeline_formats::{CaptionRow, ClipRow, Embeddings, FeatureSet, RelevanceRow, Split};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A feature set with `clips[s]` clips in split `s` (train, val, test), `captions_per_clip`
/// captions each, clips grouped into `topics` topics (clip `i` has topic `i % topics`). With
/// `relevance`, the ground truth gives each caption relevance 1 for its own clip and 0.5 for
/// the other clips of the same topic and split.
pub fn synthetic_features(
    clips: [usize; 3],
    captions_per_clip: usize,
    topics: usize,
    relevance: bool,
) -> FeatureSet {
    let mut clip_rows = Vec::new();
    let mut caption_rows = Vec::new();
    for (s, &n) in Split::ALL.iter().zip(&clips) {
        for _ in 0..n {
            let i = clip_rows.len();
            let clip_id = format!("clip{i:05}");
            let caption_indices: Vec<usize> = (0..captions_per_clip)
                .map(|k| caption_rows.len() + k)
                .collect();
            for k in 0..captions_per_clip {
                let text = format!("sound of topic {} number {i}, take {k}", i % topics.max(1));
                caption_rows.push(CaptionRow {
                    caption_id: format!("{clip_id}#{k}"),
                    clip_id: clip_id.clone(),
                    clip_index: i,
                    split: *s,
                    normalized: text.replace(',', ""),
                    text,
                });
            }
            clip_rows.push(ClipRow {
                clip_id,
                file: format!("audio/clip {i}.wav"),
                split: *s,
                duration_s: 10.0,
                caption_indices,
            });
        }
    }
    let relevance = relevance.then(|| {
        let mut rows = Vec::new();
        for (q, c) in caption_rows.iter().enumerate() {
            for (i, clip) in clip_rows.iter().enumerate() {
                if clip.split != c.split {
                    continue;
                }
                if i == c.clip_index {
                    rows.push(RelevanceRow {
                        caption_index: q,
                        clip_index: i,
                        relevance: 1.0,
                    });
                } else if i % topics.max(1) == c.clip_index % topics.max(1) {
                    rows.push(RelevanceRow {
                        caption_index: q,
                        clip_index: i,
                        relevance: 0.5,
                    });
                }
            }
        }
        rows
    });
    let n = clip_rows.len();
    FeatureSet {
        mel: pipeline_formats::ClipWindows::in_memory([n, 1, 1, 1], vec![0.0; n]),
        window_mask: vec![1; n],
        max_tokens: 1,
        tokens: vec![1; caption_rows.len()],
        clips: clip_rows,
        captions: caption_rows,
        vocab: vec!["<pad>".into(), "<unk>".into()],
        relevance,
        text_vectors: None,
    }
}

fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    // Box–Muller.
    let u: f32 = rng.random_range(1e-7..1.0);
    let v: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Embeddings of a feature set that model its structure: a clip is `topic + identity`
/// directions; a caption is its clip's vector plus `noise` × Gaussian noise; L2-normalised.
/// With `topics` as in [`synthetic_features`].
pub fn synthetic_embeddings(
    features: &FeatureSet,
    dim: usize,
    topics: usize,
    noise: f32,
    seed: u64,
) -> Embeddings {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let topic_vecs: Vec<Vec<f32>> = (0..topics.max(1))
        .map(|_| (0..dim).map(|_| gaussian(&mut rng)).collect())
        .collect();
    let mut audio = Vec::with_capacity(features.clips.len() * dim);
    for i in 0..features.clips.len() {
        let t = &topic_vecs[i % topics.max(1)];
        let mut v: Vec<f32> = t.iter().map(|x| x + 0.8 * gaussian(&mut rng)).collect();
        normalise(&mut v);
        audio.extend(v);
    }
    let mut text = Vec::with_capacity(features.captions.len() * dim);
    for c in &features.captions {
        let a = &audio[c.clip_index * dim..(c.clip_index + 1) * dim];
        let mut v: Vec<f32> = a
            .iter()
            .map(|x| x + noise / (dim as f32).sqrt() * gaussian(&mut rng))
            .collect();
        normalise(&mut v);
        text.extend(v);
    }
    Embeddings { dim, audio, text }
}

/// Random L2-normalised embeddings (no structure), for benchmarks.
pub fn random_embeddings(n_clips: usize, n_captions: usize, dim: usize, seed: u64) -> Embeddings {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let row = |rng: &mut ChaCha8Rng| {
        let mut v: Vec<f32> = (0..dim).map(|_| gaussian(rng)).collect();
        normalise(&mut v);
        v
    };
    let audio = (0..n_clips).flat_map(|_| row(&mut rng)).collect();
    let text = (0..n_captions).flat_map(|_| row(&mut rng)).collect();
    Embeddings { dim, audio, text }
}

/// Artifacts bound to one input: `(producing node, path)` each.
pub type InputList<'a> = Vec<(Option<&'a str>, PathBuf)>;

/// Plans and runs `kind` as the executor would: `params` is the TOML parameter table, each
/// input a list of `(producing node, path)`; outputs go to `out_dir` (created). Uses
/// [`SilentReporter`] and `threads` threads.
pub fn run_stage(
    kind: &dyn StageKind,
    node: &str,
    params: &str,
    inputs: &[(&str, InputList<'_>)],
    out_dir: &Path,
    threads: usize,
) -> anyhow::Result<()> {
    let table: toml::Table = toml::from_str(params)?;
    let counts = InputCounts(
        inputs
            .iter()
            .map(|(n, v)| (n.to_string(), v.len()))
            .collect(),
    );
    let plan = kind
        .plan(&table, &counts)
        .map_err(|e| anyhow::anyhow!("plan: {e}"))?;
    let inputs: BTreeMap<String, Vec<InputArtifact>> = inputs
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                v.iter()
                    .map(|(node, path)| InputArtifact {
                        node: node.map(str::to_owned),
                        path: path.clone(),
                    })
                    .collect(),
            )
        })
        .collect();
    std::fs::create_dir_all(out_dir)?;
    let scratch = out_dir.with_extension("scratch");
    std::fs::create_dir_all(&scratch)?;
    let ctx = RunContext {
        node,
        params: &plan.params,
        inputs: &inputs,
        out_dir,
        scratch_dir: &scratch,
        threads,
        gpu: None,
        reporter: &SilentReporter,
    };
    let result = kind.run(&ctx);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}
