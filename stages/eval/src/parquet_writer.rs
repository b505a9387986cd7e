//! A Parquet file written one row group at a time, the columns of each row group encoded in
//! parallel (dictionary lookups, statistics and compression are per column, so a wide table
//! keeps every core busy). A row group's rows are given in parts, so that only a part of its
//! columns is ever held as Arrow arrays; the encoded pages stay in the column writers until the
//! row group is finished. Encoding takes `&self`: the caller can compute the next row group
//! meanwhile (`rayon::join`), and only the append of finished column chunks is sequential.
//!
//! Columns whose values are the same in many row groups (the caption columns of a full
//! correspondence table repeat in every block of clips) can be encoded once
//! ([`ParallelWriter::encode_shared`]) and spliced into each such row group: the file's bytes
//! are the same as if every chunk had been encoded, without hashing every string again.

use std::io::Write;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, ArrowWriterOptions,
    compute_leaves,
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

    /// Starts row group number `index` of `rows` rows. Its columns are then given in parts
    /// ([`RowGroupEncoder::write`]), each part's columns encoded in parallel on the current rayon
    /// pool; the columns of `shared` are taken from it where it fits `rows`.
    pub fn row_group<'s>(
        &self,
        index: usize,
        rows: usize,
        shared: Option<&'s SharedColumns>,
    ) -> Result<RowGroupEncoder<'s>> {
        let shared = shared.filter(|s| s.fits(rows));
        let is_shared = |c: usize| shared.is_some_and(|s| s.columns.binary_search(&c).is_ok());
        let own: Vec<usize> = (0..self.schema.fields().len())
            .filter(|&c| !is_shared(c))
            .collect();
        Ok(RowGroupEncoder {
            columns: ColumnEncoder::new(&self.factory, &self.schema, index, own)?,
            shared,
            rows,
        })
    }

    /// Rows per part for which parts give the bytes of one write of the whole row group: the
    /// column writers cut pages between mini-batches of `write_batch_size` rows, counted from
    /// the start of each write, so any multiple of it would do; 64 of them keep a part's arrays
    /// at a few MB.
    pub fn part_rows(&self) -> usize {
        64 * self.props.write_batch_size()
    }

    /// Encodes the columns `columns` (field positions, ascending) of every row group of `rows`
    /// rows whose values there are `values`, once, for [`Self::row_group`]. The chunks are those
    /// a row group would make (same properties): they are written into a small Parquet file
    /// whose footer then locates them.
    pub fn encode_shared(&self, columns: &[usize], values: &[ArrayRef]) -> Result<SharedColumns> {
        if !columns.is_sorted_by(|a, b| a < b) || columns.len() != values.len() {
            return Err(ParquetError::General(
                "shared columns: ascending positions, one array each".into(),
            ));
        }
        for &c in columns {
            let path =
                parquet::schema::types::ColumnPath::from(self.schema.field(c).name().as_str());
            if self.props.bloom_filter_properties(&path).is_some() {
                return Err(ParquetError::General(format!(
                    "column `{path}` has a bloom filter, which shared chunks do not carry"
                )));
            }
        }
        let rows = values.first().map_or(0, |v| v.len());
        let schema = Arc::new(self.schema.project(columns)?);
        let (mut file, factory) =
            serialized_writer(Vec::new(), schema.clone(), self.props.clone())?;
        let mut encoder = ColumnEncoder::new(&factory, &schema, 0, (0..columns.len()).collect())?;
        encoder.write(values)?;
        append(&mut file, encoder.finish()?.into_iter().map(Chunk::Encoded))?;
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
            columns: columns.to_vec(),
            rows,
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

/// A row group in progress: its own columns' writers, and the chunks spliced in at the end.
pub struct RowGroupEncoder<'s> {
    columns: ColumnEncoder,
    shared: Option<&'s SharedColumns>,
    rows: usize,
}

