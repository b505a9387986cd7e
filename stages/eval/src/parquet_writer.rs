//! A Parquet file written one row group at a time, the columns of each row group encoded in
//! parallel (dictionary lookups, statistics and compression are per column, so a wide table
//! keeps every core busy). Encoding takes `&self`: the caller can compute the next row group
//! meanwhile (`rayon::join`), and only the append of finished column chunks is sequential.
//!
//! Columns whose values are the same in many row groups (the caption columns of a full
//! correspondence table repeat in every block of clips) can be encoded once
//! ([`ParallelWriter::encode_shared`]) and spliced into each such row group: the file's bytes
//! are the same as if every chunk had been encoded, without hashing every string again.

use std::io::Write;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowRowGroupWriterFactory, ArrowWriterOptions, compute_leaves,
};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataOptions, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

/// The writer: same schema conversion and properties as [`ArrowWriter`], no embedded Arrow
/// schema. The schema is flat (one Parquet column per field).
pub struct ParallelWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    props: WriterProperties,
}

/// Column chunks encoded once, for every row group of `rows` rows whose values in `columns` are
/// the ones encoded.
pub struct SharedColumns {
    /// Field positions, ascending.
    columns: Vec<usize>,
    rows: usize,
    /// A Parquet file holding the chunks; `chunks` locate them in it.
    file: Bytes,
    chunks: Vec<ColumnCloseResult>,
}

impl SharedColumns {
    /// Whether row groups of `rows` rows can take these chunks.
    pub fn fits(&self, rows: usize) -> bool {
        rows == self.rows
    }
}

/// A column chunk of a row group, ready to append.
enum Chunk {
    Encoded(ArrowColumnChunk),
    Shared(ColumnCloseResult, Bytes),
}

/// A row group's column chunks, ready to append.
pub struct EncodedRowGroup(Vec<Chunk>);

impl<W: Write + Send> ParallelWriter<W> {
    pub fn try_new(out: W, schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        let (file, factory) = serialized_writer(out, schema.clone(), props.clone())?;
        if file.schema_descr().num_columns() != schema.fields().len() {
            return Err(ParquetError::General(
                "the parallel writer takes flat schemas only".into(),
            ));
        }
        Ok(Self {
            file,
            factory,
            schema,
            props,
        })
    }

    /// Encodes `batch` as row group number `index`, its columns in parallel on the current
    /// rayon pool; the columns of `shared` are taken from it where it fits the batch (their
    /// values in `batch` are then not read).
    pub fn encode(
        &self,
        batch: &RecordBatch,
        index: usize,
        shared: Option<&SharedColumns>,
    ) -> Result<EncodedRowGroup> {
        let shared = shared.filter(|s| s.fits(batch.num_rows()));
        let is_shared = |c: usize| shared.is_some_and(|s| s.columns.binary_search(&c).is_ok());
        let own: Vec<usize> = (0..batch.num_columns())
            .filter(|&c| !is_shared(c))
            .collect();
        let mut encoded = encode_columns(&self.factory, &self.schema, batch, index, &own)?
            .into_iter()
            .map(Chunk::Encoded);
        let mut spliced = shared.into_iter().flat_map(|s| {
            s.chunks
                .iter()
                .map(|c| Chunk::Shared(c.clone(), s.file.clone()))
        });
        let chunks = (0..batch.num_columns())
            .map(|c| {
                if is_shared(c) {
                    spliced.next()
                } else {
                    encoded.next()
                }
                .expect("one chunk per column")
            })
            .collect();
        Ok(EncodedRowGroup(chunks))
    }

