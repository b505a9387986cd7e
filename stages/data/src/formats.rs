//! The artifact formats every stage shares (see `stages/README.md`): one reader and one writer
//! each, so that a column name or a tensor layout is defined in exactly one place.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Float64Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type, Int64Type, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

/// Which part of a data set a clip belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => bail!("unknown split `{other}` (expected train, val or test)"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parquet helpers

/// Writes one record batch as a Parquet file (Snappy), via a temporary file renamed into place.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> anyhow::Result<()> {
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).with_context(|| format!("creating `{}`", tmp.display()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing `{}`", path.display()))?;
    Ok(())
}

/// Reads a whole Parquet file into one record batch.
pub fn read_parquet(path: &Path) -> anyhow::Result<RecordBatch> {
    let read = || -> anyhow::Result<RecordBatch> {
        let file = File::open(path)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
        let schema = builder.schema().clone();
        let batches = builder.build()?.collect::<Result<Vec<_>, _>>()?;
        Ok(arrow::compute::concat_batches(&schema, &batches)?)
    };
    read().with_context(|| format!("reading `{}`", path.display()))
}

/// Typed column access that names the file and column on error.
pub struct Table<'a> {
    path: &'a Path,
    batch: RecordBatch,
}

impl<'a> Table<'a> {
    pub fn open(path: &'a Path) -> anyhow::Result<Self> {
        Ok(Self {
            path,
            batch: read_parquet(path)?,
        })
    }

    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    fn column(&self, name: &str) -> anyhow::Result<&ArrayRef> {
        self.batch
            .column_by_name(name)
            .with_context(|| format!("`{}` has no column `{name}`", self.path.display()))
    }

    fn wrong_type(&self, name: &str, expected: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "`{}`: column `{name}` is not {expected}",
            self.path.display()
        )
    }

    pub fn strings(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let col = self.column(name)?;
        let arr = col
            .as_string_opt::<i32>()
            .ok_or_else(|| self.wrong_type(name, "utf8"))?;
        Ok(arr
            .iter()
            .map(|v| v.unwrap_or_default().to_owned())
            .collect())
    }

    pub fn i64s(&self, name: &str) -> anyhow::Result<Vec<i64>> {
        let col = self.column(name)?;
        let arr = col
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| self.wrong_type(name, "int64"))?;
        Ok(arr.values().to_vec())
    }

    pub fn f64s(&self, name: &str) -> anyhow::Result<Vec<f64>> {
        let col = self.column(name)?;
        let arr = col
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| self.wrong_type(name, "float64"))?;
        Ok(arr.values().to_vec())
    }

    pub fn f32s(&self, name: &str) -> anyhow::Result<Vec<f32>> {
        let col = self.column(name)?;
        let arr = col
            .as_primitive_opt::<Float32Type>()
            .ok_or_else(|| self.wrong_type(name, "float32"))?;
        Ok(arr.values().to_vec())
    }

    pub fn splits(&self, name: &str) -> anyhow::Result<Vec<Split>> {
        self.strings(name)?
            .iter()
            .map(|s| {
                s.parse()
                    .with_context(|| format!("`{}`: column `{name}`", self.path.display()))
            })
            .collect()
    }
}

/// Builds a record batch from named columns.
pub fn batch(columns: Vec<(&str, ArrayRef)>) -> anyhow::Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), array.null_count() > 0))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

pub fn string_column<S: AsRef<str>>(values: &[S]) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(
        values.iter().map(AsRef::as_ref),
    ))
}

pub fn i64_column(values: impl IntoIterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(values))
}

pub fn f64_column(values: impl IntoIterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(values))
}

pub fn f32_column(values: impl IntoIterator<Item = f32>) -> ArrayRef {
    Arc::new(Float32Array::from_iter_values(values))
}

pub fn string_list_column(values: &[Vec<String>]) -> ArrayRef {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for list in values {
        for v in list {
            builder.values().append_value(v);
        }
        builder.append(true);
    }
    Arc::new(builder.finish())
}

