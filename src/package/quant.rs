//! How one tensor is stored in a shard: f32, f16, or weight-only block-wise quantization
//! (symmetric, one f16 scale per block of a row), and row-wise parts for tensors too large for
//! one shard. Decoding always gives f32.
//!
//! A quantized tensor `key` of shape `[rows, ...]` is two entries, `key` (I8 for q8; U8 for q4,
//! two values per byte, low nibble first, offset by 8) of shape `[rows, stored columns]` and
//! `key.__scales` (F16, `[rows, blocks]`), plus the metadata `quant.key = "q8 64 320,4,3,3"`
//! (kind, block size, original shape). A split tensor is entries `key@i/n`, each a run of rows.

use std::collections::BTreeMap;

use half::f16;

use crate::weights::conv_layout::{in_channels_back, in_channels_last};
use crate::weights::safetensors::{Dtype, Owned, SafeTensors, View};

/// Values per scale in q8 tensors.
pub const Q8_BLOCK: usize = 64;
/// Values per scale in q4 tensors.
pub const Q4_BLOCK: usize = 32;
/// Unquantized tensors larger than this are split into row-wise parts.
pub const MAX_PART_BYTES: usize = 64 << 20;

/// Storage of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    F32,
    F16,
    Q8,
    Q4,
}

impl Storage {
    fn bits(self) -> Option<(i32, usize)> {
        match self {
            Storage::Q8 => Some((127, Q8_BLOCK)),
            Storage::Q4 => Some((7, Q4_BLOCK)),
            _ => None,
        }
    }
}

/// A tensor read back from a shard.
#[derive(Debug)]
pub enum Decoded {
    /// `quantized`: stored block-quantized (q8/q4), so it may be placed 8-bit on a GPU.
    Whole { key: String, shape: Vec<usize>, values: Vec<f32>, quantized: bool },
    /// Part `index` of `count`: rows of `key`, in order.
    Part { key: String, index: usize, count: usize, shape: Vec<usize>, values: Vec<f32> },
}

/// The entries (and metadata) storing `values` of `shape` under `key`.
pub fn encode(key: &str, shape: &[usize], values: &[f32], storage: Storage, metadata: &mut BTreeMap<String, String>) -> Vec<Owned> {
    encode_with_part_limit(key, shape, values, storage, MAX_PART_BYTES, metadata)
}

/// [`encode`] with unquantized tensors over `max_part_bytes` split into row-wise parts.
pub fn encode_with_part_limit(
    key: &str,
    shape: &[usize],
    values: &[f32],
    storage: Storage,
    max_part_bytes: usize,
    metadata: &mut BTreeMap<String, String>,
) -> Vec<Owned> {
    if let Some((max_q, block)) = storage.bits().filter(|_| shape.len() >= 2) {
        // Convolutions are blocked along their input channels (see `in_channels_last`).
        let swapped;
        let values = if shape.len() == 4 {
            swapped = in_channels_last(shape, values);
            &swapped[..]
        } else {
            values
        };
        let rows = shape[0];
        let cols = values.len() / rows.max(1);
        let blocks = cols.div_ceil(block);
        let mut scales = Vec::with_capacity(rows * blocks);
        let mut quantized = Vec::with_capacity(values.len());
        for row in values.chunks_exact(cols) {
            for chunk in row.chunks(block) {
                let max = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = f16::from_f32(max / max_q as f32);
                scales.push(scale);
                let s = scale.to_f32();
                quantized.extend(chunk.iter().map(|v| if s > 0.0 { (v / s).round().clamp(-max_q as f32, max_q as f32) as i8 } else { 0 }));
            }
        }
        let (dtype, stored_cols, data) = if storage == Storage::Q8 {
            (Dtype::I8, cols, quantized.iter().map(|&q| q as u8).collect())
        } else {
            let packed =
                quantized.chunks_exact(cols).flat_map(|row| row.chunks(2).map(|p| ((p[0] + 8) as u8) | (((p.get(1).copied().unwrap_or(0) + 8) as u8) << 4)));
            (Dtype::U8, cols.div_ceil(2), packed.collect())
        };
        let kind = if storage == Storage::Q8 { "q8" } else { "q4" };
        let dims = shape.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let layout = if shape.len() == 4 { format!(" {IN_CHANNELS_LAST}") } else { String::new() };
        metadata.insert(format!("quant.{key}"), format!("{kind} {block} {dims}{layout}"));
        return vec![
            Owned { name: key.to_string(), dtype, shape: vec![rows, stored_cols], data },
            Owned {
                name: format!("{key}.__scales"),
                dtype: Dtype::F16,
                shape: vec![rows, blocks],
                data: scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
            },
        ];
    }
    let (dtype, data): (Dtype, Vec<u8>) = match storage {
        Storage::F32 => (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        _ => (Dtype::F16, values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect()),
    };
    let rows = shape.first().copied().unwrap_or(1).max(1);
    let parts = data.len().div_ceil(max_part_bytes.max(1)).clamp(1, rows);
    if parts == 1 {
        return vec![Owned { name: key.to_string(), dtype, shape: shape.to_vec(), data }];
    }
    let row_bytes = data.len() / rows;
    let rows_per_part = rows.div_ceil(parts);
    let count = rows.div_ceil(rows_per_part);
    data.chunks(rows_per_part * row_bytes)
        .enumerate()
        .map(|(i, chunk)| {
            let mut part_shape = shape.to_vec();
            part_shape[0] = chunk.len() / row_bytes;
            Owned { name: format!("{key}@{i}/{count}"), dtype, shape: part_shape, data: chunk.to_vec() }
        })
        .collect()
}

/// Every tensor of a shard, dequantized to f32.
pub fn decode(file: &SafeTensors) -> Result<Vec<Decoded>, String> {
    let by_name: BTreeMap<&str, &View> = file.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut out = Vec::new();
    for view in &file.tensors {
        let name = view.name.as_str();
        if name.ends_with(".__scales") {
            continue;
        }
        if let Some(info) = file.metadata.get(&format!("quant.{name}")) {
            let scales = by_name.get(format!("{name}.__scales").as_str()).ok_or_else(|| format!("{name}: no scales"))?;
            let (shape, values) = dequantize(view, scales, info).map_err(|e| format!("{name}: {e}"))?;
            out.push(Decoded::Whole { key: name.to_string(), shape, values, quantized: true });
        } else if let Some((key, part)) = name.split_once('@') {
            let (index, count) =
                part.split_once('/').and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?))).ok_or_else(|| format!("{name}: bad part name"))?;
            out.push(Decoded::Part { key: key.to_string(), index, count, shape: view.shape.clone(), values: view.to_f32()? });
        } else {
            out.push(Decoded::Whole { key: name.to_string(), shape: view.shape.clone(), values: view.to_f32()?, quantized: false });
        }
    }
    Ok(out)
}

