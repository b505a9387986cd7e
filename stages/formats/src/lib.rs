//! The artifact formats every stage shares (see `stages/README.md`): one reader and one writer
//! for each, so that a column name or a tensor layout is defined in exactly one place.
//!
//! One module per artifact: [`dataset`] (a data set's index), [`features`] (log-mel windows and
//! tokens, the windows in [`windows`]' shards), [`embeddings`] (one model's embeddings),
//! [`teachers`] (the ensemble's embeddings), over two file helpers, [`parquet`] and [`tensors`].

pub mod combine;
pub mod dataset;
pub mod embeddings;
pub mod features;
pub mod parquet;
mod split;
pub mod teachers;
pub mod tensors;
pub mod windows;

pub use combine::{Combined, combine};
pub use dataset::{DatasetCaption, DatasetClip, DatasetIndex, DatasetRelevance};
pub use embeddings::{EMBEDDINGS_FILE, Embeddings};
pub use features::{
    CaptionRow, ClipRow, FEATURES_FILE, FeatureSet, FeatureTables, RelevanceRow, TextVectors,
    VOCAB_FILE,
};
pub use parquet::{
    Table, batch, f32_column, f64_column, i64_column, read_parquet, string_column,
    string_list_column, write_parquet,
};
pub use split::Split;
pub use teachers::{TEACHERS_FILE, TeacherEmbeddings};
pub use tensors::{TensorFile, TensorOut, write_tensors};
pub use windows::{ClipWindows, ShardWriter, WINDOWS_DIR};

/// The clip table of a data set and of a feature set.
pub const CLIPS_FILE: &str = "clips.parquet";
/// The caption table of a data set and of a feature set.
pub const CAPTIONS_FILE: &str = "captions.parquet";
/// Graded ground-truth relevance, where the data set has it.
pub const RELEVANCE_FILE: &str = "relevance.parquet";
