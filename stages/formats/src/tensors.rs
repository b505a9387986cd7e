//! Tensor files (safetensors): one writer, one reader with typed, shape-checked access.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{Context, ensure};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// A tensor to write: a name, a shape and its elements.
pub enum TensorOut<'a> {
    F32(&'a str, Vec<usize>, &'a [f32]),
    I64(&'a str, Vec<usize>, &'a [i64]),
    U8(&'a str, Vec<usize>, &'a [u8]),
}

/// Writes tensors as one safetensors file (via a temporary file renamed into place). The
/// values are written in place, without a byte copy (safetensors is little-endian, as is
/// every target this crate builds for).
pub fn write_tensors(path: &Path, tensors: &[TensorOut<'_>]) -> anyhow::Result<()> {
    const _: () = assert!(cfg!(target_endian = "little"));
    let views = tensors
        .iter()
        .map(|t| {
            let (name, dtype, shape, bytes): (&str, Dtype, &Vec<usize>, &[u8]) = match t {
                TensorOut::F32(n, s, v) => (*n, Dtype::F32, s, bytemuck::cast_slice(v)),
                TensorOut::I64(n, s, v) => (*n, Dtype::I64, s, bytemuck::cast_slice(v)),
                TensorOut::U8(n, s, v) => (*n, Dtype::U8, s, *v),
            };
            Ok((name, TensorView::new(dtype, shape.clone(), bytes)?))
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
        let (shape, values) = self.f32_slice(name)?;
        Ok((shape, values.into_owned()))
    }

    /// Tensor `name` read in place where its bytes are 4-byte aligned (safetensors aligns
    /// its data; the file's bytes are little-endian, as every target of this crate), else
    /// decoded: no second copy of a large tensor for a reader that only scans it.
    pub fn f32_slice(&self, name: &str) -> anyhow::Result<(Vec<usize>, Cow<'_, [f32]>)> {
        let (shape, bytes) = self.view(name, Dtype::F32)?;
        Ok((shape, f32_values(bytes)))
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

/// Little-endian f32 bytes as values: in place where they are 4-byte aligned, else decoded.
fn f32_values(bytes: &[u8]) -> Cow<'_, [f32]> {
    const _: () = assert!(cfg!(target_endian = "little"));
    match bytemuck::try_cast_slice(bytes) {
        Ok(values) => Cow::Borrowed(values),
        Err(_) => Cow::Owned(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_values_are_read_in_place_where_aligned_and_decoded_where_not() {
        let values = [1.5f32, -2.0, 3.25];
        // A 4-byte aligned buffer: the values at byte 0 are aligned, at byte 1 not.
        let mut words = vec![0u32; 4];
        for offset in [0, 1] {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
            for (k, v) in values.iter().enumerate() {
                bytes[offset + 4 * k..offset + 4 * k + 4].copy_from_slice(&v.to_le_bytes());
            }
            let read = f32_values(&bytes[offset..offset + 12]);
            assert_eq!(matches!(read, Cow::Borrowed(_)), offset == 0);
            assert_eq!(&*read, &values);
        }
    }

    #[test]
    fn a_written_file_is_read_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let values: Vec<f32> = (0..100).map(|i| i as f32 * 0.5).collect();
        write_tensors(&path, &[TensorOut::F32("x", vec![10, 10], &values)]).unwrap();
        let file = TensorFile::open(&path).unwrap();
        let (shape, read) = file.f32_slice("x").unwrap();
        assert_eq!(shape, vec![10, 10]);
        assert!(matches!(read, Cow::Borrowed(_)));
        assert_eq!(&*read, &values[..]);
    }
}
