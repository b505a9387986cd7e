//! The `features` artifact: log-mel windows, token ids and the clip and caption tables (also
//! what `encode` writes, with frozen encoders' embeddings in place of the windows).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, ensure};
use serde::{Deserialize, Serialize};

use crate::dataset::{clip_columns, zip4};
use crate::parquet::{
    Table, batch, f32_column, i64_column, string_column, string_list_column, write_parquet,
};
use crate::tensors::{TensorFile, TensorOut, write_tensors};
use crate::windows::{ClipWindows, DEFAULT_SHARD_BYTES, WINDOWS_DIR};
use crate::{CAPTIONS_FILE, CLIPS_FILE, RELEVANCE_FILE, Split};

pub const FEATURES_FILE: &str = "features.safetensors";
pub const VOCAB_FILE: &str = "vocab.json";

#[derive(Debug, Clone, PartialEq)]
pub struct ClipRow {
    pub clip_id: String,
    /// The clip's audio as the data set has it ([`crate::DatasetClip::file`]): relative to the
    /// data set artifact (the `features` node's `dataset` input), never resolved.
    pub file: String,
    pub split: Split,
    pub duration_s: f64,
    /// Rows of this clip's captions in [`FeatureSet::captions`].
    pub caption_indices: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaptionRow {
    pub caption_id: String,
    pub clip_id: String,
    /// Row of the caption's clip in [`FeatureSet::clips`] and in `mel`.
    pub clip_index: usize,
    pub split: Split,
    pub text: String,
    pub normalized: String,
}

/// Sparse ground-truth relevance by row numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelevanceRow {
    pub caption_index: usize,
    pub clip_index: usize,
    pub relevance: f32,
}

/// The `features` artifact in memory (also what `encode` writes, with frozen encoders'
/// embeddings in place of the log-mel windows and the token ids).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    /// `[n_clips, n_windows, n_mels, n_frames]`: log-mel windows; after `encode`,
    /// `[n_clips, n_windows, 1, dim]`: each window's embedding by a frozen audio encoder.
    /// Loaded sets read them from their shards on demand.
    pub mel: ClipWindows,
    /// `[n_clips, n_windows]`, 1 where the window holds audio.
    pub window_mask: Vec<u8>,
    pub max_tokens: usize,
    /// `[n_captions, max_tokens]`, ids into `vocab`: with the word vocabulary 0 = padding,
    /// 1 = unknown; with a pretrained tokenizer, its ids, padded with its padding id.
    pub tokens: Vec<i64>,
    pub clips: Vec<ClipRow>,
    pub captions: Vec<CaptionRow>,
    /// Word of each token id.
    pub vocab: Vec<String>,
    pub relevance: Option<Vec<RelevanceRow>>,
    /// Each caption's embedding by a frozen text encoder (written by `encode`).
    pub text_vectors: Option<TextVectors>,
}

/// Caption embeddings by a frozen text encoder, `[n_captions, dim]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct TextVectors {
    pub dim: usize,
    pub values: Vec<f32>,
}

impl TextVectors {
    pub fn row(&self, caption_index: usize) -> &[f32] {
        &self.values[caption_index * self.dim..(caption_index + 1) * self.dim]
    }
}

const TEXT_VECTORS: &str = "text_vectors";

#[derive(Serialize, Deserialize)]
struct VocabFile {
    words: Vec<String>,
}

impl FeatureSet {
    /// `[n_clips, n_windows, n_mels, n_frames]`.
    pub fn mel_shape(&self) -> [usize; 4] {
        self.mel.shape()
    }

    pub fn n_windows(&self) -> usize {
        self.mel.shape()[1]
    }

    /// Elements of one clip's mel tensor (`n_windows * n_mels * n_frames`).
    pub fn clip_len(&self) -> usize {
        self.mel.clip_len()
    }

    pub fn clip_window_mask(&self, clip_index: usize) -> &[u8] {
        let w = self.n_windows();
        &self.window_mask[clip_index * w..(clip_index + 1) * w]
    }

