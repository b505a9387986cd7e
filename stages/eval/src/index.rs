//! The rows of one split of a `features` artifact, read from its Parquet index only (the mel
//! tensor, gigabytes for ClothoV2, is never loaded).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, ensure};
use pipeline_formats::{CAPTIONS_FILE, CLIPS_FILE, RELEVANCE_FILE, Split, Table};

/// One split's clips and captions, in feature-row order.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitIndex {
    pub split: Split,
    /// Feature row (`clip_index`) of each clip of the split.
    pub clip_rows: Vec<usize>,
    pub clip_ids: Vec<String>,
    pub clip_files: Vec<String>,
    /// Feature row (`caption_index`) of each caption of the split.
    pub caption_rows: Vec<usize>,
    pub caption_ids: Vec<String>,
    pub caption_texts: Vec<String>,
    /// Split-local position of each caption's (annotated) clip.
    pub caption_clip: Vec<usize>,
    /// Ground truth where the features have it: for each split caption, `(split-local clip,
    /// relevance)` of its non-zero pairs within the split.
    pub relevance: Option<Vec<Vec<(usize, f32)>>>,
}

impl SplitIndex {
    pub fn n_clips(&self) -> usize {
        self.clip_rows.len()
    }

    pub fn n_captions(&self) -> usize {
        self.caption_rows.len()
    }

    /// Graded relevance of caption `q` (split-local) for clip `i` (split-local): the ground
    /// truth's value, 0 for absent pairs; `None` without ground truth.
    pub fn relevance_of(&self, q: usize, i: usize) -> Option<f32> {
        self.relevance
            .as_ref()
            .map(|r| r[q].iter().find(|p| p.0 == i).map_or(0.0, |p| p.1))
    }

    /// Reads `clips.parquet`, `captions.parquet` and (if present) `relevance.parquet` of a
    /// features directory and keeps the rows of `split`.
    pub fn load(dir: &Path, split: Split) -> anyhow::Result<Self> {
        let clips_path = dir.join(CLIPS_FILE);
        let t = Table::open(&clips_path)?;
        let all_clip_rows = t.i64s("clip_index")?;
        let all_clip_ids = t.strings("clip_id")?;
        let all_files = t.strings("file")?;
        let all_splits = t.splits("split")?;
        let mut clip_rows = Vec::new();
        let mut clip_ids = Vec::new();
        let mut clip_files = Vec::new();
        let mut local_clip: HashMap<usize, usize> = HashMap::new();
        for (k, s) in all_splits.iter().enumerate() {
            if *s == split {
                let row = usize::try_from(all_clip_rows[k]).context("negative clip_index")?;
                local_clip.insert(row, clip_rows.len());
                clip_rows.push(row);
                clip_ids.push(all_clip_ids[k].clone());
                clip_files.push(all_files[k].clone());
            }
        }

        let captions_path = dir.join(CAPTIONS_FILE);
        let t = Table::open(&captions_path)?;
        let all_caption_rows = t.i64s("caption_index")?;
        let all_caption_ids = t.strings("caption_id")?;
        let all_caption_clip = t.i64s("clip_index")?;
        let all_caption_splits = t.splits("split")?;
        let all_texts = t.strings("text")?;
        let mut caption_rows = Vec::new();
        let mut caption_ids = Vec::new();
        let mut caption_texts = Vec::new();
        let mut caption_clip = Vec::new();
        let mut local_caption: HashMap<usize, usize> = HashMap::new();
        for (k, s) in all_caption_splits.iter().enumerate() {
            if *s == split {
                let row = usize::try_from(all_caption_rows[k]).context("negative caption_index")?;
                let clip = usize::try_from(all_caption_clip[k]).context("negative clip_index")?;
                let local = *local_clip.get(&clip).with_context(|| {
                    format!(
                        "`{}`: caption `{}` of split {split} belongs to clip row {clip}, which is not in that split",
                        captions_path.display(),
                        all_caption_ids[k]
                    )
                })?;
                local_caption.insert(row, caption_rows.len());
                caption_rows.push(row);
                caption_ids.push(all_caption_ids[k].clone());
                caption_texts.push(all_texts[k].clone());
                caption_clip.push(local);
            }
        }

        let relevance_path = dir.join(RELEVANCE_FILE);
        let relevance = if relevance_path.exists() {
            let t = Table::open(&relevance_path)?;
            let mut per_caption = vec![Vec::new(); caption_rows.len()];
            for ((c, a), r) in t
                .i64s("caption_index")?
                .into_iter()
                .zip(t.i64s("clip_index")?)
                .zip(t.f32s("relevance")?)
            {
                if let (Some(&q), Some(&i)) = (
                    local_caption.get(&(c as usize)),
                    local_clip.get(&(a as usize)),
                ) && r > 0.0
                {
                    per_caption[q].push((i, r));
                }
            }
            Some(per_caption)
        } else {
            None
        };
        ensure!(
            !clip_rows.is_empty(),
            "`{}` has no clip in split {split}",
            dir.display()
        );
        ensure!(
            !caption_rows.is_empty(),
            "`{}` has no caption in split {split}",
            dir.display()
        );
        Ok(Self {
            split,
            clip_rows,
            clip_ids,
            clip_files,
            caption_rows,
            caption_ids,
            caption_texts,
            caption_clip,
            relevance,
        })
    }

    /// Captions (split-local) of each clip (split-local).
    pub fn captions_of_clips(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.n_clips()];
        for (q, &i) in self.caption_clip.iter().enumerate() {
            out[i].push(q);
        }
        out
    }
}

/// Gathers rows of a `[_, dim]` matrix, L2-normalising each (a zero row stays zero), so that
/// dot products are cosines even if a producer forgot to normalise.
pub fn gather_normalised(matrix: &[f32], dim: usize, rows: &[usize]) -> anyhow::Result<Vec<f32>> {
    let mut out = Vec::with_capacity(rows.len() * dim);
    gather_normalised_into(matrix, dim, rows, &mut out)?;
    Ok(out)
}

/// [`gather_normalised`], appended to `out` (several matrices into one buffer without copies).
pub fn gather_normalised_into(
    matrix: &[f32],
    dim: usize,
    rows: &[usize],
    out: &mut Vec<f32>,
) -> anyhow::Result<()> {
    let n = matrix.len() / dim;
    out.reserve(rows.len() * dim);
    for &r in rows {
        ensure!(r < n, "row {r} out of range ({n} rows)");
        let v = &matrix[r * dim..(r + 1) * dim];
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let s = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        out.extend(v.iter().map(|x| x * s));
    }
    Ok(())
}