    /// Encodes the columns `columns` of `batch` once, for [`Self::encode`] of every row group
    /// with the same values there. The chunks are those `encode` would make (same properties):
    /// they are written into a small Parquet file whose footer then locates them.
    pub fn encode_shared(&self, batch: &RecordBatch, columns: &[usize]) -> Result<SharedColumns> {
        let mut columns = columns.to_vec();
        columns.sort_unstable();
        columns.dedup();
        for &c in &columns {
            let path =
                parquet::schema::types::ColumnPath::from(self.schema.field(c).name().as_str());
            if self.props.bloom_filter_properties(&path).is_some() {
                return Err(ParquetError::General(format!(
                    "column `{path}` has a bloom filter, which shared chunks do not carry"
                )));
            }
        }
        let schema = Arc::new(self.schema.project(&columns)?);
        let part = batch.project(&columns)?;
        let (mut file, factory) =
            serialized_writer(Vec::new(), schema.clone(), self.props.clone())?;
        let all: Vec<usize> = (0..columns.len()).collect();
        append(
            &mut file,
            encode_columns(&factory, &schema, &part, 0, &all)?
                .into_iter()
                .map(Chunk::Encoded),
        )?;
        let file = Bytes::from(file.into_inner()?);
        // Every field as written: page encoding statistics in full, not as the default mask.
        let options = ParquetMetaDataOptions::new().with_encoding_stats_as_mask(false);
        let metadata = ParquetMetaDataReader::new()
            .with_metadata_options(Some(options))
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&file)?;
        let group = metadata.row_group(0);
        let page_index = metadata.page_index_for_row_group(0);
        let chunks = (0..columns.len())
            .map(|c| {
                let chunk = group.column(c).clone();
                ColumnCloseResult {
                    bytes_written: chunk.compressed_size() as u64,
                    rows_written: group.num_rows() as u64,
                    metadata: chunk,
                    bloom_filter: None,
                    column_index: page_index.column_index(c).cloned(),
                    offset_index: page_index.offset_index(c).cloned(),
                }
            })
            .collect();
        Ok(SharedColumns {
            columns,
            rows: batch.num_rows(),
            file,
            chunks,
        })
    }

    /// Appends an encoded row group to the file (row groups in the order appended).
    pub fn append(&mut self, group: EncodedRowGroup) -> Result<()> {
        append(&mut self.file, group.0.into_iter())
    }

    /// Writes the footer and returns the inner writer.
    pub fn close(self) -> Result<W> {
        self.file.into_inner()
    }
}

fn serialized_writer<W: Write + Send>(
    out: W,
    schema: SchemaRef,
    props: WriterProperties,
) -> Result<(SerializedFileWriter<W>, ArrowRowGroupWriterFactory)> {
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true);
    ArrowWriter::try_new_with_options(out, schema, options)?.into_serialized_writer()
}

/// The chunks of `columns` of `batch` (a flat schema), encoded in parallel, in that order.
fn encode_columns(
    factory: &ArrowRowGroupWriterFactory,
    schema: &SchemaRef,
    batch: &RecordBatch,
    index: usize,
    columns: &[usize],
) -> Result<Vec<ArrowColumnChunk>> {
    let mut writers: Vec<_> = factory
        .create_column_writers(index)?
        .into_iter()
        .map(Some)
        .collect();
    let jobs = columns
        .iter()
        .map(|&c| {
            let mut leaves = compute_leaves(schema.field(c), batch.column(c))?;
            let leaf = leaves
                .pop()
                .filter(|_| leaves.is_empty())
                .ok_or_else(|| ParquetError::General(format!("column {c} is not a flat column")))?;
            let writer = writers[c].take().expect("each column once");
            Ok((writer, leaf))
        })
        .collect::<Result<Vec<_>>>()?;
    jobs.into_par_iter()
        .map(|(mut writer, leaf)| {
            writer.write(&leaf)?;
            writer.close()
        })
        .collect()
}

