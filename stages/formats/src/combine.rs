//! Several `features` artifacts as one training set: the first source whole (its validation
//! and test splits and its ground truth are the combined set's), the others' train splits after
//! it. Captions per clip may differ between sources (Clotho five, AudioCaps train and WavCaps
//! one); a row stays one (clip, caption) pair.

use std::collections::HashMap;
use std::ops::Range;

use anyhow::{bail, ensure};

use crate::Split;
use crate::features::{CaptionRow, ClipRow, FeatureSet, RelevanceRow, TextVectors};
use crate::windows::ClipWindows;

/// What [`combine`] returns.
#[derive(Debug)]
pub struct Combined {
    pub features: FeatureSet,
    /// The rows of each source's captions in `features.captions`, in source order.
    pub captions: Vec<Range<usize>>,
}

/// The first two words of a word vocabulary (`features` without a pretrained tokenizer).
const WORD_VOCAB_HEAD: [&str; 2] = ["<pad>", "<unk>"];

/// Combines `sources` (in order). Their windows must have one shape, their captions one length
/// and one tokenizer: one pretrained tokenizer, or word vocabularies, which are merged (the
/// first source's ids stay; words new to it are appended).
pub fn combine(sources: Vec<FeatureSet>) -> anyhow::Result<Combined> {
    let Some(first) = sources.first() else {
        bail!("no features to combine");
    };
    let (max_tokens, vectors_dim) = (first.max_tokens, first.text_vectors.as_ref().map(|v| v.dim));
    let mut vocab = first.vocab.clone();
    let mut word_ids: HashMap<String, i64> = HashMap::new();
    let mut out = Builder::default();
    let mut windows = Vec::with_capacity(sources.len());
    let mut ranges = Vec::with_capacity(sources.len());
    let mut relevance = None;
    for (k, source) in sources.into_iter().enumerate() {
        ensure!(
            source.max_tokens == max_tokens,
            "features source {k}: captions of {} tokens, source 0's are {max_tokens}\n\
             hint: give every `features` node the same `max_tokens`",
            source.max_tokens
        );
        ensure!(
            source.text_vectors.as_ref().map(|v| v.dim) == vectors_dim,
            "features source {k}: caption vectors {:?}, source 0's are {vectors_dim:?} (sources must come from the same `encode` or none)",
            source.text_vectors.as_ref().map(|v| v.dim)
        );
        let token_map = if source.vocab == vocab {
            None
        } else if source.vocab.starts_with(&WORD_VOCAB_HEAD.map(String::from))
            && vocab.starts_with(&WORD_VOCAB_HEAD.map(String::from))
        {
            if word_ids.is_empty() {
                word_ids = (0..).zip(&vocab).map(|(i, w)| (w.clone(), i)).collect();
            }
            Some(
                source
                    .vocab
                    .iter()
                    .map(|w| {
                        *word_ids.entry(w.clone()).or_insert_with(|| {
                            vocab.push(w.clone());
                            vocab.len() as i64 - 1
                        })
                    })
                    .collect::<Vec<i64>>(),
            )
        } else {
            bail!(
                "features source {k} uses another tokenizer than source 0 (their vocabularies differ)\n\
                 hint: tokenize every source with the same `text` settings"
            );
        };
        // The first source is whole; the others give their train split.
        let clips: Vec<usize> = if k == 0 {
            (0..source.clips.len()).collect()
        } else {
            source.split_clips(Split::Train)
        };
        let start = out.captions.len();
        let caption_rows = out.push(&source, &clips, token_map.as_deref());
        if k == 0 {
            relevance = source.relevance.as_ref().map(|rows| {
                rows.iter()
                    .map(|r| RelevanceRow {
                        caption_index: caption_rows[r.caption_index],
                        ..*r
                    })
                    .collect()
            });
        }
        ranges.push(start..out.captions.len());
        windows.push((source.mel, clips));
    }
    let mel = ClipWindows::gather(windows)?;
    Ok(Combined {
        features: FeatureSet {
            mel,
            window_mask: out.window_mask,
            max_tokens,
            tokens: out.tokens,
            clips: out.clips,
            captions: out.captions,
            vocab,
            relevance,
            text_vectors: vectors_dim.map(|dim| TextVectors {
                dim,
                values: out.vectors,
            }),
        },
        captions: ranges,
    })
}

/// The combined tables, appended source by source.
#[derive(Default)]
struct Builder {
    clips: Vec<ClipRow>,
    captions: Vec<CaptionRow>,
    tokens: Vec<i64>,
    vectors: Vec<f32>,
    window_mask: Vec<u8>,
}