/// Reads a `list<utf8>` column.
fn string_lists(table: &Table<'_>, name: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let col = table.column(name)?;
    let list = col
        .as_list_opt::<i32>()
        .ok_or_else(|| table.wrong_type(name, "list<utf8>"))?;
    ensure!(
        matches!(list.value_type(), DataType::Utf8),
        table.wrong_type(name, "list<utf8>")
    );
    Ok((0..list.len())
        .map(|i| {
            let values = list.value(i);
            values
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_owned())
                .collect()
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Tensor files (safetensors)

/// A tensor to write: a name, a shape and its elements.
pub enum TensorOut<'a> {
    F32(&'a str, Vec<usize>, &'a [f32]),
    I64(&'a str, Vec<usize>, &'a [i64]),
    U8(&'a str, Vec<usize>, &'a [u8]),
}

fn le_bytes<T: Copy, const N: usize>(values: &[T], to: fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|v| to(*v)).collect()
}

/// Writes tensors as one safetensors file (via a temporary file renamed into place).
pub fn write_tensors(path: &Path, tensors: &[TensorOut<'_>]) -> anyhow::Result<()> {
    let owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|t| match t {
            TensorOut::F32(n, s, v) => (
                n.to_string(),
                Dtype::F32,
                s.clone(),
                le_bytes(v, f32::to_le_bytes),
            ),
            TensorOut::I64(n, s, v) => (
                n.to_string(),
                Dtype::I64,
                s.clone(),
                le_bytes(v, i64::to_le_bytes),
            ),
            TensorOut::U8(n, s, v) => (n.to_string(), Dtype::U8, s.clone(), v.to_vec()),
        })
        .collect();
    let views = owned
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            Ok((
                name.as_str(),
                TensorView::new(*dtype, shape.clone(), bytes)?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(|| format!("preparing `{}`", path.display()))?;
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, None, &tmp)
        .with_context(|| format!("writing `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing `{}`", path.display()))?;
    Ok(())
}

/// A safetensors file read into memory.
pub struct TensorFile {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl TensorFile {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading `{}`", path.display()))?;
        SafeTensors::deserialize(&bytes)
            .with_context(|| format!("`{}` is not a safetensors file", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            bytes,
        })
    }

    fn view(&self, name: &str, dtype: Dtype) -> anyhow::Result<(Vec<usize>, &[u8])> {
        let tensors = SafeTensors::deserialize(&self.bytes)?;
        let view = tensors
            .tensor(name)
            .with_context(|| format!("`{}` has no tensor `{name}`", self.path.display()))?;
        ensure!(
            view.dtype() == dtype,
            "`{}`: tensor `{name}` is {:?}, expected {dtype:?}",
            self.path.display(),
            view.dtype()
        );
        Ok((view.shape().to_vec(), view.data()))
    }

    pub fn f32(&self, name: &str) -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
        let (shape, bytes) = self.view(name, Dtype::F32)?;
        Ok((
            shape,
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ))
    }

    pub fn i64(&self, name: &str) -> anyhow::Result<(Vec<usize>, Vec<i64>)> {
        let (shape, bytes) = self.view(name, Dtype::I64)?;
        Ok((
            shape,
            bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ))
    }

    /// Whether the file holds a tensor named `name`.
    pub fn contains(&self, name: &str) -> bool {
        SafeTensors::deserialize(&self.bytes).is_ok_and(|t| t.tensor(name).is_ok())
    }

    pub fn u8(&self, name: &str) -> anyhow::Result<(Vec<usize>, Vec<u8>)> {
        let (shape, bytes) = self.view(name, Dtype::U8)?;
        Ok((shape, bytes.to_vec()))
    }
}

// ---------------------------------------------------------------------------------------------
// Data set index (`synth-dataset`, `dataset`)

pub const CLIPS_FILE: &str = "clips.parquet";
pub const CAPTIONS_FILE: &str = "captions.parquet";
pub const RELEVANCE_FILE: &str = "relevance.parquet";
pub const FEATURES_FILE: &str = "features.safetensors";
pub const VOCAB_FILE: &str = "vocab.json";
pub const EMBEDDINGS_FILE: &str = "embeddings.safetensors";

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetClip {
    pub clip_id: String,
    /// Audio path relative to the data set artifact directory (`audio/<clip_id>.wav` for the
    /// generated sets; `audio/<path in the root>` for `dataset`, whose `audio` is a symbolic link
    /// to the root), so that the index does not depend on where anything lives. Absolute only
    /// where the data set's own index names an absolute file (a `csv` row outside the root);
    /// artifacts of older versions may hold absolute paths. Resolve with
    /// [`crate::features::resolve`].
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
fn clip_columns<'a>(
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
        let clips = itertools_zip4(
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

fn itertools_zip4<A, B, C, D>(
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

// ---------------------------------------------------------------------------------------------
// Features (`features`)

#[derive(Debug, Clone, PartialEq)]
pub struct ClipRow {
    pub clip_id: String,
    /// The clip's audio as the data set has it ([`DatasetClip::file`]): relative to the data
    /// set artifact (the `features` node's `dataset` input), never resolved.
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
    pub mel_shape: [usize; 4],
    pub mel: Vec<f32>,
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
    pub fn n_windows(&self) -> usize {
        self.mel_shape[1]
    }

    /// Elements of one clip's mel tensor (`n_windows * n_mels * n_frames`).
    pub fn clip_len(&self) -> usize {
        self.mel_shape[1] * self.mel_shape[2] * self.mel_shape[3]
    }

    pub fn clip_mel(&self, clip_index: usize) -> &[f32] {
        let n = self.clip_len();
        &self.mel[clip_index * n..(clip_index + 1) * n]
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

    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let [n_clips, n_windows, _, _] = self.mel_shape;
        let mut tensors = vec![
            TensorOut::F32("mel", self.mel_shape.to_vec(), &self.mel),
            TensorOut::U8("window_mask", vec![n_clips, n_windows], &self.window_mask),
            TensorOut::I64(
                "tokens",
                vec![self.captions.len(), self.max_tokens],
                &self.tokens,
            ),
        ];
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

    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let tensors = TensorFile::open(&dir.join(FEATURES_FILE))?;
        let (shape, mel) = tensors.f32("mel")?;
        let mel_shape: [usize; 4] = shape.try_into().map_err(|s| {
            anyhow::anyhow!(
                "`{}`: `mel` has shape {s:?}, expected 4 dimensions",
                dir.display()
            )
        })?;
        let (_, window_mask) = tensors.u8("window_mask")?;
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

        let captions_path = dir.join(CAPTIONS_FILE);
        let t = Table::open(&captions_path)?;
        let captions: Vec<CaptionRow> = itertools_zip4(
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
        let caption_ids = string_lists(&t, "caption_ids")?;
        let clips = itertools_zip4(
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
            mel_shape,
            mel,
            window_mask,
            max_tokens: token_shape[1],
            tokens,
            clips,
            captions,
            vocab: vocab.words,
            relevance,
            text_vectors,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings (`embed`)

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
        let path = dir.join(EMBEDDINGS_FILE);
        let file = TensorFile::open(&path)?;
        let (a_shape, audio) = file.f32("audio")?;
        let (t_shape, text) = file.f32("text")?;
        ensure!(
            a_shape.len() == 2 && t_shape.len() == 2 && a_shape[1] == t_shape[1],
            "`{}`: `audio` {a_shape:?} and `text` {t_shape:?} must be [n, dim] with one dim",
            path.display()
        );
        Ok(Self {
            dim: a_shape[1],
            audio,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_features() -> FeatureSet {
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
            mel_shape: [2, 2, 3, 4],
            mel: (0..48).map(|x| x as f32 * 0.5).collect(),
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
        assert_eq!(loaded.clip_mel(1)[0], 12.0);
        assert_eq!(loaded.caption_tokens(1), &[3, 0, 0]);
        assert_eq!(loaded.split_captions(Split::Test), vec![2]);
    }

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

// ---------------------------------------------------------------------------------------------
// Teacher embeddings (`correspondences` writes them, `distill` reads them)

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