impl RowGroupEncoder<'_> {
    /// The columns to give to [`Self::write`] (field positions, ascending): all but the shared.
    pub fn columns(&self) -> &[usize] {
        &self.columns.positions
    }

    /// Encodes the next rows: one array per [`Self::columns`], all of the same length. Parts of
    /// [`ParallelWriter::part_rows`] rows (any length for the last) give the bytes of one part.
    pub fn write(&mut self, part: &[ArrayRef]) -> Result<()> {
        self.columns.write(part)
    }

    /// The row group's chunks, ready to append.
    pub fn finish(self) -> Result<EncodedRowGroup> {
        if self.columns.rows != self.rows {
            return Err(ParquetError::General(format!(
                "a row group of {} rows was given {}",
                self.rows, self.columns.rows
            )));
        }
        let (shared, positions) = (self.shared, self.columns.positions.clone());
        let mut encoded = self.columns.finish()?.into_iter().map(Chunk::Encoded);
        let mut spliced = shared.into_iter().flat_map(|s| {
            s.chunks
                .iter()
                .map(|c| Chunk::Shared(c.clone(), s.file.clone()))
        });
        let n_columns = positions.len() + shared.map_or(0, |s| s.columns.len());
        let chunks = (0..n_columns)
            .map(|c| {
                if positions.binary_search(&c).is_ok() {
                    encoded.next()
                } else {
                    spliced.next()
                }
                .expect("one chunk per column")
            })
            .collect();
        Ok(EncodedRowGroup(chunks))
    }
}

/// Writers of some columns of a flat schema, fed in parts, each part's columns in parallel.
struct ColumnEncoder {
    /// Field positions, ascending.
    positions: Vec<usize>,
    fields: Vec<arrow::datatypes::FieldRef>,
    writers: Vec<ArrowColumnWriter>,
    rows: usize,
}

impl ColumnEncoder {
    fn new(
        factory: &ArrowRowGroupWriterFactory,
        schema: &SchemaRef,
        index: usize,
        positions: Vec<usize>,
    ) -> Result<Self> {
        let mut writers: Vec<_> = factory
            .create_column_writers(index)?
            .into_iter()
            .map(Some)
            .collect();
        let writers = positions
            .iter()
            .map(|&c| writers[c].take().expect("each column once"))
            .collect();
        Ok(Self {
            fields: positions
                .iter()
                .map(|&c| schema.fields()[c].clone())
                .collect(),
            positions,
            writers,
            rows: 0,
        })
    }

    fn write(&mut self, part: &[ArrayRef]) -> Result<()> {
        let rows = part.first().map_or(0, |a| a.len());
        if part.len() != self.writers.len() || part.iter().any(|a| a.len() != rows) {
            return Err(ParquetError::General(format!(
                "a part needs {} arrays of one length",
                self.writers.len()
            )));
        }
        self.writers
            .par_iter_mut()
            .zip(&self.fields)
            .zip(part)
            .try_for_each(|((writer, field), array)| {
                let mut leaves = compute_leaves(field, array)?;
                let leaf = leaves.pop().filter(|_| leaves.is_empty()).ok_or_else(|| {
                    ParquetError::General(format!("column `{}` is not flat", field.name()))
                })?;
                writer.write(&leaf)
            })?;
        self.rows += rows;
        Ok(())
    }

