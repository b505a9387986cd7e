//! Tensor files (safetensors): one writer, one reader with typed, shape-checked access.

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
