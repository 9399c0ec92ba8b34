//! The safetensors file format, read and written by our own few lines so the same code runs
//! natively and in the browser: an 8-byte little-endian header length, a JSON header
//! `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}`
//! padded with spaces to a multiple of 8, then the raw little-endian tensor bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The element types we read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I8,
    U8,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I8 | Dtype::U8 => 1,
        }
    }
}

/// One tensor of a parsed file, borrowing its bytes.
#[derive(Debug)]
pub struct View<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

impl View<'_> {
    /// The values widened to f32 (float types only).
    pub fn to_f32(&self) -> Result<Vec<f32>, String> {
        let d = self.data;
        Ok(match self.dtype {
            Dtype::F64 => d.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect(),
            Dtype::F32 => d.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => d.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => d.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => return Err(format!("tensor {} is {other:?}, expected a float type", self.name)),
        })
    }
}

/// A parsed file: tensors in file order and the string metadata.
#[derive(Debug)]
pub struct SafeTensors<'a> {
    pub tensors: Vec<View<'a>>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// Parses `bytes`, checking every offset and size, so a truncated or corrupt file is an error
/// (the reason says what is wrong) rather than a panic or garbage.
pub fn parse(bytes: &[u8]) -> Result<SafeTensors<'_>, String> {
    let header_len = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize).ok_or("shorter than the 8-byte header length")?;
    let data = bytes.get(8..).unwrap_or_default();
    if header_len > data.len() {
        return Err(format!("header of {header_len} bytes does not fit in a {} byte file (truncated?)", bytes.len()));
    }
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&data[..header_len]).map_err(|e| format!("header is not JSON: {e}"))?;
    let data = &data[header_len..];
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::new();
    for (name, value) in header {
        if name == "__metadata__" {
            metadata = serde_json::from_value(value).map_err(|e| format!("__metadata__ is not a string map: {e}"))?;
            continue;
        }
        let entry: Entry = serde_json::from_value(value).map_err(|e| format!("tensor {name}: {e}"))?;
        let dtype = match entry.dtype.as_str() {
            "F64" => Dtype::F64,
            "F32" => Dtype::F32,
            "I64" => Dtype::I64,
            "I32" => Dtype::I32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "I8" => Dtype::I8,
            "U8" => Dtype::U8,
            other => return Err(format!("tensor {name}: unsupported dtype {other}")),
        };
        let [begin, end] = entry.data_offsets;
        let expected = entry.shape.iter().product::<usize>() * dtype.size();
        if begin > end || end > data.len() {
            return Err(format!("tensor {name}: bytes {begin}..{end} lie outside the {} data bytes (truncated?)", data.len()));
        }
        if end - begin != expected {
            return Err(format!("tensor {name}: {} bytes for shape {:?} of {:?} (expected {expected})", end - begin, entry.shape, dtype));
        }
        tensors.push(View { name, dtype, shape: entry.shape, data: &data[begin..end] });
    }
    tensors.sort_by_key(|t| t.data.as_ptr() as usize);
    Ok(SafeTensors { tensors, metadata })
}

/// A tensor to write: name, type, shape and its little-endian bytes.
pub struct Owned {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Owned {
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        Owned { name: name.into(), dtype: Dtype::F32, shape, data: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
    }
}

/// Serializes tensors (in the given order) and metadata into one file.
pub fn serialize(tensors: &[Owned], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("string map"));
    }
    let mut offset = 0;
    for t in tensors {
        let entry = Entry { dtype: format!("{:?}", t.dtype), shape: t.shape.clone(), data_offsets: [offset, offset + t.data.len()] };
        header.insert(t.name.clone(), serde_json::to_value(entry).expect("entry"));
        offset += t.data.len();
    }
    let mut json = serde_json::to_vec(&header).expect("header");
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for t in tensors {
        out.extend_from_slice(&t.data);
    }
    out
}