    fn finish(self) -> Result<Vec<ArrowColumnChunk>> {
        self.writers.into_par_iter().map(|w| w.close()).collect()
    }
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
        ArrayRef, DictionaryArray, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray,
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
            Field::new("label", DataType::Utf8, false),
        ]))
    }

    /// Row group `g` of `rows` rows: its own row numbers, scores and labels (all distinct), the
    /// same words in every group of the same size.
    fn group(g: usize, rows: usize) -> RecordBatch {
        let words: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..7).map(|w| format!("word number {w}")),
        ));
        let keys = Int32Array::from_iter_values((0..rows).map(|r| (r * r % 7) as i32));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|r| (g * 100_000 + r) as i64),
            )),
            Arc::new(DictionaryArray::<Int32Type>::try_new(keys, words).unwrap()),
            Arc::new(Float32Array::from_iter_values(
                (0..rows).map(|r| (g + r) as f32 / 3.0),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|r| format!("label {g}-{r}")),
            )),
        ];
        RecordBatch::try_new(schema(), columns).unwrap()
    }

    /// Small pages and a small dictionary page (the distinct labels fall back to plain encoding
    /// within a chunk): chunks of several pages, so that their offsets are spliced too.
    fn props() -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_data_page_row_count_limit(100)
            .set_dictionary_page_size_limit(2000)
            .set_write_batch_size(50)
            .build()
    }

    /// Encodes row group `g` in parts of `part` rows (the last shorter).
    fn encode(
        writer: &ParallelWriter<Vec<u8>>,
        batch: &RecordBatch,
        g: usize,
        shared: Option<&SharedColumns>,
        part: usize,
    ) -> EncodedRowGroup {
        let mut encoder = writer.row_group(g, batch.num_rows(), shared).unwrap();
        for start in (0..batch.num_rows()).step_by(part) {
            let len = part.min(batch.num_rows() - start);
            let columns: Vec<ArrayRef> = encoder
                .columns()
                .iter()
                .map(|&c| batch.column(c).slice(start, len))
                .collect();
            encoder.write(&columns).unwrap();
        }
        encoder.finish().unwrap()
    }

    /// The file of row groups of `sizes` rows, each in parts of `part` rows, the words shared
    /// or not.
    fn write(sizes: &[usize], share_words: bool, part: usize) -> Vec<u8> {
        let mut writer = ParallelWriter::try_new(Vec::new(), schema(), props()).unwrap();
        let shared = share_words.then(|| {
            let words = group(0, sizes[0]).column(1).clone();
            writer.encode_shared(&[1], &[words]).unwrap()
        });
        for (g, &rows) in sizes.iter().enumerate() {
            let encoded = encode(&writer, &group(g, rows), g, shared.as_ref(), part);
            writer.append(encoded).unwrap();
        }
        writer.close().unwrap()
    }

    fn read(file: Vec<u8>) -> RecordBatch {
        // The file has no Arrow schema: the dictionary type is asked for.
        let options = ArrowReaderOptions::new()
            .with_schema(schema())
            .with_page_index_policy(PageIndexPolicy::Required);
        let reader =
            ParquetRecordBatchReaderBuilder::try_new_with_options(Bytes::from(file), options)
                .unwrap()
                .build()
                .unwrap();
        let read: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        arrow::compute::concat_batches(&schema(), &read).unwrap()
    }

    fn expected(sizes: &[usize]) -> RecordBatch {
        let groups: Vec<RecordBatch> = sizes
            .iter()
            .enumerate()
            .map(|(g, &n)| group(g, n))
            .collect();
        arrow::compute::concat_batches(&schema(), &groups).unwrap()
    }

    #[test]
    fn shared_chunks_give_the_bytes_of_encoding_every_row_group() {
        let sizes = [450, 450, 120, 450];
        let spliced = write(&sizes, true, usize::MAX);
        assert_eq!(spliced, write(&sizes, false, usize::MAX));
        // And the file reads back as written, page index included.
        assert_eq!(read(spliced), expected(&sizes));
    }

    #[test]
    fn parts_of_part_rows_give_the_bytes_of_one_write() {
        let writer = ParallelWriter::try_new(Vec::new(), schema(), props()).unwrap();
        let part = writer.part_rows();
        assert_eq!(part, 64 * 50);
        let sizes = [2 * part + 700, 2 * part + 700, part, 900];
        let whole = write(&sizes, true, usize::MAX);
        assert_eq!(write(&sizes, true, part), whole);
        assert_eq!(write(&sizes, false, part), whole);
        assert_eq!(read(whole), expected(&sizes));
        // Parts of other sizes make other pages: the alignment is what keeps the bytes.
        assert_ne!(write(&sizes, true, part - 30), write(&sizes, true, part));
    }

    #[test]
    fn a_row_group_needs_its_rows_and_one_length_per_part() {
        let writer = ParallelWriter::try_new(Vec::new(), schema(), props()).unwrap();
        let batch = group(0, 10);
        let mut encoder = writer.row_group(0, 10, None).unwrap();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns[2] = columns[2].slice(0, 9);
        assert!(encoder.write(&columns).is_err());
        encoder.write(batch.slice(0, 9).columns()).unwrap();
        let err = encoder.finish().err().expect("9 rows of 10");
        assert!(err.to_string().contains("10 rows was given 9"), "{err}");
    }

    #[test]
    fn shared_chunks_are_only_spliced_into_row_groups_of_their_size() {
        let writer = ParallelWriter::try_new(Vec::new(), schema(), props()).unwrap();
        let shared = writer
            .encode_shared(&[1], &[group(0, 10).column(1).clone()])
            .unwrap();
        assert!(shared.fits(10) && !shared.fits(9));
        let EncodedRowGroup(chunks) = encode(&writer, &group(1, 9), 1, Some(&shared), 9);
        assert!(chunks.iter().all(|c| matches!(c, Chunk::Encoded(_))));
        let EncodedRowGroup(chunks) = encode(&writer, &group(1, 10), 1, Some(&shared), 10);
        let kinds: Vec<bool> = chunks
            .iter()
            .map(|c| matches!(c, Chunk::Shared(..)))
            .collect();
        assert_eq!(kinds, [false, true, false, false]);
    }
}
