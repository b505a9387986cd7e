//! Assembling batches from a [`FeatureSet`]: training rows are (clip, caption) pairs, one per
//! caption of the split; tensors are copied out of the feature set (its shards) per batch, read
//! ahead on a background thread while training.

use burn::prelude::*;
use pipeline_formats::{FeatureSet, Split};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::models::TextInput;

/// One training row: a caption and its clip (rows of the feature set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub clip: usize,
    pub caption: usize,
}

/// The (clip, caption) rows of `split`, in caption order.
pub fn rows(features: &FeatureSet, split: Split) -> Vec<Row> {
    features
        .split_captions(split)
        .into_iter()
        .map(|j| Row {
            clip: features.captions[j].clip_index,
            caption: j,
        })
        .collect()
}

/// A ChaCha generator for `(seed, epoch, stream)`: epochs never share randomness, and a resumed
/// run draws exactly what the uninterrupted one would.
pub fn epoch_rng(seed: u64, epoch: usize, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream.wrapping_mul(1_000_003).wrapping_add(epoch as u64));
    rng
}

/// Fisher–Yates shuffle with our generator (independent of `rand`'s slice helpers).
pub fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

/// The training rows of one source (one `features` input) and how much of them an epoch draws.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub rows: Vec<Row>,
    pub weight: f64,
}

impl Source {
    /// Rows one epoch draws from this source: `weight × rows`, rounded.
    fn per_epoch(&self) -> usize {
        (self.weight * self.rows.len() as f64).round() as usize
    }
}

/// Rows one epoch of [`epoch_rows`] holds.
pub fn rows_per_epoch(sources: &[Source]) -> usize {
    sources.iter().map(Source::per_epoch).sum()
}

/// The rows of `epoch`, source after source (to be shuffled by [`epoch_batches`]): each source's
/// rows once per whole unit of its weight, then the fraction left as rows drawn without
/// replacement for this epoch (another part each epoch). One source of weight 1: its rows as
/// they are, so that a single-source training draws what it always has.
pub fn epoch_rows(sources: &[Source], seed: u64, epoch: usize) -> Vec<Row> {
    let mut out = Vec::with_capacity(rows_per_epoch(sources));
    for (k, source) in sources.iter().enumerate() {
        let wanted = source.per_epoch();
        let n = source.rows.len().max(1);
        for _ in 0..wanted / n {
            out.extend_from_slice(&source.rows);
        }
        let rest = wanted % n;
        if rest > 0 {
            let mut drawn = source.rows.clone();
            shuffle(&mut drawn, &mut epoch_rng(seed, epoch, 3 + k as u64));
            out.extend_from_slice(&drawn[..rest]);
        }
    }
    out
}

/// Rows shuffled for `epoch`, cut into batches of `batch_size`. A last partial batch is dropped
/// with `drop_last`, and always when smaller than 2 (a contrastive batch needs negatives).
pub fn epoch_batches(
    rows: &[Row],
    batch_size: usize,
    seed: u64,
    epoch: usize,
    drop_last: bool,
) -> Vec<Vec<Row>> {
    let mut rows = rows.to_vec();
    shuffle(&mut rows, &mut epoch_rng(seed, epoch, 1));
    let smallest = if drop_last { batch_size } else { 2 };
    rows.chunks(batch_size)
        .filter(|c| c.len() >= smallest)
        .map(<[Row]>::to_vec)
        .collect()
}

/// Number of batches per epoch of [`epoch_batches`].
pub fn batches_per_epoch(n_rows: usize, batch_size: usize, drop_last: bool) -> usize {
    let partial = n_rows % batch_size;
    n_rows / batch_size + usize::from(!drop_last && partial >= 2)
}

/// The audio of a batch of clips as read from a feature set, before it becomes tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioBatch {
    /// `[b, windows, n_mels, n_frames]` row-major.
    pub mel: Vec<f32>,
    /// `[b, windows]`, 1.0 where the window holds audio.
    pub mask: Vec<f32>,
    pub shape: [usize; 4],
}

