//! A minimal ONNX reader: just enough of `onnx.proto` to walk a graph's nodes and read its float
//! weights, written by hand with `prost` (field numbers as in onnx/onnx.proto).
//!
//! Weights may be stored inline (`raw_data`, `float_data`) or as external data (a sibling file
//! such as `model.data`, with `location`/`offset`/`length`). A model is read from a `.onnx` file,
//! from a directory holding exactly one, or straight from a `.zip` holding exactly one (external
//! data then comes from the same archive). Quantisation-aware exports wrap each float weight in a
//! `QuantizeLinear → DequantizeLinear` pair (fake quantisation); [`OnnxModel::float_tensor`]
//! follows such a pair back to the float initializer, i.e. it removes the fake quantisation.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use prost::Message;

/// `ModelProto` (only the graph).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

/// `GraphProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `ValueInfoProto` (only the name).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `NodeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `AttributeProto` (scalar and list numbers, strings).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// `AttributeType` (1 = FLOAT, 2 = INT, 3 = STRING, 6 = FLOATS, 7 = INTS, ...).
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `TensorProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// `DataType` (1 = FLOAT, 2 = UINT8, 3 = INT8, 6 = INT32, 7 = INT64, ...).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// 0 = DEFAULT (inline), 1 = EXTERNAL.
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// `StringStringEntryProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

const FLOAT: i32 = 1;
const EXTERNAL: i32 = 1;

impl NodeProto {
    pub fn attribute(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name == name)
    }

    /// An integer list attribute (empty when absent).
    pub fn ints(&self, name: &str) -> Vec<i64> {
        self.attribute(name)
            .map(|a| a.ints.clone())
            .unwrap_or_default()
    }

    /// An integer attribute, or `default` when absent.
    pub fn int_or(&self, name: &str, default: i64) -> i64 {
        self.attribute(name).map_or(default, |a| a.i)
    }
}

impl TensorProto {
    /// Where the external data lives: `(location, offset, length)`.
    fn external(&self) -> anyhow::Result<(&str, usize, Option<usize>)> {
        let get = |key: &str| {
            self.external_data
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.as_str())
        };
        let location = get("location").context("external data without a `location`")?;
        let number = |key: &str| -> anyhow::Result<Option<usize>> {
            get(key)
                .map(|v| v.parse().with_context(|| format!("bad `{key}` `{v}`")))
                .transpose()
        };
        Ok((location, number("offset")?.unwrap_or(0), number("length")?))
    }
}

/// A float tensor read from a model.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatTensor {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

/// A parsed ONNX model with its external data.
pub struct OnnxModel {
    /// The file it came from (for error messages).
    source: String,
    graph: GraphProto,
    initializers: HashMap<String, usize>,
    /// Node index by output name.
    producers: HashMap<String, usize>,
    /// External data files by `location`.
    external: HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("source", &self.source)
            .field("nodes", &self.graph.node.len())
            .field("initializers", &self.initializers.len())
            .finish_non_exhaustive()
    }
}

