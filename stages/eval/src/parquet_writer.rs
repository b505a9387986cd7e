//! A Parquet file written one row group at a time, the columns of each row group encoded in
//! parallel (dictionary lookups, statistics and compression are per column, so a wide table
//! keeps every core busy). Encoding takes `&self`: the caller can compute the next row group
//! meanwhile (`rayon::join`), and only the append of finished column chunks is sequential.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowRowGroupWriterFactory, ArrowWriterOptions, compute_leaves,
};
use parquet::errors::Result;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

/// The writer: same schema conversion and properties as [`ArrowWriter`], no embedded Arrow
/// schema.
pub struct ParallelWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
}

/// A row group's encoded column chunks, ready to append.
pub struct EncodedRowGroup(Vec<ArrowColumnChunk>);

impl<W: Write + Send> ParallelWriter<W> {
    pub fn try_new(out: W, schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        let options = ArrowWriterOptions::new()
            .with_properties(props)
            .with_skip_arrow_metadata(true);
        let (file, factory) = ArrowWriter::try_new_with_options(out, schema.clone(), options)?
            .into_serialized_writer()?;
        Ok(Self {
            file,
            factory,
            schema,
        })
    }

    /// Encodes `batch` as row group number `index`, its columns in parallel on the current
    /// rayon pool.
    pub fn encode(&self, batch: &RecordBatch, index: usize) -> Result<EncodedRowGroup> {
        let writers = self.factory.create_column_writers(index)?;
        let mut leaves = Vec::with_capacity(writers.len());
        for (field, column) in self.schema.fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, column)?);
        }
        let chunks = writers
            .into_par_iter()
            .zip(leaves)
            .map(|(mut writer, leaf)| {
                writer.write(&leaf)?;
                writer.close()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(EncodedRowGroup(chunks))
    }

    /// Appends an encoded row group to the file (row groups in the order appended).
    pub fn append(&mut self, group: EncodedRowGroup) -> Result<()> {
        let mut row_group = self.file.next_row_group()?;
        for chunk in group.0 {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        Ok(())
    }

    /// Writes the footer and returns the inner writer.
    pub fn close(self) -> Result<W> {
        self.file.into_inner()
    }
}