impl AudioBatch {
    /// Reads `clips` from `features` (from its shards when it was loaded from disk).
    pub fn read(features: &FeatureSet, clips: &[usize]) -> anyhow::Result<Self> {
        let [_, w, m, t] = features.mel_shape();
        let b = clips.len();
        let mut mel = Vec::with_capacity(b * features.clip_len());
        let mut mask = Vec::with_capacity(b * w);
        for &c in clips {
            features.mel.read_clip_into(c, &mut mel)?;
            mask.extend(
                features
                    .clip_window_mask(c)
                    .iter()
                    .map(|&v| f32::from(u8::from(v != 0))),
            );
        }
        Ok(Self {
            mel,
            mask,
            shape: [b, w, m, t],
        })
    }

    /// `mel [b, windows, n_mels, n_frames]` and `window_mask [b, windows]`.
    pub fn tensors(self, device: &Device) -> (Tensor<4>, Tensor<2>) {
        let [b, w, _, _] = self.shape;
        (
            Tensor::from_data(TensorData::new(self.mel, self.shape), device),
            Tensor::from_data(TensorData::new(self.mask, [b, w]), device),
        )
    }
}

/// `mel [b, windows, n_mels, n_frames]` and `window_mask [b, windows]` of clips.
pub fn audio_tensors(
    features: &FeatureSet,
    clips: &[usize],
    device: &Device,
) -> anyhow::Result<(Tensor<4>, Tensor<2>)> {
    Ok(AudioBatch::read(features, clips)?.tensors(device))
}

