//! A data set's index (`synth-dataset`, `dataset` write it; `features` reads it).

use std::path::Path;

use arrow::array::ArrayRef;

use crate::parquet::{Table, batch, f32_column, f64_column, string_column, write_parquet};
use crate::{CAPTIONS_FILE, CLIPS_FILE, RELEVANCE_FILE, Split};

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetClip {
    pub clip_id: String,
    /// Audio path relative to the data set artifact directory (`audio/<clip_id>.wav` for the
    /// generated sets; `audio/<path in the root>` for `dataset`, whose `audio` is a symbolic link
    /// to the root), so that the index does not depend on where anything lives. Absolute only
    /// where the data set's own index names an absolute file (a `csv` row outside the root);
    /// artifacts of older versions may hold absolute paths. Resolve with
    /// `pipeline_data::features::resolve`.
    pub file: String,
    pub split: Split,
    pub duration_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetCaption {
    pub caption_id: String,
    pub clip_id: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRelevance {
    pub caption_id: String,
    pub clip_id: String,
    pub relevance: f32,
}

/// The clip columns shared by the data set and the features index, from
/// `(clip_id, file, split, duration_s)` rows.
pub(crate) fn clip_columns<'a>(
    rows: impl Iterator<Item = (&'a String, &'a String, Split, f64)> + Clone,
) -> Vec<(&'static str, ArrayRef)> {
    vec![
        (
            "clip_id",
            string_column(&rows.clone().map(|r| r.0).collect::<Vec<_>>()),
        ),
        (
            "file",
            string_column(&rows.clone().map(|r| r.1).collect::<Vec<_>>()),
        ),
        (
            "split",
            string_column(&rows.clone().map(|r| r.2.as_str()).collect::<Vec<_>>()),
        ),
        ("duration_s", f64_column(rows.map(|r| r.3))),
    ]
}

/// A data set's index: what `synth-dataset` and `dataset` write and `features` reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatasetIndex {
    pub clips: Vec<DatasetClip>,
    pub captions: Vec<DatasetCaption>,
    /// Ground-truth graded relevance (non-zero pairs only), where the data set has it.
    pub relevance: Option<Vec<DatasetRelevance>>,
}

impl DatasetIndex {
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let c = &self.clips;
        write_parquet(
            &dir.join(CLIPS_FILE),
            &batch(clip_columns(
                c.iter()
                    .map(|x| (&x.clip_id, &x.file, x.split, x.duration_s)),
            ))?,
        )?;
        let k = &self.captions;
        write_parquet(
            &dir.join(CAPTIONS_FILE),
            &batch(vec![
                (
                    "caption_id",
                    string_column(&k.iter().map(|x| &x.caption_id).collect::<Vec<_>>()),
                ),
                (
                    "clip_id",
                    string_column(&k.iter().map(|x| &x.clip_id).collect::<Vec<_>>()),
                ),
                (
                    "text",
                    string_column(&k.iter().map(|x| &x.text).collect::<Vec<_>>()),
                ),
            ])?,
        )?;
        if let Some(r) = &self.relevance {
            write_parquet(
                &dir.join(RELEVANCE_FILE),
                &batch(vec![
                    (
                        "caption_id",
                        string_column(&r.iter().map(|x| &x.caption_id).collect::<Vec<_>>()),
                    ),
                    (
                        "clip_id",
                        string_column(&r.iter().map(|x| &x.clip_id).collect::<Vec<_>>()),
                    ),
                    ("relevance", f32_column(r.iter().map(|x| x.relevance))),
                ])?,
            )?;
        }
        Ok(())
    }

    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(CLIPS_FILE);
        let t = Table::open(&path)?;
        let clips = zip4(
            t.strings("clip_id")?,
            t.strings("file")?,
            t.splits("split")?,
            t.f64s("duration_s")?,
        )
        .map(|(clip_id, file, split, duration_s)| DatasetClip {
            clip_id,
            file,
            split,
            duration_s,
        })
        .collect();
        let path = dir.join(CAPTIONS_FILE);
        let t = Table::open(&path)?;
        let captions = t
            .strings("caption_id")?
            .into_iter()
            .zip(t.strings("clip_id")?)
            .zip(t.strings("text")?)
            .map(|((caption_id, clip_id), text)| DatasetCaption {
                caption_id,
                clip_id,
                text,
            })
            .collect();
        let path = dir.join(RELEVANCE_FILE);
        let relevance = if path.exists() {
            let t = Table::open(&path)?;
            Some(
                t.strings("caption_id")?
                    .into_iter()
                    .zip(t.strings("clip_id")?)
                    .zip(t.f32s("relevance")?)
                    .map(|((caption_id, clip_id), relevance)| DatasetRelevance {
                        caption_id,
                        clip_id,
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
            relevance,
        })
    }
}

/// Zips four columns read from one table.
pub(crate) fn zip4<A, B, C, D>(
    a: Vec<A>,
    b: Vec<B>,
    c: Vec<C>,
    d: Vec<D>,
) -> impl Iterator<Item = (A, B, C, D)> {
    a.into_iter()
        .zip(b)
        .zip(c)
        .zip(d)
        .map(|(((a, b), c), d)| (a, b, c, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_index_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let index = DatasetIndex {
            clips: vec![DatasetClip {
                clip_id: "x".into(),
                file: "audio/x y.wav".into(),
                split: Split::Val,
                duration_s: 3.0,
            }],
            captions: vec![DatasetCaption {
                caption_id: "x#0".into(),
                clip_id: "x".into(),
                text: "quoted, \"text\"".into(),
            }],
            relevance: None,
        };
        index.save(dir.path()).unwrap();
        assert_eq!(DatasetIndex::load(dir.path()).unwrap(), index);
    }
}