    pub fn caption_tokens(&self, caption_index: usize) -> &[i64] {
        &self.tokens[caption_index * self.max_tokens..(caption_index + 1) * self.max_tokens]
    }

    /// Rows of the clips in `split`, in order.
    pub fn split_clips(&self, split: Split) -> Vec<usize> {
        (0..self.clips.len())
            .filter(|&i| self.clips[i].split == split)
            .collect()
    }

    /// Rows of the captions in `split`, in order.
    pub fn split_captions(&self, split: Split) -> Vec<usize> {
        (0..self.captions.len())
            .filter(|&i| self.captions[i].split == split)
            .collect()
    }

    /// Writes the set as a `features` artifact in `dir`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        self.mel.save(
            &dir.join(WINDOWS_DIR),
            &self.window_mask,
            DEFAULT_SHARD_BYTES,
        )?;
        self.save_tables(dir)
    }

    /// Writes everything but the windows (`windows/`, which the caller writes).
    pub fn save_tables(&self, dir: &Path) -> anyhow::Result<()> {
        let mut tensors = vec![TensorOut::I64(
            "tokens",
            vec![self.captions.len(), self.max_tokens],
            &self.tokens,
        )];
        if let Some(v) = &self.text_vectors {
            tensors.push(TensorOut::F32(
                TEXT_VECTORS,
                vec![self.captions.len(), v.dim],
                &v.values,
            ));
        }
        write_tensors(&dir.join(FEATURES_FILE), &tensors)?;
        let c = &self.clips;
        write_parquet(
            &dir.join(CLIPS_FILE),
            &batch(
                [("clip_index", i64_column(0..c.len() as i64))]
                    .into_iter()
                    .chain(clip_columns(
                        c.iter()
                            .map(|x| (&x.clip_id, &x.file, x.split, x.duration_s)),
                    ))
                    .chain([
                        (
                            "caption_ids",
                            string_list_column(
                                &c.iter()
                                    .map(|x| {
                                        x.caption_indices
                                            .iter()
                                            .map(|&i| self.captions[i].caption_id.clone())
                                            .collect()
                                    })
                                    .collect::<Vec<_>>(),
                            ),
                        ),
                        (
                            "captions",
                            string_list_column(
                                &c.iter()
                                    .map(|x| {
                                        x.caption_indices
                                            .iter()
                                            .map(|&i| self.captions[i].text.clone())
                                            .collect()
                                    })
                                    .collect::<Vec<_>>(),
                            ),
                        ),
                    ])
                    .collect(),
            )?,
        )?;
        let k = &self.captions;
        write_parquet(
            &dir.join(CAPTIONS_FILE),
            &batch(vec![
                ("caption_index", i64_column(0..k.len() as i64)),
                (
                    "caption_id",
                    string_column(&k.iter().map(|x| &x.caption_id).collect::<Vec<_>>()),
                ),
                (
                    "clip_id",
                    string_column(&k.iter().map(|x| &x.clip_id).collect::<Vec<_>>()),
                ),
                (
                    "clip_index",
                    i64_column(k.iter().map(|x| x.clip_index as i64)),
                ),
                (
                    "split",
                    string_column(&k.iter().map(|x| x.split.as_str()).collect::<Vec<_>>()),
                ),
                (
                    "text",
                    string_column(&k.iter().map(|x| &x.text).collect::<Vec<_>>()),
                ),
                (
                    "normalized",
                    string_column(&k.iter().map(|x| &x.normalized).collect::<Vec<_>>()),
                ),
            ])?,
        )?;
        let vocab = serde_json::to_vec(&VocabFile {
            words: self.vocab.clone(),
        })?;
        std::fs::write(dir.join(VOCAB_FILE), vocab)?;
        if let Some(r) = &self.relevance {
            write_parquet(
                &dir.join(RELEVANCE_FILE),
                &batch(vec![
                    (
                        "caption_index",
                        i64_column(r.iter().map(|x| x.caption_index as i64)),
                    ),
                    (
                        "clip_index",
                        i64_column(r.iter().map(|x| x.clip_index as i64)),
                    ),
                    ("relevance", f32_column(r.iter().map(|x| x.relevance))),
                ])?,
            )?;
        }
        Ok(())
    }

    /// Opens the `features` artifact in `dir`: tables and tokens in memory, windows read from
    /// their shards on demand.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let (mel, window_mask) = ClipWindows::open(&dir.join(WINDOWS_DIR))?;
        let mel_shape = mel.shape();
        let tensors = TensorFile::open(&dir.join(FEATURES_FILE))?;
        let (token_shape, tokens) = tensors.i64("tokens")?;
        ensure!(
            token_shape.len() == 2,
            "`{}`: `tokens` must have 2 dimensions",
            dir.display()
        );
        let text_vectors = if tensors.contains(TEXT_VECTORS) {
            let (shape, values) = tensors.f32(TEXT_VECTORS)?;
            ensure!(
                shape.len() == 2 && shape[0] == token_shape[0],
                "`{}`: `{TEXT_VECTORS}` has shape {shape:?}, expected [{}, dim]",
                dir.display(),
                token_shape[0]
            );
            Some(TextVectors {
                dim: shape[1],
                values,
            })
        } else {
            None
        };

        let FeatureTables {
            clips,
            captions,
            vocab,
            relevance,
        } = FeatureTables::load(dir)?;
        ensure!(
            clips.len() == mel_shape[0],
            "`{}`: {} clips but `mel` has {} rows",
            dir.display(),
            clips.len(),
            mel_shape[0]
        );
        ensure!(
            captions.len() == token_shape[0],
            "`{}`: {} captions but `tokens` has {} rows",
            dir.display(),
            captions.len(),
            token_shape[0]
        );

        Ok(Self {
            mel,
            window_mask,
            max_tokens: token_shape[1],
            tokens,
            clips,
            captions,
            vocab,
            relevance,
            text_vectors,
        })
    }
}