/// Batches read ahead on a background thread of `scope`, at most [`PREFETCH`] ahead of their
/// use, in the order of `batches`: while a step runs, the next batches' clips are read from
/// the shards. The thread stops when the receiver is dropped.
pub fn prefetch<'scope, 'env: 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    features: &'env FeatureSet,
    batches: &'env [Vec<Row>],
) -> std::sync::mpsc::Receiver<anyhow::Result<AudioBatch>> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(PREFETCH);
    scope.spawn(move || {
        for batch in batches {
            let clips: Vec<usize> = batch.iter().map(|r| r.clip).collect();
            if sender.send(AudioBatch::read(features, &clips)).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Batches [`prefetch`] holds ready beside the one in use: a bound on its memory.
pub const PREFETCH: usize = 2;

/// Captions as the text encoder takes them: their frozen-encoder vectors `[b, dim]` when the
/// feature set has them (`encode`), else their token ids `[b, max_tokens]`.
pub fn text_input(features: &FeatureSet, captions: &[usize], device: &Device) -> TextInput {
    let b = captions.len();
    if let Some(v) = &features.text_vectors {
        let values: Vec<f32> = captions.iter().flat_map(|&j| v.row(j)).copied().collect();
        return TextInput::Vectors(Tensor::from_data(
            TensorData::new(values, [b, v.dim]),
            device,
        ));
    }
    let l = features.max_tokens;
    let tokens: Vec<i64> = captions
        .iter()
        .flat_map(|&j| features.caption_tokens(j).iter().copied())
        .collect();
    TextInput::Tokens(Tensor::from_data(TensorData::new(tokens, [b, l]), device))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(n: usize, batch: usize, drop_last: bool) -> Vec<usize> {
        let rows: Vec<Row> = (0..n)
            .map(|i| Row {
                clip: i,
                caption: i,
            })
            .collect();
        let batches = epoch_batches(&rows, batch, 7, 0, drop_last);
        assert_eq!(batches.len(), batches_per_epoch(n, batch, drop_last));
        batches.iter().map(Vec::len).collect()
    }

    #[test]
    fn a_partial_last_batch_is_kept_unless_dropped_or_too_small() {
        assert_eq!(sizes(10, 4, false), [4, 4, 2]);
        assert_eq!(sizes(10, 4, true), [4, 4]);
        assert_eq!(sizes(9, 4, false), [4, 4], "one row has no negative");
        assert_eq!(sizes(8, 4, true), [4, 4]);
    }

    fn rows_of(range: std::ops::Range<usize>) -> Vec<Row> {
        range
            .map(|i| Row {
                clip: i,
                caption: i,
            })
            .collect()
    }

    #[test]
    fn an_epoch_draws_each_source_by_its_weight() {
        let sources = |wa: f64, wb: f64| {
            [
                Source {
                    rows: rows_of(0..10),
                    weight: wa,
                },
                Source {
                    rows: rows_of(10..14),
                    weight: wb,
                },
            ]
        };
        let one = sources(1.0, 1.0);
        assert_eq!(
            epoch_rows(&one, 7, 0),
            rows_of(0..14),
            "weights 1: every row once, in order"
        );

        let s = sources(0.5, 2.0);
        assert_eq!(rows_per_epoch(&s), 5 + 8);
        let count = |rows: &[Row], r: std::ops::Range<usize>| {
            rows.iter().filter(|x| r.contains(&x.clip)).count()
        };
        let (e0, e1) = (epoch_rows(&s, 7, 0), epoch_rows(&s, 7, 1));
        assert_eq!(e0.len(), 13);
        assert_eq!((count(&e0, 0..10), count(&e0, 10..14)), (5, 8));
        for clip in 10..14 {
            assert_eq!(
                e0.iter().filter(|x| x.clip == clip).count(),
                2,
                "clip {clip} twice"
            );
        }
        let mut half: Vec<usize> = e0[..5].iter().map(|r| r.clip).collect();
        half.sort_unstable();
        half.dedup();
        assert_eq!(half.len(), 5, "a half drawn without replacement");
        assert_ne!(e0[..5], e1[..5], "another half the next epoch");
        assert_eq!(epoch_rows(&s, 7, 1), e1, "the seed decides");

        let off = sources(0.0, 1.0);
        assert_eq!(epoch_rows(&off, 7, 0), rows_of(10..14));
    }

    #[test]
    fn prefetched_batches_are_the_batches_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let shape = [5, 2, 1, 3];
        let values: Vec<f32> = (0..30).map(|x| x as f32).collect();
        let mask = vec![1, 0, 1, 1, 1, 0, 1, 1, 0, 1];
        let features = FeatureSet {
            mel: pipeline_formats::ClipWindows::in_memory(shape, values),
            window_mask: mask,
            max_tokens: 1,
            tokens: Vec::new(),
            clips: (0..5)
                .map(|i| pipeline_formats::ClipRow {
                    clip_id: format!("c{i}"),
                    file: format!("c{i}.wav"),
                    split: Split::Train,
                    duration_s: 1.0,
                    caption_indices: Vec::new(),
                })
                .collect(),
            captions: Vec::new(),
            vocab: vec!["<pad>".into()],
            relevance: None,
            text_vectors: None,
        };
        features.save(dir.path()).unwrap();
        let loaded = FeatureSet::load(dir.path()).unwrap();
        let rows = |clips: &[usize]| -> Vec<Row> {
            clips.iter().map(|&clip| Row { clip, caption: 0 }).collect()
        };
        let batches = vec![rows(&[4, 0]), rows(&[1, 2, 3]), rows(&[2])];
        let read: Vec<AudioBatch> = std::thread::scope(|scope| {
            prefetch(scope, &loaded, &batches)
                .into_iter()
                .collect::<anyhow::Result<_>>()
        })
        .unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].mel[..6], [24.0, 25.0, 26.0, 27.0, 28.0, 29.0]);
        assert_eq!(read[0].mel[6..], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(read[0].mask, [0.0, 1.0, 1.0, 0.0]);
        assert_eq!(read[1].shape, [3, 2, 1, 3]);
        for (batch, got) in batches.iter().zip(&read) {
            let clips: Vec<usize> = batch.iter().map(|r| r.clip).collect();
            assert_eq!(got, &AudioBatch::read(&features, &clips).unwrap());
        }
    }
}