impl OnnxModel {
    /// Reads a model from a `.onnx` file, a directory holding exactly one `.onnx` file (searched
    /// recursively), or a `.zip` archive holding exactly one.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if path.is_dir() {
            let mut found = Vec::new();
            find_onnx_files(path, &mut found)
                .with_context(|| format!("listing `{}`", path.display()))?;
            match found.as_slice() {
                [one] => Self::open_file(one),
                [] => bail!("no `.onnx` file under `{}`", path.display()),
                _ => bail!(
                    "several `.onnx` files under `{}`: {found:?}; name one",
                    path.display()
                ),
            }
        } else if path.extension().is_some_and(|e| e == "zip") {
            Self::open_zip(path)
        } else {
            Self::open_file(path)
        }
    }

    fn open_file(path: &Path) -> anyhow::Result<Self> {
        let bytes = fs_err::read(path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_bytes(path.display().to_string(), &bytes, |location| {
            Ok(fs_err::read(dir.join(location))?)
        })
    }

    fn open_zip(path: &Path) -> anyhow::Result<Self> {
        let file = fs_err::File::open(path)?;
        let mut archive = zip::ZipArchive::new(file)
            .with_context(|| format!("`{}` is not a zip archive", path.display()))?;
        let onnx: Vec<String> = archive
            .file_names()
            .filter(|n| n.ends_with(".onnx"))
            .map(str::to_owned)
            .collect();
        let [entry] = onnx.as_slice() else {
            bail!(
                "`{}` must hold exactly one `.onnx` file, found {onnx:?}",
                path.display()
            );
        };
        let folder = entry.rsplit_once('/').map_or("", |(dir, _)| dir).to_owned();
        let mut read = |name: &str| -> anyhow::Result<Vec<u8>> {
            let mut f = archive
                .by_name(name)
                .with_context(|| format!("no entry `{name}` in `{}`", path.display()))?;
            let mut bytes = Vec::with_capacity(f.size() as usize);
            f.read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        let bytes = read(entry)?;
        let source = format!("{}!{entry}", path.display());
        Self::from_bytes(source, &bytes, |location| {
            read(&if folder.is_empty() {
                location.to_owned()
            } else {
                format!("{folder}/{location}")
            })
        })
    }

    /// Parses `bytes` (a serialised `ModelProto`); `read_external` returns the contents of an
    /// external data file given its `location`.
    pub fn from_bytes(
        source: String,
        bytes: &[u8],
        mut read_external: impl FnMut(&str) -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<Self> {
        let model = ModelProto::decode(bytes)
            .with_context(|| format!("`{source}` is not an ONNX model"))?;
        let graph = model
            .graph
            .with_context(|| format!("`{source}` has no graph"))?;
        let mut external = HashMap::new();
        for t in &graph.initializer {
            if t.data_location != EXTERNAL {
                continue;
            }
            let (location, _, _) = t
                .external()
                .with_context(|| format!("`{source}`: tensor `{}`", t.name))?;
            if external.contains_key(location) {
                continue;
            }
            // Only plain relative names: the model must not point outside its own folder.
            ensure!(
                !location.is_empty()
                    && Path::new(location)
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_))),
                "`{source}`: tensor `{}` has the unsafe external location `{location}`",
                t.name
            );
            let data = read_external(location).with_context(|| {
                format!(
                    "`{source}`: reading external data `{location}` of tensor `{}`",
                    t.name
                )
            })?;
            external.insert(location.to_owned(), data);
        }
        let initializers = graph
            .initializer
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let producers = graph
            .node
            .iter()
            .enumerate()
            .flat_map(|(i, n)| n.output.iter().map(move |o| (o.clone(), i)))
            .collect();
        Ok(Self {
            source,
            graph,
            initializers,
            producers,
            external,
        })
    }

    /// The file the model was read from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The nodes in graph (topological) order.
    pub fn nodes(&self) -> &[NodeProto] {
        &self.graph.node
    }

    pub fn graph(&self) -> &GraphProto {
        &self.graph
    }

    pub fn initializer(&self, name: &str) -> Option<&TensorProto> {
        self.initializers
            .get(name)
            .map(|&i| &self.graph.initializer[i])
    }

    /// The node computing the value `name`.
    pub fn producer(&self, name: &str) -> Option<&NodeProto> {
        self.producers.get(name).map(|&i| &self.graph.node[i])
    }

    /// The float weight feeding a node input `name`: an initializer, or the float initializer
    /// behind a `QuantizeLinear → DequantizeLinear` pair (the fake quantisation is dropped).
    pub fn float_tensor(&self, name: &str) -> anyhow::Result<FloatTensor> {
        self.resolve(name)
            .with_context(|| format!("`{}`: tensor `{name}`", self.source))
    }

    fn resolve(&self, name: &str) -> anyhow::Result<FloatTensor> {
        if let Some(t) = self.initializer(name) {
            return self.decode_float(t);
        }
        let Some(node) = self.producer(name) else {
            bail!("no initializer or node output of that name");
        };
        ensure!(
            node.op_type == "DequantizeLinear",
            "computed by the {} node `{}`, not a weight",
            node.op_type,
            node.name
        );
        let quantized = node
            .input
            .first()
            .context("DequantizeLinear without input")?;
        match self.producer(quantized) {
            Some(q) if q.op_type == "QuantizeLinear" => {
                let float = q.input.first().context("QuantizeLinear without input")?;
                self.resolve(float)
                    .with_context(|| format!("behind QuantizeLinear node `{}`", q.name))
            }
            _ => bail!(
                "DequantizeLinear node `{}` reads `{quantized}`, which is not a fake-quantised \
                 float (only QuantizeLinear → DequantizeLinear pairs are supported)",
                node.name
            ),
        }
    }

    fn decode_float(&self, t: &TensorProto) -> anyhow::Result<FloatTensor> {
        ensure!(
            t.data_type == FLOAT,
            "data type {} is not FLOAT (1)",
            t.data_type
        );
        let dims = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).with_context(|| format!("negative dimension {d}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let n: usize = dims.iter().product();
        let data = if t.data_location == EXTERNAL {
            let (location, offset, length) = t.external()?;
            let file = &self.external[location];
            let length = length.unwrap_or(file.len().saturating_sub(offset));
            let bytes = file.get(offset..offset + length).with_context(|| {
                format!(
                    "bytes {offset}..{} lie beyond the end of `{location}` ({} bytes)",
                    offset + length,
                    file.len()
                )
            })?;
            le_floats(bytes)
        } else if !t.raw_data.is_empty() {
            le_floats(&t.raw_data)
        } else {
            t.float_data.clone()
        };
        ensure!(
            data.len() == n,
            "holds {} floats, its shape {dims:?} needs {n}",
            data.len()
        );
        Ok(FloatTensor { dims, data })
    }
}