/// The tables of a `features` artifact without its tensors: what reading clips and captions
/// needs, at a fraction of the cost of [`FeatureSet::load`].
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTables {
    pub clips: Vec<ClipRow>,
    pub captions: Vec<CaptionRow>,
    pub vocab: Vec<String>,
    pub relevance: Option<Vec<RelevanceRow>>,
}

impl FeatureTables {
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let captions_path = dir.join(CAPTIONS_FILE);
        let t = Table::open(&captions_path)?;
        let captions: Vec<CaptionRow> = zip4(
            t.strings("caption_id")?,
            t.strings("clip_id")?,
            t.i64s("clip_index")?,
            t.splits("split")?,
        )
        .zip(t.strings("text")?.into_iter().zip(t.strings("normalized")?))
        .map(
            |((caption_id, clip_id, clip_index, split), (text, normalized))| CaptionRow {
                caption_id,
                clip_id,
                clip_index: clip_index as usize,
                split,
                text,
                normalized,
            },
        )
        .collect();

        let clips_path = dir.join(CLIPS_FILE);
        let t = Table::open(&clips_path)?;
        let caption_row: HashMap<&str, usize> = captions
            .iter()
            .enumerate()
            .map(|(i, c)| (c.caption_id.as_str(), i))
            .collect();
        let caption_ids = t.string_lists("caption_ids")?;
        let clips = zip4(
            t.strings("clip_id")?,
            t.strings("file")?,
            t.splits("split")?,
            t.f64s("duration_s")?,
        )
        .zip(caption_ids)
        .map(|((clip_id, file, split, duration_s), ids)| {
            let caption_indices = ids
                .iter()
                .map(|id| {
                    caption_row.get(id.as_str()).copied().with_context(|| {
                        format!(
                            "`{}`: caption `{id}` missing from `{}`",
                            clips_path.display(),
                            captions_path.display()
                        )
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            Ok(ClipRow {
                clip_id,
                file,
                split,
                duration_s,
                caption_indices,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
        let vocab_path = dir.join(VOCAB_FILE);
        let vocab: VocabFile = serde_json::from_slice(
            &std::fs::read(&vocab_path)
                .with_context(|| format!("reading `{}`", vocab_path.display()))?,
        )
        .with_context(|| format!("parsing `{}`", vocab_path.display()))?;

        let relevance_path = dir.join(RELEVANCE_FILE);
        let relevance = if relevance_path.exists() {
            let t = Table::open(&relevance_path)?;
            Some(
                t.i64s("caption_index")?
                    .into_iter()
                    .zip(t.i64s("clip_index")?)
                    .zip(t.f32s("relevance")?)
                    .map(|((c, a), relevance)| RelevanceRow {
                        caption_index: c as usize,
                        clip_index: a as usize,
                        relevance,
                    })
                    .collect(),
            )
        } else {
            None
        };

        Ok(Self {
            clips,
            captions,
            vocab: vocab.words,
            relevance,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two clips (a: train, two captions; b: test, one) over a five-word vocabulary.
    pub(crate) fn tiny_features() -> FeatureSet {
        let clips = vec![
            ClipRow {
                clip_id: "a".into(),
                file: "a b, c.wav".into(),
                split: Split::Train,
                duration_s: 1.5,
                caption_indices: vec![0, 1],
            },
            ClipRow {
                clip_id: "b".into(),
                file: "/abs/b.wav".into(),
                split: Split::Test,
                duration_s: 2.0,
                caption_indices: vec![2],
            },
        ];
        let captions = vec![
            CaptionRow {
                caption_id: "a#0".into(),
                clip_id: "a".into(),
                clip_index: 0,
                split: Split::Train,
                text: "A dog, barking!".into(),
                normalized: "a dog barking".into(),
            },
            CaptionRow {
                caption_id: "a#1".into(),
                clip_id: "a".into(),
                clip_index: 0,
                split: Split::Train,
                text: "dog".into(),
                normalized: "dog".into(),
            },
            CaptionRow {
                caption_id: "b#0".into(),
                clip_id: "b".into(),
                clip_index: 1,
                split: Split::Test,
                text: "rain".into(),
                normalized: "rain".into(),
            },
        ];
        FeatureSet {
            mel: ClipWindows::in_memory([2, 2, 3, 4], (0..48).map(|x| x as f32 * 0.5).collect()),
            window_mask: vec![1, 1, 1, 0],
            max_tokens: 3,
            tokens: vec![2, 3, 4, 3, 0, 0, 1, 0, 0],
            clips,
            captions,
            vocab: vec![
                "<pad>".into(),
                "<unk>".into(),
                "a".into(),
                "dog".into(),
                "barking".into(),
            ],
            relevance: Some(vec![RelevanceRow {
                caption_index: 2,
                clip_index: 0,
                relevance: 0.25,
            }]),
            text_vectors: None,
        }
    }

    #[test]
    fn feature_set_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let features = tiny_features();
        features.save(dir.path()).unwrap();
        let loaded = FeatureSet::load(dir.path()).unwrap();
        assert_eq!(loaded, features);
        assert_eq!(loaded.mel.clip(1).unwrap()[0], 12.0);
        assert_eq!(loaded.window_mask, [1, 1, 1, 0]);
        assert_eq!(loaded.caption_tokens(1), &[3, 0, 0]);
        assert_eq!(loaded.split_captions(Split::Test), vec![2]);
    }

    #[test]
    fn feature_set_with_text_vectors_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut features = tiny_features();
        features.text_vectors = Some(TextVectors {
            dim: 2,
            values: vec![0.5, -1.0, 2.0, 0.0, 1.5, 3.0],
        });
        features.save(dir.path()).unwrap();
        let loaded = FeatureSet::load(dir.path()).unwrap();
        assert_eq!(loaded, features);
        assert_eq!(loaded.text_vectors.unwrap().row(2), &[1.5, 3.0]);
    }
}