/// The layout token of a quantization record whose 4-D weight `[out, in, kh, kw]` is stored as
/// `[out, kw, kh, in]` (format version 2).
pub const IN_CHANNELS_LAST: &str = "in-last";

fn dequantize(view: &View, scales: &View, info: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
    let fields: Vec<&str> = info.split(' ').collect();
    let (kind, block, dims, in_last) = match fields[..] {
        [kind, block, dims] => (kind, block, dims, false),
        [kind, block, dims, IN_CHANNELS_LAST] => (kind, block, dims, true),
        _ => return Err(format!("bad quantization record {info:?}")),
    };
    let block: usize = block.parse().map_err(|_| format!("bad block size in {info:?}"))?;
    let shape: Vec<usize> = dims.split(',').map(str::parse).collect::<Result<_, _>>().map_err(|_| format!("bad shape in {info:?}"))?;
    let rows = shape[0];
    let numel: usize = shape.iter().product();
    let cols = numel / rows.max(1);
    let blocks = cols.div_ceil(block.max(1));
    let (want_dtype, stored_cols) = match kind {
        "q8" => (Dtype::I8, cols),
        "q4" => (Dtype::U8, cols.div_ceil(2)),
        other => return Err(format!("unknown quantization {other:?}")),
    };
    if block == 0 || view.dtype != want_dtype || view.shape != [rows, stored_cols] || scales.dtype != Dtype::F16 || scales.shape != [rows, blocks] {
        return Err(format!("stored as {:?} {:?} with scales {:?}, which does not match {info:?}", view.dtype, view.shape, scales.shape));
    }
    let scales: Vec<f32> = scales.to_f32()?;
    let mut values = Vec::with_capacity(numel);
    for (r, row) in view.data.chunks_exact(stored_cols).enumerate() {
        let scale = |c: usize| scales[r * blocks + c / block];
        if kind == "q8" {
            values.extend(row.iter().enumerate().map(|(c, &q)| q as i8 as f32 * scale(c)));
        } else {
            values.extend((0..cols).map(|c| {
                let nibble = if c % 2 == 0 { row[c / 2] & 0x0f } else { row[c / 2] >> 4 };
                (nibble as i32 - 8) as f32 * scale(c)
            }));
        }
    }
    if in_last {
        if shape.len() != 4 {
            return Err(format!("{IN_CHANNELS_LAST} on a tensor of shape {shape:?}"));
        }
        return Ok((shape.clone(), in_channels_back(&shape, &values)));
    }
    Ok((shape, values))
}