fn append<W: Write + Send>(
    file: &mut SerializedFileWriter<W>,
    chunks: impl Iterator<Item = Chunk>,
) -> Result<()> {
    let mut row_group = file.next_row_group()?;
    for chunk in chunks {
        match chunk {
            Chunk::Encoded(chunk) => chunk.append_to_row_group(&mut row_group)?,
            Chunk::Shared(close, bytes) => row_group.append_column(&bytes, close)?,
        }
    }
    row_group.close()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        ArrayRef, DictionaryArray, Float32Array, Int32Array, Int64Array, StringArray,
    };
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use parquet::basic::Compression;

    use super::*;

    fn schema() -> SchemaRef {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        Arc::new(Schema::new(vec![
            Field::new("row", DataType::Int64, false),
            Field::new("word", dict, false),
            Field::new("score", DataType::Float32, false),
        ]))
    }

    /// Row group `g` of `rows` rows: its own row numbers and scores, the same words in every
    /// group of the same size.
    fn group(g: usize, rows: usize) -> RecordBatch {
        let words: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..7).map(|w| format!("word number {w}")),
        ));
        let keys = Int32Array::from_iter_values((0..rows).map(|r| (r * r % 7) as i32));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|r| (g * 1000 + r) as i64),
            )),
            Arc::new(DictionaryArray::<Int32Type>::try_new(keys, words).unwrap()),
            Arc::new(Float32Array::from_iter_values(
                (0..rows).map(|r| (g + r) as f32 / 3.0),
            )),
        ];
        RecordBatch::try_new(schema(), columns).unwrap()
    }

    fn write(sizes: &[usize], share_words: bool) -> Vec<u8> {
        // Small pages: a chunk of several pages, so that their offsets are spliced too.
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(50)
            .build();
        let mut writer = ParallelWriter::try_new(Vec::new(), schema(), props).unwrap();
        let shared = share_words.then(|| writer.encode_shared(&group(0, sizes[0]), &[1]).unwrap());
        for (g, &rows) in sizes.iter().enumerate() {
            let encoded = writer.encode(&group(g, rows), g, shared.as_ref()).unwrap();
            writer.append(encoded).unwrap();
        }
        writer.close().unwrap()
    }

    #[test]
    fn shared_chunks_give_the_bytes_of_encoding_every_row_group() {
        let sizes = [450, 450, 120, 450];
        let spliced = write(&sizes, true);
        assert_eq!(spliced, write(&sizes, false));

        // And the file reads back as written, page index included (the file has no Arrow
        // schema: the dictionary type is asked for).
        let options = ArrowReaderOptions::new()
            .with_schema(schema())
            .with_page_index_policy(PageIndexPolicy::Required);
        let reader =
            ParquetRecordBatchReaderBuilder::try_new_with_options(Bytes::from(spliced), options)
                .unwrap()
                .build()
                .unwrap();
        let read: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        let all = arrow::compute::concat_batches(&schema(), &read).unwrap();
        let expected: Vec<RecordBatch> = sizes
            .iter()
            .enumerate()
            .map(|(g, &n)| group(g, n))
            .collect();
        let expected = arrow::compute::concat_batches(&schema(), &expected).unwrap();
        assert_eq!(all, expected);
    }

    #[test]
    fn shared_chunks_are_only_spliced_into_row_groups_of_their_size() {
        let props = WriterProperties::builder().build();
        let writer = ParallelWriter::try_new(Vec::new(), schema(), props).unwrap();
        let shared = writer.encode_shared(&group(0, 10), &[1]).unwrap();
        assert!(shared.fits(10) && !shared.fits(9));
        let EncodedRowGroup(chunks) = writer.encode(&group(1, 9), 1, Some(&shared)).unwrap();
        assert!(chunks.iter().all(|c| matches!(c, Chunk::Encoded(_))));
        let EncodedRowGroup(chunks) = writer.encode(&group(1, 10), 1, Some(&shared)).unwrap();
        let kinds: Vec<bool> = chunks
            .iter()
            .map(|c| matches!(c, Chunk::Shared(..)))
            .collect();
        assert_eq!(kinds, [false, true, false]);
    }
}
