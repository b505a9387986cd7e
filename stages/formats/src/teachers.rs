//! The teachers' embeddings: `correspondences` writes them, `distill` reads them.

use std::path::Path;

use anyhow::ensure;

use crate::tensors::{TensorFile, TensorOut, write_tensors};

pub const TEACHERS_FILE: &str = "teachers.safetensors";

/// The M teachers' embeddings of one split's clips and captions: enough to form the ensemble's
/// estimate `C_hat[i, j] = 1/M Σ_m cos(e^m_a(i), e^m_c(j))` for any pair.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherEmbeddings {
    pub teachers: usize,
    pub dim: usize,
    /// Feature-set row of each clip of the split.
    pub clip_index: Vec<usize>,
    /// Feature-set row of each caption of the split.
    pub caption_index: Vec<usize>,
    /// `[teachers, clip_index.len(), dim]`, L2-normalised rows.
    pub audio: Vec<f32>,
    /// `[teachers, caption_index.len(), dim]`, L2-normalised rows.
    pub text: Vec<f32>,
}

impl TeacherEmbeddings {
    pub fn audio_row(&self, teacher: usize, clip: usize) -> &[f32] {
        let start = (teacher * self.clip_index.len() + clip) * self.dim;
        &self.audio[start..start + self.dim]
    }

    pub fn text_row(&self, teacher: usize, caption: usize) -> &[f32] {
        let start = (teacher * self.caption_index.len() + caption) * self.dim;
        &self.text[start..start + self.dim]
    }

    /// The ensemble's mean cosine for split-local rows `clip` and `caption`.
    pub fn estimate(&self, clip: usize, caption: usize) -> f32 {
        let sum: f32 = (0..self.teachers)
            .map(|m| {
                self.audio_row(m, clip)
                    .iter()
                    .zip(self.text_row(m, caption))
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
            })
            .sum();
        sum / self.teachers as f32
    }

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let clip_index: Vec<i64> = self.clip_index.iter().map(|&i| i as i64).collect();
        let caption_index: Vec<i64> = self.caption_index.iter().map(|&i| i as i64).collect();
        write_tensors(
            &dir.join(TEACHERS_FILE),
            &[
                TensorOut::F32(
                    "audio",
                    vec![self.teachers, clip_index.len(), self.dim],
                    &self.audio,
                ),
                TensorOut::F32(
                    "text",
                    vec![self.teachers, caption_index.len(), self.dim],
                    &self.text,
                ),
                TensorOut::I64("clip_index", vec![clip_index.len()], &clip_index),
                TensorOut::I64("caption_index", vec![caption_index.len()], &caption_index),
            ],
        )
    }

    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(TEACHERS_FILE);
        let file = TensorFile::open(&path)?;
        let (a_shape, audio) = file.f32("audio")?;
        let (t_shape, text) = file.f32("text")?;
        let (_, clip_index) = file.i64("clip_index")?;
        let (_, caption_index) = file.i64("caption_index")?;
        ensure!(
            a_shape.len() == 3
                && t_shape.len() == 3
                && a_shape[0] == t_shape[0]
                && a_shape[2] == t_shape[2]
                && a_shape[1] == clip_index.len()
                && t_shape[1] == caption_index.len(),
            "`{}`: inconsistent shapes audio {a_shape:?}, text {t_shape:?}",
            path.display()
        );
        Ok(Self {
            teachers: a_shape[0],
            dim: a_shape[2],
            clip_index: clip_index.into_iter().map(|i| i as usize).collect(),
            caption_index: caption_index.into_iter().map(|i| i as usize).collect(),
            audio,
            text,
        })
    }
}