impl Builder {
    /// Appends `clips` of `source` and their captions; `token_map` maps the source's token ids
    /// to the combined vocabulary's. Returns each source caption's row here (`usize::MAX` for
    /// captions left out); clip rows are the order of `clips`.
    fn push(
        &mut self,
        source: &FeatureSet,
        clips: &[usize],
        token_map: Option<&[i64]>,
    ) -> Vec<usize> {
        let mut rows = vec![usize::MAX; source.captions.len()];
        for &c in clips {
            let clip_index = self.clips.len();
            let row = &source.clips[c];
            let mut caption_indices = Vec::with_capacity(row.caption_indices.len());
            for &j in &row.caption_indices {
                rows[j] = self.captions.len();
                caption_indices.push(self.captions.len());
                self.captions.push(CaptionRow {
                    clip_index,
                    ..source.captions[j].clone()
                });
                let tokens = source.caption_tokens(j);
                match token_map {
                    Some(map) => self.tokens.extend(tokens.iter().map(|&t| map[t as usize])),
                    None => self.tokens.extend_from_slice(tokens),
                }
                if let Some(v) = &source.text_vectors {
                    self.vectors.extend_from_slice(v.row(j));
                }
            }
            self.clips.push(ClipRow {
                caption_indices,
                ..row.clone()
            });
            self.window_mask
                .extend_from_slice(source.clip_window_mask(c));
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::tests::tiny_features;

    /// Clips c (train, one caption "cat rain") and d (validation) over another vocabulary.
    fn other_features() -> FeatureSet {
        let mut f = tiny_features();
        f.vocab = ["<pad>", "<unk>", "rain", "cat"].map(String::from).to_vec();
        for (clip, (id, split)) in f
            .clips
            .iter_mut()
            .zip([("c", Split::Train), ("d", Split::Val)])
        {
            clip.clip_id = id.into();
            clip.split = split;
        }
        f.clips[0].caption_indices = vec![0];
        f.clips[1].caption_indices = vec![1];
        f.captions.truncate(2);
        for (j, caption) in f.captions.iter_mut().enumerate() {
            caption.clip_index = j;
            caption.clip_id = f.clips[j].clip_id.clone();
            caption.split = f.clips[j].split;
        }
        f.tokens = vec![3, 2, 0, 2, 0, 0];
        f.mel = ClipWindows::in_memory([2, 2, 3, 4], (0..48).map(|x| -(x as f32)).collect());
        f.window_mask = vec![1, 0, 1, 1];
        f.relevance = None;
        f
    }

    #[test]
    fn the_first_source_whole_then_the_train_splits_of_the_others() {
        let (a, b) = (tiny_features(), other_features());
        let Combined { features, captions } = combine(vec![a.clone(), b.clone()]).unwrap();
        let ids: Vec<&str> = features.clips.iter().map(|c| c.clip_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(captions, [0..3, 3..4]);
        assert_eq!(features.captions[3].clip_index, 2);
        assert_eq!(features.clips[2].caption_indices, [3]);
        assert_eq!(features.split_clips(Split::Val), Vec::<usize>::new());
        // Words new to the first vocabulary are appended; the first source's ids stay.
        assert_eq!(features.vocab[5..], ["rain", "cat"].map(String::from));
        assert_eq!(features.caption_tokens(3), [6, 5, 0]);
        assert_eq!(features.tokens[..9], a.tokens[..]);
        assert_eq!(features.mel.clip(2).unwrap(), b.mel.clip(0).unwrap());
        assert_eq!(features.mel.clip(1).unwrap(), a.mel.clip(1).unwrap());
        assert_eq!(features.window_mask, [1, 1, 1, 0, 1, 0]);
        assert_eq!(features.relevance, a.relevance);

        let alone = combine(vec![a.clone()]).unwrap();
        assert_eq!(alone.features, a);
        assert_eq!((alone.captions.len(), &alone.captions[0]), (1, &(0..3)));
    }

    #[test]
    fn sources_that_cannot_be_combined_are_named() {
        let mut b = other_features();
        b.max_tokens = 2;
        b.tokens = vec![3, 2, 2, 0];
        let err = combine(vec![tiny_features(), b]).unwrap_err().to_string();
        assert!(
            err.contains("source 1") && err.contains("max_tokens"),
            "{err}"
        );

        let mut b = other_features();
        b.vocab[0] = "[PAD]".into();
        let err = combine(vec![tiny_features(), b]).unwrap_err().to_string();
        assert!(
            err.contains("source 1") && err.contains("tokenizer"),
            "{err}"
        );

        let mut b = other_features();
        b.mel = ClipWindows::in_memory([2, 1, 3, 4], vec![0.0; 24]);
        b.window_mask = vec![1, 1];
        let err = format!("{:#}", combine(vec![tiny_features(), b]).unwrap_err());
        assert!(err.contains("source 1"), "{err}");
    }
}
