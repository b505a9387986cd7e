//! Small synthetic feature sets with a learnable audio–caption link, for the tests and the
//! benchmark (`benches/train_step.rs` includes this file by path).
//!
//! Each clip has a class; its log-mel shows a bright band at a class-specific frequency (plus
//! noise) and its captions contain a class word among random filler words.

use pipeline_formats::{CaptionRow, ClipRow, ClipWindows, FeatureSet, Split};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Shape of a synthetic feature set.
#[derive(Debug, Clone, Copy)]
pub struct Synthetic {
    pub train_clips: usize,
    pub val_clips: usize,
    pub captions_per_clip: usize,
    pub classes: usize,
    pub windows: usize,
    pub n_mels: usize,
    pub n_frames: usize,
    pub max_tokens: usize,
    pub seed: u64,
}

impl Synthetic {
    /// 24 train + 8 val clips, 2 captions each, 4 classes, 1 window of 16 × 32.
    pub fn tiny() -> Self {
        Self {
            train_clips: 24,
            val_clips: 8,
            captions_per_clip: 2,
            classes: 4,
            windows: 1,
            n_mels: 16,
            n_frames: 32,
            max_tokens: 8,
            seed: 7,
        }
    }

    /// The default pipeline's scale: 500 train + 100 val clips, 5 captions, 64 mels × 200 frames,
    /// captions of up to 32 tokens (the `features` default).
    pub fn pipeline_scale() -> Self {
        Self {
            train_clips: 500,
            val_clips: 100,
            captions_per_clip: 5,
            classes: 20,
            windows: 1,
            n_mels: 64,
            n_frames: 200,
            max_tokens: 32,
            seed: 1,
        }
    }

    pub fn build(&self) -> FeatureSet {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let n_clips = self.train_clips + self.val_clips;
        let filler = 20usize;
        // vocab: <pad>, <unk>, class words, filler words
        let mut vocab = vec!["<pad>".to_owned(), "<unk>".to_owned()];
        vocab.extend((0..self.classes).map(|c| format!("class{c}")));
        vocab.extend((0..filler).map(|f| format!("word{f}")));
        let (m, t, w) = (self.n_mels, self.n_frames, self.windows);
        let mut mel = Vec::with_capacity(n_clips * w * m * t);
        let mut window_mask = Vec::with_capacity(n_clips * w);
        let mut clips = Vec::new();
        let mut captions = Vec::new();
        let mut tokens = Vec::new();
        for i in 0..n_clips {
            let class = i % self.classes;
            let split = if i < self.train_clips {
                Split::Train
            } else {
                Split::Val
            };
            let band = (class * m) / self.classes;
            let valid_windows = 1 + (i % w);
            for win in 0..w {
                window_mask.push(u8::from(win < valid_windows));
                for f in 0..m {
                    for _ in 0..t {
                        let signal = if win < valid_windows
                            && f.abs_diff(band) <= m / (2 * self.classes).max(1)
                        {
                            1.5
                        } else {
                            0.0
                        };
                        mel.push(signal + rng.random::<f32>() - 0.5);
                    }
                }
            }
            let clip_id = format!("clip{i}");
            let mut caption_indices = Vec::new();
            for k in 0..self.captions_per_clip {
                let j = captions.len();
                caption_indices.push(j);
                let len = 3 + rng.random_range(0..(self.max_tokens - 3).max(1));
                let pos = rng.random_range(0..len);
                let mut words = Vec::new();
                for p in 0..self.max_tokens {
                    let id = if p >= len {
                        0
                    } else if p == pos {
                        2 + class as i64
                    } else {
                        2 + self.classes as i64 + rng.random_range(0..filler as i64)
                    };
                    tokens.push(id);
                    if id > 0 {
                        words.push(vocab[id as usize].clone());
                    }
                }
                let text = words.join(" ");
                captions.push(CaptionRow {
                    caption_id: format!("{clip_id}#{k}"),
                    clip_id: clip_id.clone(),
                    clip_index: i,
                    split,
                    text: text.clone(),
                    normalized: text,
                });
            }
            clips.push(ClipRow {
                clip_id,
                file: format!("clip{i}.wav"),
                split,
                duration_s: 10.0,
                caption_indices,
            });
        }
        FeatureSet {
            mel: ClipWindows::in_memory([n_clips, w, m, t], mel),
            window_mask,
            max_tokens: self.max_tokens,
            tokens,
            clips,
            captions,
            vocab,
            relevance: None,
            text_vectors: None,
        }
    }
}