/// Little-endian f32s (a trailing partial value is dropped; the length check catches it).
fn le_floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn find_onnx_files(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if path.is_dir() {
            find_onnx_files(&path, found)?;
        } else if path.extension().is_some_and(|x| x == "onnx") {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float_init(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type: FLOAT,
            name: name.into(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        }
    }

    fn node(op: &str, name: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: name.into(),
            op_type: op.into(),
            ..Default::default()
        }
    }

    /// A graph with an inline weight, an external one behind a Q→DQ pair, and a Conv.
    fn tiny_model() -> (Vec<u8>, Vec<u8>) {
        let external: Vec<u8> = [9.0f32, 1.0, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut w = TensorProto {
            dims: vec![2, 2],
            data_type: FLOAT,
            name: "w".into(),
            data_location: EXTERNAL,
            ..Default::default()
        };
        for (k, v) in [
            ("location", "model.data"),
            ("offset", "4"),
            ("length", "16"),
        ] {
            w.external_data.push(StringStringEntryProto {
                key: k.into(),
                value: v.into(),
            });
        }
        let graph = GraphProto {
            node: vec![
                node("QuantizeLinear", "q", &["w", "s", "z"], "w_q"),
                node("DequantizeLinear", "dq", &["w_q", "s", "z"], "w_qdq"),
                node("Conv", "conv", &["x", "w_qdq", "b"], "y"),
            ],
            initializer: vec![
                w,
                float_init("b", &[2], &[0.5, -0.5]),
                float_init("s", &[], &[0.1]),
            ],
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: 8,
            graph: Some(graph),
        };
        (model.encode_to_vec(), external)
    }

    #[test]
    fn reads_inline_and_external_weights_through_fake_quantisation() {
        let (bytes, external) = tiny_model();
        let m = OnnxModel::from_bytes("tiny.onnx".into(), &bytes, |loc| {
            assert_eq!(loc, "model.data");
            Ok(external.clone())
        })
        .unwrap();
        let conv = &m.nodes()[2];
        let w = m.float_tensor(&conv.input[1]).unwrap();
        assert_eq!(w.dims, vec![2, 2]);
        assert_eq!(w.data, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m.float_tensor("b").unwrap().data, vec![0.5, -0.5]);
        assert_eq!(m.float_tensor("s").unwrap().dims, Vec::<usize>::new());

        // Errors name the file and the tensor.
        let err = format!("{:#}", m.float_tensor("y").unwrap_err());
        assert!(err.contains("tiny.onnx") && err.contains("`y`"), "{err}");
        assert!(err.contains("Conv node `conv`"), "{err}");
        let err = format!("{:#}", m.float_tensor("nope").unwrap_err());
        assert!(err.contains("`nope`"), "{err}");
    }

    #[test]
    fn reads_from_a_directory_and_a_zip() {
        let (bytes, external) = tiny_model();
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("job");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("model.onnx"), &bytes).unwrap();
        std::fs::write(sub.join("model.data"), &external).unwrap();
        let from_dir = OnnxModel::open(dir.path()).unwrap();
        assert_eq!(from_dir.float_tensor("w_qdq").unwrap().data[3], 4.0);

        let zip_path = dir.path().join("m.onnx.zip");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let opts = zip::write::FileOptions::default();
        z.start_file("job/model.onnx", opts).unwrap();
        std::io::Write::write_all(&mut z, &bytes).unwrap();
        z.start_file("job/model.data", opts).unwrap();
        std::io::Write::write_all(&mut z, &external).unwrap();
        z.finish().unwrap();
        let from_zip = OnnxModel::open(&zip_path).unwrap();
        assert_eq!(from_zip.float_tensor("w_qdq").unwrap().data[0], 1.0);
        assert!(from_zip.source().ends_with("m.onnx.zip!job/model.onnx"));

        // A truncated data file is reported with the file and tensor.
        std::fs::write(sub.join("model.data"), &external[..12]).unwrap();
        let m = OnnxModel::open(&sub.join("model.onnx")).unwrap();
        let err = format!("{:#}", m.float_tensor("w").unwrap_err());
        assert!(
            err.contains("model.onnx") && err.contains("`w`") && err.contains("beyond"),
            "{err}"
        );
    }
}
