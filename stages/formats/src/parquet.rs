//! Parquet tables: one writer, one reader, typed columns that name the file and column on error.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, ensure};
use arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Float64Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type, Int64Type, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::Split;

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

    /// Reads a `list<utf8>` column.
    pub fn string_lists(&self, name: &str) -> anyhow::Result<Vec<Vec<String>>> {
        let col = self.column(name)?;
        let list = col
            .as_list_opt::<i32>()
            .ok_or_else(|| self.wrong_type(name, "list<utf8>"))?;
        ensure!(
            matches!(list.value_type(), DataType::Utf8),
            self.wrong_type(name, "list<utf8>")
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
