//! The `embed` artifact: one model's embeddings of every clip and caption.

use std::path::Path;

use anyhow::ensure;

use crate::tensors::{TensorFile, TensorOut, write_tensors};

pub const EMBEDDINGS_FILE: &str = "embeddings.safetensors";

/// L2-normalised embeddings of every clip and caption of a feature set, row-aligned with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub dim: usize,
    /// `[n_clips, dim]`.
    pub audio: Vec<f32>,
    /// `[n_captions, dim]`.
    pub text: Vec<f32>,
}

impl Embeddings {
    pub fn n_clips(&self) -> usize {
        self.audio.len() / self.dim
    }

    pub fn n_captions(&self) -> usize {
        self.text.len() / self.dim
    }

    pub fn audio_row(&self, i: usize) -> &[f32] {
        &self.audio[i * self.dim..(i + 1) * self.dim]
    }

    pub fn text_row(&self, j: usize) -> &[f32] {
        &self.text[j * self.dim..(j + 1) * self.dim]
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        write_tensors(
            &dir.join(EMBEDDINGS_FILE),
            &[
                TensorOut::F32("audio", vec![self.n_clips(), self.dim], &self.audio),
                TensorOut::F32("text", vec![self.n_captions(), self.dim], &self.text),
            ],
        )
    }

    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        Self::scan(dir, |dim, audio, text| Self {
            dim,
            audio: audio.to_vec(),
            text: text.to_vec(),
        })
    }

    /// `f(dim, audio, text)` on the artifact's rows as the file holds them, without a copy
    /// (for readers that gather a few rows from large embeddings).
    pub fn scan<R>(dir: &Path, f: impl FnOnce(usize, &[f32], &[f32]) -> R) -> anyhow::Result<R> {
        let path = dir.join(EMBEDDINGS_FILE);
        let file = TensorFile::open(&path)?;
        let (a_shape, audio) = file.f32_slice("audio")?;
        let (t_shape, text) = file.f32_slice("text")?;
        ensure!(
            a_shape.len() == 2 && t_shape.len() == 2 && a_shape[1] == t_shape[1],
            "`{}`: `audio` {a_shape:?} and `text` {t_shape:?} must be [n, dim] with one dim",
            path.display()
        );
        Ok(f(a_shape[1], &audio, &text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_and_reject_mismatched_dims() {
        let dir = tempfile::tempdir().unwrap();
        let emb = Embeddings {
            dim: 2,
            audio: vec![1.0, 0.0, 0.0, 1.0],
            text: vec![0.6, 0.8],
        };
        emb.save(dir.path()).unwrap();
        let loaded = Embeddings::load(dir.path()).unwrap();
        assert_eq!(loaded, emb);
        assert_eq!(loaded.n_captions(), 1);
        write_tensors(
            &dir.path().join(EMBEDDINGS_FILE),
            &[
                TensorOut::F32("audio", vec![1, 2], &[1.0, 0.0]),
                TensorOut::F32("text", vec![1, 3], &[1.0, 0.0, 0.0]),
            ],
        )
        .unwrap();
        assert!(Embeddings::load(dir.path()).is_err());
    }
}
